"""One VM's repository on disk: its description, chunks, revision manifests, quarantine and locks.

Layout (self-describing; a copy made with rsync works as is)::

    ROOT/<vm>/repository.json             format version, chunk size, hash, compression
    ROOT/<vm>/revisions/<rev>.json        one manifest per revision, written after all its chunks
    ROOT/<vm>/chunks/<2 hex>/<hash>       zstd frame of a block, named by BLAKE3 of the plain bytes
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
from typing import Any

import blake3
import zstandard

from . import clock
from .errors import (
    CorruptRepository,
    NoRevisions,
    NotARepository,
    UnknownRevision,
    UnknownVM,
    UnsupportedFormat,
)
from .fsutil import fsync_dir, is_temp_name, write_file_atomic, write_json_atomic
from .locks import flocked
from .manifest import DISTRUSTED, Revision
from .names import check_name

REPOSITORY_FORMAT = "lifeboat-repository"
FORMAT_VERSION = 1
CHUNK_SIZE = 4 * 1024 * 1024
DEFAULT_ZSTD_LEVEL = 1
HASH_NAME = "blake3"
HEX_DIGITS = 64


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


class _Codec(threading.local):
    """Per-thread zstd contexts: zstandard's (de)compressors must not be shared between threads."""

    def __init__(self, level: int) -> None:
        self.compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
        self.sampler = zstandard.ZstdCompressor(level=1, write_content_size=False)
        self.decompressor = zstandard.ZstdDecompressor()


