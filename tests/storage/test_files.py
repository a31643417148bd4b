"""File-level access on real disk images built with sfdisk and mkfs (no mocks, no mounts)."""

from __future__ import annotations

import io
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from storage.errors import StorageError
from storage.files import (
    CorruptFilesystem,
    DamagedFile,
    Disk,
    IsASymlink,
    NoFilesystem,
    NoSuchPath,
    NotADirectory,
    NotAFile,
    PathEscapes,
    SymlinkEscapes,
    SymlinkLoop,
    archive,
    open_disk,
)
from tests import images

Tree = tuple[Path, list[images.TreeFile]]


# ------------------------------------------------------------------------------------ images (session)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files-images")


@pytest.fixture(scope="session")
def tree(image_dir: Path) -> Tree:
    src = image_dir / "tree"
    src.mkdir()
    return src, images.make_tree(src)


@pytest.fixture(scope="session")
def plain_tree(image_dir: Path) -> Tree:
    """The same files without symlinks (FAT, and the second MBR partition)."""
    src = image_dir / "plain"
    src.mkdir()
    return src, images.make_tree(src, symlinks=False)


def _need(*tools: str) -> None:
    if not images.have(*tools):
        pytest.skip(f"needs {', '.join(tools)} (fdisk, e2fsprogs, dosfstools, mtools, xfsprogs, btrfs-progs)")


@pytest.fixture(scope="session")
def gpt_image(image_dir: Path, tree: Tree) -> Path:
    _need("sfdisk", "mkfs.ext4")
    return images.gpt_ext4(image_dir / "gpt.img", tree[0])


@pytest.fixture(scope="session")
def bare_image(image_dir: Path, tree: Tree) -> Path:
    _need("mkfs.ext4")
    return images.bare_ext4(image_dir / "bare.img", tree[0])


@pytest.fixture(scope="session")
def mbr_image(image_dir: Path, tree: Tree, plain_tree: Tree) -> Path:
    _need("sfdisk", "mkfs.ext4")
    return images.mbr_two(image_dir / "mbr.img", tree[0], plain_tree[0])


@pytest.fixture(scope="session")
def fat_image(image_dir: Path, plain_tree: Tree) -> Path:
    _need("sfdisk", "mkfs.vfat", "mcopy")
    pytest.importorskip("dissect.fat")
    return images.mbr_fat(image_dir / "fat.img", plain_tree[0])


@pytest.fixture(scope="session")
def xfs_image(image_dir: Path, tree: Tree) -> Path:
    _need("mkfs.xfs")
    pytest.importorskip("dissect.xfs")
    return images.bare_xfs(image_dir / "xfs.img", tree[0])


@pytest.fixture(scope="session")
def btrfs_image(image_dir: Path, tree: Tree) -> Path:
    _need("mkfs.btrfs")
    pytest.importorskip("dissect.btrfs")
    return images.bare_btrfs(image_dir / "btrfs.img", tree[0])


@pytest.fixture(scope="session")
def ntfs_image(image_dir: Path) -> Path:
    _need("mkntfs")
    pytest.importorskip("dissect.ntfs")
    return images.bare_ntfs(image_dir / "ntfs.img")


@pytest.fixture(scope="session")
def large_image(image_dir: Path) -> tuple[Path, bytes]:
    """A 256 MiB GPT disk (sparse on the host) with a 10 MiB file, for counting the bytes read."""
    _need("sfdisk", "mkfs.ext4")
    src = image_dir / "large"
    src.mkdir()
    big = next(f for f in images.make_tree(src, big_size=10 * images.MIB) if f.path == "data/big.bin")
    return images.gpt_ext4(image_dir / "large.img", src, size=256 * images.MIB), big.data


@pytest.fixture
def opened() -> Iterator[list[BinaryIO]]:
    handles: list[BinaryIO] = []
    yield handles
    for fh in handles:
        fh.close()


