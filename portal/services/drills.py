"""Fire drills: prove that backup points come back, on a schedule and on demand.

A drill restores a VM's newest usable backup point into scratch space, checks it and throws it away
(``jobs.drill.run_drill``). The row is committed first, the job (queue ``maintenance``) second.

Scheduling (``schedule``, called from the scheduler's tick): a VM is due when its last passed drill is
older than ``DRILL_INTERVAL_DAYS`` (default 30) minus a stable per-VM offset of up to a quarter of the
interval, so a fleet drilled on one day spreads out over the following months instead of coming due all
at once; a failed drill is retried after ``DRILL_RETRY_HOURS`` (24). At most ``DRILL_MAX_ACTIVE`` (2)
drills are queued or running at a time, longest-untested VMs first, and never two for one VM: drills
use the workers that restores need, and a scratch image takes disk space.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from ..errors import DomainError
from ..extensions import db
from ..models import VM, BackupPoint, FireDrill, User
from ..models.operations import PASSED
from ..models.runs import ACTIVE_STATES, FAILED, QUEUED, RUNNING
from . import audit, queue

FUNCTION = "jobs.drill.run_drill"
MAX_ATTEMPTS = 3


class DrillError(DomainError, ValueError):
    """A drill that cannot be requested; the message says why."""


def _config(key: str, default: int) -> int:
    return int(current_app.config.get(key, default))


def usable_point(vm: VM) -> BackupPoint | None:
    """The newest point a drill can restore: not damaged or distrusted, not pending deletion."""
    return db.session.scalars(
        select(BackupPoint).where(BackupPoint.vm_id == vm.id, BackupPoint.good())
        .order_by(BackupPoint.created_at.desc(), BackupPoint.id.desc()).limit(1)).first()


def active_drill(vm: VM) -> FireDrill | None:
    return db.session.scalars(select(FireDrill).where(FireDrill.vm_id == vm.id,
                                                      FireDrill.state.in_(ACTIVE_STATES)).limit(1)).first()


def request_drill(vm: VM, actor: User | str, trigger: str = "operator") -> FireDrill:
    """Commit a drill row for the VM's newest usable point, then queue its job."""
    if vm.pending_deletion:
        raise DrillError("the VM is being deleted")
    if active_drill(vm) is not None:
        raise DrillError(f"a drill of {vm.name} is already queued or running")
    point = usable_point(vm)
    if point is None:
        raise DrillError(f"{vm.name} has no usable backup point to drill")
    drill = FireDrill(vm_id=vm.id, backup_point_id=point.id, trigger=trigger, state=QUEUED,
                      requested_by=actor.email if isinstance(actor, User) else actor)
    db.session.add(drill)
    db.session.flush()
    drill.job_id = f"drill-{drill.id}"
    audit.record(actor, "drill.request", vm, after={"drill": drill.id, "backup": point.revision,
                                                     "trigger": trigger})
    db.session.commit()
    queue.enqueue("maintenance", FUNCTION, drill.id, job_id=drill.job_id)
    return drill


