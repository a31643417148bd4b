"""Incremental RBD backups into an encrypted repository (issue 17): the changed-block path reuses the parent's
sealed chunks by name, and a restore to a new image equals ``rbd export`` of the snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from storage.keys import KeyFile

if TYPE_CHECKING:
    from conftest import Ceph

pytestmark = pytest.mark.ceph
OBJ = 4 << 20
ALLOCATED = 4 * OBJ  # the `image` fixture writes objects 0, 1, 5 and 9


def ok_json(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", "from portal.cli import main; main()", *args, "--json"],
                          capture_output=True, text=True, timeout=300, check=False, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_an_encrypted_incremental_reads_only_changed_objects_and_restores(ceph: Ceph, image: str,
                                                                         tmp_path: Path) -> None:
    key = tmp_path / "acme.key"
    KeyFile.create("acme").save(str(key))
    root = tmp_path / "root"
    first = ok_json("store", "backup", str(root), "vm", f"rbd:rbd/{image}", "--key-file", str(key))
    assert first["bytes_read"] == ALLOCATED
    assert json.loads((root / "vm" / "repository.json").read_text())["version"] == 2
    ceph.write(image, [(2 * OBJ + 10, b"new"), (5 * OBJ, os.urandom(4096))])
    second = ok_json("store", "backup", str(root), "vm", f"rbd:rbd/{image}", "--key-file", str(key))
    assert second["bytes_read"] == 2 * OBJ and second["chunks_new"] == 2 and second["incremental"] is True
    expected = ceph.export(f"{image}@lifeboat-{second['revision']}")
    result = ok_json("store", "restore", str(root), "vm", second["revision"], f"rbd:rbd/{image}-r2",
                     "--key-file", str(key))
    assert result["damaged"] == [] and ceph.export(f"{image}-r2") == expected
