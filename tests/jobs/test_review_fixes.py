"""Review fixes, with real images, Redis and the engine: purging drilled points and VMs (the foreign key shows
on PostgreSQL), rows gone before the engine forgets, a distrusted point not re-verified every tick, and a
drill retried after its worker died while checking."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import VM, BackupPoint, FireDrill, Verification
from portal.services import deletions, drills, verification
from storage import retention
from storage.repository import Repository
from tests.fixtures.jobs import run_jobs

from .test_jobs import backed_up


def _fresh(model: Any, row_id: int) -> Any:
    db.session.expire_all()
    return db.session.get(model, row_id)


def _revisions(app: Any, vm: Any) -> list[str]:
    return [r.id for r in Repository.open(app.config["STORAGE_ROOT"], vm.repository_name).revisions()]


def _drilled(vm: Any, queues: Any, world: dict[str, Any], app: Any, tmp_path: Path) -> tuple[BackupPoint, int]:
    app.config["RESTORE_ROOT"] = str(tmp_path / "restores")
    point = backed_up(vm, queues, world)
    drill = drills.request_drill(vm, world["operator"])
    run_jobs(queues)
    assert _fresh(FireDrill, drill.id).result == "passed"
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
    assert _fresh(BackupPoint, point_id) is None and revision not in _revisions(app, file_vm)
    drill = _fresh(FireDrill, drill_id)
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
    assert _fresh(VM, vm_id) is None and _fresh(FireDrill, drill_id) is None


def test_a_point_being_drilled_is_not_purged_yet(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)
    drills.request_drill(file_vm, world["operator"])  # queued, not run
    report = _purge_after_grace(point, world)
    assert report.purged == [] and "fire drill" in report.deferred[0]
    assert _fresh(BackupPoint, point.id) is not None


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
    assert _fresh(Verification, first).phase == "damage found"
    assert _fresh(BackupPoint, point.id).state == "distrusted"
    assert verification.schedule_due(now + timedelta(minutes=1)) == []  # attempted: not due every minute
    assert verification.schedule_due(now + timedelta(days=5)) == []
    later = verification.schedule_due(now + timedelta(days=6, minutes=1))  # the interval has passed
    assert [(r.vm_id, r.revision) for r in map(lambda i: _fresh(Verification, i), later)
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
    assert _fresh(BackupPoint, point.id).state == "distrusted"
    assert verification.schedule_due(clock.now()) == []
    newer = backed_up(file_vm, queues, world)  # may rewrite the damaged chunk: worth a look at both points
    [row] = verification.schedule_due(clock.now())
    assert _fresh(Verification, row).revision == ""  # both due: one pass over the repository
    run_jobs(queues)
    assert sorted(_fresh(Verification, row).result["revisions_checked"]) == sorted([point.revision, newer.revision])


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
    drill = _fresh(FireDrill, drill.id)
    assert (drill.state, drill.result) == ("done", "passed"), drill.error
    assert not scratch.exists()
