"""``lifeboat store copy``: repositories move between backends, every chunk re-hashed, a rerun continues."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.repository import Repository
from storage.restore import restore

from .diskdata import block, delete_object, flip_object_bit, stored_chunks, write_image


@pytest.fixture
def root(store_root: str) -> str:
    """The destination: a folder or a RADOS pool (tests/fixtures/store.py); the source is always a folder."""
    return store_root


def two_vms(tmp_path: Path) -> tuple[str, dict[str, bytes]]:
    source = str(tmp_path / "source")
    images = {}
    for n, vm in enumerate(("vm1", "vm2")):
        image = tmp_path / f"{vm}.img"
        images[vm] = write_image(image, [block("random", n), block("zero"), block("text", n)])
        from storage.backup import backup

        backup(source, vm, f"file:{image}")
        images[vm] = write_image(image, [block("random", n), block("random", 10 + n), block("text", n)])
        backup(source, vm, f"file:{image}")
    return source, images


@pytest.mark.slow
def test_copy_there_and_back_restores_the_same_bytes(tmp_path: Path, root: str, lifeboat) -> None:
    source, images = two_vms(tmp_path)
    done = lifeboat("store", "copy", source, root, "--json")
    assert done.code == 0, done.stderr
    assert done.json["ok"] and len(done.json["revisions_pulled"]) == 4
    back = str(tmp_path / "back")
    again = lifeboat("store", "copy", root, back, "--vm", "vm2", "--json")
    assert again.code == 0, again.stderr
    for n, where in enumerate((root, back)):
        out = tmp_path / f"out{n}.img"
        restore(where, "vm2", "latest", str(out))
        assert out.read_bytes() == images["vm2"]
    assert lifeboat("store", "verify", back, "vm2").code == 0
    assert Repository.open(back, "vm2").revisions()[0].id == Repository.open(source, "vm2").revisions()[0].id


@pytest.mark.slow
def test_a_rerun_copies_only_what_is_missing(tmp_path: Path, root: str, lifeboat) -> None:
    source, _ = two_vms(tmp_path)
    assert lifeboat("store", "copy", source, root, "--vm", "vm1").code == 0
    # as if the first copy had been interrupted: a chunk and the newest manifest never arrived
    repo = Repository.open(root, "vm1")
    newest = repo.revisions()[-1]
    lost = next(c for c in newest.chunks if c and c not in repo.revisions()[0].chunks)
    delete_object(root, repo.chunk_key(lost))
    delete_object(root, f"vm1/revisions/{newest.id}.json")
    done = lifeboat("store", "copy", source, root, "--vm", "vm1", "--json")
    assert done.code == 0, done.stderr
    assert done.json["chunks_fetched"] == 1 and done.json["revisions_pulled"] == [f"vm1/{newest.id}"]
    assert lifeboat("store", "verify", root, "vm1").code == 0


def test_damage_at_the_source_is_not_copied_as_good(tmp_path: Path, root: str, lifeboat) -> None:
    source, _ = two_vms(tmp_path)
    repo = Repository.open(source, "vm1")
    newest = repo.revisions()[-1]
    damaged = next(c for c in newest.chunks if c and c not in repo.revisions()[0].chunks)
    flip_object_bit(source, repo.chunk_key(damaged))
    done = lifeboat("store", "copy", source, root, "--vm", "vm1", "--json")
    assert done.code == 1
    assert damaged in done.json["chunks_failed"] and done.json["revisions_incomplete"] == [f"vm1/{newest.id}"]
    assert len(done.stderr.strip().splitlines()) >= 1
    assert damaged not in stored_chunks(root, "vm1")
    assert [r.id for r in Repository.open(root, "vm1").revisions()] == [repo.revisions()[0].id]


def test_bad_roots_are_one_line_and_exit_2(tmp_path: Path, root: str, lifeboat) -> None:
    source, _ = two_vms(tmp_path)
    for args in ((source, source), (source, root, "--vm", "nosuch"), (str(tmp_path / "nothing"), root, "--vm", "x")):
        done = lifeboat("store", "copy", *args)
        assert done.code == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
def test_an_encrypted_repository_is_copied_as_ciphertext_without_its_key(tmp_path: Path, root: str,
                                                                          lifeboat) -> None:
    """Copying needs no key (the bytes are moved as stored, each checked by its outer hash); the copy verifies
    without the key, refuses to restore without it, and restores byte for byte with it."""
    key = tmp_path / "acme.key"
    assert lifeboat("keys", "create", str(key)).code == 0
    source, image = str(tmp_path / "source"), tmp_path / "disk.img"
    data = write_image(image, [block("text", 1), block("random", 2), block("zero"), block("text", 1)])
    made = lifeboat("store", "backup", source, "vm1", f"file:{image}", "--key-file", str(key), "--json")
    assert made.code == 0, made.stderr

    done = lifeboat("store", "copy", source, root, "--json")  # no --key-file
    assert done.code == 0, done.stderr
    assert done.json["ok"] and len(done.json["revisions_pulled"]) == 1
    assert lifeboat("store", "verify", root, "vm1", "--without-key").code == 0
    out = tmp_path / "out.img"
    refused = lifeboat("store", "restore", root, "vm1", "latest", str(out))
    assert refused.code == 2 and len(refused.stderr.strip().splitlines()) == 1 and not out.exists()
    restored = lifeboat("store", "restore", root, "vm1", "latest", str(out), "--key-file", str(key))
    assert restored.code == 0, restored.stderr
    assert out.read_bytes() == data


def test_an_encrypted_backup_goes_into_every_backend(tmp_path: Path, root: str, lifeboat) -> None:
    """Sealed chunks are built in a bytearray; every backend stores them (RADOS once refused anything but bytes)."""
    key = tmp_path / "acme.key"
    assert lifeboat("keys", "create", str(key)).code == 0
    image = tmp_path / "disk.img"
    data = write_image(image, [block("random", 4), block("text", 5), block("zero")])
    made = lifeboat("store", "backup", root, "vm1", f"file:{image}", "--key-file", str(key))
    assert made.code == 0, made.stderr
    assert lifeboat("store", "verify", root, "vm1", "--without-key").code == 0
    out = tmp_path / "out.img"
    restored = lifeboat("store", "restore", root, "vm1", "latest", str(out), "--key-file", str(key))
    assert restored.code == 0, restored.stderr
    assert out.read_bytes() == data