@pytest.fixture
def disk_of(opened: list[BinaryIO]):  # type: ignore[no-untyped-def]
    def open_image(path: Path, **options: object) -> Disk:
        fh = open(path, "rb")
        opened.append(fh)
        return open_disk(fh, **options)  # type: ignore[arg-type]

    return open_image


def _file(tree: Tree, path: str) -> images.TreeFile:
    return next(f for f in tree[1] if f.path == path)


# ------------------------------------------------------------------------------------ listing and stat


def test_root_lists_partitions(gpt_image: Path, disk_of) -> None:
    disk = disk_of(gpt_image)
    (p1,) = disk.list_dir("/")
    assert (p1.name, p1.path, p1.type) == ("p1", "/p1", "dir")
    assert p1.size == disk.partitions[0].size > 60 * images.MIB
    assert disk.partitions[0].offset == images.PART_OFFSET


def test_listing_has_metadata(gpt_image: Path, tree: Tree, disk_of) -> None:
    disk = disk_of(gpt_image)
    entries = {e.name: e for e in disk.list_dir("/p1")}
    assert {"README.txt", "a", "data", "etc", "empty", "link-to-readme", "dirlink", "lost+found"} <= set(
        entries
    )
    readme = entries["README.txt"]
    assert readme.path == "/p1/README.txt"
    assert (readme.type, readme.size, readme.mode) == ("file", 20, stat.S_IFREG | 0o644)
    assert (readme.uid, readme.gid) == images.TREE_OWNER
    assert readme.mtime == images.MTIME
    assert entries["etc"].type == "dir" and stat.S_IMODE(entries["etc"].mode) == 0o750
    assert entries["dirlink"].type == "symlink" and entries["dirlink"].target == "a/b"
    assert entries["link-to-readme"].target == "README.txt"
    assert entries["README.txt"].target is None


def test_nested_listing_and_stat(gpt_image: Path, tree: Tree, disk_of) -> None:
    disk = disk_of(gpt_image)
    deep = _file(tree, "a/b/c/deep.txt")
    (entry,) = disk.list_dir("/p1/a/b/c")
    assert (entry.name, entry.path, entry.size, stat.S_IMODE(entry.mode)) == (
        "deep.txt",
        "/p1/a/b/c/deep.txt",
        len(deep.data),
        0o640,
    )
    assert entry.mtime == deep.mtime
    assert disk.stat("/p1/a/b/c/deep.txt") == entry
    assert disk.stat("p1//a/./b/c/../c/deep.txt") == entry
    assert disk.stat("/p1/a/..").path == "/p1"
    assert disk.stat("/").type == "dir"


def test_bare_filesystem_is_p1(bare_image: Path, disk_of) -> None:
    disk = disk_of(bare_image)
    assert [e.name for e in disk.list_dir("/")] == ["p1"]
    assert disk.partitions[0].offset == 0
    assert disk.open_file("/p1/etc/hosts").read() == b"127.0.0.1 localhost\n"


def test_mbr_two_partitions(mbr_image: Path, plain_tree: Tree, disk_of) -> None:
    disk = disk_of(mbr_image)
    assert [(p.name, p.offset) for p in disk.partitions] == [("p1", images.MIB), ("p2", 32 * images.MIB)]
    assert "dirlink" in {e.name for e in disk.list_dir("/p1")}
    assert "dirlink" not in {e.name for e in disk.list_dir("/p2")}
    assert disk.open_file("/p2/data/big.bin").read() == _file(plain_tree, "data/big.bin").data


def test_entry_json(gpt_image: Path, disk_of) -> None:
    data = disk_of(gpt_image).stat("/p1/link-to-readme").to_json()
    assert (
        data["type"] == "symlink" and data["target"] == "README.txt" and data["path"] == "/p1/link-to-readme"
    )


# ------------------------------------------------------------------------------------ file data


