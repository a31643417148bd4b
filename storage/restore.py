"""Restores: write a revision to a file, block device or rbd image, in parallel, sparse and resumable.

Damage never stops a restore: a chunk that is missing or does not match its hash is zero-filled, the
restore runs to the end, and the result names every damaged byte range, so an operator knows exactly
what was lost instead of watching the same restore abort at the same place again and again.

Resuming: the engine records finished chunks in the target's state file after each flush; running the
same restore again (same revision, same target) skips them. For a file target the partial output is
``TARGET.lifeboat-partial`` and its state ``TARGET.lifeboat-partial.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .backup import default_threads
from .durable import BackgroundFlush
from .fsutil import read_regular, write_json_atomic
from .manifest import ROOT_DISK, Range, Revision, merge_ranges
from .repository import ChunkDamaged, Repository
from .targets import Target, open_target

ProgressCallback = Callable[[str, int, int], None]

FLUSH_BEHIND_CHUNKS = 16  # with sync: start writing to disk every 64 MiB rather than all at the end

# How often the resume state is saved: at most this many chunks (256 MiB) are written again on resume.
# LIFEBOAT_RESTORE_STATE_EVERY overrides it (tests use small values to interrupt short restores).
STATE_EVERY_CHUNKS = int(os.environ.get("LIFEBOAT_RESTORE_STATE_EVERY", "64"))
#: the largest resume state read (runs of done chunks and damaged ranges: a few bytes per run)
MAX_STATE_BYTES = 64 << 20


@dataclass
class RestoreResult:
    revision: str
    bytes: int
    disk: str = ROOT_DISK
    seconds: float = 0.0
    damaged: list[Range] = field(default_factory=list)
    damaged_chunks: list[str] = field(default_factory=list)
    resumed: bool = False
    chunks_written: int = 0
    chunks_skipped: int = 0  # already written by an interrupted earlier run

    def as_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["damaged"] = [list(r) for r in self.damaged]
        return doc


@dataclass
class _ResumeState:
    revision: str
    size: int
    disk: str
    done: set[int] = field(default_factory=set)
    damaged: list[Range] = field(default_factory=list)
    damaged_chunks: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: str, revision: Revision) -> _ResumeState | None:
        try:
            doc = json.loads(read_regular(path, MAX_STATE_BYTES))  # beside a target anyone may name: no FIFO
            disk = doc.get("disk", ROOT_DISK)  # states written before multi-disk revisions name no disk
            if doc["revision"] != revision.id or doc["size"] != revision.size or disk != revision.disk().name:
                return None
            done = {i for start, end in doc["done"] for i in range(start, end)}
            damaged = [(int(s), int(e)) for s, e in doc["damaged"]]
            return cls(revision.id, revision.size, disk, done, damaged, set(doc["damaged_chunks"]))
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None  # no usable state: start over

    def save(self, path: str) -> None:
        write_json_atomic(path, {
            "revision": self.revision,
            "size": self.size,
            "disk": self.disk,
            "done": _index_runs(self.done),
            "damaged": merge_ranges(self.damaged),
            "damaged_chunks": sorted(self.damaged_chunks),
        })


def _index_runs(indices: set[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for index in sorted(indices):
        if runs and runs[-1][1] == index:
            runs[-1][1] = index + 1
        else:
            runs.append([index, index + 1])
    return runs


def restore(
    root: str,
    vm: str,
    revision_id: str,
    target_spec: str,
    *,
    force: bool = False,
    threads: int | None = None,
    wait: float | None = None,
    sync: bool = True,
    progress: ProgressCallback | None = None,
    limit_bytes_per_second: int | None = None,
    disk: str | None = None,
) -> RestoreResult:
    """Restore one disk of a revision (or ``latest``) to ``target_spec``; see the module docstring.

    ``disk`` names the disk; without it the revision's only disk is restored, and a revision of several disks
    raises AmbiguousDisk (nothing is opened or written).

    ``sync`` flushes the output to stable storage before publishing it (cp, restic and borg do not);
    turn it off for scratch restores such as fire drills. ``limit_bytes_per_second`` caps how fast chunks
    are written, so restores running beside production traffic leave the storage network room.
    """
    started = time.monotonic()
    repo = Repository.open(root, vm)
    with repo.lock(exclusive=False, wait=wait, purpose="restore"):
        revision = repo.resolve(revision_id).only(disk)
        state_dir = repo.state_dir()
        target = open_target(target_spec, force=force, state_dir=state_dir)
        state = _ResumeState.load(target.state_path, revision) if target.can_resume() else None
        resumed = state is not None
        if state is None:
            state = _ResumeState(revision.id, revision.size, revision.disk().name)
        os.makedirs(os.path.dirname(target.state_path) or ".", exist_ok=True)
        try:
            target.begin(revision.size, resuming=resumed)
            if resumed:
                _recheck_done(repo, revision, target, state)
            flusher = BackgroundFlush(target.flush) if sync else None
            try:
                result = _write_chunks(repo, revision, target, state, threads or default_threads(repo), progress,
                                       flusher, Throttle(limit_bytes_per_second))
            finally:
                if flusher is not None:
                    flusher.close()
            if sync:
                target.flush()
            target.commit()
        finally:
            target.close()
        if os.path.exists(target.state_path):
            os.unlink(target.state_path)
        result.resumed = resumed
        result.seconds = round(time.monotonic() - started, 3)
        return result


class Throttle:
    """Sleep as needed so that bytes accounted stay within ``rate`` per second on average (None: no limit)."""

    def __init__(self, rate: int | None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("a rate limit must be a positive number of bytes per second")
        self.rate = rate
        self.started = time.monotonic()
        self.total = 0

    def account(self, nbytes: int) -> None:
        if self.rate is None:
            return
        self.total += nbytes
        ahead = self.total / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(ahead)


def _recheck_done(repo: Repository, revision: Revision, target: Target, state: _ResumeState) -> None:
    """Forget 'done' chunks whose bytes in the partial output do not match the manifest.

    The state file may be newer than the data on disk (no flush before saving it), so nothing an
    interrupted run recorded is believed without reading it back.
    """
    if not target.can_read_back:
        return
    for index in sorted(state.done):
        start, end = revision.chunk_range(index)
        chunk = revision.chunks[index]
        data = target.read_back(start, end - start)
        damaged_before = any(s <= start and end <= e for s, e in state.damaged)
        if damaged_before:
            continue  # zero-filled on purpose; the chunk is still damaged
        if chunk is None:
            intact = data == bytes(end - start)
        else:
            intact = len(data) == end - start and repo.chunk_name(data) == chunk
        if not intact:
            state.done.discard(index)


def _write_chunks(
    repo: Repository,
    revision: Revision,
    target: Target,
    state: _ResumeState,
    workers: int,
    progress: ProgressCallback | None,
    flusher: BackgroundFlush | None = None,
    throttle: Throttle | None = None,
) -> RestoreResult:
    result = RestoreResult(revision=revision.id, bytes=revision.size, disk=revision.disk().name,
                           chunks_skipped=len(state.done))

    def copy(index: int) -> tuple[int, str | None]:
        start, end = revision.chunk_range(index)
        chunk = revision.chunks[index]
        if chunk is None:
            target.zero(start, end - start)
            return index, None
        try:
            data = repo.read_chunk(chunk)
            if len(data) != end - start:
                raise ChunkDamaged(chunk, "length does not match the manifest")
        except ChunkDamaged:
            target.zero(start, end - start)
            return index, chunk
        target.write(start, data)
        return index, None

    window: deque[Future[tuple[int, str | None]]] = deque()
    since_flush = 0
    done_bytes = sum(revision.chunk_range(i)[1] - revision.chunk_range(i)[0] for i in state.done)

    def collect(limit: int) -> None:
        nonlocal since_flush, done_bytes
        while len(window) > limit:
            index, damaged_chunk = window.popleft().result()
            start, end = revision.chunk_range(index)
            if damaged_chunk is not None:
                state.damaged.append((start, end))
                state.damaged_chunks.add(damaged_chunk)
            state.done.add(index)
            result.chunks_written += 1
            since_flush += 1
            done_bytes += end - start
            if flusher is not None and result.chunks_written % FLUSH_BEHIND_CHUNKS == 0:
                flusher.request()  # let the disk write while the CPUs work on the next chunks
            if progress:
                progress("restore", done_bytes, revision.size)
            if throttle is not None:
                throttle.account(end - start)
            if since_flush >= STATE_EVERY_CHUNKS:
                if not target.can_read_back:
                    target.flush()  # data first, then the record that says it is there
                state.save(target.state_path)
                since_flush = 0

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="restore") as pool:
        for index, chunk in enumerate(revision.chunks):
            if index in state.done:
                continue
            if chunk is None and target.zero_is_free:
                state.done.add(index)  # a hole already reads as zeros
                start, end = revision.chunk_range(index)
                done_bytes += end - start
                continue
            window.append(pool.submit(copy, index))
            collect(2 * workers)
        collect(0)
    if progress:
        progress("restore", revision.size, revision.size)
    result.damaged = merge_ranges(state.damaged)
    result.damaged_chunks = sorted(state.damaged_chunks)
    return result
