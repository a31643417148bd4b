"""The events where they happen: real backup and restore jobs, deletions, inventory sync, the scheduler."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from portal import clock
from portal.extensions import db
from portal.models import BackupPoint, BackupRun
from portal.services import deletions, inventory, notify, runs, schedule
from tests.fixtures.jobs import run_jobs

from .test_channels import add_hook, rows


def kinds_for(user) -> list[str]:
    return [r.kind for r in rows(channel="portal", user_id=user.id)]


def test_backup_and_restore_jobs_report_their_events(file_vm, notifying, world, receiver) -> None:
    add_hook(world, receiver.url, ["backup.finished", "restore.queued", "restore.started", "restore.finished"])
    run = runs.request_backup(file_vm, world["operator"])
    run_jobs(notifying)
    db.session.expire_all()
    run = db.session.get(BackupRun, run.id)
    assert run.state == "done"
    point = BackupPoint.query.filter_by(vm_id=file_vm.id, revision=run.revision).one()
    restore = runs.request_restore(world["acme_admin"], file_vm, point, "full")
    run_jobs(notifying)
    # the world's older point fell out of web-1's retention with the backup: one event for that run
    assert kinds_for(world["acme_admin"]) == ["deletion.scheduled", "restore.queued", "restore.started",
                                              "restore.finished"]
    assert receiver.events() == ["backup.finished", "restore.queued", "restore.started", "restore.finished"]
    finished = receiver.received[-1]["json"]
    assert finished["details"]["restore"] == restore.id and finished["vm"]["name"] == "web-1"
    assert receiver.received[0]["json"]["details"]["revision"] == run.revision


def test_a_failed_backup_is_reported(file_vm, notifying, world) -> None:
    Path(file_vm.disks[0].source[len("file:"):]).unlink()  # the disk image is gone
    runs.request_backup(file_vm, world["operator"])
    run_jobs(notifying)
    [row] = rows(channel="portal", user_id=world["acme_admin"].id)
    assert row.kind == "backup.failed" and row.subject.startswith("Backup of web-1 failed: ")


def test_deletion_scheduled_and_the_reminder_a_day_before(world, queues) -> None:
    staging = world["acme_staging"]
    deletions.request_deletion(world["acme_admin"], staging)
    admins = [world["acme_admin"], world["manager"]]
    assert [kinds_for(u) for u in admins] == [["deletion.scheduled"]] * 2
    assert kinds_for(world["acme_member"]) == []  # members cannot undo: not alarmed
    due = staging.deletion_due_at
    assert notify.deletion_reminders(due - timedelta(hours=30)) == []  # not yet within a day
    assert notify.deletion_reminders(due - timedelta(hours=23)) == [f"vm:{staging.id}"]
    assert notify.deletion_reminders(due - timedelta(hours=22)) == []  # once
    [reminder] = [r for r in rows(channel="portal", user_id=world["acme_admin"].id) if r.kind == "deletion.imminent"]
    assert reminder.subject == f"VM staging-api will be deleted within a day, on {due:%Y-%m-%d %H:%M} UTC"


def test_undoing_a_deletion_is_announced_and_retires_its_notification(world, notifying, receiver) -> None:
    add_hook(world, receiver.url, [])  # the default events: scheduled and cancelled both go out
    staging, admin = world["acme_staging"], world["acme_admin"]
    deletions.request_deletion(admin, staging)
    due = staging.deletion_due_at
    deletions.undo(world["manager"], staging)
    run_jobs(notifying)
    [scheduled, cancelled] = rows(channel="portal", user_id=admin.id)
    assert scheduled.kind == "deletion.scheduled" and scheduled.read_at is not None  # no longer true: read
    assert cancelled.kind == "deletion.cancelled" and cancelled.read_at is None
    assert cancelled.subject == (f"VM staging-api will not be deleted: the deletion due on {due:%Y-%m-%d %H:%M} UTC "
                                 "was cancelled")
    assert cancelled.details["cancelled_by"] == world["manager"].email
    assert receiver.events() == ["deletion.scheduled", "deletion.cancelled"]
    assert kinds_for(world["acme_member"]) == []  # members heard of neither


def test_a_refused_inventory_sync_reaches_staff(world, queues) -> None:
    feed = {"organisations": [{"slug": "acme", "name": "Acme", "resource_groups": []}]}
    with pytest.raises(inventory.SyncRefused):
        inventory.sync(feed, "acme", actor="storage-7")
    assert kinds_for(world["manager"]) == ["inventory.sync_refused"]
    assert kinds_for(world["operator"]) == ["inventory.sync_refused"]
    assert kinds_for(world["acme_admin"]) == []
    assert "would mark 2 of 2 known VMs" in rows(channel="portal", user_id=world["operator"].id)[0].subject


def test_the_scheduler_raises_rpo_missed_and_about_to_be_missed(world, queues) -> None:
    now = clock.now()
    schedule.tick(now + timedelta(hours=3))  # acme web-1 (RPO 120 min) has missed it
    assert "rpo.missed" in kinds_for(world["acme_admin"])
    schedule.tick(now + timedelta(hours=3, minutes=1))
    assert kinds_for(world["acme_admin"]).count("rpo.missed") == 1  # once until it is back within its RPO

    shop = world["globex_vm"]  # RPO 24 h; its last backup attempt failed
    db.session.add(BackupRun(vm_id=shop.id, state="failed", error="pool offline", created_at=now))
    db.session.commit()
    assert notify.at_risk(now + timedelta(hours=12)) == []  # half the RPO left: not yet
    assert notify.at_risk(now + timedelta(hours=20)) == [shop.id]
    assert notify.at_risk(now + timedelta(hours=21)) == []  # once per episode
    [row] = [r for r in rows(channel="portal", user_id=world["globex_admin"].id) if r.kind == "rpo.at_risk"]
    assert row.subject.startswith("shop-1 will miss its RPO of 1440 minutes in 2")  # ~4 h (world's clock moved)
    assert row.subject.endswith("minutes: the last backup failed")


def test_damage_found_by_verification_and_a_failed_fire_drill(file_vm, notifying, world, app) -> None:
    from portal.services import drills, verification

    runs.request_backup(file_vm, world["operator"])
    run_jobs(notifying)
    chunks = Path(app.config["STORAGE_ROOT"]) / file_vm.repository_name / "chunks"
    victim = next(p for p in sorted(chunks.rglob("*")) if p.is_file())
    victim.chmod(0o644)
    victim.write_bytes(b"rotten" + victim.read_bytes()[6:])  # bit rot in one chunk
    drills.request_drill(file_vm, "test")  # restores into scratch space: the damaged chunk fails its check
    verification.request(file_vm, "test")
    run_jobs(notifying)
    kinds = kinds_for(world["acme_admin"])
    assert kinds.count("drill.failed") == 1 and kinds.count("verify.damage") == 1
    damage = next(r for r in rows(kind="verify.damage", channel="portal"))
    assert damage.details["damaged_chunks"] == 1 and damage.vm_name == "web-1"
