"""Requesting backups and restores: the row first (committed), the job second."""

from __future__ import annotations

from typing import Any

from ..extensions import db
from ..models import VM, BackupPoint, BackupRun, Restore, User
from ..models.runs import ACTIVE_STATES, CANCELLED, QUEUED
from . import audit, queue
from .priority import priority_of


class RestoreError(ValueError):
    """A restore request that cannot be accepted; the message says why."""


def request_backup(vm: VM, actor: User | str = "system:scheduler") -> BackupRun:
    run = BackupRun(vm_id=vm.id, state=QUEUED)
    db.session.add(run)
    db.session.flush()
    run.job_id = f"backup-{run.id}"
    audit.record(actor, "backup.request", vm, after={"run": run.id})
    db.session.commit()
    queue.enqueue("backup", "jobs.backup.run_backup", run.id, job_id=run.job_id)
    return run


def request_restore(actor: User, vm: VM, point: BackupPoint, kind: str, paths: list[str] | None = None,
                    target: dict[str, Any] | None = None) -> Restore:
    if kind not in ("full", "files"):
        raise RestoreError("kind must be 'full' or 'files'")
    if point.vm_id != vm.id or point.pending_deletion:
        raise RestoreError("that backup point is not available")
    if kind == "files":
        clean = [p for p in (paths or []) if isinstance(p, str) and p.startswith("/") and len(p) < 4096]
        if not clean or len(clean) != len(paths or []) or len(clean) > 1000:
            raise RestoreError("a file restore needs 1 to 1000 absolute paths")
        paths = clean
    priority = priority_of(vm)
    restore = Restore(vm_id=vm.id, backup_point_id=point.id, kind=kind, paths=paths or [],
                      target=target or {"type": "new"}, priority_class=priority.klass,
                      priority_reason=priority.reason, requested_by_id=actor.id, state=QUEUED)
    db.session.add(restore)
    db.session.flush()
    restore.job_id = f"restore-{restore.id}"
    audit.record(actor, "restore.request", vm, after={"restore": restore.id, "kind": kind,
                                                       "backup": point.revision, "class": priority.klass})
    db.session.commit()
    queue.enqueue(queue.restore_queue(restore.priority_class), "jobs.restore.run_restore", restore.id,
                  job_id=restore.job_id)
    return restore


def cancel_restore(actor: User, restore: Restore) -> bool:
    """Cancel a restore that has not started; a running one is not interrupted (it may be half-written)."""
    if restore.state != QUEUED:
        return False
    restore.state = CANCELLED
    audit.record(actor, "restore.cancel", restore.vm, after={"restore": restore.id})
    db.session.commit()
    try:
        from rq.job import Job

        Job.fetch(restore.job_id, connection=queue.connection()).cancel()
    except Exception:  # noqa: BLE001,S110 - the row says cancelled; the job checks it before it starts anyway
        pass
    return True


def is_active(row: BackupRun | Restore) -> bool:
    return row.state in ACTIVE_STATES
