"""The web app as the HTTP source of an instant restore: byte ranges from verified chunks, behind the secret.

A real repository (a real GPT/ext4 disk backed up by the engine), the Flask app's own routing, a real Redis for
the damage the web side hands to the job.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from portal import clock
from portal.extensions import db
from portal.models import BackupPoint, Restore
from portal.services import instant
from tests import images
from tests.serving import backed_up_disk, chunk_file, data_chunks
from tests.storage.diskdata import CHUNK, flip_bit

pytestmark = pytest.mark.skipif(not images.have("sfdisk", "mkfs.ext4"), reason="needs sfdisk and mkfs.ext4")


@pytest.fixture
def served(app: Any, world: dict[str, Any], tmp_path: Path, queues: Any) -> tuple[Restore, bytes, str]:
    vm = world["acme_vm"]
    root = Path(app.config["STORAGE_ROOT"])
    image, revision = backed_up_disk(tmp_path / "work", root, vm.repository_name)
    point = BackupPoint(vm_id=vm.id, revision=revision, size_bytes=image.stat().st_size, state="ok",
                        created_at=clock.now())
    db.session.add(point)
    db.session.flush()
    restore = Restore(vm_id=vm.id, backup_point_id=point.id, kind="instant", state="running", job_id="restore-x",
                      source_secret=secrets.token_urlsafe(32))
    db.session.add(restore)
    db.session.commit()
    return restore, image.read_bytes(), revision


def url(restore: Restore) -> str:
    return f"/instant/{restore.source_secret}/disk.raw"


def test_ranges_and_head_from_the_backup(client: Any, served: tuple[Restore, bytes, str]) -> None:
    restore, original, _ = served
    head = client.head(url(restore))
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(original))
    assert head.headers["Accept-Ranges"] == "bytes"
    for header, (start, end) in {f"bytes={CHUNK - 7}-{CHUNK + 6}": (CHUNK - 7, CHUNK + 7),
                                 "bytes=-512": (len(original) - 512, len(original)),
                                 f"bytes={3 * CHUNK}-{4 * CHUNK - 1}": (3 * CHUNK, 4 * CHUNK)}.items():
        answer = client.get(url(restore), headers={"Range": header})
        assert answer.status_code == 206, header
        assert answer.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(original)}"
        assert answer.data == original[start:end]
    assert client.get(url(restore), headers={"Range": f"bytes={len(original)}-"}).status_code == 416
    assert client.get(url(restore)).data == original


def test_the_secret_answers_only_while_the_restore_runs(client: Any, served: tuple[Restore, bytes, str]) -> None:
    restore, _, _ = served
    assert client.head(url(restore)).status_code == 200
    other = restore.source_secret[:-1] + ("A" if restore.source_secret[-1] != "A" else "B")  # one character off
    assert client.head(f"/instant/{other}/disk.raw").status_code == 404
    restore.state = "done"
    db.session.commit()
    assert client.head(url(restore)).status_code == 404
    assert client.get(url(restore), headers={"Range": "bytes=0-9"}).status_code == 404


def test_damage_is_served_as_zeros_and_handed_to_the_job(app: Any, client: Any,
                                                         served: tuple[Restore, bytes, str]) -> None:
    restore, original, revision = served
    root = Path(app.config["STORAGE_ROOT"])
    index = data_chunks(root, restore.vm.repository_name, revision)[1]
    flip_bit(chunk_file(root, restore.vm.repository_name, revision, index))
    answer = client.get(url(restore), headers={"Range": f"bytes={index * CHUNK}-{index * CHUNK + 99}"})
    assert answer.status_code == 206 and answer.data == bytes(100)
    assert instant.damage_of(app.config, restore.id) == [(index * CHUNK, (index + 1) * CHUNK)]
    answer = client.get(url(restore), headers={"Range": f"bytes={(index + 1) * CHUNK}-{(index + 1) * CHUNK + 99}"})
    assert answer.data == original[(index + 1) * CHUNK : (index + 1) * CHUNK + 100]
