"""Disaster mode: plan and start the restore of many VMs at once, follow it, and project restore times.

- **Scope**: everything, one organisation, or the VMs with a disk on one storage pool (the POOL of
  ``rbd:POOL/IMAGE``; ``file:`` disks count as the pool ``file``).
- **Point choice**: per VM the newest usable backup point at or before the chosen time (``ok`` or
  ``verified``; never damaged, distrusted or pending deletion). Verified points are preferred: a verified
  point wins over newer unverified ones when it is at most one RPO older than the newest usable point, so
  preferring integrity never costs more data than the customer already accepted as their RPO.
- **Order**: the restore priority rules (``priority.sort_key``: class, tier RTO, smaller VMs first).
- **Strategy**: ``copy`` restores every VM by copying its disks back (a full restore each). ``instant`` first
  makes every VM usable straight from its backup (an instant restore's first step, seconds each, on the
  ``restore-usable`` queue ahead of every class, in plan order), then hydrates them in priority order on the
  class queues (a second job per VM). A VM whose disks Ceph's live migration cannot take (not on RBD) falls
  back to a copy restore; the plan, the run and the board say so per VM, with the reason.
- **Projection**: each VM's restore takes size / measured throughput (recent full restores and fire
  drills, per worker); ``workers`` restores run at once, each worker taking the next VM in order when it
  is free (list scheduling). Instant: the usable steps take the measured seconds of recent instant restores
  each, all of them first; hydrations (at the measured hydration throughput) and fallback copies follow in
  plan order on the workers as they come free. A VM is usable when its usable step (instant) or its copy is
  done; a class's expected completion is when its last VM is usable (that is what the tier's RTO target,
  counted from the start of the run, is compared with) and, for instant, its hydration ends later. Before
  anything was measured the times are unknown (None), not guessed.

The planner is read-only; ``start`` commits the run row and audits it, opens the customers' incident, then
requests each restore through ``runs.request_restore`` (row committed, then enqueued on its priority's
queue), in plan order.

**The end of a run**: when every one of its restores has reached a final state (done, failed, cancelled),
``close_if_finished`` records the outcome on the run (``summary["finished_at"]``, ``summary["outcome"]``) and
resolves its incident with a final update for the customers (how many restores were done, failed or
cancelled). The restore job calls it after writing its final state, cancelling calls it, and the scheduler's
tick sweeps the runs (``close_finished``) so a worker that died at the wrong moment, or the reconciler
failing a lost restore, still ends its run. An incident the operator resolved earlier stays as they left it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, select
from sqlalchemy.orm import joinedload

from .. import clock
from ..errors import DomainError
from ..extensions import db
from ..models import VM, BackupPoint, DisasterRestore, DisasterRun, Disk, Organisation, Restore, User
from ..models.backups import PointState
from ..models.runs import ACTIVE_STATES, DONE
from . import access, audit, eta, incidents, runs
from .disaster_end import FINISHER as FINISHER  # a run's end is part of this module's interface
from .disaster_end import close_finished as close_finished
from .disaster_end import close_if_finished as close_if_finished
from .disaster_end import final_update as final_update
from .disaster_end import is_active as is_active
from .disaster_end import outcome as outcome
from .disaster_end import recent_runs as recent_runs
from .priority import CLASSES, Priority, priority_of, sort_key

log = logging.getLogger(__name__)

RECENT = 20  # measured restores and drills that make up the throughput
SHOWN = 200  # restores listed one by one on the board
STRATEGIES = ("copy", "instant")


class DisasterError(DomainError, ValueError):
    """A disaster plan that cannot be made or started; the message says why."""


# -- scope -----------------------------------------------------------------------------------------------

def pool_of(disk: Disk) -> str:
    """The storage pool a disk lives on: the POOL of ``rbd:POOL/IMAGE``; ``file:`` disks are pool ``file``."""
    return disk.pool or ("file" if disk.source.startswith("file:") else disk.source.split(":", 1)[0])


@dataclass(frozen=True)
class Scope:
    kind: str  # all | organisation | pool
    value: str = ""
    label: str = "everything"

    @classmethod
    def parse(cls, raw: str) -> Scope:
        """``all``, ``organisation:<id>`` or ``pool:<name>`` (the planner form's values)."""
        kind, _, value = (raw or "all").partition(":")
        if kind == "all" and not value:
            return cls("all")
        if kind == "organisation" and (value.isascii() and value.isdigit()):
            org = db.session.get(Organisation, int(value))
            if org is None or org.pending_deletion:
                raise DisasterError("no such organisation")
            return cls("organisation", str(org.id), f"organisation {org.name}")
        if kind == "pool" and value and value in pools():
            return cls("pool", value, f"storage pool {value}")
        raise DisasterError("scope must be everything, an organisation or a known storage pool")

    @property
    def key(self) -> str:
        return self.kind if self.kind == "all" else f"{self.kind}:{self.value}"


def pools() -> list[str]:
    sources = db.session.scalars(select(Disk).join(VM).where(VM.deletion_due_at.is_(None)))
    return sorted({pool_of(disk) for disk in sources})


def vms_in(scope: Scope) -> list[VM]:
    query = (select(VM).where(VM.deletion_due_at.is_(None))
             .options(joinedload(VM.organisation).joinedload(Organisation.tier), joinedload(VM.policy),
                      joinedload(VM.disks)))
    if scope.kind == "organisation":
        query = query.where(VM.organisation_id == int(scope.value))
    vms = list(db.session.scalars(query).unique())
    if scope.kind == "pool":
        vms = [vm for vm in vms if any(pool_of(disk) == scope.value for disk in vm.disks)]
    return vms


# -- choosing points -------------------------------------------------------------------------------------

def usable_points(vm_ids: Sequence[int], at: datetime) -> dict[int, list[BackupPoint]]:
    """Usable points at or before ``at`` per VM, newest first."""
    found: dict[int, list[BackupPoint]] = {vm_id: [] for vm_id in vm_ids}
    for start in range(0, len(vm_ids), 500):
        rows = db.session.scalars(
            select(BackupPoint).where(BackupPoint.vm_id.in_(vm_ids[start:start + 500]),
                                      BackupPoint.created_at <= at, BackupPoint.good())
            .order_by(BackupPoint.created_at.desc(), BackupPoint.id.desc()))
        for point in rows:
            found[point.vm_id].append(point)
    return found


def choose_point(points: Sequence[BackupPoint], rpo_minutes: int | None) -> BackupPoint | None:
    """The newest usable point, or a verified one at most one RPO older than it (see the module doc)."""
    if not points:
        return None
    newest = points[0]
    if newest.state == PointState.VERIFIED:
        return newest
    window = timedelta(minutes=rpo_minutes or 0)
    for point in points[1:]:
        if newest.created_at - point.created_at > window:
            break
        if point.state == PointState.VERIFIED:
            return point
    return newest


# -- the plan --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Speeds:
    """What the projections are made of, all measured here; None: nothing measured yet."""

    copy: float | None  # bytes/second of one full restore (recent full restores and fire drills)
    hydration: float | None  # bytes/second of one hydration (recent finished instant restores)
    usable: float | None  # seconds until an instant restore's image is usable (recent instant restores)


def speeds(copy: float | None = None) -> Speeds:
    return Speeds(copy or eta.throughput(), eta.hydration_throughput(), eta.usable_seconds())


@dataclass
class Entry:
    vm: VM
    point: BackupPoint
    priority: Priority
    size: int
    finish_seconds: float | None = 0.0  # None: unknown (nothing measured yet)
    method: str = "copy"  # copy | instant: how this VM is restored
    fallback: str = ""  # the instant strategy restores this VM by copy: why
    usable_seconds: float | None = 0.0  # when the VM is usable (instant: its first step; copy: its copy done)

    @property
    def rto_minutes(self) -> int | None:
        tier = self.vm.organisation.tier
        return tier.rto_minutes if tier is not None and tier.rto_minutes else None


@dataclass
class Group:
    """Consecutive VMs of one class and one tier: their expected completion against the tier's RTO."""

    klass: str
    tier: str
    rto_minutes: int | None
    vms: int = 0
    bytes: int = 0
    finish_seconds: float | None = 0.0
    usable_seconds: float | None = 0.0  # when its last VM is usable (copy: the same as finish_seconds)

    @property
    def meets_rto(self) -> bool | None:
        """The tier's RTO is about service: met when the class's VMs are usable (hydration may go on)."""
        if self.rto_minutes is None or self.usable_seconds is None:
            return None
        return self.usable_seconds <= self.rto_minutes * 60


@dataclass
class Plan:
    scope: Scope
    at: datetime
    workers: int
    bytes_per_second: float | None  # None: nothing measured yet, the times are unknown
    strategy: str = "copy"
    speeds: Speeds = Speeds(None, None, None)
    entries: list[Entry] = field(default_factory=list)
    missing: list[VM] = field(default_factory=list)  # no usable point at or before ``at``
    busy: list[VM] = field(default_factory=list)  # a restore of the VM is already queued or running

    @property
    def groups(self) -> list[Group]:
        groups: list[Group] = []
        for entry in self.entries:
            tier = entry.vm.organisation.tier
            name = tier.name if tier is not None else "no tier"
            if not groups or (groups[-1].klass, groups[-1].tier) != (entry.priority.klass, name):
                groups.append(Group(entry.priority.klass, name, entry.rto_minutes))
            group = groups[-1]
            group.vms += 1
            group.bytes += entry.size
            group.finish_seconds = _latest(group.finish_seconds, entry.finish_seconds)
            group.usable_seconds = _latest(group.usable_seconds, entry.usable_seconds)
        return groups

    @property
    def total_seconds(self) -> float | None:
        total: float | None = 0.0
        for entry in self.entries:
            total = _latest(total, entry.finish_seconds)
        return total

    @property
    def usable_total_seconds(self) -> float | None:
        """When every VM of the plan is usable."""
        total: float | None = 0.0
        for entry in self.entries:
            total = _latest(total, entry.usable_seconds)
        return total

    @property
    def copies(self) -> list[Entry]:
        """The VMs the instant strategy restores by copy (with the reason)."""
        return [e for e in self.entries if e.fallback]


def _latest(a: float | None, b: float | None) -> float | None:
    """The later of two finishing times; unknown when either is."""
    return None if a is None or b is None else max(a, b)


def plan(scope: Scope, at: datetime, workers: int, bytes_per_second: float | None = None,
         strategy: str = "copy", measured: Speeds | None = None) -> Plan:
    if not 1 <= workers <= 1000:
        raise DisasterError("workers must be between 1 and 1000")
    if strategy not in STRATEGIES:
        raise DisasterError("the strategy must be copy or instant")
    found = measured or speeds(bytes_per_second)
    result = Plan(scope, at, workers, found.copy, strategy, found)
    vms = vms_in(scope)
    points = usable_points([vm.id for vm in vms], at)
    restoring = set(db.session.scalars(select(Restore.vm_id).where(Restore.state.in_(ACTIVE_STATES),
                                                                   Restore.kind.in_(("full", "instant")))))
    for vm in sorted(vms, key=lambda v: (*sort_key(v), v.id)):
        point = choose_point(points[vm.id], vm.policy.rpo_minutes if vm.policy else None)
        if point is None:
            result.missing.append(vm)
        elif vm.id in restoring:
            result.busy.append(vm)
        else:
            result.entries.append(_entry(vm, point, strategy))
    project(result.entries, workers, found)
    return result


def _entry(vm: VM, point: BackupPoint, strategy: str) -> Entry:
    entry = Entry(vm, point, priority_of(vm), point.size_bytes or vm.size_bytes)
    if strategy == "instant":
        refusal = runs.instant_refusal(vm)
        entry.method, entry.fallback = ("copy", f"copy restore: {refusal}") if refusal else ("instant", "")
    return entry


def project(entries: list[Entry], workers: int, measured: Speeds) -> None:
    """Set when each entry is usable and done, in seconds from the start (see the module doc)."""
    instant = [e for e in entries if e.method == "instant"]
    free: list[float] = []
    if instant:
        if measured.usable is None:
            for entry in entries:
                entry.usable_seconds = entry.finish_seconds = None
            return
        usable, free = eta.schedule([measured.usable] * len(instant), workers)
        for entry, at in zip(instant, usable, strict=True):
            entry.usable_seconds = at
    rates = [measured.hydration if e.method == "instant" else measured.copy for e in entries]
    if any(rate is None for rate in rates):
        finishes: list[float | None] = [None] * len(entries)
    else:
        finishes = list(eta.schedule([max(e.size, 0) / rate for e, rate in zip(entries, rates, strict=True)
                                      if rate is not None], workers, free)[0])
    for entry, finish in zip(entries, finishes, strict=True):
        entry.finish_seconds = finish
        if entry.method == "copy":
            entry.usable_seconds = finish


def start(actor: User, scope: Scope, at: datetime, workers: int, strategy: str = "copy") -> DisasterRun:
    """Commit the run (audited), then request every restore of the plan in its order."""
    if strategy == "instant" and not current_app.config.get("INSTANT_SOURCE_URL"):
        raise DisasterError(runs.NOT_SET_UP.replace("choose a full restore", "choose the copy strategy"))
    planned = plan(scope, at, workers, strategy=strategy)
    if not planned.entries:
        raise DisasterError("nothing to restore: no VM in this scope has a usable backup point"
                            + (" that is not already being restored" if planned.busy else ""))
    run = DisasterRun(scope=scope.kind, scope_value=scope.value, scope_label=scope.label, point_in_time=at,
                      workers=workers, bytes_per_second=planned.bytes_per_second or 0.0, started_by_id=actor.id,
                      started_by=actor.email, created_at=clock.now(),
                      summary={"planned": len(planned.entries), "missing": [vm.id for vm in planned.missing],
                               "busy": [vm.id for vm in planned.busy], "skipped": [], "strategy": strategy,
                               "copies": [{"vm": e.vm.id, "name": e.vm.name, "reason": e.fallback}
                                          for e in planned.copies]})
    db.session.add(run)
    db.session.flush()
    audit.record(actor, "disaster.start", run, label=f"disaster run {run.id}: {scope.label}",
                 organisation_id=int(scope.value) if scope.kind == "organisation" else None,
                 after={"scope": scope.key, "point_in_time": at.isoformat(), "workers": workers,
                        "vms": len(planned.entries), "missing": len(planned.missing), "strategy": strategy})
    db.session.commit()
    # Customers in scope see a banner and their VMs' places in the queue on their status page.
    how = ("most critical first: every VM is made usable straight from its backup within seconds, then its data "
           "is copied back in the background (hydration), in the same order" if strategy == "instant"
           else "most critical first")
    incident = incidents.open_incident(
        "disaster", f"Disaster recovery: restoring {scope.label}", actor,
        organisation_ids=[int(scope.value)] if scope.kind == "organisation" else None,
        pool=scope.value if scope.kind == "pool" else None,
        message=f"We are restoring {len(planned.entries)} VM(s) from backups taken at or before "
                f"{at:%Y-%m-%d %H:%M} UTC, {how}. Your VMs' places in the queue and their ETAs "
                "are on this page.")
    run.summary = {**run.summary, "incident": incident.id}
    db.session.commit()
    skipped = []
    for position, entry in enumerate(planned.entries, 1):
        try:
            restore = runs.request_restore(actor, entry.vm, entry.point, entry.method if entry.method == "instant"
                                           else "full", usable_first=entry.method == "instant")
        except runs.RestoreError as exc:
            db.session.rollback()
            skipped.append({"vm": entry.vm.id, "reason": str(exc)})
            continue
        db.session.add(DisasterRestore(run_id=run.id, restore_id=restore.id, position=position))
        db.session.commit()
    if skipped:
        run.summary = {**run.summary, "skipped": skipped}
        db.session.commit()
    return run


# -- following a run -------------------------------------------------------------------------------------

@dataclass
class ClassProgress:
    klass: str
    rto_minutes: int | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("queued", "running", "done", "failed", "cancelled"), 0))
    bytes_done: int = 0
    bytes_total: int = 0
    seconds_left: float | None = 0.0  # None: unknown (nothing measured yet)
    finished_at: datetime | None = None
    instant: int = 0  # restores of the class made usable first (the rest are copies)
    usable: int = 0  # VMs usable already: instant ones with their image usable, copies done
    usable_at: datetime | None = None  # when the latest of those became usable
    usable_left: float | None = 0.0  # seconds until the rest are usable (projected); None: unknown
    unusable: int = 0  # VMs that will not become usable in this run (failed or cancelled before they were)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def active(self) -> bool:
        return self.counts["queued"] + self.counts["running"] > 0

    @property
    def all_usable(self) -> bool:
        return self.usable + self.unusable == self.total

    def usable_expected(self) -> datetime | None:
        """When the class's VMs are (or were) all usable: measured once they are, projected until then."""
        if self.all_usable:
            return self.usable_at
        return None if self.usable_left is None else clock.now() + timedelta(seconds=self.usable_left)


