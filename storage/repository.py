"""One VM's repository: its description, chunks, revision manifests, quarantine and locks.

Everything goes through the root's backend (``storage.backend``: a folder, or a RADOS pool), by key. The
layout (self-describing; for a folder, a copy made with rsync works as is)::

    ROOT/<vm>/repository.json             format version, chunk size, hash, compression (and wrapped keys)
    ROOT/<vm>/revisions/<rev>.json        one manifest per revision, written after all its chunks
    ROOT/<vm>/chunks/<2 hex>/<hash>       zstd frame of a block, named by BLAKE3 of the plain bytes
                                          (encrypted: sealed frame, named by keyed BLAKE3; storage.crypto)
    ROOT/<vm>/quarantine/<hash>.<time>    damaged chunks moved aside by verify, never deleted
    ROOT/<vm>/lock, meta.lock             flock files (see storage.locks)
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeGuard

import blake3
import zstandard

from . import clock, crypto
from .backend import Backend, ChunkSink, LockHandle, open_store
from .errors import (
    CorruptRepository,
    NoRevisions,
    NotARepository,
    StorageError,
    UnknownRevision,
    UnknownVM,
    UnsupportedFormat,
)
from .fsutil import is_temp_name
from .keys import KeyRing, default_keyring
from .manifest import DISTRUSTED, MAX_MANIFEST_BYTES, Revision
from .names import check_name

REPOSITORY_FORMAT = "lifeboat-repository"
#: the newest repository.json version this Lifeboat reads: 1 plain (written as ever), 2 encrypted
FORMAT_VERSION = 2
PLAIN_VERSION = 1
ENCRYPTED_VERSION = 2
CHUNK_SIZE = 4 * 1024 * 1024
#: the chunk sizes a repository may have (tests use 4 KiB; a larger chunk is memory per thread)
MIN_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = 64 * 1024 * 1024
DEFAULT_ZSTD_LEVEL = 1
#: zstd's compression levels (zstandard.MAX_COMPRESSION_LEVEL is 22)
ZSTD_LEVELS = range(1, zstandard.MAX_COMPRESSION_LEVEL + 1)
HASH_NAME = "blake3"
KEYED_HASH_NAME = "blake3-keyed"
#: the file that makes a folder a repository (written last when one is created)
CONFIG_FILE = "repository.json"
HEX_DIGITS = 64
#: the most bytes of repository.json read (it is a few hundred)
MAX_CONFIG_BYTES = 1 << 20


def stored_limit(chunk_size: int) -> int:
    """The largest a stored chunk can be: zstd's worst case (raw blocks) plus frame overhead (plus a seal's)."""
    return chunk_size + chunk_size // 128 + 4096 + crypto.OVERHEAD


class ChunkDamaged(Exception):
    """A chunk that is missing, unreadable or whose bytes do not match its name."""

    def __init__(self, chunk: str, reason: str) -> None:
        super().__init__(f"chunk {chunk}: {reason}")
        self.chunk = chunk
        self.reason = reason


def chunk_hash(data: bytes) -> str:
    # blake3 releases the GIL while hashing, so hashing threads run on all cores.
    return blake3.blake3(data).hexdigest()


SAMPLE_SIZE = 32 * 1024
INCOMPRESSIBLE_RATIO = 0.97
ZSTD_MAGIC = 0xFD2FB528
ZSTD_MAX_BLOCK = 128 * 1024


def raw_zstd_frame(data: bytes) -> bytes:
    """Wrap ``data`` in a zstd frame of raw (stored) blocks, with the content size in the header.

    Frame header descriptor 0xE0: 8-byte content size, single segment (RFC 8878, section 3.1.1.1).
    """
    parts = [struct.pack("<IBQ", ZSTD_MAGIC, 0xE0, len(data))]
    view = memoryview(data)
    offset = 0
    while True:
        block = view[offset : offset + ZSTD_MAX_BLOCK]
        offset += len(block)
        last = offset >= len(data)
        header = int(last) | (0 << 1) | (len(block) << 3)  # block type 0: raw
        parts.append(header.to_bytes(3, "little"))
        parts.append(bytes(block))
        if last:
            return b"".join(parts)


class Codec(Protocol):
    """What the bytes of a repository are (PlainCodec here, crypto.SealedCodec for encrypted repositories)."""

    encrypted: bool

    @property
    def can_read(self) -> bool: ...

    def name(self, data: bytes) -> str: ...

    def seal_chunk(self, chunk: str, frame: bytes) -> bytes: ...

    def open_chunk(self, chunk: str, stored: bytes) -> bytes: ...

    def check_outer(self, stored: bytes) -> None: ...

    def seal_manifest(self, revision: Revision) -> dict[str, Any]: ...

    def open_manifest(self, data: bytes, where: str, revision_id: str, chunk_size: int) -> Revision: ...


class PlainCodec:
    """The bytes Lifeboat always wrote: chunks are zstd frames named by BLAKE3, manifests plain JSON."""

    encrypted = False
    can_read = True

    def name(self, data: bytes) -> str:
        return chunk_hash(data)

    def seal_chunk(self, chunk: str, frame: bytes) -> bytes:
        return frame

    def open_chunk(self, chunk: str, stored: bytes) -> bytes:
        return stored

    def check_outer(self, stored: bytes) -> None:
        """A plain chunk's only check is its name: verify decodes it."""

    def seal_manifest(self, revision: Revision) -> dict[str, Any]:
        return revision.to_json()

    def open_manifest(self, data: bytes, where: str, revision_id: str, chunk_size: int) -> Revision:
        return Revision.parse(data, where, revision_id, chunk_size)


