"""Backups and restores of real image files: identity, sparseness, dedup and stats."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from storage.backend import is_object_root
from storage.backup import backup
from storage.repository import Repository
from storage.restore import restore

from .diskdata import CHUNK, MiB, block, read_object, stored_chunks, write_image


@pytest.fixture
def root(store_root: str) -> str:
    """Every test here runs on each backend: a folder and a RADOS pool (tests/fixtures/store.py)."""
    return store_root


def roundtrip(tmp_path: Path, root: str, blocks: list[bytes], vm: str = "vm1") -> tuple[bytes, dict]:
    image = tmp_path / f"{vm}.img"
    expected = write_image(image, blocks)
    revision = backup(str(root), vm, f"file:{image}")
    target = tmp_path / f"{vm}.restored"
    result = restore(str(root), vm, revision.id, str(target))
    assert target.read_bytes() == expected
    assert result.damaged == []
    return expected, revision.stats


def test_mixed_regions_round_trip_and_stats(tmp_path: Path, root: str) -> None:
    blocks = [block("random", 1), block("zero"), block("text", 2), block("random", 1), block("zero"),
              block("random", 3)]
    _, stats = roundtrip(tmp_path, root, blocks)
    assert stats["chunks_zero"] == 2
    assert stats["chunks_new"] == 3  # the repeated random block is stored once
    assert stats["chunks_reused"] == 1
    assert stats["bytes_read"] == 4 * CHUNK  # the two holes were never read
    assert len(stored_chunks(root, "vm1")) == 3


@pytest.mark.parametrize("size", [1, 4095, CHUNK - 1, CHUNK + 1, 3 * CHUNK + 12345])
def test_sizes_that_are_not_a_multiple_of_the_chunk_size(tmp_path: Path, root: str, size: int) -> None:
    data = block("random", size, size=size)
    _, stats = roundtrip(tmp_path, root, [data])
    assert stats["chunks_new"] == -(-size // CHUNK)


def test_empty_image(tmp_path: Path, root: str) -> None:
    expected, stats = roundtrip(tmp_path, root, [])
    assert expected == b""
    assert stats["bytes_read"] == 0


def test_zero_blocks_that_are_not_holes_are_not_stored(tmp_path: Path, root: str) -> None:
    image = tmp_path / "dense.img"
    write_image(image, [block("zero"), block("text", 1)], sparse=False)
    revision = backup(str(root), "vm1", f"file:{image}")
    assert revision.chunks[0] is None
    assert revision.stats["chunks_zero"] == 1 and revision.stats["bytes_read"] == 2 * CHUNK


def test_restore_is_sparse(tmp_path: Path, root: str) -> None:
    blocks = [block("zero")] * 10 + [block("random", 7)] + [block("zero")] * 10
    image = tmp_path / "sparse.img"
    write_image(image, blocks)
    backup(str(root), "vm1", f"file:{image}")
    target = tmp_path / "out.img"
    restore(str(root), "vm1", "latest", str(target))
    assert target.stat().st_size == 21 * CHUNK
    assert target.stat().st_blocks * 512 <= CHUNK + MiB  # only the one data block takes space


def test_second_backup_stores_only_changed_chunks(tmp_path: Path, root: str) -> None:
    blocks = [block("random", i) for i in range(6)]
    image = tmp_path / "disk.img"
    write_image(image, blocks)
    first = backup(str(root), "vm1", f"file:{image}")
    with open(image, "r+b") as handle:  # change one byte in block 4
        handle.seek(4 * CHUNK + 17)
        handle.write(b"X")
    second = backup(str(root), "vm1", f"file:{image}")
    assert second.parent == first.id
    assert second.stats["chunks_new"] == 1
    assert second.stats["chunks_reused"] == 5
    assert [a == b for a, b in zip(first.chunks, second.chunks, strict=True)] == [True] * 4 + [False, True]
    out = tmp_path / "first.img"
    restore(str(root), "vm1", first.id, str(out))
    assert out.read_bytes() == b"".join(blocks)


def test_manifest_is_self_describing_and_listing_needs_only_files(tmp_path: Path, root: str, lifeboat) -> None:
    image = tmp_path / "disk.img"
    write_image(image, [block("text", 1), block("zero")])
    revision = backup(str(root), "vm1", f"file:{image}", tags=["nightly"])
    config = json.loads(read_object(root, "vm1/repository.json"))
    assert config["hash"] == "blake3" and config["compression"] == "zstd" and config["chunk_size"] == CHUNK
    manifest = json.loads(read_object(root, f"vm1/revisions/{revision.id}.json"))
    assert manifest["version"] == 2 and manifest["tags"] == ["nightly"]
    [disk] = manifest["disks"]
    assert disk["name"] == "root" and disk["source"] == f"file:{image}" and disk["size"] == 2 * CHUNK
    assert disk["chunks"][1] is None and disk["stats"]["chunks_zero"] == 1
    assert manifest["stats"]["chunks_zero"] == 1
    # Compression works: a text chunk is stored far smaller than 4 MiB.
    assert sum(stored_chunks(root, "vm1").values()) < CHUNK // 10

    listed = lifeboat("store", "list", str(root), "vm1", "--json")
    assert listed.code == 0, listed.stderr
    assert [r["id"] for r in listed.json["revisions"]] == [revision.id]


def test_a_copied_repository_works(tmp_path: Path, root: str, lifeboat) -> None:
    if is_object_root(root):
        pytest.skip("a folder's property (rsync); object-store repositories move with `lifeboat store copy`")
    expected, _ = roundtrip(tmp_path, root, [block("random", 1), block("text", 2)])
    copy = tmp_path / "elsewhere"
    if shutil.which("rsync"):
        os.system(f"rsync -a {root}/ {copy}/")  # noqa: S605
    else:
        shutil.copytree(root, copy)
    out = tmp_path / "from-copy.img"
    done = lifeboat("store", "restore", str(copy), "vm1", "latest", str(out), "--json")
    assert done.code == 0, done.stderr
    assert out.read_bytes() == expected
    assert lifeboat("store", "verify", str(copy), "vm1").code == 0


def test_repositories_of_different_vms_never_mix(tmp_path: Path, root: str) -> None:
    roundtrip(tmp_path, root, [block("random", 1)], vm="vm1")
    roundtrip(tmp_path, root, [block("random", 1)], vm="vm2")
    assert len(stored_chunks(root, "vm1")) == 1 and len(stored_chunks(root, "vm2")) == 1
    assert Repository.open(str(root), "vm2").revisions()[0].vm == "vm2"


def test_cli_backup_json_has_the_fixed_fields(tmp_path: Path, root: str, lifeboat) -> None:
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1), block("zero")])
    done = lifeboat("store", "backup", str(root), "vm1", f"file:{image}", "--json")
    assert done.code == 0, done.stderr
    stats = done.json
    for key in ("revision", "bytes_read", "bytes_written", "chunks_new", "chunks_reused", "chunks_zero",
                "seconds"):
        assert key in stats
    assert stats["chunks_new"] == 1 and stats["chunks_zero"] == 1
    restored = lifeboat("store", "restore", str(root), "vm1", "latest", str(tmp_path / "o.img"), "--json")
    assert restored.code == 0
    assert set(restored.json) >= {"revision", "bytes", "seconds", "damaged"}
    assert restored.json["revision"] == stats["revision"] and restored.json["damaged"] == []


def test_incompressible_chunks_are_stored_as_raw_zstd_blocks(tmp_path: Path, root: str) -> None:
    import zstandard

    image = tmp_path / "disk.img"
    write_image(image, [block("random", 5), block("text", 5)])
    revision = backup(str(root), "vm1", f"file:{image}")
    random_chunk, text_chunk = (read_object(root, f"vm1/chunks/{c[:2]}/{c}") for c in revision.chunks if c)
    assert CHUNK < len(random_chunk) < CHUNK + 1024  # stored, not compressed: raw blocks cost a few bytes
    assert zstandard.ZstdDecompressor().decompress(random_chunk) == block("random", 5)  # any zstd reads it
    assert len(text_chunk) < CHUNK // 10


def test_a_rate_limited_restore_writes_the_same_bytes(tmp_path: Path, root: str, lifeboat) -> None:
    image = tmp_path / "disk.img"
    expected = write_image(image, [block("random", 1), block("zero"), block("text", 2)])
    assert lifeboat("store", "backup", str(root), "vm1", f"file:{image}").code == 0
    out = tmp_path / "limited.img"
    done = lifeboat("store", "restore", str(root), "vm1", "latest", str(out), "--limit-rate", "64", "--json")
    assert done.code == 0, done.stderr
    assert out.read_bytes() == expected


def test_a_rate_limit_must_be_positive(tmp_path: Path, root: str, lifeboat) -> None:
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1)])
    assert lifeboat("store", "backup", str(root), "vm1", f"file:{image}").code == 0
    done = lifeboat("store", "restore", str(root), "vm1", "latest", str(tmp_path / "o.img"), "--limit-rate", "0")
    assert done.code == 2 and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.img").exists()
    with pytest.raises(ValueError, match="positive"):
        restore(str(root), "vm1", "latest", str(tmp_path / "o2.img"), limit_bytes_per_second=-1)
    assert not (tmp_path / "o2.img").exists()
