"""Export: a VM's repository over HTTP, for ``lifeboat replicate pull`` and ``lifeboat store repair``.

Repositories are addressed by their engine name (``vm-3``). A token with ``export:read`` sees the
repositories of the VMs its user may see and its VM restriction allows; anything else is 404, exactly like a
repository that does not exist. Files are served as stored: the client checks every chunk against its hash,
so the server does not re-hash (these endpoints are the hot path of a replication and must stay cheap).

Chunks are immutable (named by the BLAKE3 of their content): ``ETag`` is the hash, ``Cache-Control`` says
immutable, and ``If-None-Match`` answers 304 without touching the file. A quarantined chunk is no longer in
``chunks/`` and answers 404, like a missing one.

``POST .../chunks`` serves up to ``MAX_BATCH`` chunks in one answer (see ``chunk_batch``): the portal's cost
per request (token, tenancy, Flask) is paid once per batch instead of once per 4 MiB, which is what kept a
pull below the speed of a plain download. The per-chunk GET stays for repair and simple clients.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from typing import IO, Any

import blake3
import marshmallow as ma
from flask import Response, current_app, request
from flask_smorest import Blueprint
from sqlalchemy import select
from werkzeug.wsgi import wrap_file

from storage.backend import Backend, open_store
from storage.errors import StorageError, UnknownRevision
from storage.repository import MAX_CHUNK_SIZE, Repository, chunk_key, has_repository, stored_limit
from storage.wire import BATCH_MIMETYPE, EXPORT_PATH, MAX_BATCH, MAX_BATCH_BYTES, MISSING, RECORD_HEADER, record_header

from ..extensions import db
from ..models import VM
from ..services import access
from .auth import current_token, current_user, require_scope
from .errors import api_error
from .pagination import DEFAULT_LIMIT, MAX_LIMIT, PageArgs, decode, encode, page_schema, paginate

blp = Blueprint("export", __name__, url_prefix=EXPORT_PATH,
                description="Repositories as stored, for replication and repair (scope export:read).")

SCOPE = "export:read"
_REPOSITORY = re.compile(r"vm-([1-9][0-9]{0,17})")
_HASH = re.compile(r"[0-9a-f]{64}")
_HASH_ONLY = r"\A[0-9a-f]{64}\Z"  # for marshmallow's Regexp, which only matches at the start
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
#: bytes per read when the WSGI server has no ``wsgi.file_wrapper`` (sendfile): werkzeug's default is 8 KiB,
#: which costs a Python round trip per 8 KiB of a 4 MiB chunk
STREAM_BUFFER = 1 << 20
IMMUTABLE = 365 * 24 * 3600
BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
JSON_FILE = {"application/json": {"schema": {"type": "object"}}}
#: the largest chunk file served: what a chunk of the largest chunk size can be stored as. Files are opened with
#: ``storage.fsutil.open_regular``: a FIFO, a symlink or an oversized file in a repository is never served (and
#: never blocks a worker); the hot path does not read repository.json for the repository's own chunk size.
CHUNK_FILE_LIMIT = stored_limit(MAX_CHUNK_SIZE)


class ExportRepositorySchema(ma.Schema):
    repository = ma.fields.String(metadata={"description": "the engine's repository name, e.g. vm-3"})
    vm = ma.fields.Integer(metadata={"description": "the VM's id"})
    name = ma.fields.String(metadata={"description": "the VM's name"})


class ExportRevisionSchema(ma.Schema):
    id = ma.fields.String()
    created = ma.fields.String()
    trust = ma.fields.String(metadata={"description": "trusted, verified or distrusted"})
    size = ma.fields.Integer(metadata={"description": "bytes of all disks of the backup point"})
    disks = ma.fields.List(ma.fields.Dict(), metadata={
        "description": "each disk of the point: name, size, source (the manifest has the chunk lists)"})


class ChunkBatchSchema(ma.Schema):
    hashes = ma.fields.List(
        ma.fields.String(validate=ma.validate.Regexp(_HASH_ONLY, error="not a chunk hash (64 lowercase hex digits)")),
        required=True, validate=ma.validate.Length(min=1, max=MAX_BATCH),
        metadata={"description": f"the chunks wanted, 1 to {MAX_BATCH} BLAKE3 hashes; answered in this order"})


RepositoryPage = page_schema(ExportRepositorySchema, "ExportRepositoryPage")
RevisionPage = page_schema(ExportRevisionSchema, "ExportRevisionPage")


def _allowed(repository: str) -> Backend:
    """The store of a repository the token may export (which may not exist yet), or 404."""
    match = _REPOSITORY.fullmatch(repository)
    if match is None:
        api_error(404, f"no repository {repository!r}")
    vm_id = int(match.group(1))
    # one row, no ORM object: this runs for every chunk of a replication
    visible = access.scope_to_user(select(VM.id).where(VM.id == vm_id), VM.organisation_id, current_user())
    if db.session.execute(visible).first() is None or not current_token().allows_vm(vm_id):
        api_error(404, f"no repository {repository!r}")
    return open_store(current_app.config["STORAGE_ROOT"])


def _open(repository: str) -> Repository:
    """The repository of a VM the token may export, or 404."""
    _allowed(repository)
    try:
        # ciphertext is exported as stored: a portal without the organisation's key (a replica) serves it too
        return Repository.open(current_app.config["STORAGE_ROOT"], repository, require_key=False)
    except StorageError:
        api_error(404, f"no backups of {repository} yet")


def _open_chunk(store: Backend, repository: str, chunk: str) -> tuple[IO[bytes], int] | None:
    """The chunk as stored and its size (for a folder: the file unbuffered, so each read goes from the page cache
    straight into the bytes sent), or None when it is missing, quarantined, or not a regular chunk-sized file."""
    return store.open_read(chunk_key(repository, chunk), CHUNK_FILE_LIMIT)


def _read(read: Any, name: str, missing: str) -> bytes:
    """A small file of the repository (its description, a manifest) through ``read()``: 404 when absent, 409 when
    it is not a regular file of at most its limit."""
    try:
        data: bytes = read()
        return data
    except FileNotFoundError:
        api_error(404, missing)
    except OSError as exc:
        api_error(409, f"the repository cannot be read: {name}: {exc.strerror or exc}", "repository_unreadable")


def _file(opened: tuple[IO[bytes], int] | None, etag: str, *, mimetype: str) -> Response:
    """Stream an immutable chunk with a strong ETag; If-None-Match answers 304 without reading it."""
    if opened is None:
        api_error(404, "not found")
    handle, size = opened
    if request.if_none_match.contains(etag):
        handle.close()
        response = current_app.response_class(status=304)
    else:  # closed by the WSGI server once streamed
        response = current_app.response_class(wrap_file(request.environ, handle, STREAM_BUFFER),
                                              mimetype=mimetype, direct_passthrough=True)
        response.content_length = size
    response.set_etag(etag)
    response.cache_control.private = True
    response.cache_control.max_age = IMMUTABLE
    response.cache_control.immutable = True
    return response


@blp.route("")
@blp.arguments(PageArgs, location="query")
@blp.response(200, RepositoryPage)
@require_scope(SCOPE)
def repositories(args: dict[str, Any]) -> dict[str, Any]:
    """Repositories this token may export: the VMs its user may see, within its VM restriction."""
    query = access.scope_to_user(select(VM), VM.organisation_id, current_user())
    token = current_token()
    if token.vm_ids is not None:
        query = query.where(VM.id.in_([int(v) for v in token.vm_ids]))
    vms, cursor = paginate(query, [VM.id], args)
    root = current_app.config["STORAGE_ROOT"]
    items = [{"repository": vm.repository_name, "vm": vm.id, "name": vm.name} for vm in vms
             if has_repository(root, vm.repository_name)]
    return {"items": items, "next": cursor}


@blp.route("/<string:repository>/repository.json")
@blp.doc(responses={200: {"description": "the repository description as stored", "content": JSON_FILE}})
@require_scope(SCOPE)
def repository_json(repository: str) -> Response:
    """The repository's description (format, chunk size, hash, compression), as stored."""
    repo = _open(repository)
    data = _read(repo.read_config, "repository.json", f"no backups of {repository} yet")
    return _bytes(data, blake3.blake3(data).hexdigest())