class _Codec(threading.local):
    """Per-thread zstd contexts: zstandard's (de)compressors must not be shared between threads."""

    def __init__(self, level: int) -> None:
        self.compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
        self.sampler = zstandard.ZstdCompressor(level=1, write_content_size=False)
        self.decompressor = zstandard.ZstdDecompressor()


class Repository:
    """Access to ``ROOT/<vm>``. Methods are thread-safe unless they say otherwise."""

    def __init__(self, root: str, vm: str, config: dict[str, Any], store: Backend | None = None, *,
                 keys: KeyRing | None = None, require_key: bool = False, keyless: bool = False) -> None:
        self.root = root
        self.vm = vm
        self.store = store or open_store(root)
        #: where the repository is, for messages (for a folder: its path, as before backends)
        self.path = self.store.describe(vm)
        self.config = config
        self.chunk_size = int(config["chunk_size"])
        self._codec = _Codec(int(config.get("zstd_level", DEFAULT_ZSTD_LEVEL)))
        #: names, seals and opens chunks and manifests; a keyless view of an encrypted repository reads none
        self.codec: Codec = PlainCodec()
        if "encryption" in config:
            ring = None if keyless else (keys if keys is not None else default_keyring())
            self.codec = crypto.SealedCodec(vm, config["encryption"], ring, require_key=require_key)
        #: manifests the last ``revisions()`` could not read: revision id -> why
        self.unreadable: dict[str, str] = {}

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str, vm: str, *, keys: KeyRing | None = None, require_key: bool = True,
             keyless: bool = False) -> Repository:
        """Open ``ROOT/<vm>``. An encrypted one opens with ``keys`` (default: ``keys.default_keyring()``);
        without them it is refused (KeyRequired) unless ``require_key`` is off, which gives the view a replica
        has: store, verify outer hashes, serve ciphertext. ``keyless`` opens that view even with keys at hand.
        A key that does not open it is WrongKey, before anything is read or written."""
        check_name("VM", vm)
        store = open_store(root)
        key = f"{vm}/{CONFIG_FILE}"
        if store.stat(key) is None:  # present but not a regular file: _read_config says what it is
            if not is_root(root):
                raise NotARepository(root, vm)
            raise UnknownVM(vm, root)
        return cls(root, vm, _read_config(store, key), store, keys=keys, require_key=require_key and not keyless,
                   keyless=keyless)

    @classmethod
    def open_or_create(
        cls, root: str, vm: str, *, zstd_level: int = DEFAULT_ZSTD_LEVEL, chunk_size: int = CHUNK_SIZE,
        keys: KeyRing | None = None,
    ) -> Repository:
        """Open the VM's repository, creating it (with these settings) on its first backup.

        A new repository is encrypted when the keyring (``keys``, else the default one) has a current key: its
        data keys are wrapped by that key. An existing one stays what it is (plain ones are converted by a copy).
        """
        check_name("VM", vm)
        ring = keys if keys is not None else default_keyring()
        if has_repository(root, vm):
            return cls.open(root, vm, keys=ring)
        store = open_store(root)
        if store.holds_foreign(vm):
            raise NotARepository(root, vm)  # a non-empty folder that is not ours: never write into it
        return cls._create(root, vm, zstd_level, chunk_size, store, ring)

    @classmethod
    def create_converted(cls, root: str, vm: str, source_config: dict[str, Any], ring: KeyRing) -> Repository:
        """A new encrypted repository for the conversion of a plain one (``storage.copy.convert``): the source's
        chunk size and zstd level, keys wrapped by ``ring.current``, and ``converted_from`` naming the source (its
        VM and creation time) so a rerun knows the destination for its own and refuses any other."""
        store = open_store(root)
        if store.holds_foreign(vm):
            raise NotARepository(root, vm)
        origin = {"vm": source_config.get("vm"), "created": source_config.get("created")}
        return cls._create(root, vm, int(source_config.get("zstd_level", DEFAULT_ZSTD_LEVEL)),
                           int(source_config["chunk_size"]), store, ring, extra={"converted_from": origin})

    @classmethod
    def _create(cls, root: str, vm: str, zstd_level: int, chunk_size: int, store: Backend,
                ring: KeyRing | None, *, extra: dict[str, Any] | None = None) -> Repository:
        store.prepare([vm])
        created = clock.isoformat(clock.now())
        config: dict[str, Any] = {
            "format": REPOSITORY_FORMAT,
            "version": PLAIN_VERSION,
            "vm": vm,
            "chunk_size": chunk_size,
            "hash": HASH_NAME,
            "compression": "zstd",
            "zstd_level": zstd_level,
            "created": created,
            **(extra or {}),
        }
        if ring is not None and ring.current is not None:
            config.update(version=ENCRYPTED_VERSION, hash=KEYED_HASH_NAME,
                          encryption=crypto.new_encryption(ring.current, created))
        repository = cls(root, vm, config, store, keys=ring, require_key=True)
        repository.ensure_folders()
        # last: marks it complete. Put-if-absent: when two hosts create it at once, one description wins
        if not store.put(f"{vm}/{CONFIG_FILE}", json_bytes(config), exclusive=True):
            return cls.open(root, vm, keys=ring)
        store.sync({""})
        return repository

    def ensure_folders(self) -> None:
        """Create ``revisions/``, ``quarantine/`` and the 256 chunk folders where missing.

        Writers call it (under the exclusive lock): a chunk folder lost to a cleanup or an incomplete copy would
        otherwise fail every later backup that meets a chunk of its prefix.
        """
        chunks = f"{self.vm}/chunks"
        folders = [f"{self.vm}/revisions", f"{self.vm}/quarantine", chunks]
        folders += [f"{chunks}/{prefix:02x}" for prefix in range(256)]
        self.store.prepare(folders)

    # -- locks -----------------------------------------------------------------------------------
    def lock(self, *, exclusive: bool, wait: float | None, purpose: str) -> AbstractContextManager[LockHandle]:
        """The operation lock: backup/gc exclusive, restore/verify shared (across hosts on a shared store)."""
        return self.store.lock(f"{self.vm}/lock", exclusive=exclusive, wait=wait, vm=self.vm, purpose=purpose)

    def meta_lock(self) -> AbstractContextManager[LockHandle]:
        """Short exclusive lock around read-modify-write of manifests."""
        return self.store.lock(f"{self.vm}/meta.lock", exclusive=True, wait=None, vm=self.vm,
                               purpose="manifest update")

    @property
    def encrypted(self) -> bool:
        return self.codec.encrypted

    @property
    def can_read(self) -> bool:
        """False for the keyless view of an encrypted repository: no chunk or disk can be read from it."""
        return self.codec.can_read

    def replace_encryption(self, encryption: dict[str, Any]) -> None:
        """Write repository.json with a new ``encryption`` block (keys rotated or rewrapped); under the
        exclusive lock. Chunks are not touched: each names the data key it was sealed with."""
        crypto.check_encryption(encryption)
        config = dict(self.config, encryption=encryption)
        self.store.put(f"{self.vm}/{CONFIG_FILE}", json_bytes(config))
        self.config = config

    # -- chunks ----------------------------------------------------------------------------------
    def chunk_key(self, chunk: str) -> str:
        return chunk_key(self.vm, chunk)

    def chunk_name(self, data: bytes) -> str:
        """The name of a plain block: its BLAKE3 (keyed with the name key when encrypted)."""
        return self.codec.name(data)

    def encode(self, chunk: str, data: bytes) -> bytes:
        """A block as stored under ``chunk``: compressed, and sealed when the repository is encrypted."""
        return self.codec.seal_chunk(chunk, self.compress(data))

    def chunk_path(self, chunk: str) -> str:
        """The chunk's file, for a repository in a folder (tests and tools that look at files)."""
        return self.store.describe(self.chunk_key(chunk))

    def has_chunk(self, chunk: str) -> bool:
        return self.store.exists(self.chunk_key(chunk))

    def chunk_writer(self, *, batched: bool = False) -> ChunkSink:
        """A background writer of stored chunks (``write(chunk_key, stored)``): durable when closed."""
        return self.store.chunk_sink(batched=batched)

    def compress(self, data: bytes) -> bytes:
        """A zstd frame of ``data``; incompressible data goes into raw zstd blocks without trying.

        Random and already-compressed data is a large share of a real disk, and zstd spends most of its
        time failing to shrink it. Three 32 KiB samples decide: if none shrinks, the chunk is stored in
        raw blocks (still a standard zstd frame, readable by any zstd), which costs only a copy.
        """
        if len(data) >= 4 * SAMPLE_SIZE and not self._any_sample_compresses(data):
            return raw_zstd_frame(data)
        return bytes(self._codec.compressor.compress(data))

    def _any_sample_compresses(self, data: bytes) -> bool:
        compress = self._codec.sampler.compress
        for start in (0, len(data) // 2, len(data) - SAMPLE_SIZE):
            sample = data[start : start + SAMPLE_SIZE]
            if len(compress(sample)) < SAMPLE_SIZE * INCOMPRESSIBLE_RATIO:
                return True
        return False

    def store_chunk(self, chunk: str, stored: bytes, *, sync: bool = True) -> None:
        """Write a compressed chunk under its name, atomically; replaces a damaged copy."""
        self.store.put(self.chunk_key(chunk), stored, mode=0o444, sync=False)

    def read_stored(self, chunk: str) -> bytes:
        """The chunk file's bytes as stored (compressed), unverified.

        Only a regular file no larger than a stored chunk can be is read (see ``fsutil.read_regular``): a FIFO,
        a symlink (to ``/dev/zero``, say) or an oversized file is damage, not a hang or a memory blow-up.
        """
        try:
            return self.store.get(self.chunk_key(chunk), stored_limit(self.chunk_size))
        except FileNotFoundError:
            raise ChunkDamaged(chunk, "missing") from None
        except OSError as exc:
            raise ChunkDamaged(chunk, f"unreadable ({exc.strerror})") from None

    def decode(self, chunk: str, stored: bytes) -> bytes:
        """Open, decompress and check the hash: the only way plain chunk bytes leave the repository.

        The content size the frame declares is checked before decompressing, so a hostile frame cannot make
        us allocate more than a chunk.
        """
        try:
            stored = self.codec.open_chunk(chunk, stored)
        except crypto.Broken as exc:
            raise ChunkDamaged(chunk, str(exc)) from None
        try:
            declared = zstandard.frame_content_size(stored)
        except zstandard.ZstdError as exc:
            raise ChunkDamaged(chunk, f"not a zstd frame ({exc})") from None
        if declared < 0 or declared > self.chunk_size:
            raise ChunkDamaged(chunk, "frame does not declare a chunk-sized content")
        try:
            data = self._codec.decompressor.decompress(stored)
        except zstandard.ZstdError as exc:
            raise ChunkDamaged(chunk, f"cannot decompress ({exc})") from None
        if len(data) > self.chunk_size or self.codec.name(data) != chunk:
            raise ChunkDamaged(chunk, "content does not match its hash")
        return data

    def read_chunk(self, chunk: str) -> bytes:
        return self.decode(chunk, self.read_stored(chunk))

    def check_stored(self, chunk: str, stored: bytes) -> int:
        """Check a chunk as stored as far as this view can: with the key (or plain) open it and re-hash it, and
        for a sealed one also its outer hash; without the key, the outer hash alone. Returns the bytes checked
        (plain bytes when read, stored bytes otherwise); ChunkDamaged when it fails."""
        try:
            self.codec.check_outer(stored)
        except crypto.Broken as exc:
            raise ChunkDamaged(chunk, str(exc)) from None
        if not self.codec.can_read:
            return len(stored)
        return len(self.decode(chunk, stored))

    def check_chunk(self, chunk: str) -> int:
        """``check_stored`` of the chunk file (verify)."""
        return self.check_stored(chunk, self.read_stored(chunk))

    def iter_chunk_files(self) -> Iterator[tuple[str, str]]:
        """Yield ``(name, key)`` of every object in the chunk folders, temp files included."""
        for key in self.store.list(f"{self.vm}/chunks/"):
            parts = key.split("/")
            if len(parts) == 4:  # vm/chunks/<2 hex>/<name>: anything else is not a chunk (left alone)
                yield parts[3], key

    def sync_chunk_folders(self, prefixes: set[str]) -> None:
        self.store.sync({f"{self.vm}/chunks/{prefix}" for prefix in prefixes})

    def quarantine(self, chunk: str) -> str | None:
        """Move a damaged chunk aside (kept for forensics, never deleted). Returns where it went."""
        stamp = clock.now().strftime("%Y%m%dT%H%M%S.%fZ")
        destination = f"{self.vm}/quarantine/{chunk}.{stamp}"
        if not self.store.move(self.chunk_key(chunk), destination):
            return None  # missing, or another verify moved it first
        return self.store.describe(destination)

    def quarantined_chunks(self) -> set[str]:
        return {key.rsplit("/", 1)[-1].split(".", 1)[0]
                for key in self.store.list(f"{self.vm}/quarantine/", recursive=False)}

    # -- revisions -------------------------------------------------------------------------------
    def _revision_key(self, revision_id: str) -> str:
        return f"{self.vm}/revisions/{revision_id}.json"

    @property
    def revisions_folder(self) -> str:
        return self.store.describe(f"{self.vm}/revisions")

    def has_revisions_folder(self) -> bool:
        return self.store.has_folder(f"{self.vm}/revisions")

    def revision_ids(self) -> list[str]:
        """The ids of the manifests in ``revisions/`` (none when the folder is missing)."""
        names = [key.rsplit("/", 1)[-1] for key in self.store.list(f"{self.vm}/revisions/", recursive=False)]
        return [n[: -len(".json")] for n in names if n.endswith(".json") and not n.startswith(".")]

    def read_manifest(self, revision_id: str) -> bytes:
        """A manifest's bytes as stored (FileNotFoundError when absent, OSError when not a plain file)."""
        return self.store.get(self._revision_key(revision_id), MAX_MANIFEST_BYTES)

    def read_config(self) -> bytes:
        """``repository.json`` as stored."""
        return self.store.get(f"{self.vm}/{CONFIG_FILE}", MAX_CONFIG_BYTES)

    def state_dir(self) -> str:
        """A local folder for the resume state of restores to targets without a folder of their own."""
        return self.store.state_dir(self.vm)

    def revisions(self) -> list[Revision]:
        """Every readable revision, oldest first.

        A manifest that cannot be read (damaged, not a regular file, a bad name or values) is skipped and named
        in ``self.unreadable`` (id: why), so one bad file does not stop list, backup, verify or forget for the
        whole VM. Whoever deletes data by what manifests reference (gc, a purge) must look at ``unreadable``:
        a manifest it cannot read may reference anything.
        """
        found: list[Revision] = []
        unreadable: dict[str, str] = {}
        for revision_id in self.revision_ids():
            try:
                found.append(self.load_revision(revision_id))
            except UnknownRevision:
                continue  # forgotten since the listing
            except StorageError as exc:
                unreadable[revision_id] = str(exc)
        self.unreadable = unreadable
        return sorted(found, key=lambda r: (r.created, r.id))

    def load_revision(self, revision_id: str) -> Revision:
        check_name("revision", revision_id)
        path = self.store.describe(self._revision_key(revision_id))
        try:
            data = self.read_manifest(revision_id)
        except FileNotFoundError:
            raise UnknownRevision(revision_id, self.vm) from None
        except OSError as exc:
            raise CorruptRepository(path, exc.strerror or exc) from None
        return self.codec.open_manifest(data, path, revision_id, self.chunk_size)

    def resolve(self, revision_id: str) -> Revision:
        """A revision by id, or the newest one for ``latest``."""
        if revision_id == "latest":
            revisions = self.revisions()
            if not revisions:
                raise NoRevisions(self.vm)
            return revisions[-1]
        return self.load_revision(revision_id)

    def latest_trusted(self) -> Revision | None:
        candidates = [r for r in self.revisions() if r.trust != DISTRUSTED]
        return candidates[-1] if candidates else None

    def write_revision(self, revision: Revision) -> None:
        self.store.put(self._revision_key(revision.id), json_bytes(self.codec.seal_manifest(revision)))

    def write_manifest_bytes(self, revision_id: str, data: bytes) -> None:
        """A manifest as received (replication keeps the source's bytes)."""
        self.store.put(self._revision_key(revision_id), data)

    def update_revision(self, revision_id: str, change: Callable[[Revision], None]) -> Revision:
        """Apply ``change`` to a manifest under the metadata lock and write it back atomically."""
        with self.meta_lock():
            revision = self.load_revision(revision_id)
            change(revision)
            self.write_revision(revision)
            return revision

    def delete_revision(self, revision_id: str) -> None:
        if not self.store.delete(self._revision_key(revision_id)):
            raise FileNotFoundError(self.store.describe(self._revision_key(revision_id)))
        self.store.sync({f"{self.vm}/revisions"})

    def new_revision_id(self) -> str:
        return clock.now().strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)

    # -- leftovers -------------------------------------------------------------------------------
    def remove_leftovers(self) -> int:
        """Delete temp files of interrupted writes. Call only under the exclusive lock."""
        removed = 0
        for folder in (f"{self.vm}/revisions/", f"{self.vm}/"):
            for key in list(self.store.list(folder, recursive=False)):
                if is_temp_name(key.rsplit("/", 1)[-1]) and self.store.delete(key):
                    removed += 1
        for name, key in list(self.iter_chunk_files()):
            if is_temp_name(name) and self.store.delete(key):
                removed += 1
        return removed


