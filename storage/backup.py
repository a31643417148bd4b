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
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial

from . import clock, counters
from .errors import BadSource, SourceError, StorageError
from .hooks import Hooks, run_hook
from .keys import KeyRing
from .manifest import ROOT_DISK, DiskImage, Revision
from .names import check_name
from .repository import CHUNK_SIZE, ChunkDamaged, Repository
from .sources import Snapshot, Source, open_source, take_snapshots
from .sources.base import Range, Retirement

ProgressCallback = Callable[[str, int, int], None]  # phase, bytes done, bytes total

ZERO_CHUNK_CACHE: dict[int, bytes] = {}


def default_threads(repo: Repository | None = None) -> int:
    """One thread per core (at least 2); more for a store whose every read and stat waits for the network
    (RADOS: the threads mostly wait, and the waits overlap)."""
    cores = max(2, os.cpu_count() or 2)
    return max(cores, repo.store.io_threads) if repo is not None else cores


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

    def counts(self) -> dict[str, int]:
        """The counters alone (a disk's share of a backup is the difference of two of these)."""
        return {key: value for key, value in self.__dict__.items() if isinstance(value, int)}


class _ChunkStore:
    """Decides per block whether to write it, and counts. Shared by the worker threads."""

    def __init__(self, repo: Repository, suspect: set[str]) -> None:
        self.repo = repo
        self.suspect = suspect
        self.writer = repo.chunk_writer()
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
        chunk = self.repo.chunk_name(data)
        with self._lock:
            first = chunk not in self._claimed
            self._claimed.add(chunk)
        suspect = chunk in self.suspect
        if not first or (self.repo.has_chunk(chunk) and (not suspect or self._intact(chunk))):
            self._count(read=length, reused=1)
            return chunk
        stored = self.repo.encode(chunk, data)
        self.writer.write(self.repo.chunk_key(chunk), stored)
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

    def add_source_read(self, nbytes: int) -> None:
        self._count(read=nbytes)

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


#: what ``backup`` accepts as the disks of a VM: one spec (the disk ``root``), or (name, spec) pairs in order
DiskSpecs = str | Mapping[str, str] | Sequence[tuple[str, str]]


class DuplicateDisk(StorageError):
    """disk {} is given twice ({}): each disk of a VM needs its own name and its own source"""


def disk_specs(specs: DiskSpecs) -> list[tuple[str, str]]:
    """The (name, source spec) pairs of a backup, names checked and neither names nor sources repeated.

    Two disks reading one source would take two snapshots of one image under one name: refused, like a name
    given twice (which would make one disk shadow the other in the manifest).
    """
    pairs = [(ROOT_DISK, specs)] if isinstance(specs, str) else list(
        specs.items() if isinstance(specs, Mapping) else specs)
    if not pairs:
        raise BadSource("")
    names: set[str] = set()
    sources: set[str] = set()
    for name, spec in pairs:
        check_name("disk", name)
        if name in names:
            raise DuplicateDisk(f"name {name!r}", spec)
        if spec in sources:
            raise DuplicateDisk(f"source {spec!r}", name)
        names.add(name)
        sources.add(spec)
    return pairs


def backup(
    root: str,
    vm: str,
    source_spec: DiskSpecs,
    *,
    hooks: Hooks | None = None,
    tags: Iterable[str] = (),
    threads: int | None = None,
    wait: float | None = 0.0,
    progress: ProgressCallback | None = None,
    chunk_size: int = CHUNK_SIZE,
    keys: KeyRing | None = None,
) -> Revision:
    """Back every disk of ``source_spec`` up into ``ROOT/<vm>`` as one revision (stats in ``.stats``).

    ``source_spec`` is one spec (``file:PATH``, ``rbd:POOL/IMAGE``; the disk is called ``root``) or the VM's
    disks as (name, spec) pairs. Every disk is snapshotted inside one pre-hook/post-hook freeze, then read
    incrementally from its own disk in the parent revision. A disk that fails fails the whole revision: no
    manifest is written and every snapshot of this backup is removed.
    ``chunk_size`` applies only when this backup creates the repository (tests use small chunks). ``keys``
    (default: ``keys.default_keyring()``) open an encrypted repository, and encrypt one this backup creates.
    """
    started = time.monotonic()
    pairs = disk_specs(source_spec)
    with ExitStack() as stack:
        disks: list[tuple[str, Source]] = []
        for name, spec in pairs:  # bad specs fail before anything is created
            source = open_source(spec)
            stack.callback(source.close)
            disks.append((name, source))
        repo = Repository.open_or_create(root, vm, chunk_size=chunk_size, keys=keys)  # a wrong key: no snapshot
        return _backup(disks, repo, vm, hooks, tags, threads, wait, progress, started)
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow exceptions