@dataclass
class Board:
    run: DisasterRun
    classes: list[ClassProgress]
    restores: list[tuple[int, Restore]]

    @property
    def active(self) -> bool:
        return any(c.active for c in self.classes)

    @property
    def strategy(self) -> str:
        return str((self.run.summary or {}).get("strategy") or "copy")

    @property
    def copies(self) -> list[dict[str, Any]]:
        """The VMs an instant run restores by copy, with the reason (as planned)."""
        return list((self.run.summary or {}).get("copies") or [])

    @property
    def unfinished(self) -> list[tuple[int, Restore]]:
        """Restores still waiting, running or failed (at most SHOWN: the board polls)."""
        return [(n, r) for n, r in self.restores if r.state != DONE][:SHOWN]

    def deadline(self, progress: ClassProgress) -> datetime | None:
        if progress.rto_minutes is None:
            return None
        return self.run.created_at + timedelta(minutes=progress.rto_minutes)

    def expected(self, progress: ClassProgress) -> datetime | None:
        """When the class is (or was) complete: projected while active, measured once finished."""
        if progress.active:
            if progress.seconds_left is None:
                return None
            return clock.now() + timedelta(seconds=progress.seconds_left)
        return progress.finished_at

    def on_track(self, progress: ClassProgress) -> bool | None:
        """Against the RTO: the class usable (instant: images usable; copy: restores done) by the deadline."""
        deadline = self.deadline(progress)
        expected = progress.usable_expected() if self.strategy == "instant" else self.expected(progress)
        return None if deadline is None or expected is None else expected <= deadline


