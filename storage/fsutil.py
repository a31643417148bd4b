"""Durable file operations: every write is temp file + fsync + rename, then the folder is fsynced.

Reading is careful too: what the engine reads from a repository (chunks, manifests, its description) must be a
regular file of bounded size. A FIFO there would block a plain ``open`` forever and a symlink to ``/dev/zero``
would make ``read()`` fill memory, so ``read_regular`` opens without following a final symlink and without
blocking, checks the type with ``fstat`` and never reads more than the caller's cap.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from typing import Any

from . import counters


def fsync(fd: int) -> None:
    """``os.fsync``, counted (storage.counters): tests check that fsyncs scale with the data written."""
    counters.count("fsync")
    os.fsync(fd)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def temp_name(final_path: str) -> str:
    """A unique temporary name in the final file's folder (so rename is atomic), marked ``.tmp``."""
    folder, name = os.path.split(final_path)
    return os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_file_atomic(path: str, data: bytes, *, mode: int = 0o644, sync_dir: bool = True,
                      sync_file: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one (durably unless
    ``sync_file`` is off: a marker that only hints at something to clean up needs no disk flush)."""
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync_file:
            fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(os.path.dirname(path) or ".")


def write_json_atomic(path: str, document: Any) -> None:
    data = json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
    write_file_atomic(path, data)


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


class IrregularFile(OSError):
    """A file that must be a regular file of bounded size is a symlink, FIFO, device or directory, or too large.

    An ``OSError`` (with ``strerror`` saying which), so callers that already turn unreadable files into damage or
    a one-line error handle it without knowing about it.
    """


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def open_regular(path: str, limit: int) -> int:
    """An fd open for reading on the regular file ``path`` of at most ``limit`` bytes; raises IrregularFile.

    ``O_NOFOLLOW`` refuses a symlink as the last component, ``O_NONBLOCK`` keeps a FIFO from blocking the open
    (its type is then refused), and the size is checked before anything is read. The caller closes the fd.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IrregularFile(errno.ELOOP, "not a regular file (a symbolic link)", path) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IrregularFile(errno.EINVAL, f"not a regular file ({_kind(info.st_mode)})", path)
        if info.st_size > limit:
            raise IrregularFile(errno.EFBIG, f"larger than {limit} bytes ({info.st_size})", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refused (IrregularFile) unless it is one of at most ``limit`` bytes.

    Reads at most ``limit + 1`` bytes whatever happens to the file meanwhile (one that grows past the cap is
    refused, not followed).
    """
    fd = open_regular(path, limit)
    try:
        parts: list[bytes] = []
        total = 0
        size = os.fstat(fd).st_size  # read size + 1 bytes: the whole file and its end in one call, usually
        while True:
            wanted = size + 1 - total if total <= size else 1 << 16
            piece = os.read(fd, min(wanted, limit + 1 - total))
            if not piece:
                return b"".join(parts)
            parts.append(piece)
            total += len(piece)
            if total > limit:
                raise IrregularFile(errno.EFBIG, f"larger than {limit} bytes", path)
    finally:
        os.close(fd)
