"""Instant restore into RBD: the image is usable at once, its data streams in from the backup afterwards.

Ceph's import-only live migration creates an RBD image whose unhydrated ranges are read from an HTTP source:
here, Lifeboat serving the backup point (``storage.serve``). The steps (``storage.targets.migration``):

1. **prepare**, with the source ``{"type": "raw", "stream": {"type": "http", "url": URL}}``. Every client that
   opens the image (a VM's QEMU, ``rbd``) reads unhydrated ranges from the URL itself, so the URL must be
   reachable from the hypervisors (``url_base``); it carries its secret in the path. Before the image is
   announced, its all-zero chunks are written as zeros, so nothing is ever fetched for them.
2. **ready**: the image is opened and its first sector read, as a booting VM would; the ``ready`` event says
   how many seconds that took from the start.
3. **execute** (hydration): librbd copies the remaining objects from the source while the image is in use.
4. **commit**: the image no longer needs the source; all-zero objects are deallocated again.

Running the same restore again after an interruption serves the recorded URL again and continues where Ceph
stands. The URL, VM and revision are recorded before prepare in the repository's restore state
(``ROOT/<vm>/restore-state/instant-rbd-POOL@IMAGE.json``): while a migration is unfinished, Ceph cannot even
open the image (to say where its source is) unless the source answers. Ctrl-C or SIGTERM during hydration
makes the source refuse, so librbd stops at once and closes cleanly (a killed process leaves its watch on the
image, and the resume then waits ~30 s for Ceph to expire it). A hydration that fails aborts the migration,
which removes the image, unless a client has the image open: then it stays usable while a source serves it,
for a resume or an explicit ``abort_instant_restore``. Damaged chunks are served as zeros and named in the
result, as restores do.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import BadTarget, StorageError
from .fsutil import read_regular, write_json_atomic
from .manifest import Range, Revision
from .repository import Repository
from .serve import Address, Serving
from .targets.migration import SOURCE_TIMEOUT, InstantRestoreFailed, RbdMigration

Event = Callable[[dict[str, Any]], None]
#: how long an interrupted hydration may take to notice that its source refuses
STOP_SECONDS = 60.0
MAX_RECORD_BYTES = 64 << 10


@dataclass
class InstantResult:
    revision: str
    image: str
    ready_seconds: float = 0.0
    hydrated_bytes: int = 0  # bytes of data chunks the image holds (zero chunks are never copied)
    bytes_served: int = 0  # bytes the source sent (hydration and clients' reads)
    seconds: float = 0.0
    damaged: list[Range] = field(default_factory=list)
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["damaged"] = [list(r) for r in self.damaged]
        return doc


def zero_runs(revision: Revision) -> list[Range]:
    """The revision's all-zero chunks as merged byte ranges."""
    runs: list[Range] = []
    for index, chunk in enumerate(revision.chunks):
        if chunk is None:
            start, end = revision.chunk_range(index)
            if runs and runs[-1][1] == start:
                runs[-1] = (runs[-1][0], end)
            else:
                runs.append((start, end))
    return runs


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done (prepare + record, commit + tidy: never half)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {number: signal.signal(number, lambda number, _: caught.append(number))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if caught:
            raise KeyboardInterrupt


def state_path(repo: Repository, migration: RbdMigration) -> str:
    """Where the record of an instant restore into this image lives (beside the restores' resume state)."""
    return os.path.join(repo.state_dir(), f"instant-rbd-{migration.spec.pool}@{migration.name}.json")


def _load_record(path: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(read_regular(path, MAX_RECORD_BYTES))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("vm", "revision", "url")):
        return None
    return doc


def _plan(migration: RbdMigration, path: str, vm: str, revision_id: str) -> dict[str, Any] | None:
    """The record of an instant restore to continue, None for a fresh one; refuse an image not ours."""
    target = str(migration.spec)
    record = _load_record(path)
    if not migration.exists():
        return None  # a record without its image is stale: start afresh
    if record is None:
        raise BadTarget(target, "the image exists; an instant restore makes a new image (pick another name)")
    if record["vm"] != vm or record["revision"] != revision_id and revision_id != "latest":
        raise BadTarget(target, f"an instant restore of VM {record['vm']} revision {record['revision']} is in "
                                "progress there; continue that one or pass --abort")
    return record


def instant_restore(root: str, vm: str, revision_id: str, target_spec: str, *, listen: Address,
                    url_base: str | None = None, events: Event | None = None,
                    wait: float | None = None, source_timeout: float = SOURCE_TIMEOUT) -> InstantResult:
    """Serve the revision, make ``rbd:POOL/IMAGE`` usable from it, hydrate and commit; or resume that.

    ``source_timeout``: how long the source may take to answer before prepare (or the open) gives up with an
    error (librbd itself would wait for ever: ``storage.targets.migration``).
    """
    started = time.monotonic()
    emit = events or (lambda doc: None)
    repo = Repository.open(root, vm)
    with RbdMigration(target_spec, timeout=source_timeout) as migration:
        revision = repo.resolve(revision_id)
        path = state_path(repo, migration)
        record = _plan(migration, path, vm, revision.id if revision_id != "latest" else "latest")
        secret = None
        if record is not None:
            revision = repo.resolve(record["revision"])
            secret, listen = _recorded_address(record["url"], listen)
        result = InstantResult(revision.id, str(migration.spec), resumed=record is not None)
        with Serving(root, vm, revision.id, http=listen, zero_damaged=True, secret=secret, url_base=url_base,
                     wait=wait) as serving:
            _run(migration, serving, revision, record, path, started, result, emit)
            report = serving.report()
        result.bytes_served = int(report["bytes_served"])
        result.damaged = [(int(s), int(e)) for s, e in report["damaged"]]
        result.hydrated_bytes = revision.size - sum(end - start for start, end in zero_runs(revision))
        result.seconds = round(time.monotonic() - started, 3)
        return result


def _run(migration: RbdMigration, serving: Serving, revision: Revision, record: dict[str, Any] | None,
         path: str, started: float, result: InstantResult, emit: Event) -> None:
    """Prepare (or check where a resumed image reads from), announce ready, hydrate, commit."""
    url = serving.urls["http"]
    if record is not None and url != record["url"]:
        raise BadTarget(result.image, f"the image reads from {record['url']}; to resume, serve there "
                                      "(--listen, --url-base)")
    state = migration.state() if record is not None else None
    if record is None:
        with deferred_interrupts():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_json_atomic(path, {"vm": revision.vm, "revision": revision.id, "url": url,
                                     "image": result.image})
            try:
                migration.prepare(url, zero_runs(revision))
            except StorageError:
                if not migration.exists():
                    os.unlink(path)  # nothing was made: no record of it either
                raise
        _or_abort(migration, path, migration.probe)
    elif state is not None:
        migration.probe()
    result.ready_seconds = round(time.monotonic() - started, 3)
    emit({"event": "ready", "image": result.image, "url": url, "seconds": result.ready_seconds,
          "resumed": result.resumed})
    if record is None or state in ("prepared", "executing"):
        _hydrate(migration, path, serving, emit)
    with deferred_interrupts():
        if record is None or state is not None:
            migration.commit()
        else:
            migration.finish()  # committed before an interruption: only the tidying is left
        os.unlink(path)
    emit({"event": "committed", "image": result.image, "seconds": round(time.monotonic() - started, 3)})


def _recorded_address(url: str, listen: Address) -> tuple[str, Address]:
    """The secret of a recorded URL, and where to listen: as asked, on the URL's port when asked for any."""
    parts = urlsplit(url)
    secret = parts.path.strip("/").split("/")[0]
    if listen.port == 0 and parts.port:
        listen = Address(listen.host, parts.port)
    return secret, listen


def _hydrate(migration: RbdMigration, path: str, serving: Serving, emit: Event) -> None:
    """Hydrate with progress events; on Ctrl-C make the source refuse so librbd stops; abort on failure."""
    disk = serving.disk
    size = disk.size if disk else 0
    last = [-1]

    def progress(done: int, total: int) -> None:
        """librbd counts objects; the events speak bytes of the image."""
        percent = int(done * 100 / total) if total else 100
        if percent != last[0]:
            last[0] = percent
            emit({"event": "progress", "percent": percent, "done": size * done // total if total else size,
                  "total": size, "bytes_served": disk.bytes_served if disk else 0})

    def stop() -> None:
        if serving.http is not None:
            serving.http.refuse()  # librbd's next read fails, execute returns, the image closes cleanly

    try:
        hydrate(migration, progress, on_interrupt=stop)
    except InstantRestoreFailed as exc:
        _after_failure(migration, path, exc)


def hydrate(migration: RbdMigration, progress: Callable[[int, int], None], *,
            on_interrupt: Callable[[], None] | None = None, tick: float = 0.2) -> None:
    """Run librbd's execute in a thread and call ``progress(done, total)`` (objects) from this one.

    Progress is reported from the calling thread (every ``tick`` seconds when it changed), so it may use
    what belongs to that thread: a database session, stdout. On Ctrl-C (or SIGTERM turned into it),
    ``on_interrupt`` is called (it should make the source refuse, so librbd's next read fails), execute is
    waited for (librados must not shut down under it), and KeyboardInterrupt goes on. A failed execute is
    InstantRestoreFailed; the caller decides whether to abort.
    """
    failure: list[BaseException] = []
    latest: list[tuple[int, int]] = []
    finished = threading.Event()  # not Thread.join: a Ctrl-C inside join can mark a running thread stopped

    def note(done: int, total: int) -> None:
        latest[:] = [(done, total)]  # librbd's thread: only remember, the caller's thread reports

    def run() -> None:
        try:
            migration.execute(note)
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)
        finally:
            finished.set()

    reported: tuple[int, int] | None = None
    worker = threading.Thread(target=run, name="hydrate", daemon=True)
    try:
        worker.start()  # inside the try: a Ctrl-C may land in start() once the thread already runs
        while not finished.wait(tick):
            if latest and latest[-1] != reported:
                reported = latest[-1]
                progress(*reported)
    except KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt()
        finished.wait(STOP_SECONDS)
        raise
    if failure:
        raise failure[0]
    progress(1, 1)  # librbd's last call says 15 of 16 objects


