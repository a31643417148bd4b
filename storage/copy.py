"""``lifeboat store copy SRC_ROOT DST_ROOT``: move repositories between roots of any backend, verified, resumable.

A copy is a replication pull whose source is another root instead of a portal (and it reuses the pull's
machinery, ``replicate.fetch_chunks`` and the manifest rules): every chunk the destination lacks is read as
stored, decompressed and re-hashed against its name before it is written (damage at the source is never
copied as good), each manifest is written only after every chunk it names is durable, and a rerun skips the
revisions and chunks already there, so an interrupted copy continues where it stopped. The source is read
under its shared lock (backups of the VM wait; restores go on), the destination written under its exclusive one.

Trust travels with the manifest: a revision distrusted at the source arrives distrusted; one the destination
holds distrusted is copied again once the source trusts it. Nothing at the destination is deleted.

``convert`` (``store copy --encrypt``) is the other kind of copy: a plain repository into a new encrypted one.
Its bytes cannot move as stored (every chunk gets a new, keyed name and is sealed), so it reads each block
through the source's decode (re-hashed against its plain name) and seals it for the destination, then rewrites
the manifests with the new names; see ``convert_repository``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .backend import open_store
from .errors import StorageError, UnknownVM
from .keys import KeyRing
from .manifest import Revision
from .names import check_name
from .replicate import DEFAULT_THREADS, PullResult, _open_replica, _write_manifests, fetch_chunks
from .repository import ChunkDamaged, Repository, check_config, has_repository, list_vms
from .verify import VerifyResult, verify


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


# -- converting a plain repository into an encrypted one -------------------------------------------------

class AlreadyEncrypted(StorageError):
    """the repository of VM {!r} under {} is already encrypted: copy it as it is (without --encrypt)"""


class ConvertNeedsKey(StorageError):
    """--encrypt needs the organisation key that wraps the new repositories' keys (--key-file PATH)"""


class NotThisConversion(StorageError):
    """{} already holds a repository of VM {!r} that is not a conversion of {}: convert into another root"""


def convert(src_root: str, dst_root: str, ring: KeyRing | None, *, vms: list[str] | None = None,
            threads: int = DEFAULT_THREADS, wait: float | None = 0.0,
            unclean: list[str] | None = None) -> PullResult:
    """Convert plain repositories of ``src_root`` into new encrypted ones at ``dst_root`` (``store copy
    --encrypt``), each verified with the key at the end; see ``convert_repository``. Every refusal (an encrypted
    source, a destination that is another repository, no key) comes before anything is written. Repositories
    whose final verify is not clean are named in ``unclean``."""
    started = time.monotonic()
    if ring is None or ring.current is None:
        raise ConvertNeedsKey()
    if open_store(src_root).canonical_root() == open_store(dst_root).canonical_root():
        raise SameRoot(src_root, dst_root)
    names = list(vms) if vms else list_vms(src_root)
    for name in names:
        check_name("VM", name)
        if not has_repository(src_root, name):
            raise UnknownVM(name, src_root)
    sources = {name: Repository.open(src_root, name, require_key=False) for name in names}
    for name, source in sources.items():
        if source.encrypted:
            raise AlreadyEncrypted(name, src_root)
        if has_repository(dst_root, name):
            _check_destination(Repository.open(dst_root, name, keys=ring), source, dst_root)
    result = PullResult()
    for name, source in sources.items():
        checked = convert_repository(source, dst_root, ring, result, threads=threads, wait=wait)
        if not checked.clean and unclean is not None:
            unclean.append(f"{name} ({len(checked.damaged_chunks)} damaged chunks, "
                           f"{len(checked.unreadable_revisions)} unreadable manifests)")
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _check_destination(target: Repository, source: Repository, dst_root: str) -> None:
    """The destination must be an encrypted conversion of this very source (same VM, same creation time)."""
    origin = target.config.get("converted_from")
    mine = {"vm": source.config.get("vm"), "created": source.config.get("created")}
    if not target.encrypted or origin != mine or target.chunk_size != source.chunk_size:
        raise NotThisConversion(dst_root, source.vm, source.path)