def test_open_file_is_byte_identical(gpt_image: Path, tree: Tree, disk_of) -> None:
    disk = disk_of(gpt_image)
    for f in tree[1]:
        with disk.open_file("/p1/" + f.path) as stream:
            assert stream.read() == f.data, f.path
    big = _file(tree, "data/big.bin").data
    with disk.open_file("/p1/data/big.bin") as stream:
        stream.seek(1_000_003)
        assert stream.read(70_000) == big[1_000_003:1_070_003]
        assert stream.tell() == 1_070_003


def test_open_file_refuses_non_files(gpt_image: Path, disk_of) -> None:
    disk = disk_of(gpt_image)
    with pytest.raises(NotAFile, match="/p1/etc.*directory"):
        disk.open_file("/p1/etc")
    with pytest.raises(NotAFile):
        disk.open_file("/p1")
    with pytest.raises(IsASymlink, match="README.txt"):
        disk.open_file("/p1/link-to-readme")


# ------------------------------------------------------------------------------------ symlinks, paths


def test_follow_symlinks_inside_the_filesystem(gpt_image: Path, disk_of) -> None:
    disk = disk_of(gpt_image)
    assert disk.open_file("/p1/link-to-readme", follow_symlinks=True).read() == b"Lifeboat test image\n"
    assert disk.open_file("/p1/a/up", follow_symlinks=True).read() == b"127.0.0.1 localhost\n"
    assert disk.stat("/p1/abs-hosts", follow_symlinks=True).path == "/p1/etc/hosts"  # absolute: fs root
    assert [e.name for e in disk.list_dir("/p1/dirlink", follow_symlinks=True)] == ["c"]
    assert disk.stat("/p1/dirlink/c/deep.txt", follow_symlinks=True).path == "/p1/a/b/c/deep.txt"


def test_symlinks_are_not_followed_unless_asked(gpt_image: Path, disk_of) -> None:
    disk = disk_of(gpt_image)
    assert disk.stat("/p1/dirlink").type == "symlink"
    with pytest.raises(IsASymlink, match="/p1/dirlink"):
        disk.list_dir("/p1/dirlink/c")


def test_dotdot_cannot_leave_the_filesystem(gpt_image: Path, disk_of) -> None:
    disk = disk_of(gpt_image)
    for path in ("/p1/..", "/p1/a/../../etc", "/p1/a/b/../../../../p1", "/..", "../p1"):
        with pytest.raises(PathEscapes):
            disk.stat(path)


def test_symlink_escape_is_refused(gpt_image: Path, disk_of) -> None:
    disk = disk_of(gpt_image)
    with pytest.raises(SymlinkEscapes, match="/p1/escape") as caught:
        disk.open_file("/p1/escape", follow_symlinks=True)
    assert caught.value.exit_code == 2
    assert disk.stat("/p1/escape").target == "../../../../etc/passwd"  # lstat is fine


def test_symlink_loop_is_refused(gpt_image: Path, disk_of) -> None:
    disk = disk_of(gpt_image)
    for path in ("/p1/loop1", "/p1/a/self", "/p1/loop2/x"):
        with pytest.raises(SymlinkLoop, match="too many levels"):
            disk.stat(path, follow_symlinks=True)


def test_missing_paths(gpt_image: Path, disk_of) -> None:
    disk = disk_of(gpt_image)
    with pytest.raises(NoSuchPath, match="no such file or directory: /p1/etc/nope"):
        disk.stat("/p1/etc/nope")
    with pytest.raises(NoSuchPath):
        disk.list_dir("/p7")
    with pytest.raises(NotADirectory):
        disk.list_dir("/p1/README.txt")
    with pytest.raises(NotADirectory):
        disk.stat("/p1/README.txt/x")


# ------------------------------------------------------------------------------------ bad disks


