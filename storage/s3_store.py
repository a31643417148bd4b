"""``s3://BUCKET[/PREFIX]``: repositories as objects of an S3 bucket, through boto3 (optional: ``pip install
lifeboat[s3]``).

Why S3 beside RADOS: most object stores a provider already runs speak S3 (Ceph's radosgw, MinIO, the clouds), and
Proxmox Backup Server and Benji reach Ceph the same way. The endpoint and keys are the store's own settings:
``LIFEBOAT_STORE_S3_ENDPOINT`` (URL; unset: AWS), ``LIFEBOAT_STORE_S3_ACCESS_KEY``, ``LIFEBOAT_STORE_S3_SECRET_KEY``,
``LIFEBOAT_STORE_S3_REGION`` (default ``us-east-1``); each falls back to boto3's own (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ~/.aws). ``LIFEBOAT_STORE_S3_TIMEOUT``
(seconds per request, default 30), ``LIFEBOAT_STORE_LOCK_SECONDS`` and ``LIFEBOAT_STORE_STATE_DIR`` as for RADOS.

Objects (see docs/FORMAT.md): key ``K`` of the folder layout is the object ``PREFIX/K``. S3 lists by prefix
natively (with ``/`` as delimiter for one folder), paginated 1000 keys a page, so no index objects are needed.

Guarantees, and where they come from:

- ``put`` is one PutObject: atomic (readers see the old or the whole new object) and durable when acknowledged.
  Reads after an acknowledged write see it, and listings include it: S3 (since 2020) and radosgw are strongly
  consistent for one object and for listings.
- ``exclusive=True`` is ``If-None-Match: *`` on the PutObject: the endpoint refuses (412) when the key exists,
  atomically, so of two hosts creating one object exactly one wins. radosgw honours it (tested in
  tests/storage/test_s3.py); an endpoint that ignores the header would silently overwrite, which is why the test
  checks it on the endpoint in use.
- The lock on ``VM/lock`` is a small JSON object listing its holders (one exclusive, or many shared), each with
  an expiry, changed only by conditional puts (``If-None-Match: *`` to create it, ``If-Match: ETAG`` to change
  it): a compare-and-swap, so two hosts never both believe they took it. The holder renews its entry every third
  of the expiry from a thread; an entry whose expiry has passed counts as free, so a dead host blocks its VM for
  at most the expiry. Expiries are wall-clock times written by the holder and judged by the next taker: hosts'
  clocks must agree to well within the expiry (NTP; the default expiry is 60 s). As with RADOS, a holder that
  could not renew within its expiry counts the lock as lost even if it renews later, and ``check`` raises.
"""

from __future__ import annotations

import errno
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .fsutil import IrregularFile
from .object_store import ObjectStoreMethods, RenewedLock, env_int, one_line
from .store_base import S3_PREFIX, BadRoot, LockLost, ObjectInfo, StoreUnavailable, Usage, not_found

DEFAULT_TIMEOUT = 30
MAX_IN_FLIGHT = 32  # chunk puts queued at once (128 MiB of 4 MiB chunks)
PUT_THREADS = 8
MAX_LOCK_BYTES = 1 << 20
LIST_PAGE = 1000  # keys per ListObjectsV2 page (S3's maximum)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

T = TypeVar("T")


def parse_root(root: str) -> tuple[str, str]:
    """``s3://BUCKET[/PREFIX]`` as (bucket, prefix without slashes at either end); junk is a one-line BadRoot."""
    rest = root[len(S3_PREFIX):]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise BadRoot(root, "expected s3://BUCKET[/PREFIX] with a bucket name of 3-63 lowercase letters, digits, "
                            "'.' and '-'")
    prefix = prefix.strip("/")
    if prefix and not all(_PREFIX_PART.fullmatch(part) for part in prefix.split("/")):
        raise BadRoot(root, "each part of the prefix must be letters, digits, '.', '_' and '-'")
    return bucket, prefix


