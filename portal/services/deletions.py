"""Deletion as a state with a grace period: request, undo until due, purge after. Nothing here is instant.

Why: a provider once lost customer data because something read "absent" as "delete". So a deletion is only
ever a request with a due time (``Deletable``); the object sits in the recycle bin with Undo until then, the
organisation gets a notice, and only ``purge_due`` (run by the scheduler, or ``lifeboat deletions purge``)
acts, after the due time, and every step is an audit row.

Grace periods come from one place, ``app.config["DELETION_GRACE_DAYS"]``, by kind: ``backup``, ``vm``,
``user``, ``organisation`` (customer data, 14/14/14/30 days by default), ``disk`` (1 day: the confirmed removal
of a disk missing from the feed; no data goes, the VM's backups stop waiting for it) and ``credential`` (0: at
once).
A kind configured with 0 days is purged in the same request. A user's *sign-in* is a credential: it stops
at once when their deletion is requested (``User.is_active`` is false while pending), while the account
itself waits the ``user`` grace so an undo brings it back intact. Future token models map to ``credential``.

Who may delete (and undo):
- customer members: nothing;
- customer admins: their organisation's backup points, non-production VMs and customer users (not
  themselves); production VMs are deleted by the account manager or an operator (a second pair of eyes on
  the most critical data), but a customer admin may *undo* any deletion of their organisation's VMs, backups
  and users: undo is the safe direction. Never the organisation itself;
- account managers: all of that (production VMs included) and the organisations assigned to them;
- operators: everything, including staff accounts. Nobody deletes their own account (no lock-out by accident).
Objects outside the actor's tenancy are "not found" (404), exactly like ids that do not exist.

What purge does, per kind:
- disk (a disk of a VM that an inventory sync marked missing, confirmed removed on purpose): only such a disk
  can be asked for (a disk the feed lists is refused), and when the feed lists it again before the due time
  the request is cancelled (by the sync, or blocked here). Purge removes the inventory row: the VM's next
  backups no longer include it, nor fail on it. No storage is touched: its data stays in the older points
  until retention forgets them. Deferred while a backup or restore of the VM is queued or running.
- backup point: ``storage.retention.forget`` through the engine (the portal never removes storage itself;
  chunks go later in the engine's gc, after its own grace). A revision protected in the catalog or in the
  engine is *not* forgotten: the deletion is cancelled, the row kept, and why is audited and noticed.
  A revision already absent from an existing repository is treated as forgotten. Any other storage error
  (root not mounted, repository missing, lock) keeps everything pending for the next run: absence of
  storage is never read as "already deleted".
- VM: its backups follow the VM's own grace (no per-point requests needed). If any of its revisions is
  protected, nothing of the VM is touched and its deletion is cancelled (audited, noticed). Otherwise every
  revision of its repository is forgotten, the catalog rows, disks and policy are removed, then the VM row.
  Backups keep running while the VM is pending, so an undo loses nothing. A VM still in the inventory feed
  comes back on the next sync as a new, empty VM: the feed adds, only people delete.
- user: anonymised in place (email, name and password cleared, inactive) rather than removed, because
  audit rows and other records point at the row; the audit log keeps the email as text.
- organisation: blocked as a whole if any VM has protected revisions; else all its VMs are purged as above,
  its users anonymised, resource groups removed, and the row stays as a tombstone for the audit log.
Work in progress wins: a point with a queued or running restore or fire drill, or a VM with a queued or
running backup, restore or drill, is *deferred* (kept pending, audited, retried next run). Finished restore
and backup-run rows go with the data they refer to (the audit log keeps who asked what, and when); a fire
drill of a purged point keeps its result without the point, a purged VM's drills go with it.
Order: the catalog rows are deleted and *flushed* before the engine forgets anything, so a database refusal
(a foreign key, say) stops the purge while storage is untouched; the commit comes after the engine.
A purged tombstone (user, organisation) has ``deletion_requested_at`` set and ``deletion_due_at`` cleared;
``is_purged`` tells. Each object is purged in its own transaction; one failure never stops the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, delete, select, update
from sqlalchemy.orm import joinedload

from storage import retention
from storage.errors import RevisionProtected, StorageError, UnknownRevision
from storage.repository import Repository, has_repository

from .. import clock
from ..errors import DomainError
from ..extensions import db
from ..models import (
    VM,
    BackupPoint,
    BackupRun,
    Disk,
    Notification,
    Organisation,
    ResourceGroup,
    Restore,
    User,
    Verification,
)
from ..models.accounts import CUSTOMER_ADMIN
from ..models.operations import FireDrill
from ..models.runs import ACTIVE_STATES
from . import access, audit, notify
from .deletables import KINDS, kind_of, label_of, organisation_id_of

#: purge order matters: a VM's points before the VM, VMs before their organisation
SYSTEM_ACTOR = "system:purge"


class DeletionError(DomainError):
    """A deletion or undo that cannot happen; ``status`` is the HTTP answer, the message is for people."""

    status = 409
    code = "deletion_refused"


class DeletionForbidden(DeletionError):
    status = 403
    code = "forbidden"


class DeletionNotFound(DeletionError):
    status = 404
    code = "not_found"


@dataclass(frozen=True)
class Pending:
    """One line of the recycle bin."""

    kind: str
    obj: Any
    label: str
    organisation: str
    requested_at: datetime | None
    due_at: datetime | None  # None: taken out of the bin (an undo), shown as kept until the page reloads
    requested_by: str


@dataclass
class PurgeReport:
    """What a purge run did: purged, blocked (kept for good, deletion cancelled), deferred (busy: next run),
    failed (an error: next run)."""

    purged: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        counts = {name: len(getattr(self, name)) for name in ("purged", "blocked", "deferred", "failed")}
        lines = [", ".join(f"{name} {count}" for name, count in counts.items())]
        lines += [f"{name}: {item}" for name in counts for item in getattr(self, name)]
        return "\n".join(lines)


# -- what things are ---------------------------------------------------------------------------------------

def grace_for(kind: str) -> timedelta:
    """The configured grace for a kind of data; unknown kinds get the longest one (fail safe)."""
    days: dict[str, float] = current_app.config["DELETION_GRACE_DAYS"]
    return timedelta(days=float(days.get(kind, max(days.values(), default=30))))


def is_purged(obj: Any) -> bool:
    """A tombstone: deletion was requested and has taken effect (users and organisations keep their row)."""
    return obj.deletion_requested_at is not None and obj.deletion_due_at is None


def _state(obj: Any) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {"deletion_requested_at": iso(obj.deletion_requested_at), "deletion_due_at": iso(obj.deletion_due_at),
            "deletion_requested_by_id": obj.deletion_requested_by_id}


# -- who may ----------------------------------------------------------------------------------------------

def refusal(actor: User, obj: Any, *, undoing: bool = False) -> str | None:
    """Why ``actor`` may not delete (or undo) ``obj``, or None when they may. Tenancy is checked separately."""
    kind = kind_of(obj)
    if kind == "user" and obj.id == actor.id:
        return "You cannot delete your own account; ask another administrator."
    if actor.is_operator:
        return None
    if not (actor.is_account_manager or actor.role == CUSTOMER_ADMIN):
        return "Only your organisation's administrators can delete or restore data."
    if kind == "user" and not obj.is_customer:
        return "Staff accounts are managed by operators."
    if kind == "organisation":
        return None if actor.is_account_manager else "Organisations are deleted by their account manager."
    if actor.is_account_manager:
        return None
    if kind == "vm" and obj.environment == "production" and not undoing:
        return ("Production VMs are deleted by your account manager or an operator; "
                "ask them, or mark the VM non-production first.")
    return None


def may_delete(actor: User, obj: Any) -> bool:
    """Whether to offer a Delete button (no queries: it runs for every row of a page)."""
    if obj.deletion_due_at is not None or is_purged(obj) or getattr(obj, "protected", False):
        return False
    return refusal(actor, obj) is None


def pending_message(obj: Any) -> str:
    """Why an object waiting for deletion is not offered for browsing or restoring (pages: 409, API: 409)."""
    return (f"The {label_of(obj)} is scheduled for deletion on {obj.deletion_due_at:%Y-%m-%d %H:%M} UTC; "
            "undo the deletion in the recycle bin to browse or restore from it.")


def may_undo(actor: User, obj: Any) -> bool:
    return obj.deletion_due_at is not None and refusal(actor, obj, undoing=True) is None


def _check_reach(actor: User, obj: Any) -> None:
    """Defence in depth: the web layer already 404s via ``access``; the service refuses the same way."""
    if actor.is_operator:
        return
    org_id = organisation_id_of(obj)
    ids = access.visible_org_ids(actor)
    if org_id is None or ids is None or org_id not in set(db.session.scalars(ids)):
        raise DeletionNotFound("Not found.")


def find(actor: User, kind: str, obj_id: int) -> Any:
    """Load a deletable object through the tenant-scoped getters: another tenant's id is a 404."""
    if kind == "backup":
        point = db.session.get(BackupPoint, obj_id)
        if point is None:
            raise DeletionNotFound("Not found.")
        return access.get_backup(actor, access.get_vm(actor, point.vm_id), obj_id)
    if kind == "vm":
        return access.get_vm(actor, obj_id)
    if kind == "disk":
        disk = db.session.get(Disk, obj_id)
        if disk is None:
            raise DeletionNotFound("Not found.")
        access.get_vm(actor, disk.vm_id)  # another tenant's disk: 404
        return disk
    if kind == "user":
        return access.get_user(actor, obj_id)
    if kind == "organisation":
        return access.get_organisation(actor, obj_id)
    raise DeletionNotFound("Not found.")


