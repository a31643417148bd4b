"""Repair: fetch good copies of a repository's lost chunks from another copy, and trust its revisions again.

``verify`` moves damaged chunks to ``quarantine/`` and distrusts the revisions that need them; the next
backup rewrites those blocks only if the source still holds the same data. A replica (or the primary, when
the replica is the damaged side) usually still has the exact chunks, so repair:

1. finds every chunk a revision names that is not in ``chunks/`` (quarantined or lost), and re-checks the
   chunks of distrusted revisions that are still there (damage verify has not seen yet is quarantined);
2. fetches each from the other copy through ``fetch`` (a function, so it is tested without HTTP), checks it
   against its name (decompress + BLAKE3) and stores it like a backup does (temp, fsync, rename);
3. trusts again (``verified``) every distrusted revision whose chunks are now all intact, and distrusts any
   revision that still lacks a chunk.

Quarantined copies stay where they are (forensics); repair never deletes anything.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import clock
from .backup import default_threads
from .errors import UnknownRevision
from .manifest import DISTRUSTED, VERIFIED, Revision
from .replicate import DEFAULT_THREADS, FetchChunk, fetch_chunks
from .repository import ChunkDamaged, Repository


@dataclass
class RepairResult:
    chunks_missing: list[str] = field(default_factory=list)  # named by a revision, absent from chunks/
    chunks_damaged: list[str] = field(default_factory=list)  # found damaged now, and quarantined
    chunks_repaired: list[str] = field(default_factory=list)
    chunks_unavailable: dict[str, str] = field(default_factory=dict)  # chunk -> why it could not be had
    revisions_trusted: list[str] = field(default_factory=list)  # distrusted before, complete now
    revisions_distrusted: list[str] = field(default_factory=list)  # still lacking a chunk
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.chunks_unavailable

    def as_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["clean"] = self.clean
        return doc


def repair(
    root: str,
    vm: str,
    fetch: FetchChunk,
    *,
    threads: int = DEFAULT_THREADS,
    check_threads: int | None = None,
    wait: float | None = 0.0,
) -> RepairResult:
    """Heal the repository of ``vm`` with chunks from ``fetch`` (see the module docstring)."""
    started = time.monotonic()
    repo = Repository.open(root, vm, require_key=False)  # ciphertext is repaired as it is: no key needed
    result = RepairResult()
    with repo.lock(exclusive=True, wait=wait, purpose="repair"):
        repo.remove_leftovers()
        repo.ensure_folders()
        revisions = repo.revisions()
        referenced = list(dict.fromkeys(c for r in revisions for c in r.all_chunks()))
        absent = [c for c in referenced if not repo.has_chunk(c)]
        result.chunks_missing = sorted(absent)
        suspect = sorted({c for r in revisions if r.distrusted for c in r.all_chunks()} - set(absent))
        with ThreadPoolExecutor(max_workers=check_threads or default_threads(repo)) as pool:
            damaged = [c for c, intact in pool.map(lambda c: (c, _intact(repo, c)), suspect) if not intact]
        for chunk in damaged:
            repo.quarantine(chunk)
        result.chunks_damaged = damaged
        outcome = fetch_chunks(repo, absent + damaged, fetch, threads=threads)
        result.chunks_repaired = sorted(outcome.fetched)
        result.chunks_unavailable = dict(sorted(outcome.failed.items()))
        for revision in revisions:
            _record_trust(repo, revision, set(outcome.failed), result)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _intact(repo: Repository, chunk: str) -> bool:
    try:
        repo.check_chunk(chunk)
    except ChunkDamaged:
        return False
    return True


def _record_trust(repo: Repository, revision: Revision, lacking: set[str], result: RepairResult) -> None:
    incomplete = any(c in lacking for c in revision.all_chunks())
    if incomplete:
        result.revisions_distrusted.append(revision.id)
    elif revision.distrusted:
        result.revisions_trusted.append(revision.id)
    else:
        return
    moment = clock.isoformat(clock.now())

    def change(current: Revision) -> None:
        if incomplete:
            current.trust = DISTRUSTED
        else:
            current.trust = VERIFIED
            current.verified_at = moment

    try:
        repo.update_revision(revision.id, change)
    except UnknownRevision:  # forgotten meanwhile: nothing left to mark. Anything else (disk full,
        pass  # permissions, a damaged manifest) propagates: a result claiming a trust it did not record would lie
