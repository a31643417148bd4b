"""Replication: pull repositories from a portal's export API into a local repository root.

The export API (``/api/v1/export``) serves, per repository, ``repository.json``, the revision list, each
manifest as stored and each chunk as stored (compressed), immutable and named by its hash. A pull:

- fetches the manifests of revisions the replica lacks, and only the chunks the replica lacks, many per
  request (``POST .../chunks``, a stream of records) over a few parallel connections: the portal's cost per
  request (token, tenancy, Flask) is paid per batch, not per 4 MiB chunk; a portal without that endpoint
  (404/405) is asked one chunk per GET instead;
- checks every chunk against its name (decompress + BLAKE3) before storing it, so a bad network, proxy or
  source cannot plant a wrong chunk; a chunk is written to a temp file and renamed to its name only after
  its fsync (see BatchWriter), so an interrupted pull leaves only temp files, removed by the next run;
- writes a manifest only after every chunk it names is durable, so the replica never shows a revision it
  cannot restore; a rerun continues where an interrupted one stopped and fetches nothing twice;
- keeps the source's trust: a revision distrusted at the source arrives distrusted (with whatever of its
  chunks the source still has); a revision the replica holds as distrusted is fetched again once the
  source trusts it, which also heals chunks the replica's own verify quarantined.

A revision the replica already holds keeps the replica's own trust and protection (its chunks were checked
on arrival; the replica's verify decides), and revisions forgotten at the source stay at the replica (a
replica is a backup, not a mirror). The client is
plain ``requests``: one session per thread, chunk bodies capped at what a chunk can be, batch answers read a
record at a time (at most one chunk in memory per connection).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import urllib3

from .backend import is_object_root, open_store
from .durable import BatchWriter  # noqa: F401 - re-exported (it lived here)
from .errors import NotARepository, StorageError
from .manifest import DISTRUSTED, MAX_MANIFEST_BYTES, Revision
from .names import check_name
from .repository import CONFIG_FILE, ChunkDamaged, Repository, check_config, has_repository, stored_limit
from .wire import EXPORT_PATH, MISSING, RECORD_HEADER, BadRecord, parse_record_header

DEFAULT_THREADS = 4  # loopback and LAN: more only adds contention on few cores; raise it for slow links
ATTEMPTS = 3  # per chunk: connection errors, 5xx and bad bytes are retried
BATCH_REQUEST = 16  # chunks asked for per batch request (64 MiB of 4 MiB chunks; the server allows 64)
BATCH_REQUEST_BYTES = 128 << 20  # ... and at most this many bytes (for repositories with larger chunks)
TIMEOUT = 60.0
#: the most bytes read of an answer, per kind: a broken or hostile source must not exhaust the replica's memory
MAX_DOCUMENT = 1 << 20  # repository.json and one page of a list
MAX_MANIFEST = MAX_MANIFEST_BYTES  # a manifest: the engine's own cap
MAX_PAGES = 100_000  # pages of one list: a source whose cursors never end is refused, not followed forever

#: progress(repository, chunks done, chunks to fetch, bytes received)
ProgressCallback = Callable[[str, int, int, int], None]
#: fetch(chunk hash) -> the chunk as stored, or None when the other side does not have it
FetchChunk = Callable[[str], "bytes | None"]
#: fetch(chunk hashes) -> (hash, the chunk as stored or None) for each, in order; may raise RemoteError part-way
FetchBatch = Callable[[list[str]], Iterator[tuple[str, "bytes | None"]]]


class RemoteError(StorageError):
    """{}"""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ForeignRepository(StorageError):
    """{} holds a repository with chunk size {} but the source's is {}: pull into another root"""


@dataclass
class RemoteRepository:
    """One repository the export lists: its name (``vm-3``), the portal's VM id and VM name."""

    repository: str
    vm: int | None
    name: str


@dataclass
class PullResult:
    repositories: list[str] = field(default_factory=list)
    revisions_pulled: list[str] = field(default_factory=list)  # "repository/revision"
    revisions_incomplete: list[str] = field(default_factory=list)
    chunks_fetched: int = 0
    bytes_fetched: int = 0  # as stored (compressed): what crossed the network
    chunks_present: int = 0  # needed but already at the replica
    chunks_failed: dict[str, str] = field(default_factory=dict)  # needed by a trusted revision
    chunks_unavailable: dict[str, str] = field(default_factory=dict)  # needed only by distrusted ones
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.chunks_failed and not self.revisions_incomplete

    def as_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["ok"] = self.ok
        return doc