# -- request and undo -------------------------------------------------------------------------------------

def _protected_points(vm_ids: Select[Any] | list[int]) -> list[BackupPoint]:
    query = select(BackupPoint).where(BackupPoint.vm_id.in_(vm_ids), BackupPoint.protected.is_(True))
    return list(db.session.scalars(query.limit(20)))


def _blocker(obj: Any) -> str | None:
    """A reason the data must not go at all (checked at request time and again at purge time)."""
    kind = kind_of(obj)
    if kind == "disk" and obj.missing_since is None:
        return (f"The inventory feed lists disk {obj.name} of {obj.vm.name}: only a disk missing from the feed can "
                "be confirmed removed (remove it from the VM, and the next sync marks it missing).")
    if kind == "backup" and obj.protected:
        return "This backup point is protected; unprotect it before deleting it."
    if kind == "vm" and _protected_points([obj.id]):
        return f"{obj.name} has protected backup points; unprotect them before deleting the VM."
    if kind == "organisation":
        vm_ids = select(VM.id).where(VM.organisation_id == obj.id)
        if _protected_points(vm_ids):
            return f"{obj.name} has VMs with protected backup points; unprotect them first."
    return None


def request_deletion(actor: User, obj: Any, *, now: datetime | None = None) -> Any:
    """Schedule ``obj`` for deletion after its kind's grace; audited and noticed. Asking twice changes nothing."""
    _check_reach(actor, obj)
    reason = refusal(actor, obj)
    if reason:
        raise DeletionForbidden(reason)
    if is_purged(obj):
        raise DeletionError(f"The {label_of(obj)} is already deleted.")
    if obj.deletion_due_at is not None:
        return obj
    blocker = _blocker(obj)
    if blocker:
        raise DeletionError(blocker)
    moment = now or clock.now()
    kind = kind_of(obj)
    before = _state(obj)
    obj.deletion_requested_at = moment
    obj.deletion_due_at = moment + grace_for(kind)
    obj.deletion_requested_by_id = actor.id
    audit.record(actor, "deletion.request", obj, before=before, after=_state(obj) | {"kind": kind},
                 organisation_id=organisation_id_of(obj), label=label_of(obj))
    _notify(obj, moment)
    db.session.commit()
    notify.deletion_event("deletion.scheduled", obj)
    if obj.deletion_due_at <= moment:  # a kind with no grace (credentials): takes effect now
        _purge_one(kind, obj.id, actor, moment, PurgeReport())
    return obj