# -- where things are (the one place that knows the layout; the portal asks here, never joins paths itself) --

def json_bytes(document: Any) -> bytes:
    """A JSON document as the repository stores it (what ``fsutil.write_json_atomic`` writes)."""
    return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"


def chunk_key(vm: str, chunk: str) -> str:
    """The key of a chunk in any backend (for a folder: its path below the root)."""
    return f"{vm}/chunks/{chunk[:2]}/{chunk}"


def repository_path(root: str, vm: str) -> str:
    return os.path.join(root, vm)


def has_repository(root: str, vm: str) -> bool:
    """True when ``vm`` has a repository under ``root`` (its description exists: it had a first backup)."""
    return open_store(root).is_file(f"{vm}/{CONFIG_FILE}")


def repository_exists(root: str, vm: str) -> bool:
    """True when ``vm`` has a repository under ``root``, even one whose description is damaged (for a folder:
    the VM's folder exists). "Absent" must be sure: the portal reads it as "no backups yet"."""
    store = open_store(root)
    return store.has_folder(vm) if store.kind == "local" else store.exists(f"{vm}/{CONFIG_FILE}")


def config_file(path: str) -> str:
    """The description file of the repository at ``path``."""
    return os.path.join(path, CONFIG_FILE)


def chunk_file(path: str, chunk: str) -> str:
    """Where the repository at ``path`` keeps ``chunk`` (which may not exist)."""
    return os.path.join(path, "chunks", chunk[:2], chunk)