def _setting(name: str) -> str | None:
    return os.environ.get(f"LIFEBOAT_STORE_S3_{name}") or None


_clients: dict[tuple[Any, ...], Any] = {}
_stores: dict[tuple[Any, ...], S3Store] = {}
_lock = threading.Lock()


def _settings() -> tuple[str | None, str | None, str | None, str, int]:
    region = _setting("REGION") or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    return (_setting("ENDPOINT"), _setting("ACCESS_KEY"), _setting("SECRET_KEY"), region,
            env_int("LIFEBOAT_STORE_S3_TIMEOUT", DEFAULT_TIMEOUT))


def _client(root: str) -> Any:
    """One client per process and settings (boto3 clients are thread-safe, not fork-safe)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise StoreUnavailable(root, "boto3 is not installed (pip install 'lifeboat[s3]')") from None
    endpoint, access, secret, region, timeout = _settings()
    key = (endpoint, access, secret, region, timeout, os.getpid())
    client = _clients.get(key)
    if client is None:
        config = Config(s3={"addressing_style": "path"}, connect_timeout=timeout, read_timeout=timeout,
                        retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=PUT_THREADS + 24)
        client = boto3.session.Session().client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                                                aws_secret_access_key=secret, region_name=region, config=config)
        _clients[key] = client
    return client


def open_s3(root: str) -> S3Store:
    bucket, prefix = parse_root(root)
    key = (bucket, prefix, *_settings(), os.getpid())
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = S3Store(root, bucket, prefix, _client(root))
            _stores[key] = store
    return store


class _S3Lock(RenewedLock):
    """Holders in one JSON object changed by compare-and-swap; see the module docstring."""

    kind = "S3"

    def __init__(self, store: S3Store, key: str, exclusive: bool, vm: str, purpose: str) -> None:
        super().__init__(key, exclusive, vm, purpose)
        self.store = store

    def _read(self) -> tuple[dict[str, Any], str | None]:
        """The live holders (expired ones dropped) and the ETag to swap against (None: no lock object)."""
        try:
            data, etag = self.store.get_tagged(self.key, MAX_LOCK_BYTES)
        except FileNotFoundError:
            return {}, None
        try:
            holders = json.loads(data)["holders"]
            assert isinstance(holders, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            holders = {}  # a damaged lock object protects nothing: replace it
        now = time.time()
        return {c: h for c, h in holders.items() if isinstance(h, dict) and h.get("expires", 0) > now}, etag

    def _write(self, holders: dict[str, Any], etag: str | None) -> bool:
        body = json.dumps({"holders": holders}, sort_keys=True).encode()
        return self.store.put_conditional(self.key, body, etag)

    def _entry(self) -> dict[str, Any]:
        return {"exclusive": self.exclusive, "expires": time.time() + self.duration, "holder": self.description}

    def _try_take(self) -> str | None:
        """Take the lock if it is free for us: None, or the description of who holds it."""
        holders, etag = self._read()
        others = {c: h for c, h in holders.items() if c != self.cookie}
        if others and (self.exclusive or any(h.get("exclusive") for h in others.values())):
            return "; ".join(str(h.get("holder", "?"))[:200] for h in others.values())
        others[self.cookie] = self._entry()
        return None if self._write(others, etag) else "changing hands"

    def _renew(self) -> None:
        while True:
            holders, etag = self._read()
            if self.cookie not in holders:
                raise LockLost(self.vm, self.purpose)  # expired and possibly taken by another host
            holders[self.cookie] = self._entry()
            if self._write(holders, etag):
                return

    def _unlock(self) -> None:
        for _ in range(20):  # another holder's change in between: read again
            holders, etag = self._read()
            if self.cookie not in holders:
                return
            del holders[self.cookie]
            if self._write(holders, etag):
                return


class _PutSink:
    """Chunk puts on a small thread pool: at most MAX_IN_FLIGHT queued, ``close`` waits for every one."""

    def __init__(self, store: S3Store) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(PUT_THREADS, thread_name_prefix="s3-put")
        self._pending: deque[Future[None]] = deque()
        self._error: BaseException | None = None

    def write(self, key: str, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._pending.append(self._pool.submit(self._put, key, data))
        if len(self._pending) > MAX_IN_FLIGHT:
            self._finish(self._pending.popleft())
            if self._error is not None:
                raise self._error

    def _put(self, key: str, data: bytes) -> None:
        self._store.put(key, data)

    def _finish(self, future: Future[None]) -> None:
        error = future.exception()
        if error is not None and self._error is None:
            self._error = error

    def close(self) -> None:
        while self._pending:
            self._finish(self._pending.popleft())
        self._pool.shutdown(wait=True)
        if self._error is not None:
            raise self._error


class S3Store(ObjectStoreMethods):
    """A bucket (and prefix) of an S3 endpoint as a backend; see the module docstring."""

    kind = "s3"
    io_threads = 16  # every operation is an HTTP round trip: throughput comes from requests in flight

    def __init__(self, root: str, bucket: str, prefix: str, client: Any) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._client_error, self._boto_error = ClientError, BotoCoreError
        self.root, self.bucket, self.prefix, self.client = root, bucket, prefix, client
        self.base = f"{prefix}/" if prefix else ""
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = self._code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise BadRoot(root, f"the endpoint has no bucket {bucket!r}") from None
            raise StoreUnavailable(root, f"bucket {bucket!r}: {one_line(exc)}") from None
        except BotoCoreError as exc:
            raise StoreUnavailable(root, one_line(exc)) from None

    # -- plumbing --------------------------------------------------------------------------------
    @staticmethod
    def _code(exc: Any) -> str:
        return str(exc.response.get("Error", {}).get("Code", ""))

    def call(self, action: Callable[[], T], key: str = "") -> T:
        """Run a request: a missing key is FileNotFoundError, a refused condition False-worthy ``_Refused``,
        everything else StoreUnavailable (never damage)."""
        try:
            return action()
        except self._client_error as exc:
            code = self._code(exc)
            if code in ("404", "NoSuchKey", "NotFound"):
                raise not_found(self.describe(key)) from None
            if code in ("412", "PreconditionFailed", "ConditionalRequestConflict", "409"):
                raise _Refused() from None
            raise StoreUnavailable(self.root, one_line(exc)) from None
        except self._boto_error as exc:
            raise StoreUnavailable(self.root, one_line(exc)) from None

    def _name(self, key: str) -> str:
        return self.base + key

    def get_tagged(self, key: str, limit: int) -> tuple[bytes, str]:
        """The object's bytes and its ETag (for a conditional put against exactly this version)."""
        answer = self.call(lambda: self.client.get_object(Bucket=self.bucket, Key=self._name(key)), key)
        body = answer["Body"]
        try:
            if int(answer.get("ContentLength", 0)) > limit:
                raise IrregularFile(errno.EFBIG, f"larger than {limit} bytes", self.describe(key))
            data: bytes = self.call(lambda: body.read(limit + 1), key)
        finally:
            body.close()
        if len(data) > limit:
            raise IrregularFile(errno.EFBIG, f"larger than {limit} bytes", self.describe(key))
        return data, str(answer.get("ETag", ""))

    def put_conditional(self, key: str, data: bytes, etag: str | None) -> bool:
        """Put only if the object is absent (``etag`` None) or still has ``etag``; False when refused."""
        # radosgw (Pacific) compares If-Match with the ETag unquoted, AWS with it quoted: both forms are tried, and
        # each is a condition, so trying the second never overwrites a changed object.
        conditions = [{"IfNoneMatch": "*"}] if etag is None else [{"IfMatch": etag.strip('"')}, {"IfMatch": etag}]
        for condition in conditions:
            try:
                self.call(lambda: self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data,
                                                         **condition), key)  # noqa: B023 - called at once
            except (_Refused, FileNotFoundError):
                continue  # changed meanwhile (or deleted under an If-Match)
            return True
        return False

    # -- the interface ---------------------------------------------------------------------------
    def describe(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key}" if key else self.root

    def get(self, key: str, limit: int) -> bytes:
        return self.get_tagged(key, limit)[0]

    def put(self, key: str, data: bytes, *, exclusive: bool = False, mode: int = 0o644, sync: bool = True,
            durable: bool = True) -> bool:
        if not isinstance(data, bytes):  # a sealed chunk is a bytearray (crypto.seal_chunk)
            data = bytes(data)
        if exclusive:
            return self.put_conditional(key, data, None)
        self.call(lambda: self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data), key)
        return True

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            answer = self.call(lambda: self.client.head_object(Bucket=self.bucket, Key=self._name(key)), key)
        except FileNotFoundError:
            return None
        return ObjectInfo(int(answer["ContentLength"]), answer["LastModified"].timestamp())

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def is_file(self, key: str) -> bool:
        return self.stat(key) is not None

    def delete(self, key: str) -> bool:
        """S3's DeleteObject does not say whether the key existed: a head first answers it (best effort)."""
        found = self.exists(key)
        self.call(lambda: self.client.delete_object(Bucket=self.bucket, Key=self._name(key)), key)
        return found

    def move(self, source: str, destination: str) -> bool:
        """A server-side copy, then the delete (S3 has no rename): readers may briefly see both names."""
        try:
            self.call(lambda: self.client.copy_object(
                Bucket=self.bucket, Key=self._name(destination),
                CopySource={"Bucket": self.bucket, "Key": self._name(source)}), source)
        except FileNotFoundError:
            return False
        self.delete(source)
        return True

    def _pages(self, prefix: str, delimiter: str | None) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._name(prefix), "PaginationConfig": {
            "PageSize": LIST_PAGE}}
        if delimiter:
            arguments["Delimiter"] = delimiter
        pages = iter(paginator.paginate(**arguments))
        while True:
            page = self.call(lambda: next(pages, None))
            if page is None:
                return
            yield page

    def list(self, prefix: str, *, recursive: bool = True) -> Iterator[str]:
        strip = len(self.base)
        if recursive:
            for page in self._pages(prefix, None):
                for item in page.get("Contents", ()):
                    key = str(item["Key"])[strip:]
                    if key and not key.endswith("/"):
                        yield key
            return
        names: set[str] = set()
        for page in self._pages(prefix, "/"):
            names.update(str(item["Key"])[strip:] for item in page.get("Contents", ()))
            names.update(str(item["Prefix"])[strip:].rstrip("/") for item in page.get("CommonPrefixes", ()))
        yield from sorted(name for name in names if name and not name.endswith("/"))

    def _lock_for(self, key: str, exclusive: bool, vm: str, purpose: str) -> RenewedLock:
        return _S3Lock(self, key, exclusive, vm, purpose)

    def chunk_sink(self, *, batched: bool = False) -> _PutSink:
        return _PutSink(self)

    def has_folder(self, key: str) -> bool:
        return True

    def is_root(self) -> bool:
        return True  # the bucket exists (checked when opened)

    def holds_foreign(self, folder: str) -> bool:
        return False

    def state_dir(self, vm: str) -> str:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.environ.get("LIFEBOAT_STORE_STATE_DIR") or os.path.join(cache, "lifeboat", "store-state")
        return os.path.join(base, "s3", self.bucket, self.prefix.replace("/", "_") or "-", vm)

    def canonical_root(self) -> str:
        return f"{S3_PREFIX}{self.bucket}/{self.prefix}" if self.prefix else f"{S3_PREFIX}{self.bucket}"

    def usage(self) -> Usage:
        """A bucket has no capacity S3 reports: 0 of 0 (the health check reads it as unknown)."""
        return Usage(0, 0)


class _Refused(Exception):
    """A conditional put the endpoint refused (the object exists, or changed since it was read)."""
