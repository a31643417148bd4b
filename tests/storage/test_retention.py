"""forget, protect/unprotect and gc with its grace period."""

from __future__ import annotations

from pathlib import Path

from storage.backup import backup
from storage.restore import restore
from storage.retention import forget, gc

from .diskdata import block, chunk_files, write_image


def test_protected_revisions_cannot_be_forgotten(tmp_path: Path, root: Path, lifeboat) -> None:
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1)])
    revision = backup(str(root), "vm1", f"file:{image}").id
    assert lifeboat("store", "protect", str(root), "vm1", revision).code == 0
    refused = lifeboat("store", "forget", str(root), "vm1", revision)
    assert refused.code == 2
    assert "protected" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert (root / "vm1" / "revisions" / f"{revision}.json").exists()
    assert lifeboat("store", "unprotect", str(root), "vm1", revision).code == 0
    assert lifeboat("store", "forget", str(root), "vm1", revision).code == 0
    assert lifeboat("store", "list", str(root), "vm1", "--json").json["revisions"] == []


def test_gc_removes_only_unreferenced_chunks_older_than_the_grace(tmp_path: Path, root: Path, lifeboat) -> None:
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1), block("random", 2)])
    old = backup(str(root), "vm1", f"file:{image}")
    expected = write_image(image, [block("random", 1), block("random", 3)])
    new = backup(str(root), "vm1", f"file:{image}")
    forget(str(root), "vm1", old.id)
    assert len(chunk_files(root / "vm1")) == 3

    kept = lifeboat("store", "gc", str(root), "vm1", "--json")  # default grace: one hour
    assert kept.code == 0 and kept.json["chunks_removed"] == 0 and kept.json["chunks_kept_young"] == 1

    removed = gc(str(root), "vm1", grace=0)
    assert removed.chunks_removed == 1
    assert {p.name for p in chunk_files(root / "vm1")} == {c for c in new.chunks if c}
    out = tmp_path / "out.img"
    restore(str(root), "vm1", "latest", str(out))
    assert out.read_bytes() == expected
