"""Instant restores from the portal against the real cluster: the web app is the source, a real RQ job hydrates.

The portal app serves on a real HTTP port (librbd reads from it), jobs run in this process (RQ SimpleWorker)
against a real Redis, and the VM's disk is a real RBD image holding a GPT/ext4 disk, backed up by a real job.
A proxy between Ceph and the web app holds hydration at a known point, so the tests can look at the restore
while the image is usable but not hydrated, or break the source while a client has the image open.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.serving import make_server

from portal.extensions import db
from portal.models import BackupPoint, Restore
from portal.services import runs, schedule, tokens
from tests import images
from tests.fixtures.jobs import run_jobs
from tests.serving import SourceProxy, wait_until

if TYPE_CHECKING:
    from conftest import Ceph

pytestmark = pytest.mark.skipif(not images.have("sfdisk", "mkfs.ext4"), reason="needs sfdisk and mkfs.ext4")
MIB = 1024 * 1024


@pytest.fixture
def web(app: Any) -> Iterator[str]:
    """The portal app on a real port (threaded), as hypervisors and workers would reach it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def rbd_vm(ceph: Ceph, image_name: str, world: dict[str, Any], queues: Any, tmp_path: Path) -> tuple[Any, bytes]:
    """acme's web-1 on an RBD image holding a real GPT/ext4 disk, with one backup taken by the real job."""
    src = tmp_path / "tree"
    src.mkdir()
    images.make_tree(src, big_size=5 * MIB)
    disk = images.gpt_ext4(tmp_path / "disk.img", src, size=64 * MIB)
    ceph.rbd("import", "--no-progress", str(disk), f"{ceph.pool}/{image_name}")
    vm = world["acme_vm"]
    vm.disks[0].source = f"rbd:{ceph.pool}/{image_name}"
    db.session.delete(world["acme_restore"])  # the route matrix's sample row: never queued in Redis
    db.session.commit()
    runs.request_backup(vm)
    run_jobs(queues)
    return vm, disk.read_bytes()


def newest_point(vm: Any) -> BackupPoint:
    return db.session.query(BackupPoint).filter_by(vm_id=vm.id).order_by(BackupPoint.created_at.desc()).first()


def api(url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


def in_background(action: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_an_instant_restore_is_usable_during_hydration_and_done_after(
        app: Any, web: str, ceph: Ceph, rbd_vm: tuple[Any, bytes], world: dict[str, Any], queues: Any) -> None:
    vm, original = rbd_vm
    proxy = SourceProxy(web, hold_after=1)  # the open's first read passes; hydration's reads wait
    app.config["INSTANT_SOURCE_URL"] = proxy.url
    token = tokens.create_token(world["acme_admin"], ["restores:read", "restores:write"], name="t")[1]
    status, created = api(f"{web}/api/v1/vms/{vm.id}/restores", token,
                          {"backup": newest_point(vm).id, "kind": "instant"})
    assert status == 202, created
    assert created["kind"] == "instant" and created["usable_at"] is None
    seen: dict[str, Any] = {}

    def look_while_held() -> None:
        wait_until(lambda: proxy.gets > 1)
        seen["during"] = api(f"{web}/api/v1/restores/{created['id']}", token)[1]
        proxy.release()

    observer, errors = in_background(look_while_held)
    try:
        run_jobs(queues)
    finally:
        proxy.release()
        observer.join(60)
        proxy.close()
    assert not errors, errors
    during = seen["during"]
    assert during["state"] == "running" and during["usable_at"] is not None and during["phase"].startswith("usable")

    db.session.expire_all()
    row = db.session.get(Restore, created["id"])
    assert row.state == "done", row.error
    assert row.usable_at is not None and row.usable_at <= row.finished_at
    assert row.report["damaged"] == [] and row.report["usable_seconds"] >= 0
    image = row.output_path[len(f"rbd:{ceph.pool}/"):]
    assert json.loads(ceph.rbd("status", "--format", "json", f"{ceph.pool}/{image}")).get("migration") is None
    assert ceph.export(image) == original
    status, done = api(f"{web}/api/v1/restores/{row.id}", token)
    assert done["usable_at"] == during["usable_at"] and done["state"] == "done"
    # The source answered only while the restore ran: its secret is now a 404 like any other.
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(urllib.request.Request(f"{web}/instant/{row.source_secret}/disk.raw", method="HEAD"))
    gone.value.close()
    assert gone.value.code == 404


def test_hydration_broken_while_in_use_is_resumed_by_the_reconciler(
        app: Any, web: str, ceph: Ceph, rbd_vm: tuple[Any, bytes], world: dict[str, Any], queues: Any,
        client: Any, auth: Any) -> None:
    """The source breaks while a client (a VM) has the image open: no abort; the next run finishes it."""
    vm, original = rbd_vm
    proxy = SourceProxy(web, hold_after=1)
    app.config["INSTANT_SOURCE_URL"] = proxy.url
    restore = runs.request_restore(world["acme_admin"], vm, newest_point(vm), "instant")
    image = f"{vm.disks[0].source[len('rbd:'):]}-restore-{restore.id}".split("/", 1)[1]
    rados, rbd = ceph.bindings()
    cluster = rados.Rados(conffile=str(ceph.conf))
    cluster.connect()
    ioctx = cluster.open_ioctx(ceph.pool)
    opened: list[Any] = []

    def open_then_break() -> None:
        wait_until(lambda: proxy.gets > 1)
        opened.append(rbd.Image(ioctx, image))  # the "VM" (read-write, as QEMU opens it: a watcher)
        proxy.broken = True
        proxy.release()

    observer, errors = in_background(open_then_break)
    try:
        run_jobs(queues)
        observer.join(60)
        assert not errors, errors
        db.session.expire_all()
        row = db.session.get(Restore, restore.id)
        assert row.state == "running" and "in use" in row.error and row.phase.endswith("to be resumed")
        assert image in ceph.images()  # not aborted: somebody uses it
        assert auth.login(world["acme_admin"]).status_code == 302
        page = client.get(f"/restores/{restore.id}").get_data(as_text=True)
        assert "data-usable" in page and "Usable now" in page
    finally:
        for handle in opened:
            handle.close()
        ioctx.close()
        cluster.shutdown()
    proxy.broken = False
    result = schedule.TickResult()
    schedule.reconcile(result)
    assert result.requeued == [restore.job_id]
    try:
        run_jobs(queues)
    finally:
        proxy.close()
    db.session.expire_all()
    row = db.session.get(Restore, restore.id)
    assert row.state == "done", row.error
    assert row.attempts == 2
    assert ceph.export(image) == original
    page = client.get(f"/restores/{restore.id}").get_data(as_text=True)
    assert "data-hydrated" in page and "no longer needs the backup" in page


def test_instant_restores_are_refused_where_they_cannot_work(app: Any, rbd_vm: tuple[Any, bytes],
                                                            world: dict[str, Any]) -> None:
    vm, _ = rbd_vm
    point = newest_point(vm)
    with pytest.raises(runs.RestoreError, match="INSTANT_SOURCE_URL"):
        runs.request_restore(world["acme_admin"], vm, point, "instant")
    app.config["INSTANT_SOURCE_URL"] = "http://127.0.0.1:9"
    with pytest.raises(runs.RestoreError, match="a new image, beside the original or in its place"):
        runs.request_restore(world["acme_admin"], vm, point, "instant", target={"type": "in_vm"})
    vm.disks[0].source = "file:/nowhere.img"
    with pytest.raises(runs.RestoreError, match="RBD image"):
        runs.request_restore(world["acme_admin"], vm, point, "instant")
    db.session.rollback()
