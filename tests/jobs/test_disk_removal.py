"""Issue 14: a disk the inventory feed no longer lists is confirmed removed explicitly (audited, announced,
after a grace period, with Undo); then the VM's backups go on without it, and its data stays in the older points.
Real inventory syncs, real backup jobs on real disk images."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from portal import clock
from portal.extensions import db
from portal.models import AuditEntry, BackupRun, Disk
from portal.services import deletions, inventory, runs, tokens
from portal.services.status import statuses
from tests.fixtures.jobs import run_jobs
from tests.fixtures.portal import notices

from .test_jobs import backed_up
from .test_multi_disk import MiB, disk_bytes, restored


@pytest.fixture
def two_disk_vm(file_vm: Any, tmp_path: Path, app: Any) -> Any:
    from portal.demo import make_image

    data = tmp_path / "web-1-data.img"
    make_image(str(data), 16 * MiB, seed=2)
    file_vm.disks.append(Disk(name="data", source=f"file:{data}", size_bytes=16 * MiB))
    db.session.commit()
    app.config["INVENTORY_FILE_DIRS"] = [str(tmp_path)]
    app.config["INVENTORY_RBD_POOLS"] = {"acme": ["pool"]}
    return file_vm


def sync_without(vm: Any, disk: str | None) -> None:
    """A real sync of acme's feed as it is, less the VM's disk ``disk`` (None: every disk listed)."""
    document = inventory.export("acme")
    for item in (v for org in document["organisations"] for group in org["resource_groups"] for v in group["vms"]):
        if item["name"] == vm.name:
            item["disks"] = [d for d in item["disks"] if d["name"] != disk]
    inventory.sync(document, "acme", actor="test")
    db.session.expire_all()


def data_disk(vm: Any) -> Disk | None:
    return Disk.query.filter_by(vm_id=vm.id, name="data").one_or_none()


def backup_run(vm: Any, world: dict[str, Any], queues: Any) -> BackupRun:
    run = runs.request_backup(vm, world["operator"])
    run_jobs(queues)
    db.session.expire_all()
    return db.session.get(BackupRun, run.id)


def test_a_confirmed_removal_takes_effect_after_the_grace_and_the_data_stays(two_disk_vm, queues, world, client,
                                                                           auth, tmp_path) -> None:
    vm = two_disk_vm
    before = backed_up(vm, queues, world)
    data_then = disk_bytes(data_disk(vm))
    sync_without(vm, "data")
    disk = data_disk(vm)
    assert disk is not None and disk.missing_since is not None  # marked, never dropped
    failed = backup_run(vm, world, queues)
    assert failed.state == "failed" and "disk data" in failed.error

    auth.login(world["acme_admin"])
    page = client.get(f"/vms/{vm.id}").get_data(as_text=True)
    assert "Confirm it was removed on purpose" in page
    answer = client.post(f"/recycle/disk/{disk.id}/delete", data={"next": f"/vms/{vm.id}"})
    assert answer.status_code == 303
    db.session.expire_all()
    disk = data_disk(vm)
    assert disk is not None and disk.deletion_due_at is not None  # not yet: the grace period first
    assert AuditEntry.query.filter_by(action="deletion.request", object_type="disk", object_id=disk.id).count() == 1
    assert notices(kind="deletion.scheduled", dedup_key=f"disk:{disk.id}").count() == 1
    assert "confirmed removed, takes effect" in client.get(f"/vms/{vm.id}").get_data(as_text=True)
    still = backup_run(vm, world, queues)
    assert still.state == "failed" and "removal takes effect" in still.error

    assert deletions.purge_due(clock.now()).purged == []  # not due
    report = deletions.purge_due(clock.now() + timedelta(days=2))
    assert len(report.purged) == 1 and "disk data" in report.purged[0]
    assert data_disk(vm) is None
    assert AuditEntry.query.filter_by(action="deletion.purge", object_type="disk").count() == 1

    after = backed_up(vm, queues, world)  # the backups go on, without the disk
    assert after.disk_names == ["root"]
    assert statuses([vm])[vm.id].last_good is not None
    assert restored(vm, before, "data", tmp_path) == data_then  # its data stays in the older point


def test_undo_keeps_the_disk_and_a_listed_disk_cannot_be_confirmed_removed(two_disk_vm, queues, world,
                                                                          client) -> None:
    vm = two_disk_vm
    headers = {"Authorization": "Bearer " + tokens.create_token(world["acme_admin"], ["backups:write"],
                                                                 name="t")[1]}
    disk = data_disk(vm)
    url = f"/api/v1/vms/{vm.id}/disks/{disk.id}/removal"
    listed = client.post(url, headers=headers)
    assert listed.status_code == 409 and "only a disk missing from the feed" in listed.get_json()["message"]

    sync_without(vm, "data")
    confirmed = client.post(url, headers=headers)
    assert confirmed.status_code == 202, confirmed.get_json()
    assert confirmed.get_json()["deletion_due_at"] is not None
    shown = client.get(f"/api/v1/vms/{vm.id}", headers=headers).get_json()["disks"]
    assert next(d for d in shown if d["name"] == "data")["removal_due_at"] is not None
    undone = client.delete(url, headers=headers)
    assert undone.status_code == 200 and undone.get_json()["deletion_due_at"] is None
    deletions.purge_due(clock.now() + timedelta(days=30))
    assert data_disk(vm) is not None  # kept: still missing, never dropped for that


def test_a_disk_the_feed_lists_again_is_never_removed(two_disk_vm, queues, world) -> None:
    vm = two_disk_vm
    sync_without(vm, "data")
    deletions.request_deletion(world["acme_admin"], data_disk(vm))
    sync_without(vm, None)  # the feed lists it again: the confirmation no longer holds
    disk = data_disk(vm)
    assert disk is not None and disk.missing_since is None and disk.deletion_due_at is None
    assert AuditEntry.query.filter_by(action="deletion.cancelled", object_type="disk").count() == 1
    assert notices(kind="deletion.scheduled", dedup_key=f"disk:{disk.id}", dismissed_at=None).count() == 0

    sync_without(vm, "data")  # missing again, confirmed again, and back before the purge runs
    deletions.request_deletion(world["acme_admin"], data_disk(vm))
    data_disk(vm).missing_since = None
    db.session.commit()
    report = deletions.purge_due(clock.now() + timedelta(days=2))
    assert report.blocked and data_disk(vm) is not None and data_disk(vm).deletion_due_at is None
    point = backed_up(vm, queues, world)
    assert sorted(point.disk_names) == ["data", "root"]
