"""The scheduler with a fixed clock, and the reconciler against a real Redis that loses its jobs."""

from __future__ import annotations

from datetime import timedelta

from portal import clock
from portal.extensions import db
from portal.models import BackupRun, Restore
from portal.services import runs, schedule
from tests.fixtures.jobs import run_jobs
from tests.fixtures.portal import notices


def test_exactly_the_due_backups_are_enqueued(world, queues) -> None:
    now = clock.now()
    first = schedule.tick(now)  # acme and globex VMs have a good point from "now"; staging has none
    assert first.backups == [world["acme_staging"].id]
    assert schedule.tick(now).backups == []  # an active run blocks a second request for the same VM
    later = now + timedelta(hours=3)  # past acme web-1's 120 min RPO, well within globex's 24 h
    assert schedule.tick(later).backups == [world["acme_vm"].id]
    queued = sorted(r.vm_id for r in BackupRun.query.all())
    assert queued == sorted([world["acme_staging"].id, world["acme_vm"].id])


def test_a_slow_vm_starts_its_backup_early_enough_to_finish_within_its_rpo(world, queues) -> None:
    vm, now = world["acme_vm"], clock.now()  # RPO 120 min, a good point from "now"
    lead = schedule.spread(vm, 120)
    moment = now + timedelta(minutes=120) - lead - timedelta(minutes=30)  # half an hour before it would be due
    assert vm.id not in [v.id for v in schedule.due_backups(moment)]
    db.session.add(BackupRun(vm_id=vm.id, state="done", started_at=now - timedelta(minutes=40),
                             finished_at=now))  # its last backup took 40 minutes: start 60 minutes early
    db.session.commit()
    assert vm.id in [v.id for v in schedule.due_backups(moment)]


def test_start_times_are_spread_within_a_tenth_of_the_rpo(world) -> None:
    offsets = {schedule.spread(vm, 60) for vm in (world["acme_vm"], world["acme_staging"], world["globex_vm"])}
    assert len(offsets) == 3 and all(timedelta(0) <= o < timedelta(minutes=6) for o in offsets)


def test_rpo_misses_raise_one_notice_until_back_within(world, queues) -> None:
    later = clock.now() + timedelta(hours=3)
    assert world["acme_vm"].id in schedule.tick(later).rpo_missed
    assert schedule.tick(later).rpo_missed == []  # still missed: no second notice
    notice = notices(kind="rpo.missed", dedup_key=f"vm:{world['acme_vm'].id}").one()
    assert notice.dismissed_at is None and "RPO of 120 minutes" in notice.message


def test_redis_flushed_the_reconciler_requeues_and_the_job_runs(file_vm, queues, world) -> None:
    run = runs.request_backup(file_vm, world["operator"])
    queues.flushdb()  # Redis restarted empty: the job is gone, the row is not
    result = schedule.tick(clock.now())
    assert run.job_id in result.requeued
    run_jobs(queues)
    db.session.expire_all()
    assert db.session.get(BackupRun, run.id).state == "done"


def test_a_running_row_whose_worker_died_is_retried_then_given_up(world, queues) -> None:
    restore = db.session.get(Restore, world["acme_restore"].id)
    restore.state, restore.attempts = "running", 1  # a worker took it, then vanished with its job
    db.session.commit()
    assert restore.job_id in schedule.tick(clock.now()).requeued
    db.session.expire_all()
    restore = db.session.get(Restore, restore.id)
    assert restore.state == "queued"
    queues.flushdb()
    restore.state, restore.attempts = "running", schedule.MAX_ATTEMPTS
    db.session.commit()
    assert restore.job_id in schedule.tick(clock.now()).failed
    db.session.expire_all()
    assert db.session.get(Restore, restore.id).state == "failed"


def test_a_tick_without_redis_still_records_rpo_misses_and_says_what_failed(world, app) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    later = clock.now() + timedelta(hours=3)  # web-1 (RPO 120 min) is late
    result = schedule.tick(later)
    assert world["acme_vm"].id in result.rpo_missed
    assert notices(kind="rpo.missed", dedup_key=f"vm:{world['acme_vm'].id}").count() == 1
    assert any(e.startswith("backups: ") for e in result.errors) and any(e.startswith("reconcile: ")
                                                                        for e in result.errors)
    assert BackupRun.query.filter_by(vm_id=world["acme_vm"].id).count() == 1  # the row is there for the reconciler
