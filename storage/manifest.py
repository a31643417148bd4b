"""Revision manifests: the self-describing map from a revision's byte ranges to its chunks."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import CorruptRepository

MANIFEST_FORMAT = "lifeboat-revision"
MANIFEST_VERSION = 1
#: the most bytes of a manifest read: ~70 bytes per chunk, so ~3.8 million chunks (15 TiB of 4 MiB chunks)
MAX_MANIFEST_BYTES = 256 << 20
_HASH = re.compile(r"[0-9a-f]{64}")

class Trust(StrEnum):
    """How far the engine trusts a revision: as written (trusted), read back against every chunk hash since
    (verified), or found damaged by a verify (distrusted: restores still run, and say what was lost)."""

    TRUSTED = "trusted"
    VERIFIED = "verified"
    DISTRUSTED = "distrusted"


TRUSTED, VERIFIED, DISTRUSTED = Trust.TRUSTED, Trust.VERIFIED, Trust.DISTRUSTED
TRUST_STATES = tuple(Trust)

Range = tuple[int, int]


@dataclass
class Revision:
    """One backup point. ``chunks[i]`` holds bytes ``[i*chunk_size, min((i+1)*chunk_size, size))``."""

    id: str
    vm: str
    created: str
    size: int
    chunk_size: int
    chunks: list[str | None]
    parent: str | None = None
    source: str = ""
    tags: list[str] = field(default_factory=list)
    trust: str = TRUSTED
    verified_at: str | None = None
    protected: bool = False
    stats: dict[str, Any] = field(default_factory=dict)

    def chunk_range(self, index: int) -> Range:
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.size)

    def ranges_of(self, hashes: set[str]) -> list[Range]:
        """Merged byte ranges of this revision that are stored in any of ``hashes``."""
        ranges = [self.chunk_range(i) for i, h in enumerate(self.chunks) if h is not None and h in hashes]
        return merge_ranges(ranges)

    @property
    def distrusted(self) -> bool:
        return self.trust == DISTRUSTED

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "id": self.id,
            "vm": self.vm,
            "created": self.created,
            "parent": self.parent,
            "source": self.source,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "tags": self.tags,
            "trust": self.trust,
            "verified_at": self.verified_at,
            "protected": self.protected,
            "stats": self.stats,
            "chunks": self.chunks,
        }

    def summary(self) -> dict[str, Any]:
        """The manifest without its chunk list (for listings)."""
        doc = self.to_json()
        del doc["chunks"], doc["format"], doc["version"]
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
            if _integer(doc, "version", minimum=1) > MANIFEST_VERSION:
                raise ValueError(f"manifest version {doc['version']} is newer than this Lifeboat")
            revision = cls(
                id=_text(doc, "id"),
                vm=_text(doc, "vm"),
                created=_moment(doc, "created"),
                size=_integer(doc, "size", minimum=0),
                chunk_size=_integer(doc, "chunk_size", minimum=1),
                chunks=_chunk_list(doc),
                parent=_text(doc, "parent", optional=True),
                source=_text(doc, "source", default=""),
                tags=_texts(doc, "tags"),
                trust=_text(doc, "trust", default=TRUSTED),
                verified_at=_moment(doc, "verified_at", optional=True),
                protected=_flag(doc, "protected"),
                stats=_mapping(doc, "stats"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRepository(where, exc) from exc
        expected = -(-revision.size // revision.chunk_size)
        if len(revision.chunks) != expected or revision.trust not in TRUST_STATES:
            raise CorruptRepository(where, "chunk list does not match the size, or unknown trust")
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
