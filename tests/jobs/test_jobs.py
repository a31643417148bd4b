"""Backups and restores as queued jobs with real Redis and real engine work."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any

from portal.extensions import db
from portal.models import BackupPoint, BackupRun, Restore
from portal.services import runs
from tests.fixtures.jobs import run_jobs


def backed_up(vm: Any, queues: Any, world: dict[str, Any]) -> BackupPoint:
    run = runs.request_backup(vm, world["operator"])
    assert run.state == "queued"  # the row exists before the job runs
    run_jobs(queues)
    db.session.expire_all()
    run = db.session.get(BackupRun, run.id)
    assert run.state == "done", run.error
    return BackupPoint.query.filter_by(vm_id=vm.id, revision=run.revision).one()


def test_backup_job_runs_the_engine_and_fills_the_catalog(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)
    run = BackupRun.query.one()
    assert run.progress == 1.0 and run.stats["chunks_new"] >= 1 and run.attempts == 1
    assert point.size_bytes == 24 * 1024 * 1024 and point.state == "ok"


def test_full_restore_job_writes_a_new_image_equal_to_the_source(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)
    source = Path(file_vm.disks[0].source[len("file:"):]).read_bytes()
    restore = runs.request_restore(world["acme_admin"], file_vm, point, "full")
    assert restore.priority_class == "critical" and "Premium" in restore.priority_reason
    run_jobs(queues)
    db.session.expire_all()
    restore = db.session.get(Restore, restore.id)
    assert restore.state == "done", restore.error
    assert Path(restore.output_path).read_bytes() == source
    assert restore.report["damaged"] == [] and restore.progress == 1.0


def test_file_restore_job_builds_an_archive_of_the_selection(file_vm, queues, world) -> None:
    from tests import images

    if not images.have("sfdisk", "mkfs.ext4"):
        import pytest

        pytest.skip("needs sfdisk and mkfs.ext4 for a filesystem image")
    point = backed_up(file_vm, queues, world)
    restore = runs.request_restore(world["acme_admin"], file_vm, point, "files", paths=["/p1/etc"])
    run_jobs(queues)
    db.session.expire_all()
    restore = db.session.get(Restore, restore.id)
    assert restore.state == "done", restore.error
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(Path(restore.output_path).read_bytes()))) as archive:
        assert archive.extractfile("etc/hostname").read() == b"demo\n"  # type: ignore[union-attr]


def test_restores_run_in_priority_order(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)
    from .helpers import make_point_for

    staging = world["acme_staging"]
    globex = world["globex_vm"]
    normal = runs.request_restore(world["globex_admin"], globex, make_point_for(globex, point), "full")
    high_vm = staging
    high = runs.request_restore(world["acme_admin"], high_vm, make_point_for(high_vm, point), "full")
    critical = runs.request_restore(world["acme_admin"], file_vm, point, "full")
    # globex is production on Basic (class normal); the staging VM one class below Premium's critical.
    assert (normal.priority_class, high.priority_class, critical.priority_class) == ("normal", "high", "critical")
    run_jobs(queues)
    db.session.expire_all()
    started = sorted(Restore.query.all(), key=lambda r: r.started_at)
    assert [r.id for r in started] == [critical.id, high.id, normal.id]  # queued in the reverse order


def test_a_cancelled_restore_never_runs(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)
    restore = runs.request_restore(world["acme_admin"], file_vm, point, "full")
    assert runs.cancel_restore(world["acme_admin"], restore)
    run_jobs(queues)
    db.session.expire_all()
    restore = db.session.get(Restore, restore.id)
    assert restore.state == "cancelled" and restore.started_at is None and not restore.output_path