# -- the client ------------------------------------------------------------------------------------------


class ExportClient:
    """The export API of one portal, with a bearer token. Thread-safe: one ``requests.Session`` per thread."""

    def __init__(self, url: str, token: str, *, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RemoteError(f"invalid portal URL {url!r}: expected http(s)://HOST[:PORT]")
        if not token:
            raise RemoteError("no token given (--token or LIFEBOAT_TOKEN)")
        base = url.rstrip("/")
        self.base = base if base.endswith(EXPORT_PATH) else base + EXPORT_PATH
        self.token = token
        self.timeout = timeout
        self._local = threading.local()
        self.batches = True  # until the server answers a batch request 404/405 (a portal without the endpoint)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.token}"
            session.headers["User-Agent"] = "lifeboat-replicate"
            self._local.session = session
        return session

    def _get(self, path: str, *, params: dict[str, str] | None = None, stream: bool = False) -> requests.Response:
        url = self.base + path
        try:
            answer = self._session().get(url, params=params, stream=stream, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RemoteError(f"cannot reach {url}: {_first_line(exc)}", exit_code=1) from None
        if answer.status_code >= 400:
            message = _error_message(answer)
            answer.close()
            code = 1 if answer.status_code >= 500 or answer.status_code == 429 else 2
            raise RemoteError(f"{url} answered {answer.status_code}: {message}", exit_code=code)
        return answer

    def _body(self, path: str, limit: int, params: dict[str, str] | None = None) -> bytes:
        """The whole body of a GET, refused (exit 1) once it exceeds ``limit`` bytes: streamed and counted."""
        url = self.base + path
        with self._get(path, params=params, stream=True) as answer:
            length = answer.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise RemoteError(f"{url}: the answer ({length} bytes) is larger than {limit} bytes", exit_code=1)
            body = bytearray()
            try:
                for piece in answer.iter_content(1 << 20):
                    body += piece
                    if len(body) > limit:
                        raise RemoteError(f"{url}: the answer is larger than {limit} bytes", exit_code=1)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise RemoteError(f"{url}: {_first_line(exc)}", exit_code=1) from None
            return bytes(body)

    def _json(self, path: str, params: dict[str, str] | None = None) -> Any:
        body = self._body(path, MAX_DOCUMENT, params)
        try:
            return json.loads(body)
        except ValueError:
            raise RemoteError(f"{self.base + path} did not answer JSON", exit_code=1) from None

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            doc = self._json(path, {"cursor": cursor} if cursor else None)
            if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
                raise RemoteError(f"{self.base + path} answered an unexpected document", exit_code=1)
            yield from doc["items"]
            cursor = doc.get("next")
            if not cursor:
                return
            if not isinstance(cursor, str):
                raise RemoteError(f"{self.base + path} answered an unexpected document", exit_code=1)
            if cursor in seen:
                raise RemoteError(f"{self.base + path}: the source repeats a page cursor (a broken source)",
                                  exit_code=1)
            if len(seen) >= MAX_PAGES:
                raise RemoteError(f"{self.base + path}: more than {MAX_PAGES} pages (a broken source)", exit_code=1)
            seen.add(cursor)

    def repositories(self) -> list[RemoteRepository]:
        found = []
        for item in self._pages(""):
            found.append(RemoteRepository(str(item["repository"]), item.get("vm"), str(item.get("name", ""))))
        return found

    def repository_config(self, repository: str) -> bytes:
        return self._body(f"/{quote(repository)}/repository.json", MAX_DOCUMENT)

    def revisions(self, repository: str) -> list[dict[str, Any]]:
        return list(self._pages(f"/{quote(repository)}/revisions"))

    def manifest(self, repository: str, revision: str) -> bytes:
        return self._body(f"/{quote(repository)}/revisions/{quote(revision)}", MAX_MANIFEST)

    def chunk(self, repository: str, chunk: str, limit: int) -> bytes | None:
        """The chunk as stored, or None when the source does not have it (404).

        Raises RemoteError for anything else; a body longer than ``limit`` is refused unread.
        """
        url = self.base + f"/{quote(repository)}/chunks/{chunk}"
        try:
            answer = self._session().get(url, stream=True, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RemoteError(f"cannot fetch chunk {chunk}: {_first_line(exc)}", exit_code=1) from None
        with answer:
            if answer.status_code == 404:
                return None
            if answer.status_code != 200:
                raise RemoteError(f"chunk {chunk}: {answer.status_code} {_error_message(answer)}", exit_code=1)
            length = answer.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise RemoteError(f"chunk {chunk}: {length} bytes is larger than any chunk", exit_code=1)
            try:
                # one read of the whole body (no per-MiB copies): a chunk is a few MiB at most
                body: bytes = answer.raw.read(limit + 1, decode_content=True)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise RemoteError(f"chunk {chunk}: {_first_line(exc)}", exit_code=1) from None
            if len(body) > limit:
                raise RemoteError(f"chunk {chunk}: larger than any chunk", exit_code=1)
            if length is not None and length.isdigit() and len(body) != int(length):
                raise RemoteError(f"chunk {chunk}: the connection ended early", exit_code=1)
            return body

    def chunk_fetcher(self, repository: str, limit: int) -> FetchChunk:
        """A fetch function for :func:`storage.repair.repair`."""
        return lambda chunk: self.chunk(repository, chunk, limit)

    def chunks(self, repository: str, chunks: list[str], limit: int) -> Iterator[tuple[str, bytes | None]]:
        """Each of ``chunks`` as stored (None: the source lacks it), in order, from one batch request.

        Falls back to one GET per chunk when the server has no batch endpoint (404/405; remembered). Raises
        RemoteError part-way when the answer is broken or cut short: what was yielded before is whole.
        """
        if not self.batches:
            for chunk in chunks:
                yield chunk, self.chunk(repository, chunk, limit)
            return
        url = self.base + f"/{quote(repository)}/chunks"
        try:
            answer = self._session().post(url, json={"hashes": chunks}, stream=True, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RemoteError(f"cannot fetch chunks: {_first_line(exc)}", exit_code=1) from None
        with answer:
            if answer.status_code in (404, 405):
                self.batches = False
                answer.close()
                for chunk in chunks:
                    yield chunk, self.chunk(repository, chunk, limit)
                return
            if answer.status_code != 200:
                raise RemoteError(f"{url} answered {answer.status_code}: {_error_message(answer)}", exit_code=1)
            for chunk in chunks:
                header = self._read(answer, RECORD_HEADER, chunk)
                try:
                    length = parse_record_header(header, chunk)
                except BadRecord as exc:
                    raise RemoteError(f"chunk {chunk}: the batch answer {exc}", exit_code=1) from None
                if length == MISSING:
                    yield chunk, None
                    continue
                if length > limit:
                    raise RemoteError(f"chunk {chunk}: {length} bytes is larger than any chunk", exit_code=1)
                yield chunk, self._read(answer, length, chunk)

    @staticmethod
    def _read(answer: requests.Response, size: int, chunk: str) -> bytes:
        try:
            data: bytes = answer.raw.read(size)
            while 0 < len(data) < size:  # a short read before the end: read on
                more: bytes = answer.raw.read(size - len(data))
                if not more:
                    break
                data += more
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise RemoteError(f"chunk {chunk}: {_first_line(exc)}", exit_code=1) from None
        if len(data) != size:
            raise RemoteError(f"chunk {chunk}: the connection ended early", exit_code=1)
        return data

    def batch_fetcher(self, repository: str, limit: int) -> FetchBatch:
        """A batch fetch function for :func:`fetch_chunks`."""
        return lambda chunks: self.chunks(repository, chunks, limit)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _error_message(answer: requests.Response) -> str:
    try:
        doc = answer.json()
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"])[:300]
    except ValueError:
        pass
    return answer.reason or "error"


# -- checking what arrives -------------------------------------------------------------------------------


def parse_config(data: bytes, where: str) -> dict[str, Any]:
    """A repository description received from elsewhere, checked like the engine checks its own."""
    return check_config(data, where)


def parse_manifest(data: bytes, where: str, revision_id: str, chunk_size: int) -> Revision:
    """A manifest received from elsewhere, checked like the engine checks its own (id, chunk size, chunk names)."""
    return Revision.parse(data, where, revision_id, chunk_size)


# -- fetching chunks in parallel -------------------------------------------------------------------------

@dataclass
class FetchOutcome:
    fetched: dict[str, int] = field(default_factory=dict)  # chunk -> bytes as stored
    failed: dict[str, str] = field(default_factory=dict)  # chunk -> reason


def fetch_chunks(
    repo: Repository,
    chunks: list[str],
    fetch: FetchChunk | None = None,
    *,
    fetch_batch: FetchBatch | None = None,
    batch: int = BATCH_REQUEST,
    threads: int = DEFAULT_THREADS,
    progress: Callable[[int, int, int], None] | None = None,
) -> FetchOutcome:
    """Fetch, check and store ``chunks`` into ``repo``; returns once every stored one is durable.

    With ``fetch_batch``, ``threads`` workers each ask for up to ``batch`` chunks at a time; with ``fetch``,
    one chunk at a time. Every chunk is checked as it arrives and written at once (a batch is never held in
    memory); a chunk whose bytes do not match, or that a broken answer did not deliver, is asked for again,
    up to ``ATTEMPTS`` times. Call under the repository's exclusive lock. Interrupted (Ctrl-C, kill), it
    leaves only temp files.
    """
    outcome = FetchOutcome()
    if not chunks:
        return outcome
    if fetch_batch is None:
        if fetch is None:
            raise TypeError("fetch_chunks needs fetch or fetch_batch")
        fetch_batch, batch = one_at_a_time(fetch), 1
    per_request = max(1, min(batch, -(-len(chunks) // threads)))  # every thread gets work on small pulls
    groups = [chunks[i:i + per_request] for i in range(0, len(chunks), per_request)]
    writer = repo.chunk_writer(batched=True)
    lock = threading.Lock()
    stop = threading.Event()
    counts = [0, 0]  # chunks done, bytes received

    def finish(chunk: str, size: int, reason: str | None) -> None:
        with lock:
            counts[0] += 1
            if reason is None:
                outcome.fetched[chunk] = size
                counts[1] += size
            else:
                outcome.failed[chunk] = reason
            if progress:
                progress(counts[0], len(chunks), counts[1])

    def run(group: list[str]) -> None:
        pending, reasons = group, {c: "not fetched" for c in group}
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(0.2 * attempt)
            settled: set[str] = set()  # delivered: stored or not available at the source
            try:
                for chunk, stored in fetch_batch(pending):
                    if stop.is_set():
                        return
                    if stored is None:
                        settled.add(chunk)
                        finish(chunk, 0, "not available at the source")
                        continue
                    try:
                        repo.check_stored(chunk, stored)  # decompress (size checked first) and hash; or
                        # without the key (a replica of an encrypted repository) the outer hash
                    except ChunkDamaged as exc:
                        reasons[chunk] = f"received bytes do not match: {exc.reason}"
                        continue
                    writer.write(repo.chunk_key(chunk), stored)
                    settled.add(chunk)
                    finish(chunk, len(stored), None)
            except RemoteError as exc:
                for chunk in pending:
                    if chunk not in settled:
                        reasons[chunk] = str(exc)
            pending = [c for c in pending if c not in settled]
            if not pending:
                return
        for chunk in pending:
            finish(chunk, 0, reasons[chunk])

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fetch")
    try:
        for future in as_completed([pool.submit(run, group) for group in groups]):
            future.result()  # a local error (disk full): stop the pull
    finally:
        stop.set()  # Ctrl-C or an error: running workers stop at their next chunk, queued ones never start
        pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
    repo.sync_chunk_folders({c[:2] for c in outcome.fetched})
    return outcome


def one_at_a_time(fetch: FetchChunk) -> FetchBatch:
    """A batch fetch made of single fetches (repair, and servers without the batch endpoint)."""

    def fetch_batch(chunks: list[str]) -> Iterator[tuple[str, bytes | None]]:
        for chunk in chunks:
            yield chunk, fetch(chunk)

    return fetch_batch


# -- pull ------------------------------------------------------------------------------------------------


def pull(
    root: str,
    client: ExportClient,
    *,
    vms: list[str] | None = None,
    threads: int = DEFAULT_THREADS,
    progress: ProgressCallback | None = None,
    wait: float | None = 0.0,
) -> PullResult:
    """Pull every repository the token may export (or those ``vms`` name) into ``root``.

    ``vms`` entries match a repository name (``vm-3``), a VM id (``3``) or a VM name (``web-1``).
    """
    started = time.monotonic()
    result = PullResult()
    remote = client.repositories()
    if vms:
        chosen = [r for r in remote if any(v in (r.repository, str(r.vm), r.name) for v in vms)]
        unknown = [v for v in vms if not any(v in (r.repository, str(r.vm), r.name) for r in remote)]
        if unknown:
            raise RemoteError(f"the source exports no VM {', '.join(map(repr, unknown))} to this token")
        remote = chosen
    for repository in remote:
        check_name("repository", repository.repository)
    if not is_object_root(root):
        os.makedirs(root, exist_ok=True)
    for repository in remote:
        pull_repository(root, client, repository.repository, result, threads=threads, progress=progress, wait=wait)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def pull_repository(
    root: str,
    client: ExportClient,
    name: str,
    result: PullResult,
    *,
    threads: int = DEFAULT_THREADS,
    progress: ProgressCallback | None = None,
    wait: float | None = 0.0,
) -> None:
    """Pull one repository into ``root/name`` (see the module docstring); adds to ``result``."""
    config_bytes = client.repository_config(name)
    config = parse_config(config_bytes, f"{client.base}/{name}/repository.json")
    repo = _open_replica(root, name, config_bytes, config)
    result.repositories.append(name)
    with repo.lock(exclusive=True, wait=wait, purpose="replicate pull"):
        repo.remove_leftovers()  # temp files of an interrupted earlier pull or backup
        repo.ensure_folders()
        local = {r.id: r for r in repo.revisions()}
        wanted: list[tuple[bytes, Revision]] = []
        for item in client.revisions(name):
            revision_id = check_name("revision", str(item.get("id")))
            mine = local.get(revision_id)
            if mine is not None and not (mine.distrusted and item.get("trust") != DISTRUSTED):
                continue  # have it (a distrusted copy is fetched again once the source trusts it)
            data = client.manifest(name, revision_id)
            where = f"{client.base}/{name}/revisions/{revision_id}"
            wanted.append((data, repo.codec.open_manifest(data, where, revision_id, repo.chunk_size)))
        needed: dict[str, None] = {}
        for _, revision in wanted:
            for chunk in revision.all_chunks():
                needed.setdefault(chunk, None)
        missing = [c for c in needed if not repo.has_chunk(c)]
        result.chunks_present += len(needed) - len(missing)

        def report(done: int, total: int, received: int) -> None:
            if progress:
                progress(name, done, total, received)

        if progress:
            progress(name, 0, len(missing), 0)
        limit = stored_limit(repo.chunk_size)
        per_request = max(1, min(BATCH_REQUEST, BATCH_REQUEST_BYTES // limit))
        outcome = fetch_chunks(repo, missing, fetch_batch=client.batch_fetcher(name, limit), batch=per_request,
                               threads=threads, progress=report)
        result.chunks_fetched += len(outcome.fetched)
        result.bytes_fetched += sum(outcome.fetched.values())
        _write_manifests(repo, name, wanted, outcome.failed, result)


def _write_manifests(repo: Repository, name: str, wanted: list[tuple[bytes, Revision]],
                     failed: dict[str, str], result: PullResult) -> None:
    """Write each manifest whose chunks are all here; a distrusted one also with what the source lacked."""
    for data, revision in sorted(wanted, key=lambda item: (item[1].created, item[1].id)):
        lacking = {c for c in revision.all_chunks() if c in failed}
        if lacking and not revision.distrusted:
            result.revisions_incomplete.append(f"{name}/{revision.id}")
            for chunk in lacking:
                result.chunks_failed[chunk] = failed[chunk]
            continue
        for chunk in lacking:
            result.chunks_unavailable.setdefault(chunk, failed[chunk])
        repo.write_manifest_bytes(revision.id, data)
        result.revisions_pulled.append(f"{name}/{revision.id}")
    for chunk in result.chunks_failed:
        result.chunks_unavailable.pop(chunk, None)


def _open_replica(root: str, name: str, config_bytes: bytes, config: dict[str, Any]) -> Repository:
    """Open ``root/name``, or create it with the source's description (same chunk size and settings)."""
    store = open_store(root)
    if has_repository(root, name):
        repo = Repository.open(root, name, require_key=False)  # a replica needs no key to hold ciphertext
        if repo.chunk_size != int(config["chunk_size"]):
            raise ForeignRepository(repo.path, repo.chunk_size, config["chunk_size"])
        return repo
    if store.holds_foreign(name):
        raise NotARepository(root, name)  # a non-empty folder that is not ours: never write into it
    store.prepare([name])
    Repository(root, name, config, store, keyless=True).ensure_folders()
    store.put(f"{name}/{CONFIG_FILE}", config_bytes, exclusive=True)  # last: marks it complete
    store.sync({""})
    return Repository.open(root, name, require_key=False)
