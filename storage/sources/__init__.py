"""Backup sources by spec: ``file:PATH`` and ``rbd:POOL/IMAGE``."""

from __future__ import annotations

from ..errors import BadSource
from .base import Retirement, Snapshot, Source
from .file import FileSource

__all__ = ["Snapshot", "Source", "open_source", "take_snapshots"]


def open_source(spec: str) -> Source:
    kind, _, rest = spec.partition(":")
    if kind == "file" and rest:
        return FileSource(rest)
    if kind == "rbd" and rest:
        from .rbd import make_rbd_source  # only sources that need Ceph import it

        return make_rbd_source(spec)
    raise BadSource(spec)


def take_snapshots(sources: list[Source], revision_id: str, keep: set[str], retirements: list[Retirement]) -> None:
    """Snapshot every disk of one backup for ``revision_id``, all or none, while the guest is frozen; each
    source retires its snapshots not in ``keep`` with the create (appended to ``retirements`` to wait for).

    The snapshots are taken one after the other; when one fails, the ones already taken are removed before
    the error goes up, so a failed backup leaves no snapshot behind on any disk.
    """
    taken: list[Source] = []
    try:
        for source in sources:
            retirements.append(source.snapshot_and_retire(revision_id, keep))
            taken.append(source)
    except BaseException:
        for source in reversed(taken):
            try:
                source.discard_snapshot(revision_id)
            except Exception:  # noqa: S112 - the first error is the one to report; the rest is cleanup
                continue
        raise
