"""Adapters from the dissect filesystem readers to one small node interface.

Each dissect module has its own object model (ext and XFS inodes, Btrfs inodes with subvolumes, FAT
directory entries, NTFS MFT records). The rest of ``storage.files`` only needs what is in :class:`Node`,
so that path resolution, symlink safety, archives and damage mapping are written once.

Everything here is lazy: opening a filesystem reads its superblock and root; a node reads its inode or
directory only when asked. Nothing is mounted and no kernel code parses the data.
"""

from __future__ import annotations

import stat as statmod
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from storage.files.errors import UnknownFilesystem

Extent = tuple[int, int, int]  # (offset in the file, offset in the filesystem, length), bytes

DIR_MODE = statmod.S_IFDIR | 0o755
FILE_MODE = statmod.S_IFREG | 0o644


@dataclass(frozen=True)
class Meta:
    """The metadata a listing shows, as one backend reads it."""

    mode: int
    size: int
    uid: int = 0
    gid: int = 0
    mtime: float = 0.0


class Node(ABC):
    """A file, directory or symlink inside one filesystem."""

    @abstractmethod
    def meta(self) -> Meta:
        """Mode (with type bits), size, owner and mtime."""

    @abstractmethod
    def children(self) -> Iterator[tuple[str, Node]]:
        """The entries of a directory, without '.' and '..'."""

    @abstractmethod
    def link_target(self) -> str:
        """The target of a symlink, exactly as stored."""

    @abstractmethod
    def open(self) -> BinaryIO:
        """The file's data, read on demand."""

    def extents(self) -> list[Extent] | None:
        """Where the file's data lies in the filesystem; [] when it has none, None when unknown."""
        return None


class Filesystem:
    """An opened filesystem: its kind (for listings and messages) and its root node."""

    case_insensitive = False

    def __init__(self, kind: str, root: Node) -> None:
        self.kind = kind
        self.root = root


def _utc(value: datetime) -> float:
    """FAT stores local time without a zone; without better knowledge it is taken as UTC."""
    return value.replace(tzinfo=UTC).timestamp() if value.tzinfo is None else value.timestamp()


def _runs_to_extents(runs: list[tuple[int | None, int]], unit: int, base: int, size: int) -> list[Extent]:
    """Turn (block or None for sparse, count) runs into byte extents clipped to the file size."""
    extents: list[Extent] = []
    file_off = 0
    for block, count in runs:
        length = min(count * unit, size - file_off)
        if length <= 0:
            break
        if block is not None:
            extents.append((file_off, base + block * unit, length))
        file_off += count * unit
    return extents


class _InodeNode(Node):
    """What dissect's inode objects (ext, XFS, Btrfs) share: children by ``iterdir``, ``link``, ``open``."""

    def __init__(self, inode: Any) -> None:
        self._inode = inode

    def children(self) -> Iterator[tuple[str, Node]]:
        for child in self._inode.iterdir():
            if child.filename not in (".", ".."):
                yield child.filename, type(self)(child)

    def link_target(self) -> str:
        return str(self._inode.link)

    def open(self) -> BinaryIO:
        stream: BinaryIO = self._inode.open()
        return stream


# ---------------------------------------------------------------- ext2/3/4


class ExtNode(_InodeNode):
    def meta(self) -> Meta:
        raw = self._inode.inode
        uid = raw.i_uid | (raw.i_uid_high << 16)
        gid = raw.i_gid | (raw.i_gid_high << 16)
        return Meta(raw.i_mode, self._inode.size, uid, gid, self._inode.mtime_ns / 1e9)

    def extents(self) -> list[Extent] | None:
        from dissect.extfs.c_ext import c_ext

        if self._inode.inode.i_flags & c_ext.EXT4_INLINE_DATA_FL:
            return []  # the data lives inside the inode
        if statmod.S_ISLNK(self._inode.inode.i_mode) and self._inode.size < 60:
            return []  # fast symlink: the target lives inside the inode
        bs = self._inode.extfs.block_size
        return _runs_to_extents(self._inode.dataruns(), bs, 0, self._inode.size)