def revision_file(path: str, revision_id: str) -> str:
    """Where the repository at ``path`` keeps the manifest of ``revision_id`` (which may not exist)."""
    return os.path.join(path, "revisions", f"{revision_id}.json")


def is_root(root: str) -> bool:
    """True when ``root`` is a folder holding at least one repository, or a RADOS pool that exists."""
    store = open_store(root)
    if not store.is_root():
        return False
    if store.kind != "local":
        return True
    return any(store.is_file(f"{entry}/{CONFIG_FILE}") for entry in store.list("", recursive=False))


def list_vms(root: str) -> list[str]:
    store = open_store(root)
    if not store.is_root():
        return []
    suffix = "/" + CONFIG_FILE
    if store.kind in ("local", "s3"):  # folders listed natively: no walk over every chunk
        return sorted(key for key in store.list("", recursive=False) if store.is_file(key + suffix))
    return sorted({key[: -len(suffix)] for key in store.list("") if key.endswith(suffix) and key.count("/") == 1})


def _read_config(store: Backend, key: str) -> dict[str, Any]:
    path = store.describe(key)
    try:
        data = store.get(key, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise CorruptRepository(path, exc.strerror or exc) from None
    return check_config(data, path, store.describe(key.rsplit("/", 1)[0]))


def check_config(data: bytes, where: str, name: str | None = None) -> dict[str, Any]:
    """A repository description (``repository.json``), every value checked; CorruptRepository otherwise.

    Shared by the engine and replication (which receives descriptions from other portals). ``name`` is what an
    UnsupportedFormat error calls the repository (default: ``where``).
    """
    try:
        config = json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested a hundred thousand levels deep
        raise CorruptRepository(where, f"not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(config, dict) or config.get("format") != REPOSITORY_FORMAT:
        raise CorruptRepository(where, "not a Lifeboat repository description")
    version = config.get("version")
    if not _whole(version) or version < 1:
        raise CorruptRepository(where, "version must be a whole number of at least 1")
    if version > FORMAT_VERSION:
        raise UnsupportedFormat(name or where, version, FORMAT_VERSION)
    if config.get("hash") != (HASH_NAME if version == PLAIN_VERSION else KEYED_HASH_NAME) or \
            config.get("compression") != "zstd":
        raise CorruptRepository(where, "unsupported hash or compression")
    if (version == ENCRYPTED_VERSION) != ("encryption" in config):
        raise CorruptRepository(where, f"a version {ENCRYPTED_VERSION} repository, and only that, is encrypted")
    if version == ENCRYPTED_VERSION:
        try:
            crypto.check_encryption(config["encryption"])
        except (ValueError, TypeError) as exc:
            raise CorruptRepository(where, f"encryption: {exc}") from None
    chunk_size = config.get("chunk_size")
    if not _whole(chunk_size) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise CorruptRepository(where, f"chunk_size must be a whole number of bytes from {MIN_CHUNK_SIZE} to "
                                       f"{MAX_CHUNK_SIZE}")
    level = config.get("zstd_level", DEFAULT_ZSTD_LEVEL)
    if not _whole(level) or level not in ZSTD_LEVELS:
        raise CorruptRepository(where, f"zstd_level must be a whole number from {ZSTD_LEVELS[0]} to "
                                       f"{ZSTD_LEVELS[-1]}")
    return config


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
