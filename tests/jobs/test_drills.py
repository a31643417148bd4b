"""Fire drills with real disk images, real Redis and the real engine: scratch restore, checks, throughput,
"restore-tested on", the schedule (fixed clock), the operator's button and the fleet RTO projection."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import current_app
from rq import Queue

from portal import clock
from portal.extensions import db
from portal.models import AuditEntry, BackupPoint, FireDrill
from portal.services import disaster, drills, eta, schedule
from portal.services.drills import DrillError
from tests.fixtures.jobs import run_jobs

from . import images_available
from .helpers import fresh_row
from .test_jobs import backed_up

needs_images = pytest.mark.skipif(not images_available(), reason="needs sfdisk and mkfs.ext4 (fdisk, e2fsprogs)")


def _drill(drill_id: int) -> FireDrill:
    db.session.expire_all()
    return db.session.get(FireDrill, drill_id)


def _scratch(app: Any) -> Path:
    return Path(app.config["RESTORE_ROOT"]) / "drills"


@pytest.fixture
def scratch_root(app: Any, tmp_path: Path) -> Path:
    app.config["RESTORE_ROOT"] = str(tmp_path / "restores")
    return tmp_path / "restores" / "drills"


@needs_images
def test_a_drill_restores_checks_measures_and_cleans_up(file_vm, queues, world, scratch_root, client,
                                                        auth) -> None:
    point = backed_up(file_vm, queues, world)
    drill = drills.request_drill(file_vm, world["operator"])
    assert drill.state == "queued" and drill.backup_point_id == point.id  # committed before the job
    assert Queue("maintenance", connection=queues).get_job_ids() == [drill.job_id]
    run_jobs(queues)
    drill = _drill(drill.id)
    assert (drill.state, drill.result) == ("done", "passed"), drill.error or drill.checks
    assert drill.checks["chunks"] == {"ok": True, "damaged": []}
    assert drill.checks["filesystems"]["opened"] == ["/p1"]
    read = {f["path"]: f["bytes"] for f in drill.checks["files"]["read"]}
    assert read["/p1/etc/hostname"] == 5 and read["/p1/srv/data.bin"] == 4 << 20
    assert drill.bytes_total == point.size_bytes and drill.bytes_per_second > 0 and drill.seconds > 0
    assert scratch_root.is_dir() and os.listdir(scratch_root) == []  # the scratch image is gone
    assert AuditEntry.query.filter_by(action="drill.request").count() == 1

    auth.login(world["acme_member"])  # customers see the result on the backup point
    page = client.get(f"/vms/{file_vm.id}").data.decode()
    assert f"restore-tested on {drill.finished_at:%Y-%m-%d}" in page
    # Measured drill throughput now feeds the projections.
    assert eta.throughput() == pytest.approx(drill.bytes_total / drill.seconds)


def test_damaged_chunks_fail_the_drill_and_the_point_is_not_marked(file_vm, queues, world, scratch_root) -> None:
    point = backed_up(file_vm, queues, world)
    chunks = Path(current_app.config["STORAGE_ROOT"]) / file_vm.repository_name / "chunks"
    victim = sorted(p for p in chunks.rglob("*") if p.is_file())[0]
    victim.chmod(0o644)
    victim.write_bytes(b"not the chunk you stored")
    drill = drills.request_drill(file_vm, world["operator"])
    run_jobs(queues)
    drill = _drill(drill.id)
    assert (drill.state, drill.result) == ("done", "failed")
    assert drill.checks["chunks"]["ok"] is False and drill.checks["chunks"]["damaged"]
    assert drills.tested_on([point.id]) == {}
    assert os.listdir(scratch_root) == []


def test_a_drill_of_a_missing_repository_fails_with_the_reason(world, queues, scratch_root) -> None:
    drill = drills.request_drill(world["globex_vm"], world["operator"])  # a catalog row, no repository
    run_jobs(queues)
    drill = _drill(drill.id)
    assert (drill.state, drill.result) == ("failed", "failed") and drill.error
    assert not list(scratch_root.glob("*"))


def test_never_two_drills_at_once_and_only_usable_points(world, queues) -> None:
    drills.request_drill(world["acme_vm"], world["operator"])
    with pytest.raises(DrillError, match="already queued or running"):
        drills.request_drill(world["acme_vm"], world["operator"])
    with pytest.raises(DrillError, match="no usable backup point"):
        drills.request_drill(world["acme_staging"], world["operator"])
    world["globex_point"].state = "distrusted"
    db.session.commit()
    with pytest.raises(DrillError, match="no usable backup point"):
        drills.request_drill(world["globex_vm"], world["operator"])


def test_schedule_spreads_bounds_and_retries(file_vm, queues, world, scratch_root) -> None:
    backed_up(file_vm, queues, world)
    current_app.config["DRILL_MAX_ACTIVE"] = 1
    now = clock.now()
    first = drills.schedule(now)  # web-1 and shop-1 were never drilled; one at a time
    assert [_drill(i).vm_id for i in first] == [file_vm.id]
    assert drills.schedule(now) == []  # bounded: one is still queued
    run_jobs(queues)
    assert _drill(first[0]).result == "passed"
    second = drills.schedule(now)
    assert [_drill(i).vm_id for i in second] == [world["globex_vm"].id]  # staging has no point: never due
    run_jobs(queues)
    assert _drill(second[0]).result == "failed"  # its catalog row has no repository behind it
    assert drills.schedule(now) == []  # web-1 passed just now; shop-1 failed less than a day ago
    later = now + timedelta(hours=25)
    assert [vm.id for vm in drills.due(later)] == [world["globex_vm"].id]  # the failed one, retried
    assert file_vm not in drills.due(now + timedelta(days=20))  # spread: at most a quarter month early
    assert file_vm in drills.due(now + timedelta(days=31))  # at least monthly
    offsets = {drills.spread(vm, timedelta(days=30)) for vm in (file_vm, world["globex_vm"], world["acme_staging"])}
    assert len(offsets) == 3 and all(timedelta(0) <= o < timedelta(days=7.5) for o in offsets)


def test_the_scheduler_tick_requests_drills(world, queues) -> None:
    schedule.tick(clock.now())
    assert {d.vm_id for d in FireDrill.query.all()} == {world["acme_vm"].id, world["globex_vm"].id}
    assert all(d.trigger == "schedule" and d.requested_by == "system:scheduler" for d in FireDrill.query.all())


def test_a_drill_redis_lost_is_requeued(world, queues) -> None:
    drill = drills.request_drill(world["acme_vm"], world["operator"])
    queues.flushdb()
    assert drills.reconcile() == [drill.job_id]
    assert Queue("maintenance", connection=queues).get_job_ids() == [drill.job_id]


def test_operator_button_and_drill_page(world, queues, client, auth) -> None:
    auth.login(world["operator"])
    answer = client.post("/operations/drills", data={"vm": str(world["acme_vm"].id)})
    assert answer.status_code == 303
    page = client.get(answer.headers["Location"]).data.decode()
    assert 'data-state="queued"' in page and 'hx-trigger="every 1s"' in page
    again = client.post("/operations/drills", data={"vm": str(world["acme_vm"].id)})
    assert again.status_code == 422 and b"already queued or running" in again.data
    listing = client.get("/operations/drills").data.decode()
    assert "Fleet RTO" in listing and 'data-workers="8"' in listing
    auth.login(world["acme_admin"])
    assert client.post("/operations/drills", data={"vm": str(world["acme_vm"].id)}).status_code == 403


def test_fleet_rto_projection_for_1_to_n_workers(world) -> None:
    world["acme_restore"].state = "done"  # not in flight: counted like every other VM anyway
    sizes = {"web-1": 1 << 30, "shop-1": 3 << 30}
    for point in (world["acme_point"], world["globex_point"]):
        point.size_bytes = sizes[point.vm.name]
    db.session.add(FireDrill(vm_id=world["acme_vm"].id, backup_point_id=world["acme_point"].id, state="done",
                             result="passed", bytes_total=512 << 20, seconds=2.0, finished_at=clock.now()))
    db.session.commit()
    speed, projections, fleet = disaster.fleet_rto(3)
    assert speed == 256 << 20  # 512 MiB in 2 s, measured by the drill
    assert [e.vm.name for e in fleet.entries] == ["web-1", "shop-1"] and [v.name for v in fleet.missing] == [
        "staging-api"]
    assert [(p.workers, p.total_seconds, p.critical_seconds) for p in projections] == [
        (1, 16.0, 4.0), (2, 12.0, 4.0), (3, 12.0, 4.0)]  # 1 GiB + 3 GiB at 256 MiB/s per worker
    assert BackupPoint.query.count() == 2


def test_a_drill_retried_after_dying_while_checking_removes_the_old_image(file_vm, queues, world, app,
                                                                         tmp_path) -> None:
    app.config["RESTORE_ROOT"] = str(tmp_path / "restores")
    backed_up(file_vm, queues, world)
    drill = drills.request_drill(file_vm, world["operator"])
    scratch = tmp_path / "restores" / "drills" / f"drill-{drill.id}.img"
    scratch.parent.mkdir(parents=True)
    scratch.write_bytes(b"\0" * 4096)  # the complete image of the attempt whose worker died in "checking"
    drill.state, drill.phase, drill.attempts = "running", "checking", 1
    db.session.commit()
    run_jobs(queues)
    drill = fresh_row(FireDrill, drill.id)
    assert (drill.state, drill.result) == ("done", "passed"), drill.error
    assert not scratch.exists()