def spread(vm: VM, interval: timedelta) -> timedelta:
    """A stable offset for the VM, up to a quarter of the interval."""
    window = max(1, int(interval.total_seconds() // 4))
    return timedelta(seconds=(vm.id * 104729) % window)


def due(now: datetime) -> list[VM]:
    """VMs due for a drill, longest-untested first (never drilled before everything else)."""
    interval = timedelta(days=_config("DRILL_INTERVAL_DAYS", 30))
    retry = timedelta(hours=_config("DRILL_RETRY_HOURS", 24))
    passed: dict[int, datetime] = dict(db.session.execute(  # type: ignore[arg-type]
        select(FireDrill.vm_id, func.max(FireDrill.finished_at))
        .where(FireDrill.result == PASSED).group_by(FireDrill.vm_id)).all())
    tried: dict[int, datetime] = dict(db.session.execute(
        select(FireDrill.vm_id, func.max(FireDrill.created_at)).group_by(FireDrill.vm_id)).all())
    active = set(db.session.scalars(select(FireDrill.vm_id).where(FireDrill.state.in_(ACTIVE_STATES))))
    with_points = set(db.session.scalars(
        select(BackupPoint.vm_id).where(BackupPoint.good()).distinct()))
    vms = db.session.scalars(select(VM).where(VM.deletion_due_at.is_(None), VM.missing_since.is_(None)))
    found = []
    for vm in vms:
        if vm.id in active or vm.id not in with_points:
            continue
        last_passed, last_try = passed.get(vm.id), tried.get(vm.id)
        if last_passed is not None and last_passed + interval - spread(vm, interval) > now:
            continue
        if last_try is not None and last_try + retry > now and (last_passed is None or last_try > last_passed):
            continue  # the last attempt failed recently: wait before trying again
        found.append(vm)
    return sorted(found, key=lambda vm: (passed.get(vm.id) or datetime.min, vm.id))


def schedule(now: datetime) -> list[int]:
    """Request the drills that are due, within the bound on active drills; re-queue lost drill jobs.

    Returns the ids of the drills requested.
    """
    reconcile()
    active = db.session.scalar(select(func.count()).select_from(FireDrill)
                               .where(FireDrill.state.in_(ACTIVE_STATES))) or 0
    room = max(_config("DRILL_MAX_ACTIVE", 2) - active, 0)
    requested = []
    for vm in due(now)[:room]:
        requested.append(request_drill(vm, "system:scheduler", trigger="schedule").id)
    return requested


def reconcile() -> list[str]:
    """Re-queue drill rows whose job Redis lost or whose worker died; fail them after MAX_ATTEMPTS."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    connection = queue.connection()
    requeued = []
    for drill in db.session.scalars(select(FireDrill).where(FireDrill.state.in_((QUEUED, RUNNING)))):
        try:
            status = Job.fetch(drill.job_id, connection=connection).get_status()
            state: str | None = str(getattr(status, "value", status))
        except NoSuchJobError:
            state = None
        if state in ("queued", "started", "scheduled", "deferred"):
            continue
        if drill.attempts >= MAX_ATTEMPTS:
            drill.state, drill.result = FAILED, "failed"
            drill.error = f"gave up after {drill.attempts} attempts (worker or queue lost)"
            db.session.commit()
            continue
        drill.state = QUEUED
        db.session.commit()
        try:
            Job.fetch(drill.job_id, connection=connection).delete()
        except NoSuchJobError:
            pass
        queue.enqueue("maintenance", FUNCTION, drill.id, job_id=drill.job_id)
        requeued.append(drill.job_id)
    return requeued


def tested_on(point_ids: Iterable[int]) -> dict[int, datetime]:
    """When each backup point last passed a drill (points never drilled are absent)."""
    ids = list(point_ids)
    if not ids:
        return {}
    return dict(db.session.execute(  # type: ignore[arg-type]
        select(FireDrill.backup_point_id, func.max(FireDrill.finished_at))
        .where(FireDrill.backup_point_id.in_(ids), FireDrill.result == PASSED)
        .group_by(FireDrill.backup_point_id)).all())


def recent(limit: int = 50) -> list[FireDrill]:
    return list(db.session.scalars(select(FireDrill).order_by(FireDrill.created_at.desc(), FireDrill.id.desc())
                                   .limit(limit)))


def last_drills(vms: Iterable[VM]) -> dict[int, FireDrill]:
    """Each VM's most recent drill."""
    ids = [vm.id for vm in vms]
    if not ids:
        return {}
    newest = (select(FireDrill.vm_id, func.max(FireDrill.id).label("id")).where(FireDrill.vm_id.in_(ids))
              .group_by(FireDrill.vm_id).subquery())
    rows = db.session.scalars(select(FireDrill).join(newest, FireDrill.id == newest.c.id))
    return {drill.vm_id: drill for drill in rows}
