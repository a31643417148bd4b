"""`lifeboat store ls` / `get`: files inside a backed-up GPT + ext4 image, read through the repository."""

from __future__ import annotations

import tarfile
import uuid
from pathlib import Path

import pytest

from storage.backend import is_object_root
from storage.browse import open_revision_disk
from storage.copy import copy as copy_root
from storage.files import open_disk
from storage.repository import Repository
from storage.stream import RevisionStream

from .. import images
from .diskdata import flip_object_bit


@pytest.fixture(scope="module", params=["local", pytest.param("rados", marks=pytest.mark.ceph),
                                        pytest.param("s3", marks=pytest.mark.ceph)])
def backed_up(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[images.TreeFile]]:
    """One backup of a GPT + ext4 image, in a folder, a RADOS pool and an S3 bucket (tests/fixtures/store.py)."""
    if not images.have("sfdisk", "mkfs.ext4"):
        pytest.skip("sfdisk and mkfs.ext4 are needed (Debian packages fdisk, e2fsprogs)")
    work = tmp_path_factory.mktemp("browse")
    src = work / "tree"
    src.mkdir()
    files = images.make_tree(src, big_size=10 * 1024 * 1024)
    image = images.gpt_ext4(work / "disk.img", src, size=64 * 1024 * 1024)
    root = str(work / "root")
    if request.param == "rados":
        cluster = request.getfixturevalue("backup_cluster")
        root = f"rados:{cluster.pool}/browse-{uuid.uuid4().hex[:8]}"
    if request.param == "s3":
        request.getfixturevalue("backup_cluster")
        request.getfixturevalue("s3_endpoint")
        root = f"s3://backups/browse-{uuid.uuid4().hex[:8]}"
    from storage.backup import backup

    backup(root, "vm1", f"file:{image}")
    return root, files


def scratch_copy(root: str, tmp_path: Path) -> str:
    """A copy of the root of the same backend, to damage (``lifeboat store copy``'s engine)."""
    name = f"scratch-{uuid.uuid4().hex[:8]}"
    target = f"{root.rsplit('/', 1)[0]}/{name}" if is_object_root(root) else str(tmp_path / "root")
    copy_root(root, target)
    return target


@pytest.mark.slow
def test_ls_shows_partitions_and_entries(backed_up, lifeboat) -> None:
    root, _ = backed_up
    top = lifeboat("store", "ls", str(root), "vm1", "latest", "--json")
    assert top.code == 0, top.stderr
    assert [e["path"] for e in top.json["entries"]] == ["/p1"]
    listing = lifeboat("store", "ls", str(root), "vm1", "latest", "/p1/etc", "--json")
    entries = {e["name"]: e for e in listing.json["entries"]}
    assert entries["hosts"]["size"] == len(b"127.0.0.1 localhost\n")
    assert entries["hosts"]["mode"] & 0o777 == 0o600 and entries["hosts"]["type"] == "file"
    link = lifeboat("store", "ls", str(root), "vm1", "latest", "/p1/link-to-readme", "--json")
    assert link.json["entries"][0]["target"] == "README.txt"


@pytest.mark.slow
def test_get_a_file_and_a_directory_as_tar(backed_up, lifeboat, tmp_path: Path) -> None:
    root, files = backed_up
    big = next(f for f in files if f.path == "data/big.bin")
    out = tmp_path / "big.bin"
    got = lifeboat("store", "get", str(root), "vm1", "latest", "/p1/data/big.bin", str(out))
    assert got.code == 0, got.stderr
    assert out.read_bytes() == big.data
    tar_path = tmp_path / "etc.tar"
    assert lifeboat("store", "get", str(root), "vm1", "latest", "/p1/etc", str(tar_path)).code == 0
    with tarfile.open(tar_path) as archive:
        member = archive.getmember("etc/hosts")
        assert member.mode & 0o777 == 0o600
        assert archive.extractfile(member).read() == b"127.0.0.1 localhost\n"  # type: ignore[union-attr]
    again = lifeboat("store", "get", str(root), "vm1", "latest", "/p1/etc", str(tar_path))
    assert again.code == 2 and "--force" in again.stderr


