"""What the backup engine needs from a source of disk data (file: image, rbd: image).

A backup asks its source for a point-in-time snapshot named after the new revision, reads from it, and
afterwards tells the source which snapshots it still needs as parents of the next incremental backup.

Sequence, as ``storage.backup`` drives it::

    source.prepare()      # for every disk of the VM: connect, before the freeze
    run pre-hook          (e.g. fsfreeze in the guest)
    retirements = take_snapshots(sources, rev_id, keep={rev_id, parent_id})   # every disk, in a row; quick:
                          # the guest is frozen; each source's older snapshots are removed meanwhile
    run post-hook         (always, even when a snapshot failed)
    retirement.wait()     # for each: warnings, snapshots that could not be removed
    with source.open_snapshot(rev_id, parent_id) as snap:
        snap.size, snap.changed_ranges(), snap.removed_ranges() (incremental) or snap.data_ranges() (full),
        snap.read(off, n) ...
    on failure: source.discard_snapshot(rev_id)
    (on success the parent's snapshot stays until the next backup retires it)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Range = tuple[int, int]  # [start, end) in bytes


class Retirement:
    """Snapshot removals that may still be running; ``wait()`` returns once they are done, with warnings."""

    def __init__(self, wait: Callable[[], list[str]] | None = None) -> None:
        self._wait = wait
        self._warnings: list[str] | None = None

    def wait(self) -> list[str]:
        if self._warnings is None:
            self._warnings = self._wait() if self._wait else []
        return self._warnings


class Snapshot(ABC):
    """A read-only, point-in-time view of a source's bytes."""

    size: int

    @abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset`` (short only at the end). Must be thread-safe."""

    def data_ranges(self) -> list[Range] | None:
        """Ranges that may hold non-zero data, sorted; everything else is known zero. None: unknown."""
        return None

    def changed_ranges(self) -> list[Range] | None:
        """Ranges that changed since the parent snapshot, sorted. None: no usable parent, read everything.

        Only sources that keep snapshots (rbd:) can answer; a chunk outside these ranges is taken from
        the parent revision without reading it.
        """
        return None

    def removed_ranges(self) -> list[Range]:
        """The part of ``changed_ranges()`` that is a hole now (discarded since the parent): zero, unread."""
        return []

    @property
    def bytes_read_by_source(self) -> int:
        """Bytes the source itself read beyond ``read`` calls (e.g. to compute a diff); usually 0."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional for snapshots
        """Release resources (file descriptors, mapped devices)."""


class Source(ABC):
    """A place disk data comes from, named by a spec such as ``file:/path`` or ``rbd:pool/image``."""

    spec: str

    def prepare(self) -> None:  # noqa: B027 - optional for sources
        """Do the slow part of snapshotting (connect to a cluster) before the guest is frozen."""

    def create_snapshot(self, revision_id: str) -> None:  # noqa: B027 - optional for sources
        """Take the point-in-time snapshot for ``revision_id`` (no-op for plain files)."""

    def snapshot_and_retire(self, revision_id: str, keep: set[str]) -> Retirement:
        """Take the snapshot for ``revision_id`` and retire this source's snapshots of revisions not in ``keep``.

        Returns when the snapshot exists; the removals may go on (``Retirement.wait()``). Sources whose
        snapshot operations are slow run both at once (rbd:, where each waits for a monitor round).
        """
        self.create_snapshot(revision_id)
        try:
            self.retire_snapshots(keep)
        except Exception as exc:  # noqa: BLE001 - housekeeping: a snapshot left costs space, not data
            warning = f"could not remove old snapshots: {exc}"
            return Retirement(lambda: [warning])
        return Retirement()

    @abstractmethod
    def _open(self, revision_id: str, parent_id: str | None) -> Snapshot:
        """Open the snapshot taken for ``revision_id``; ``parent_id`` is the previous trusted revision."""

    @contextmanager
    def open_snapshot(self, revision_id: str, parent_id: str | None) -> Iterator[Snapshot]:
        snap = self._open(revision_id, parent_id)
        try:
            yield snap
        finally:
            snap.close()

    def discard_snapshot(self, revision_id: str) -> None:  # noqa: B027 - optional for sources
        """Remove the snapshot of a backup that failed (no-op for plain files)."""

    def retire_snapshots(self, keep: set[str]) -> None:  # noqa: B027 - optional for sources
        """Remove this source's Lifeboat snapshots except those of revisions in ``keep``."""

    def close(self) -> None:  # noqa: B027 - optional for sources
        """Release what the source holds across calls (a cluster connection)."""
