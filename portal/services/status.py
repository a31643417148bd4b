"""The dashboard's view of each VM: last good backup against its RPO, last verification.

Two grouped queries for any number of VMs (no N+1): the newest good backup and the newest verification
per VM, over the (vm_id, created_at) index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from .. import clock
from ..extensions import db
from ..models import VM, BackupPoint


@dataclass(frozen=True)
class BackupStatus:
    last_good: datetime | None
    last_verified: datetime | None
    rpo_minutes: int | None
    excluded: bool

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
    good: dict[int, datetime] = dict(db.session.execute(
        select(BackupPoint.vm_id, func.max(BackupPoint.created_at))
        .where(BackupPoint.vm_id.in_(ids), BackupPoint.good())
        .group_by(BackupPoint.vm_id)
    ).all())
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
        )
    return result
