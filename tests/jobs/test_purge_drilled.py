"""Purging data that fire drills used, with real images, Redis and the engine: drilled points and VMs (the
foreign key shows on PostgreSQL), catalog rows gone before the engine forgets, a point being drilled kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from portal.extensions import db
from portal.models import VM, BackupPoint, FireDrill
from portal.services import deletions, drills
from storage import retention
from storage.repository import Repository
from tests.fixtures.jobs import run_jobs

from .helpers import fresh_row
from .test_jobs import backed_up


def _revisions(app: Any, vm: Any) -> list[str]:
    return [r.id for r in Repository.open(app.config["STORAGE_ROOT"], vm.repository_name).revisions()]


def _drilled(vm: Any, queues: Any, world: dict[str, Any], app: Any, tmp_path: Path) -> tuple[BackupPoint, int]:
    app.config["RESTORE_ROOT"] = str(tmp_path / "restores")
    point = backed_up(vm, queues, world)
    drill = drills.request_drill(vm, world["operator"])
    run_jobs(queues)
    assert fresh_row(FireDrill, drill.id).result == "passed"
    return point, drill.id


def _purge_after_grace(obj: Any, world: dict[str, Any]) -> deletions.PurgeReport:
    if world["acme_point"] in db.session:  # the world's catalog-only row (pending deletion): not this story
        db.session.delete(world["acme_point"])
        db.session.commit()
    deletions.request_deletion(world["operator"], obj)
    return deletions.purge_due(obj.deletion_due_at + timedelta(minutes=1))


def test_a_drilled_point_is_purged_and_its_drill_keeps_its_result(file_vm, queues, world, app, tmp_path,
                                                                   client, auth, monkeypatch) -> None:
    point, drill_id = _drilled(file_vm, queues, world, app, tmp_path)
    point_id, revision = point.id, point.revision
    seen: list[object] = []
    real_forget = retention.forget

    def forget(root: str, repository: str, rev: str) -> Any:  # the real engine, after a look at the catalog
        with db.session.no_autoflush:  # what the database holds now, not what a look would flush
            seen.append(db.session.scalar(select(BackupPoint.id).where(BackupPoint.id == point_id)))
        return real_forget(root, repository, rev)

    monkeypatch.setattr(retention, "forget", forget)
    report = _purge_after_grace(point, world)
    assert len(report.purged) == 1 and not report.failed, report.summary()
    assert seen == [None]  # the row was deleted (flushed) before the engine forgot the revision
    assert fresh_row(BackupPoint, point_id) is None and revision not in _revisions(app, file_vm)
    drill = fresh_row(FireDrill, drill_id)
    assert drill.backup_point_id is None and drill.result == "passed"
    auth.login(world["operator"])
    page = client.get(f"/operations/drills/{drill_id}")
    assert page.status_code == 200 and b"since deleted" in page.data
    listing = client.get("/operations/drills")
    assert listing.status_code == 200 and b"deleted" in listing.data


def test_a_drilled_vm_is_purged_with_its_drills(file_vm, queues, world, app, tmp_path) -> None:
    _, drill_id = _drilled(file_vm, queues, world, app, tmp_path)
    vm_id = file_vm.id
    report = _purge_after_grace(file_vm, world)
    assert len(report.purged) == 1 and not report.failed, report.summary()
    assert fresh_row(VM, vm_id) is None and fresh_row(FireDrill, drill_id) is None


def test_a_point_being_drilled_is_not_purged_yet(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)
    drills.request_drill(file_vm, world["operator"])  # queued, not run
    report = _purge_after_grace(point, world)
    assert report.purged == [] and "fire drill" in report.deferred[0]
    assert fresh_row(BackupPoint, point.id) is not None