def request_by_policy(obj: Any, actor: str, reason: str, *, now: datetime | None = None) -> bool:
    """Schedule a deletion the system decided by policy (retention after a backup): the same grace, audit
    row, notice and undo as a person's request, without a person's permission checks. Objects that are
    protected, already pending or purged are left alone (False). Not committed: the caller's transaction."""
    if obj.deletion_due_at is not None or is_purged(obj) or _blocker(obj):
        return False
    moment = now or clock.now()
    kind = kind_of(obj)
    before = _state(obj)
    obj.deletion_requested_at = moment
    obj.deletion_due_at = moment + grace_for(kind)
    obj.deletion_requested_by_id = None
    audit.record(actor, "deletion.request", obj, before=before, after=_state(obj) | {"kind": kind, "reason": reason},
                 organisation_id=organisation_id_of(obj), label=label_of(obj))
    _notify(obj, moment)
    return True


def undo(actor: User, obj: Any, *, now: datetime | None = None) -> Any:
    """Take ``obj`` out of the recycle bin; audited, its deletion notice dismissed, and a
    ``deletion.cancelled`` notification to those who heard of the deletion."""
    _check_reach(actor, obj)
    reason = refusal(actor, obj, undoing=True)
    if reason:
        raise DeletionForbidden(reason)
    if obj.deletion_due_at is None:
        raise DeletionError(f"The {label_of(obj)} is not scheduled for deletion.")
    before = _state(obj)
    due, by_policy = obj.deletion_due_at, kind_of(obj) == "backup" and obj.deletion_requested_by_id is None
    obj.deletion_requested_at = obj.deletion_due_at = obj.deletion_requested_by_id = None
    audit.record(actor, "deletion.undo", obj, before=before, after=_state(obj) | {"kind": kind_of(obj)},
                 organisation_id=organisation_id_of(obj), label=label_of(obj))
    _dismiss_notices(obj, now or clock.now())
    db.session.commit()
    notify.deletion_cancelled(obj, due=due, by_policy=by_policy, actor=actor.email)
    return obj


