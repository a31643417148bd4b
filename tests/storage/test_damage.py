"""Damage: verify quarantines and distrusts, restores go on to the end, the next backup heals."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.backend import open_store
from storage.backup import backup
from storage.repository import Repository
from storage.restore import restore
from storage.verify import verify

from .diskdata import CHUNK, block, delete_object, flip_object_bit, object_exists, write_image


@pytest.fixture
def root(store_root: str) -> str:
    """Every test here runs on each backend: a folder and a RADOS pool (tests/fixtures/store.py)."""
    return store_root


def two_revisions(tmp_path: Path, root: str) -> tuple[Path, bytes, str, str]:
    image = tmp_path / "disk.img"
    expected = write_image(image, [block("random", 1), block("text", 2), block("zero"), block("random", 3)])
    first = backup(str(root), "vm1", f"file:{image}").id
    second = backup(str(root), "vm1", f"file:{image}").id
    return image, expected, first, second


def chunk_of(root: str, revision: str, index: int) -> tuple[str, str]:
    """A chunk of the revision and its key."""
    repo = Repository.open(str(root), "vm1")
    chunk = repo.load_revision(revision).chunks[index]
    assert chunk is not None
    return chunk, repo.chunk_key(chunk)


def test_bit_flip_is_found_quarantined_and_distrusts_every_user(tmp_path: Path, root: str, lifeboat) -> None:
    _, _, first, second = two_revisions(tmp_path, root)
    chunk, key = chunk_of(root, second, 1)
    flip_object_bit(root, key)

    done = lifeboat("store", "verify", str(root), "vm1", "--json")
    assert done.code == 1, done.stderr
    report = done.json
    assert report["damaged_chunks"] == [chunk]
    assert sorted(report["distrusted_revisions"]) == sorted([first, second])
    assert report["damaged_ranges"][second] == [[CHUNK, 2 * CHUNK]]
    assert not object_exists(root, key)
    quarantined = list(open_store(root).list("vm1/quarantine/", recursive=False))
    assert [k.rsplit("/", 1)[1].split(".")[0] for k in quarantined] == [chunk]
    repo = Repository.open(str(root), "vm1")
    assert {r.trust for r in repo.revisions()} == {"distrusted"}


def test_clean_verify_marks_revisions_verified(tmp_path: Path, root: str, lifeboat) -> None:
    _, _, first, _ = two_revisions(tmp_path, root)
    done = lifeboat("store", "verify", str(root), "vm1", first, "--json")
    assert done.code == 0
    assert done.json["chunks_checked"] == 3 and done.json["distrusted_revisions"] == []
    revision = Repository.open(str(root), "vm1").load_revision(first)
    assert revision.trust == "verified" and revision.verified_at


def test_restore_goes_through_damage_and_names_the_ranges(tmp_path: Path, root: str, lifeboat) -> None:
    _, expected, _, second = two_revisions(tmp_path, root)
    _, damaged = chunk_of(root, second, 0)
    flip_object_bit(root, damaged)
    _, missing = chunk_of(root, second, 3)
    delete_object(root, missing)

    out = tmp_path / "out.img"
    done = lifeboat("store", "restore", str(root), "vm1", second, str(out), "--json")
    assert done.code == 1, done.stderr
    assert done.json["damaged"] == [[0, CHUNK], [3 * CHUNK, 4 * CHUNK]]
    data = out.read_bytes()
    assert len(data) == len(expected)
    assert data[:CHUNK] == bytes(CHUNK) and data[3 * CHUNK :] == bytes(CHUNK)  # zero-filled
    assert data[CHUNK : 3 * CHUNK] == expected[CHUNK : 3 * CHUNK]  # everything else intact


def test_next_backup_rewrites_damaged_chunks_and_verify_trusts_again(tmp_path: Path, root: str) -> None:
    image, expected, first, _ = two_revisions(tmp_path, root)
    chunk, key = chunk_of(root, first, 3)
    flip_object_bit(root, key)
    assert not verify(str(root), "vm1").clean

    healing = backup(str(root), "vm1", f"file:{image}")
    assert healing.parent is None  # every earlier revision is distrusted: no parent to trust
    assert healing.stats["chunks_rewritten"] == 1
    assert healing.chunks[3] == chunk

    again = verify(str(root), "vm1")
    assert again.clean
    assert {r.trust for r in Repository.open(str(root), "vm1").revisions()} == {"verified"}
    out = tmp_path / "old.img"
    restore(str(root), "vm1", first, str(out))
    assert out.read_bytes() == expected


def test_damage_not_yet_found_by_verify_is_rewritten_once_distrusted(tmp_path: Path, root: str) -> None:
    """A corrupt chunk whose name is 'known' must not be reused just because the file exists."""
    image, _, first, _ = two_revisions(tmp_path, root)
    chunk, key = chunk_of(root, first, 0)
    flip_object_bit(root, key)
    repo = Repository.open(str(root), "vm1")
    for revision in repo.revisions():  # e.g. a failed restore distrusted them, no verify ran yet
        repo.update_revision(revision.id, lambda r: setattr(r, "trust", "distrusted"))
    healing = backup(str(root), "vm1", f"file:{image}")
    assert healing.stats["chunks_rewritten"] >= 1
    assert repo.read_chunk(chunk)  # the file is intact again