def _backup(disks: list[tuple[str, Source]], repo: Repository, vm: str, hooks: Hooks | None, tags: Iterable[str],
            threads: int | None, wait: float | None, progress: ProgressCallback | None, started: float) -> Revision:
    with repo.lock(exclusive=True, wait=wait, purpose="backup") as held:
        running = f"{vm}/backup.running"
        if repo.store.exists(running):  # the last backup was interrupted: its temp files are still there
            repo.remove_leftovers()
        repo.store.put(running, f"{os.getpid()}@{socket.gethostname()}\n".encode(), durable=False)  # a hint
        repo.ensure_folders()  # a chunk folder lost meanwhile must not fail this and every later backup
        revisions = repo.revisions()
        skipped = [f"skipped revision {rid}: {why}" for rid, why in sorted(repo.unreadable.items())]
        trusted = [r for r in revisions if not r.distrusted]
        parent = trusted[-1] if trusted else None
        suspect = repo.quarantined_chunks()
        for revision in revisions:
            if revision.distrusted:
                suspect.update(revision.all_chunks())
        revision_id = repo.new_revision_id()
        created = clock.isoformat(clock.now())
        keep = {revision_id, parent.id} if parent else {revision_id}
        sources = [source for _, source in disks]
        warnings = snapshot_all(sources, revision_id, hooks or Hooks(), keep)
        store = _ChunkStore(repo, suspect)
        store.stats.warnings.extend(skipped + warnings)
        try:
            images = [_back_up_disk(store, name, source, revision_id, _parent_disk(parent, name, source),
                                    threads, progress) for name, source in disks]
            store.make_durable()
            stats = store.stats.as_dict()
            stats["seconds"] = round(time.monotonic() - started, 3)
            stats["incremental"] = store.stats.chunks_unread > 0
            revision = Revision(
                id=revision_id, vm=vm, created=created, chunk_size=repo.chunk_size, disks=images,
                parent=parent.id if parent else None, tags=sorted(set(tags)), stats=stats,
            )
            held.check()  # a lock that lapsed meanwhile (a store outage): gc may have run; publish nothing
            counters.event("manifest")
            repo.write_revision(revision)
        except BaseException:
            _quietly(store.writer.close)  # no flusher thread outlives a failed backup
            for source in sources:
                _quietly(partial(source.discard_snapshot, revision_id))
            raise
        repo.store.delete(running)
        return revision


def _parent_disk(parent: Revision | None, name: str, source: Source) -> Revision | None:
    """The parent revision seen as this disk, when it has the disk from the same source (else a full read).

    A disk added to the VM since, or one whose source changed (another image under the same name), has no
    parent: its blocks must all be read, never taken from a different image's chunk list.
    """
    if parent is None or not parent.has_disk(name) or parent.disk(name).source != source.spec:
        return None
    return parent.only(name)


def _back_up_disk(store: _ChunkStore, name: str, source: Source, revision_id: str, parent: Revision | None,
                  threads: int | None, progress: ProgressCallback | None) -> DiskImage:
    """Read one disk's snapshot into the shared chunk store; the disk's own stats go into its entry."""
    before = store.stats.counts()
    with source.open_snapshot(revision_id, parent.id if parent else None) as snap:
        chunks = _store_blocks(store, snap, parent, store.repo.chunk_size, threads, progress)
        size = snap.size
        source_read = snap.bytes_read_by_source
    store.add_source_read(source_read)  # e.g. what computing a diff cost the source
    stats: dict[str, object] = {key: value - before[key] for key, value in store.stats.counts().items()}
    stats["incremental"] = store.stats.chunks_unread > before["chunks_unread"]
    return DiskImage(name, size, chunks, source.spec, stats)


def snapshot_all(sources: list[Source], revision_id: str, hooks: Hooks, keep: set[str]) -> list[str]:
    """Pre-hook, a snapshot of every disk, post-hook (always); meanwhile each source retires its snapshots not
    in ``keep``. Returns warnings (a failed post-hook, snapshots that could not be removed: space, not data).

    The freeze lasts only for the snapshots: a retirement goes with its create (one monitor round for both) and
    never delays the post-hook. When one snapshot fails, those already taken are removed before the error goes
    up: a failed backup leaves no snapshot on any disk.
    """
    warnings: list[str] = []
    retirements: list[Retirement] = []
    for source in sources:
        source.prepare()
    try:
        if hooks.pre:
            run_hook("pre", hooks.pre, hooks.timeout)
        take_snapshots(sources, revision_id, keep, retirements)
    finally:
        if hooks.post:
            try:
                run_hook("post", hooks.post, hooks.timeout)
            except Exception as exc:  # the snapshots exist: keep the backup, report the hook
                warnings.append(str(exc))
        for retirement in retirements:
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
    workers = threads or default_threads(store.repo)
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