def test_reading_a_file_fetches_only_its_chunks(backed_up) -> None:
    root, _ = backed_up
    repo = Repository.open(str(root), "vm1")
    revision = repo.resolve("latest")
    stored = sum(1 for c in revision.chunks if c)
    stream = RevisionStream(repo, revision)
    disk = open_disk(stream)
    assert {e.name for e in disk.list_dir("/p1/etc")} >= {"hosts", "script.sh"}
    with disk.open_file("/p1/etc/hosts") as handle:
        assert handle.read() == b"127.0.0.1 localhost\n"
    assert 0 < stream.chunks_fetched < stored / 2


@pytest.mark.parametrize("path", ["/p1/../../etc/passwd", "/p1/nope", "/p9"])
def test_bad_paths_are_one_line_errors(backed_up, lifeboat, path: str) -> None:
    root, _ = backed_up
    result = lifeboat("store", "ls", str(root), "vm1", "latest", path)
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1


def damage_chunk_where(root: str, wanted) -> tuple[int, list[tuple[str, list[tuple[int, int]]]]]:
    """Flip a bit in the first chunk whose file map satisfies ``wanted``; return its index and map."""
    repo = Repository.open(str(root), "vm1")
    revision = repo.resolve("latest")
    for index, chunk in enumerate(revision.chunks):
        start, end = revision.chunk_range(index)
        with open_revision_disk(str(root), "vm1", "latest") as disk:
            hits = disk.files_in_ranges([(start, end)])
        if chunk and wanted(hits, start, end):
            flip_object_bit(root, repo.chunk_key(chunk))
            return index, hits
    raise AssertionError("no chunk matched")


@pytest.mark.slow
def test_a_file_on_a_damaged_chunk_is_refused_with_its_ranges(backed_up, lifeboat, tmp_path: Path) -> None:
    root, files = backed_up
    copy = scratch_copy(root, tmp_path)
    big = next(f for f in files if f.path == "data/big.bin")

    def only_big_data(hits, start, end) -> bool:  # the chunk is file data from end to end, no metadata
        return [(path, sum(e - s for s, e in spans)) for path, spans in hits] == [("/p1/data/big.bin", end - start)]

    damage_chunk_where(copy, only_big_data)
    out = tmp_path / "b"
    refused = lifeboat("store", "get", str(copy), "vm1", "latest", "/p1/data/big.bin", str(out))
    assert refused.code == 2 and "damaged" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not out.exists()
    forced = lifeboat("store", "get", str(copy), "vm1", "latest", "/p1/data/big.bin", str(out), "--allow-damaged")
    assert forced.code == 0, forced.stderr
    data = out.read_bytes()
    assert len(data) == len(big.data) and data != big.data
    hosts = lifeboat("store", "get", str(copy), "vm1", "latest", "/p1/etc/hosts", "-")
    assert hosts.code == 0 and hosts.stdout == "127.0.0.1 localhost\n"  # undamaged files still come back


def test_damaged_metadata_is_named_as_damage(backed_up, lifeboat, tmp_path: Path) -> None:
    """Chunk 0 holds the partition table and the superblock: its loss must read as damage, not as 'empty'."""
    root, _ = backed_up
    copy = scratch_copy(root, tmp_path)
    repo = Repository.open(str(copy), "vm1")
    first = repo.resolve("latest").chunks[0]
    assert first is not None
    flip_object_bit(copy, repo.chunk_key(first))
    listing = lifeboat("store", "ls", str(copy), "vm1", "latest", "/p1/etc")
    assert listing.code == 2, listing.stdout
    assert "damaged backup data" in listing.stderr and "0-4194304" in listing.stderr
    assert len(listing.stderr.strip().splitlines()) == 1
