"""Management pages: SLA tiers, customers and their tiers, compliance and coverage (account managers and
operators); all organisations and inventory sync history (operators); audit log export (everyone, scoped).

Views stay thin: the rules live in services/tiers.py, and every tenant query goes through services/access.py.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import Select, func, select
from sqlalchemy.orm import joinedload
from werkzeug.wrappers import Response as BaseResponse

from .. import clock
from ..auth.guards import login_required
from ..extensions import db
from ..models import VM, AuditEntry, InventorySync, Organisation, SlaTier, User
from ..models.accounts import PRIORITY_CLASSES
from ..services import access, tiers
from ..services.tiers import TierError
from . import bp
from .htmx import is_htmx
from .pagination import page_arg, page_count, paginate, window

CSV_COLUMNS = ("at", "actor", "action", "object_type", "object_id", "object", "organisation_id", "before", "after",
               "from")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# -- helpers ---------------------------------------------------------------------------------------------

def require_staff() -> None:
    """Account managers and operators only: customers get 403 (these pages exist, they are not theirs)."""
    if not current_user.is_staff:
        abort(403)


def require_operator() -> None:
    if not current_user.is_operator:
        abort(403)


def _int_field(name: str) -> int | None:
    raw = request.form.get(name, "").strip()
    return int(raw) if (raw.isascii() and raw.isdigit()) and len(raw) <= 12 else None


# -- tiers -----------------------------------------------------------------------------------------------

def _render_tiers(errors: dict[str, str] | None = None, values: Any = None, status: int = 200) -> tuple[str, int]:
    listed = list(db.session.scalars(select(SlaTier).order_by(SlaTier.min_rpo_minutes, SlaTier.name)))
    counts = dict(db.session.execute(
        select(Organisation.tier_id, func.count()).where(Organisation.deletion_due_at.is_(None))
        .group_by(Organisation.tier_id)).all())
    return render_template("manage_tiers.html", tiers=listed, counts=counts, errors=errors or {},
                           values=values or {"restore_priority": "normal"}, classes=PRIORITY_CLASSES), status


@bp.route("/manage/tiers")
@login_required
def manage_tiers() -> tuple[str, int]:
    require_staff()
    return _render_tiers()


@bp.route("/manage/tiers", methods=["POST"])
@login_required
def manage_tier_create() -> tuple[str, int] | BaseResponse:
    require_staff()
    try:
        tier = tiers.create(current_user, tiers.parse_form(request.form))
    except TierError as exc:
        db.session.rollback()
        return _render_tiers(exc.errors, request.form, 422)
    flash(f"Tier {tier.name} created.", "ok")
    return redirect(url_for("web.manage_tiers"), 303)


def _render_tier(tier: SlaTier, errors: dict[str, str] | None = None, values: Any = None,
                 status: int = 200) -> tuple[str, int]:
    orgs = list(db.session.scalars(access.scope_to_user(
        select(Organisation).where(Organisation.tier_id == tier.id).order_by(Organisation.name),
        Organisation.id, current_user)))
    return render_template("manage_tier.html", tier=tier, orgs=orgs, errors=errors or {},
                           values=values or tiers.snapshot(tier), classes=PRIORITY_CLASSES), status


@bp.route("/manage/tiers/<int:tier_id>")
@login_required
def manage_tier(tier_id: int) -> tuple[str, int]:
    require_staff()
    return _render_tier(db.get_or_404(SlaTier, tier_id))


@bp.route("/manage/tiers/<int:tier_id>", methods=["POST"])
@login_required
def manage_tier_update(tier_id: int) -> tuple[str, int] | BaseResponse:
    """Edit a tier; organisations on it are clamped to the new bounds and told (services/tiers.update)."""
    require_staff()
    tier = db.get_or_404(SlaTier, tier_id)
    try:
        clamps = tiers.update(current_user, tier, tiers.parse_form(request.form))
    except TierError as exc:
        db.session.rollback()
        return _render_tier(tier, exc.errors, request.form, 422)
    vms = sum(len(by_vm) for by_vm in clamps.values())
    flash(f"Tier {tier.name} saved; {len(clamps)} organisation(s) notified, {vms} VM policies clamped.", "ok")
    return redirect(url_for("web.manage_tier", tier_id=tier.id), 303)


# -- customers -------------------------------------------------------------------------------------------

def _customer_rows(orgs: list[Organisation]) -> dict[int, int]:
    """Live VM counts for the listed organisations, in one grouped query."""
    ids = [org.id for org in orgs]
    if not ids:
        return {}
    return dict(db.session.execute(
        select(VM.organisation_id, func.count()).where(VM.organisation_id.in_(ids), VM.deletion_due_at.is_(None))
        .group_by(VM.organisation_id)).all())


def _render_customers(errors: dict[int, str] | None = None, status: int = 200, only: Organisation | None = None,
                      message: str = "") -> tuple[str, int]:
    """The customers page, or with ``only`` just that organisation's row (the htmx answer to a tier change)."""
    page = page_arg()
    query = access.scope_to_user(select(Organisation).options(joinedload(Organisation.tier))
                                 .order_by(Organisation.name), Organisation.id, current_user)
    orgs, pages = ([only], 1) if only is not None else paginate(query, page)
    listed = list(db.session.scalars(select(SlaTier).order_by(SlaTier.min_rpo_minutes, SlaTier.name)))
    return render_template("manage_customers.html", orgs=orgs, vm_counts=_customer_rows(orgs), tiers=listed,
                           errors=errors or {}, page=page, pages=pages, message=message,
                           partial="row" if only is not None else None), status


