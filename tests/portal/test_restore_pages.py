"""Restores through the pages: browse a backup, download a selection, request, follow and cancel restores."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile

import pytest

from portal.extensions import db
from portal.models import Restore
from tests.fixtures.jobs import run_jobs
from tests.jobs import images_available
from tests.jobs.test_jobs import backed_up

pytestmark = pytest.mark.skipif(not images_available(), reason="needs sfdisk and mkfs.ext4 (fdisk, e2fsprogs)")


def test_browse_lazy_folders_and_search(file_vm, queues, world, client, auth) -> None:
    point = backed_up(file_vm, queues, world)
    auth.login(world["acme_member"])
    base = f"/vms/{file_vm.id}/backups/{point.id}/files"
    top = client.get(base)
    assert top.status_code == 200 and b'value="/root"' in top.data  # the disks first
    assert b'value="/root/p1"' in client.get(base + "?path=/root", headers={"HX-Request": "true"}).data
    folder = client.get(base + "?path=/p1/etc", headers={"HX-Request": "true"})
    assert folder.status_code == 200 and b"hostname" in folder.data and b"<html" not in folder.data
    found = client.get(base + "?path=/p1&q=app.log")
    assert b"/p1/var/log/app.log" in found.data
    missing = client.get(base + "?path=/p1/nope")
    assert missing.status_code == 422 and b"no such file" in missing.data


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_download_streams_the_selection(file_vm, queues, world, client, auth, fmt: str) -> None:
    point = backed_up(file_vm, queues, world)
    auth.login(world["acme_member"])
    answer = client.get(f"/vms/{file_vm.id}/backups/{point.id}/download?path=/p1/etc&path=/p1/srv/data.bin"
                        f"&format={fmt}")
    assert answer.status_code == 200 and answer.is_streamed
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
            assert archive.read("etc/hostname") == b"demo\n"
            assert len(archive.read("data.bin")) == 4 << 20  # named from the selected path
    else:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(answer.data))) as archive:
            assert archive.extractfile("etc/motd").read() == b"Backed up by Lifeboat\n"  # type: ignore[union-attr]
    refused = client.get(f"/vms/{file_vm.id}/backups/{point.id}/download?path=/p1/nope")
    assert refused.status_code == 422


def test_full_restore_from_the_page_shows_position_then_report(file_vm, queues, world, client, auth) -> None:
    point = backed_up(file_vm, queues, world)
    auth.login(world["acme_member"])  # members may request restores
    answer = client.post(f"/vms/{file_vm.id}/backups/{point.id}/restore", data={"kind": "full"})
    assert answer.status_code == 302
    page = client.get(answer.headers["Location"]).data.decode()
    assert "queued" in page and "Queue position: <strong>1</strong>" in page and "critical" in page
    assert 'hx-trigger="every 1s"' in page  # polls while it is active
    run_jobs(queues)
    db.session.expire_all()  # the test's app context shares its session with the test client's requests
    done = client.get(answer.headers["Location"]).data.decode()
    assert 'data-state="done"' in done and "No damage" in done and 'hx-trigger="every 1s"' not in done


def test_file_restore_then_download_and_cancel(file_vm, queues, world, client, auth) -> None:
    point = backed_up(file_vm, queues, world)
    auth.login(world["acme_admin"])
    answer = client.post(f"/vms/{file_vm.id}/backups/{point.id}/restore",
                         data={"kind": "files", "path": ["/p1/etc/hostname"]})
    restore_url = answer.headers["Location"]
    queued = client.post(f"/vms/{file_vm.id}/backups/{point.id}/restore", data={"kind": "full"})
    cancel = client.post(queued.headers["Location"] + "/cancel")
    assert cancel.status_code == 302
    run_jobs(queues)
    db.session.expire_all()
    states = sorted((r.kind, r.state) for r in Restore.query.filter(Restore.vm_id == file_vm.id))
    assert states == [("files", "done"), ("full", "cancelled")]
    archive = client.get(restore_url + "/download")
    assert archive.status_code == 200
    data = archive.data
    archive.close()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        assert tar.extractfile("hostname").read() == b"demo\n"  # type: ignore[union-attr]
    assert client.post(queued.headers["Location"] + "/cancel").status_code == 409
    bad = client.post(f"/vms/{file_vm.id}/backups/{point.id}/restore", data={"kind": "files", "path": ["etc"]})
    assert bad.status_code == 422 and b"absolute paths" in bad.data