@blp.route("/<string:repository>/revisions")
@blp.arguments(PageArgs, location="query")
@blp.response(200, RevisionPage)
@require_scope(SCOPE)
def revisions(args: dict[str, Any], repository: str) -> dict[str, Any]:
    """The repository's revisions, oldest first (by id), with their trust.

    Pages over the listing of ``revisions/`` and parses only the page's manifests: parsing every manifest
    for every page made a long history quadratic to list and let one request cost a whole repository's
    manifests in CPU and memory.
    """
    repo = _open(repository)
    try:
        ids = sorted(repo.revision_ids())
    except OSError as exc:
        api_error(409, f"the repository cannot be read: {exc.strerror or exc}", "repository_unreadable")
    if args.get("cursor"):
        (after,) = decode(args["cursor"], [str])
        ids = ids[bisect.bisect_right(ids, after):]
    limit = min(int(args.get("limit") or DEFAULT_LIMIT), MAX_LIMIT)
    page = ids[:limit]
    items = []
    for revision_id in page:
        try:
            r = repo.load_revision(revision_id)
        except UnknownRevision:  # forgotten since the listing
            continue
        except StorageError as exc:
            api_error(409, f"the repository cannot be read: {exc}", "repository_unreadable")
        items.append({"id": r.id, "created": r.created, "trust": r.trust, "size": r.size,
                      "disks": [d.summary() for d in r.disks]})
    return {"items": items, "next": encode([page[-1]]) if len(ids) > limit else None}