def convert_repository(source: Repository, dst_root: str, ring: KeyRing, result: PullResult, *,
                       threads: int = DEFAULT_THREADS, wait: float | None = 0.0) -> VerifyResult:
    """Convert one plain repository into an encrypted one at ``dst_root`` (created, or continued), then verify it.

    Every chunk a revision to convert names is read from the source, decompressed and re-hashed against its
    plain name (damage is never converted as good), named by the keyed BLAKE3 of the destination's name key,
    sealed and written; each manifest is then rewritten with the new names and sealed (same id, created time,
    parent, trust, protection, tags, disks), only once every chunk it names is durable. A rerun continues:
    revisions already at the destination are skipped, and since the plain -> keyed mapping is deterministic
    under the name key, a chunk is re-read to learn its new name (or the mapping is taken from a converted
    manifest that lists it, position by position) but not sealed or written again when it is already there.
    A revision naming a chunk that cannot be read at the source (missing, damaged) is not converted (it is
    reported incomplete, exit 1): a block that cannot be read has no keyed name. The source is only read, under
    its shared lock. Returns the final verify's result (verify with the key: it
    marks the clean revisions verified, as any verify does).
    """
    name = source.vm
    if has_repository(dst_root, name):
        target = Repository.open(dst_root, name, keys=ring)
        _check_destination(target, source, dst_root)
    else:
        target = Repository.create_converted(dst_root, name, source.config, ring)
        _check_destination(target, source, dst_root)  # another host created it first
    result.repositories.append(name)
    with source.lock(exclusive=False, wait=wait, purpose="convert (source)"), \
            target.lock(exclusive=True, wait=wait, purpose="convert") as held:
        target.remove_leftovers()
        target.ensure_folders()
        local = {r.id: r for r in target.revisions()}
        mapping: dict[str, str] = {}
        wanted: list[Revision] = []
        for revision in source.revisions():
            mine = local.get(revision.id)
            if mine is not None:
                _learn_mapping(revision, mine, mapping)
                if not (mine.distrusted and not revision.distrusted):
                    continue
            wanted.append(revision)
        for revision_id in sorted(source.unreadable):
            result.revisions_incomplete.append(f"{name}/{revision_id}")
        needed = list(dict.fromkeys(c for revision in wanted for c in revision.all_chunks()))
        todo = [c for c in needed if c not in mapping or not target.has_chunk(mapping[c])]
        result.chunks_present += len(needed) - len(todo)
        failed = _convert_chunks(source, target, todo, mapping, result, threads)
        held.check()
        for revision in sorted(wanted, key=lambda r: (r.created, r.id)):
            lacking = {c for c in revision.all_chunks() if c in failed}
            if lacking:  # no keyed name for a block that cannot be read: the revision cannot be converted
                result.revisions_incomplete.append(f"{name}/{revision.id}")
                for chunk in lacking:
                    result.chunks_failed[chunk] = failed[chunk]
                continue
            target.write_revision(_renamed(revision, mapping))
            result.revisions_pulled.append(f"{name}/{revision.id}")
    return verify(dst_root, name, threads=threads, wait=wait, keys=ring)


def _learn_mapping(plain: Revision, converted: Revision, mapping: dict[str, str]) -> None:
    """Plain -> keyed names from a revision converted before: its disks' chunk lists match position by position."""
    if [(d.name, len(d.chunks)) for d in plain.disks] != [(d.name, len(d.chunks)) for d in converted.disks]:
        return  # not the same revision after all (it is not trusted for names; the chunks are re-read)
    for old, new in zip(plain.disks, converted.disks, strict=True):
        for a, b in zip(old.chunks, new.chunks, strict=True):
            if a is not None and b is not None:
                mapping.setdefault(a, b)


def _convert_chunks(source: Repository, target: Repository, chunks: list[str], mapping: dict[str, str],
                    result: PullResult, threads: int) -> dict[str, str]:
    """Read, check, rename, seal and write ``chunks`` (in parallel); returns those that failed (name -> why).

    Written through the destination's batched chunk writer (durable when it closes, as a pull's), so an
    interrupted conversion leaves only temp files, removed by the rerun."""
    failed: dict[str, str] = {}
    lock = threading.Lock()
    writer = target.chunk_writer(batched=True)

    def one(chunk: str) -> None:
        try:
            data = source.read_chunk(chunk)
        except ChunkDamaged as exc:
            with lock:
                failed[chunk] = f"at the source: {exc.reason}"
            return
        new = target.chunk_name(data)
        written = 0
        if not target.has_chunk(new):
            stored = target.encode(new, data)
            writer.write(target.chunk_key(new), stored)
            written = len(stored)
        with lock:
            mapping[chunk] = new
            if written:
                result.chunks_fetched += 1
                result.bytes_fetched += written
            else:
                result.chunks_present += 1

    pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="convert")
    try:
        for future in [pool.submit(one, c) for c in chunks]:
            future.result()  # a local error (disk full): stop the conversion
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C or an error: queued chunks never start
        writer.close()
    target.sync_chunk_folders({mapping[c][:2] for c in chunks if c in mapping})
    return failed


def _renamed(revision: Revision, mapping: dict[str, str]) -> Revision:
    """The revision with every chunk list in keyed names, to be sealed afresh (nothing else changes)."""
    disks = [dataclasses.replace(d, chunks=[None if c is None else mapping[c] for c in d.chunks])
             for d in revision.disks]
    return dataclasses.replace(revision, disks=disks, sealed=None, sealed_chunks=None)
