"""``lifeboat store copy SRC_ROOT DST_ROOT``: move repositories between roots of any backend, verified, resumable.

A copy is a replication pull whose source is another root instead of a portal (and it reuses the pull's
machinery, ``replicate.fetch_chunks`` and the manifest rules): every chunk the destination lacks is read as
stored, decompressed and re-hashed against its name before it is written (damage at the source is never
copied as good), each manifest is written only after every chunk it names is durable, and a rerun skips the
revisions and chunks already there, so an interrupted copy continues where it stopped. The source is read
under its shared lock (backups of the VM wait; restores go on), the destination written under its exclusive one.

Trust travels with the manifest: a revision distrusted at the source arrives distrusted; one the destination
holds distrusted is copied again once the source trusts it. Nothing at the destination is deleted.
"""

from __future__ import annotations

import time

from .backend import open_store
from .errors import StorageError, UnknownVM
from .manifest import Revision
from .names import check_name
from .replicate import DEFAULT_THREADS, PullResult, _open_replica, _write_manifests, fetch_chunks
from .repository import ChunkDamaged, Repository, check_config, has_repository, list_vms


class SameRoot(StorageError):
    """{} and {} are the same root: copy into another one"""


def copy(src_root: str, dst_root: str, *, vms: list[str] | None = None, threads: int = DEFAULT_THREADS,
         wait: float | None = 0.0) -> PullResult:
    """Copy every repository of ``src_root`` (or those ``vms`` name) into ``dst_root``; see the module docstring."""
    started = time.monotonic()
    if open_store(src_root).canonical_root() == open_store(dst_root).canonical_root():
        raise SameRoot(src_root, dst_root)
    names = list(vms) if vms else list_vms(src_root)
    for name in names:
        check_name("VM", name)
        if not has_repository(src_root, name):
            raise UnknownVM(name, src_root)
    result = PullResult()
    for name in names:
        copy_repository(src_root, dst_root, name, result, threads=threads, wait=wait)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def copy_repository(src_root: str, dst_root: str, name: str, result: PullResult, *,
                    threads: int = DEFAULT_THREADS, wait: float | None = 0.0) -> None:
    source = Repository.open(src_root, name, require_key=False)  # ciphertext is copied as stored: no key needed
    config_bytes = source.read_config()
    target = _open_replica(dst_root, name, config_bytes, check_config(config_bytes, source.path))
    result.repositories.append(name)
    with source.lock(exclusive=False, wait=wait, purpose="copy (source)"), \
            target.lock(exclusive=True, wait=wait, purpose="copy") as held:
        target.remove_leftovers()
        target.ensure_folders()
        local = {r.id: r for r in target.revisions()}
        wanted: list[tuple[bytes, Revision]] = []
        for revision in source.revisions():
            mine = local.get(revision.id)
            if mine is not None and not (mine.distrusted and not revision.distrusted):
                continue  # have it (a distrusted copy is copied again once the source trusts it)
            wanted.append((source.read_manifest(revision.id), revision))
        for revision_id in sorted(source.unreadable):  # cannot be copied: say so, never skip silently
            result.revisions_incomplete.append(f"{name}/{revision_id}")
        needed = list(dict.fromkeys(c for _, revision in wanted for c in revision.all_chunks()))
        missing = [c for c in needed if not target.has_chunk(c)]
        result.chunks_present += len(needed) - len(missing)

        def fetch(chunk: str) -> bytes | None:
            try:
                return source.read_stored(chunk)
            except ChunkDamaged:
                return None  # missing at the source (a damaged copy fails fetch_chunks' check, and is refused)

        outcome = fetch_chunks(target, missing, fetch, threads=threads)
        result.chunks_fetched += len(outcome.fetched)
        result.bytes_fetched += sum(outcome.fetched.values())
        held.check()
        _write_manifests(target, name, wanted, outcome.failed, result)