def test_random_bytes_are_not_a_disk(tmp_path: Path, disk_of) -> None:
    with pytest.raises(NoFilesystem) as caught:
        disk_of(images.random_disk(tmp_path / "random.img"))
    assert isinstance(caught.value, StorageError) and caught.value.exit_code == 2
    assert "no readable partition table or filesystem" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_corrupt_filesystem(tmp_path: Path, bare_image: Path, disk_of) -> None:
    """The ext magic survives but the group descriptors are garbage: one clear error, no traceback."""
    broken = tmp_path / "broken.img"
    data = bytearray(bare_image.read_bytes()[: 8 * images.MIB])
    data[4096:8192] = images.random_disk(tmp_path / "noise", 4096).read_bytes()
    broken.write_bytes(bytes(data))
    disk = disk_of(broken)
    assert disk.list_dir("/")[0].type == "other"
    with pytest.raises(CorruptFilesystem, match="filesystem on partition p1 is damaged") as caught:
        disk.list_dir("/p1/etc")
    assert "\n" not in str(caught.value) and caught.value.exit_code == 2


def test_unknown_filesystem_in_a_partition(tmp_path: Path, disk_of) -> None:
    _need("sfdisk")
    image = tmp_path / "empty-part.img"
    image.write_bytes(bytes(8 * images.MIB))
    images._run("sfdisk", "-q", str(image), stdin="label: gpt\nstart=2048, type=linux\n")
    disk = disk_of(image)
    (p1,) = disk.list_dir("/")
    assert p1.type == "other"
    with pytest.raises(StorageError, match="partition p1 holds no filesystem"):
        disk.list_dir("/p1")


# ------------------------------------------------------------------------------------ archives, search


def test_tar_round_trip(gpt_image: Path, tree: Tree, disk_of) -> None:
    disk = disk_of(gpt_image)
    blob = b"".join(archive.iter_tar(disk, ["/p1/etc", "/p1/a", "/p1/data/big.bin", "/p1/link-to-readme"]))
    assert len(blob) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert {
            "etc",
            "etc/hosts",
            "etc/script.sh",
            "a",
            "a/b/c/deep.txt",
            "a/up",
            "big.bin",
            "link-to-readme",
        } <= set(members)
        script = members["etc/script.sh"]
        assert (script.mode, script.mtime, (script.uid, script.gid)) == (
            0o755,
            images.MTIME + 120,
            images.TREE_OWNER,
        )
        assert members["etc"].isdir() and members["etc"].mode == 0o750
        assert members["a/up"].issym() and members["a/up"].linkname == "../etc/hosts"
        for name, path in (("big.bin", "data/big.bin"), ("a/b/c/deep.txt", "a/b/c/deep.txt")):
            extracted = tar.extractfile(members[name])
            assert extracted is not None and extracted.read() == _file(tree, path).data


def test_write_tar_of_whole_disk(gpt_image: Path, disk_of) -> None:
    out = io.BytesIO()
    written = archive.write_tar(disk_of(gpt_image), ["/"], out)
    assert written == len(out.getvalue())
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert "p1/a/b/c/deep.txt" in tar.getnames()


def test_zip_round_trip(gpt_image: Path, tree: Tree, disk_of) -> None:
    disk = disk_of(gpt_image)
    pieces = list(archive.iter_zip(disk, ["/p1/etc", "/p1/data", "/p1/dirlink", "/p1/etc/hosts"]))
    with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as zf:
        assert zf.testzip() is None
        infos = {i.filename: i for i in zf.infolist()}
        assert {"etc/", "etc/hosts", "data/big.bin", "data/Photo.JPG", "dirlink"} <= set(infos)
        assert zf.read("data/big.bin") == _file(tree, "data/big.bin").data
        hosts = infos["etc/hosts"]
        assert hosts.external_attr >> 16 == stat.S_IFREG | 0o600
        assert hosts.date_time == time.gmtime(images.MTIME + 60)[:6]
        assert stat.S_ISLNK(infos["dirlink"].external_attr >> 16) and zf.read("dirlink") == b"a/b"
        assert list(infos).count("etc/hosts") == 1  # selected twice, stored once
    assert len(pieces) > 3  # streamed, not built in one piece