@blp.route("/<string:repository>/revisions/<string:revision>")
@blp.doc(responses={200: {"description": "the manifest as stored; ETag", "content": JSON_FILE},
                    304: {"description": "not modified (If-None-Match)"}})
@require_scope(SCOPE)
def manifest(repository: str, revision: str) -> Response:
    """One revision's manifest as stored: size, ordered chunk list, trust."""
    repo = _open(repository)
    if _REVISION.fullmatch(revision) is None:
        api_error(404, f"no revision {revision!r}")
    data = _read(lambda: repo.read_manifest(revision), f"{revision}.json", f"no revision {revision!r}")
    return _bytes(data, blake3.blake3(data).hexdigest())


def _bytes(data: bytes, etag: str) -> Response:
    if request.if_none_match.contains(etag):
        response = current_app.response_class(status=304)
    else:
        response = current_app.response_class(data, mimetype="application/json")
    response.set_etag(etag)
    response.cache_control.private = True
    response.cache_control.no_cache = True
    return response


@blp.route("/<string:repository>/chunks/<string:chunk>")
@blp.doc(responses={200: {"description": "the chunk as stored (a zstd frame); ETag is its hash",
                          "content": BINARY},
                    304: {"description": "not modified (If-None-Match)"},
                    404: {"description": "no such chunk, or quarantined"}})
@require_scope(SCOPE)
def chunk(repository: str, chunk: str) -> Response:
    """One chunk as stored (zstd-compressed), named by the BLAKE3 of its plain bytes; immutable."""
    store = _allowed(repository)  # no repository.json read: the hot path stays one query and one stat
    if _HASH.fullmatch(chunk) is None:
        api_error(404, f"no chunk {chunk!r}")
    return _file(_open_chunk(store, repository, chunk), chunk, mimetype="application/octet-stream")


class _Records:
    """The body of a batch answer: per chunk a header, then the chunk's bytes as stored.

    The files were opened before the answer started (so its length is known and a chunk quarantined meanwhile
    is still served whole: the client checks it anyway); they are read a buffer at a time, never whole, and
    closed by ``close`` (which the WSGI server calls, also when the client goes away).
    """

    def __init__(self, items: list[tuple[str, IO[bytes] | None, int]]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[bytes]:
        for chunk, handle, size in self._items:
            if handle is None:
                yield record_header(chunk, MISSING)
                continue
            yield record_header(chunk, size)
            left = size
            while left > 0:
                data = handle.read(min(left, STREAM_BUFFER))
                if not data:  # the file shrank: a chunk file never does; end the answer short, the client sees it
                    raise OSError(f"chunk {chunk} ended early")
                left -= len(data)
                yield data
            handle.close()

    def close(self) -> None:
        for _, handle, _ in self._items:
            if handle is not None:
                handle.close()


@blp.route("/<string:repository>/chunks", methods=["POST"])
@blp.arguments(ChunkBatchSchema)
@blp.doc(responses={
    200: {"description": (
        "A stream of records, one per requested hash, in the order asked. Each record is an 82-byte header "
        "(the 64 hex digits of the hash, a space, the length in bytes as 16 signed decimal digits, a newline) "
        "followed by that many bytes: the chunk as stored (a zstd frame). Length -1 (`-000000000000001`) "
        "marks a chunk that is missing or quarantined; no bytes follow it. Content-Length is the whole "
        "answer."), "content": {BATCH_MIMETYPE: {"schema": {"type": "string", "format": "binary"}}}},
    404: {"description": "no such repository for this token"},
    413: {"description": f"the chunks asked for exceed {MAX_BATCH_BYTES >> 20} MiB: ask for fewer"}})
@require_scope(SCOPE)
def chunk_batch(args: dict[str, Any], repository: str) -> Response:
    """Several chunks as stored in one answer (see the 200 description), for replication.

    The token, tenancy and VM restriction are checked once for the whole batch; a chunk the repository lacks
    is marked in the stream, not an error.
    """
    store = _allowed(repository)
    items: list[tuple[str, IO[bytes] | None, int]] = []
    total = 0
    try:
        for chunk in args["hashes"]:
            opened = _open_chunk(store, repository, chunk)
            handle, size = opened if opened is not None else (None, MISSING)
            items.append((chunk, handle, size))
            total += RECORD_HEADER + max(size, 0)
            if total > MAX_BATCH_BYTES:
                api_error(413, f"these chunks exceed {MAX_BATCH_BYTES >> 20} MiB: ask for fewer")
    except BaseException:
        _Records(items).close()
        raise
    response = current_app.response_class(_Records(items), mimetype=BATCH_MIMETYPE, direct_passthrough=True)
    response.content_length = total
    response.cache_control.private = True
    response.cache_control.no_store = True
    return response
