"""Incidents and maintenance windows: opening and announcing them, operator updates, resolving, who is
affected, and the restore queue as each customer sees it on the status page.

A maintenance window is shown from the moment it is announced until it ends (or is resolved earlier); a
disaster stays shown until it is resolved. Disaster mode (``portal.services.disaster``) calls
``open_incident`` when a disaster run starts, so customers see the banner without an operator typing it, and
``resolve_if_open`` when the run's last restore has reached a final state, with a last update that says how it
ended (an operator may resolve it earlier by hand).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import joinedload

from .. import clock
from ..errors import DomainError
from ..extensions import db
from ..models import VM, Disk, Incident, IncidentUpdate, Organisation, Restore, User
from ..models.incidents import KINDS, MAINTENANCE, OPEN, RESOLVED
from ..models.runs import DONE, FAILED
from ..security import one_line
from . import access, audit, eta

POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_TITLE = 200
MAX_MESSAGE = 5000
RECENT = timedelta(days=3)  # resolved or ended incidents stay on the status page this long
QUEUE_LIMIT = 500


class IncidentError(DomainError, ValueError):
    """An incident request that cannot be accepted; the message says why."""


# -- changes ---------------------------------------------------------------------------------------------

def open_incident(kind: str, title: str, actor: User | str, organisation_ids: list[int] | None = None,
                  pool: str | None = None, starts_at: datetime | None = None, ends_at: datetime | None = None,
                  message: str = "") -> Incident:
    """Open a disaster incident or announce a maintenance window (committed and audited).

    Scope: ``organisation_ids`` (those organisations), ``pool`` (organisations with a VM disk in that Ceph
    pool), or neither (everybody). A maintenance window needs its end; it may start in the future (announced
    ahead). ``message`` becomes the first update.
    """
    if kind not in KINDS:
        raise IncidentError(f"kind must be one of {', '.join(KINDS)}")
    title = (title or "").strip()
    if not title or len(title) > MAX_TITLE or not one_line(title):
        raise IncidentError(f"a title of 1 to {MAX_TITLE} characters, on one line, is needed")
    if organisation_ids is not None and pool:
        raise IncidentError("choose organisations or a pool as the scope, not both")
    ids: list[int] = []
    if organisation_ids is not None:
        ids = sorted({int(i) for i in organisation_ids})
        if not ids:
            raise IncidentError("choose at least one organisation (or everybody)")
        known = set(db.session.scalars(select(Organisation.id).where(Organisation.id.in_(ids))))
        if missing := [i for i in ids if i not in known]:
            raise IncidentError(f"no organisation with id {missing[0]}")
    if pool is not None and not POOL_NAME.match(pool):
        raise IncidentError("a pool name is 1 to 100 letters, digits, '.', '_' or '-'")
    start = starts_at or clock.now()
    if kind == MAINTENANCE and ends_at is None:
        raise IncidentError("a maintenance window needs an end")
    if ends_at is not None and ends_at <= start:
        raise IncidentError("the end must be after the start")
    if len(message) > MAX_MESSAGE:
        raise IncidentError(f"a message is at most {MAX_MESSAGE} characters")
    incident = Incident(kind=kind, title=title, state=OPEN, scope_all=organisation_ids is None and not pool,
                        organisation_ids=ids, pool=pool or None, starts_at=start, ends_at=ends_at,
                        created_at=clock.now(), created_by=_who(actor))
    db.session.add(incident)
    db.session.flush()
    if message.strip():
        _add_update(incident, actor, message)
    audit.record(actor, f"{kind}.announce" if kind == MAINTENANCE else "incident.open", incident,
                 after=snapshot(incident))
    db.session.commit()
    return incident


def post_update(incident: Incident, actor: User | str, message: str) -> IncidentUpdate:
    """Add an operator's message to the incident (customers read it on their status page)."""
    message = (message or "").strip()
    if not message or len(message) > MAX_MESSAGE:
        raise IncidentError(f"an update needs 1 to {MAX_MESSAGE} characters")
    if incident.state == RESOLVED:
        raise IncidentError("the incident is resolved")
    update = _add_update(incident, actor, message)
    audit.record(actor, "incident.update", incident, after={"message": message[:300]})
    db.session.commit()
    return update


def resolve(incident: Incident, actor: User | str, message: str = "") -> Incident:
    """Close the incident (or end a maintenance window early); an optional last update says how."""
    if incident.state == RESOLVED:
        raise IncidentError("the incident is already resolved")
    if len(message) > MAX_MESSAGE:
        raise IncidentError(f"a message is at most {MAX_MESSAGE} characters")
    before = snapshot(incident)
    if message.strip():
        _add_update(incident, actor, message)
    incident.state, incident.resolved_at = RESOLVED, clock.now()
    audit.record(actor, "incident.resolve", incident, before=before, after=snapshot(incident))
    db.session.commit()
    return incident


def resolve_if_open(incident_id: int, actor: User | str, message: str) -> Incident | None:
    """Resolve the incident with ``message`` as its last update, unless it is resolved already (by an operator,
    or by another worker in the same instant); None then. The state changes by compare-and-set, so when two
    workers finish a disaster run's last restores together the customers still get one final update."""
    incident = db.session.get(Incident, incident_id)
    if incident is None or incident.state != OPEN:
        return None
    before = snapshot(incident)
    won = db.session.execute(update(Incident).where(Incident.id == incident_id, Incident.state == OPEN)
                             .values(state=RESOLVED, resolved_at=clock.now())).rowcount  # type: ignore[attr-defined]
    if not won:
        db.session.rollback()
        return None
    db.session.refresh(incident)
    _add_update(incident, actor, message[:MAX_MESSAGE])
    audit.record(actor, "incident.resolve", incident, before=before, after=snapshot(incident))
    db.session.commit()
    return incident


