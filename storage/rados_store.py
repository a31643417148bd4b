"""``rados:POOL[/NAMESPACE]``: repositories as RADOS objects, through librados (Debian's python3-rados).

Why RADOS and not a folder: a folder lives and dies with one backup server and grows only as far as its disks;
a pool of a second Ceph cluster is its own failure domain, grows by adding OSDs, and is shared by workers on any
number of hosts (the VM's lock becomes a RADOS lock every host respects).

The cluster is named by its own settings, never the VMs' ones (``CEPH_CONF``/``CEPH_ID`` are the RBD sources'):
``LIFEBOAT_STORE_CEPH_CONF`` (config file; unset: librados' default search), ``LIFEBOAT_STORE_CEPH_ID`` (client
name without ``client.``, default ``admin``), ``LIFEBOAT_STORE_CEPH_TIMEOUT`` (seconds an operation may wait for
the cluster, default 30: an outage is an error, not a hang) and ``LIFEBOAT_STORE_LOCK_SECONDS`` (lock expiry,
default 60). ``LIFEBOAT_STORE_STATE_DIR`` is where restores keep resume state (a local folder).

Objects (see docs/FORMAT.md): every key of the folder layout is an object of the same name. Chunks live in the
namespace ``NAMESPACE#chunks`` and everything else in ``NAMESPACE``, so the small objects are listed without
wading through the chunks. Folders do not exist in RADOS and listing a pool walks all of it, so each folder
that holds metadata has an index: the object ``FOLDER/`` whose omap keys are the names in it. A name is added to
the index *before* its object is written and removed *after* it is deleted: every manifest that exists is listed
(gc marks from that listing, so an unlisted manifest would lose its chunks). Chunks are not indexed (the backup's
hot path stays one ``write_full``); gc lists them by walking the chunk namespace.

Writes are ``write_full`` (atomic per object: readers see the old or the whole new object; acknowledged once on
every replica); put-if-absent is an exclusive create in the same operation. Locks are cls_lock locks on
``VM/lock`` with an expiry that a thread renews every third of it: a dead host loses the lock when the expiry
passes. A holder that could not renew in time (an outage, a paused process) counts the lock as lost even if it
renews later, because another host may have held it meanwhile: ``check`` then raises and the backup publishes
no manifest.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .fsutil import IrregularFile
from .object_store import ObjectStoreMethods, RenewedLock, env_int, one_line
from .store_base import RADOS_PREFIX, BadRoot, ObjectInfo, StoreUnavailable, Usage, not_found

DEFAULT_TIMEOUT = 30
LOCK_NAME = "lifeboat"
CHUNK_NAMESPACE_SUFFIX = "#chunks"
MAX_IN_FLIGHT = 32  # chunk writes queued in librados at once (128 MiB of 4 MiB chunks)
LOCK_FLAG_RENEW = 1  # LIBRADOS_LOCK_FLAG_RENEW (the bindings do not export it)
OMAP_PAGE = 1000
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

T = TypeVar("T")


def parse_root(root: str) -> tuple[str, str]:
    """``rados:POOL[/NAMESPACE]`` as (pool, namespace); junk is a one-line BadRoot."""
    rest = root[len(RADOS_PREFIX):]
    pool, _, namespace = rest.partition("/")
    if not _NAME.fullmatch(pool or "-"):
        raise BadRoot(root, "expected rados:POOL[/NAMESPACE] with a valid pool name")
    if namespace and not _NAME.fullmatch(namespace):
        raise BadRoot(root, "the namespace must be letters, digits, '.', '_' and '-'")
    return pool, namespace


_clusters: dict[tuple[str, str, int], Any] = {}
_stores: dict[tuple[str, str, str, int], RadosStore] = {}
_lock = threading.Lock()


def _cluster(root: str) -> Any:
    """One connection per process (and per config and client): librados handles are not fork-safe."""
    from .sources.rbd import load_bindings

    rados, _ = load_bindings(lambda message: StoreUnavailable(root, message))
    conf = os.environ.get("LIFEBOAT_STORE_CEPH_CONF", "")
    client = os.environ.get("LIFEBOAT_STORE_CEPH_ID", "") or "admin"
    key = (conf, client, os.getpid())
    cluster = _clusters.get(key)
    if cluster is not None:
        return cluster
    timeout = str(env_int("LIFEBOAT_STORE_CEPH_TIMEOUT", DEFAULT_TIMEOUT))
    where = f"{conf or 'the default Ceph config'}, client.{client}"
    if conf and not os.path.isfile(conf):
        raise StoreUnavailable(root, f"no Ceph config file {conf} (LIFEBOAT_STORE_CEPH_CONF)")
    try:
        cluster = rados.Rados(rados_id=client, conf={
            "rados_osd_op_timeout": timeout, "rados_mon_op_timeout": timeout, "client_mount_timeout": timeout})
        cluster.conf_read_file(conf or None)
        cluster.connect(timeout=int(timeout))
    except rados.Error as exc:
        raise StoreUnavailable(root, f"cannot connect to the cluster ({where}): {one_line(exc)}") from None
    _clusters[key] = cluster
    return cluster


def open_rados(root: str) -> RadosStore:
    pool, namespace = parse_root(root)
    conf = os.environ.get("LIFEBOAT_STORE_CEPH_CONF", "")
    key = (root, conf, os.environ.get("LIFEBOAT_STORE_CEPH_ID", ""), os.getpid())
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = RadosStore(root, pool, namespace, _cluster(root))
            _stores[key] = store
    return store


def _is_chunk(key: str) -> bool:
    parts = key.split("/")
    return len(parts) == 4 and parts[1] == "chunks"


class _RadosLock(RenewedLock):
    """A cls_lock lock with an expiry (the OSDs time it), renewed by a thread; see the module docstring."""

    kind = "RADOS"

    def __init__(self, store: RadosStore, key: str, exclusive: bool, vm: str, purpose: str) -> None:
        super().__init__(key, exclusive, vm, purpose)
        self.store = store

    def _take(self, flags: int) -> None:
        ioctx = self.store.meta
        if self.exclusive:
            ioctx.lock_exclusive(self.key, LOCK_NAME, self.cookie, desc=self.description, duration=self.duration,
                                 flags=flags)
        else:
            ioctx.lock_shared(self.key, LOCK_NAME, self.cookie, LOCK_NAME, desc=self.description,
                              duration=self.duration, flags=flags)

    def _try_take(self) -> str | None:
        rados = self.store.rados
        try:
            self.store.call(lambda: self._take(0))
        except rados.ObjectBusy:
            return self._holder()
        if self.exclusive:
            try:
                self.store.meta.set_xattr(self.key, "holder", self.description.encode())
            except rados.Error:
                pass  # only a description for others' error messages
        return None

    def _holder(self) -> str:
        try:
            text = bytes(self.store.meta.get_xattr(self.key, "holder")).decode(errors="replace")[:200]
        except Exception:  # noqa: BLE001 - a description only
            text = ""
        return text or "in use by a restore or verify"

    def _renew(self) -> None:
        self._take(LOCK_FLAG_RENEW)

    def _unlock(self) -> None:
        self.store.meta.unlock(self.key, LOCK_NAME, self.cookie)


class _AioSink:
    """Chunk writes as ``aio_write_full``: at most MAX_IN_FLIGHT queued, ``close`` waits for every one."""

    def __init__(self, store: RadosStore) -> None:
        self._store = store
        self._pending: deque[tuple[Any, str, bytes]] = deque()
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    def write(self, key: str, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if not isinstance(data, bytes):  # a sealed chunk is a bytearray (crypto.seal_chunk); librados wants bytes
            data = bytes(data)
        completion = self._store.call(lambda: self._store.chunks.aio_write_full(key, data))
        with self._lock:
            self._pending.append((completion, key, data))  # data referenced until written
            oldest = self._pending.popleft() if len(self._pending) > MAX_IN_FLIGHT else None
        if oldest is not None:
            self._finish(oldest)

    def _finish(self, item: tuple[Any, str, bytes]) -> None:
        completion, key, _ = item
        completion.wait_for_complete()
        code = completion.get_return_value()
        if code < 0 and self._error is None:
            self._error = StoreUnavailable(self._store.root, f"writing {key}: {os.strerror(-code)}")
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    break
                item = self._pending.popleft()
            try:
                self._finish(item)
            except StoreUnavailable:
                continue  # wait for the rest; the first error is raised below
        if self._error is not None:
            raise self._error


class RadosStore(ObjectStoreMethods):
    """A pool (and namespace) of a Ceph cluster as a backend; see the module docstring."""

    kind = "rados"
    io_threads = 16  # reads and stats wait ~100 ms on a busy OSD: throughput comes from ops in flight

    def __init__(self, root: str, pool: str, namespace: str, cluster: Any) -> None:
        from .sources.rbd import load_bindings

        self.rados, _ = load_bindings(lambda message: StoreUnavailable(root, message))
        self.root, self.pool, self.namespace, self.cluster = root, pool, namespace, cluster
        try:
            exists = cluster.pool_exists(pool)
        except self.rados.Error as exc:
            raise StoreUnavailable(root, one_line(exc)) from None
        if not exists:
            raise BadRoot(root, f"the cluster has no pool {pool!r} (create it: ceph osd pool create {pool})")
        self.meta = self.call(lambda: cluster.open_ioctx(pool))
        self.meta.set_namespace(namespace)
        self.chunks = self.call(lambda: cluster.open_ioctx(pool))
        self.chunks.set_namespace(namespace + CHUNK_NAMESPACE_SUFFIX)

    # -- plumbing --------------------------------------------------------------------------------
    def call(self, action: Callable[[], T]) -> T:
        """Run a librados call; an error that is not about the object is StoreUnavailable (never damage)."""
        try:
            return action()
        except (self.rados.ObjectNotFound, self.rados.ObjectBusy, self.rados.ObjectExists):
            raise
        except self.rados.Error as exc:
            raise StoreUnavailable(self.root, one_line(exc)) from None

    def _operate_write(self, op: Any, key: str) -> None:
        self.call(lambda: self.meta.operate_write_op(op, key))

    def _operate_read(self, op: Any, key: str) -> None:
        self.call(lambda: self.meta.operate_read_op(op, key))

    def _keys(self, ioctx: Any) -> list[str]:
        return self.call(lambda: [str(entry.key) for entry in ioctx.list_objects()])

    def _ioctx(self, key: str) -> Any:
        return self.chunks if _is_chunk(key) else self.meta

    @staticmethod
    def _index_of(key: str) -> tuple[str, str]:
        folder, _, name = key.rpartition("/")
        return folder + "/", name

    def _index_add(self, key: str) -> None:
        """Name ``key`` (and each of its folders) in the index of the folder holding it."""
        parts = key.split("/")
        for depth in range(len(parts), 0, -1):
            index, name = self._index_of("/".join(parts[:depth]))
            with self.rados.WriteOpCtx() as op:
                self.meta.set_omap(op, (name,), (b"",))
                self._operate_write(op, index)

    def _index_remove(self, key: str) -> None:
        index, name = self._index_of(key)
        with self.rados.WriteOpCtx() as op:
            self.meta.remove_omap_keys(op, (name,))
            try:
                self.call(lambda: self.meta.operate_write_op(op, index))
            except self.rados.ObjectNotFound:
                pass

    def _index_names(self, folder: str) -> list[str]:
        names: list[str] = []
        after = ""
        while True:
            with self.rados.ReadOpCtx() as op:
                values, _ = self.meta.get_omap_vals(op, after, "", OMAP_PAGE)
                try:
                    self._operate_read(op, folder)
                except self.rados.ObjectNotFound:
                    return names
                page = [name for name, _ in values]
            names.extend(page)
            if len(page) < OMAP_PAGE:
                return names
            after = page[-1]

    # -- the interface ---------------------------------------------------------------------------
    def describe(self, key: str) -> str:
        return f"{self.root}:{key}" if key else self.root

    def get(self, key: str, limit: int) -> bytes:
        try:
            data: bytes = self.call(lambda: self._ioctx(key).read(key, limit + 1))
        except self.rados.ObjectNotFound:
            raise not_found(self.describe(key)) from None
        if len(data) > limit:
            raise IrregularFile(errno.EFBIG, f"larger than {limit} bytes", self.describe(key))
        return data

    def put(self, key: str, data: bytes, *, exclusive: bool = False, mode: int = 0o644, sync: bool = True,
            durable: bool = True) -> bool:
        if not isinstance(data, bytes):  # a sealed chunk is a bytearray (crypto.seal_chunk); librados wants bytes
            data = bytes(data)
        ioctx = self._ioctx(key)
        if not _is_chunk(key):
            self._index_add(key)
        if not exclusive:
            self.call(lambda: ioctx.write_full(key, data))
            return True
        with self.rados.WriteOpCtx() as op:
            op.new(self.rados.LIBRADOS_CREATE_EXCLUSIVE)
            op.write_full(data)
            try:
                self.call(lambda: ioctx.operate_write_op(op, key))
            except self.rados.ObjectExists:
                return False
        return True

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            size, mtime = self.call(lambda: self._ioctx(key).stat(key))
        except self.rados.ObjectNotFound:
            return None
        return ObjectInfo(int(size), time.mktime(mtime))

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def is_file(self, key: str) -> bool:
        return self.stat(key) is not None

    def delete(self, key: str) -> bool:
        try:
            self.call(lambda: self._ioctx(key).remove_object(key))
            found = True
        except self.rados.ObjectNotFound:
            found = False
        if not _is_chunk(key):
            self._index_remove(key)
        return found

    def move(self, source: str, destination: str) -> bool:
        try:
            data = self.get(source, 1 << 30)
        except FileNotFoundError:
            return False
        self.put(destination, data)
        self.delete(source)
        return True

    def list(self, prefix: str, *, recursive: bool = True) -> Iterator[str]:
        if not recursive:
            folder, _, start = prefix.rpartition("/")
            base = folder + "/" if folder else "/"
            for name in sorted(self._index_names(base)):
                if name.startswith(start):
                    yield f"{folder}/{name}" if folder else name
            return
        for ioctx in (self.meta, self.chunks):
            keys = self._keys(ioctx)
            for key in sorted(keys):
                if key.startswith(prefix) and not key.endswith("/"):
                    yield key

    def _lock_for(self, key: str, exclusive: bool, vm: str, purpose: str) -> RenewedLock:
        return _RadosLock(self, key, exclusive, vm, purpose)

    def chunk_sink(self, *, batched: bool = False) -> _AioSink:
        return _AioSink(self)

    def has_folder(self, key: str) -> bool:
        return True

    def is_root(self) -> bool:
        return True  # the pool exists (checked when opened)

    def holds_foreign(self, folder: str) -> bool:
        return False

    def state_dir(self, vm: str) -> str:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.environ.get("LIFEBOAT_STORE_STATE_DIR") or os.path.join(cache, "lifeboat", "store-state")
        return os.path.join(base, self.pool, self.namespace or "-", vm)

    def canonical_root(self) -> str:
        return self.root

    def usage(self) -> Usage:
        """The cluster's raw capacity and what is free of it (a pool has no size of its own)."""
        stats = self.call(lambda: self.cluster.get_cluster_stats())
        return Usage(int(stats["kb"]) * 1024, int(stats["kb_avail"]) * 1024)
