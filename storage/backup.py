"""Backups: read a source's snapshot in 4 MiB blocks and store the chunks the repository lacks.

Blocks are read, zero-checked, hashed, compressed and written by a pool of threads (blake3, zstd and
file I/O release the GIL), at most a few blocks in flight per thread, so memory stays flat whatever
the image size. The manifest is written only after every chunk it names is durable.

An incremental backup costs what it reads: besides the changed blocks it issues a fixed handful of
operations, none growing with the image (``storage.counters`` counts them; tests/ceph/test_rbd_costs.py).
Snapshots are the expensive part on Ceph: each create and each remove waits for the monitor to commit a new
map, and monitors batch commits (``paxos propose interval``, 1 s by default), so a snapshot operation costs up
to a second. Removing the snapshot that is no longer a parent after the manifest, as this engine once did,
made every incremental pay two monitor rounds where a full backup paid one. Now the snapshots nobody needs any
more (all but this backup's parent) are removed while the new snapshot is created, issued together so that
they share one round (``RbdSource.snapshot_and_retire``). The price: between backups the image keeps two
``lifeboat-*`` snapshots (the newest and its parent, whose copy-on-write data is what changed between them);
the next backup removes the older one.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from . import clock, counters
from .durable import ChunkWriter
from .errors import SourceError
from .hooks import Hooks, run_hook
from .manifest import Revision
from .repository import CHUNK_SIZE, ChunkDamaged, Repository, chunk_hash
from .sources import Snapshot, Source, open_source
from .sources.base import Range, Retirement

ProgressCallback = Callable[[str, int, int], None]  # phase, bytes done, bytes total

ZERO_CHUNK_CACHE: dict[int, bytes] = {}


def default_threads() -> int:
    return max(2, os.cpu_count() or 2)


def _zeros(length: int) -> bytes:
    zeros = ZERO_CHUNK_CACHE.get(length)
    if zeros is None:
        zeros = ZERO_CHUNK_CACHE.setdefault(length, bytes(length))
    return zeros


@dataclass
class BackupStats:
    bytes_read: int = 0
    bytes_written: int = 0
    chunks_new: int = 0
    chunks_reused: int = 0
    chunks_zero: int = 0
    chunks_rewritten: int = 0
    chunks_unread: int = 0  # taken from the parent revision without reading (changed-block list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class _ChunkStore:
    """Decides per block whether to write it, and counts. Shared by the worker threads."""

    def __init__(self, repo: Repository, suspect: set[str]) -> None:
        self.repo = repo
        self.suspect = suspect
        self.writer = ChunkWriter()
        self.stats = BackupStats()
        self._claimed: set[str] = set()
        self._prefixes: set[str] = set()
        self._lock = threading.Lock()

    def take(self, snap: Snapshot, offset: int, length: int) -> str | None:
        data = snap.read(offset, length)
        if len(data) != length:
            raise SourceError(snap_name(snap), f"short read at offset {offset}: the source shrank")
        if data == _zeros(length):
            self._count(read=length, zero=1)
            return None
        chunk = chunk_hash(data)
        with self._lock:
            first = chunk not in self._claimed
            self._claimed.add(chunk)
        suspect = chunk in self.suspect
        if not first or (self.repo.has_chunk(chunk) and (not suspect or self._intact(chunk))):
            self._count(read=length, reused=1)
            return chunk
        stored = self.repo.compress(data)
        self.writer.write(self.repo.chunk_path(chunk), stored)
        with self._lock:
            self._prefixes.add(chunk[:2])
        self._count(read=length, written=len(stored), new=0 if suspect else 1, rewritten=1 if suspect else 0)
        return chunk

    def _intact(self, chunk: str) -> bool:
        """Re-check a suspect chunk (its revision is distrusted) instead of trusting that it exists."""
        try:
            self.repo.read_chunk(chunk)
        except ChunkDamaged:
            return False
        with self._lock:
            self.suspect.discard(chunk)
        return True

    def reuse(self, chunk: str | None) -> bool:
        """Take a parent's chunk without reading the source; False when it must be read after all."""
        if chunk is None:
            self._count(zero=1, unread=1)
            return True
        if chunk in self.suspect or not self.repo.has_chunk(chunk):
            return False
        self._count(reused=1, unread=1)
        return True

    def count_hole(self) -> None:
        self._count(zero=1)

    def _count(self, *, read: int = 0, written: int = 0, new: int = 0, reused: int = 0, zero: int = 0,
               rewritten: int = 0, unread: int = 0) -> None:
        with self._lock:
            s = self.stats
            s.bytes_read += read
            s.bytes_written += written
            s.chunks_new += new
            s.chunks_reused += reused
            s.chunks_zero += zero
            s.chunks_rewritten += rewritten
            s.chunks_unread += unread

    def make_durable(self) -> None:
        """Wait for every new chunk to be on disk under its name, then make the renames durable."""
        self.writer.close()
        self.repo.sync_chunk_folders(self._prefixes)


