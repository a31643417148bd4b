"""File-level access to a disk image, without mounting it and without reading all of it.

``open_disk(fileobj)`` takes any binary file-like object with read/seek/tell (a revision stream that
fetches chunks on demand, or a plain ``open(image, "rb")``) and returns a :class:`Disk`. Partition
tables are read by dissect.volume (GPT, MBR), filesystems by the pure-Python dissect readers: ext2/3/4,
XFS, Btrfs, FAT12/16/32 and NTFS. Only the blocks a request needs are read: the superblock, the inodes
and directory blocks on the path, and a file's own data.

Decisions
---------
Paths
    A disk is one namespace. ``/`` lists partitions as ``/p1``, ``/p2``, ... named by their number in the
    partition table (MBR logical partitions start at p5, as in Linux). A disk without a partition table
    that holds a bare filesystem is ``/p1`` too, so paths look the same whatever the layout. A partition
    whose filesystem cannot be read lists as type "other" with its size; reading inside it raises
    UnknownFilesystem or CorruptFilesystem.
Symlinks
    Never followed by default: ``stat``/``list_dir``/``open_file`` act on the link itself, and a symlink
    in the middle of a path raises IsASymlink. With ``follow_symlinks=True`` links are resolved inside
    their own filesystem only: an absolute target starts at that filesystem's root (as the guest sees it
    when the filesystem is its root), a relative target that climbs above the root raises
    SymlinkEscapes, more than 40 expansions raise SymlinkLoop. ``..`` in a path that would climb above
    the filesystem root raises PathEscapes. Archives and searches never follow symlinks below the
    selected paths; archives store them as symlinks.
Damage
    ``open_disk(fh, damaged_ranges_for=f)`` takes a callable ``f(start, end) -> [(s, e), ...]`` naming
    damaged disk byte ranges (the revision stream knows its damaged chunks). A file whose data lies on a
    damaged range is refused with DamagedFile (naming the damaged byte ranges of the file) unless the
    caller passes ``allow_damaged=True``; then it is returned as the stream delivers it (zero-filled),
    and ``Disk.file_damage`` names the ranges. Archives check the whole selection before sending a byte,
    and with ``allow_damaged`` add a ``LIFEBOAT-DAMAGED.txt`` member listing damaged files. A stream
    that raises on damaged data instead (a StorageError) propagates unchanged. Where a filesystem cannot
    map file data to disk offsets (Btrfs), any damage in its partition marks every file read from it.
Errors
    Every failure is a StorageError subclass from ``storage.files.errors`` (exit code 2); the readers'
    own exceptions on corrupt data become CorruptFilesystem naming the partition and path.

Not supported (yet): LVM and other volume managers, exFAT, NTFS alternate data streams, owners on NTFS
and FAT (shown as 0), mapping damage to files on Btrfs. A Disk is not thread-safe.
"""

from __future__ import annotations

from storage.files.disk import Disk, Located, Partition, open_disk
from storage.files.entry import Entry, EntryType, Range
from storage.files.errors import (
    CorruptFilesystem,
    DamagedFile,
    FileAccessError,
    IsASymlink,
    NoFilesystem,
    NoSuchPath,
    NotADirectory,
    NotAFile,
    PathEscapes,
    SymlinkEscapes,
    SymlinkLoop,
    UnknownFilesystem,
)

__all__ = [
    "CorruptFilesystem",
    "DamagedFile",
    "Disk",
    "Entry",
    "EntryType",
    "FileAccessError",
    "IsASymlink",
    "Located",
    "NoFilesystem",
    "NoSuchPath",
    "NotADirectory",
    "NotAFile",
    "Partition",
    "PathEscapes",
    "Range",
    "SymlinkEscapes",
    "SymlinkLoop",
    "UnknownFilesystem",
    "open_disk",
]
