"""Encrypted repositories (issue 17): what is on disk reveals nothing, the key is needed and checked, damage is
found with and without the key, keys rotate without losing old points, and plain repositories keep working.

Every command runs as the real ``lifeboat`` process; the key files are made by ``lifeboat keys create``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import blake3
import pytest
import zstandard

from storage import keys as keymod
from storage.crypto import CHUNK_MAGIC, HEADER_BYTES
from storage.repository import Repository
from tests import images
from tests.serving import ServeProcess, http_image, qemu

from ..conftest import LIFEBOAT, Run
from .diskdata import CHUNK, block, chunk_files, flip_bit, write_image
from .test_formats import FIXTURE, SECOND
from .test_hostile_files import one_line

SMALL = 64 * 1024  # chunk size of these tests' repositories: several chunks per image, quick to run


def run(*args: str) -> Run:
    done = subprocess.run([LIFEBOAT, *args], capture_output=True, text=True, timeout=120)
    return Run(done.returncode, done.stdout, done.stderr)


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def made_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two key files made once per module by the real ``lifeboat keys create`` (a process start each, which
    is what these tests' time went to); every test gets its own copies, which it may rotate or rewrite."""
    folder = tmp_path_factory.mktemp("keys")
    path = folder / "acme.key"
    made = run("keys", "create", str(path), "--organisation", "acme", "--json")
    assert made.code == 0, made.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    other = folder / "other.key"
    assert run("keys", "create", str(other)).code == 0
    return path, other


@pytest.fixture
def key(tmp_path: Path, made_keys: tuple[Path, Path]) -> Path:
    path = Path(shutil.copy(made_keys[0], tmp_path / "acme.key"))
    assert path.stat().st_mode & 0o777 == 0o600
    return path


@pytest.fixture
def other_key(tmp_path: Path, made_keys: tuple[Path, Path]) -> Path:
    return Path(shutil.copy(made_keys[1], tmp_path / "other.key"))


def blocks() -> list[bytes]:
    """Text (compressible: zstd alone would leave it recognisable), random, zero and a text block again."""
    return [block("text", 1, SMALL), block("random", 2, SMALL), block("zero", 0, SMALL), block("text", 3, SMALL),
            block("text", 1, SMALL)]


@pytest.fixture
def encrypted(tmp_path: Path, root: Path, key: Path) -> tuple[Path, bytes, str]:
    """An encrypted repository of VM vm1 with one revision; the image, its bytes and the revision id."""
    image = tmp_path / "disk.img"
    data = write_image(image, blocks())
    done = backup(root, image, key)
    return image, data, done.json["revision"]


def backup(root: Path, image: Path, key: Path | None, *extra: str) -> Run:
    """``store backup`` in 64 KiB chunks (the engine's chunk size for tests is set by the Python API only, so
    the first backup of each repository goes through it and later ones through the CLI)."""
    if not (root / "vm1" / "repository.json").exists():
        from storage.backup import backup as engine_backup

        ring = keymod.KeyRing.from_file(str(key)) if key else None
        revision = engine_backup(str(root), "vm1", f"file:{image}", chunk_size=SMALL, keys=ring)
        return Run(0, json.dumps({"revision": revision.id, **revision.stats}), "")
    args = ["store", "backup", str(root), "vm1", f"file:{image}", "--json", *extra]
    done = run(*args, *(["--key-file", str(key)] if key else []))
    assert done.code == 0, done.stderr
    return done


