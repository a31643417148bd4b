"""forget, protect/unprotect and gc with its grace period."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.backup import backup
from storage.restore import restore
from storage.retention import forget, gc

from .diskdata import block, object_exists, stored_chunks, write_image


@pytest.fixture
def root(store_root: str) -> str:
    """Every test here runs on each backend: a folder and a RADOS pool (tests/fixtures/store.py)."""
    return store_root


def test_protected_revisions_cannot_be_forgotten(tmp_path: Path, root: str, lifeboat) -> None:
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1)])
    revision = backup(str(root), "vm1", f"file:{image}").id
    assert lifeboat("store", "protect", str(root), "vm1", revision).code == 0
    refused = lifeboat("store", "forget", str(root), "vm1", revision)
    assert refused.code == 2
    assert "protected" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert object_exists(root, f"vm1/revisions/{revision}.json")
    assert lifeboat("store", "unprotect", str(root), "vm1", revision).code == 0
    assert lifeboat("store", "forget", str(root), "vm1", revision).code == 0
    assert lifeboat("store", "list", str(root), "vm1", "--json").json["revisions"] == []


def test_gc_removes_only_unreferenced_chunks_older_than_the_grace(tmp_path: Path, root: str, lifeboat) -> None:
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1), block("random", 2)])
    old = backup(str(root), "vm1", f"file:{image}")
    expected = write_image(image, [block("random", 1), block("random", 3)])
    new = backup(str(root), "vm1", f"file:{image}")
    forget(str(root), "vm1", old.id)
    assert len(stored_chunks(root, "vm1")) == 3

    kept = lifeboat("store", "gc", str(root), "vm1", "--json")  # default grace: one hour
    assert kept.code == 0 and kept.json["chunks_removed"] == 0 and kept.json["chunks_kept_young"] == 1

    removed = gc(str(root), "vm1", grace=0)
    assert removed.chunks_removed == 1
    assert set(stored_chunks(root, "vm1")) == {c for c in new.chunks if c}
    out = tmp_path / "out.img"
    restore(str(root), "vm1", "latest", str(out))
    assert out.read_bytes() == expected
