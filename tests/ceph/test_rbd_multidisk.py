"""Several disks of one VM on a real cluster: rbd: disks (and a file: disk beside them) snapshotted under one
freeze, each read incrementally from its own parent snapshot, both restoring byte for byte from both points;
a failed pre-hook or snapshot leaves no snapshot on any image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_rbd_cli import ALLOCATED, OBJ, failed_one_line, lifeboat, ok_json

if TYPE_CHECKING:
    from conftest import Ceph

pytestmark = pytest.mark.ceph


@pytest.fixture
def data_image(ceph: Ceph, image_name: str) -> str:
    """A second 32 MiB image beside ``image`` (named after it, so the same cleanup removes it)."""
    name = f"{image_name}-data"
    ceph.rbd("create", "--size", "32M", f"{ceph.pool}/{name}")
    ceph.write(name, [(0, os.urandom(OBJ)), (3 * OBJ, os.urandom(OBJ))])
    return name


def lifeboat_snaps(ceph: Ceph, image: str) -> list[str]:
    return [s for s in ceph.snaps(image) if s.startswith("lifeboat-")]


def restore_disk(root: Path, revision: str, disk: str, out: Path) -> bytes:
    ok_json("store", "restore", str(root), "vm", revision, str(out), "--disk", disk)
    return out.read_bytes()


def test_two_rbd_disks_and_a_file_disk_are_one_incremental_point(ceph: Ceph, image: str, data_image: str,
                                                                tmp_path: Path) -> None:
    root = tmp_path / "repos"
    scratch = tmp_path / "scratch.img"
    scratch.write_bytes(os.urandom(OBJ) + bytes(OBJ))
    disks = ["--disk", f"root=rbd:rbd/{image}", "--disk", f"data=rbd:rbd/{data_image}",
             "--disk", f"scratch=file:{scratch}"]
    first = ok_json("store", "backup", str(root), "vm", *disks)
    expected = [{"root": ceph.export(image), "data": ceph.export(data_image), "scratch": scratch.read_bytes()}]
    assert [d["name"] for d in first["disks"]] == ["root", "data", "scratch"]
    assert lifeboat_snaps(ceph, image) == lifeboat_snaps(ceph, data_image) == [f"lifeboat-{first['revision']}"]
    assert first["disks"][0]["stats"]["bytes_read"] == ALLOCATED and first["disks"][1]["stats"]["bytes_read"] == 2 * OBJ

    ceph.write(image, [(5 * OBJ, os.urandom(4096))])
    ceph.write(data_image, [(OBJ, os.urandom(OBJ)), (3 * OBJ + 100, b"changed")])
    scratch.write_bytes(os.urandom(OBJ) + bytes(OBJ))
    second = ok_json("store", "backup", str(root), "vm", *disks)
    expected.append({"root": ceph.export(image), "data": ceph.export(data_image), "scratch": scratch.read_bytes()})
    root_stats, data_stats = second["disks"][0]["stats"], second["disks"][1]["stats"]
    assert root_stats["incremental"] and root_stats["bytes_read"] == OBJ  # only the changed object
    assert data_stats["incremental"] and data_stats["bytes_read"] == 2 * OBJ
    # the newest (the next parent) and its parent, retired by the next backup (see README, Ceph RBD)
    assert sorted(lifeboat_snaps(ceph, image)) == sorted(lifeboat_snaps(ceph, data_image)) == sorted(
        [f"lifeboat-{first['revision']}", f"lifeboat-{second['revision']}"])

    for point, wanted in zip((first, second), expected, strict=True):
        for name, data in wanted.items():
            assert restore_disk(root, point["revision"], name, tmp_path / f"{point['revision']}-{name}") == data


def test_a_failing_pre_hook_leaves_no_snapshot_on_either_disk(ceph: Ceph, image: str, data_image: str,
                                                              tmp_path: Path) -> None:
    done = lifeboat("store", "backup", str(tmp_path), "vm", "--disk", f"root=rbd:rbd/{image}",
                    "--disk", f"data=rbd:rbd/{data_image}", "--pre-hook", "exit 5")
    assert "pre hook failed" in failed_one_line(done)
    assert lifeboat_snaps(ceph, image) == [] and lifeboat_snaps(ceph, data_image) == []


def test_a_snapshot_that_fails_on_the_second_disk_removes_the_first_ones(ceph: Ceph, image: str,
                                                                         tmp_path: Path) -> None:
    first = ok_json("store", "backup", str(tmp_path), "vm", "--disk", f"root=rbd:rbd/{image}")
    done = lifeboat("store", "backup", str(tmp_path), "vm", "--disk", f"root=rbd:rbd/{image}",
                    "--disk", f"data=rbd:rbd/{image}-absent")
    assert "does not exist" in failed_one_line(done)
    assert lifeboat_snaps(ceph, image) == [f"lifeboat-{first['revision']}"]  # the parent, and nothing new
    listed = ok_json("store", "list", str(tmp_path), "vm")
    assert [r["id"] for r in listed["revisions"]] == [first["revision"]]
