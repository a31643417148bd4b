"""Rolling verification: rows before jobs, the engine's verify under the VM lock, the catalog following it, and
a scheduler that keeps every point within 7 days, newest first, without flooding."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from portal import clock
from portal.extensions import db
from portal.models import AuditEntry, BackupPoint, Verification
from portal.services import schedule, verification
from storage.retention import set_protected
from tests.fixtures.jobs import run_jobs

from .helpers import fresh_row, make_point_for
from .test_jobs import backed_up


def _fresh(row: Any) -> Any:
    db.session.expire_all()
    return db.session.get(type(row), row.id)


def _settle_world(world: dict[str, Any]) -> None:
    """The world's catalog-only points have no repository: mark them verified so the scheduler leaves them."""
    for name in ("acme_point", "globex_point"):
        world[name].verified_at = clock.now()
    db.session.commit()


def test_verification_row_first_then_job_then_catalog(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)
    assert point.state == "ok" and point.verified_at is None
    row = verification.request(file_vm, world["operator"], point)
    assert row.state == "queued" and row.revision == point.revision  # committed before the job ran
    assert queues.llen("rq:queue:maintenance") == 1
    run_jobs(queues)
    row, point = _fresh(row), _fresh(point)
    assert row.state == "done", row.error
    assert row.result["damaged_chunks"] == [] and row.result["distrusted_revisions"] == []
    assert row.result["revisions_checked"] == [point.revision] and row.bytes_done > 0
    assert point.state == "verified" and point.verified_at is not None


def test_damage_is_found_and_the_point_distrusted(file_vm, queues, world, app) -> None:
    point = backed_up(file_vm, queues, world)
    chunks = sorted(Path(app.config["STORAGE_ROOT"], file_vm.repository_name, "chunks").rglob("*"))
    victim = next(p for p in chunks if p.is_file())
    os.chmod(victim, 0o644)
    victim.write_bytes(b"not what was stored")
    row = verification.request(file_vm, world["operator"])  # the whole VM
    run_jobs(queues)
    row, point = _fresh(row), _fresh(point)
    assert row.state == "done" and row.phase == "damage found"
    assert row.result["damaged_chunks"] == [victim.name] and row.result["distrusted_revisions"] == [point.revision]
    assert point.state == "distrusted"
    assert AuditEntry.query.filter_by(action="verification.damage").count() == 1


def test_one_active_verification_per_vm(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)
    first = verification.request(file_vm, world["operator"], point)
    assert verification.request(file_vm, world["operator"]).id == first.id
    assert Verification.query.count() == 1


def test_the_scheduler_verifies_newest_first_bounded_and_again_within_a_week(file_vm, queues, world, app) -> None:
    _settle_world(world)
    app.config["VERIFY_MAX_ACTIVE"] = 1
    newest = backed_up(file_vm, queues, world)
    staging = world["acme_staging"]
    older = make_point_for(staging, newest)
    older.created_at = newest.created_at - timedelta(days=1)
    db.session.commit()
    now = clock.now()

    first = schedule.tick(now)
    assert len(first.verifications) == 1
    row = db.session.get(Verification, first.verifications[0])
    assert (row.vm_id, row.revision) == (file_vm.id, newest.revision)  # the newest point first
    assert schedule.tick(now).verifications == []  # bounded: one at a time, and never two for one VM
    run_jobs(queues)
    second = schedule.tick(now)
    assert [db.session.get(Verification, i).vm_id for i in second.verifications] == [staging.id]
    run_jobs(queues)
    assert _fresh(newest).state == _fresh(older).state == "verified"

    assert schedule.tick(now + timedelta(days=5)).verifications == []  # all fresh
    again = schedule.tick(now + timedelta(days=6, minutes=1))  # within a day of the 7-day limit
    assert len(again.verifications) == 1


def test_several_due_points_of_a_vm_are_verified_in_one_pass(file_vm, queues, world, app) -> None:
    _settle_world(world)
    first = backed_up(file_vm, queues, world)
    set_protected(app.config["STORAGE_ROOT"], file_vm.repository_name, first.revision, True)  # past retention
    second = backed_up(file_vm, queues, world)
    result = schedule.tick(clock.now())
    rows = [db.session.get(Verification, i) for i in result.verifications]
    assert [(r.vm_id, r.revision) for r in rows] == [(file_vm.id, "")]
    run_jobs(queues)
    assert sorted(_fresh(rows[0]).result["revisions_checked"]) == sorted([first.revision, second.revision])
    assert _fresh(first).state == _fresh(second).state == "verified"


def test_a_failed_verification_is_not_retried_every_tick(world, queues) -> None:
    now = clock.now()
    first = schedule.tick(now).verifications  # the world's points have no repository behind them
    assert len(first) == 2
    run_jobs(queues)
    assert {_fresh(db.session.get(Verification, i)).state for i in first} == {"failed"}
    assert schedule.tick(now + timedelta(minutes=5)).verifications == []
    assert len(schedule.tick(now + timedelta(hours=7)).verifications) == 2  # retried after a while


