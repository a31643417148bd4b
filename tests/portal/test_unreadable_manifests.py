"""A repository with one manifest that cannot be read: the catalog keeps the rest and marks that point damaged, and
nothing that deletes by what manifests reference (a VM purge) goes ahead while it cannot be read."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from portal import clock
from portal.extensions import db
from portal.models import VM, BackupPoint
from portal.services import catalog, deletions
from storage.repository import Repository

from . import test_deletions as deletion_tests


def backed_up(app, vm: VM, tmp_path: Path) -> list[str]:
    """Two real revisions of the VM, catalogued; their ids, oldest first."""
    return [point.revision for point in deletion_tests.backed_up(app, vm, tmp_path)]


def break_manifest(app, vm: VM, revision: str) -> None:
    Path(app.config["STORAGE_ROOT"], vm.repository_name, "revisions", f"{revision}.json").write_text("{ damaged")


def test_the_catalog_marks_an_unreadable_point_damaged_and_keeps_refreshing_the_others(app, world, tmp_path) -> None:
    vm = world["acme_staging"]
    first, second = backed_up(app, vm, tmp_path)
    break_manifest(app, vm, first)
    Repository.open(app.config["STORAGE_ROOT"], vm.repository_name).update_revision(
        second, lambda r: setattr(r, "protected", True))
    assert catalog.refresh(vm) == 2
    db.session.commit()
    states = {p.revision: (p.state, p.protected) for p in BackupPoint.query.filter_by(vm_id=vm.id)}
    assert states == {first: ("damaged", False), second: ("ok", True)}


def test_a_vm_purge_waits_while_one_of_its_manifests_cannot_be_read(app, world, tmp_path) -> None:
    """The unreadable manifest may be a protected revision: nothing of the VM is forgotten until it can be read."""
    vm = world["acme_staging"]
    first, second = backed_up(app, vm, tmp_path)
    break_manifest(app, vm, first)
    deletions.request_deletion(world["acme_admin"], vm)
    report = deletions.purge_due(clock.now().replace(tzinfo=None) + timedelta(days=15))
    assert report.purged == [] and len(report.failed) == 1 and "cannot be read" in report.failed[0]
    on_disk = Repository.open(app.config["STORAGE_ROOT"], vm.repository_name).revision_ids()
    assert sorted(on_disk) == sorted([first, second])
    db.session.expire_all()
    assert db.session.get(VM, vm.id) is not None
