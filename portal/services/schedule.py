"""The scheduler's decisions, one tick at a time, with the clock passed in (tested with a fixed one).

- A backup is due when a VM's last good backup would exceed its RPO before the next tick, minus a
  per-VM offset (up to a tenth of the RPO, from the VM id) that spreads start times so VMs do not all start
  on the hour, and minus one and a half times the VM's last backup's duration, so the new point exists
  before the RPO runs out. After downtime every overdue VM is due at once, and only once (an active run blocks more).
- RPO misses raise a notice for the organisation (once per VM until it is back within its RPO).
- Verifications: every backup point re-verified at least every 7 days, newest first, a bounded number at
  once (``services.verification``).
- The reconciler re-queues rows whose job Redis no longer knows (Redis restarted empty) and those whose
  worker died mid-job (the engine resumes a restore from its partial output); after three attempts the
  row is failed with the reason, so no request disappears silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from ..extensions import db
from ..models import VM, BackupRun, Restore, Verification
from ..models.runs import ACTIVE_STATES, DONE, FAILED, QUEUED, RUNNING
from . import disaster, drills, notify, queue, ranking, runs, verification
from .status import statuses

TICK = timedelta(minutes=1)
MAX_ATTEMPTS = 3


@dataclass
class TickResult:
    backups: list[int] = field(default_factory=list)  # VM ids a backup was requested for
    rpo_missed: list[int] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    verifications: list[int] = field(default_factory=list)  # Verification ids queued
    errors: list[str] = field(default_factory=list)  # steps that failed this tick, with why


def spread(vm: VM, rpo_minutes: int) -> timedelta:
    """A stable offset for the VM, up to a tenth of its RPO."""
    window = max(1, rpo_minutes * 6)  # a tenth of the RPO, in seconds
    return timedelta(seconds=(vm.id * 7919) % window)


def backup_durations() -> dict[int, timedelta]:
    """How long each VM's most recent successful backup took (VMs never backed up are absent)."""
    latest = select(func.max(BackupRun.id)).where(BackupRun.state == DONE).group_by(BackupRun.vm_id)
    rows = db.session.execute(select(BackupRun.vm_id, BackupRun.started_at, BackupRun.finished_at)
                              .where(BackupRun.id.in_(latest)))
    return {vm_id: finished - started for vm_id, started, finished in rows if started and finished}


def due_backups(now: datetime, tick: timedelta = TICK) -> list[VM]:
    """VMs whose next backup must start now for its point to exist before the RPO runs out: the last good
    point plus the RPO, less the spread and less one and a half times the VM's last backup's duration."""
    vms = list(db.session.scalars(select(VM).where(VM.deletion_due_at.is_(None), VM.missing_since.is_(None))))
    active = set(db.session.scalars(select(BackupRun.vm_id).where(BackupRun.state.in_(ACTIVE_STATES))))
    state = statuses(vms)
    durations = backup_durations()
    due = []
    for vm in vms:
        policy = vm.policy
        if policy is None or policy.excluded or not vm.disks or vm.id in active:
            continue
        last = state[vm.id].last_good
        rpo = timedelta(minutes=policy.rpo_minutes)
        lead = spread(vm, policy.rpo_minutes) + durations.get(vm.id, timedelta(0)) * 1.5
        if last is None or last + rpo - lead <= now + tick:
            due.append(vm)
    return due


def rpo_misses(now: datetime) -> list[VM]:
    vms = list(db.session.scalars(select(VM).where(VM.deletion_due_at.is_(None))))
    state = statuses(vms)
    return [vm for vm in vms if vm.policy and not vm.policy.excluded and state[vm.id].last_good is not None
            and now - state[vm.id].last_good > timedelta(minutes=vm.policy.rpo_minutes)]  # type: ignore[operator]


def tick(now: datetime) -> TickResult:
    """One round of the scheduler. Each step stands alone: one that fails (Redis away, say) is rolled back and
    reported in ``result.errors`` while the others still run, and the database-only steps come first, so an
    RPO miss is recorded and announced even when the queues are unreachable."""
    result = TickResult()
    steps: list[tuple[str, Callable[[], object]]] = [
        ("RPO notices", lambda: _rpo_notices(now, result)),
        ("notifications", lambda: notify.tick(now, result.rpo_missed)),  # RPO events, reminders, digests
        ("backups", lambda: _request_backups(now, result)),
        ("verifications", lambda: result.verifications.extend(verification.schedule_due(now))),
        ("fire drills", lambda: drills.schedule(now)),  # each VM at least monthly, bounded (services/drills.py)
        ("reconcile", lambda: reconcile(result, now)),
        ("disaster runs", disaster.close_finished),  # a run whose last restore ended unseen (or just failed above)
    ]
    for name, step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - reported, and the next tick tries again
            db.session.rollback()
            result.errors.append(f"{name}: {type(exc).__name__}: {exc}")
    return result


