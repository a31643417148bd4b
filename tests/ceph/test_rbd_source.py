"""RbdSource against a real cluster: snapshots, reads, allocated and changed ranges, retiring, bad names."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from storage.errors import BadSource, SourceError, StorageError
from storage.sources import open_source
from storage.sources.rbd import RbdSource, make_rbd_source, merge_ranges, parse_spec

if TYPE_CHECKING:
    from conftest import Ceph

pytestmark = pytest.mark.ceph
OBJ = 4 << 20  # RBD's default object size


def objects(*indices: int) -> list[tuple[int, int]]:
    return merge_ranges([(i * OBJ, (i + 1) * OBJ) for i in indices])


def read_all(snap: object, size: int, threads: int = 8) -> bytes:
    """Read the whole snapshot in 4 MiB pieces from several threads at once, as the engine does."""
    with ThreadPoolExecutor(threads) as pool:
        parts = pool.map(lambda off: snap.read(off, OBJ), range(0, size, OBJ))  # type: ignore[attr-defined]
        return b"".join(parts)


def test_factory_dispatches_on_prefix() -> None:
    assert isinstance(open_source("rbd:rbd/some-image"), RbdSource)
    assert make_rbd_source("rbd:rbd/some-image").spec == "rbd:rbd/some-image"


def test_snapshot_reads_equal_rbd_export_and_stay_frozen(ceph: Ceph, image: str) -> None:
    source = make_rbd_source(f"rbd:rbd/{image}")
    source.create_snapshot("r1")
    assert ceph.snaps(image) == ["lifeboat-r1"]
    expected = ceph.export(f"{image}@lifeboat-r1")
    ceph.write(image, [(0, b"after the snapshot")])  # the head moves on; the snapshot must not
    with source.open_snapshot("r1", None) as snap:
        assert snap.size == 64 << 20
        assert read_all(snap, snap.size) == expected
        assert snap.read(snap.size - 10, 100) == expected[-10:]  # short only at the end
        assert snap.read(snap.size, 10) == b""


def test_data_ranges_are_the_allocated_objects(ceph: Ceph, image: str) -> None:
    source = make_rbd_source(f"rbd:rbd/{image}")
    source.create_snapshot("r1")
    with source.open_snapshot("r1", None) as snap:
        assert snap.data_ranges() == objects(0, 1, 5, 9)
        assert snap.data_ranges() == ceph.diff(f"{image}@lifeboat-r1")
        assert snap.changed_ranges() is None  # no parent: the engine reads everything allocated


def test_changed_ranges_cover_exactly_the_changed_objects(ceph: Ceph, image: str) -> None:
    source = make_rbd_source(f"rbd:rbd/{image}")
    source.create_snapshot("r1")
    ceph.write(
        image,
        [(3 * OBJ + 512, b"a" * 4096), (7 * OBJ, os.urandom(OBJ)), (11 * OBJ - 100, b"b" * 200)],
        zeroes=[(5 * OBJ, OBJ)],  # a discarded object changed too: it must be re-read (as zeros)
    )
    source.create_snapshot("r2")
    with source.open_snapshot("r2", "r1") as snap:
        changed = snap.changed_ranges()
        assert changed == objects(3, 5, 7, 10, 11)
        assert changed == ceph.diff(f"{image}@lifeboat-r2", from_snap="lifeboat-r1")
        assert snap.data_ranges() == objects(0, 1, 3, 7, 9, 10, 11)
        assert read_all(snap, snap.size) == ceph.export(f"{image}@lifeboat-r2")


def test_unchanged_image_has_no_changed_ranges(image: str) -> None:
    source = make_rbd_source(f"rbd:rbd/{image}")
    source.create_snapshot("r1")
    source.create_snapshot("r2")
    with source.open_snapshot("r2", "r1") as snap:
        assert snap.changed_ranges() == []


def test_missing_parent_snapshot_means_full_read(ceph: Ceph, image: str) -> None:
    source = make_rbd_source(f"rbd:rbd/{image}")
    source.create_snapshot("r1")
    ceph.rbd("snap", "rm", "--no-progress", f"rbd/{image}@lifeboat-r1")  # an operator removed it
    source.create_snapshot("r2")
    with source.open_snapshot("r2", "r1") as snap:
        assert snap.changed_ranges() is None
    with source.open_snapshot("r2", "never-existed") as snap:
        assert snap.changed_ranges() is None


def test_resized_image_means_full_read(ceph: Ceph, image: str) -> None:
    source = make_rbd_source(f"rbd:rbd/{image}")
    source.create_snapshot("r1")
    ceph.rbd("resize", "--no-progress", "--size", "80M", f"rbd/{image}")
    source.create_snapshot("r2")
    with source.open_snapshot("r2", "r1") as snap:
        assert snap.size == 80 << 20
        assert snap.changed_ranges() is None


def test_retire_keeps_the_kept_and_foreign_snapshots(ceph: Ceph, image: str) -> None:
    source = make_rbd_source(f"rbd:rbd/{image}")
    ceph.rbd("snap", "create", f"rbd/{image}@operator-made")
    for rev in ("r1", "r2", "r3"):
        source.create_snapshot(rev)
    source.retire_snapshots({"r2", "r3"})
    assert ceph.snaps(image) == ["operator-made", "lifeboat-r2", "lifeboat-r3"]
    source.retire_snapshots({"r3"})
    assert ceph.snaps(image) == ["operator-made", "lifeboat-r3"]
    assert source.lifeboat_snapshots() == ["r3"]
    source.retire_snapshots({"r3"})  # idempotent
    assert ceph.snaps(image) == ["operator-made", "lifeboat-r3"]


def test_retire_leaves_a_protected_snapshot_without_failing(ceph: Ceph, image: str) -> None:
    source = make_rbd_source(f"rbd:rbd/{image}")
    source.create_snapshot("r1")
    ceph.rbd("snap", "protect", f"rbd/{image}@lifeboat-r1")  # someone cloned from our snapshot
    source.create_snapshot("r2")
    source.retire_snapshots({"r2"})
    assert ceph.snaps(image) == ["lifeboat-r1", "lifeboat-r2"]


def test_discard_and_recreate_snapshot(ceph: Ceph, image: str) -> None:
    source = make_rbd_source(f"rbd:rbd/{image}")
    source.create_snapshot("r1")
    source.create_snapshot("r1")  # a resumed backup reuses its snapshot
    assert ceph.snaps(image) == ["lifeboat-r1"]
    source.discard_snapshot("r1")
    source.discard_snapshot("r1")  # already gone: fine
    assert ceph.snaps(image) == []


@pytest.mark.parametrize(
    "spec",
    [
        "rbd:",
        "rbd:rbd",
        "rbd:rbd/",
        "rbd:/img",
        "rbd:rbd/a/b",
        "rbd:rbd/img@snap",
        "rbd:-rbd/img",
        "rbd:rbd/.hidden",
        "rbd:rbd/img;rm -rf x",
        "rbd:rbd/" + "x" * 129,
        "rbd:rb d/img",
        "rbd:rbd/ümlaut",
    ],
)
def test_junk_specs_are_bad_source(spec: str) -> None:
    with pytest.raises(BadSource) as caught:
        make_rbd_source(spec)
    assert "\n" not in str(caught.value)
    assert spec in str(caught.value)


def test_junk_specs_need_no_cluster() -> None:
    with pytest.raises(BadSource):
        parse_spec("file:/x")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("rbd:nosuchpool/img", "pool 'nosuchpool' does not exist"),
        ("rbd:rbd/nosuchimage", "image 'nosuchimage' does not exist in pool 'rbd'"),
    ],
)
def test_missing_pool_or_image_is_one_line(ceph: Ceph, spec: str, words: str) -> None:
    source = make_rbd_source(spec)
    with pytest.raises(SourceError) as caught:
        source.create_snapshot("r1")
    assert str(caught.value) == f"cannot read source {spec}: {words}"
    with pytest.raises(SourceError):
        with source.open_snapshot("r1", None):
            pass


def test_missing_snapshot_is_source_error(image: str) -> None:
    with pytest.raises(SourceError, match="snapshot 'lifeboat-r9' of image"):
        with make_rbd_source(f"rbd:rbd/{image}").open_snapshot("r9", None):
            pass


def test_unreachable_cluster_fails_fast(ceph: Ceph, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = ceph.conf.read_text().splitlines()
    dead = [("mon host = [v2:127.0.0.1:1,v1:127.0.0.1:2]" if line.startswith("mon host") else line) for line in conf]
    path = os.path.join(str(tmp_path), "dead.conf")
    with open(path, "w") as handle:
        handle.write("\n".join(dead) + "\n")
    monkeypatch.setenv("CEPH_CONF", path)
    monkeypatch.setenv("LIFEBOAT_CEPH_TIMEOUT", "2")
    started = time.monotonic()
    with pytest.raises(SourceError, match="cannot connect to the Ceph cluster") as caught:
        make_rbd_source("rbd:rbd/img").create_snapshot("r1")
    assert time.monotonic() - started < 20
    assert "\n" not in str(caught.value)


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEPH_CONF", "/nonexistent/ceph.conf")
    with pytest.raises(StorageError, match="/nonexistent/ceph.conf"):
        make_rbd_source("rbd:rbd/img").create_snapshot("r1")
