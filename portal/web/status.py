"""The customer status page (``/status``): incidents and maintenance windows affecting the user's
organisation, the operators' updates, and where each of their VMs is in the restore queue with an ETA;
and the operators' pages to open an incident, announce a maintenance window ahead, post updates, resolve.

Also the banner in ``base.html``: shown to every signed-in user whose organisation an open incident or an
announced (even not yet started) maintenance window touches. Views stay thin: the rules live in
``portal/services/incidents.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from .. import clock
from ..auth.guards import login_required
from ..extensions import db
from ..models import Incident, Organisation
from ..models.incidents import KINDS
from ..services import disaster, incidents
from ..services.incidents import IncidentError
from .htmx import is_htmx

bp = Blueprint("status", __name__)

LIST_LIMIT = 100


@bp.app_context_processor
def _incident_helpers() -> dict[str, Any]:
    """``incident_banner()`` for base.html; it queries only when a page renders the banner."""

    def banner() -> list[Incident]:
        if not getattr(current_user, "is_authenticated", False):
            return []
        return incidents.current_for(current_user)

    return {"incident_banner": banner, "incident_phase": lambda incident: incident.phase(clock.now())}


@bp.app_template_filter("eta")
def format_eta(seconds: float | None) -> str:
    """Time until a restore is back; None is an ETA that cannot be known yet (nothing measured)."""
    if seconds is None:
        return "unknown (no restore measured yet)"
    if seconds < 60:
        return "under a minute"
    if seconds < 90:
        return "about a minute"
    if seconds < 3600 * 2:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


# -- customers (and staff: scoped by services.access) ----------------------------------------------------

@bp.route("/status")
@login_required
def page() -> str:
    now = clock.now()
    current = incidents.current_for(current_user, now)
    queue = incidents.queue_for(current_user, now)
    started = [i.starts_at for i in current if i.starts_at <= now]
    since = min(started) if started else now - timedelta(days=1)
    context = dict(now=now, incidents=current, queue=queue, finished=incidents.finished_for(current_user, since),
                   since=since, recent=incidents.recent_for(current_user, now),
                   affected_vms=_affected_vms(current), organisation=current_user.organisation,
                   disaster_classes=disaster.customer_classes(current_user))
    if is_htmx() and request.args.get("part") == "queue":
        return render_template("status_queue.html", **context)
    return render_template("status.html", **context)


def _affected_vms(current: list[Incident]) -> dict[int, list[Any] | None]:
    """For a customer: their VMs each pool-scoped incident touches (None: all of them)."""
    org_id = current_user.organisation_id if current_user.is_customer else None
    if org_id is None:
        return {}
    return {incident.id: incidents.affected_vms(incident, org_id) for incident in current}


# -- operators -------------------------------------------------------------------------------------------

def _require_operator() -> None:
    if not current_user.is_operator:
        abort(403)


def _render_manage(errors: str = "", values: Any = None, status: int = 200) -> tuple[str, int]:
    rows = list(db.session.scalars(select(Incident).order_by(Incident.starts_at.desc()).limit(LIST_LIMIT)))
    organisations = list(db.session.scalars(select(Organisation).where(Organisation.deletion_due_at.is_(None))
                                            .order_by(Organisation.name)))
    return render_template("status_manage.html", incidents=rows, organisations=organisations, error=errors,
                           values=values or {"kind": "maintenance", "scope": "all"}, kinds=KINDS,
                           now=clock.now()), status


@bp.route("/manage/incidents")
@login_required
def manage_incidents() -> tuple[str, int]:
    _require_operator()
    return _render_manage()


def _when(name: str) -> datetime | None:
    """A ``datetime-local`` form field (UTC), or None when empty; nonsense raises IncidentError."""
    raw = request.form.get(name, "").strip()
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=None, second=0, microsecond=0)
    except ValueError:
        raise IncidentError(f"{name.replace('_', ' ')} must be a date and time (YYYY-MM-DDTHH:MM, UTC)") from None


@bp.route("/manage/incidents", methods=["POST"])
@login_required
def incident_create() -> Response | tuple[str, int]:
    _require_operator()
    form = request.form
    scope = form.get("scope", "all")
    try:
        organisation_ids: list[int] | None = None
        pool: str | None = None
        if scope == "organisations":
            raw = form.getlist("organisation_ids")
            if not all((value.isascii() and value.isdigit()) and len(value) < 12 for value in raw):
                raise IncidentError("organisations must be chosen from the list")
            organisation_ids = [int(value) for value in raw]
        elif scope == "pool":
            pool = form.get("pool", "").strip()
        elif scope != "all":
            raise IncidentError("scope must be all, organisations or pool")
        incident = incidents.open_incident(
            form.get("kind", ""), form.get("title", ""), current_user, organisation_ids=organisation_ids, pool=pool,
            starts_at=_when("starts_at"), ends_at=_when("ends_at"), message=form.get("message", ""))
    except IncidentError as exc:
        db.session.rollback()
        return _render_manage(str(exc), form, 422)
    return redirect(url_for("status.incident_detail", incident_id=incident.id), code=303)


def _incident(incident_id: int) -> Incident:
    _require_operator()
    incident = db.session.get(Incident, incident_id)
    if incident is None:
        abort(404)
    return incident


def _render_detail(incident: Incident, error: str = "", status: int = 200) -> tuple[str, int]:
    affected = incidents.affected_organisation_ids(incident)
    names = [] if affected is None else list(db.session.scalars(
        select(Organisation.name).where(Organisation.id.in_(sorted(affected))).order_by(Organisation.name)))
    return render_template("status_incident.html", incident=incident, organisations=names, error=error,
                           phase=incident.phase(clock.now())), status


@bp.route("/manage/incidents/<int:incident_id>")
@login_required
def incident_detail(incident_id: int) -> tuple[str, int]:
    return _render_detail(_incident(incident_id))


@bp.route("/manage/incidents/<int:incident_id>/updates", methods=["POST"])
@login_required
def incident_update(incident_id: int) -> Response | tuple[str, int]:
    incident = _incident(incident_id)
    try:
        incidents.post_update(incident, current_user, request.form.get("message", ""))
    except IncidentError as exc:
        db.session.rollback()
        return _render_detail(incident, str(exc), 422)
    return redirect(url_for("status.incident_detail", incident_id=incident.id), code=303)


@bp.route("/manage/incidents/<int:incident_id>/resolve", methods=["POST"])
@login_required
def incident_resolve(incident_id: int) -> Response | tuple[str, int]:
    incident = _incident(incident_id)
    try:
        incidents.resolve(incident, current_user, request.form.get("message", ""))
    except IncidentError as exc:
        db.session.rollback()
        return _render_detail(incident, str(exc), 409)
    return redirect(url_for("status.incident_detail", incident_id=incident.id), code=303)