def restores_of(run: DisasterRun) -> list[tuple[int, Restore]]:
    rows = db.session.execute(
        select(DisasterRestore.position, Restore).join(Restore, Restore.id == DisasterRestore.restore_id)
        .where(DisasterRestore.run_id == run.id).order_by(DisasterRestore.position)
        .options(joinedload(Restore.vm).joinedload(VM.organisation).joinedload(Organisation.tier),
                 joinedload(Restore.backup_point)))
    return [(position, restore) for position, restore in rows]


def board(run: DisasterRun) -> Board:
    restores = restores_of(run)
    return Board(run, class_progress([r for _, r in restores], run.workers), restores)


def usable_time(restore: Restore) -> datetime | None:
    """When the restored VM could first run: its image usable (instant), its copy done (full)."""
    if restore.kind == "instant":
        return restore.usable_at
    return restore.finished_at if restore.state == DONE else None


def class_progress(restores: list[Restore], workers: int) -> list[ClassProgress]:
    """Per class (in order): counts, bytes, when the VMs became (or become) usable, when they are done.

    ``restores`` in plan order. The instant restores not usable yet are projected as the ``restore-usable``
    queue runs them: in this order, ``workers`` at a time, the measured seconds each; copies (and hydrations)
    by the queue model of ``eta.queue``.
    """
    speed = eta.throughput()
    active = any(r.state in ACTIVE_STATES for r in restores)
    projection = eta.queue(workers, speed) if active else {}
    pending = [r for r in restores if r.kind == "instant" and r.usable_at is None and r.state in ACTIVE_STATES]
    step = eta.usable_seconds() if pending else None
    usable_in = dict(zip((r.id for r in pending), eta.schedule([step] * len(pending), workers)[0], strict=True)) \
        if step is not None else {}
    classes = {k: ClassProgress(k) for k in CLASSES}
    for restore in restores:
        progress = classes.setdefault(restore.priority_class, ClassProgress(restore.priority_class))
        progress.counts[restore.state] = progress.counts.get(restore.state, 0) + 1
        progress.bytes_done += restore.bytes_done if restore.state != DONE else eta.size_of(restore)
        progress.bytes_total += eta.size_of(restore)
        tier = restore.vm.organisation.tier
        if tier is not None and tier.rto_minutes:
            progress.rto_minutes = min(progress.rto_minutes or tier.rto_minutes, tier.rto_minutes)
        if restore.id in projection:
            progress.seconds_left = _latest(progress.seconds_left, projection[restore.id].seconds_left)
        if restore.finished_at and (progress.finished_at is None or restore.finished_at > progress.finished_at):
            progress.finished_at = restore.finished_at
        progress.instant += restore.kind == "instant"
        became = usable_time(restore)
        if became is not None:
            progress.usable += 1
            progress.usable_at = became if progress.usable_at is None else max(progress.usable_at, became)
        elif restore.state not in ACTIVE_STATES:
            progress.unusable += 1
        else:
            left = usable_in.get(restore.id) if restore.kind == "instant" else \
                (projection[restore.id].seconds_left if restore.id in projection else None)
            progress.usable_left = _latest(progress.usable_left, left)
    return [c for c in classes.values() if c.total]


