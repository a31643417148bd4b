"""Restore targets on the local machine: a new (sparse) file, or a block device written in place.

A file is restored under ``TARGET.lifeboat-partial`` and renamed over ``TARGET`` only when complete, so
``TARGET`` is never half-written; an interrupted restore leaves the partial file and its resume state
``TARGET.lifeboat-partial.json`` beside it, and the same command run again continues from there.
"""

from __future__ import annotations

import os
import stat

from ..errors import BadTarget, TargetExists
from ..fsutil import fsync_dir
from .base import Target

PARTIAL_SUFFIX = ".lifeboat-partial"


class FileTarget(Target):
    zero_is_free = True
    can_read_back = True

    def __init__(self, path: str, force: bool) -> None:
        self.spec = path
        self.path = os.path.abspath(path)
        self.partial = self.path + PARTIAL_SUFFIX
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise BadTarget(path, f"folder {folder} does not exist")
        if os.path.isdir(self.path):
            raise BadTarget(path, "is a directory")
        if os.path.lexists(self.path) and not force:
            raise TargetExists(path)
        self.fd = -1

    @property
    def state_path(self) -> str:
        return self.partial + ".json"

    def can_resume(self) -> bool:
        return os.path.isfile(self.partial)

    def begin(self, size: int, resuming: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (0 if resuming else os.O_TRUNC)
        self.fd = os.open(self.partial, flags, 0o600)
        # ftruncate makes the whole file one hole: chunks never written (zero chunks) read as zeros
        # and take no space, which is what makes the restore sparse.
        os.ftruncate(self.fd, size)

    def read_back(self, offset: int, length: int) -> bytes:
        return _pread_fully(self.partial, offset, length)

    def write(self, offset: int, data: bytes) -> None:
        _pwrite_all(self.fd, offset, data)

    def zero(self, offset: int, length: int) -> None:
        self.write(offset, bytes(length))

    def flush(self) -> None:
        os.fdatasync(self.fd)

    def commit(self) -> None:
        os.close(self.fd)
        self.fd = -1
        os.chmod(self.partial, 0o644)
        os.replace(self.partial, self.path)
        fsync_dir(os.path.dirname(self.path))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def abort(self) -> None:
        self.close()
        for path in (self.partial, self.state_path):
            if os.path.exists(path):
                os.unlink(path)


class BlockDeviceTarget(Target):
    """A block device is overwritten in place (only with --force); zero chunks are written as zeros."""

    zero_is_free = False
    can_read_back = True

    def __init__(self, path: str, force: bool, state_dir: str) -> None:
        if not force:
            raise TargetExists(path)
        self.spec = path
        self.path = path
        self._state = os.path.join(state_dir, "restore-" + path.strip("/").replace("/", "_") + ".json")
        self.fd = -1

    @property
    def state_path(self) -> str:
        return self._state

    def begin(self, size: int, resuming: bool) -> None:
        self.fd = os.open(self.path, os.O_WRONLY)
        capacity = os.lseek(self.fd, 0, os.SEEK_END)
        if capacity < size:
            os.close(self.fd)
            raise BadTarget(self.path, f"device holds {capacity} bytes, the revision needs {size}")

    def write(self, offset: int, data: bytes) -> None:
        _pwrite_all(self.fd, offset, data)

    def read_back(self, offset: int, length: int) -> bytes:
        return _pread_fully(self.path, offset, length)

    def flush(self) -> None:
        os.fsync(self.fd)

    def commit(self) -> None:
        os.close(self.fd)
        self.fd = -1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _pwrite_all(fd: int, offset: int, data: bytes) -> None:
    """pwrite until everything is written (a device may accept less than asked)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _pread_fully(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb", buffering=0) as handle:
        handle.seek(offset)
        return handle.read(length) or b""


def make_local_target(path: str, force: bool, state_dir: str) -> Target:
    if os.path.exists(path) and stat.S_ISBLK(os.stat(path).st_mode):
        return BlockDeviceTarget(path, force, state_dir)
    return FileTarget(path, force)