def _notice_key(obj: Any) -> str:
    return f"{kind_of(obj)}:{obj.id}"


def _notify(obj: Any, moment: datetime) -> None:
    due = obj.deletion_due_at
    label = label_of(obj)
    message = f"{label[0].upper()}{label[1:]} will be deleted on {due:%Y-%m-%d %H:%M} UTC; undo in the recycle bin."
    notify.notice(notify.DELETION_NOTICE, organisation_id_of(obj), message, key=_notice_key(obj), at=moment,
                  expires_at=due)


def _dismiss_notices(obj: Any, moment: datetime) -> None:
    notify.dismiss_notices(moment, notify.DELETION_NOTICE, _notice_key(obj))


# -- what is pending --------------------------------------------------------------------------------------

def due(now: datetime | None = None) -> list[Any]:
    """Everything whose grace has run out, in purge order (backups, VMs, users, organisations)."""
    moment = now or clock.now()
    found: list[Any] = []
    for model in KINDS.values():
        query = select(model).where(model.deletion_due_at.is_not(None), model.deletion_due_at <= moment)
        found += list(db.session.scalars(query.order_by(model.deletion_due_at, model.id)))
    return found


def _scoped_pending(kind: str, user: User, limit: int) -> list[Any]:
    model = KINDS[kind]
    query = select(model).where(model.deletion_due_at.is_not(None))
    if kind == "backup":
        query = query.join(VM, VM.id == BackupPoint.vm_id)
        query = query.options(joinedload(BackupPoint.vm).joinedload(VM.organisation))
        query = access.scope_to_user(query, VM.organisation_id, user)
    elif kind == "disk":
        query = query.join(VM, VM.id == Disk.vm_id).options(joinedload(Disk.vm).joinedload(VM.organisation))
        query = access.scope_to_user(query, VM.organisation_id, user)
    elif kind == "vm":
        query = access.scope_to_user(query.options(joinedload(VM.organisation)), VM.organisation_id, user)
    elif kind == "user":
        query = access.scope_to_user(query.options(joinedload(User.organisation)), User.organisation_id, user)
    else:
        query = access.scope_to_user(query, Organisation.id, user)
    return list(db.session.scalars(query.order_by(model.deletion_due_at, model.id).limit(limit)))


