"""End to end through ``lifeboat store`` against a real cluster: full and incremental RBD backups, restores
to new images, a missing parent snapshot, hooks, and bad pool or image names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Ceph

pytestmark = pytest.mark.ceph
OBJ = 4 << 20
ALLOCATED = 4 * OBJ  # the `image` fixture writes objects 0, 1, 5 and 9


def lifeboat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from portal.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=os.environ.copy(),
    )


def ok_json(*args: str) -> dict[str, Any]:
    done = lifeboat(*args, "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def failed_one_line(done: subprocess.CompletedProcess[str]) -> str:
    """Assert the CLI's error contract (exit 2, one line on stderr, no traceback) and return the line."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def backup(root: Path, image: str, *extra: str) -> dict[str, Any]:
    return ok_json("store", "backup", str(root), "vm", f"rbd:rbd/{image}", *extra)


def test_full_then_incremental_reads_only_changed_objects(ceph: Ceph, image: str, tmp_path: Path) -> None:
    first = backup(tmp_path, image)
    assert first["bytes_read"] == ALLOCATED  # unallocated objects are never read
    assert ceph.snaps(image) == [f"lifeboat-{first['revision']}"]

    ceph.write(image, [(2 * OBJ + 10, b"new"), (5 * OBJ, os.urandom(4096)), (14 * OBJ, os.urandom(OBJ))])
    second = backup(tmp_path, image)
    assert second["bytes_read"] == 3 * OBJ  # exactly the three changed objects
    assert second["chunks_new"] == 3
    # The new snapshot is the next backup's parent; its own parent stays until that backup retires it (the
    # removal then shares the monitor round of the next create: storage/backup.py).
    assert ceph.snaps(image) == [f"lifeboat-{first['revision']}", f"lifeboat-{second['revision']}"]

    third = backup(tmp_path, image)  # nothing changed
    assert third["bytes_read"] == 0
    assert ceph.snaps(image) == [f"lifeboat-{second['revision']}", f"lifeboat-{third['revision']}"]


def test_restore_to_new_image_equals_rbd_export(ceph: Ceph, image: str, tmp_path: Path) -> None:
    first = backup(tmp_path, image)
    first_bytes = ceph.export(f"{image}@lifeboat-{first['revision']}")
    ceph.write(image, [(7 * OBJ, os.urandom(OBJ))], zeroes=[(0, OBJ)])
    second = backup(tmp_path, image)
    second_bytes = ceph.export(f"{image}@lifeboat-{second['revision']}")

    for rev, expected, name in (
        (second["revision"], second_bytes, f"{image}-r2"),
        (first["revision"], first_bytes, f"{image}-r1"),
    ):
        result = ok_json("store", "restore", str(tmp_path), "vm", rev, f"rbd:rbd/{name}")
        assert result["damaged"] == []
        assert ceph.export(name) == expected
        assert ceph.used_bytes(name) <= ALLOCATED  # sparse: zero chunks were not written

    again = lifeboat("store", "restore", str(tmp_path), "vm", "latest", f"rbd:rbd/{image}-r2")
    assert "--force" in failed_one_line(again)
    ok_json("store", "restore", str(tmp_path), "vm", first["revision"], f"rbd:rbd/{image}-r2", "--force")
    assert ceph.export(f"{image}-r2") == first_bytes


def test_missing_parent_snapshot_falls_back_to_full_read(ceph: Ceph, image: str, tmp_path: Path) -> None:
    first = backup(tmp_path, image)
    ceph.rbd("snap", "rm", "--no-progress", f"rbd/{image}@lifeboat-{first['revision']}")
    ceph.write(image, [(3 * OBJ, os.urandom(OBJ))])
    second = backup(tmp_path, image)
    assert second["bytes_read"] == ALLOCATED + OBJ  # everything allocated, not just the changed object
    assert second["chunks_new"] == 1  # yet only the changed chunk is stored again
    result = ok_json("store", "restore", str(tmp_path), "vm", "latest", f"rbd:rbd/{image}-back")
    assert result["damaged"] == []
    assert ceph.export(f"{image}-back") == ceph.export(f"{image}@lifeboat-{second['revision']}")


def test_failing_pre_hook_aborts_cleanly_and_post_hook_runs(ceph: Ceph, image: str, tmp_path: Path) -> None:
    first = backup(tmp_path, image)
    marker = tmp_path / "post-hook-ran"
    done = lifeboat(
        "store",
        "backup",
        str(tmp_path),
        "vm",
        f"rbd:rbd/{image}",
        "--pre-hook",
        "echo guest will not freeze >&2; exit 3",
        "--post-hook",
        f"touch {marker}",
    )
    line = failed_one_line(done)
    assert "pre hook failed" in line and "guest will not freeze" in line
    assert marker.exists()
    assert ceph.snaps(image) == [f"lifeboat-{first['revision']}"]  # no new snapshot, the parent kept
    listing = ok_json("store", "list", str(tmp_path), "vm")
    assert [r["id"] for r in listing["revisions"]] == [first["revision"]]
    assert backup(tmp_path, image)["bytes_read"] == 0  # the chain still works


def test_hooks_run_around_the_snapshot(ceph: Ceph, image: str, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    snaps = f"rbd snap ls rbd/{image} | grep -c lifeboat- >> {log} || true"
    backup(tmp_path, image, "--pre-hook", f"echo pre >> {log}; {snaps}", "--post-hook", f"echo post >> {log}; {snaps}")
    assert log.read_text().split() == ["pre", "0", "post", "1"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("rbd:rbd/", "invalid source"),
        ("rbd:rbd/a;rm -rf x", "invalid image name"),
        ("rbd:-pool/img", "invalid pool name"),
        ("rbd:rbd/img@snap", "invalid image name"),
        ("rbd:nosuchpool/img", "pool 'nosuchpool' does not exist"),
        ("rbd:rbd/nosuchimage", "image 'nosuchimage' does not exist"),
    ],
)
def test_bad_sources_exit_2_with_one_line(ceph: Ceph, tmp_path: Path, spec: str, words: str) -> None:
    assert words in failed_one_line(lifeboat("store", "backup", str(tmp_path), "vm", spec))


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("rbd:rbd", "expected rbd:POOL/IMAGE"),
        ("rbd:rbd/x@y", "bad image name"),
        ("rbd:nosuchpool/img", "pool 'nosuchpool' does not exist"),
    ],
)
def test_bad_targets_exit_2_with_one_line(ceph: Ceph, image: str, tmp_path: Path, spec: str, words: str) -> None:
    backup(tmp_path, image)
    assert words in failed_one_line(lifeboat("store", "restore", str(tmp_path), "vm", "latest", spec))