@dataclass(frozen=True)
class CustomerRow:
    vm: VM
    restore: Restore
    run_id: int
    position: int | None
    seconds_left: float | None


def customer_view(user: User, limit: int = 100) -> list[CustomerRow]:
    """The user's own VMs in an active disaster run, with queue position and ETA (tenant-scoped)."""
    query = (select(Restore, DisasterRestore.run_id).join(DisasterRestore, DisasterRestore.restore_id == Restore.id)
             .join(VM, VM.id == Restore.vm_id).where(Restore.state.in_(ACTIVE_STATES)))
    scoped: Select[Any] = access.scope_to_user(query, VM.organisation_id, user)  # type: ignore[arg-type]
    rows = db.session.execute(scoped.order_by(Restore.id).limit(limit)).all()
    if not rows:
        return []
    workers = max(run.workers for run in db.session.scalars(
        select(DisasterRun).where(DisasterRun.id.in_({run_id for _, run_id in rows}))))
    projection = eta.queue(workers, eta.throughput())
    result = [CustomerRow(restore.vm, restore, run_id, projection[restore.id].position,
                          projection[restore.id].seconds_left)
              for restore, run_id in rows if restore.id in projection]
    return sorted(result, key=lambda row: (row.position is not None, row.position or 0, row.vm.name))


