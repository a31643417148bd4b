"""What every backend shares (see ``storage.backend``): its errors and the answers of stat and usage."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from .errors import StorageError

RADOS_PREFIX = "rados:"
S3_PREFIX = "s3://"


class StoreUnavailable(StorageError):
    """the backup store {} is unavailable: {}"""


class BadRoot(StorageError):
    """invalid repository root {!r}: {}"""


class LockLost(StorageError):
    """the lock on VM {!r} lapsed while {} held it (the store was unreachable for longer than its expiry); """ \
        """nothing was published"""


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    mtime: float  # seconds since the epoch
    regular: bool = True  # a plain file/object (a local folder may hold FIFOs, symlinks, folders)


@dataclass(frozen=True)
class Usage:
    total: int
    free: int


def not_found(key: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, "no such object", key)