def open_ext(fh: BinaryIO) -> Filesystem:
    from dissect.extfs import ExtFS

    fs = ExtFS(fh)
    return Filesystem(f"ext{fs.type}" if isinstance(fs.type, int) else "ext", ExtNode(fs.root))


# ---------------------------------------------------------------- XFS


class XfsNode(_InodeNode):
    def meta(self) -> Meta:
        raw = self._inode.inode
        return Meta(raw.di_mode, self._inode.size, raw.di_uid, raw.di_gid, self._inode.mtime_ns / 1e9)

    def extents(self) -> list[Extent] | None:
        from dissect.xfs.c_xfs import c_xfs

        fmt = self._inode.inode.di_format
        if fmt not in (
            c_xfs.xfs_dinode_fmt.XFS_DINODE_FMT_EXTENTS,
            c_xfs.xfs_dinode_fmt.XFS_DINODE_FMT_BTREE,
        ):
            return []  # local (inline) data or a device
        runs = self._inode.dataruns  # a property in some dissect.xfs versions, a method in others
        runs = runs() if callable(runs) else runs
        return _runs_to_extents(list(runs), self._inode.xfs.block_size, 0, self._inode.size)


def open_xfs(fh: BinaryIO) -> Filesystem:
    from dissect.xfs import XFS

    return Filesystem("xfs", XfsNode(XFS(fh).root))


# ---------------------------------------------------------------- Btrfs


class BtrfsNode(_InodeNode):
    """A Btrfs inode; subvolumes appear as directories. Data extents are logical addresses: not mapped."""

    def meta(self) -> Meta:
        i = self._inode
        return Meta(i.mode, i.size, i.uid, i.gid, i.mtime_ns / 1e9)

    def children(self) -> Iterator[tuple[str, Node]]:
        for name, child in self._inode.iterdir():
            if name not in (".", ".."):
                yield name, BtrfsNode(child)


def open_btrfs(fh: BinaryIO) -> Filesystem:
    from dissect.btrfs import Btrfs

    return Filesystem("btrfs", BtrfsNode(Btrfs(fh).root))


# ---------------------------------------------------------------- FAT12/16/32


class FatNode(Node):
    def __init__(self, fs: Any, dirent: Any) -> None:
        self._fs = fs
        self._dirent = dirent

    def meta(self) -> Meta:
        d = self._dirent
        if d.is_directory():
            return Meta(DIR_MODE, 0, mtime=_utc(d.mtime))
        mode = (statmod.S_IFREG | 0o444) if d.is_readonly() else FILE_MODE
        return Meta(mode, d.size, mtime=_utc(d.mtime))

    def children(self) -> Iterator[tuple[str, Node]]:
        for child in self._dirent.iterdir():
            if child.name not in (".", "..") and not child.is_volume_id():
                yield child.name, FatNode(self._fs, child)

    def link_target(self) -> str:
        raise AssertionError("FAT has no symlinks")  # pragma: no cover - never asked: mode is never S_IFLNK

    def open(self) -> BinaryIO:
        stream: BinaryIO = self._dirent.open()
        return stream

    def extents(self) -> list[Extent] | None:
        if self._dirent.is_directory():
            return []
        fs = self._fs
        base = fs.first_data_sector * fs.sector_size
        runs: list[tuple[int | None, int]] = list(self._dirent.dataruns())
        return _runs_to_extents(runs, fs.cluster_size, base, self._dirent.size)


class FatFilesystem(Filesystem):
    case_insensitive = True


def open_fat(fh: BinaryIO) -> Filesystem:
    from dissect.fat import FATFS

    fs = FATFS(fh)
    return FatFilesystem(str(fs.type.name).lower(), FatNode(fs, fs.root))


# ---------------------------------------------------------------- NTFS