def test_search(gpt_image: Path, disk_of) -> None:
    disk = disk_of(gpt_image)
    assert [e.path for e in disk.search("/p1", "*.jpg")] == ["/p1/data/Photo.JPG"]
    assert [e.path for e in disk.search("/p1/a", "DEEP")] == ["/p1/a/b/c/deep.txt"]
    assert len(disk.search("/", "*", limit=3)) == 3
    assert disk.search("/p1/etc", "nothing-like-this") == []


# ------------------------------------------------------------------------------------ damage


def _extent_of(disk: Disk, path: str) -> tuple[int, int, int]:
    loc = disk.resolve(path)
    assert loc is not None
    extents = loc.node.extents()
    assert extents
    file_off, fs_off, length = extents[0]
    return file_off, loc.partition.offset + fs_off, length


def test_files_in_ranges_maps_disk_bytes_to_files(gpt_image: Path, tree: Tree, disk_of) -> None:
    disk = disk_of(gpt_image)
    file_off, disk_off, length = _extent_of(disk, "/p1/data/big.bin")
    assert length > 12288
    start = disk_off + 4096
    hits = dict(disk.files_in_ranges([(start, start + 8192), (0, 512)]))
    assert hits == {"/p1/data/big.bin": [(file_off + 4096, file_off + 12288)]}
    with open(gpt_image, "rb") as raw:  # the mapping is real: those disk bytes are the file's bytes
        raw.seek(start)
        assert raw.read(8192) == _file(tree, "data/big.bin").data[file_off + 4096 : file_off + 12288]
    part = disk.partitions[0]
    free_space = (part.offset + part.size - 4096, part.offset + part.size)
    assert disk.files_in_ranges([free_space]) == []


def test_files_in_ranges_second_partition(mbr_image: Path, disk_of) -> None:
    disk = disk_of(mbr_image)
    _, disk_off, _ = _extent_of(disk, "/p2/a/b/c/deep.txt")
    assert disk.files_in_ranges([(disk_off, disk_off + 1)]) == [("/p2/a/b/c/deep.txt", [(0, 1)])]


def test_damaged_file_is_refused_or_named(gpt_image: Path, tree: Tree, disk_of) -> None:
    probe = disk_of(gpt_image)
    file_off, disk_off, _ = _extent_of(probe, "/p1/data/big.bin")
    bad = [(disk_off + 8192, disk_off + 16384)]

    def damaged_ranges_for(start: int, end: int) -> list[tuple[int, int]]:
        return [(max(s, start), min(e, end)) for s, e in bad if s < end and e > start]

    disk = disk_of(gpt_image, damaged_ranges_for=damaged_ranges_for)
    expected = [(file_off + 8192, file_off + 16384)]
    with pytest.raises(DamagedFile, match=r"/p1/data/big.bin lies on damaged backup data") as caught:
        disk.open_file("/p1/data/big.bin")
    assert f"[{file_off + 8192}, {file_off + 16384})" in str(caught.value)
    loc = disk.resolve("/p1/data/big.bin")
    assert loc is not None and disk.file_damage(loc) == expected
    assert disk.open_file("/p1/data/big.bin", allow_damaged=True).read() == _file(tree, "data/big.bin").data
    assert disk.open_file("/p1/etc/hosts").read() == b"127.0.0.1 localhost\n"  # undamaged files still open
    with pytest.raises(DamagedFile):
        next(iter(archive.iter_tar(disk, ["/p1/data"])))
    with tarfile.open(fileobj=io.BytesIO(b"".join(archive.iter_tar(disk, ["/p1/data"], allow_damaged=True)))) as tar:
        note = tar.extractfile("LIFEBOAT-DAMAGED.txt")
        assert note is not None and b"/p1/data/big.bin" in note.read()