@bp.route("/manage/customers")
@login_required
def manage_customers() -> tuple[str, int]:
    require_staff()
    return _render_customers()


@bp.route("/manage/customers/<int:org_id>/tier", methods=["POST"])
@login_required
def manage_customer_tier(org_id: int) -> tuple[str, int] | BaseResponse:
    """Move a customer to another tier: clamps its VMs' policies, audits, notifies (services/tiers.assign)."""
    require_staff()
    org = access.get_organisation(current_user, org_id)
    tier_id = _int_field("tier_id")
    tier = db.session.get(SlaTier, tier_id) if tier_id is not None else None
    htmx = is_htmx()
    if tier is None:
        return _render_customers({org.id: "Choose one of the tiers; nothing was changed."}, 422,
                                 only=org if htmx else None)
    if org.tier_id == tier.id:
        message = f"{org.name} is already on the {tier.name} tier; nothing changed."
    else:
        clamped = tiers.assign(current_user, org, tier)
        message = (f"{org.name} is now on the {tier.name} tier; {len(clamped)} VM policies clamped and the "
                   "customer notified.")
    if htmx:
        return _render_customers(only=org, message=message)
    flash(message, "ok")
    return redirect(url_for("web.manage_customers"), 303)


# -- compliance and coverage -----------------------------------------------------------------------------

@bp.route("/manage/compliance")
@login_required
def manage_compliance() -> str:
    require_staff()
    return render_template("manage_compliance.html", orgs=access.organisations_for(current_user),
                           misses=tiers.compliance(current_user))


@bp.route("/manage/coverage")
@login_required
def manage_coverage() -> str:
    require_staff()
    page = page_arg()
    limit, offset = window(page)
    rows, total = tiers.coverage(current_user, limit=limit, offset=offset)
    return render_template("manage_coverage.html", rows=rows, total=total, page=page, pages=page_count(total))


# -- operators -------------------------------------------------------------------------------------------

def _grouped_counts(query: Any) -> dict[int, int]:
    return dict(db.session.execute(query).all())


@bp.route("/manage/organisations")
@login_required
def manage_organisations() -> str:
    """Every organisation with its VM, missing-VM and user counts (three grouped queries per page)."""
    require_operator()
    page = page_arg()
    orgs, pages = paginate(select(Organisation).options(joinedload(Organisation.tier)).order_by(Organisation.name),
                           page)
    ids = [org.id for org in orgs]
    live_vm = (VM.organisation_id.in_(ids), VM.deletion_due_at.is_(None))
    counts = {
        "vms": _grouped_counts(select(VM.organisation_id, func.count()).where(*live_vm).group_by(VM.organisation_id)),
        "missing": _grouped_counts(select(VM.organisation_id, func.count()).where(*live_vm, VM.missing_since.is_not(
            None)).group_by(VM.organisation_id)),
        "users": _grouped_counts(select(User.organisation_id, func.count()).where(
            User.organisation_id.in_(ids), User.active.is_(True), User.deletion_due_at.is_(None))
            .group_by(User.organisation_id)),
    }
    manager_ids = {org.account_manager_id for org in orgs if org.account_manager_id}
    managers = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(manager_ids)))} if manager_ids \
        else {}
    return render_template("manage_organisations.html", orgs=orgs, counts=counts, managers=managers, page=page,
                           pages=pages)


