"""The dashboard's view of each VM: last good backup against its RPO, last verification.

A VM is protected by a good point only when the point holds every disk the inventory lists for it (issue 14):
``last_good`` is the newest good point that covers every disk, and ``uncovered`` names the disks the newest
good point lacks (a disk added since, or one a one-disk backup never took). So the RPO, the scheduler, the
alerts and the API all see a VM whose data disk is not backed up as not protected.

A handful of queries for any number of VMs (no N+1): the newest good point, the disks, the newest verification
per VM; only VMs whose newest good point lacks a disk have their older good points read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select

from .. import clock
from ..extensions import db
from ..models import VM, BackupPoint, Disk
from ..models.inventory import engine_disk_name


@dataclass(frozen=True)
class BackupStatus:
    last_good: datetime | None
    last_verified: datetime | None
    rpo_minutes: int | None
    excluded: bool
    uncovered: tuple[str, ...] = ()  # disks of the VM that its newest good point does not hold

    @property
    def age_minutes(self) -> float | None:
        if self.last_good is None:
            return None
        return (clock.now() - self.last_good).total_seconds() / 60

    @property
    def state(self) -> str:
        """``ok`` (within RPO), ``late`` (beyond it but within twice), ``missed``, ``none``, ``excluded``."""
        if self.excluded:
            return "excluded"
        age = self.age_minutes
        if age is None or self.rpo_minutes is None:
            return "none"
        if age <= self.rpo_minutes:
            return "ok"
        return "late" if age <= 2 * self.rpo_minutes else "missed"


def statuses(vms: list[VM]) -> dict[int, BackupStatus]:
    ids = [vm.id for vm in vms]
    if not ids:
        return {}
    newest = (select(BackupPoint.vm_id, func.max(BackupPoint.created_at).label("at"))
              .where(BackupPoint.vm_id.in_(ids), BackupPoint.good()).group_by(BackupPoint.vm_id).subquery())
    latest: dict[int, BackupPoint] = {p.vm_id: p for p in db.session.scalars(
        select(BackupPoint).join(newest, and_(BackupPoint.vm_id == newest.c.vm_id,
                                              BackupPoint.created_at == newest.c.at)).where(BackupPoint.good()))}
    disks: dict[int, list[str]] = {}
    for vm_id, name in db.session.execute(select(Disk.vm_id, Disk.name).where(Disk.vm_id.in_(ids))).all():
        disks.setdefault(vm_id, []).append(engine_disk_name(name))
    uncovered = {vm_id: tuple(sorted(set(disks.get(vm_id, [])) - set(p.disk_names)))
                 for vm_id, p in latest.items() if not p.covers(disks.get(vm_id, []))}
    good = {vm_id: p.created_at for vm_id, p in latest.items() if vm_id not in uncovered}
    if uncovered:  # the newest good point that does cover every disk, if any
        for point in db.session.scalars(select(BackupPoint).where(BackupPoint.vm_id.in_(list(uncovered)),
                                                                  BackupPoint.good())
                                        .order_by(BackupPoint.created_at.desc())):
            if point.vm_id not in good and point.covers(disks.get(point.vm_id, [])):
                good[point.vm_id] = point.created_at
    verified: dict[int, datetime] = dict(db.session.execute(  # type: ignore[arg-type]
        select(BackupPoint.vm_id, func.max(BackupPoint.verified_at))
        .where(BackupPoint.vm_id.in_(ids)).group_by(BackupPoint.vm_id)
    ).all())
    result = {}
    for vm in vms:
        policy = vm.policy
        result[vm.id] = BackupStatus(
            last_good=good.get(vm.id), last_verified=verified.get(vm.id),
            rpo_minutes=policy.rpo_minutes if policy else None, excluded=bool(policy and policy.excluded),
            uncovered=uncovered.get(vm.id, ()),
        )
    return result