def pending_for(user: User, *, limit: int = 500) -> list[Pending]:
    """The recycle bin as ``user`` may see it, soonest first (at most ``limit`` per kind)."""
    rows = [(kind, obj) for kind in KINDS for obj in _scoped_pending(kind, user, limit)]
    return sorted(_entries(rows), key=lambda e: (e.due_at, e.kind, e.obj.id))


def entry_for(obj: Any) -> Pending:
    """The recycle bin's line for one object, also when it is no longer pending (after an undo)."""
    return _entries([(kind_of(obj), obj)])[0]


def _entries(rows: list[tuple[str, Any]]) -> list[Pending]:
    asker_ids = {obj.deletion_requested_by_id for _, obj in rows if obj.deletion_requested_by_id}
    askers = {u.id: u.email for u in db.session.scalars(select(User).where(User.id.in_(asker_ids)))}
    return [Pending(kind=kind, obj=obj, label=label_of(obj), organisation=_org_name(kind, obj),
                    requested_at=obj.deletion_requested_at, due_at=obj.deletion_due_at,
                    requested_by=askers.get(obj.deletion_requested_by_id, "")) for kind, obj in rows]


def _org_name(kind: str, obj: Any) -> str:
    if kind in ("backup", "disk"):
        return str(obj.vm.organisation.name)
    if kind == "organisation":
        return str(obj.name)
    return str(obj.organisation.name) if obj.organisation is not None else "(staff)"


def upcoming_notices(user: User, *, now: datetime | None = None,
                     within: timedelta | None = None) -> list[Notification]:
    """Deletion notices due within ``within`` (config ``DELETION_NOTICE_HOURS``, 24 h) for the banner.

    Shown to the organisation's admins, its account manager and operators; members cannot undo, so they
    are not alarmed with it.
    """
    if not user.is_admin:
        return []
    moment = now or clock.now()
    window = within or timedelta(hours=float(current_app.config.get("DELETION_NOTICE_HOURS", 24)))
    query = notify.notices_query(notify.DELETION_NOTICE).where(Notification.expires_at > moment,
                                                               Notification.expires_at <= moment + window)
    query = access.scope_to_user(query, Notification.organisation_id, user)
    return list(db.session.scalars(query.order_by(Notification.expires_at, Notification.id).limit(20)))


# -- purge ------------------------------------------------------------------------------------------------

class _Blocked(Exception):
    """The data must be kept (protected revisions): cancel the deletion and say why."""


class _Deferred(Exception):
    """Work is using the data right now (a queued or running restore or backup): try again next run."""


def purge_due(now: datetime | None = None, actor: User | str = SYSTEM_ACTOR) -> PurgeReport:
    """Carry out every deletion whose grace has run out; each object in its own transaction."""
    moment = now or clock.now()
    report = PurgeReport()
    for kind, obj_id in [(kind_of(obj), obj.id) for obj in due(moment)]:
        _purge_one(kind, obj_id, actor, moment, report)
    return report


def _purge_one(kind: str, obj_id: int, actor: User | str, moment: datetime, report: PurgeReport) -> None:
    obj = db.session.get(KINDS[kind], obj_id)
    if obj is None or obj.deletion_due_at is None or obj.deletion_due_at > moment:
        return  # gone with its VM or organisation, or undone meanwhile
    label = label_of(obj)
    try:
        _PURGERS[kind](obj, actor, moment)
        db.session.commit()
        report.purged.append(label)
    except _Blocked as exc:
        db.session.rollback()
        _cancel_blocked(kind, obj_id, actor, moment, str(exc))
        report.blocked.append(f"{label}: {exc}")
    except _Deferred as exc:
        db.session.rollback()
        _record_failure(kind, obj_id, actor, str(exc), action="deletion.deferred")
        report.deferred.append(f"{label}: {exc}")
    except Exception as exc:  # noqa: BLE001 - one object's failure must not stop the others
        db.session.rollback()
        _record_failure(kind, obj_id, actor, str(exc) or type(exc).__name__)
        report.failed.append(f"{label}: {exc}")


