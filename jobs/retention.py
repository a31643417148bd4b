"""Retention after a backup: points that fall out of the VM's policy are *scheduled* for deletion, never deleted.

Why through the recycle bin: a policy lowered by mistake (keep_daily 30 -> 3) must be undoable, so every point
retention lets go gets the same grace, audit row, notice and Undo as a person's deletion
(``deletions.request_by_policy``); ``lifeboat deletions purge`` / the scheduler forget it through the engine
when the grace has run out.

The selection (like restic's ``forget --keep-*``): for each of hourly, daily, weekly (ISO) and monthly, walk the
good points (``ok``/``verified``) newest first and keep the newest point of each period until the policy's
count of periods is reached; a point kept by any rule is kept. Periods without a backup do not count, so an
outage never makes retention eat into older points. Always kept, whatever the policy says:
- the newest good point;
- protected points (they also do not fill a period: protection is on top of the policy);
- points a person took out of the recycle bin (an audited Undo): retention does not overrule a person;
- points that are not good (distrusted or damaged): retention only decides about data it can vouch for,
  and a later backup plus verification may trust them again;
- points newer than the newest good point;
- points already pending deletion are left as they are (neither counted nor requested again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from portal.extensions import db
from portal.models import VM, AuditEntry, BackupPoint, Policy
from portal.services import audit, deletions, notify

ACTOR = "system:retention"

log = logging.getLogger(__name__)

#: policy field -> the period a point's creation time falls in
PERIODS: dict[str, Callable[[datetime], Any]] = {
    "keep_hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "keep_daily": lambda t: t.date(),
    "keep_weekly": lambda t: t.isocalendar()[:2],
    "keep_monthly": lambda t: (t.year, t.month),
}


def select_kept(created: Sequence[tuple[int, datetime]], policy: Policy) -> set[int]:
    """Ids the policy keeps among ``(id, created_at)`` pairs (see the module docstring)."""
    newest_first = sorted(created, key=lambda pair: (pair[1], pair[0]), reverse=True)
    kept: set[int] = set()
    for field, period_of in PERIODS.items():
        wanted = int(getattr(policy, field) or 0)
        seen: set[Any] = set()
        for point_id, moment in newest_first:
            if len(seen) >= wanted:
                break
            period = period_of(moment)
            if period not in seen:
                seen.add(period)
                kept.add(point_id)
    return kept


def _undone(point_ids: list[int]) -> set[int]:
    """Points whose deletion a person undid (the audit log is the record of that decision)."""
    if not point_ids:
        return set()
    query = select(AuditEntry.object_id).where(AuditEntry.action == "deletion.undo",
                                               AuditEntry.object_type == "backuppoint",
                                               AuditEntry.object_id.in_(point_ids))
    return {int(i) for i in db.session.scalars(query) if i is not None}


def out_of_retention(vm: VM) -> list[BackupPoint]:
    """The VM's points retention would schedule for deletion now, oldest first (nothing without a policy)."""
    policy = vm.policy
    if policy is None:
        return []
    points = list(db.session.scalars(select(BackupPoint).where(BackupPoint.vm_id == vm.id,
                                                               BackupPoint.deletion_due_at.is_(None))))
    good = [p for p in points if p.is_good]  # all of them wait for no deletion (the query)
    if not good:
        return []
    newest_good = max(good, key=lambda p: (p.created_at, p.id))
    exempt = {p.id for p in points if p.protected} | _undone([p.id for p in points])
    counted = [(p.id, p.created_at) for p in good if p.id not in exempt]
    kept = select_kept(counted, policy) | exempt | {newest_good.id}
    drop = [p for p in good if p.id not in kept and (p.created_at, p.id) < (newest_good.created_at, newest_good.id)]
    return sorted(drop, key=lambda p: (p.created_at, p.id))


def apply(vm: VM, now: datetime | None = None) -> list[int]:
    """Schedule deletion of the points out of retention; commit; return their ids.

    One ``deletion.scheduled`` event for the run, listing the points (not one per point: with hourly backups
    that would be a mail an hour per VM); see ``notify.policy_deletions_scheduled``.
    """
    scheduled = [point for point in out_of_retention(vm)
                 if deletions.request_by_policy(point, ACTOR, "out of the VM's retention policy", now=now)]
    db.session.commit()
    notify.policy_deletions_scheduled(vm, scheduled)
    return [point.id for point in scheduled]


def after_backup(vm: VM) -> list[int]:
    """Apply retention after a successful backup; a failure here is recorded, never fails the backup."""
    vm_id = vm.id
    try:
        return apply(vm)
    except Exception as exc:  # noqa: BLE001 - the backup is done and good; retention runs again after the next
        db.session.rollback()
        log.exception("retention of VM %s failed", vm_id)
        audit.record(ACTOR, "retention.failed", db.session.get(VM, vm_id), after={"error": str(exc)[:500]})
        db.session.commit()
        return []