def _add_update(incident: Incident, actor: User | str, message: str) -> IncidentUpdate:
    update = IncidentUpdate(incident=incident, at=clock.now(), author=_who(actor), message=message.strip(),
                            author_id=actor.id if isinstance(actor, User) else None)
    db.session.add(update)
    return update


def _who(actor: User | str) -> str:
    return actor.email if isinstance(actor, User) else str(actor)


def snapshot(incident: Incident) -> dict[str, Any]:
    return {"kind": incident.kind, "title": incident.title, "state": incident.state,
            "scope": scope_label(incident), "starts_at": _iso(incident.starts_at), "ends_at": _iso(incident.ends_at)}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="minutes") if moment else None


# -- who is affected -------------------------------------------------------------------------------------

def scope_label(incident: Incident) -> str:
    if incident.scope_all:
        return "all organisations"
    if incident.pool:
        return f"pool {incident.pool}"
    return f"{len(incident.organisation_ids)} organisation(s)"


def _pool_filter(pool: str) -> Any:
    """Disks on the pool: ``rbd:POOL/...``; ``file`` stands for ``file:`` disks, as in disaster mode's scopes."""
    if pool == "file":
        return Disk.source.startswith("file:")
    return Disk.source.startswith(f"rbd:{pool}/", autoescape=True)


def affected_organisation_ids(incident: Incident) -> set[int] | None:
    """The organisations the incident touches; None means all of them."""
    if incident.scope_all:
        return None
    if incident.pool:
        return set(db.session.scalars(select(VM.organisation_id).join(Disk).where(_pool_filter(incident.pool))))
    return set(incident.organisation_ids)


def affected_vms(incident: Incident, organisation_id: int) -> list[VM] | None:
    """The organisation's VMs the incident touches (those on the pool); None means all of them."""
    if not incident.pool:
        return None
    return list(db.session.scalars(
        select(VM).join(Disk).where(VM.organisation_id == organisation_id, _pool_filter(incident.pool),
                                    VM.deletion_due_at.is_(None)).order_by(VM.name)).unique())


def _visible(user: User) -> set[int] | None:
    ids = access.visible_org_ids(user)
    return None if ids is None else set(db.session.scalars(ids))


def _touches(affected: set[int] | None, visible: set[int] | None) -> bool:
    if visible is None:
        return True  # operators see every incident
    return affected is None or bool(affected & visible)


def current_for(user: User, now: datetime | None = None) -> list[Incident]:
    """Incidents to show in the banner: open, not ended, touching an organisation the user may see
    (announced maintenance windows from their announcement on)."""
    moment = now or clock.now()
    candidates = db.session.scalars(
        select(Incident).where(Incident.state == OPEN, or_(Incident.ends_at.is_(None), Incident.ends_at > moment))
        .order_by(Incident.starts_at)).all()
    if not candidates:
        return []
    visible = _visible(user)
    return [i for i in candidates if _touches(affected_organisation_ids(i), visible)]


def recent_for(user: User, now: datetime | None = None) -> list[Incident]:
    """Incidents resolved or ended within ``RECENT`` that touch the user's organisations (newest first)."""
    moment = now or clock.now()
    since = moment - RECENT
    rows = db.session.scalars(
        select(Incident).where(or_(
            (Incident.state == RESOLVED) & (Incident.resolved_at >= since),
            (Incident.state == OPEN) & (Incident.ends_at <= moment) & (Incident.ends_at >= since),
        )).order_by(Incident.starts_at.desc())).all()
    visible = _visible(user)
    return [i for i in rows if _touches(affected_organisation_ids(i), visible)]


def get_for(user: User, incident_id: int) -> Incident | None:
    """The incident if the user may see it (operators: any)."""
    incident = db.session.get(Incident, incident_id)
    if incident is None or not _touches(affected_organisation_ids(incident), _visible(user)):
        return None
    return incident


# -- the restore queue as a customer sees it -------------------------------------------------------------

@dataclass(frozen=True)
class QueueEntry:
    restore: Restore
    position: int | None  # 1 + restores (any tenant's) that will start before this one; None once running
    seconds_left: float | None  # None: unknown (nothing measured yet)
    finishes_at: datetime | None


def queue_for(user: User, now: datetime | None = None) -> list[QueueEntry]:
    """The user's VMs' queued and running restores with their place in the whole queue and an ETA.

    Positions and ETAs come from ``portal.services.eta.queue`` (the one model every page uses); they count
    other tenants' restores, but only the user's own are listed.
    """
    moment = now or clock.now()
    estimates = eta.queue()
    if not estimates:
        return []
    query = access.scope_to_user(select(Restore).join(VM).where(Restore.id.in_(list(estimates))),
                                 VM.organisation_id, user)
    own = db.session.scalars(query.options(joinedload(Restore.vm))).all()
    entries = []
    for restore in own:
        estimate = estimates[restore.id]
        left = estimate.seconds_left
        entries.append(QueueEntry(restore, estimate.position, left,
                                  None if left is None else moment + timedelta(seconds=left)))
    entries.sort(key=lambda e: (e.position is not None, e.position or 0, e.restore.id))
    return entries[:QUEUE_LIMIT]


def finished_for(user: User, since: datetime) -> list[Restore]:
    """The user's VMs' restores that finished (done or failed) since ``since``, newest first."""
    query = access.scope_to_user(
        select(Restore).join(VM).where(Restore.state.in_((DONE, FAILED)), Restore.finished_at >= since),
        VM.organisation_id, user)
    return list(db.session.scalars(query.order_by(Restore.finished_at.desc()).limit(QUEUE_LIMIT)))