def _cancel_blocked(kind: str, obj_id: int, actor: User | str, moment: datetime, reason: str) -> None:
    obj = db.session.get(KINDS[kind], obj_id)
    if obj is None:  # gone meanwhile: nothing left to keep
        return
    before = _state(obj)
    obj.deletion_requested_at = obj.deletion_due_at = obj.deletion_requested_by_id = None
    if kind == "backup":
        obj.protected = True
    label = label_of(obj)
    audit.record(actor, "deletion.blocked", obj, before=before, after=_state(obj) | {"reason": reason},
                 organisation_id=organisation_id_of(obj), label=label)
    _dismiss_notices(obj, moment)
    notify.notice(notify.BLOCKED_NOTICE, organisation_id_of(obj), f"{label[0].upper()}{label[1:]} was not deleted: "
                  f"{reason}", key=_notice_key(obj), at=moment, expires_at=moment + timedelta(days=14))
    db.session.commit()


def _record_failure(kind: str, obj_id: int, actor: User | str, error: str, *,
                    action: str = "deletion.failed") -> None:
    """Kept pending for the next run; the audit row lets an operator see why it is late."""
    obj = db.session.get(KINDS[kind], obj_id)
    if obj is None:
        return
    audit.record(actor, action, obj, before=_state(obj), after={"error": error[:500]},
                 organisation_id=organisation_id_of(obj), label=label_of(obj))
    db.session.commit()


def _root() -> str:
    return str(current_app.config["STORAGE_ROOT"])


def _busy(query: Any, what: str) -> None:
    if db.session.scalar(query.where(Restore.state.in_(ACTIVE_STATES)).limit(1)) is not None:
        raise _Deferred(f"a restore from {what} is queued or running")


def _drilling(condition: Any, what: str) -> None:
    drill = select(FireDrill.id).where(condition, FireDrill.state.in_(ACTIVE_STATES))
    if db.session.scalar(drill.limit(1)) is not None:
        raise _Deferred(f"a fire drill of {what} is queued or running")


def _drop_job_history(restores: Any, runs: Any = None) -> None:
    """Finished restore and backup rows go with their data; the audit log keeps who asked what and when."""
    db.session.execute(delete(Restore).where(restores))
    if runs is not None:
        db.session.execute(delete(BackupRun).where(runs))


def _unlink_point(point_id: int) -> None:
    """Rows that only mention the point (a verification or fire drill of it, the safety backup of an in-place
    restore) stay, without it."""
    db.session.execute(update(Verification).where(Verification.backup_point_id == point_id)
                       .values(backup_point_id=None))
    db.session.execute(update(FireDrill).where(FireDrill.backup_point_id == point_id).values(backup_point_id=None))
    db.session.execute(update(Restore).where(Restore.safety_point_id == point_id).values(safety_point_id=None))


def _purge_backup(point: BackupPoint, actor: User | str, moment: datetime) -> None:
    if point.protected:
        raise _Blocked("the backup point is protected")
    _busy(select(Restore.id).where(Restore.backup_point_id == point.id), "this backup point")
    _drilling(FireDrill.backup_point_id == point.id, "this backup point")
    repository, revision = point.vm.repository_name, point.revision
    _drop_job_history(Restore.backup_point_id == point.id)
    _unlink_point(point.id)
    entry = audit.record(actor, "deletion.purge", point, before=_point_facts(point) | _state(point),
                         after={"storage": "forgotten"}, organisation_id=organisation_id_of(point),
                         label=label_of(point))
    _dismiss_notices(point, moment)
    db.session.delete(point)
    db.session.flush()  # a database refusal stops us here, before the engine forgets anything
    try:
        retention.forget(_root(), repository, revision)
    except RevisionProtected as exc:
        raise _Blocked("the revision is protected in the repository") from exc
    except UnknownRevision:
        entry.after = {"storage": "already absent from the repository"}


