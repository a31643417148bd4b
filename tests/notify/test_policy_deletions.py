"""Retention's deletions without a storm: one ``deletion.scheduled`` per run and VM (listing the points), and
for people one reminder per VM and day; webhooks still hear of each point. People's own requests stay one
event per object. Real backups, real Redis, a real webhook receiver; clocks pinned."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from portal import clock
from portal.extensions import db
from portal.models import BackupPoint
from portal.services import deletions, notify
from storage import clock as storage_clock
from tests.fixtures.jobs import run_jobs
from tests.jobs.test_jobs import backed_up

from .test_channels import add_hook, rows

DAY0 = datetime(2027, 3, 1, 10, 0)


@pytest.fixture
def at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[datetime], None]]:
    def pin(moment: datetime) -> None:
        aware = moment.replace(tzinfo=UTC)
        clock.set_now(aware)
        monkeypatch.setattr(storage_clock, "now", lambda: aware)

    yield pin
    clock.set_now(None)


def _states(kind: str, user: Any) -> list[str]:
    return [r.state for r in rows(kind=kind, channel="portal", user_id=user.id)]


def test_retention_deletions_are_one_event_per_run_and_one_reminder_a_day(file_vm, queues, world, app, at,
                                                                         receiver) -> None:
    app.config.update(WEBHOOK_ALLOW_PRIVATE=True, NOTIFY_RETRY_INTERVALS=[0, 0])
    db.session.delete(world["acme_point"])  # catalog-only, no repository: not part of this story
    for field in ("keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"):
        setattr(file_vm.policy, field, 1 if field == "keep_hourly" else 0)
    db.session.commit()
    add_hook(world, receiver.url, ["deletion.scheduled", "deletion.imminent"])
    admin = world["acme_admin"]
    for hour in range(4):  # hourly backups: each run from the second on lets one point go
        at(DAY0 + timedelta(hours=hour))
        backed_up(file_vm, queues, world)
    run_jobs(queues)
    db.session.expire_all()
    gone = sorted((p for p in BackupPoint.query.filter_by(vm_id=file_vm.id) if p.deletion_due_at is not None),
                  key=lambda p: p.created_at)
    assert len(gone) == 3
    scheduled = rows(kind="deletion.scheduled", channel="webhook")
    assert [[p["id"] for p in r.details["points"]] for r in scheduled] == [[p.id] for p in gone]
    assert receiver.events().count("deletion.scheduled") == 3
    assert _states("deletion.scheduled", admin) == ["sent", "suppressed", "suppressed"]  # one a day for people

    first_due = gone[0].deletion_due_at
    reminded = []
    for hours_before in (23.5, 22.5, 21.5, 20):  # the points are due an hour apart
        at(first_due - timedelta(hours=hours_before))
        reminded.append(notify.deletion_reminders(clock.now()))
    assert reminded == [[f"backup:{gone[0].id}"], [f"backup:{gone[1].id}"], [f"backup:{gone[2].id}"], []]
    assert _states("deletion.imminent", admin) == ["sent", "suppressed", "suppressed"]
    assert len(rows(kind="deletion.imminent", channel="webhook")) == 3  # webhooks: one per point, as before

    newest = max(BackupPoint.query.filter_by(vm_id=file_vm.id, deletion_due_at=None), key=lambda p: p.created_at)
    deletions.request_deletion(admin, newest)  # a person's request: its own event and its own reminder
    assert _states("deletion.scheduled", admin)[-1] == "sent"
    at(newest.deletion_due_at - timedelta(hours=23))
    assert notify.deletion_reminders(clock.now()) == [f"backup:{newest.id}"]
    assert _states("deletion.imminent", admin)[-1] == "sent"
    run_jobs(queues)
    assert receiver.events().count("deletion.imminent") == 4
