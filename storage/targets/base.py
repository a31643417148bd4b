"""What the restore engine needs from a place a revision is written to (file, block device, rbd image).

Sequence, as ``storage.restore`` drives it::

    target = make_target(spec, force=...)     # checks: exists without force -> TargetExists
    target.begin(size, resume_key)            # create (or reopen, when resuming) the partial output
    target.write(offset, data)                # from several threads at once
    target.zero(offset, length)               # only when not target.zero_is_free
    target.flush()                            # make writes so far durable (before the resume state)
    target.commit()                           # publish: rename into place / nothing for devices
    target.abort()                            # on bad input only; an interrupted restore keeps its partial

Resuming: ``state_path`` names a small JSON file the engine keeps beside the partial output; when it
exists and names the same revision and size, chunks it lists as done are read back, checked against
their hashes, and written again only if they do not match (so the state may run ahead of the data on
disk after a power cut without harm, and no flush is needed while restoring).
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Target(ABC):
    spec: str
    #: True when untouched ranges of the freshly begun output read as zeros (sparse file, new rbd image):
    #: zero chunks are then skipped instead of written.
    zero_is_free: bool = True
    #: True when ``read_back`` works; otherwise the engine flushes before every resume-state save.
    can_read_back: bool = False

    @property
    @abstractmethod
    def state_path(self) -> str:
        """Where the engine keeps resume state for this target."""

    def can_resume(self) -> bool:
        """True when a partial output from an interrupted run is still there to continue."""
        return True

    @abstractmethod
    def begin(self, size: int, resuming: bool) -> None:
        """Create the partial output of ``size`` bytes, or reopen it when ``resuming``."""

    def read_back(self, offset: int, length: int) -> bytes:
        """Bytes already in the partial output, to check chunks an interrupted run recorded as done.

        Only called when ``can_read_back`` is True.
        """
        raise NotImplementedError

    @abstractmethod
    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset``; must be thread-safe."""

    def zero(self, offset: int, length: int) -> None:
        """Make ``[offset, offset+length)`` read as zeros (default: write zeros)."""
        self.write(offset, bytes(length))

    @abstractmethod
    def flush(self) -> None:
        """Make every write so far durable."""

    @abstractmethod
    def commit(self) -> None:
        """Publish the complete output under its final name."""

    def abort(self) -> None:  # noqa: B027 - optional
        """Remove a partial output that must not be resumed."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release resources without publishing (the partial output stays for a resume)."""