def _point_facts(point: BackupPoint) -> dict[str, Any]:
    return {"vm": point.vm.name, "revision": point.revision, "created_at": point.created_at.isoformat(),
            "size_bytes": point.size_bytes}


def _engine_revisions(vm: VM, points: list[BackupPoint]) -> list[str] | None:
    """The revisions to forget, raising ``_Blocked`` if any is protected; None when there is no repository.

    A missing repository is only accepted when the catalog knows no point either: otherwise the storage may
    simply not be mounted, and "absent" must never be read as "deleted".
    """
    if any(p.protected for p in points):
        raise _Blocked("it has protected backup points")
    if not has_repository(_root(), vm.repository_name):
        if points:
            raise StorageError(f"repository {vm.repository_name} not found under {_root()}; kept for the next run")
        return None
    repository = Repository.open(_root(), vm.repository_name)
    revisions = repository.revisions()
    if repository.unreadable:  # it may be protected: nothing of the VM goes until it can be read (or is removed)
        raise StorageError(f"the manifests of {', '.join(sorted(repository.unreadable)[:5])} in {vm.repository_name} "
                           "cannot be read; kept for the next run")
    protected = [r.id for r in revisions if r.protected]
    if protected:
        raise _Blocked(f"it has protected revisions ({', '.join(protected[:5])})")
    return [r.id for r in revisions]


def _check_vm_idle(vm: VM) -> None:
    _busy(select(Restore.id).where(Restore.vm_id == vm.id), vm.name)
    _drilling(FireDrill.vm_id == vm.id, vm.name)
    running = select(BackupRun.id).where(BackupRun.vm_id == vm.id, BackupRun.state.in_(ACTIVE_STATES))
    if db.session.scalar(running.limit(1)) is not None:
        raise _Deferred(f"a backup of {vm.name} is queued or running")


def _points_of(vm: VM) -> list[BackupPoint]:
    return list(db.session.scalars(select(BackupPoint).where(BackupPoint.vm_id == vm.id)))


def _purge_vm(vm: VM, actor: User | str, moment: datetime) -> None:
    """Rows first (flushed, so a database refusal stops us before storage is touched), then the engine."""
    points = _points_of(vm)
    revisions = _engine_revisions(vm, points)
    _check_vm_idle(vm)
    facts = {"vm": vm.name, "environment": vm.environment, "backup_points": len(points),
             "revisions": len(revisions or [])}
    audit.record(actor, "deletion.purge", vm, before=facts | _state(vm), after={"storage": "forgotten"},
                 organisation_id=vm.organisation_id, label=label_of(vm))
    for point in points:
        _dismiss_notices(point, moment)
    for disk in vm.disks:  # a confirmed removal still pending goes with the VM
        _dismiss_notices(disk, moment)
    _dismiss_notices(vm, moment)
    _drop_job_history(Restore.vm_id == vm.id, BackupRun.vm_id == vm.id)
    db.session.execute(delete(Verification).where(Verification.vm_id == vm.id))
    db.session.execute(delete(FireDrill).where(FireDrill.vm_id == vm.id))
    db.session.execute(delete(BackupPoint).where(BackupPoint.vm_id == vm.id))
    db.session.delete(vm)
    db.session.flush()
    for revision in revisions or []:
        try:
            retention.forget(_root(), vm.repository_name, revision)
        except UnknownRevision:
            continue  # forgotten by an earlier, interrupted purge