class NtfsNode(Node):
    """An MFT record. NTFS has no POSIX owners or modes: they are synthesised (0, 0755/0644)."""

    def __init__(self, ntfs: Any, record: Any) -> None:
        self._ntfs = ntfs
        self._record = record

    def meta(self) -> Meta:
        r = self._record
        mtime = _utc(r.attributes.STANDARD_INFORMATION[0].last_modification_time)
        if r.is_symlink() or r.is_mount_point():
            return Meta(statmod.S_IFLNK | 0o777, 0, mtime=mtime)
        if r.is_dir():
            return Meta(DIR_MODE, 0, mtime=mtime)
        return Meta(FILE_MODE, r.size() if r.has_stream("") else 0, mtime=mtime)

    def children(self) -> Iterator[tuple[str, Node]]:
        from dissect.ntfs.c_ntfs import FILE_NAME_DOS

        is_root = self._record.segment == 5
        for entry in self._record.index("$I30").entries():
            attr = entry.attribute
            if attr is None or attr.flags == FILE_NAME_DOS:
                continue
            name = attr.file_name
            if name == "." or (is_root and name.startswith("$")):
                continue  # the metadata files of the root ($MFT, $Bitmap...) are not user files
            yield name, NtfsNode(self._ntfs, entry.dereference())

    def link_target(self) -> str:
        return str(self._record.reparse_point_substitute_name)

    def open(self) -> BinaryIO:
        stream: BinaryIO = self._record.open()
        return stream

    def extents(self) -> list[Extent] | None:
        r = self._record
        if r.is_dir() or not r.has_stream("") or r.attributes.DATA[0].resident:
            return []
        return _runs_to_extents(list(r.dataruns()), self._ntfs.cluster_size, 0, r.size())


class NtfsFilesystem(Filesystem):
    case_insensitive = True


def open_ntfs(fh: BinaryIO) -> Filesystem:
    from dissect.ntfs import NTFS

    ntfs = NTFS(fh)
    return NtfsFilesystem("ntfs", NtfsNode(ntfs, ntfs.mft.get(5)))


# ---------------------------------------------------------------- detection


def _read_at(fh: BinaryIO, offset: int, length: int) -> bytes:
    fh.seek(offset)
    return fh.read(length)


def detect(fh: BinaryIO) -> str | None:
    """Name the filesystem by its magic numbers, reading only a few sectors; None: none known."""
    boot = _read_at(fh, 0, 512)
    if _read_at(fh, 1080, 2) == b"\x53\xef":
        return "ext"
    if boot[:4] == b"XFSB":
        return "xfs"
    if _read_at(fh, 0x10040, 8) == b"_BHRfS_M":
        return "btrfs"
    if boot[3:11] == b"NTFS    ":
        return "ntfs"
    if boot[3:11] == b"EXFAT   ":
        return "exfat"
    if len(boot) == 512 and boot[510:512] == b"\x55\xaa" and _looks_like_fat(boot):
        return "fat"
    return None


def _looks_like_fat(boot: bytes) -> bool:
    """A FAT boot sector has a sane BIOS parameter block (an MBR has code there instead)."""
    bytes_per_sector, sectors_per_cluster, reserved, fats = struct.unpack_from("<HBHB", boot, 11)
    return (
        bytes_per_sector in (512, 1024, 2048, 4096)
        and sectors_per_cluster in (1, 2, 4, 8, 16, 32, 64, 128)
        and reserved > 0
        and fats in (1, 2)
        and boot[0] in (0xEB, 0xE9)
    )


OPENERS: dict[str, tuple[str, Callable[[BinaryIO], Filesystem]]] = {
    "ext": ("dissect.extfs", open_ext),
    "xfs": ("dissect.xfs", open_xfs),
    "btrfs": ("dissect.btrfs", open_btrfs),
    "fat": ("dissect.fat", open_fat),
    "ntfs": ("dissect.ntfs", open_ntfs),
}


def open_filesystem(fh: BinaryIO, partition: str) -> Filesystem:
    """Open the filesystem on ``fh``; raise UnknownFilesystem when there is none this code reads.

    A reader's own errors (a corrupt superblock...) propagate: the caller turns them into
    CorruptFilesystem with the partition named.
    """
    kind = detect(fh)
    if kind is None:
        raise UnknownFilesystem(partition, "no known filesystem signature")
    if kind not in OPENERS:
        raise UnknownFilesystem(partition, f"{kind} is not supported")
    module, opener = OPENERS[kind]
    try:
        __import__(module)
    except ImportError:
        raise UnknownFilesystem(partition, f"{kind} needs the Python package {module}") from None
    return opener(fh)