def customer_classes(user: User, limit: int = 1000) -> list[ClassProgress]:
    """Per class, the user's own VMs in disaster runs still going (tenant-scoped): how many are usable and
    since when (or when they will be), and when their restores (hydrations) are done."""
    going = (select(DisasterRestore.run_id).join(Restore, Restore.id == DisasterRestore.restore_id)
             .where(Restore.state.in_(ACTIVE_STATES)))
    query = (select(Restore).join(DisasterRestore, DisasterRestore.restore_id == Restore.id)
             .join(VM, VM.id == Restore.vm_id).where(DisasterRestore.run_id.in_(going))
             .options(joinedload(Restore.vm).joinedload(VM.organisation).joinedload(Organisation.tier)))
    scoped: Select[Any] = access.scope_to_user(query, VM.organisation_id, user)
    restores = list(db.session.scalars(scoped.order_by(DisasterRestore.run_id, DisasterRestore.position)
                                       .limit(limit)).unique())
    if not restores:
        return []
    workers = max(db.session.scalars(select(DisasterRun.workers).where(DisasterRun.id.in_(going))), default=1)
    return class_progress(restores, workers)


# -- fleet RTO -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FleetProjection:
    workers: int
    total_seconds: float | None  # None: unknown (nothing measured yet)
    critical_seconds: float | None  # when the last critical-class VM is back
    # the instant strategy: every VM usable, the critical class usable, everything hydrated (copies done)
    usable_seconds: float | None = None
    critical_usable_seconds: float | None = None
    hydrated_seconds: float | None = None


