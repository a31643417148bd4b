"""Issue 14, the rest: files of every disk (`/<disk>/p1/...`), in-place restores and files put back on a VM of
two disks, through real jobs on real ext4 disk images."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from portal.extensions import db
from portal.models import BackupPoint, Restore
from portal.services import runs, tokens
from storage.files.disk import open_disk
from tests.fixtures.jobs import run_jobs

from . import images_available
from .test_jobs import backed_up
from .test_multi_disk import MiB, disk_bytes, finished, scribble

pytestmark = pytest.mark.skipif(not images_available(), reason="needs sfdisk and mkfs.ext4")


@pytest.fixture
def two_disk_vm(file_vm: Any, tmp_path: Path) -> Any:
    """web-1 with its root disk and a data disk (as in test_multi_disk): real ext4 images, different data."""
    from portal.demo import make_image
    from portal.models import Disk

    data = tmp_path / "web-1-data.img"
    make_image(str(data), 16 * MiB, seed=2)
    file_vm.disks.append(Disk(name="data", source=f"file:{data}", size_bytes=16 * MiB))
    db.session.commit()
    return file_vm


def disks_of(vm: Any) -> tuple[Any, Any]:
    root, data = sorted(vm.disks, key=lambda d: d.name != "root")
    return root, data


def live_file(disk: Any, path: str) -> bytes:
    """A file of a VM's disk image as it is now, read with the portal's own reader."""
    with open(disk.source[len("file:"):], "rb") as handle, open_disk(handle).open_file(path) as reader:
        return reader.read()


def tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def bearer(user: Any, scope: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + tokens.create_token(user, [scope], name="t")[1]}


def test_the_browser_starts_at_the_disks_and_downloads_from_the_second(two_disk_vm, queues, world, client,
                                                                       auth) -> None:
    root, data = disks_of(two_disk_vm)
    wanted = live_file(data, "/p1/srv/data.bin")
    assert wanted != live_file(root, "/p1/srv/data.bin")  # the two disks differ where the test looks
    point = backed_up(two_disk_vm, queues, world)
    base = f"/vms/{two_disk_vm.id}/backups/{point.id}"
    auth.login(world["acme_admin"])

    top = client.get(base + "/files").get_data(as_text=True)
    assert 'value="/data"' in top and 'value="/root"' in top and 'value="/p1"' not in top
    folder = client.get(base + "/files?path=/data/p1/srv")
    page = folder.get_data(as_text=True)
    assert folder.status_code == 200 and 'value="/data/p1/srv/data.bin"' in page
    assert 'aria-label="breadcrumb"' in page and f'href="{base}/files?path=/data">data</a>' in page
    assert '<li aria-current="page">srv</li>' in page

    answer = client.post(base + "/download", data={"path": ["/data/p1/srv/data.bin"], "format": "tar.gz"})
    assert answer.status_code == 200
    assert tar_members(answer.data) == {"data.bin": wanted}
    mixed = client.post(base + "/download", data={"path": ["/data/p1/srv", "/root/p1/etc"], "format": "tar.gz"})
    assert mixed.status_code == 422 and "choose files of one disk at a time" in mixed.get_data(as_text=True)
    assert client.get(base + "/files?path=/nope/p1").status_code == 422


def test_the_api_lists_and_downloads_by_disk_and_keeps_the_old_paths(two_disk_vm, queues, world, client) -> None:
    root, data = disks_of(two_disk_vm)
    point = backed_up(two_disk_vm, queues, world)
    base = f"/api/v1/vms/{two_disk_vm.id}/backups/{point.id}"
    headers = bearer(world["acme_admin"], "backups:read")

    top = client.get(base + "/files", headers=headers).get_json()
    assert sorted((e["name"], e["path"], e["type"], e["size"]) for e in top["items"]) == [
        ("data", "/data", "dir", 16 * MiB), ("root", "/root", "dir", 24 * MiB)]
    assert [e["path"] for e in client.get(base + "/files?path=/data", headers=headers).get_json()["items"]] == [
        "/data/p1"]
    srv = client.get(base + "/files?path=/data/p1/srv", headers=headers).get_json()
    assert [e["path"] for e in srv["items"]] == ["/data/p1/srv/data.bin"]
    found = client.get(base + "/files?path=/&q=data.bin", headers=headers).get_json()
    assert [e["path"] for e in found["items"]] == ["/data/p1/srv/data.bin", "/root/p1/srv/data.bin"]
    archive = client.get(base + "/download?path=/data/p1/srv/data.bin", headers=headers)
    assert archive.status_code == 200 and tar_members(archive.data) == {"data.bin": live_file(data, "/p1/srv/data.bin")}
    # deprecated for one release: a path without the disk reads disk root, and answers in that form
    legacy = client.get(base + "/files?path=/p1/srv", headers=headers).get_json()
    assert [e["path"] for e in legacy["items"]] == ["/p1/srv/data.bin"]
    old = client.get(base + "/download?path=/p1/srv/data.bin", headers=headers)
    assert tar_members(old.data) == {"data.bin": live_file(root, "/p1/srv/data.bin")}


def test_another_tenant_finds_neither_the_disks_nor_their_files(two_disk_vm, queues, world, client, auth) -> None:
    point = backed_up(two_disk_vm, queues, world)
    pages = f"/vms/{two_disk_vm.id}/backups/{point.id}"
    api = f"/api/v1/vms/{two_disk_vm.id}/backups/{point.id}"
    headers = bearer(world["globex_admin"], "backups:read")
    for url in ("/files", "/files?path=/data/p1/srv", "/download?path=/data/p1/srv/data.bin"):
        answer = client.get(api + url, headers=headers)
        assert answer.status_code == 404, (url, answer.get_data(as_text=True))
    auth.login(world["globex_admin"])
    for url in ("/files", "/files?path=/data/p1/srv", "/download?path=/data/p1/srv/data.bin"):
        assert client.get(pages + url).status_code == 404, url
    answer = client.post(pages + "/restore", data={"kind": "files", "path": ["/data/p1/srv/data.bin"]})
    assert answer.status_code == 404 and Restore.query.filter_by(vm_id=two_disk_vm.id).count() == 0


def test_a_file_restore_reads_the_disk_its_paths_name(two_disk_vm, queues, world) -> None:
    _, data = disks_of(two_disk_vm)
    point = backed_up(two_disk_vm, queues, world)
    requested = runs.request_restore(world["acme_admin"], two_disk_vm, point, "files",
                                     paths=["/data/p1/srv/data.bin"])
    assert (requested.disk, requested.paths) == ("data", ["/p1/srv/data.bin"])
    with pytest.raises(runs.RestoreError, match="one disk at a time"):
        runs.request_restore(world["acme_admin"], two_disk_vm, point, "files", paths=["/data/p1", "/root/p1"])
    run_jobs(queues)
    restore = finished(requested.id)
    assert tar_members(Path(restore.output_path).read_bytes()) == {"data.bin": live_file(data, "/p1/srv/data.bin")}


def in_place(vm: Any, point: BackupPoint, world: dict[str, Any], queues: Any, disk: str = "") -> Restore:
    requested = runs.request_restore(world["acme_admin"], vm, point, "full", target={"type": "in_place"}, disk=disk)
    run_jobs(queues)
    return finished(requested.id)


def test_both_disks_in_place_then_undo_puts_both_back(two_disk_vm, queues, world, client, auth) -> None:
    root, data = disks_of(two_disk_vm)
    point = backed_up(two_disk_vm, queues, world)
    backed = {d.name: disk_bytes(d) for d in (root, data)}
    scribble(root, 5 * MiB, b"broken root" * 100)
    scribble(data, 9 * MiB, b"broken data" * 100)
    broken = {d.name: disk_bytes(d) for d in (root, data)}

    restore = in_place(two_disk_vm, point, world, queues)
    assert {d.name: disk_bytes(d) for d in (root, data)} == backed  # both disks, byte for byte
    assert sorted(r["disk"] for r in restore.report["disks"]) == ["data", "root"] and restore.report["in_place"]
    safety = restore.safety_point
    assert safety is not None and safety.protected and sorted(safety.disk_names) == ["data", "root"]
    auth.login(world["acme_admin"])
    page = client.get(f"/restores/{restore.id}").get_data(as_text=True)
    for disk in (root, data):
        assert f"<code>{disk.source[len('file:'):]}</code> (disk {disk.name})" in page

    undo = runs.request_undo(world["acme_admin"], restore)
    run_jobs(queues)
    undo = finished(undo.id)
    assert {d.name: disk_bytes(d) for d in (root, data)} == broken  # both disks as before the restore
    assert sorted(undo.safety_point.disk_names) == ["data", "root"]


def test_one_disk_in_place_leaves_the_other_untouched(two_disk_vm, queues, world, client, auth) -> None:
    root, data = disks_of(two_disk_vm)
    point = backed_up(two_disk_vm, queues, world)
    backed = disk_bytes(data)
    scribble(root, 5 * MiB, b"root keeps this" * 100)
    scribble(data, 9 * MiB, b"broken data" * 100)
    root_now, data_broken = disk_bytes(root), disk_bytes(data)

    auth.login(world["acme_admin"])
    page = client.get(f"/vms/{two_disk_vm.id}/backups/{point.id}/restore-in-place").get_data(as_text=True)
    assert root.source[len("file:"):] in page and data.source[len("file:"):] in page
    assert '<option value="data">disk data only</option>' in page
    restore = in_place(two_disk_vm, point, world, queues, disk="data")
    assert disk_bytes(data) == backed and disk_bytes(root) == root_now  # the root disk was not touched
    assert restore.safety_point.disk_names == ["data"]  # the safety backup covers what was overwritten

    scribble(root, 7 * MiB, b"root moves on" * 100)
    root_later = disk_bytes(root)
    undo = runs.request_undo(world["acme_admin"], restore)
    run_jobs(queues)
    finished(undo.id)
    assert disk_bytes(data) == data_broken and disk_bytes(root) == root_later  # undo: data only


def test_files_go_back_into_the_disk_they_came_from(two_disk_vm, queues, world, tmp_path) -> None:
    from jobs.into_disk import tool

    if not shutil.which("debugfs", path="/usr/sbin:/sbin:/usr/bin"):
        pytest.skip("needs debugfs (e2fsprogs)")
    root, data = disks_of(two_disk_vm)
    point = backed_up(two_disk_vm, queues, world)
    broken = tmp_path / "broken"
    broken.write_bytes(b"broken\n")
    for disk in (root, data):  # the same bad update on both disks
        subprocess.run([tool("debugfs"), "-w", "-f", "-", f"{disk.source[len('file:'):]}?offset={MiB}"],
                       input=f"rm /etc/hostname\nwrite {broken} /etc/hostname\n", text=True, check=True,
                       capture_output=True)
    root_before = disk_bytes(root)
    with pytest.raises(runs.RestoreError, match="disk they come from"):
        runs.request_restore(world["acme_admin"], two_disk_vm, point, "files", paths=["/data/p1/etc"],
                             target={"type": "in_vm", "path": "/root/p1/restored"})

    requested = runs.request_restore(world["acme_admin"], two_disk_vm, point, "files", paths=["/data/p1/etc"],
                                     target={"type": "in_vm"})
    run_jobs(queues)
    restore = finished(requested.id)
    assert live_file(data, "/p1/etc/hostname") == b"demo\n" and restore.report["disk"] == "data"
    assert disk_bytes(root) == root_before and live_file(root, "/p1/etc/hostname") == b"broken\n"
    assert restore.safety_point.disk_names == ["data"]
    undo = runs.request_undo(world["acme_admin"], restore)
    run_jobs(queues)
    finished(undo.id)
    assert live_file(data, "/p1/etc/hostname") == b"broken\n"
    db.session.expire_all()
