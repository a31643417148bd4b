"""Backup sources by spec: ``file:PATH`` and ``rbd:POOL/IMAGE``."""

from __future__ import annotations

from ..errors import BadSource
from .base import Snapshot, Source
from .file import FileSource

__all__ = ["Snapshot", "Source", "open_source"]


def open_source(spec: str) -> Source:
    kind, _, rest = spec.partition(":")
    if kind == "file" and rest:
        return FileSource(rest)
    if kind == "rbd" and rest:
        from .rbd import make_rbd_source  # only sources that need Ceph import it

        return make_rbd_source(spec)
    raise BadSource(spec)
