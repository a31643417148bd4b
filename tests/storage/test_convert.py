"""``lifeboat store copy SRC DST --encrypt``: a plain repository becomes a new encrypted one (issue 17).

The source is a plain repository of two revisions of two disks (made with the engine in 64 KiB chunks); the
destination is a folder or a RADOS pool (``store_root``). Every command runs as the real ``lifeboat`` process.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import blake3
import pytest
import zstandard

from storage.backend import open_store
from storage.backup import backup
from storage.copy import ConvertNeedsKey, convert
from storage.keys import KeyRing, using
from storage.repository import Repository

from .diskdata import block, delete_object, flip_object_bit, write_image
from .test_formats import FIRST, FIXTURE, SECOND
from .test_hostile_files import one_line

SMALL = 64 * 1024


@pytest.fixture
def root(store_root: str) -> str:
    """The destination: a folder or a RADOS pool (tests/fixtures/store.py); the source is always a folder."""
    return store_root


@pytest.fixture
def key(tmp_path: Path, lifeboat) -> Path:
    path = tmp_path / "acme.key"
    assert lifeboat("keys", "create", str(path)).code == 0
    return path


def first_blocks() -> dict[str, list[bytes]]:
    """root: text, random, zeros, text; data: the random block of root (shared between disks), random."""
    return {"root": [block("text", 1, SMALL), block("random", 2, SMALL), block("zero", 0, SMALL),
                     block("text", 3, SMALL)],
            "data": [block("random", 2, SMALL), block("random", 4, SMALL)]}


def second_blocks() -> dict[str, list[bytes]]:
    blocks = first_blocks()
    blocks["root"][1] = block("random", 9, SMALL)
    blocks["data"][1] = block("text", 5, SMALL)
    return blocks


def write_disks(tmp_path: Path, blocks: dict[str, list[bytes]]) -> dict[str, bytes]:
    return {disk: write_image(tmp_path / f"{disk}.img", parts) for disk, parts in blocks.items()}


def disks(tmp_path: Path) -> list[tuple[str, str]]:
    return [(disk, f"file:{tmp_path / f'{disk}.img'}") for disk in ("root", "data")]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def everything(root: str, vm: str) -> bytes:
    """Every object of the repository, chunks included, whatever the backend."""
    store = open_store(root)
    keys = set(store.list(f"{vm}/")) | {key for _, key in Repository.open(root, vm, keyless=True).iter_chunk_files()}
    return b"".join(store.get(key, 1 << 30) for key in sorted(keys) if store.is_file(key))


@pytest.fixture
def plain(tmp_path: Path) -> tuple[str, list[str], list[dict[str, bytes]]]:
    """A plain repository of VM vm1 (two revisions of disks root and data): its root, revision ids and disks."""
    source = str(tmp_path / "source")
    images, ids = [], []
    for blocks in (first_blocks(), second_blocks()):
        images.append(write_disks(tmp_path, blocks))
        revision = backup(source, "vm1", disks(tmp_path), chunk_size=SMALL, keys=None)
        ids.append(revision.id)
    assert not Repository.open(source, "vm1").encrypted
    Repository.open(source, "vm1").update_revision(ids[0], lambda r: setattr(r, "protected", True))
    return source, ids, images


def test_a_plain_repository_is_converted_sealed_verified_and_the_source_untouched(
        tmp_path: Path, root: str, key: Path, plain: tuple[str, list[str], list[dict[str, bytes]]],
        lifeboat) -> None:
    source, ids, images = plain
    before = tree(Path(source))
    done = lifeboat("store", "copy", source, root, "--encrypt", "--key-file", str(key), "--json")
    assert done.code == 0, done.stderr
    assert done.json["ok"] and done.json["revisions_pulled"] == [f"vm1/{i}" for i in ids]
    assert tree(Path(source)) == before  # the source is only read

    stored = everything(root, "vm1")
    for blocks in (first_blocks(), second_blocks()):
        for data in (b for parts in blocks.values() for b in parts if any(b)):
            frame = zstandard.ZstdCompressor(level=1).compress(data)
            for needle in (data[:32], data[SMALL // 2:SMALL // 2 + 32], frame[len(frame) // 2:len(frame) // 2 + 16]):
                assert needle not in stored
            assert blake3.blake3(data).hexdigest().encode() not in stored  # no plain name is left
    assert b"file:" not in stored  # the sources are sealed inside the manifests

    converted = Repository.open(root, "vm1", keys=_ring(key))
    assert converted.encrypted and converted.chunk_size == SMALL
    old = {r.id: r for r in Repository.open(source, "vm1").revisions()}
    for revision in converted.revisions():
        was = old[revision.id]
        assert (revision.created, revision.parent, revision.protected, revision.tags) == \
            (was.created, was.parent, was.protected, was.tags)
        assert [(d.name, d.size, d.source) for d in revision.disks] == [(d.name, d.size, d.source) for d in was.disks]
        assert revision.trust == "verified"  # the conversion ends with a verify under the key
        assert not set(revision.all_chunks()) & set(was.all_chunks())
    # the random block shared by both disks is one chunk under its keyed name too
    first = converted.load_revision(ids[0])
    assert first.disk("data").chunks[0] == first.disk("root").chunks[1]

    for n, revision_id in enumerate(ids):
        for disk in ("root", "data"):
            out = tmp_path / f"{revision_id}-{disk}.out"
            restored = lifeboat("store", "restore", root, "vm1", revision_id, str(out), "--disk", disk,
                                "--key-file", str(key))
            assert restored.code == 0, restored.stderr
            assert out.read_bytes() == images[n][disk]
    assert lifeboat("store", "verify", root, "vm1", "--key-file", str(key)).code == 0
    assert lifeboat("store", "verify", root, "vm1", "--without-key").code == 0

    # an incremental backup into the converted repository reuses its chunks
    third = second_blocks()
    third["data"][0] = block("random", 11, SMALL)
    images.append(write_disks(tmp_path, third))
    again = lifeboat("store", "backup", root, "vm1", *[f"--disk={d}={s}" for d, s in disks(tmp_path)],
                     "--key-file", str(key), "--json")
    assert again.code == 0, again.stderr
    assert again.json["parent"] == ids[1]
    assert again.json["chunks_new"] == 1 and again.json["chunks_reused"] >= 4
    out = tmp_path / "third.out"
    assert lifeboat("store", "restore", root, "vm1", "latest", str(out), "--disk", "data",
                    "--key-file", str(key)).code == 0
    assert out.read_bytes() == images[2]["data"]


def test_an_interrupted_conversion_continues(tmp_path: Path, root: str, key: Path,
                                             plain: tuple[str, list[str], list[dict[str, bytes]]],
                                             lifeboat) -> None:
    source, ids, images = plain
    assert lifeboat("store", "copy", source, root, "--encrypt", "--key-file", str(key)).code == 0
    # as if the conversion had been stopped: a chunk only the newest revision has and its manifest are not there
    repo = Repository.open(root, "vm1", keys=_ring(key))
    newest = repo.load_revision(ids[1])
    lost = next(c for c in newest.all_chunks() if c not in set(repo.load_revision(ids[0]).all_chunks()))
    delete_object(root, repo.chunk_key(lost))
    delete_object(root, f"vm1/revisions/{ids[1]}.json")
    done = lifeboat("store", "copy", source, root, "--encrypt", "--key-file", str(key), "--json")
    assert done.code == 0, done.stderr
    assert done.json["revisions_pulled"] == [f"vm1/{ids[1]}"]
    assert done.json["chunks_fetched"] == 1  # only the lost one is sealed and written again
    assert repo.has_chunk(lost)  # the same keyed name: the mapping is deterministic under the name key
    out = tmp_path / "root.out"
    assert lifeboat("store", "restore", root, "vm1", "latest", str(out), "--disk", "root",
                    "--key-file", str(key)).code == 0
    assert out.read_bytes() == images[1]["root"]
    again = lifeboat("store", "copy", source, root, "--encrypt", "--key-file", str(key), "--json")
    assert again.code == 0 and again.json["revisions_pulled"] == [] and again.json["chunks_fetched"] == 0


def test_refusals_are_one_line_exit_2_and_write_nothing(tmp_path: Path, root: str, key: Path,
                                                         plain: tuple[str, list[str], list[dict[str, bytes]]],
                                                         lifeboat) -> None:
    source, _, _ = plain
    no_key = lifeboat("store", "copy", source, root, "--encrypt", env={"LIFEBOAT_KEY_FILE": ""})
    assert no_key.code == 2 and "--key-file" in one_line(no_key)
    assert not Repository.open(source, "vm1").encrypted and not open_store(root).exists("vm1/repository.json")

    sealed = str(tmp_path / "sealed")
    backup(sealed, "vm1", disks(tmp_path), chunk_size=SMALL, keys=_ring(key))
    twice = lifeboat("store", "copy", sealed, root, "--encrypt", "--key-file", str(key))
    assert twice.code == 2 and "already encrypted" in one_line(twice)
    assert not open_store(root).exists("vm1/repository.json")

    # a destination holding another repository of vm1 (a plain copy, or the conversion of another source)
    assert lifeboat("store", "copy", sealed, root).code == 0
    other = str(tmp_path / "other")
    backup(other, "vm1", disks(tmp_path), chunk_size=SMALL, keys=None)
    held = everything(root, "vm1")
    for src in (source, other):
        refused = lifeboat("store", "copy", src, root, "--encrypt", "--key-file", str(key))
        assert refused.code == 2 and "not a conversion" in one_line(refused)
    assert everything(root, "vm1") == held
    fresh = str(tmp_path / "fresh")
    assert lifeboat("store", "copy", source, fresh, "--encrypt", "--key-file", str(key)).code == 0
    refused = lifeboat("store", "copy", other, fresh, "--encrypt", "--key-file", str(key))
    assert refused.code == 2 and "not a conversion" in one_line(refused)


def test_a_repository_an_older_lifeboat_wrote_is_converted(tmp_path: Path, key: Path, lifeboat) -> None:
    """Version 1 manifests (one implicit disk, written before issue 14) are sealed as they are."""
    source, dst = tmp_path / "old", str(tmp_path / "new")
    shutil.copytree(FIXTURE / "root", source)
    done = lifeboat("store", "copy", str(source), dst, "--encrypt", "--key-file", str(key), "--json")
    assert done.code == 0, done.stderr
    assert sorted(done.json["revisions_pulled"]) == [f"oldvm/{FIRST}", f"oldvm/{SECOND}"]
    out = tmp_path / "second.img"
    assert lifeboat("store", "restore", dst, "oldvm", SECOND, str(out), "--key-file", str(key)).code == 0
    assert out.read_bytes() == (FIXTURE / "second.img").read_bytes()
    assert Repository.open(dst, "oldvm", keys=_ring(key)).encrypted


Plain = tuple[str, list[str], list[dict[str, bytes]]]


def test_damage_at_the_source_is_not_converted(tmp_path: Path, key: Path, plain: Plain, lifeboat) -> None:
    source, ids, _ = plain
    repo = Repository.open(source, "vm1")
    damaged = next(c for c in repo.load_revision(ids[1]).all_chunks()
                   if c not in set(repo.load_revision(ids[0]).all_chunks()))
    flip_object_bit(source, repo.chunk_key(damaged))
    dst = str(tmp_path / "dst")
    done = lifeboat("store", "copy", source, dst, "--encrypt", "--key-file", str(key), "--json")
    assert done.code == 1 and damaged in done.json["chunks_failed"]
    assert done.json["revisions_incomplete"] == [f"vm1/{ids[1]}"] and done.json["revisions_pulled"] == [f"vm1/{ids[0]}"]
    assert [r.id for r in Repository.open(dst, "vm1", keys=_ring(key)).revisions()] == [ids[0]]


def test_the_engine_api_converts_with_the_ring_it_is_given(tmp_path: Path, key: Path, plain: Plain) -> None:
    """No default keyring (as in a process that did not set one): the ring passed opens, seals and verifies."""
    source, ids, _ = plain
    unclean: list[str] = []
    with using(None):
        result = convert(source, str(tmp_path / "dst"), _ring(key), unclean=unclean)
    assert result.ok and not unclean and result.revisions_pulled == [f"vm1/{i}" for i in ids]
    with pytest.raises(ConvertNeedsKey):
        convert(source, str(tmp_path / "dst2"), None)


def _ring(key: Path) -> KeyRing:
    return KeyRing.from_file(str(key))
