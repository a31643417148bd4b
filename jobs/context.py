"""One portal app per worker process, and the per-VM lock that keeps a backup and a restore of one VM apart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask

from portal import clock
from portal.extensions import db

_app: Flask | None = None


def use_app(flask_app: Flask | None) -> None:
    """Run jobs in this process against ``flask_app`` (in-process workers, tests); None: build from the env."""
    global _app
    _app = flask_app


def app() -> Flask:
    global _app
    if _app is None:
        from portal.app import create_app

        _app = create_app()
    return _app


@contextmanager
def app_context() -> Iterator[Flask]:
    flask_app = app()
    with flask_app.app_context():
        try:
            yield flask_app
        finally:
            db.session.remove()


@contextmanager
def vm_lock(vm_id: int, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the VM's lock in Redis (expiring, refreshed while held); wait for it if another job has it.

    Locks are per VM: jobs for different VMs never wait for each other; there is no global lock.
    """
    from portal.services.queue import connection

    seconds = float(app().config["VM_LOCK_SECONDS"])  # expires this long after a dead holder's last refresh
    # thread_local=False: the refresher thread below extends the lock with the token the job's thread took
    lock = connection(app().config).lock(f"lifeboat:vm:{vm_id}", timeout=seconds, sleep=0.2, thread_local=False)
    if not lock.acquire(blocking=False):
        if on_wait:
            on_wait()
        lock.acquire(blocking=True)
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(seconds / 3):
            try:
                lock.extend(seconds, replace_ttl=True)
            except Exception:  # noqa: BLE001 - lost the lock (Redis restarted): the job still finishes
                return

    refresher = threading.Thread(target=refresh, daemon=True)
    refresher.start()
    try:
        yield
    finally:
        stop.set()
        refresher.join()
        try:
            lock.release()
        except Exception:  # noqa: BLE001,S110 - expired meanwhile
            pass


class ProgressWriter:
    """Report progress to a row at most every ``interval`` seconds (each report is a commit)."""

    def __init__(self, row: Any, interval: float = 0.5) -> None:
        self.row = row
        self.interval = interval
        self._last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and done < total:
            return
        self._last = now
        self.row.phase, self.row.bytes_done, self.row.bytes_total = phase, done, total
        db.session.commit()


class DiskProgress:
    """One progress bar over the disks restored in a row: each disk's bytes counted after the ones before."""

    def __init__(self, writer: ProgressWriter, sizes: list[int]) -> None:
        self.writer, self.sizes, self.index = writer, sizes, -1

    def next_disk(self, name: str) -> Callable[[str, int, int], None]:
        self.index += 1
        before, total = sum(self.sizes[:self.index]), sum(self.sizes)
        label = f" disk {name} ({self.index + 1}/{len(self.sizes)})" if len(self.sizes) > 1 else ""

        def report(phase: str, done: int, _disk_total: int) -> None:
            self.writer(phase + label, before + done, total)

        return report


def mark_started(row: Any) -> None:
    row.state = "running"
    row.started_at = clock.now()
    row.attempts += 1
    row.error = ""
    db.session.commit()


def mark_finished(row: Any, state: str, error: str = "") -> None:
    row.state = state
    row.error = error[:2000]
    row.finished_at = clock.now()
    db.session.commit()