def test_no_plain_block_name_or_source_is_in_the_repository(root: Path, encrypted: tuple[Path, bytes, str],
                                                             key: Path) -> None:
    image, _, _ = encrypted
    files = tree(root / "vm1")
    everything = b"".join(files.values())
    for data in blocks():
        if not any(data):
            continue
        frame = zstandard.ZstdCompressor(level=1).compress(data)
        for needle in (data[:32], data[SMALL // 2:SMALL // 2 + 32], frame[len(frame) // 2:len(frame) // 2 + 16]):
            assert needle not in everything
        assert blake3.blake3(data).hexdigest().encode() not in everything  # names are keyed
    assert str(image).encode() not in everything and b"file:" not in everything  # the source is sealed too
    stored = chunk_files(root / "vm1")
    assert len(stored) == 3  # text 1 twice is stored once: dedup holds under keyed names
    assert all(p.read_bytes().startswith(CHUNK_MAGIC) for p in stored)
    config = json.loads(files["repository.json"])
    assert config["version"] == 2 and config["hash"] == "blake3-keyed"
    assert config["encryption"]["cipher"] == "aes-256-gcm" and len(config["encryption"]["data_keys"]) == 1


def test_it_restores_byte_for_byte_and_an_incremental_reuses_chunks(tmp_path: Path, root: Path, key: Path,
                                                                     encrypted: tuple[Path, bytes, str]) -> None:
    image, data, first = encrypted
    changed = blocks()
    changed[1] = block("random", 9, SMALL)
    new_data = write_image(image, changed)
    second = backup(root, image, key)
    assert second.json["chunks_new"] == 1 and second.json["chunks_reused"] == 3
    for revision, expected in ((first, data), (second.json["revision"], new_data)):
        out = tmp_path / f"{revision}.img"
        restored = run("store", "restore", str(root), "vm1", revision, str(out), "--key-file", str(key))
        assert restored.code == 0, restored.stderr
        assert out.read_bytes() == expected
    listed = run("store", "list", str(root), "vm1", "--json", "--key-file", str(key))
    assert listed.code == 0 and [r["size"] for r in listed.json["revisions"]] == [len(data), len(new_data)]
    assert run("store", "verify", str(root), "vm1", "--key-file", str(key)).code == 0


@pytest.mark.parametrize("command", [
    ["list", "{root}", "vm1"],  # the fast tier: one command; the whole suite: every command (two processes each)
    *(pytest.param(command, marks=pytest.mark.slow) for command in (
        ["restore", "{root}", "vm1", "latest", "{out}"], ["verify", "{root}", "vm1"],
        ["forget", "{root}", "vm1", "latest"], ["gc", "{root}", "vm1"], ["protect", "{root}", "vm1", "latest"],
        ["backup", "{root}", "vm1", "file:{image}"], ["serve", "{root}", "vm1", "latest"],
        ["ls", "{root}", "vm1", "latest"])),
])
def test_without_the_key_or_with_a_wrong_one_it_is_one_line_exit_2_and_nothing_written(
        tmp_path: Path, root: Path, encrypted: tuple[Path, bytes, str], other_key: Path, key: Path,
        command: list[str]) -> None:
    image, _, _ = encrypted
    out = tmp_path / "out.img"
    args = [a.format(root=root, out=out, image=image) for a in command]
    before = tree(root)
    missing = run("store", *args)
    assert missing.code == 2 and "encrypted" in one_line(missing) and "--key-file" in missing.stderr
    wrong = run("store", *args, "--key-file", str(other_key))
    assert wrong.code == 2 and "cannot open" in one_line(wrong), wrong.stderr
    assert tree(root) == before and not out.exists()


@pytest.mark.slow
def test_a_changed_key_with_the_same_id_and_a_bad_key_file_are_refused(tmp_path: Path, root: Path, key: Path,
                                                                       encrypted: tuple[Path, bytes, str]) -> None:
    doc = json.loads(key.read_text())
    doc["keys"][0]["key"] = keymod.b64(bytes(32))
    forged = tmp_path / "forged.key"
    forged.write_text(json.dumps(doc))
    refused = run("store", "list", str(root), "vm1", "--key-file", str(forged))
    assert refused.code == 2 and "cannot open" in one_line(refused)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("{not json")
    bad = run("store", "list", str(root), "vm1", "--key-file", str(garbage))
    assert bad.code == 2 and "key file" in one_line(bad)
    nowhere = run("store", "list", str(root), "vm1", "--key-file", str(tmp_path / "nope.key"))
    assert nowhere.code == 2 and "key file" in one_line(nowhere)


@pytest.mark.slow
def test_a_flipped_bit_is_found_with_and_without_the_key(tmp_path: Path, root: Path, key: Path,
                                                         encrypted: tuple[Path, bytes, str]) -> None:
    _, data, revision = encrypted
    assert run("store", "verify", str(root), "vm1", "--without-key").code == 0
    for mode in (["--key-file", str(key)], ["--without-key"]):
        copy = tmp_path / f"copy{len(mode)}{mode[0]}"
        shutil.copytree(root, copy)
        victim = chunk_files(copy / "vm1")[0]
        flip_bit(victim)
        found = run("store", "verify", str(copy), "vm1", "--json", *mode)
        assert found.code == 1, found.stderr
        assert found.json["damaged_chunks"] == [victim.name] and found.json["quarantined"] == [victim.name]
        assert found.json["distrusted_revisions"] == [revision]
        assert found.json["contents_checked"] is (mode[0] == "--key-file")
    # a flip in the outer hash alone (the sealed body intact) is damage too, found by both
    for mode in (["--key-file", str(key)], ["--without-key"]):
        copy = tmp_path / f"tail{mode[0]}"
        shutil.copytree(root, copy)
        victim = chunk_files(copy / "vm1")[0]
        flip_bit(victim, victim.stat().st_size - 1)
        assert run("store", "verify", str(copy), "vm1", *mode).code == 1
    # a missing chunk is found without the key from the names the manifests show outside
    copy = tmp_path / "missing"
    shutil.copytree(root, copy)
    gone = chunk_files(copy / "vm1")[0]
    gone.unlink()
    found = run("store", "verify", str(copy), "vm1", "--json", "--without-key")
    assert found.code == 1 and found.json["missing_chunks"] == [gone.name]
    # and a restore with the key names the damaged range, zero-filled
    out = tmp_path / "restored.img"
    restored = run("store", "restore", str(copy), "vm1", revision, str(out), "--json", "--key-file", str(key))
    assert restored.code == 1 and restored.json["damaged"]
    assert len(out.read_bytes()) == len(data)


def test_a_manifest_cannot_be_moved_or_its_outside_changed(root: Path, key: Path,
                                                            encrypted: tuple[Path, bytes, str]) -> None:
    _, _, revision = encrypted
    path = root / "vm1" / "revisions" / f"{revision}.json"
    doc = json.loads(path.read_text())
    assert set(doc) >= {"sealed", "chunks", "trust"} and "disks" not in doc and "source" not in doc
    doc["chunks"] = doc["chunks"][1:]
    path.chmod(0o644)
    path.write_text(json.dumps(doc))
    listed = run("store", "list", str(root), "vm1", "--json", "--key-file", str(key))
    assert listed.code == 0 and revision in listed.json["unreadable"]
    assert "does not decrypt" in listed.json["unreadable"][revision]


@pytest.mark.slow
def test_rotation_keeps_old_points_and_rewrap_touches_no_chunk(tmp_path: Path, root: Path, key: Path,
                                                                 encrypted: tuple[Path, bytes, str]) -> None:
    image, data, first = encrypted
    rotated = run("keys", "rotate", str(root), "vm1", "--key-file", str(key), "--json")
    assert rotated.code == 0, rotated.stderr
    assert len(rotated.json["data_keys"]) == 2
    old_chunks = {p.name: p.read_bytes() for p in chunk_files(root / "vm1")}
    changed = blocks()
    changed[3] = block("text", 7, SMALL)
    new_data = write_image(image, changed)
    second = backup(root, image, key).json["revision"]
    new_chunks = {p.name: p.read_bytes() for p in chunk_files(root / "vm1")} .items() - old_chunks.items()
    (name, stored), = new_chunks
    newest = bytes.fromhex(rotated.json["data_keys"][0][2:])
    assert stored[len(CHUNK_MAGIC):HEADER_BYTES - 12] == newest  # new data under the new key
    assert all(v[len(CHUNK_MAGIC):HEADER_BYTES - 12] != newest for v in old_chunks.values())
    # a new organisation key: the repository's keys rewrapped, no chunk touched, the old file refused
    new_key = tmp_path / "acme-2.key"
    assert run("keys", "create", str(new_key), "--from", str(key)).code == 0
    before = {p.name: p.read_bytes() for p in chunk_files(root / "vm1")}
    rewrapped = run("keys", "rewrap", str(root), "vm1", "--key-file", str(key), "--new-key-file", str(new_key),
                    "--json")
    assert rewrapped.code == 0, rewrapped.stderr
    assert rewrapped.json["wrapped_by"] == [json.loads(new_key.read_text())["keys"][0]["id"]]
    assert {p.name: p.read_bytes() for p in chunk_files(root / "vm1")} == before
    assert run("store", "list", str(root), "vm1", "--key-file", str(key)).code == 2
    for revision, expected in ((first, data), (second, new_data)):
        out = tmp_path / f"{revision}.img"
        assert run("store", "restore", str(root), "vm1", revision, str(out), "--key-file", str(new_key)).code == 0
        assert out.read_bytes() == expected
    shown = run("keys", "show", str(root), "vm1", "--json")
    assert shown.code == 0 and shown.json["data_keys"] == rotated.json["data_keys"]


def test_an_old_plain_repository_still_restores_and_stays_plain(tmp_path: Path, key: Path) -> None:
    root = tmp_path / "old"
    shutil.copytree(FIXTURE / "root", root)
    out = tmp_path / "second.img"
    restored = run("store", "restore", str(root), "oldvm", SECOND, str(out), "--key-file", str(key))
    assert restored.code == 0, restored.stderr
    assert out.read_bytes() == (FIXTURE / "second.img").read_bytes()
    image = tmp_path / "disk.img"
    image.write_bytes((FIXTURE / "second.img").read_bytes())
    done = run("store", "backup", str(root), "oldvm", f"file:{image}", "--key-file", str(key), "--json")
    assert done.code == 0 and "not encrypted" in done.stderr
    assert json.loads((root / "oldvm" / "repository.json").read_text())["version"] == 1
    assert not Repository.open(str(root), "oldvm").encrypted


def test_plain_repositories_are_written_exactly_as_before(tmp_path: Path, root: Path) -> None:
    image = tmp_path / "disk.img"
    data = write_image(image, [block("text", 1, CHUNK // 64)])
    done = run("store", "backup", str(root), "vm1", f"file:{image}", "--json")
    assert done.code == 0
    config = json.loads((root / "vm1" / "repository.json").read_text())
    assert config["version"] == 1 and config["hash"] == "blake3" and "encryption" not in config
    (stored,) = chunk_files(root / "vm1")
    assert stored.name == blake3.blake3(data).hexdigest()
    assert zstandard.ZstdDecompressor().decompress(stored.read_bytes()) == data


@pytest.mark.slow
@pytest.mark.skipif(not images.have("sfdisk", "mkfs.ext4", "qemu-img", "nbdkit"),
                    reason="needs sfdisk, mkfs.ext4, qemu-utils and nbdkit (make sysdeps)")
def test_files_and_serving_work_on_an_encrypted_repository(tmp_path: Path, root: Path, key: Path) -> None:
    src = tmp_path / "tree"
    src.mkdir()
    files = images.make_tree(src, big_size=2 * 1024 * 1024)
    image = images.gpt_ext4(tmp_path / "disk.img", src, size=32 * 1024 * 1024)
    from storage.backup import backup as engine_backup

    engine_backup(str(root), "vm1", f"file:{image}", keys=keymod.KeyRing.from_file(str(key)))
    listing = run("store", "ls", str(root), "vm1", "latest", "/p1/etc", "--json", "--key-file", str(key))
    assert listing.code == 0, listing.stderr
    assert "hosts" in {e["name"] for e in listing.json["entries"]}
    big = next(f for f in files if f.path == "data/big.bin")
    out = tmp_path / "big.bin"
    got = run("store", "get", str(root), "vm1", "latest", "/p1/data/big.bin", str(out), "--key-file", str(key))
    assert got.code == 0 and out.read_bytes() == big.data
    # served over HTTP (in the CLI's process) and NBD (nbdkit's plugin process finds the key by LIFEBOAT_KEY_FILE)
    with ServeProcess(str(root), "vm1", "latest", "--http", "--nbd", "--key-file", str(key)) as served:
        for source in (http_image(served.urls["http"]), served.urls["nbd"]):
            compared = qemu("qemu-img", "compare", "-f", "raw", str(image), source)
            assert compared.returncode == 0 and "identical" in compared.stdout, compared.stderr
        assert served.stop()["damaged"] == []


@pytest.mark.parametrize(("change", "words"), [
    (lambda c: c.pop("encryption"), "only that, is encrypted"),
    (lambda c: c.update(version=1, hash="blake3"), "only that, is encrypted"),
    (lambda c: c["encryption"].update(cipher="rot13"), "unsupported cipher"),
    (lambda c: c["encryption"]["data_keys"].clear(), "at least one key"),
    (lambda c: c["encryption"]["data_keys"][0].update(id="../x"), "invalid or repeated"),
    (lambda c: c["encryption"]["name_key"].update(nonce="AAAA"), "nonce"),
    (lambda c: c.update(version=3), "format version 3"),
])
def test_a_bad_encryption_description_is_one_line(root: Path, key: Path, encrypted: tuple[Path, bytes, str],
                                                  change, words: str) -> None:
    path = root / "vm1" / "repository.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))
    refused = run("store", "list", str(root), "vm1", "--key-file", str(key))
    assert refused.code == 2 and words in one_line(refused), refused.stderr


def test_a_chunk_moved_under_another_name_does_not_open(root: Path, key: Path,
                                                        encrypted: tuple[Path, bytes, str]) -> None:
    """The chunk's name is its associated data: a file copied over another chunk is damage, found by verify."""
    first, second = chunk_files(root / "vm1")[:2]
    second.chmod(0o644)
    second.write_bytes(first.read_bytes())
    # without the key the copy looks intact (its outer hash is its own): only the key can tell
    assert run("store", "verify", str(root), "vm1", "--without-key").code == 0
    found = run("store", "verify", str(root), "vm1", "--json", "--key-file", str(key))
    assert found.code == 1 and found.json["damaged_chunks"] == [second.name]


def test_a_sealed_chunk_opens_as_built_and_not_under_another_name(key: Path) -> None:
    """encode's output (a buffer, as backups write it) decodes as is, by every thread's scratch buffer."""
    from concurrent.futures import ThreadPoolExecutor

    from storage import crypto
    from storage.repository import ChunkDamaged

    ring = keymod.KeyRing.from_file(str(key))
    config = {"chunk_size": SMALL, "encryption": crypto.new_encryption(ring.current, "2026-12-04T00:00:00Z")}
    repo = Repository("/nonexistent", "vm1", config, keys=ring, require_key=True)
    datas = [block("text", seed, SMALL) for seed in range(8)] + [block("random", 1, SMALL)]

    def round_trip(data: bytes) -> bool:
        name = repo.chunk_name(data)
        stored = repo.encode(name, data)
        assert repo.check_stored(name, bytes(stored)) == len(data)
        return repo.decode(name, stored) == data

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(round_trip, datas * 4))
    name = repo.chunk_name(datas[0])
    with pytest.raises(ChunkDamaged, match="does not decrypt"):
        repo.decode(repo.chunk_name(datas[1]), repo.encode(name, datas[0]))


def test_forget_and_gc_work_with_the_key(tmp_path: Path, root: Path, key: Path,
                                         encrypted: tuple[Path, bytes, str]) -> None:
    image, _, first = encrypted
    changed = blocks()
    changed[1] = block("random", 11, SMALL)
    new_data = write_image(image, changed)
    second = backup(root, image, key).json["revision"]
    assert len(chunk_files(root / "vm1")) == 4
    k = ["--key-file", str(key)]
    assert run("store", "forget", str(root), "vm1", first, *k).code == 0
    swept = run("store", "gc", str(root), "vm1", "--grace", "0", "--json", *k)
    assert swept.code == 0 and swept.json["chunks_removed"] == 1, swept.stderr
    out = tmp_path / "second.img"
    assert run("store", "restore", str(root), "vm1", second, str(out), *k).code == 0
    assert out.read_bytes() == new_data