def test_the_reconciler_requeues_a_verification_redis_lost(file_vm, queues, world) -> None:
    _settle_world(world)
    point = backed_up(file_vm, queues, world)
    row = verification.request(file_vm, world["operator"], point)
    queues.flushdb()
    assert row.job_id in schedule.tick(clock.now()).requeued
    run_jobs(queues)
    assert _fresh(row).state == "done"


def test_verify_now_from_the_vm_page(file_vm, queues, world, client, auth) -> None:
    backed_up(file_vm, queues, world)
    auth.login(world["acme_admin"])
    refused = client.post(f"/vms/{file_vm.id}/verify")
    assert refused.status_code == 403 and b"Only operators" in refused.data
    auth.login(world["operator"])
    assert b"Verify now" in client.get(f"/vms/{file_vm.id}").data
    answer = client.post(f"/vms/{file_vm.id}/verify", follow_redirects=True)
    assert answer.status_code == 200 and b"Verification of all of web-1" in answer.data
    row = Verification.query.one()
    assert row.revision == "" and row.requested_by == world["operator"].email
    run_jobs(queues)
    assert _fresh(row).state == "done"


def test_verifications_do_not_hold_up_purges(file_vm, queues, world) -> None:
    """A purged point only clears the verification's link (the revision name stays); a purged VM takes its
    verifications with it (database-level ON DELETE, checked on PostgreSQL where foreign keys are enforced)."""
    from portal.services import deletions

    point = backed_up(file_vm, queues, world)
    row = verification.request(file_vm, world["operator"], point)
    run_jobs(queues)
    deletions.request_deletion(world["acme_admin"], point)
    report = deletions.purge_due(clock.now() + deletions.grace_for("backup") + timedelta(minutes=1))
    assert any(point.revision in line or "web-1" in line for line in report.purged), report.summary()
    row = _fresh(row)
    assert row.backup_point_id is None and row.revision == point.revision
    vm = db.session.get(type(file_vm), file_vm.id)
    vm.environment = "staging"
    db.session.commit()
    deletions.request_deletion(world["acme_admin"], vm)
    report = deletions.purge_due(clock.now() + deletions.grace_for("vm") + timedelta(minutes=1))
    assert report.failed == [] and report.deferred == [], report.summary()
    db.session.expire_all()
    assert Verification.query.count() == 0


def test_a_distrusted_point_is_not_verified_again_every_tick(file_vm, queues, world, app) -> None:
    for name in ("acme_point", "globex_point"):  # catalog-only rows without a repository: not this story
        world[name].verified_at = clock.now()
    db.session.commit()
    point = backed_up(file_vm, queues, world)
    chunks = sorted(Path(app.config["STORAGE_ROOT"], file_vm.repository_name, "chunks").rglob("*"))
    victim = next(p for p in chunks if p.is_file())
    victim.chmod(0o644)
    victim.write_bytes(b"not what was stored")
    now = clock.now()
    [first] = verification.schedule_due(now)
    run_jobs(queues)
    assert fresh_row(Verification, first).phase == "damage found"
    assert fresh_row(BackupPoint, point.id).state == "distrusted"
    assert verification.schedule_due(now + timedelta(minutes=1)) == []  # attempted: not due every minute
    assert verification.schedule_due(now + timedelta(days=5)) == []
    later = verification.schedule_due(now + timedelta(days=6, minutes=1))  # the interval has passed
    assert [(r.vm_id, r.revision) for r in map(lambda i: fresh_row(Verification, i), later)
            if r.vm_id == file_vm.id] == [(file_vm.id, point.revision)]


def test_a_new_backup_makes_a_distrusted_point_due_again(file_vm, queues, world, app) -> None:
    for name in ("acme_point", "globex_point"):
        world[name].verified_at = clock.now()
    db.session.commit()
    point = backed_up(file_vm, queues, world)
    verification.request(file_vm, world["operator"])
    chunks = sorted(Path(app.config["STORAGE_ROOT"], file_vm.repository_name, "chunks").rglob("*"))
    victim = next(p for p in chunks if p.is_file())
    victim.chmod(0o644)
    victim.write_bytes(b"not what was stored")
    run_jobs(queues)
    assert fresh_row(BackupPoint, point.id).state == "distrusted"
    assert verification.schedule_due(clock.now()) == []
    newer = backed_up(file_vm, queues, world)  # may rewrite the damaged chunk: worth a look at both points
    [row] = verification.schedule_due(clock.now())
    assert fresh_row(Verification, row).revision == ""  # both due: one pass over the repository
    run_jobs(queues)
    assert sorted(fresh_row(Verification, row).result["revisions_checked"]) == sorted([point.revision, newer.revision])
