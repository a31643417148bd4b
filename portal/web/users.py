"""Organisation users: list, create, change role, deactivate and reactivate (services/users.py has the rules).

Customer admins see and manage their own organisation; account managers the organisations they manage;
operators all. Members get 403; another tenant's user is a 404 like any other unknown id.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import joinedload
from werkzeug.wrappers import Response as BaseResponse

from ..auth.guards import login_required
from ..extensions import db
from ..models import Organisation, User
from ..services import access
from ..services import users as service
from ..services.users import UserError
from . import bp
from .htmx import is_htmx
from .pagination import page_arg, paginate


def require_user_manager() -> None:
    if not service.can_manage(current_user):
        abort(403)


def _org_filter() -> Organisation | None:
    """The ``organisation`` query argument: an organisation in scope (404 otherwise), or none."""
    raw = request.args.get("organisation", "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        abort(400, "organisation must be an organisation id")
    return access.get_organisation(current_user, int(raw))


def _render(*, errors: dict[str, str] | None = None, values: Any = None, row_errors: dict[int, str] | None = None,
            row_messages: dict[int, str] | None = None, status: int = 200) -> tuple[str, int]:
    page = page_arg()
    org = _org_filter()
    query = service.list_query(current_user, org.id if org else None).options(joinedload(User.organisation))
    listed, pages = paginate(query, page)
    return render_template(
        "users.html", users=listed, page=page, pages=pages, org_filter=org,
        orgs=access.organisations_for(current_user), errors=errors or {}, values=values or {"role": "customer_member"},
        row_errors=row_errors or {}, row_messages=row_messages or {}, role_labels=service.ROLE_LABELS,
    ), status


@bp.route("/users")
@login_required
def users_list() -> tuple[str, int]:
    require_user_manager()
    return _render()


def _target_organisation() -> Organisation:
    """Where a new user goes: a customer admin's own organisation unless another in scope is named (404 when
    it is not in scope); staff must name one."""
    raw = request.form.get("organisation_id", "").strip()
    if raw:
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
            abort(404)
        return access.get_organisation(current_user, int(raw))
    if current_user.is_customer and current_user.organisation_id is not None:
        return access.get_organisation(current_user, current_user.organisation_id)
    raise UserError({"organisation_id": "choose the organisation"})


@bp.route("/users", methods=["POST"])
@login_required
def users_create() -> tuple[str, int] | BaseResponse:
    require_user_manager()
    values = {key: request.form.get(key, "") for key in ("email", "name", "role", "organisation_id")}
    try:
        org = _target_organisation()
        user = service.create(current_user, org, service.parse_new(request.form))
    except UserError as exc:
        db.session.rollback()
        return _render(errors=exc.errors, values=values, status=exc.status)
    flash(f"Added {user.email} to {org.name} as {service.ROLE_LABELS[user.role]}.", "ok")
    return redirect(url_for("web.users_list"), 303)


def _row_change(user_id: int, change: Any, done: str) -> tuple[str, int] | BaseResponse:
    """Apply ``change(target)``; answer with the page (htmx swaps the row) or a redirect, 4xx when refused."""
    require_user_manager()
    target = service.get_managed(current_user, user_id)
    try:
        change(target)
    except UserError as exc:
        db.session.rollback()
        return _render(row_errors={target.id: "; ".join(exc.errors.values())}, status=exc.status)
    message = done.format(email=target.email, role=service.ROLE_LABELS.get(target.role, target.role))
    if is_htmx():
        return _render(row_messages={target.id: message})
    flash(message, "ok")
    return redirect(url_for("web.users_list"), 303)


@bp.route("/users/<int:user_id>/role", methods=["POST"])
@login_required
def users_role(user_id: int) -> tuple[str, int] | BaseResponse:
    role = request.form.get("role", "")[:32]
    return _row_change(user_id, lambda target: service.change_role(current_user, target, role),
                       "{email} is now {role}.")


@bp.route("/users/<int:user_id>/deactivate", methods=["POST"])
@login_required
def users_deactivate(user_id: int) -> tuple[str, int] | BaseResponse:
    return _row_change(user_id, lambda target: service.set_active(current_user, target, False),
                       "{email} is deactivated and can no longer sign in.")


@bp.route("/users/<int:user_id>/activate", methods=["POST"])
@login_required
def users_activate(user_id: int) -> tuple[str, int] | BaseResponse:
    return _row_change(user_id, lambda target: service.set_active(current_user, target, True),
                       "{email} can sign in again.")
