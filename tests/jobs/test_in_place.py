"""In-place restores on a real disk image: a protected safety backup first, then the point over the disk; undo
puts back the state from before (with a safety backup of its own)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from portal.extensions import db
from portal.models import AuditEntry, BackupPoint, Restore
from portal.services import runs
from storage.repository import Repository
from tests.fixtures.jobs import run_jobs

from .test_jobs import backed_up

MiB = 1024 * 1024


def _disk(vm: Any) -> Path:
    return Path(vm.disks[0].source[len("file:"):])


def _scribble(path: Path) -> bytes:
    """Change 2 MiB in the middle of the image (the customer's broken update); return the new content."""
    with open(path, "r+b") as handle:
        handle.seek(10 * MiB)
        handle.write(random.Random(7).randbytes(2 * MiB))  # noqa: S311 - test data
    return path.read_bytes()


def _finished(restore: Restore) -> Restore:
    db.session.expire_all()
    row = db.session.get(Restore, restore.id)
    assert row.state == "done", row.error
    return row


def test_in_place_restore_takes_a_safety_backup_then_undo_puts_it_back(file_vm, queues, world, app) -> None:
    point = backed_up(file_vm, queues, world)
    original = _disk(file_vm).read_bytes()
    changed = _scribble(_disk(file_vm))
    assert changed != original
    _disk(file_vm).chmod(0o660)  # what the hypervisor expects stays

    restore = runs.request_restore(world["acme_admin"], file_vm, point, "full", target={"type": "in_place"})
    run_jobs(queues)
    restore = _finished(restore)
    assert _disk(file_vm).read_bytes() == original  # the disk is the backup point again
    assert restore.output_path == str(_disk(file_vm)) and restore.report["in_place"] is True
    assert _disk(file_vm).stat().st_mode & 0o777 == 0o660

    safety = restore.safety_point
    assert safety is not None and safety.revision == restore.safety_revision and safety.protected
    manifest = Repository.open(app.config["STORAGE_ROOT"], file_vm.repository_name).load_revision(safety.revision)
    assert manifest.protected and "safety" in manifest.tags
    assert AuditEntry.query.filter_by(action="restore.safety_backup").count() == 1

    undo = runs.request_undo(world["acme_admin"], restore)
    assert undo.backup_point_id == safety.id and undo.target == {"type": "in_place", "undo_of": restore.id}
    run_jobs(queues)
    undo = _finished(undo)
    assert _disk(file_vm).read_bytes() == changed  # the state from before the restore is back
    assert undo.safety_revision and undo.safety_revision != restore.safety_revision  # undo is undoable too
    protected = BackupPoint.query.filter_by(vm_id=file_vm.id, protected=True).count()
    assert protected == 2


def test_in_place_restore_from_the_pages_needs_an_admin_and_the_typed_name(file_vm, queues, world, client,
                                                                           auth) -> None:
    point = backed_up(file_vm, queues, world)
    changed = _scribble(_disk(file_vm))
    url = f"/vms/{file_vm.id}/backups/{point.id}/restore"

    auth.login(world["acme_member"])
    assert b"Restore in place" not in client.get(f"/vms/{file_vm.id}").data
    refused = client.post(url, data={"kind": "full", "target": "in_place", "confirm": "web-1"})
    assert refused.status_code == 403 and b"Only your organisation&#39;s administrators" in refused.data

    auth.login(world["acme_admin"])
    assert b"Restore in place" in client.get(f"/vms/{file_vm.id}").data
    page = client.get(url + "-in-place")
    assert page.status_code == 200 and b"safety backup" in page.data and b'name="confirm"' in page.data
    unconfirmed = client.post(url, data={"kind": "full", "target": "in_place", "confirm": "web-2"})
    assert unconfirmed.status_code == 422 and b"type the VM&#39;s name (web-1)" in unconfirmed.data
    assert client.post(url, data={"kind": "files", "path": "/p1", "target": "in_place", "confirm": "web-1"}) \
        .status_code == 422
    assert Restore.query.count() == 0  # nothing was written for refused requests

    answer = client.post(url, data={"kind": "full", "target": "in_place", "confirm": "web-1"})
    assert answer.status_code == 302
    run_jobs(queues)
    done = client.get(answer.headers["Location"]).data.decode()
    assert "in place over" in done and "Undo: put back the state from before this restore" in done
    restore_url = answer.headers["Location"]
    assert client.post(restore_url + "/undo", data={"confirm": ""}).status_code == 422
    undo = client.post(restore_url + "/undo", data={"confirm": "web-1"})
    assert undo.status_code == 302
    run_jobs(queues)
    assert _disk(file_vm).read_bytes() == changed
    assert "this restore undid" in client.get(undo.headers["Location"]).data.decode()


def test_in_place_needs_an_existing_disk(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)
    _disk(file_vm).unlink()
    with pytest.raises(runs.RestoreError, match="does not exist"):
        runs.request_restore(world["operator"], file_vm, point, "full", target={"type": "in_place"})
    with pytest.raises(runs.RestoreForbidden):
        runs.request_restore(world["manager"], file_vm, point, "full", target={"type": "in_place"})


def _live(vm: Any, path: str) -> tuple[bytes, Any]:
    """A file of the VM's disk as it is now, read with the portal's own reader."""
    from storage.files.disk import open_disk

    with open(_disk(vm), "rb") as handle:
        disk = open_disk(handle)
        with disk.open_file(path) as reader:
            return reader.read(), disk.stat(path)


def _debugfs(vm: Any, *commands: str) -> None:
    import subprocess

    from jobs.into_disk import tool

    script = "\n".join(commands) + "\n"
    subprocess.run([tool("debugfs"), "-w", "-f", "-", f"{_disk(vm)}?offset={1024 * 1024}"], input=script,
                   text=True, check=True, capture_output=True)


def test_files_put_back_into_the_disk_then_undo(file_vm, queues, world, tmp_path) -> None:
    import shutil

    from . import images_available

    if not images_available() or not shutil.which("debugfs", path="/usr/sbin:/sbin:/usr/bin"):
        pytest.skip("needs sfdisk, mkfs.ext4 and debugfs (fdisk, e2fsprogs)")
    point = backed_up(file_vm, queues, world)
    _, before = _live(file_vm, "/p1/etc/hostname")
    broken = tmp_path / "broken"
    broken.write_bytes(b"broken\n")
    _debugfs(file_vm, "rm /etc/hostname", f"write {broken} /etc/hostname", "rm /etc/motd")  # a bad update
    assert _live(file_vm, "/p1/etc/hostname")[0] == b"broken\n"

    back = runs.request_restore(world["acme_admin"], file_vm, point, "files", paths=["/p1/etc"],
                                target={"type": "in_vm"})
    elsewhere = runs.request_restore(world["acme_admin"], file_vm, point, "files", paths=["/p1/var/log/app.log"],
                                     target={"type": "in_vm", "path": "/p1/restored/logs"})
    run_jobs(queues)
    back, elsewhere = _finished(back), _finished(elsewhere)
    content, after = _live(file_vm, "/p1/etc/hostname")
    assert content == b"demo\n" and (after.mode, after.uid, after.mtime) == (before.mode, before.uid, before.mtime)
    assert _live(file_vm, "/p1/etc/motd")[0] == b"Backed up by Lifeboat\n"
    log = _live(file_vm, "/p1/restored/logs/app.log")[0]
    assert log.startswith(b"request 0 ok\n") and log.count(b"\n") == 50_000
    assert back.report["files"] == 2 and back.safety_point is not None and back.safety_point.protected

    undo = _finished_after(runs.request_undo(world["acme_admin"], back), queues)
    assert undo.backup_point_id == back.safety_point_id
    assert _live(file_vm, "/p1/etc/hostname")[0] == b"broken\n"  # the state before the files went back


def _finished_after(restore: Restore, queues: Any) -> Restore:
    run_jobs(queues)
    return _finished(restore)


def test_put_back_refuses_what_it_cannot_do(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)
    for paths, target, message in [
        (["/p1/etc"], {"type": "in_vm", "path": "/p1/../x"}, "not a path inside a partition"),
        (['/p1/a"b'], {"type": "in_vm"}, "not a path inside a partition"),
        (["/etc"], {"type": "in_vm"}, "not in this backup point"),
    ]:
        with pytest.raises(runs.RestoreError, match=message):
            runs.request_restore(world["acme_admin"], file_vm, point, "files", paths=paths, target=target)
    with pytest.raises(runs.RestoreForbidden):
        runs.request_restore(world["acme_member"], file_vm, point, "files", paths=["/p1/etc"],
                             target={"type": "in_vm"})
    file_vm.disks[0].source = "rbd:pool/acme-web-1"
    with pytest.raises(runs.RestoreError, match="only into file: disks"):
        runs.request_restore(world["acme_admin"], file_vm, point, "files", paths=["/p1/etc"],
                             target={"type": "in_vm"})


def test_a_retried_in_place_restore_keeps_the_safety_backup_it_took(file_vm, queues, world, app) -> None:
    from jobs import safety

    point = backed_up(file_vm, queues, world)
    original = _disk(file_vm).read_bytes()
    _scribble(_disk(file_vm))
    restore = runs.request_restore(world["operator"], file_vm, point, "full", target={"type": "in_place"})
    safety.take(restore, app.config["STORAGE_ROOT"], file_vm.disks)  # the first attempt got this far, then died
    first = restore.safety_revision
    run_jobs(queues)
    restore = _finished(restore)
    assert restore.safety_revision == first and _disk(file_vm).read_bytes() == original
    tags = [r.tags for r in Repository.open(app.config["STORAGE_ROOT"], file_vm.repository_name).revisions()]
    assert sum("safety" in t for t in tags) == 1


def test_a_mistyped_name_brings_the_confirmation_back_with_the_message(world, client, auth) -> None:
    vm, point = world["acme_vm"], world["acme_point"]
    auth.login(world["acme_admin"])
    before = Restore.query.count()
    answer = client.post(f"/vms/{vm.id}/backups/{point.id}/restore",
                         data={"kind": "full", "target": "in_place", "confirm": "web-2"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422 and 'id="confirm-error"' in page
    assert "type the VM&#39;s name (web-1) to confirm" in page and f"Overwrite {vm.name}" in page  # the same page
    assert Restore.query.count() == before  # nothing queued
