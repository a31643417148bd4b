# ruff: noqa: F811 - the fixtures of test_instant_portal are imported and used by name
"""Instant restores in place of the original image (safety backup, Undo) and of VMs with several disks, on the
real cluster with real jobs; the web app is the source, behind an HTTP/1.1 hop as in test_instant_portal."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from test_instant_portal import newest_point, rbd_vm, web  # noqa: F401 - fixtures used by name

from portal.extensions import db
from portal.models import BackupPoint, Disk, Restore
from portal.services import runs
from tests.fixtures.jobs import run_jobs
from tests.serving import SourceProxy

if TYPE_CHECKING:
    from conftest import Ceph

MIB = 1024 * 1024


@pytest.fixture
def source(app: Any, web: str) -> Iterator[SourceProxy]:
    proxy = SourceProxy(web)
    app.config["INSTANT_SOURCE_URL"] = proxy.url
    yield proxy
    proxy.close()


def _row(restore_id: int) -> Restore:
    db.session.expire_all()
    row = db.session.get(Restore, restore_id)
    assert row is not None
    return row


def _migrating(ceph: Ceph, image: str) -> bool:
    return json.loads(ceph.rbd("status", "--format", "json", f"{ceph.pool}/{image}")).get("migration") is not None


def test_instant_in_place_replaces_the_image_at_once_and_undo_brings_the_original_back(
        ceph: Ceph, rbd_vm: tuple[Any, bytes], source: SourceProxy, world: dict[str, Any], queues: Any,
        image_name: str, client: Any, auth: Any) -> None:
    vm, backed_up = rbd_vm
    point = newest_point(vm)
    ceph.write(image_name, [(0, os.urandom(2 * MIB)), (40 * MIB, os.urandom(MIB))])  # the VM wrote since
    before = ceph.export(image_name)
    assert before != backed_up
    restore = runs.request_restore(world["acme_admin"], vm, point, "instant", target={"type": "in_place"})
    run_jobs(queues)
    row = _row(restore.id)
    assert row.state == "done", row.error
    aside = f"{image_name}-replaced-{row.id}"
    assert row.output_path == vm.disks[0].source and row.usable_at is not None
    assert row.report["replaced"] == f"rbd:{ceph.pool}/{aside}" and row.report["in_place"] is True
    assert ceph.export(image_name) == backed_up and not _migrating(ceph, image_name)  # the VM's disk, restored
    assert ceph.export(aside) == before  # the original, kept aside: nothing deleted
    safety = db.session.query(BackupPoint).filter_by(vm_id=vm.id, revision=row.safety_revision).one()
    assert safety.protected and row.safety_point_id == safety.id
    auth.login(world["acme_admin"])
    page = client.get(f"/restores/{row.id}").get_data(as_text=True)
    assert "data-replaced" in page and aside in page and "Undo" in page

    undo = runs.request_undo(world["acme_admin"], row)
    assert undo.kind == "full" and undo.in_place
    run_jobs(queues)
    assert _row(undo.id).state == "done", _row(undo.id).error
    assert ceph.export(image_name) == before  # the state from before the instant restore, back in place


def test_instant_in_place_refuses_an_image_in_use_and_leaves_it(
        ceph: Ceph, rbd_vm: tuple[Any, bytes], source: SourceProxy, world: dict[str, Any], queues: Any,
        image_name: str) -> None:
    vm, _ = rbd_vm
    before = ceph.export(image_name)
    rados, rbd = ceph.bindings()
    cluster = rados.Rados(conffile=str(ceph.conf))
    cluster.connect()
    ioctx = cluster.open_ioctx(ceph.pool)
    running = rbd.Image(ioctx, image_name)  # the VM still runs from it
    try:
        restore = runs.request_restore(world["acme_admin"], vm, newest_point(vm), "instant",
                                       target={"type": "in_place"})
        run_jobs(queues)
    finally:
        running.close()
        ioctx.close()
        cluster.shutdown()
    row = _row(restore.id)
    assert row.state == "failed" and "is the VM still running" in row.error
    assert ceph.export(image_name) == before and not any("-replaced-" in i for i in ceph.images())
    with pytest.raises(runs.RestoreForbidden):
        runs.request_restore(world["acme_member"], vm, newest_point(vm), "instant", target={"type": "in_place"})


def test_a_vm_with_two_rbd_disks_is_usable_when_both_are(
        ceph: Ceph, rbd_vm: tuple[Any, bytes], source: SourceProxy, web: str, world: dict[str, Any], queues: Any,
        image_name: str, client: Any, auth: Any) -> None:
    vm, root_bytes = rbd_vm
    data = f"{image_name}-data"
    ceph.rbd("create", "--size", "12M", f"{ceph.pool}/{data}")
    ceph.write(data, [(MIB, os.urandom(MIB)), (8 * MIB, os.urandom(4 * MIB))])
    data_bytes = ceph.export(data)
    vm.disks.append(Disk(name="data", source=f"rbd:{ceph.pool}/{data}", size_bytes=12 * MIB))
    db.session.commit()
    runs.request_backup(vm)
    run_jobs(queues)
    point = newest_point(vm)
    assert sorted(point.disk_names) == ["data", "root"]
    both = runs.request_restore(world["acme_admin"], vm, point, "instant")
    one = runs.request_restore(world["acme_admin"], vm, point, "instant", disk="data")
    run_jobs(queues)
    row = _row(both.id)
    assert row.state == "done", row.error
    targets = {d["disk"]: d["target"] for d in row.report["disks"]}
    assert targets == {"root": f"rbd:{ceph.pool}/{image_name}-restore-{row.id}",
                       "data": f"rbd:{ceph.pool}/{data}-restore-{row.id}"}
    assert row.report["damaged"] == [] and row.bytes_done == row.bytes_total == len(root_bytes) + len(data_bytes)
    assert ceph.export(f"{image_name}-restore-{row.id}") == root_bytes
    assert ceph.export(f"{data}-restore-{row.id}") == data_bytes
    single = _row(one.id)
    assert single.state == "done", single.error
    assert [d["disk"] for d in single.report["disks"]] == ["data"]
    assert ceph.export(f"{data}-restore-{single.id}") == data_bytes
    assert f"{image_name}-restore-{single.id}" not in ceph.images()
    # Each disk has its own source URL; the one-disk URL answers nothing for a point of two disks.
    import urllib.error
    import urllib.request

    active = runs.request_restore(world["acme_admin"], vm, point, "instant")
    base = f"{web}/instant/{active.source_secret}"
    for path, status in (("disks/data.raw", 200), ("disks/root.raw", 200), ("disk.raw", 404),
                         ("disks/nope.raw", 404)):
        request = urllib.request.Request(f"{base}/{path}", method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                got = answer.status
        except urllib.error.HTTPError as exc:
            exc.close()
            got = exc.code
        assert got == status, path
    runs.cancel_restore(world["acme_admin"], active)
