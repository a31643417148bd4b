"""What a listing shows about one file: the same fields for every filesystem and for partitions."""

from __future__ import annotations

import stat as statmod
from dataclasses import asdict, dataclass
from typing import Any, Literal

EntryType = Literal["file", "dir", "symlink", "other"]

Range = tuple[int, int]  # [start, end) in bytes


def type_of_mode(mode: int) -> EntryType:
    """Map a POSIX mode to the four kinds a listing distinguishes."""
    if statmod.S_ISREG(mode):
        return "file"
    if statmod.S_ISDIR(mode):
        return "dir"
    if statmod.S_ISLNK(mode):
        return "symlink"
    return "other"


@dataclass(frozen=True)
class Entry:
    """One directory entry.

    ``path`` is absolute in the disk's namespace (``/p1/etc/hosts``); ``mode`` is the full POSIX mode
    including the file type bits (filesystems without modes, FAT and NTFS, get a synthesised 0o755/0o644);
    ``mtime`` is seconds since the epoch (UTC); ``target`` is the symlink target as stored, else None.
    """

    name: str
    path: str
    type: EntryType
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A plain dict for ``--json`` output and the REST API."""
        return asdict(self)
