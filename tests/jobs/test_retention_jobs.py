"""Retention after backups, with a fixed clock and real backups: out-of-policy points go to the recycle bin
(grace, audit, notice, undo) and are forgotten by the purge, never deleted directly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.retention import select_kept
from portal import clock
from portal.extensions import db
from portal.models import AuditEntry, BackupPoint, Policy
from portal.services import deletions
from storage import clock as storage_clock
from storage.repository import Repository
from storage.retention import set_protected
from tests.fixtures.portal import notices

from .test_jobs import backed_up

DAY0 = datetime(2027, 3, 1, 10, 0)  # a Monday


@pytest.fixture
def at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[datetime], None]]:
    """Pin the portal's and the engine's clocks (revision times come from the engine)."""

    def pin(moment: datetime) -> None:
        aware = moment.replace(tzinfo=UTC)
        clock.set_now(aware)
        monkeypatch.setattr(storage_clock, "now", lambda: aware)

    yield pin
    clock.set_now(None)


@pytest.fixture
def vm(file_vm: Any, world: dict[str, Any]) -> Any:
    db.session.delete(world["acme_point"])  # a catalog-only row with no repository: not part of this story
    db.session.commit()
    return file_vm


def _policy(vm: Any, **keep: int) -> None:
    for field in ("keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"):
        setattr(vm.policy, field, keep.get(field, 0))
    db.session.commit()


def _backup_at(moment: datetime, vm: Any, queues: Any, world: dict[str, Any], at: Any) -> BackupPoint:
    at(moment)
    return backed_up(vm, queues, world)


def _pending(vm: Any) -> list[datetime]:
    db.session.expire_all()
    return sorted(p.created_at for p in BackupPoint.query.filter_by(vm_id=vm.id)
                  if p.deletion_due_at is not None)


def _kept(vm: Any) -> list[datetime]:
    db.session.expire_all()
    return sorted(p.created_at for p in BackupPoint.query.filter_by(vm_id=vm.id) if p.deletion_due_at is None)


def test_selection_keeps_the_newest_point_of_each_period() -> None:
    start = datetime(2027, 1, 1, 0, 30)
    points = [(n, start + timedelta(hours=6 * n)) for n in range(200)]  # every 6 hours for 50 days
    kept = select_kept(points, Policy(keep_hourly=2, keep_daily=3, keep_weekly=2, keep_monthly=3))
    by_id = dict(points)
    assert sorted((by_id[i] for i in kept), reverse=True) == [
        datetime(2027, 2, 19, 18, 30), datetime(2027, 2, 19, 12, 30),  # 2 hourly (and newest daily, weekly, …)
        datetime(2027, 2, 18, 18, 30), datetime(2027, 2, 17, 18, 30),  # daily 2 and 3
        datetime(2027, 2, 14, 18, 30),  # weekly 2: Sunday of the week before
        datetime(2027, 1, 31, 18, 30),  # monthly 2 (monthly 3 does not exist: no December point)
    ]
    assert select_kept(points, Policy(keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0)) == set()


def test_points_out_of_retention_are_scheduled_with_grace_then_purged(vm, queues, world, at, app) -> None:
    _policy(vm, keep_daily=3)
    times = [DAY0, DAY0 + timedelta(hours=8), DAY0 + timedelta(days=1), DAY0 + timedelta(days=2)]
    for moment in times:
        _backup_at(moment, vm, queues, world, at)
    assert _pending(vm) == [DAY0]  # the morning point of day 0: the evening one is that day's newest
    assert _kept(vm) == times[1:]
    last = _backup_at(DAY0 + timedelta(days=3), vm, queues, world, at)
    assert _pending(vm) == times[:2]
    point = BackupPoint.query.filter_by(vm_id=vm.id, created_at=times[1]).one()
    assert point.deletion_due_at == DAY0 + timedelta(days=3) + deletions.grace_for("backup")
    entry = AuditEntry.query.filter_by(action="deletion.request", object_id=point.id).one()
    assert entry.actor == "system:retention" and entry.after["reason"] == "out of the VM's retention policy"
    assert notices(kind="deletion.scheduled", dedup_key=f"backup:{point.id}").count() == 1

    root = app.config["STORAGE_ROOT"]
    assert len(Repository.open(root, vm.repository_name).revisions()) == 5  # nothing forgotten yet
    report = deletions.purge_due(DAY0 + timedelta(days=3) + deletions.grace_for("backup") + timedelta(minutes=1))
    assert len(report.purged) == 2, report.summary()
    revisions = [r.id for r in Repository.open(root, vm.repository_name).revisions()]
    assert len(revisions) == 3 and last.revision in revisions


def test_undo_protection_pending_and_the_newest_good_point_are_respected(vm, queues, world, at, app) -> None:
    _policy(vm)  # keep nothing by period: only what is always kept stays
    protected = _backup_at(DAY0, vm, queues, world, at)
    set_protected(app.config["STORAGE_ROOT"], vm.repository_name, protected.revision, True)
    undone = _backup_at(DAY0 + timedelta(hours=1), vm, queues, world, at)
    asked = _backup_at(DAY0 + timedelta(hours=2), vm, queues, world, at)
    db.session.expire_all()
    assert _pending(vm) == [undone.created_at]  # the newest is kept, the protected one too
    deletions.undo(world["acme_admin"], db.session.get(BackupPoint, undone.id))
    deletions.request_deletion(world["acme_admin"], db.session.get(BackupPoint, asked.id),
                               now=DAY0 + timedelta(hours=2, minutes=30))
    newest = _backup_at(DAY0 + timedelta(hours=3), vm, queues, world, at)
    db.session.expire_all()
    assert db.session.get(BackupPoint, protected.id).deletion_due_at is None
    assert db.session.get(BackupPoint, undone.id).deletion_due_at is None  # a person's undo stands
    assert db.session.get(BackupPoint, asked.id).deletion_due_at == (
        DAY0 + timedelta(hours=2, minutes=30) + deletions.grace_for("backup"))  # left as the person asked
    assert db.session.get(BackupPoint, newest.id).deletion_due_at is None
    requests = AuditEntry.query.filter_by(action="deletion.request", actor="system:retention").count()
    assert requests == 1  # only the first time for ``undone``; nothing else was requested by retention