@bp.route("/manage/syncs")
@login_required
def manage_syncs() -> str:
    """Inventory sync history, newest first: applied or refused, why, and what it did or would have done."""
    require_operator()
    page = page_arg()
    status = request.args.get("status", "")
    query = select(InventorySync).order_by(InventorySync.created_at.desc(), InventorySync.id.desc())
    if status:
        if status not in ("applied", "refused"):
            abort(400, "status must be applied or refused")
        query = query.where(InventorySync.status == status)
    syncs, pages = paginate(query, page)
    return render_template("manage_syncs.html", syncs=syncs, page=page, pages=pages, status=status)


# -- audit export ----------------------------------------------------------------------------------------

def _date_arg(name: str) -> date | None:
    raw = request.args.get(name, "")
    if not raw:
        return None
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        abort(400, f"{name} must be a date written YYYY-MM-DD")


def audit_query(user: User) -> Select[Any]:
    """The audit entries ``user`` may see, filtered like the /audit page (``action``) and optionally by
    ``organisation`` (an id in scope, else 404), ``since`` and ``until`` (dates, inclusive); newest first."""
    query = access.scope_to_user(select(AuditEntry), AuditEntry.organisation_id, user)
    action = request.args.get("action", "")[:64]
    if action:
        query = query.where(AuditEntry.action == action)
    org_raw = request.args.get("organisation", "")
    if org_raw:
        if not (org_raw.isascii() and org_raw.isdigit()) or len(org_raw) > 12:
            abort(400, "organisation must be an organisation id")
        query = query.where(AuditEntry.organisation_id == access.get_organisation(user, int(org_raw)).id)
    since, until = _date_arg("since"), _date_arg("until")
    if since:
        query = query.where(AuditEntry.at >= datetime.combine(since, datetime.min.time()))
    if until:
        query = query.where(AuditEntry.at < datetime.combine(until + timedelta(days=1), datetime.min.time()))
    return query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """One audit entry in the shape the REST API uses (actor, action, object, before, after, at)."""
    return {
        "id": entry.id, "at": entry.at.isoformat() + "Z", "actor": entry.actor, "action": entry.action,
        "object": {"type": entry.object_type, "id": entry.object_id, "label": entry.object_label},
        "organisation_id": entry.organisation_id, "before": entry.before, "after": entry.after,
        "from": entry.remote_addr,
    }


def _inert(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (names are customer-controlled text)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _entries(query: Select[Any]) -> Iterator[AuditEntry]:
    """Load rows in batches (the ORM holds a bounded number of them at a time)."""
    yield from db.session.scalars(query.execution_options(yield_per=500))


def _download(body: str, mimetype: str, extension: str) -> Response:
    """The export as an attachment. Built inside the request rather than streamed: a streamed body would
    outlive the request's database session."""
    name = f"lifeboat-audit-{clock.now():%Y%m%d-%H%M%S}.{extension}"
    return Response(body, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


@bp.route("/audit.csv")
@login_required
def audit_export_csv() -> Response:
    """The audit log as CSV, scoped and filtered like /audit; cells that a spreadsheet would run are quoted."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for e in _entries(audit_query(current_user)):
        writer.writerow([_inert(v) for v in (
            e.at.isoformat() + "Z", e.actor, e.action, e.object_type, e.object_id, e.object_label, e.organisation_id,
            json.dumps(e.before) if e.before is not None else "", json.dumps(e.after) if e.after is not None else "",
            e.remote_addr)])
    return _download(buffer.getvalue(), "text/csv", "csv")


@bp.route("/audit.json")
@login_required
def audit_export_json() -> Response:
    """The audit log as JSON (``{"items": [...], "next": null}``, entries shaped like the REST API's)."""
    items = [entry_json(entry) for entry in _entries(audit_query(current_user))]
    return _download(json.dumps({"items": items, "next": None}), "application/json", "json")