def abort_unless_in_use(migration: RbdMigration, why: str) -> InstantRestoreFailed:
    """After a failed step: abort (removing the image) unless a client has it open; the error to raise."""
    target = str(migration.spec)
    if migration.watchers():
        return InstantRestoreFailed(target, f"{why}; the image is in use and stays usable while a source serves "
                                            "it: run the same restore again to resume, or abort it")
    migration.abort()
    return InstantRestoreFailed(target, f"{why}; the migration was aborted and the image removed")


def _or_abort(migration: RbdMigration, path: str, step: Callable[[], None]) -> None:
    """Run a step of a fresh restore; if it fails, abort the migration as a failed hydration does."""
    try:
        step()
    except StorageError as exc:
        _after_failure(migration, path, exc)


def _after_failure(migration: RbdMigration, path: str, error: BaseException) -> None:
    """Abort (removing the image and its record) unless somebody uses it; then it stays for a resume."""
    why = error.reason if isinstance(error, InstantRestoreFailed) else str(error)
    failed = abort_unless_in_use(migration, why)
    if not migration.exists():
        os.unlink(path)
    raise failed


def abort_instant_restore(root: str, vm: str, target_spec: str) -> dict[str, Any]:
    """Remove an unfinished instant restore of VM into the image (never an image it did not make)."""
    repo = Repository.open(root, vm)
    with RbdMigration(target_spec) as migration:
        target = str(migration.spec)
        path = state_path(repo, migration)
        record = _load_record(path)
        if record is None:
            raise BadTarget(target, f"no instant restore of VM {vm} into it is recorded; nothing removed")
        if migration.exists():
            migration.abort()  # works without the source
        os.unlink(path)
        return {"image": target, "aborted": True, "revision": record["revision"]}
