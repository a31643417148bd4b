"""``file:PATH`` sources: raw disk images (or block devices) read in place.

A plain file has no snapshots, so every backup reads it whole, except for holes: SEEK_DATA/SEEK_HOLE
tell which ranges hold data, and a 4 MiB block entirely inside a hole is recorded as zero unread.
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import SourceError
from .base import Range, Snapshot, Source


class FileSnapshot(Snapshot):
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise SourceError(f"file:{path}", exc.strerror or exc) from None
        mode = os.fstat(self.fd).st_mode
        if stat.S_ISBLK(mode):
            self.size = os.lseek(self.fd, 0, os.SEEK_END)
        elif stat.S_ISREG(mode):
            self.size = os.fstat(self.fd).st_size
        else:
            os.close(self.fd)
            raise SourceError(f"file:{path}", "not a regular file or block device")
        self._regular = stat.S_ISREG(mode)

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        while len(data) < length:  # pread may return short on some devices
            more = os.pread(self.fd, length - len(data), offset + len(data))
            if not more:
                break
            data += more
        return data

    def data_ranges(self) -> list[Range] | None:
        if not self._regular:
            return None
        ranges: list[Range] = []
        offset = 0
        try:
            while offset < self.size:
                try:
                    start = os.lseek(self.fd, offset, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # no more data after offset
                        break
                    raise
                end = os.lseek(self.fd, start, os.SEEK_HOLE)
                ranges.append((start, min(end, self.size)))
                offset = end
        except OSError:
            return None  # the filesystem cannot tell: read everything
        return ranges

    def close(self) -> None:
        os.close(self.fd)


class FileSource(Source):
    def __init__(self, path: str) -> None:
        self.path = path
        self.spec = f"file:{path}"
        if not os.path.exists(path):
            raise SourceError(self.spec, "no such file")
        if os.path.isdir(path):
            raise SourceError(self.spec, "is a directory")

    def _open(self, revision_id: str, parent_id: str | None) -> Snapshot:
        return FileSnapshot(self.path)
