# ruff: noqa: F811 - the fixtures of test_instant_portal are imported and used by name
"""Instant restores in place of a VM with two RBD disks, on the real cluster with real jobs: both disks usable
at once under their own names, identical after hydration, the originals kept aside, Undo putting both back;
one disk alone leaving the other image untouched; a failure before usable leaving both originals in place."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from test_instant_portal import newest_point, rbd_vm, web  # noqa: F401 - fixtures used by name

from jobs.instant import HYDRATION_QUEUED
from portal.extensions import db
from portal.models import BackupPoint, Disk, Restore
from portal.services import runs
from portal.services.queue import USABLE_QUEUE
from tests.fixtures.jobs import run_jobs
from tests.serving import SourceProxy

if TYPE_CHECKING:
    from conftest import Ceph

pytestmark = pytest.mark.ceph
MIB = 1024 * 1024


@pytest.fixture
def source(app: Any, web: str) -> Iterator[SourceProxy]:
    proxy = SourceProxy(web)
    app.config["INSTANT_SOURCE_URL"] = proxy.url
    yield proxy
    proxy.close()


@pytest.fixture
def two_disks(ceph: Ceph, rbd_vm: tuple[Any, bytes], image_name: str, queues: Any) -> tuple[Any, BackupPoint]:
    """web-1 with its root image and a data image, backed up together, then written to by the VM since."""
    vm, _ = rbd_vm
    data = f"{image_name}-data"
    ceph.rbd("create", "--size", "12M", f"{ceph.pool}/{data}")
    ceph.write(data, [(MIB, os.urandom(MIB)), (8 * MIB, os.urandom(3 * MIB))])
    vm.disks.append(Disk(name="data", source=f"rbd:{ceph.pool}/{data}", size_bytes=12 * MIB))
    db.session.commit()
    runs.request_backup(vm)
    run_jobs(queues)
    point = newest_point(vm)
    assert sorted(point.disk_names) == ["data", "root"]
    return vm, point


def _row(restore_id: int) -> Restore:
    db.session.expire_all()
    row = db.session.get(Restore, restore_id)
    assert row is not None
    return row


def _image(disk: Disk) -> str:
    return disk.source.split("/", 1)[1]


def _images(ceph: Ceph, vm: Any) -> dict[str, bytes]:
    return {d.name: ceph.export(_image(d)) for d in vm.disks}


def _scribble(ceph: Ceph, vm: Any) -> None:
    for disk in vm.disks:
        ceph.write(_image(disk), [(2 * MIB, os.urandom(MIB))])


def _migrating(ceph: Ceph, image: str) -> bool:
    return json.loads(ceph.rbd("status", "--format", "json", f"{ceph.pool}/{image}")).get("migration") is not None


def _head(ceph: Ceph, image: str, length: int) -> bytes:
    """The first bytes of the image as a client (the VM) opening it by its name reads them."""
    rados, rbd = ceph.bindings()
    cluster = rados.Rados(conffile=str(ceph.conf))
    cluster.connect()
    try:
        with cluster.open_ioctx(ceph.pool) as ioctx, rbd.Image(ioctx, image, read_only=True) as opened:
            return bytes(opened.read(0, length))
    finally:
        cluster.shutdown()


def test_both_rbd_disks_instantly_in_place_usable_together_then_undo(
        ceph: Ceph, two_disks: tuple[Any, BackupPoint], source: SourceProxy, world: dict[str, Any], queues: Any,
        client: Any, auth: Any) -> None:
    vm, point = two_disks
    backed = _images(ceph, vm)
    _scribble(ceph, vm)
    before = _images(ceph, vm)
    assert before["root"] != backed["root"] and before["data"] != backed["data"]
    auth.login(world["acme_admin"])
    confirm = client.get(f"/vms/{vm.id}/backups/{point.id}/restore-in-place").get_data(as_text=True)
    assert 'value="instant"' in confirm and "the originals are kept aside" in confirm  # offered for two disks
    restore = runs.request_restore(world["acme_admin"], vm, point, "instant", target={"type": "in_place"},
                                   usable_first=True)
    run_jobs(queues, only=[USABLE_QUEUE])  # only making usable: the hydration waits on the class's queue
    row = _row(restore.id)
    assert row.state == "queued" and row.phase == HYDRATION_QUEUED and row.usable_at is not None, row.error
    for disk in vm.disks:  # both at once, under the VM's own names, still streaming from the backup
        assert _migrating(ceph, _image(disk))
        assert _head(ceph, _image(disk), MIB) == backed[disk.name][:MIB]
        assert ceph.export(f"{_image(disk)}-replaced-{row.id}") == before[disk.name]
    run_jobs(queues)
    row = _row(restore.id)
    assert row.state == "done", row.error
    assert _images(ceph, vm) == backed  # both disks, byte for byte, hydrated and committed
    assert not any(_migrating(ceph, _image(d)) for d in vm.disks)
    asides = {d.name: f"{_image(d)}-replaced-{row.id}" for d in vm.disks}
    assert {d.name: ceph.export(a) for d, a in zip(vm.disks, asides.values(), strict=True)} == before
    assert {d["disk"]: d["replaced"] for d in row.report["disks"]} == {
        name: f"rbd:{ceph.pool}/{aside}" for name, aside in asides.items()}
    assert "replaced" not in row.report  # one name for one image: several are listed per disk
    assert sorted(row.safety_point.disk_names) == ["data", "root"]  # the safety backup: both disks overwritten
    page = client.get(f"/restores/{row.id}").get_data(as_text=True)
    assert "data-replaced" in page and all(aside in page for aside in asides.values()) and "Undo" in page
    assert "Safety backup of the disks as they were" in page

    undo = runs.request_undo(world["acme_admin"], row)
    run_jobs(queues)
    assert _row(undo.id).state == "done", _row(undo.id).error
    assert _images(ceph, vm) == before  # both disks as they were before the instant restore


def test_one_disk_instantly_in_place_leaves_the_other_image_untouched(
        ceph: Ceph, two_disks: tuple[Any, BackupPoint], source: SourceProxy, world: dict[str, Any],
        queues: Any) -> None:
    vm, point = two_disks
    backed = _images(ceph, vm)
    _scribble(ceph, vm)
    before = _images(ceph, vm)
    restore = runs.request_restore(world["acme_admin"], vm, point, "instant", target={"type": "in_place"},
                                   disk="data")
    run_jobs(queues)
    row = _row(restore.id)
    assert row.state == "done", row.error
    after = _images(ceph, vm)
    assert after["data"] == backed["data"] and after["root"] == before["root"]
    root, data = (_image(next(d for d in vm.disks if d.name == name)) for name in ("root", "data"))
    assert ceph.export(f"{data}-replaced-{row.id}") == before["data"]
    assert f"{root}-replaced-{row.id}" not in ceph.images()
    assert row.report["replaced"] == f"rbd:{ceph.pool}/{data}-replaced-{row.id}"
    assert row.safety_point.disk_names == ["data"]


def test_a_failure_before_usable_leaves_both_originals_in_place(
        ceph: Ceph, two_disks: tuple[Any, BackupPoint], source: SourceProxy, world: dict[str, Any],
        queues: Any) -> None:
    vm, point = two_disks
    _scribble(ceph, vm)
    before = _images(ceph, vm)
    root, data = (_image(next(d for d in vm.disks if d.name == name)) for name in ("root", "data"))
    rados, rbd = ceph.bindings()
    cluster = rados.Rados(conffile=str(ceph.conf))
    cluster.connect()
    ioctx = cluster.open_ioctx(ceph.pool)
    running = rbd.Image(ioctx, data)  # the VM still has its data disk open
    try:
        refused = runs.request_restore(world["acme_admin"], vm, point, "instant", target={"type": "in_place"})
        run_jobs(queues)
    finally:
        running.close()
        ioctx.close()
        cluster.shutdown()
    row = _row(refused.id)
    assert row.state == "failed" and "is the VM still running" in row.error and "disk data" in row.error
    assert _images(ceph, vm) == before and not any("-replaced-" in i or "-restore-" in i for i in ceph.images())

    # Both images moved aside, then one disk's source fails: for one of the two the other disk's import was
    # prepared already and is aborted. Every original goes back either way.
    for broken in ("root", "data"):
        source.broken_for = f"/disks/{broken}.raw"
        failed = runs.request_restore(world["acme_admin"], vm, point, "instant", target={"type": "in_place"})
        run_jobs(queues)
        row = _row(failed.id)
        assert row.state == "failed" and "2 original image(s) back in place" in row.error, row.error
        assert f"{ceph.pool}/{root if broken == 'root' else data} failed" in row.error  # the disk that failed
        assert _images(ceph, vm) == before and not any("-replaced-" in i for i in ceph.images())
        assert not _migrating(ceph, root) and not _migrating(ceph, data)
        assert "replaced" not in row.report and not any("replaced" in d for d in row.report["disks"])