class Repository:
    """Access to ``ROOT/<vm>``. Methods are thread-safe unless they say otherwise."""

    def __init__(self, root: str, vm: str, config: dict[str, Any]) -> None:
        self.root = root
        self.vm = vm
        self.path = os.path.join(root, vm)
        self.config = config
        self.chunk_size = int(config["chunk_size"])
        self._codec = _Codec(int(config.get("zstd_level", DEFAULT_ZSTD_LEVEL)))

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str, vm: str) -> Repository:
        check_name("VM", vm)
        path = os.path.join(root, vm)
        config_path = os.path.join(path, "repository.json")
        if not os.path.isfile(config_path):
            if not is_root(root):
                raise NotARepository(root, vm)
            raise UnknownVM(vm, root)
        return cls(root, vm, _read_config(config_path))

    @classmethod
    def open_or_create(
        cls, root: str, vm: str, *, zstd_level: int = DEFAULT_ZSTD_LEVEL, chunk_size: int = CHUNK_SIZE
    ) -> Repository:
        """Open the VM's repository, creating it (with these settings) on its first backup."""
        check_name("VM", vm)
        path = os.path.join(root, vm)
        if os.path.isfile(os.path.join(path, "repository.json")):
            return cls.open(root, vm)
        if os.path.exists(root) and not os.path.isdir(root):
            raise NotARepository(root, vm)
        if os.path.isdir(path) and any(not is_temp_name(n) for n in os.listdir(path)):
            raise NotARepository(root, vm)  # a non-empty folder that is not ours: never write into it
        return cls._create(root, vm, zstd_level, chunk_size)

    @classmethod
    def _create(cls, root: str, vm: str, zstd_level: int, chunk_size: int) -> Repository:
        path = os.path.join(root, vm)
        os.makedirs(path, exist_ok=True)
        for sub in ("revisions", "quarantine"):
            os.makedirs(os.path.join(path, sub), exist_ok=True)
        chunks = os.path.join(path, "chunks")
        os.makedirs(chunks, exist_ok=True)
        for prefix in range(256):
            os.makedirs(os.path.join(chunks, f"{prefix:02x}"), exist_ok=True)
        config = {
            "format": REPOSITORY_FORMAT,
            "version": FORMAT_VERSION,
            "vm": vm,
            "chunk_size": chunk_size,
            "hash": HASH_NAME,
            "compression": "zstd",
            "zstd_level": zstd_level,
            "created": clock.isoformat(clock.now()),
        }
        write_json_atomic(os.path.join(path, "repository.json"), config)  # last: marks it complete
        fsync_dir(root)
        return cls(root, vm, config)

    # -- locks -----------------------------------------------------------------------------------
    def lock(self, *, exclusive: bool, wait: float | None, purpose: str) -> AbstractContextManager[None]:
        """The operation lock: backup/gc exclusive, restore/verify shared."""
        return flocked(os.path.join(self.path, "lock"), exclusive=exclusive, wait=wait, vm=self.vm,
                       purpose=purpose)

    def meta_lock(self) -> AbstractContextManager[None]:
        """Short exclusive lock around read-modify-write of manifests."""
        return flocked(os.path.join(self.path, "meta.lock"), exclusive=True, wait=None, vm=self.vm,
                       purpose="manifest update")

    # -- chunks ----------------------------------------------------------------------------------
    def chunk_path(self, chunk: str) -> str:
        return os.path.join(self.path, "chunks", chunk[:2], chunk)

    def has_chunk(self, chunk: str) -> bool:
        return os.path.exists(self.chunk_path(chunk))

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
        write_file_atomic(self.chunk_path(chunk), stored, mode=0o444, sync_dir=False)

    def read_stored(self, chunk: str) -> bytes:
        """The chunk file's bytes as stored (compressed), unverified."""
        try:
            with open(self.chunk_path(chunk), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise ChunkDamaged(chunk, "missing") from None
        except OSError as exc:
            raise ChunkDamaged(chunk, f"unreadable ({exc.strerror})") from None

    def decode(self, chunk: str, stored: bytes) -> bytes:
        """Decompress and check the hash: the only way plain chunk bytes leave the repository."""
        try:
            data = self._codec.decompressor.decompress(stored)
        except zstandard.ZstdError as exc:
            raise ChunkDamaged(chunk, f"cannot decompress ({exc})") from None
        if len(data) > self.chunk_size or chunk_hash(data) != chunk:
            raise ChunkDamaged(chunk, "content does not match its hash")
        return data

    def read_chunk(self, chunk: str) -> bytes:
        return self.decode(chunk, self.read_stored(chunk))

    def iter_chunk_files(self) -> Iterator[tuple[str, str]]:
        """Yield ``(name, path)`` of every file in the chunk folders, temp files included."""
        base = os.path.join(self.path, "chunks")
        for prefix in sorted(os.listdir(base)):
            folder = os.path.join(base, prefix)
            if not os.path.isdir(folder):
                continue
            for name in os.listdir(folder):
                yield name, os.path.join(folder, name)

    def sync_chunk_folders(self, prefixes: set[str]) -> None:
        for prefix in sorted(prefixes):
            fsync_dir(os.path.join(self.path, "chunks", prefix))

    def quarantine(self, chunk: str) -> str | None:
        """Move a damaged chunk aside (kept for forensics, never deleted). Returns its new path."""
        source = self.chunk_path(chunk)
        stamp = clock.now().strftime("%Y%m%dT%H%M%S.%fZ")
        destination = os.path.join(self.path, "quarantine", f"{chunk}.{stamp}")
        try:
            os.rename(source, destination)
        except FileNotFoundError:
            return None  # missing, or another verify moved it first
        fsync_dir(os.path.dirname(source))
        fsync_dir(os.path.dirname(destination))
        return destination

    def quarantined_chunks(self) -> set[str]:
        folder = os.path.join(self.path, "quarantine")
        return {name.split(".", 1)[0] for name in os.listdir(folder)} if os.path.isdir(folder) else set()

    # -- revisions -------------------------------------------------------------------------------
    def _revision_path(self, revision_id: str) -> str:
        return os.path.join(self.path, "revisions", f"{revision_id}.json")

    def revision_ids(self) -> list[str]:
        folder = os.path.join(self.path, "revisions")
        return [n[: -len(".json")] for n in os.listdir(folder) if n.endswith(".json") and not n.startswith(".")]

    def revisions(self) -> list[Revision]:
        """Every revision, oldest first."""
        found = [self.load_revision(rid) for rid in self.revision_ids()]
        return sorted(found, key=lambda r: (r.created, r.id))

    def load_revision(self, revision_id: str) -> Revision:
        check_name("revision", revision_id)
        path = self._revision_path(revision_id)
        try:
            with open(path, "rb") as handle:
                doc = json.loads(handle.read())
        except FileNotFoundError:
            raise UnknownRevision(revision_id, self.vm) from None
        except (OSError, ValueError) as exc:
            raise CorruptRepository(path, exc) from exc
        return Revision.from_json(doc, path)

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
        write_json_atomic(self._revision_path(revision.id), revision.to_json())

    def update_revision(self, revision_id: str, change: Callable[[Revision], None]) -> Revision:
        """Apply ``change`` to a manifest under the metadata lock and write it back atomically."""
        with self.meta_lock():
            revision = self.load_revision(revision_id)
            change(revision)
            self.write_revision(revision)
            return revision

    def delete_revision(self, revision_id: str) -> None:
        os.unlink(self._revision_path(revision_id))
        fsync_dir(os.path.join(self.path, "revisions"))

    def new_revision_id(self) -> str:
        return clock.now().strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)

    # -- leftovers -------------------------------------------------------------------------------
    def remove_leftovers(self) -> int:
        """Delete temp files of interrupted writes. Call only under the exclusive lock."""
        removed = 0
        folders = [os.path.join(self.path, "revisions"), self.path]
        for folder in folders:
            for name in os.listdir(folder):
                if is_temp_name(name):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
        for name, path in self.iter_chunk_files():
            if is_temp_name(name):
                os.unlink(path)
                removed += 1
        return removed


def is_root(root: str) -> bool:
    """True when ``root`` is a folder holding at least one repository (or nothing at all yet)."""
    if not os.path.isdir(root):
        return False
    entries = os.listdir(root)
    return any(os.path.isfile(os.path.join(root, e, "repository.json")) for e in entries)


def list_vms(root: str) -> list[str]:
    if not os.path.isdir(root):
        return []
    return sorted(e for e in os.listdir(root) if os.path.isfile(os.path.join(root, e, "repository.json")))


def _read_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            config = json.loads(handle.read())
        if not isinstance(config, dict) or config.get("format") != REPOSITORY_FORMAT:
            raise ValueError("not a Lifeboat repository description")
        version = int(config["version"])
        chunk_size = int(config["chunk_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptRepository(path, exc) from exc
    if version > FORMAT_VERSION:
        raise UnsupportedFormat(os.path.dirname(path), version, FORMAT_VERSION)
    if config.get("hash") != HASH_NAME or config.get("compression") != "zstd" or chunk_size <= 0:
        raise CorruptRepository(path, "unsupported hash, compression or chunk size")
    return config
