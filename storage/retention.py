"""Forgetting revisions, protecting them, and collecting chunks no revision needs any more.

``forget`` only removes a manifest; chunks go later, in ``gc``, and only when no manifest names them and
they are older than a grace period, under the exclusive lock so gc never races a running backup (which
may just have written chunks its manifest does not name yet, or be about to reuse an unreferenced one). On a
shared store (RADOS) that lock is held across hosts, and both sides check it before they act on what they saw:
gc before each delete, a backup before its manifest, so a lock that lapsed during an outage stops them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import clock
from .backend import LockHandle
from .errors import CorruptRepository, RevisionProtected
from .fsutil import is_temp_name
from .manifest import Revision
from .repository import Repository

DEFAULT_GRACE_SECONDS = 3600.0


def forget(root: str, vm: str, revision_id: str) -> Revision:
    repo = Repository.open(root, vm)
    with repo.meta_lock():
        revision = repo.resolve(revision_id)
        if revision.protected:
            raise RevisionProtected(revision.id)
        repo.delete_revision(revision.id)
    return revision


def set_protected(root: str, vm: str, revision_id: str, protected: bool) -> Revision:
    repo = Repository.open(root, vm)
    target = repo.resolve(revision_id).id

    def change(revision: Revision) -> None:
        revision.protected = protected

    return repo.update_revision(target, change)


@dataclass
class GcResult:
    chunks_removed: int = 0
    bytes_removed: int = 0
    chunks_kept_young: int = 0
    chunks_referenced: int = 0
    leftovers_removed: int = 0
    #: manifests that could not be read: while there is one, no chunk is deleted (it may reference any of them)
    unreadable_revisions: list[str] = field(default_factory=list)
    seconds: float = 0.0


def gc(root: str, vm: str, *, grace: float = DEFAULT_GRACE_SECONDS, wait: float | None = 0.0) -> GcResult:
    """Delete unreferenced chunks older than ``grace``; see the module docstring.

    A manifest that cannot be read may reference any chunk, so while one exists gc deletes no chunk at all
    (only temp files) and names it in ``unreadable_revisions``. Without a ``revisions/`` folder every chunk would
    look unreferenced: that is refused outright.
    """
    started = time.monotonic()
    repo = Repository.open(root, vm)
    result = GcResult()
    with repo.lock(exclusive=True, wait=wait, purpose="gc") as held:
        if not repo.has_revisions_folder():
            raise CorruptRepository(repo.revisions_folder, "the folder is missing, so every chunk would look "
                                                           "unreferenced; gc deletes nothing until it is back")
        result.leftovers_removed = repo.remove_leftovers()
        with repo.meta_lock():  # a consistent view of the manifests while marking
            referenced = {c for r in repo.revisions() for c in r.all_chunks()}
            result.unreadable_revisions = sorted(repo.unreadable)
        result.chunks_referenced = len(referenced)
        if not result.unreadable_revisions:
            _sweep(repo, referenced, clock.timestamp() - grace, result, held)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _sweep(repo: Repository, referenced: set[str], cutoff: float, result: GcResult, held: LockHandle) -> None:
    """Delete the chunk files no manifest references, last modified before ``cutoff``.

    Before each delete the lock is checked: on a shared store a lock that lapsed (an outage longer than its expiry)
    may be held by a backup on another host by now, which may be about to reference the chunk.
    """
    for name, key in repo.iter_chunk_files():
        if name in referenced or is_temp_name(name):
            continue
        info = repo.store.stat(key)
        if info is None:
            continue  # gone meanwhile
        if info.mtime > cutoff:
            result.chunks_kept_young += 1
            continue
        held.check()
        repo.store.delete(key)
        result.chunks_removed += 1
        result.bytes_removed += info.size
