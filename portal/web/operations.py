"""Operator pages: disaster mode (planner, start, live board) and fire drills (list, on demand, fleet RTO).

Operators only: other roles get 403 (the pages exist, they are not theirs). The rules live in
``services.disaster`` and ``services.drills``; views parse input and render.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from .. import clock
from ..auth.guards import login_required
from ..extensions import db
from ..models import VM, DisasterRun, FireDrill, Organisation
from ..services import access, disaster, drills
from ..services.disaster import DisasterError, Scope
from ..services.drills import DrillError
from .htmx import is_htmx

bp = Blueprint("operations", __name__, url_prefix="/operations")

MAX_WORKERS = 64


@bp.before_request
@login_required
def _operators_only() -> None:
    if not current_user.is_operator:
        abort(403)


@bp.app_template_global()
def disaster_positions() -> list[disaster.CustomerRow]:
    """The signed-in user's VMs in an active disaster run (the dashboard shows them while one runs)."""
    if not current_user.is_authenticated:
        return []
    return disaster.customer_view(current_user)


@bp.app_template_global()
def restore_tested_on(points: list[Any]) -> dict[int, datetime]:
    """When each of these backup points last passed a fire drill."""
    return drills.tested_on(p.id for p in points)


@bp.app_template_global()
def duration(seconds: float | None) -> str:
    """A projected duration; None is one that cannot be known yet (no restore measured)."""
    return "unknown" if seconds is None else disaster.describe(seconds)


# -- disaster mode ---------------------------------------------------------------------------------------

def _planner_input(source: Any) -> tuple[Scope, datetime, int, str]:
    """Scope, point in time (UTC, ``YYYY-MM-DDTHH:MM``; empty: now), workers and strategy (``copy`` unless
    ``instant``) from a form or query."""
    scope = Scope.parse(source.get("scope", "all")[:300])
    raw = source.get("at", "").strip()[:32]
    try:
        at = datetime.fromisoformat(raw) if raw else clock.now()
    except ValueError:
        raise DisasterError("the point in time must look like 2026-11-29T10:00 (UTC)") from None
    if len(raw) == len("2026-11-29T10:00"):  # to the minute, as the form sends it: up to the end of that minute
        at += timedelta(minutes=1, microseconds=-1)  # "back to 10:00" keeps the backup made at 10:00:30
    if at.tzinfo is not None:
        raise DisasterError("give the point in time in UTC, without a zone")
    workers_raw = source.get("workers", "").strip() or str(current_app.config.get("DISASTER_WORKERS", 2))
    if (not (workers_raw.isascii() and workers_raw.isdigit()) or len(workers_raw) > 6
            or not 1 <= int(workers_raw) <= MAX_WORKERS):
        raise DisasterError(f"workers must be a whole number from 1 to {MAX_WORKERS}")
    strategy = source.get("strategy", "").strip() or "copy"
    if strategy not in disaster.STRATEGIES:
        raise DisasterError("the strategy must be copy or instant")
    return scope, at, int(workers_raw), strategy


def _planner_page(plan: disaster.Plan | None, error: str = "", values: Any = None) -> str:
    organisations = list(db.session.scalars(select(Organisation).where(Organisation.deletion_due_at.is_(None))
                                            .order_by(Organisation.name)))
    return render_template("operations_disaster.html", plan=plan, error=error, organisations=organisations,
                           pools=disaster.pools(), runs=disaster.recent_runs(), values=values or {},
                           default_workers=current_app.config.get("DISASTER_WORKERS", 2), now=clock.now(),
                           instant_ready=bool(current_app.config.get("INSTANT_SOURCE_URL")))


@bp.route("/disaster")
def disaster_planner() -> str | tuple[str, int]:
    if "scope" not in request.args:
        return _planner_page(None)
    try:
        scope, at, workers, strategy = _planner_input(request.args)
        plan = disaster.plan(scope, at, workers, strategy=strategy)
    except DisasterError as exc:
        return _planner_page(None, str(exc), request.args), 400
    return _planner_page(plan, values=request.args)


@bp.route("/disaster", methods=["POST"])
def disaster_start() -> BaseResponse | tuple[str, int]:
    try:
        scope, at, workers, strategy = _planner_input(request.form)
        run = disaster.start(current_user, scope, at, workers, strategy)
    except DisasterError as exc:
        db.session.rollback()
        return _planner_page(None, str(exc), request.form), 422
    flash(f"Disaster run {run.id} started: {run.summary['planned']} restore(s) queued.", "ok")
    return redirect(url_for("operations.disaster_board", run_id=run.id), 303)


@bp.route("/disaster/<int:run_id>")
def disaster_board(run_id: int) -> str:
    run = db.session.get(DisasterRun, run_id)
    if run is None:
        abort(404)
    missing = list(db.session.scalars(select(VM).where(VM.id.in_(run.summary.get("missing", []))))) \
        if run.summary.get("missing") else []
    return render_template("operations_board.html", board=disaster.board(run), missing=missing,
                           partial=is_htmx())


# -- fire drills -----------------------------------------------------------------------------------------

@bp.route("/drills")
def drills_page() -> str:
    max_workers = int(current_app.config.get("FLEET_RTO_MAX_WORKERS", 8))
    speed, projections, fleet = disaster.fleet_rto(max(1, min(max_workers, MAX_WORKERS)))
    vms = list(db.session.scalars(select(VM).where(VM.deletion_due_at.is_(None)).order_by(VM.name)))
    last = drills.last_drills(vms)
    vms.sort(key=lambda vm: (last[vm.id].created_at if vm.id in last else datetime.min, vm.name))
    return render_template("operations_drills.html", drills=drills.recent(), vms=vms[:200], last=last,
                           speed=speed, projections=projections, fleet=fleet)


@bp.route("/drills", methods=["POST"])
def drill_request() -> BaseResponse | tuple[str, int]:
    raw = request.form.get("vm", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        abort(400, description="choose a VM")
    vm = access.get_vm(current_user, int(raw))
    try:
        drill = drills.request_drill(vm, current_user, trigger="operator")
    except DrillError as exc:
        db.session.rollback()
        return render_template("error.html", code=422, message=str(exc)), 422
    return redirect(url_for("operations.drill_detail", drill_id=drill.id), 303)


@bp.route("/drills/<int:drill_id>")
def drill_detail(drill_id: int) -> str:
    drill = db.session.get(FireDrill, drill_id)
    if drill is None:
        abort(404)
    return render_template("operations_drill.html", drill=drill,
                           partial=is_htmx())
