"""Issue 11, item 13: an RBD incremental backup costs what it reads. Counted, not timed: the operations an
incremental issues (reads, diffs, snapshot creates and removes, connections, fsyncs) are the same for a small
and a four times larger image, and grow only with the changed data; the snapshot no longer needed is retired
beside the create (one monitor round for both), never after the manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from storage import counters
from storage.backup import backup
from storage.manifest import Revision

if TYPE_CHECKING:
    from conftest import Ceph

pytestmark = pytest.mark.ceph
OBJ = 4 << 20
SNAPSHOT_EVENTS = ("rbd.snap_create:start", "rbd.snap_create:end", "rbd.snap_remove:start", "rbd.snap_remove:end")


def filled_image(ceph: Ceph, name: str, objects: int) -> str:
    ceph.rbd("create", "--size", f"{objects * 4}M", f"{ceph.pool}/{name}")
    ceph.write(name, [(i * OBJ, os.urandom(OBJ)) for i in range(objects)])
    return name


def counted_backup(root: Path, image: str) -> tuple[Revision, counters.Counted]:
    with counters.counting() as ops:
        revision = backup(str(root), "vm", f"rbd:rbd/{image}")
    return revision, ops


def history(ceph: Ceph, image: str, root: Path, changed_objects: list[int]) -> list[tuple[Revision, counters.Counted]]:
    """A full backup, then two incrementals, each after rewriting ``changed_objects`` (shifted by one)."""
    runs = [counted_backup(root, image)]
    for shift in (0, 1):
        ceph.write(image, [((i + shift) * OBJ, os.urandom(OBJ)) for i in changed_objects])
        runs.append(counted_backup(root, image))
    return runs


def costs(ops: counters.Counted) -> dict[str, int]:
    return {name: ops[name] for name in ("rbd.connect", "rbd.open", "rbd.diff", "rbd.read", "rbd.snap_list",
                                         "rbd.snap_create", "rbd.snap_remove", "fsync")}


def without_fsync(ops: counters.Counted) -> dict[str, int]:
    return {name: count for name, count in costs(ops).items() if name != "fsync"}


def test_an_incremental_costs_the_same_whatever_the_image_size(ceph: Ceph, image_name: str, tmp_path: Path) -> None:
    small = filled_image(ceph, f"{image_name}-s", 8)
    large = filled_image(ceph, f"{image_name}-l", 32)
    runs = {name: history(ceph, name, tmp_path / name, [2, 5]) for name in (small, large)}  # removed by image_name
    (s_full, s_full_ops), (_, s_first), (s_inc, s_ops) = runs[small]
    (l_full, l_full_ops), (_, l_first), (l_inc, l_ops) = runs[large]
    # A full backup reads every object; the incrementals read the two changed ones, whatever the image size.
    assert (s_full_ops["rbd.read"], l_full_ops["rbd.read"]) == (8, 32)
    assert s_inc.stats["bytes_read"] == l_inc.stats["bytes_read"] == 2 * OBJ
    # fsyncs aside: two new chunks may share a chunk folder (random data: 1 in 256), one folder fsync fewer
    assert without_fsync(s_ops) == without_fsync(l_ops) and without_fsync(s_first) == without_fsync(l_first)
    assert max(s_ops["fsync"], l_ops["fsync"], s_first["fsync"], l_first["fsync"]) <= 2 * 2 + 2
    steady = costs(l_ops)
    assert steady["rbd.read"] == 2
    assert steady["rbd.diff"] == 1  # the changed objects only: no second diff over the whole image for its data
    assert steady["rbd.connect"] == 1
    assert (steady["rbd.snap_create"], steady["rbd.snap_remove"]) == (1, 1)  # the grandparent retired
    assert costs(l_first)["rbd.snap_remove"] == 0  # the first incremental has nothing to retire yet
    # Two new chunks (each file and its folder) and the manifest (file and folder): nothing per image object.
    assert steady["fsync"] <= 2 * 2 + 2


def test_old_snapshots_are_retired_beside_the_create_not_after_the_manifest(
        ceph: Ceph, image_name: str, tmp_path: Path) -> None:
    image = filled_image(ceph, image_name, 4)
    (full, _), (first, _), (second, ops) = history(ceph, image, tmp_path, [1])
    events = [e for e in ops.events if e in SNAPSHOT_EVENTS or e == "manifest"]
    # The removal is issued before the create, so both reach the monitor together, and nothing is left for
    # after the manifest (a second monitor round, which a full backup never paid).
    assert events.count("rbd.snap_remove:start") == events.count("rbd.snap_create:start") == 1
    assert events.index("rbd.snap_remove:start") < events.index("rbd.snap_create:start")
    assert events[-1] == "manifest"
    # What stays on the image: the newest snapshot (the next parent) and its parent, until the next backup.
    assert ceph.snaps(image) == [f"lifeboat-{first.id}", f"lifeboat-{second.id}"]
    assert full.id not in {s.removeprefix("lifeboat-") for s in ceph.snaps(image)}


def test_a_changed_object_that_became_a_hole_is_not_read(ceph: Ceph, image_name: str, tmp_path: Path) -> None:
    image = filled_image(ceph, image_name, 4)
    counted_backup(tmp_path, image)
    ceph.write(image, [(2 * OBJ, os.urandom(OBJ))], zeroes=[(0, OBJ)])  # one object rewritten, one discarded
    revision, ops = counted_backup(tmp_path, image)
    assert ops["rbd.read"] == 1 and revision.stats["bytes_read"] == OBJ
    assert revision.chunks[0] is None  # stored as zeros
    restored = tmp_path / "restored.img"
    from storage.restore import restore

    restore(str(tmp_path), "vm", revision.id, str(restored))
    assert restored.read_bytes() == ceph.export(f"{image}@lifeboat-{revision.id}")