def fleet_rto(max_workers: int) -> tuple[float | None, list[FleetProjection], Plan]:
    """Time to restore every VM from its newest usable point, for 1..max_workers workers, both strategies."""
    measured = speeds()
    full = plan(Scope("all"), clock.now(), 1, measured=measured)
    full.entries.extend(_entry_of(vm, full) for vm in full.busy)  # a fleet projection counts every VM
    full.entries.sort(key=lambda e: (*sort_key(e.vm), e.vm.id))
    instant = [_entry(e.vm, e.point, "instant") for e in full.entries]
    projections = []
    for workers in range(1, max_workers + 1):
        project(full.entries, workers, measured)
        project(instant, workers, measured)
        projections.append(FleetProjection(
            workers, _last(full.entries, "finish_seconds"), _last(full.entries, "finish_seconds", "critical"),
            _last(instant, "usable_seconds"), _last(instant, "usable_seconds", "critical"),
            _last(instant, "finish_seconds")))
    project(full.entries, 1, measured)  # the entries as listed: one worker
    return measured.copy, projections, full


def _last(entries: list[Entry], attribute: str, klass: str = "") -> float | None:
    """The latest of the entries' (of one class's) times; unknown when any is."""
    latest: float | None = 0.0
    for entry in entries:
        if not klass or entry.priority.klass == klass:
            latest = _latest(latest, getattr(entry, attribute))
    return latest


def _entry_of(vm: VM, full: Plan) -> Entry:
    points = usable_points([vm.id], full.at)[vm.id]
    point = choose_point(points, vm.policy.rpo_minutes if vm.policy else None)
    assert point is not None  # busy VMs had one a moment ago, in the same transaction
    return Entry(vm, point, priority_of(vm), point.size_bytes or vm.size_bytes)


def describe(seconds: float) -> str:
    """A duration for people: 0.4 s, 45 s, 12 min, 3.5 h."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
