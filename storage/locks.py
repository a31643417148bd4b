"""Per-VM repository locks on top of flock(2).

Backup and gc take the operation lock exclusively, restore and verify share it; so a backup never races
gc, restores of one VM run side by side, and VMs never wait for each other (there is no global lock).
Short read-modify-write updates of manifests (trust, protection, forget) take a separate metadata lock,
so protecting a revision does not wait for an hour-long backup.

flock locks belong to an open file description: they vanish when the process dies (kill -9 included),
so a crashed backup never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import Locked
from .fsutil import read_regular

POLL_SECONDS = 0.1


@contextmanager
def flocked(path: str, *, exclusive: bool, wait: float | None, vm: str, purpose: str) -> Iterator[None]:
    """Hold a flock on ``path``; wait up to ``wait`` seconds (None: forever) or raise Locked."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, exclusive=exclusive, wait=wait, vm=vm, path=path)
        if exclusive:
            _describe_holder(fd, purpose)
        yield
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd: int, *, exclusive: bool, wait: float | None, vm: str, path: str) -> None:
    operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    if wait is None:
        fcntl.flock(fd, operation)
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise Locked(vm, _holder(path)) from None
            time.sleep(POLL_SECONDS)


def _describe_holder(fd: int, purpose: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{purpose} by pid {os.getpid()}".encode(), 0)


def _holder(path: str) -> str:
    try:
        text = read_regular(path, 200).decode("utf-8", errors="replace").strip()
    except OSError:  # gone, not a regular file, or not ours (longer than a description)
        text = ""
    return text or "in use by a restore or verify"
