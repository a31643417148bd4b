"""Rolling verification: every backup point re-read and re-hashed at least every 7 days, newest first.

Why rolling: damage found early can still be repaired (the next backup rewrites quarantined chunks from the
source), damage found during a restore cannot. Why bounded: verification reads whole images, so at most
``VERIFY_MAX_ACTIVE`` (default 2) run at once across the installation, never two for one VM, and they sit on
the ``maintenance`` queue, behind every restore and backup. Keep it below the number of workers.

A point is due when its last verification *attempt* is older than ``VERIFY_EVERY_DAYS`` (7) minus
``VERIFY_LEAD_HOURS`` (24: the slack to get it done in time). The engine sets ``verified_at`` only when a
revision comes out clean, so a distrusted point would otherwise be due again at every tick (a whole-repository
verification, an audit row and a ``verify.damage`` event a minute). So a point also counts as attempted when a
finished (``done``) verification of its VM that covered it (its revision, or all revisions) ended within
that interval and was requested after the VM's newest backup point: a new backup (which may rewrite the
damaged chunks) makes the damaged points due again at once, otherwise they wait for the interval.
Due points are taken newest first, one verification per VM: a single due point is verified alone, several
due points of one VM are verified in one pass over the whole repository (chunks shared by revisions are read
once instead of once per revision).
Points pending deletion are skipped. A VM whose verification failed (repository unreadable, say) is not asked
again for ``VERIFY_RETRY_HOURS`` (6), so a broken VM does not queue a failing job every minute.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import aliased

from ..errors import DomainError
from ..extensions import db
from ..models import VM, BackupPoint, User, Verification
from ..models.runs import ACTIVE_STATES, DONE, FAILED, QUEUED
from . import audit, queue

QUEUE = "maintenance"
FUNCTION = "jobs.verify.run_verification"


class VerificationError(DomainError, ValueError):
    """A verification that cannot be requested; the message says why."""


def interval() -> timedelta:
    return timedelta(days=float(current_app.config.get("VERIFY_EVERY_DAYS", 7)))


def lead() -> timedelta:
    return timedelta(hours=float(current_app.config.get("VERIFY_LEAD_HOURS", 24)))


def max_active() -> int:
    return int(current_app.config.get("VERIFY_MAX_ACTIVE", 2))


def active_for(vm: VM) -> Verification | None:
    query = select(Verification).where(Verification.vm_id == vm.id, Verification.state.in_(ACTIVE_STATES))
    return db.session.scalars(query.limit(1)).first()


def request(vm: VM, actor: User | str, point: BackupPoint | None = None) -> Verification:
    """Queue a verification of ``point`` (or of all the VM's revisions); one active per VM: that one is returned.

    The row is committed before the job is queued; the job gets only its id.
    """
    running = active_for(vm)
    if running is not None:
        return running
    if point is not None and (point.vm_id != vm.id or point.pending_deletion):
        raise VerificationError("that backup point is not available")
    row = Verification(vm_id=vm.id, backup_point_id=point.id if point else None,
                       revision=point.revision if point else "", state=QUEUED,
                       requested_by=actor.email if isinstance(actor, User) else actor)
    db.session.add(row)
    db.session.flush()
    row.job_id = f"verify-{row.id}"
    audit.record(actor, "verification.request", vm,
                 after={"verification": row.id, "revision": row.revision or "all"})
    db.session.commit()
    queue.enqueue(QUEUE, FUNCTION, row.id, job_id=row.job_id)
    return row


def _due_filter(now: datetime) -> tuple[ColumnElement[bool], ...]:
    cutoff = now - interval() + lead()
    other = aliased(BackupPoint)
    newest_point = select(func.max(other.created_at)).where(other.vm_id == BackupPoint.vm_id).scalar_subquery()
    attempted = exists().where(and_(
        Verification.vm_id == BackupPoint.vm_id, Verification.state == DONE, Verification.finished_at > cutoff,
        or_(Verification.revision == "", Verification.revision == BackupPoint.revision),
        Verification.created_at >= newest_point))
    return (BackupPoint.deletion_due_at.is_(None), VM.deletion_due_at.is_(None),
            or_(BackupPoint.verified_at.is_(None), BackupPoint.verified_at <= cutoff), ~attempted)


def due_points(vm: VM, now: datetime) -> list[BackupPoint]:
    """The VM's points not verified (or attempted) within the interval minus the lead, newest first."""
    query = (select(BackupPoint).join(VM, VM.id == BackupPoint.vm_id).where(BackupPoint.vm_id == vm.id,
                                                                              *_due_filter(now))
             .order_by(BackupPoint.created_at.desc(), BackupPoint.id.desc()))
    return list(db.session.scalars(query))


def schedule_due(now: datetime) -> list[int]:
    """Queue verifications for due points (see the module docstring); return the new rows' ids.

    One grouped query (VMs by their newest due point), so a tick costs the same for 10 or 100,000 points.
    """
    active = db.session.scalar(select(func.count()).select_from(Verification)
                               .where(Verification.state.in_(ACTIVE_STATES))) or 0
    room = max_active() - active
    if room <= 0:
        return []
    retry = timedelta(hours=float(current_app.config.get("VERIFY_RETRY_HOURS", 6)))
    busy = select(Verification.vm_id).where(or_(
        Verification.state.in_(ACTIVE_STATES),
        (Verification.state == FAILED) & (Verification.finished_at > now - retry)))
    newest = func.max(BackupPoint.created_at)
    per_vm = db.session.execute(
        select(BackupPoint.vm_id, func.count(BackupPoint.id), newest).join(VM, VM.id == BackupPoint.vm_id)
        .where(*_due_filter(now), BackupPoint.vm_id.not_in(busy))
        .group_by(BackupPoint.vm_id).order_by(newest.desc(), BackupPoint.vm_id).limit(room)
    ).all()
    created: list[int] = []
    for vm_id, count, _ in per_vm:
        vm = db.session.get(VM, vm_id)
        point = None if count > 1 else due_points(vm, now)[0]  # type: ignore[arg-type]
        created.append(request(vm, "system:scheduler", point).id)  # type: ignore[arg-type]
    return created
