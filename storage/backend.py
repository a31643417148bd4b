"""Where a repository's bytes live: one small interface, a local folder (the default) or a RADOS pool.

The repository layer (``storage.repository``) names everything by a **key**, a ``/``-separated path relative to
the root (``web1/chunks/ab/ab12...``, ``web1/revisions/<id>.json``), and asks a backend to put, get, stat,
delete and list keys, and to hold the VM's locks. A root is either a folder (``LocalStore``: the key is the
path below it, byte for byte the layout docs/FORMAT.md describes, still rsync-able) or ``rados:POOL[/NAMESPACE]``
(``storage.rados_store.RadosStore``: the key is the object name). What the bytes *are* (compression, hashing) is
not a backend's business: it stores what it is given.

Contract, for every implementation:

- ``put`` is atomic (readers see the old object or the whole new one) and durable when it returns;
  ``exclusive=True`` makes it put-if-absent (False when the key existed: two hosts creating one repository);
  ``durable=False`` is for hints that may be lost in a crash (``backup.running``): no flush to the disk;
- ``get`` raises ``FileNotFoundError`` when the key is absent and another ``OSError`` when the object is not a
  plain object of at most ``limit`` bytes (damage); a store that cannot be reached raises ``StoreUnavailable``,
  which is never damage: a verify during an outage must not quarantine what it could not read;
- ``list(prefix)`` yields every key starting with ``prefix``; with ``recursive=False`` only the entries directly
  in the folder ``prefix`` names (what ``os.listdir`` sees);
- ``lock`` holds an exclusive or shared lock that other processes and hosts respect and that a dead holder
  loses (flock: with its process; RADOS: when its expiry passes unrenewed); the handle's ``check`` raises
  ``LockLost`` if the lock may have lapsed meanwhile, so a writer never publishes under a lock it lost;
- ``chunk_sink`` writes many chunks in the background; ``close`` returns once every one is durable under its
  name (never visible before) or raises the first error.
"""

from __future__ import annotations

import os
import shutil
import stat as stat_module
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Protocol

from .durable import BatchWriter, ChunkWriter
from .fsutil import fsync_dir, is_temp_name, open_regular, read_regular, temp_name, write_file_atomic
from .locks import flocked
from .store_base import RADOS_PREFIX, S3_PREFIX, BadRoot, LockLost, ObjectInfo, StoreUnavailable, Usage, not_found

__all__ = ["RADOS_PREFIX", "S3_PREFIX", "Backend", "BadRoot", "LocalStore", "LockLost", "ObjectInfo",
           "StoreUnavailable", "Usage", "is_object_root", "is_rados_root", "is_s3_root", "not_found", "open_store"]

class LockHandle(Protocol):
    def check(self) -> None:
        """Raise LockLost when the lock may have lapsed since it was taken."""


class ChunkSink(Protocol):
    def write(self, key: str, data: bytes) -> None: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """See the module docstring for the contract."""

    #: the root as the user names it (a folder, ``rados:POOL[/NAMESPACE]`` or ``s3://BUCKET[/PREFIX]``)
    root: str
    #: "local", "rados" or "s3"
    kind: str
    #: threads worth running when each operation waits for the network (0: one per core is right)
    io_threads: int

    def describe(self, key: str) -> str: ...
    def get(self, key: str, limit: int) -> bytes: ...
    def put(self, key: str, data: bytes, *, exclusive: bool = False, mode: int = 0o644, sync: bool = True,
            durable: bool = True) -> bool: ...
    def stat(self, key: str) -> ObjectInfo | None: ...
    def exists(self, key: str) -> bool: ...
    def is_file(self, key: str) -> bool: ...
    def delete(self, key: str) -> bool: ...
    def move(self, source: str, destination: str) -> bool: ...
    def list(self, prefix: str, *, recursive: bool = True) -> Iterator[str]: ...
    def lock(self, key: str, *, exclusive: bool, wait: float | None, vm: str,
             purpose: str) -> AbstractContextManager[LockHandle]: ...
    def chunk_sink(self, *, batched: bool = False) -> ChunkSink: ...
    def open_read(self, key: str, limit: int) -> tuple[IO[bytes], int] | None: ...
    # housekeeping a folder needs and an object store does not (no-ops there)
    def prepare(self, folders: Sequence[str]) -> None: ...
    def sync(self, folders: set[str]) -> None: ...
    def has_folder(self, key: str) -> bool: ...
    def is_root(self) -> bool: ...
    def holds_foreign(self, folder: str) -> bool: ...
    def state_dir(self, vm: str) -> str: ...
    def canonical_root(self) -> str: ...
    def usage(self) -> Usage: ...


class _Held:
    """A lock whose loss is its process's death (flock): it can never lapse while we run."""

    def check(self) -> None:
        return None


class _PathSink:
    """A local chunk writer (``durable``) addressed by key."""

    def __init__(self, store: LocalStore, writer: ChunkWriter | BatchWriter) -> None:
        self._store = store
        self._writer = writer

    def write(self, key: str, data: bytes) -> None:
        self._writer.write(self._store.path(key), data)

    def close(self) -> None:
        self._writer.close()


