"""How a disaster run ends: when its last restore reaches a final state, the outcome is recorded on the run and
its incident resolved with a final update for the customers.

Apart from ``disaster`` (which plans and starts runs through ``runs``) because ``runs`` ends a run when a restore
is cancelled, and must not import the module that imports it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from .. import clock
from ..extensions import db
from ..models import DisasterRestore, DisasterRun, Incident, Restore
from ..models.runs import ACTIVE_STATES
from . import audit, incidents

log = logging.getLogger(__name__)

FINISHER = "system:disaster"  # the actor of a run's automatic end (audit log, incident update)
SWEPT = 100  # the latest runs the scheduler checks for an end nobody recorded


def is_active(run: DisasterRun) -> bool:
    return db.session.scalar(
        select(Restore.id).join(DisasterRestore, DisasterRestore.restore_id == Restore.id)
        .where(DisasterRestore.run_id == run.id, Restore.state.in_(ACTIVE_STATES)).limit(1)) is not None


def outcome(run: DisasterRun) -> dict[str, int]:
    """How many of the run's restores are in each state."""
    counts: dict[str, int] = {}
    for state in db.session.scalars(select(Restore.state).join(DisasterRestore, DisasterRestore.restore_id ==
                                                              Restore.id).where(DisasterRestore.run_id == run.id)):
        counts[state] = counts.get(state, 0) + 1
    return counts


def final_update(counts: dict[str, int], at: datetime) -> str:
    """The customers' last word on a run: when it ended and how (numbers only: the incident may span tenants)."""
    total = sum(counts.values())
    parts = [f"{counts[s]} {s}" for s in ("done", "failed", "cancelled") if counts.get(s)]
    text = (f"Disaster recovery finished at {at:%Y-%m-%d %H:%M} UTC: all {total} restore(s) have ended "
            f"({', '.join(parts)}). Each restore's page shows where its disk was restored")
    if counts.get("failed") or counts.get("cancelled"):
        return text + "; our operators are following up the restores that failed or were cancelled."
    return text + "."


def close_if_finished(restore_id: int) -> Incident | None:
    """End the disaster run of ``restore_id`` if that was its last unfinished restore: record the outcome on
    the run and resolve its incident with a final update. Returns the incident it resolved, else None.

    Called where a restore reaches a final state; never raises into that caller (the restore is recorded
    already; the scheduler's sweep tries again).
    """
    try:
        run = db.session.scalar(select(DisasterRun).join(DisasterRestore, DisasterRestore.run_id == DisasterRun.id)
                                .where(DisasterRestore.restore_id == restore_id))
        return _close(run) if run is not None else None
    except Exception:  # noqa: BLE001 - the restore's own state is committed; the next tick sweeps again
        log.exception("the disaster run of restore %s could not be closed", restore_id)
        db.session.rollback()
        return None


def close_finished(limit: int = SWEPT) -> list[int]:
    """The scheduler's sweep: end the latest runs whose restores are all final but whose end was not recorded
    (a worker that died after its restore's last write; the reconciler failing a lost restore). Returns the
    ids of the runs it ended."""
    ended = []
    for run in recent_runs(limit):
        if "finished_at" in (run.summary or {}) or is_active(run):
            continue
        _close(run)
        ended.append(run.id)
    return ended


def _close(run: DisasterRun) -> Incident | None:
    if is_active(run):
        return None
    summary = dict(run.summary or {})
    moment = clock.now()
    counts = outcome(run)
    if "finished_at" not in summary:
        run.summary = {**summary, "finished_at": moment.isoformat(timespec="seconds"), "outcome": counts}
        audit.record(FINISHER, "disaster.finish", run, label=f"disaster run {run.id}: {run.scope_label}",
                     organisation_id=int(run.scope_value) if run.scope == "organisation" else None,
                     after={"outcome": counts})
        db.session.commit()
    incident_id = summary.get("incident")
    if incident_id is None:
        return None
    return incidents.resolve_if_open(int(incident_id), FINISHER, final_update(counts, moment))


def recent_runs(limit: int = 20) -> list[DisasterRun]:
    return list(db.session.scalars(select(DisasterRun).order_by(DisasterRun.created_at.desc(),
                                                                DisasterRun.id.desc()).limit(limit)))