def snap_name(snap: Snapshot) -> str:
    return getattr(snap, "path", type(snap).__name__)


def _chunk_indices(ranges: Iterable[Range], chunk_size: int) -> set[int]:
    indices: set[int] = set()
    for start, end in ranges:
        if end > start:
            indices.update(range(start // chunk_size, (end - 1) // chunk_size + 1))
    return indices


def _covered_indices(ranges: Iterable[Range], chunk_size: int, size: int) -> set[int]:
    """Blocks lying wholly inside one of the ranges (the last block ends at ``size``)."""
    indices: set[int] = set()
    for start, end in ranges:
        first = -(-start // chunk_size)
        for index in range(first, -(-min(end, size) // chunk_size)):
            if min((index + 1) * chunk_size, size) <= end:
                indices.add(index)
    return indices


def backup(
    root: str,
    vm: str,
    source_spec: str,
    *,
    hooks: Hooks | None = None,
    tags: Iterable[str] = (),
    threads: int | None = None,
    wait: float | None = 0.0,
    progress: ProgressCallback | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> Revision:
    """Back ``source_spec`` up into ``ROOT/<vm>`` and return the new revision (stats in ``.stats``).

    ``chunk_size`` applies only when this backup creates the repository (tests use small chunks).
    """
    started = time.monotonic()
    source = open_source(source_spec)  # bad specs fail before anything is created
    try:
        return _backup(source, root, vm, hooks, tags, threads, wait, progress, chunk_size, started)
    finally:
        source.close()


def _backup(source: Source, root: str, vm: str, hooks: Hooks | None, tags: Iterable[str], threads: int | None,
            wait: float | None, progress: ProgressCallback | None, chunk_size: int, started: float) -> Revision:
    repo = Repository.open_or_create(root, vm, chunk_size=chunk_size)
    with repo.lock(exclusive=True, wait=wait, purpose="backup"):
        running = os.path.join(repo.path, "backup.running")
        if os.path.exists(running):  # the last backup was interrupted: its temp files are still there
            repo.remove_leftovers()
        with open(running, "w") as marker:
            marker.write(f"{os.getpid()}\n")
        repo.ensure_folders()  # a chunk folder lost meanwhile must not fail this and every later backup
        revisions = repo.revisions()
        skipped = [f"skipped revision {rid}: {why}" for rid, why in sorted(repo.unreadable.items())]
        trusted = [r for r in revisions if not r.distrusted]
        parent = trusted[-1] if trusted else None
        suspect = repo.quarantined_chunks()
        for revision in revisions:
            if revision.distrusted:
                suspect.update(c for c in revision.chunks if c is not None)
        revision_id = repo.new_revision_id()
        created = clock.isoformat(clock.now())
        keep = {revision_id, parent.id} if parent else {revision_id}
        warnings = _take_snapshot(source, revision_id, hooks or Hooks(), keep)
        store = _ChunkStore(repo, suspect)
        try:
            with source.open_snapshot(revision_id, parent.id if parent else None) as snap:
                store.stats.warnings.extend(skipped + warnings)
                chunks = _store_blocks(store, snap, parent, repo.chunk_size, threads, progress)
                size = snap.size
                source_read = snap.bytes_read_by_source
            store.make_durable()
            store.stats.bytes_read += source_read  # e.g. what computing a diff cost the source
            stats = store.stats.as_dict()
            stats["seconds"] = round(time.monotonic() - started, 3)
            stats["incremental"] = store.stats.chunks_unread > 0
            revision = Revision(
                id=revision_id, vm=vm, created=created, size=size, chunk_size=repo.chunk_size,
                chunks=chunks, parent=parent.id if parent else None, source=source.spec,
                tags=sorted(set(tags)), stats=stats,
            )
            counters.event("manifest")
            repo.write_revision(revision)
        except BaseException:
            _quietly(store.writer.close)  # no flusher thread outlives a failed backup
            _quietly(lambda: source.discard_snapshot(revision_id))
            raise
        os.unlink(running)
        return revision


def _take_snapshot(source: Source, revision_id: str, hooks: Hooks, keep: set[str]) -> list[str]:
    """Pre-hook, snapshot, post-hook (always); meanwhile retire the source's snapshots not in ``keep``.

    The retirement goes with the create (one monitor round for both, see the module docstring) and never
    delays the post-hook: a frozen guest thaws as soon as its snapshot exists. Returns warnings (a failed
    post-hook, snapshots that could not be removed: they cost space, not data).
    """
    warnings: list[str] = []
    retirement: Retirement | None = None
    try:
        if hooks.pre:
            run_hook("pre", hooks.pre, hooks.timeout)
        retirement = source.snapshot_and_retire(revision_id, keep)
    finally:
        if hooks.post:
            try:
                run_hook("post", hooks.post, hooks.timeout)
            except Exception as exc:  # the snapshot exists: keep the backup, report the hook
                warnings.append(str(exc))
        if retirement is not None:
            warnings.extend(retirement.wait())
    return warnings


def _store_blocks(
    store: _ChunkStore,
    snap: Snapshot,
    parent: Revision | None,
    chunk_size: int,
    threads: int | None,
    progress: ProgressCallback | None,
) -> list[str | None]:
    size = snap.size
    count = -(-size // chunk_size)
    chunks: list[str | None] = [None] * count
    changed = snap.changed_ranges()
    reusable = parent is not None and changed is not None and parent.size == size
    changed_idx = _chunk_indices(changed or [], chunk_size) if reusable else set()
    # An incremental reads the changed blocks and nothing else: no map of the whole image's data (for rbd: a
    # second diff over every object); the diff itself names the changed blocks that are holes now.
    data = None if reusable else snap.data_ranges()
    data_idx = _chunk_indices(data, chunk_size) if data is not None else None
    removed_idx = _covered_indices(snap.removed_ranges(), chunk_size, size) if reusable else set()
    workers = threads or default_threads()
    window: deque[tuple[int, Future[str | None]]] = deque()
    done_bytes = 0

    def collect(limit: int) -> None:
        nonlocal done_bytes
        while len(window) > limit:
            index, future = window.popleft()
            chunks[index] = future.result()
            done_bytes += min(chunk_size, size - index * chunk_size)
            if progress:
                progress("backup", done_bytes, size)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backup") as pool:
        for index in range(count):
            offset = index * chunk_size
            length = min(chunk_size, size - offset)
            if reusable and index not in changed_idx and parent is not None:
                if store.reuse(parent.chunks[index]):
                    chunks[index] = parent.chunks[index]
                    continue
            if (data_idx is not None and index not in data_idx) or index in removed_idx:
                store.count_hole()
                continue
            window.append((index, pool.submit(store.take, snap, offset, length)))
            collect(2 * workers)
        collect(0)
    if progress:
        progress("backup", size, size)
    return chunks


def _quietly(action: Callable[[], None]) -> None:
    try:
        action()
    except Exception:  # noqa: S110 - cleanup after a failure must not hide the failure
        pass