def _purge_disk(disk: Disk, actor: User | str, moment: datetime) -> None:
    """The inventory row goes (the VM's backups stop including the disk); its data stays in the older points."""
    if disk.missing_since is None:
        raise _Blocked("the inventory feed lists the disk again")
    vm = disk.vm
    _busy(select(Restore.id).where(Restore.vm_id == vm.id), vm.name)
    running = select(BackupRun.id).where(BackupRun.vm_id == vm.id, BackupRun.state.in_(ACTIVE_STATES))
    if db.session.scalar(running.limit(1)) is not None:
        raise _Deferred(f"a backup of {vm.name} is queued or running")
    audit.record(actor, "deletion.purge", disk, before={"vm": vm.name, "disk": disk.name, "source": disk.source,
                                                        "size_bytes": disk.size_bytes,
                                                        "missing_since": disk.missing_since.isoformat()}
                 | _state(disk), after={"storage": "kept: the disk's data stays in the older backup points"},
                 organisation_id=vm.organisation_id, label=label_of(disk))
    _dismiss_notices(disk, moment)
    vm.disks.remove(disk)  # delete-orphan: the row goes with the flush
    db.session.flush()


def cancel_returned(disk: Disk, actor: str, moment: datetime) -> bool:
    """A disk whose removal was confirmed is listed by the feed again: the request no longer holds. Cancel it
    (audited, its notice dismissed; not committed: the sync's transaction). False when none was pending."""
    if disk.deletion_due_at is None:
        return False
    before = _state(disk)
    disk.deletion_requested_at = disk.deletion_due_at = disk.deletion_requested_by_id = None
    audit.record(actor, "deletion.cancelled", disk, before=before,
                 after=_state(disk) | {"reason": "the inventory feed lists the disk again"},
                 organisation_id=organisation_id_of(disk), label=label_of(disk))
    _dismiss_notices(disk, moment)
    return True


def _purge_user(user: User, actor: User | str, moment: datetime) -> None:
    before = {"email": user.email, "name": user.name, "role": user.role} | _state(user)
    managed = list(db.session.scalars(select(Organisation).where(Organisation.account_manager_id == user.id)))
    for org in managed:
        org.account_manager_id = None
    user.email = f"deleted-user-{user.id}@deleted.invalid"
    user.name = ""
    user.password_hash = ""
    user.active = False
    user.deletion_due_at = None
    _dismiss_notices(user, moment)
    audit.record(actor, "deletion.purge", user, before=before,
                 after={"email": user.email, "active": False, "unassigned_organisations": [o.id for o in managed]},
                 organisation_id=user.organisation_id, label=before["email"])


def _check_organisation(vms: list[VM]) -> None:
    """Every VM is checked before anything of the organisation is touched; protected data wins over errors."""
    problems: list[Exception] = []
    for vm in vms:
        try:
            _engine_revisions(vm, _points_of(vm))
            _check_vm_idle(vm)
        except _Blocked as exc:
            raise _Blocked(f"{vm.name}: {exc}") from exc
        except (StorageError, _Deferred) as exc:
            problems.append(exc)
    if problems:
        raise problems[0]


def _purge_organisation(org: Organisation, actor: User | str, moment: datetime) -> None:
    vms = list(db.session.scalars(select(VM).where(VM.organisation_id == org.id)))
    _check_organisation(vms)
    users = list(db.session.scalars(select(User).where(User.organisation_id == org.id)))
    audit.record(actor, "deletion.purge", org, before={"name": org.name, "slug": org.slug, "vms": len(vms),
                                                       "users": len(users)} | _state(org),
                 after={"vms": 0, "users_anonymised": len(users)}, organisation_id=org.id, label=label_of(org))
    for user in users:
        if not is_purged(user):
            user.deletion_requested_at = user.deletion_requested_at or moment
            _purge_user(user, actor, moment)
    for vm in vms:
        _purge_vm(vm, actor, moment)
    db.session.execute(delete(ResourceGroup).where(ResourceGroup.organisation_id == org.id))
    notify.dismiss_notices(moment, organisation_id=org.id)
    org.deletion_due_at = None
    org.account_manager_id = None


_PURGERS = {"disk": _purge_disk, "backup": _purge_backup, "vm": _purge_vm, "user": _purge_user,
            "organisation": _purge_organisation}
