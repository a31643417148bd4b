"""API access for administrators: personal access tokens and OAuth clients (create: secret shown once; list with
scopes, expiry, VM restriction and last use; revoke). The rules live in services/tokens.py."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from .. import clock
from ..auth.guards import login_required
from ..extensions import db
from ..models import VM
from ..services import access, tokens
from . import bp

EXPIRY_DAYS = (7, 30, 90, 365)
MAX_VM_CHOICES = 500


def require_token_admin() -> None:
    """Customer admins and staff; customer members ask their admin (403)."""
    if not current_user.is_admin:
        abort(403)


def _vm_choices() -> list[VM]:
    query = access.scope_to_user(select(VM), VM.organisation_id, current_user).where(VM.deletion_due_at.is_(None))
    return list(db.session.scalars(query.order_by(VM.name).limit(MAX_VM_CHOICES)))


def _render(*, error: str = "", secret: str = "", client_secret: tuple[str, str] | None = None,
            status: int = 200) -> tuple[str, int, dict[str, str]]:
    """The page; a page showing a new secret is never cached (it is shown this once)."""
    vms = _vm_choices()
    names = {vm.id: vm.name for vm in vms}
    return render_template(
        "tokens.html", tokens=tokens.tokens_of(current_user), clients=tokens.clients_of(current_user),
        scopes=tokens.scopes_for(current_user), expiry_days=EXPIRY_DAYS, vms=vms, vm_names=names, error=error,
        secret=secret, client_secret=client_secret, now=clock.now(),
    ), status, {"Cache-Control": "no-store"}


def _form_vm_ids() -> list[int] | None:
    raw = request.form.getlist("vm")
    if not raw:
        return None
    if any(not (value.isascii() and value.isdigit()) or len(value) > 12 for value in raw):
        raise tokens.TokenError("choose VMs from the list")
    return [int(value) for value in raw]


@bp.route("/tokens")
@login_required
def tokens_page() -> tuple[str, int, dict[str, str]]:
    require_token_admin()
    return _render()


@bp.route("/tokens", methods=["POST"])
@login_required
def tokens_create() -> tuple[str, int, dict[str, str]]:
    """Create a token and show its secret in this answer only (it is stored as a hash)."""
    require_token_admin()
    days = request.form.get("expires_days", "90")
    if days not in {str(d) for d in EXPIRY_DAYS} | {"never"}:
        return _render(error="choose an expiry from the list", status=422)
    expires = None if days == "never" else clock.now() + timedelta(days=int(days))
    try:
        _, secret = tokens.create_token(current_user, request.form.getlist("scope"),
                                        name=request.form.get("name", "")[:200], vm_ids=_form_vm_ids(),
                                        expires_at=expires)
    except tokens.TokenError as exc:
        db.session.rollback()
        return _render(error=str(exc), status=422)
    return _render(secret=secret, status=201)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def tokens_revoke(token_id: int) -> BaseResponse:
    require_token_admin()
    token = tokens.get_token_of(current_user, token_id)
    if token is None:
        abort(404)
    tokens.revoke_token(current_user, token)
    flash(f"Revoked the token {token.name or token.prefix}: it no longer works.", "ok")
    return redirect(url_for("web.tokens_page"), code=303)


@bp.route("/tokens/clients", methods=["POST"])
@login_required
def tokens_client_create() -> tuple[str, int, dict[str, str]]:
    """Create an OAuth client (client-credentials grant); its secret is shown in this answer only."""
    require_token_admin()
    try:
        client, secret = tokens.create_client(current_user, request.form.get("name", "")[:200],
                                              request.form.getlist("scope"), vm_ids=_form_vm_ids())
    except tokens.TokenError as exc:
        db.session.rollback()
        return _render(error=str(exc), status=422)
    return _render(client_secret=(client.client_id, secret), status=201)


@bp.route("/tokens/clients/<int:client_id>/revoke", methods=["POST"])
@login_required
def tokens_client_revoke(client_id: int) -> BaseResponse:
    require_token_admin()
    client = tokens.get_client_of(current_user, client_id)
    if client is None:
        abort(404)
    tokens.revoke_client(current_user, client)
    flash(f"Revoked the client {client.name or client.client_id} and its tokens.", "ok")
    return redirect(url_for("web.tokens_page"), code=303)