def test_damage_found_while_reading_is_refused(gpt_image: Path, disk_of) -> None:
    """A revision stream learns of damage when it fetches the chunk: the read itself then refuses."""
    probe = disk_of(gpt_image)
    _, disk_off, _ = _extent_of(probe, "/p1/data/big.bin")
    found: list[tuple[int, int]] = []

    class LearningStream(io.FileIO):
        def read(self, size: int = -1) -> bytes:
            position = self.tell()
            data = super().read(size)
            if position <= disk_off < position + len(data):
                found.append((disk_off, disk_off + 4096))
            return data

    def damaged_ranges_for(start: int, end: int) -> list[tuple[int, int]]:
        return [(max(s, start), min(e, end)) for s, e in found if s < end and e > start]

    with LearningStream(gpt_image) as fh:
        disk = open_disk(fh, damaged_ranges_for=damaged_ranges_for)  # type: ignore[arg-type]
        stream = disk.open_file("/p1/data/big.bin")  # nothing known yet
        with pytest.raises(DamagedFile):
            stream.read()


# ------------------------------------------------------------------------------------ other filesystems


def test_fat(fat_image: Path, plain_tree: Tree, disk_of) -> None:
    disk = disk_of(fat_image)
    names = {e.name.lower(): e for e in disk.list_dir("/p1")}
    assert {"readme.txt", "a", "data", "etc", "empty"} <= set(names)
    assert names["readme.txt"].size == 20 and names["a"].type == "dir"
    assert names["readme.txt"].mtime == images.MTIME
    big = _file(plain_tree, "data/big.bin").data
    assert disk.open_file("/p1/data/big.bin").read() == big  # names are case-insensitive on FAT
    _, disk_off, _ = _extent_of(disk, "/p1/DATA/BIG.BIN")
    ((path, ranges),) = disk.files_in_ranges([(disk_off, disk_off + 100)])
    assert path.lower() == "/p1/data/big.bin" and ranges == [(0, 100)]


def test_xfs(xfs_image: Path, tree: Tree, disk_of) -> None:
    disk = disk_of(xfs_image)
    entries = {e.name: e for e in disk.list_dir("/p1")}
    assert (
        entries["dirlink"].target == "a/b" and (entries["etc"].uid, entries["etc"].gid) == images.TREE_OWNER
    )
    assert disk.open_file("/p1/data/big.bin").read() == _file(tree, "data/big.bin").data
    _, disk_off, _ = _extent_of(disk, "/p1/data/big.bin")
    assert [p for p, _ in disk.files_in_ranges([(disk_off, disk_off + 1)])] == ["/p1/data/big.bin"]


def test_btrfs(btrfs_image: Path, tree: Tree, disk_of) -> None:
    disk = disk_of(btrfs_image)
    entries = {e.name: e for e in disk.list_dir("/p1")}
    assert entries["README.txt"].mtime == images.MTIME and entries["loop1"].target == "loop2"
    assert disk.open_file("/p1/data/big.bin").read() == _file(tree, "data/big.bin").data
    assert disk.files_in_ranges([(0, 10)]) == [("/p1", [(0, 10)])]  # no data map: the partition is named


def test_ntfs(ntfs_image: Path, disk_of) -> None:
    disk = disk_of(ntfs_image)
    assert disk.list_dir("/p1") == []  # the $MFT & co. are not user files
    assert disk.stat("/p1").type == "dir"


# ------------------------------------------------------------------------------ reads only what it needs


class CountingReader(io.RawIOBase):
    """A file wrapper that counts the bytes read through it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fh = open(path, "rb")  # closed in close()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._fh.readinto(buffer)
        self.bytes_read += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()
        super().close()


def test_reads_only_the_blocks_it_needs(large_image: tuple[Path, bytes]) -> None:
    image, big = large_image
    with CountingReader(image) as counter:
        disk = open_disk(counter)  # type: ignore[arg-type]
        assert {e.name for e in disk.list_dir("/p1/data")} == {"big.bin", "Photo.JPG"}
        listed = counter.bytes_read
        assert listed < 1 * images.MIB, listed  # of a 256 MiB disk
        before = counter.bytes_read
        assert disk.open_file("/p1/data/big.bin").read() == big
        fetched = counter.bytes_read - before
        assert len(big) <= fetched < len(big) + images.MIB, fetched
