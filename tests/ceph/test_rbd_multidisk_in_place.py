"""In-place restores of a VM of two RBD disks from the portal, on the real cluster, through real jobs: every disk
over its image byte for byte and Undo puts both back; one disk alone leaves the other image untouched."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from portal.extensions import db
from portal.models import BackupPoint, BackupRun, Disk, Restore
from portal.services import runs
from tests.fixtures.jobs import run_jobs

if TYPE_CHECKING:
    from conftest import Ceph

pytestmark = pytest.mark.ceph
OBJ = 4 * 1024 * 1024


@pytest.fixture
def rbd_vm(ceph: Ceph, image_name: str, world: dict[str, Any]) -> Any:
    """acme's web-1 with a root and a data disk, two 32 MiB images with different data."""
    vm = world["acme_vm"]
    for suffix, disk in (("", vm.disks[0]), ("-data", None)):
        name = image_name + suffix
        ceph.rbd("create", "--size", "32M", f"{ceph.pool}/{name}")
        ceph.write(name, [(0, os.urandom(OBJ)), (5 * OBJ, os.urandom(OBJ))])
        if disk is None:
            vm.disks.append(Disk(name="data", source=f"rbd:{ceph.pool}/{name}", size_bytes=32 << 20))
        else:
            disk.source, disk.size_bytes = f"rbd:{ceph.pool}/{name}", 32 << 20
    db.session.delete(world["acme_restore"])  # the route matrix's sample row: never queued in Redis
    db.session.commit()
    return vm


def backed_up(vm: Any, queues: Any) -> BackupPoint:
    run = runs.request_backup(vm)
    run_jobs(queues)
    db.session.expire_all()
    run = db.session.get(BackupRun, run.id)
    assert run.state == "done", run.error
    return BackupPoint.query.filter_by(vm_id=vm.id, revision=run.revision).one()


def finished(restore_id: int) -> Restore:
    db.session.expire_all()
    row = db.session.get(Restore, restore_id)
    assert row.state == "done", row.error
    return row


def images_of(ceph: Ceph, vm: Any) -> dict[str, bytes]:
    return {d.name: ceph.export(d.source[len("rbd:"):].split("/", 1)[1]) for d in vm.disks}


def scribble(ceph: Ceph, vm: Any, offset: int) -> None:
    for disk in vm.disks:
        ceph.write(disk.source[len("rbd:"):].split("/", 1)[1], [(offset, os.urandom(OBJ))])


def test_both_rbd_disks_in_place_then_undo(ceph: Ceph, rbd_vm: Any, world: dict[str, Any], queues: Any) -> None:
    point = backed_up(rbd_vm, queues)
    backed = images_of(ceph, rbd_vm)
    scribble(ceph, rbd_vm, 2 * OBJ)
    broken = images_of(ceph, rbd_vm)
    requested = runs.request_restore(world["acme_admin"], rbd_vm, point, "full", target={"type": "in_place"})
    run_jobs(queues)
    restore = finished(requested.id)
    assert images_of(ceph, rbd_vm) == backed  # both images, byte for byte, in place
    assert sorted(restore.safety_point.disk_names) == ["data", "root"]
    undo = runs.request_undo(world["acme_admin"], restore)
    run_jobs(queues)
    finished(undo.id)
    assert images_of(ceph, rbd_vm) == broken


def test_one_rbd_disk_in_place_leaves_the_other_untouched(ceph: Ceph, rbd_vm: Any, world: dict[str, Any],
                                                         queues: Any) -> None:
    point = backed_up(rbd_vm, queues)
    backed = images_of(ceph, rbd_vm)
    scribble(ceph, rbd_vm, 3 * OBJ)
    now = images_of(ceph, rbd_vm)
    requested = runs.request_restore(world["acme_admin"], rbd_vm, point, "full", target={"type": "in_place"},
                                     disk="data")
    run_jobs(queues)
    restore = finished(requested.id)
    after = images_of(ceph, rbd_vm)
    assert after["data"] == backed["data"] and after["root"] == now["root"] != backed["root"]
    assert restore.safety_point.disk_names == ["data"]
    second = backed_up(rbd_vm, queues)  # the next backup still holds both disks
    assert sorted(second.disk_names) == ["data", "root"]
