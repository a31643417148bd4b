"""What the object stores (RADOS, S3) share above their own calls: settings, the renewed lock's bookkeeping, and
the store methods that mean the same on any store without folders.

A lock here has an expiry that its holder renews from a thread every third of it. The holder's own thread asks
``check()`` before it publishes or deletes anything: a lock not renewed within its expiry may be another host's
by now (see ``storage.backend``). What taking, renewing and releasing mean is the store's (``_try_take``,
``_renew``, ``_unlock``).
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO

from .errors import Locked
from .store_base import LockLost

DEFAULT_LOCK_SECONDS = 60
#: how often a waiting taker tries again
POLL_SECONDS = 0.2


def env_int(name: str, default: int) -> int:
    """A whole-number setting of at least 1 from the environment (junk: the default)."""
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class RenewedLock:
    """A VM's operation lock on an object store: taken (waiting up to ``wait``), renewed by a thread, released."""

    #: named in messages: "held by ..., RADOS lock"
    kind = ""

    def __init__(self, key: str, exclusive: bool, vm: str, purpose: str) -> None:
        self.key, self.exclusive, self.vm, self.purpose = key, exclusive, vm, purpose
        self.duration = env_int("LIFEBOAT_STORE_LOCK_SECONDS", DEFAULT_LOCK_SECONDS)
        self.cookie = uuid.uuid4().hex
        self.description = f"{purpose} by pid {os.getpid()} on {socket.gethostname()}"
        self.renewed = 0.0
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the store's part ------------------------------------------------------------------------
    def _try_take(self) -> str | None:
        """Take the lock if it is free for us: None, or the description of who holds it."""
        raise NotImplementedError

    def _renew(self) -> None:
        """Push the expiry on; LockLost when the lock is no longer ours (taken over after it expired)."""
        raise NotImplementedError

    def _unlock(self) -> None:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------
    def acquire(self, wait: float | None) -> None:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            started = time.monotonic()
            holder = self._try_take()
            if holder is None:
                self.renewed = started
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise Locked(self.vm, f"{holder}, {self.kind} lock")
            time.sleep(POLL_SECONDS)
        self._thread = threading.Thread(target=self._renew_loop, name="lock-renew", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.duration / 3):
            started = time.monotonic()
            try:
                self._renew()
            except LockLost:
                self.lost = self.lost or "taken over after its expiry"
                return
            except Exception as exc:  # noqa: BLE001 - recorded; check() raises it in the holder's thread
                if started - self.renewed > self.duration:
                    self.lost = self.lost or one_line(exc)
                continue
            if started - self.renewed > self.duration:
                self.lost = self.lost or "not renewed within its expiry"
            self.renewed = started

    def check(self) -> None:
        if self.lost is None and time.monotonic() - self.renewed > self.duration:
            self.lost = "not renewed within its expiry"
        if self.lost is not None:
            raise LockLost(self.vm, self.purpose)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._unlock()
        except Exception:  # noqa: S110, BLE001 - expired or unreachable: the expiry frees it
            pass


class ObjectStoreMethods:
    """Backend methods that read the same on every object store (no folders, durable when acknowledged)."""

    def get(self, key: str, limit: int) -> bytes:
        raise NotImplementedError

    def _lock_for(self, key: str, exclusive: bool, vm: str, purpose: str) -> RenewedLock:
        raise NotImplementedError

    @contextmanager
    def lock(self, key: str, *, exclusive: bool, wait: float | None, vm: str, purpose: str) -> Iterator[RenewedLock]:
        held = self._lock_for(key, exclusive, vm, purpose)
        held.acquire(wait)
        try:
            yield held
        finally:
            held.release()

    def open_read(self, key: str, limit: int) -> tuple[IO[bytes], int] | None:
        try:
            data = self.get(key, limit)
        except OSError:
            return None
        return io.BytesIO(data), len(data)

    def prepare(self, folders: Sequence[str]) -> None:
        return None  # no folders in an object store

    def sync(self, folders: set[str]) -> None:
        return None  # a write is durable when acknowledged
