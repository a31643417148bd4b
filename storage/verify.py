"""Verification: re-read and re-hash chunks, quarantine damage, and set each revision's trust.

A damaged chunk is moved to ``quarantine/`` (never deleted), so the next backup no longer finds it and
writes it again from the source; every revision that needs it becomes ``distrusted``. A revision whose
chunks are all intact becomes ``verified`` again, even if it was distrusted before (its chunks were
rewritten by a later backup, or restored by a repair).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import clock
from .backup import default_threads
from .keys import KeyRing
from .manifest import DISTRUSTED, VERIFIED, Range, Revision
from .repository import ChunkDamaged, Repository


@dataclass
class VerifyResult:
    revisions_checked: list[str] = field(default_factory=list)
    chunks_checked: int = 0
    bytes_checked: int = 0
    damaged_chunks: list[str] = field(default_factory=list)
    missing_chunks: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    distrusted_revisions: list[str] = field(default_factory=list)
    #: revision id -> its damaged byte ranges, for revisions of one disk (as before multi-disk revisions)
    damaged_ranges: dict[str, list[Range]] = field(default_factory=dict)
    #: revision id -> disk name -> the disk's damaged byte ranges, for every damaged revision
    damaged_disk_ranges: dict[str, dict[str, list[Range]]] = field(default_factory=dict)
    #: manifests that could not be read (damage too: the revision cannot be restored); id -> why in ``reasons``
    unreadable_revisions: list[str] = field(default_factory=list)
    unreadable_reasons: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: False when an encrypted repository was verified without its key: outer hashes only, not contents
    contents_checked: bool = True

    @property
    def clean(self) -> bool:
        return not self.damaged_chunks and not self.unreadable_revisions

    def as_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["damaged_ranges"] = {k: [list(r) for r in v] for k, v in self.damaged_ranges.items()}
        doc["damaged_disk_ranges"] = {k: {disk: [list(r) for r in v] for disk, v in disks.items()}
                                      for k, disks in self.damaged_disk_ranges.items()}
        doc["clean"] = self.clean
        return doc


def verify(
    root: str, vm: str, revision_id: str | None = None, *, threads: int | None = None, wait: float | None = None,
    without_key: bool = False, keys: KeyRing | None = None,
) -> VerifyResult:
    """Verify one revision (or ``latest``), or every revision of the VM when ``revision_id`` is None.

    ``without_key`` (an encrypted repository at a site without its key): each chunk's outer hash is checked
    instead of its content, and missing chunks are found from the names the manifests show outside. With the
    key (or plain) chunks are opened, decompressed and re-hashed, and a sealed one's outer hash checked too.
    ``keys`` open an encrypted repository (default: ``keys.default_keyring()``).
    """
    started = time.monotonic()
    repo = Repository.open(root, vm, keyless=without_key, keys=keys)
    result = VerifyResult(contents_checked=repo.can_read)
    with repo.lock(exclusive=False, wait=wait, purpose="verify"):
        revisions = [repo.resolve(revision_id)] if revision_id else repo.revisions()
        if not revision_id:
            result.unreadable_revisions = sorted(repo.unreadable)
            result.unreadable_reasons = dict(sorted(repo.unreadable.items()))
        wanted = sorted({c for r in revisions for c in r.all_chunks()})
        bad: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=threads or default_threads(repo)) as pool:
            for chunk, size, reason in pool.map(lambda c: _check(repo, c), wanted):
                result.chunks_checked += 1
                result.bytes_checked += size
                if reason is not None:
                    bad[chunk] = reason
        for chunk, reason in sorted(bad.items()):
            result.damaged_chunks.append(chunk)
            if reason == "missing":
                result.missing_chunks.append(chunk)
            elif repo.quarantine(chunk):
                result.quarantined.append(chunk)
        for revision in revisions:
            result.revisions_checked.append(revision.id)
            _record_trust(repo, revision, set(bad), result)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _check(repo: Repository, chunk: str) -> tuple[str, int, str | None]:
    try:
        size = repo.check_chunk(chunk)
    except ChunkDamaged as exc:
        return chunk, 0, exc.reason
    return chunk, size, None


def _record_trust(repo: Repository, revision: Revision, bad: set[str], result: VerifyResult) -> None:
    ranges = revision.disk_ranges_of(bad)
    if not revision.disks and bad.intersection(revision.all_chunks()):
        ranges = {"(sealed)": []}  # read without the key: damaged, but where on which disk is sealed
    moment = clock.isoformat(clock.now())

    def change(current: Revision) -> None:
        if ranges:
            current.trust = DISTRUSTED
        else:
            current.trust = VERIFIED
            current.verified_at = moment

    if ranges:
        result.distrusted_revisions.append(revision.id)
        result.damaged_disk_ranges[revision.id] = ranges
        if len(revision.disks) == 1:
            result.damaged_ranges[revision.id] = ranges[revision.disks[0].name]
    try:
        repo.update_revision(revision.id, change)
    except Exception:  # noqa: S110 - forgotten meanwhile: nothing left to mark
        pass