class LocalStore:
    """A folder: key ``a/b/c`` is the file ``ROOT/a/b/c``; writes are temp file + fsync + rename."""

    kind = "local"
    io_threads = 0

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/")) if key else self.root

    def describe(self, key: str) -> str:
        return self.path(key)

    def get(self, key: str, limit: int) -> bytes:
        return read_regular(self.path(key), limit)

    def put(self, key: str, data: bytes, *, exclusive: bool = False, mode: int = 0o644, sync: bool = True,
            durable: bool = True) -> bool:
        path = self.path(key)
        if not exclusive:
            write_file_atomic(path, data, mode=mode, sync_dir=sync and durable, sync_file=durable)
            return True
        tmp = temp_name(path)
        write_file_atomic(tmp, data, mode=mode, sync_dir=False)
        try:
            os.link(tmp, path)  # fails if the name exists: put-if-absent
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        if sync:
            fsync_dir(os.path.dirname(path) or ".")
        return True

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            info = os.lstat(self.path(key))
        except FileNotFoundError:
            return None
        return ObjectInfo(info.st_size, info.st_mtime, stat_module.S_ISREG(info.st_mode))

    def exists(self, key: str) -> bool:
        return os.path.exists(self.path(key))

    def is_file(self, key: str) -> bool:
        return os.path.isfile(self.path(key))

    def delete(self, key: str) -> bool:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            return False
        return True

    def move(self, source: str, destination: str) -> bool:
        try:
            os.rename(self.path(source), self.path(destination))
        except FileNotFoundError:
            return False
        fsync_dir(os.path.dirname(self.path(source)))
        fsync_dir(os.path.dirname(self.path(destination)))
        return True

    def list(self, prefix: str, *, recursive: bool = True) -> Iterator[str]:
        folder, _, start = prefix.rpartition("/")
        base = self.path(folder)
        if not os.path.isdir(base):
            return
        for name in sorted(os.listdir(base)):
            if not name.startswith(start):
                continue
            key = f"{folder}/{name}" if folder else name
            if recursive and os.path.isdir(os.path.join(base, name)) and not os.path.islink(os.path.join(base, name)):
                yield from self.list(key + "/", recursive=True)
            else:
                yield key

    @contextmanager
    def lock(self, key: str, *, exclusive: bool, wait: float | None, vm: str, purpose: str) -> Iterator[LockHandle]:
        with flocked(self.path(key), exclusive=exclusive, wait=wait, vm=vm, purpose=purpose):
            yield _Held()

    def chunk_sink(self, *, batched: bool = False) -> ChunkSink:
        return _PathSink(self, BatchWriter() if batched else ChunkWriter())

    def open_read(self, key: str, limit: int) -> tuple[IO[bytes], int] | None:
        """The file unbuffered (reads go from the page cache straight out; sendfile where the server can) and its
        size, or None when it is missing or not a regular file of at most ``limit`` bytes."""
        try:
            fd = open_regular(self.path(key), limit)
        except OSError:
            return None
        return os.fdopen(fd, "rb", buffering=0), os.fstat(fd).st_size

    def prepare(self, folders: Sequence[str]) -> None:
        made: set[str] = set()
        for key in folders:
            folder = self.path(key)
            if not os.path.isdir(folder):
                os.makedirs(folder, exist_ok=True)
                made.add(os.path.dirname(folder))
        for parent in sorted(made):
            fsync_dir(parent)

    def sync(self, folders: set[str]) -> None:
        for key in sorted(folders):
            fsync_dir(self.path(key))

    def has_folder(self, key: str) -> bool:
        return os.path.isdir(self.path(key))

    def is_root(self) -> bool:
        """A folder (which may hold nothing yet)."""
        return os.path.isdir(self.root)

    def holds_foreign(self, folder: str) -> bool:
        """True when ``folder`` cannot become a repository: the root is a file, or the folder is not empty."""
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            return True
        path = self.path(folder)
        return os.path.isdir(path) and any(not is_temp_name(n) for n in os.listdir(path))

    def state_dir(self, vm: str) -> str:
        return os.path.join(self.path(vm), "restore-state")

    def canonical_root(self) -> str:
        return os.path.abspath(self.root)

    def usage(self) -> Usage:
        found = shutil.disk_usage(self.root)
        return Usage(found.total, found.free)


def is_rados_root(root: str) -> bool:
    return root.startswith(RADOS_PREFIX)


def is_s3_root(root: str) -> bool:
    return root.startswith(S3_PREFIX)


def is_object_root(root: str) -> bool:
    """A root in an object store (RADOS or S3): no folder to create, nothing on this host's disks."""
    return is_rados_root(root) or is_s3_root(root)


def open_store(root: str) -> Backend:
    """The backend of a root: ``rados:POOL[/NAMESPACE]``, ``s3://BUCKET[/PREFIX]`` or a folder. Bad roots raise a
    one-line StorageError."""
    if is_rados_root(root):
        from .rados_store import open_rados  # librados only when asked for

        return open_rados(root)
    if is_s3_root(root):
        from .s3_store import open_s3  # boto3 only when asked for

        return open_s3(root)
    if not root:
        raise BadRoot(root, "empty")
    return LocalStore(root)
