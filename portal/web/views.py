"""Pages: dashboard, VM (policy form, backup points), audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select
from sqlalchemy.orm import joinedload
from werkzeug.wrappers import Response as BaseResponse

from .. import clock
from ..auth.guards import login_required
from ..extensions import db
from ..models import VM, AuditEntry, BackupPoint, Organisation, Restore
from ..models.runs import ACTIVE_STATES
from ..services import access, policies, protection
from ..services.eta import Estimate, queue
from ..services.policies import PolicyError
from ..services.priority import priority_of
from ..services.status import statuses
from . import bp, htmx
from .charts import size_chart
from .pagination import page_arg, page_count, window


@bp.route("/")
@login_required
def dashboard() -> str:
    page = page_arg()
    query = access.scope_to_user(select(VM), VM.organisation_id, current_user)
    query = query.where(VM.deletion_due_at.is_(None))
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    limit, offset = window(page)
    vms = list(db.session.scalars(
        query.options(joinedload(VM.organisation).joinedload(Organisation.tier), joinedload(VM.policy))
        .order_by(VM.name).limit(limit).offset(offset)
    ).unique())
    restores, estimates = _restores_in_view(vms)
    return render_template(
        "dashboard.html", vms=vms, status=statuses(vms), priority=priority_of, page=page,
        pages=page_count(total), total=total, restores=restores, estimates=estimates,
        summary=_restore_summary(estimates),
    )


#: a finished restore stays next to its VM this long (the outage is over for it; the customer still looks)
RECENT_RESTORE_HOURS = 24
#: restores named in the banner (the rest: "and N more", on the restores page)
MAX_IN_BANNER = 8


def _restores_in_view(vms: list[VM]) -> tuple[dict[int, Restore], dict[int, Estimate]]:
    """Per VM on the page, its newest restore that is active or finished in the last day; and the estimate
    (queue position, time left) of every active restore the user may see. During an outage this is what the
    dashboard exists for: which VMs are being restored, in which order and by when."""
    if not vms:
        return {}, {}
    since = clock.now() - timedelta(hours=RECENT_RESTORE_HOURS)
    rows = db.session.scalars(
        select(Restore).where(Restore.vm_id.in_([vm.id for vm in vms]))
        .where(or_(Restore.state.in_(ACTIVE_STATES), Restore.finished_at >= since))
        .order_by(Restore.created_at.desc(), Restore.id.desc())
    )
    newest: dict[int, Restore] = {}
    for row in rows:
        newest.setdefault(row.vm_id, row)
    visible = access.scope_to_user(select(Restore.id).join(VM), VM.organisation_id, current_user)
    mine = set(db.session.scalars(visible.where(Restore.state.in_(ACTIVE_STATES))))
    estimates = {rid: e for rid, e in queue().items() if rid in mine} if mine else {}
    return newest, estimates


def _restore_summary(estimates: dict[int, Estimate]) -> dict[str, Any] | None:
    """The banner over the dashboard: how many of the user's restores run and wait, and when the last is back
    (None: unknown while no restore has been measured here)."""
    if not estimates:
        return None
    queued = sum(1 for e in estimates.values() if e.position is not None)
    lefts = [e.seconds_left for e in estimates.values()]
    last = None if any(x is None for x in lefts) else max(x for x in lefts if x is not None)
    rows = db.session.scalars(select(Restore).where(Restore.id.in_(list(estimates)))
                              .options(joinedload(Restore.vm))).all()
    # in the order they will be back: running ones first, then the queue
    ordered = sorted(rows, key=lambda r: (estimates[r.id].position or 0, r.id))
    return {"running": len(estimates) - queued, "queued": queued, "seconds_left": last,
            "done_by": clock.now() + timedelta(seconds=last) if last is not None else None,
            "items": [(r, estimates[r.id]) for r in ordered[:MAX_IN_BANNER]], "more": len(ordered) - MAX_IN_BANNER}


@bp.route("/vms/<int:vm_id>")
@login_required
def vm_detail(vm_id: int) -> str:
    vm = access.get_vm(current_user, vm_id)
    return _render_vm(vm, errors={}, values=None)


@bp.route("/vms/<int:vm_id>/policy", methods=["POST"])
@login_required
def vm_policy(vm_id: int) -> tuple[str, int] | str:
    vm = access.get_vm(current_user, vm_id)
    if not current_user.is_admin:
        abort(403)
    values, errors = _policy_form(vm, request.form)
    if not errors:
        try:
            policies.update(current_user, vm, values)
        except PolicyError as exc:
            errors = exc.errors
    if errors:
        db.session.rollback()
        return _render_vm(vm, errors=errors, values=request.form, saved=False), 422
    return _render_vm(vm, errors={}, values=None, saved=True)


def _policy_form(vm: VM, form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Values from the policy form. The business-critical checkbox counts only where the form shows it (an
    unticked box sends nothing); sent anyway, it is validated (and refused when the tier forbids it)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in ("rpo_minutes", *policies.KEEP_FIELDS):
        raw = form.get(field, "").strip()
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
            errors[field] = "must be a whole number"
        else:
            values[field] = int(raw)
    if "business_critical" in form or policies.offers_business_critical(vm):
        values["business_critical"] = form.get("business_critical") == "on"
    values["excluded"] = form.get("excluded") == "on"
    values["exclusion_reason"] = form.get("exclusion_reason", "")[:1000]
    values["pre_hook"] = form.get("pre_hook", "")
    values["post_hook"] = form.get("post_hook", "")
    return values, errors


def _render_vm(vm: VM, *, errors: dict[str, str], values: Any, saved: bool = False) -> str:
    page = page_arg()
    size, offset = window(page)
    points = list(db.session.scalars(
        select(BackupPoint).where(BackupPoint.vm_id == vm.id).order_by(BackupPoint.created_at.desc())
        .limit(size).offset(offset)
    ))
    total = db.session.scalar(select(func.count()).where(BackupPoint.vm_id == vm.id)) or 0
    policy = policies.policy_of(vm)
    can_edit = current_user.is_admin
    template = "vm.html"
    bounds = policies.Bounds.of(vm.organisation.tier)
    context = dict(
        vm=vm, policy=policy, points=points, chart=size_chart(points[:60]), errors=errors,
        values=values or policies.snapshot(policy), saved=saved, can_edit=can_edit,
        bounds=bounds, rpo_choices=policies.rpo_choices(bounds, policy.rpo_minutes),
        offers_business_critical=policies.offers_business_critical(vm), hooks=current_app.config["HOOK_CHOICES"],
        priority=priority_of(vm), status=statuses([vm])[vm.id], page=page,
        pages=page_count(total),
    )
    if htmx.target() == "policy":
        return render_template("vm.html", partial="policy", **context)
    return render_template(template, partial=None, **context)


@bp.route("/vms/<int:vm_id>/backups/<int:backup_id>/protect", methods=["POST"])
@login_required
def point_protect(vm_id: int, backup_id: int) -> BaseResponse:
    """Protect (``protected=on``) or release a point from the VM page; the service decides who may (admins)
    and refuses with the reason (a ProtectionError answers its status through the error page)."""
    vm = access.get_vm(current_user, vm_id)
    point = access.get_backup(current_user, vm, backup_id)
    wanted = request.form.get("protected") == "on"
    protection.set_protected(current_user, point, wanted)
    state = "protected: retention and deletion leave it alone" if wanted else "no longer protected"
    flash(f"The backup of {point.created_at:%Y-%m-%d %H:%M} UTC is {state}.", "ok")
    return redirect(url_for("web.vm_detail", vm_id=vm.id))


@bp.route("/audit")
@login_required
def audit_log() -> str:
    page = page_arg()
    limit, offset = window(page)
    query = access.scope_to_user(select(AuditEntry), AuditEntry.organisation_id, current_user)
    action = request.args.get("action", "")[:64]
    if action:
        query = query.where(AuditEntry.action == action)
    entries = list(db.session.scalars(
        query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit).offset(offset)
    ))
    return render_template("audit.html", entries=entries, page=page, action=action)