def _request_backups(now: datetime, result: TickResult) -> None:
    for vm in due_backups(now):
        runs.request_backup(vm, "system:scheduler")
        result.backups.append(vm.id)


def _rpo_notices(now: datetime, result: TickResult) -> None:
    missed = rpo_misses(now)
    open_episodes = {row.vm_id: row for row in notify.open_notices(notify.RPO_NOTICE)}
    for vm in missed:
        if vm.id not in open_episodes and vm.policy is not None:  # rpo_misses() returns VMs with a policy
            notify.notice(notify.RPO_NOTICE, vm.organisation_id, f"{vm.name} has no good backup within its RPO of "
                          f"{vm.policy.rpo_minutes} minutes", key=f"vm:{vm.id}", vm=vm, at=now)
            result.rpo_missed.append(vm.id)
    missed_ids = {vm.id for vm in missed}
    for vm_id, row in open_episodes.items():
        if vm_id not in missed_ids:
            row.dismissed_at = now  # back within its RPO
    db.session.commit()


def abandon_jobs_of_dead_workers(connection: object, now: datetime | None = None) -> None:
    """Mark failed the jobs whose worker died with them (its machine lost, the whole worker killed).

    Such a job stays "started" in Redis until its heartbeat expires, about a minute after the last beat;
    RQ's registry cleanup then moves it to the failed registry, which ``reconcile`` re-queues. Workers run
    that cleanup only every ten minutes, and not at all when none is left; the scheduler runs it every tick.
    """
    from rq.registry import StartedJobRegistry

    stamp = now.replace(tzinfo=UTC).timestamp() if now is not None else None
    for name in queue.QUEUES:
        StartedJobRegistry(name, connection=connection).cleanup(timestamp=stamp)  # type: ignore[arg-type]


def reconcile(result: TickResult, now: datetime | None = None) -> None:
    """Re-queue rows Redis lost or whose worker died; fail them after MAX_ATTEMPTS."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    connection = queue.connection()
    abandon_jobs_of_dead_workers(connection, now)
    rows: list[BackupRun | Restore | Verification] = [
        *db.session.scalars(select(BackupRun).where(BackupRun.state.in_((QUEUED, RUNNING)))),
        *db.session.scalars(select(Restore).where(Restore.state.in_((QUEUED, RUNNING)))),
        *db.session.scalars(select(Verification).where(Verification.state.in_((QUEUED, RUNNING)))),
    ]
    for row in rows:
        try:
            job = Job.fetch(row.job_id, connection=connection)
            found = job.get_status()
            status: str | None = str(getattr(found, "value", found))
        except NoSuchJobError:
            status = None
        if status == "queued" and isinstance(row, Restore) and row.state == QUEUED:
            ranking.heal(row, job.origin)  # re-ranked while Redis was away: onto its class's queue
        if status in ("queued", "started", "scheduled", "deferred"):
            continue  # Redis has it and a worker will run (or is running) it
        # Lost: Redis forgot the job, or its worker died (RQ moves abandoned jobs to the failed registry).
        if row.attempts >= MAX_ATTEMPTS:
            row.state, row.error = FAILED, f"gave up after {row.attempts} attempts (worker or queue lost)"
            result.failed.append(row.job_id)
            continue
        row.state = QUEUED
        db.session.commit()
        name, function = _job_of(row)
        try:
            Job.fetch(row.job_id, connection=connection).delete()
        except NoSuchJobError:
            pass
        queue.enqueue(name, function, row.id, job_id=row.job_id)
        result.requeued.append(row.job_id)
    db.session.commit()


def _job_of(row: BackupRun | Restore | Verification) -> tuple[str, str]:
    """The queue and job function a row belongs to."""
    if isinstance(row, BackupRun):
        return "backup", "jobs.backup.run_backup"
    if isinstance(row, Verification):
        return verification.QUEUE, verification.FUNCTION
    return queue.queue_of(row), "jobs.restore.run_restore"
