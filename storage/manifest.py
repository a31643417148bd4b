"""Revision manifests: the self-describing map from a revision's byte ranges to its chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptRepository

MANIFEST_FORMAT = "lifeboat-revision"
MANIFEST_VERSION = 1

TRUSTED = "trusted"
VERIFIED = "verified"
DISTRUSTED = "distrusted"
TRUST_STATES = (TRUSTED, VERIFIED, DISTRUSTED)

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
        try:
            if doc["format"] != MANIFEST_FORMAT:
                raise ValueError(f"not a revision manifest ({doc['format']!r})")
            if int(doc["version"]) > MANIFEST_VERSION:
                raise ValueError(f"manifest version {doc['version']} is newer than this Lifeboat")
            revision = cls(
                id=str(doc["id"]),
                vm=str(doc["vm"]),
                created=str(doc["created"]),
                size=int(doc["size"]),
                chunk_size=int(doc["chunk_size"]),
                chunks=[None if c is None else str(c) for c in doc["chunks"]],
                parent=doc.get("parent"),
                source=str(doc.get("source", "")),
                tags=[str(t) for t in doc.get("tags", [])],
                trust=str(doc.get("trust", TRUSTED)),
                verified_at=doc.get("verified_at"),
                protected=bool(doc.get("protected", False)),
                stats=dict(doc.get("stats", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRepository(where, exc) from exc
        expected = -(-revision.size // revision.chunk_size) if revision.chunk_size > 0 else -1
        if revision.size < 0 or len(revision.chunks) != expected or revision.trust not in TRUST_STATES:
            raise CorruptRepository(where, "chunk list does not match the size, or unknown trust")
        return revision


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
