"""Revision manifests: the self-describing map from a revision's byte ranges to its chunks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import CorruptRepository, StorageError
from .names import NAME_PATTERN

MANIFEST_FORMAT = "lifeboat-revision"
#: the version this Lifeboat writes; it reads every version from 1 up to it (see docs/FORMAT.md)
MANIFEST_VERSION = 2
#: version 1: one implicit disk (top-level size, source and chunks), written before multi-disk revisions
SINGLE_DISK_VERSION = 1
#: the name of the implicit disk of a version 1 manifest, and of a backup's only disk when none is named
ROOT_DISK = "root"
#: the most bytes of a manifest read: ~70 bytes per chunk, so ~3.8 million chunks (15 TiB of 4 MiB chunks)
MAX_MANIFEST_BYTES = 256 << 20
#: the most disks one revision may have (a VM has a handful; the cap keeps a hostile manifest small to check)
MAX_DISKS = 256
_HASH = re.compile(r"[0-9a-f]{64}")
#: the top-level fields of a version 1 manifest that moved into ``disks`` in version 2
_DISK_FIELDS = ("size", "source", "chunks")

class Trust(StrEnum):
    """How far the engine trusts a revision: as written (trusted), read back against every chunk hash since
    (verified), or found damaged by a verify (distrusted: restores still run, and say what was lost)."""

    TRUSTED = "trusted"
    VERIFIED = "verified"
    DISTRUSTED = "distrusted"


TRUSTED, VERIFIED, DISTRUSTED = Trust.TRUSTED, Trust.VERIFIED, Trust.DISTRUSTED
TRUST_STATES = tuple(Trust)

Range = tuple[int, int]


class AmbiguousDisk(StorageError):
    """revision {!r} of VM {!r} has several disks ({}): name one (--disk NAME)"""


class UnknownDisk(StorageError):
    """revision {!r} of VM {!r} has no disk {!r} (it has {})"""


@dataclass
class DiskImage:
    """One disk of a revision: ``chunks[i]`` holds bytes ``[i*chunk_size, min((i+1)*chunk_size, size))``."""

    name: str
    size: int
    chunks: list[str | None]
    source: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "source": self.source, "stats": self.stats,
                "chunks": self.chunks}

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "source": self.source}


@dataclass
class Revision:
    """One backup point of a VM: every disk of it, taken under one freeze, in ``disks`` (in backup order).

    Code that reads a disk's bytes works on ``only(name)``, a view with that one disk: ``chunks``,
    ``chunk_range`` and ``ranges_of`` answer for a revision of exactly one disk and raise AmbiguousDisk
    otherwise, so single-disk code can never silently read the first of several disks.
    """

    id: str
    vm: str
    created: str
    chunk_size: int
    disks: list[DiskImage]
    parent: str | None = None
    tags: list[str] = field(default_factory=list)
    trust: str = TRUSTED
    verified_at: str | None = None
    protected: bool = False
    stats: dict[str, Any] = field(default_factory=dict)
    #: the manifest version this revision is written as: a version 1 manifest stays version 1 when its trust
    #: or protection changes, so a repository the old code wrote stays readable by the old code
    version: int = MANIFEST_VERSION
    #: in an encrypted repository: the sealed part of its manifest as stored (kept when trust or protection
    #: change, so that needs no key) and the chunk names its envelope lists (storage.crypto)
    sealed: dict[str, Any] | None = field(default=None, repr=False)
    sealed_chunks: list[str] | None = field(default=None, repr=False)

    # -- disks -----------------------------------------------------------------------------------
    @property
    def disk_names(self) -> list[str]:
        return [d.name for d in self.disks]

    def disk(self, name: str | None = None) -> DiskImage:
        """The disk called ``name``; without a name the only disk (AmbiguousDisk when there are several)."""
        if name is None:
            if len(self.disks) != 1:
                raise AmbiguousDisk(self.id, self.vm, ", ".join(self.disk_names))
            return self.disks[0]
        for disk in self.disks:
            if disk.name == name:
                return disk
        raise UnknownDisk(self.id, self.vm, name, ", ".join(self.disk_names))

    def has_disk(self, name: str) -> bool:
        return name in self.disk_names

    def only(self, name: str | None = None) -> Revision:
        """This revision seen as one disk (``disk(name)``): what restores, streams and browsing read."""
        return replace(self, disks=[self.disk(name)])

    def all_chunks(self) -> Iterator[str]:
        """Every chunk name of every disk, in order, with repeats (gc, verify, repair, replication).

        A revision read without its key has no disks: its envelope's chunk names stand for them.
        """
        if not self.disks and self.sealed_chunks is not None:
            yield from self.sealed_chunks
        for disk in self.disks:
            yield from (c for c in disk.chunks if c is not None)

    @property
    def size(self) -> int:
        """Bytes of all disks together (the size of the backup point; one disk's size for one disk)."""
        return sum(d.size for d in self.disks)

    @property
    def chunks(self) -> list[str | None]:
        return self.disk().chunks

    @property
    def source(self) -> str:
        return self.disk().source

    def chunk_range(self, index: int) -> Range:
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.disk().size)

    def ranges_of(self, hashes: set[str]) -> list[Range]:
        """Merged byte ranges of this one-disk revision that are stored in any of ``hashes``."""
        return self.disk_ranges_of(hashes).get(self.disk().name, [])

    def disk_ranges_of(self, hashes: set[str]) -> dict[str, list[Range]]:
        """Per disk with any, the merged byte ranges stored in any of ``hashes``."""
        found: dict[str, list[Range]] = {}
        for disk in self.disks:
            ranges = [(i * self.chunk_size, min((i + 1) * self.chunk_size, disk.size))
                      for i, h in enumerate(disk.chunks) if h is not None and h in hashes]
            if ranges:
                found[disk.name] = merge_ranges(ranges)
        return found

    @property
    def distrusted(self) -> bool:
        return self.trust == DISTRUSTED

    # -- JSON ------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "version": self.version,
            "id": self.id,
            "vm": self.vm,
            "created": self.created,
            "parent": self.parent,
            "chunk_size": self.chunk_size,
            "tags": self.tags,
            "trust": self.trust,
            "verified_at": self.verified_at,
            "protected": self.protected,
            "stats": self.stats,
        }
        if self.version == SINGLE_DISK_VERSION:  # main's exact shape (see tests/storage/fixtures/v1-repository)
            disk = self.disk()
            doc.update(source=disk.source, size=disk.size, chunks=disk.chunks)
        else:
            doc["disks"] = [d.to_json() for d in self.disks]
        return doc

    def summary(self) -> dict[str, Any]:
        """The manifest without chunk lists (for listings): ``size`` is all disks', ``disks`` each one's."""
        doc = self.to_json()
        for key in ("chunks", "format", "version", "disks"):
            doc.pop(key, None)
        doc["size"] = self.size
        doc["source"] = self.disks[0].source if len(self.disks) == 1 else ""
        doc["disks"] = [d.summary() for d in self.disks]
        return doc

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Revision:
        """A revision from a parsed manifest, every field checked for its type (CorruptRepository otherwise).

        Manifests are read back from disk and from other portals: a wrong type must be "this manifest is
        unreadable", never a traceback later (a string size, a chunk name that walks out of ``chunks/``).
        """
        try:
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            if doc.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"not a revision manifest ({doc.get('format')!r})")
            version = _integer(doc, "version", minimum=1)
            if version > MANIFEST_VERSION:
                raise ValueError(f"manifest version {version} is newer than this Lifeboat")
            chunk_size = _integer(doc, "chunk_size", minimum=1)
            revision = cls(
                id=_text(doc, "id"),
                vm=_text(doc, "vm"),
                created=_moment(doc, "created"),
                chunk_size=chunk_size,
                disks=_v1_disk(doc) if version == SINGLE_DISK_VERSION else _disk_list(doc),
                parent=_text(doc, "parent", optional=True),
                tags=_texts(doc, "tags"),
                trust=_text(doc, "trust", default=TRUSTED),
                verified_at=_moment(doc, "verified_at", optional=True),
                protected=_flag(doc, "protected"),
                stats=_mapping(doc, "stats"),
                version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRepository(where, exc) from exc
        if revision.trust not in TRUST_STATES:
            raise CorruptRepository(where, "unknown trust")
        for disk in revision.disks:
            if len(disk.chunks) != -(-disk.size // chunk_size):
                raise CorruptRepository(where, f"the chunk list of disk {disk.name!r} does not match its size")
        return revision

    @classmethod
    def parse(cls, data: bytes, where: str, revision_id: str, chunk_size: int) -> Revision:
        """The manifest ``data`` of ``revision_id`` in a repository of ``chunk_size``; CorruptRepository otherwise.

        The id inside must be the one it is stored under: a copy of another revision's manifest would otherwise
        restore that other revision, silently, when this one is asked for.
        """
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested a hundred thousand levels deep
            raise CorruptRepository(where, f"not valid JSON ({str(exc)[:200]})") from None
        revision = cls.from_json(doc, where)
        if revision.id != revision_id:
            raise CorruptRepository(where, f"the manifest names revision {revision.id!r}, which does not match "
                                           f"its file name {revision_id!r}")
        if revision.chunk_size != chunk_size:
            raise CorruptRepository(where, f"chunk size {revision.chunk_size} is not the repository's {chunk_size}")
        return revision


_REQUIRED = object()  # the default of a field that must be there


def _value(doc: dict[str, Any], key: str, default: Any) -> Any:
    if key not in doc:
        if default is _REQUIRED:
            raise KeyError(key)
        return default
    return doc[key]


def _text(doc: dict[str, Any], key: str, *, default: Any = _REQUIRED, optional: bool = False) -> Any:
    value = _value(doc, key, None if optional else default)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _integer(doc: dict[str, Any], key: str, *, minimum: int) -> int:
    value = _value(doc, key, _REQUIRED)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be a whole number of at least {minimum}")
    return value


def _moment(doc: dict[str, Any], key: str, *, optional: bool = False) -> Any:
    value = _text(doc, key, optional=optional)
    if value is not None:
        datetime.fromisoformat(value.replace("Z", "+00:00"))  # ValueError: not a timestamp
    return value


def _flag(doc: dict[str, Any], key: str) -> bool:
    value = _value(doc, key, False)
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false")
    return value


def _texts(doc: dict[str, Any], key: str) -> list[str]:
    value = _value(doc, key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"{key} must be a list of strings")
    return value


def _mapping(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = _value(doc, key, {})
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be an object")
    return value


def _v1_disk(doc: dict[str, Any]) -> list[DiskImage]:
    """The implicit disk of a version 1 manifest: its top-level size, source and chunks, named ``root``."""
    if "disks" in doc:
        raise ValueError("a version 1 manifest has no disks list")
    return [DiskImage(ROOT_DISK, _integer(doc, "size", minimum=0), _chunk_list(doc),
                      _text(doc, "source", default=""))]


def _disk_list(doc: dict[str, Any]) -> list[DiskImage]:
    """The ``disks`` of a version 2 manifest: at least one, names unique and usable as path segments."""
    stray = [key for key in _DISK_FIELDS if key in doc]
    if stray:
        raise ValueError(f"{', '.join(stray)} belong in the disks of a version {MANIFEST_VERSION} manifest")
    value = _value(doc, "disks", _REQUIRED)
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_DISKS:
        raise TypeError(f"disks must be a list of 1 to {MAX_DISKS} disks")
    disks: list[DiskImage] = []
    for item in value:
        if not isinstance(item, dict):
            raise TypeError("each disk must be an object")
        name = _text(item, "name")
        if not NAME_PATTERN.fullmatch(name) or name in (d.name for d in disks):
            raise ValueError(f"disk name {name[:80]!r} is invalid or repeated")
        disks.append(DiskImage(name, _integer(item, "size", minimum=0), _chunk_list(item),
                               _text(item, "source", default=""), _mapping(item, "stats")))
    return disks


def _chunk_list(doc: dict[str, Any]) -> list[str | None]:
    value = _value(doc, "chunks", _REQUIRED)
    if not isinstance(value, list):
        raise TypeError("chunks must be a list")
    for chunk in value:
        if chunk is not None and not (isinstance(chunk, str) and _HASH.fullmatch(chunk)):
            raise ValueError(f"invalid chunk name {str(chunk)[:80]!r}")
    return value


def merge_ranges(ranges: list[Range]) -> list[Range]:
    """Sort and merge touching or overlapping ``[start, end)`` ranges."""
    merged: list[Range] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged
