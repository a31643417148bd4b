"""A revision as the servers see it: verified byte pieces, zero chunks without reading, damage recorded.

Every byte handed to a server comes from a chunk that was re-hashed when it was read (the stream's cache
holds only verified chunks). A zero chunk is answered from one shared buffer of zeros, so the sparse parts of
a disk cost neither a read nor cache space. A damaged chunk is recorded (range and chunk) and, by default,
raised as ``DamagedRange`` so the server can answer an I/O error for exactly that request: a disk that reads
wrong bytes is worse than one that reads none. ``zero_damaged`` serves zeros there instead, as restores do;
instant restore uses that so that a hydration runs to the end and names what was lost.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ..manifest import Range, Revision, merge_ranges
from ..repository import Repository
from ..stream import DamagedRange, RevisionStream

#: chunks kept decoded in memory: a client reading in 64 KiB pieces decodes each chunk once
CACHE_CHUNKS = 16


@dataclass(frozen=True)
class Extent:
    """``[start, end)`` of the disk, all zeros (a hole) or data."""

    start: int
    end: int
    zero: bool


class ServedDisk:
    """Thread-safe random access to one revision for the HTTP and NBD servers."""

    def __init__(self, repo: Repository, revision: Revision, *, zero_damaged: bool = False,
                 cache_chunks: int = CACHE_CHUNKS) -> None:
        self.repo = repo
        self.revision = revision
        self.size = revision.size
        self.zero_damaged = zero_damaged
        self.bytes_served = 0
        self._stream = RevisionStream(repo, revision, cache_chunks=cache_chunks, on_damage="raise")
        self._zeros = memoryview(bytes(revision.chunk_size))
        self._lock = threading.Lock()
        self._damaged: list[Range] = []
        self._damaged_chunks: set[str] = set()

    @property
    def damaged(self) -> list[Range]:
        """Merged byte ranges found damaged so far (served as errors, or as zeros with ``zero_damaged``)."""
        with self._lock:
            return list(self._damaged)

    @property
    def damaged_chunks(self) -> list[str]:
        with self._lock:
            return sorted(self._damaged_chunks)

    def pieces(self, start: int, end: int) -> Iterator[memoryview]:
        """Yield the bytes of ``[start, end)`` (clipped to the disk) chunk by chunk, each verified.

        Raises DamagedRange (after recording it) when a chunk is damaged and ``zero_damaged`` is off; the
        pieces before it were good and already yielded.
        """
        end = min(end, self.size)
        chunk_size = self.revision.chunk_size
        position = start
        while position < end:
            index = position // chunk_size
            chunk_start, chunk_end = self.revision.chunk_range(index)
            block = self._block(index, chunk_start, chunk_end)
            piece = block[position - chunk_start : min(end, chunk_end) - chunk_start]
            with self._lock:
                self.bytes_served += len(piece)
            yield piece
            position += len(piece)

    def read(self, start: int, length: int) -> bytes:
        """Bytes ``[start, start+length)`` in one piece (the NBD plugin's pread)."""
        return b"".join(self.pieces(start, start + length))

    def extents(self, start: int, end: int) -> Iterator[Extent]:
        """Runs of zero and data chunks overlapping ``[start, end)``, from the manifest alone."""
        end = min(end, self.size)
        chunk_size = self.revision.chunk_size
        position = start
        while position < end:
            index = position // chunk_size
            zero = self.revision.chunks[index] is None
            run_end = self.revision.chunk_range(index)[1]
            while run_end < end and (self.revision.chunks[run_end // chunk_size] is None) == zero:
                run_end = self.revision.chunk_range(run_end // chunk_size)[1]
            yield Extent(position, min(run_end, end), zero)
            position = min(run_end, end)

    def _block(self, index: int, start: int, end: int) -> memoryview:
        if self.revision.chunks[index] is None:
            return self._zeros[: end - start]
        try:
            return memoryview(self._stream.block(index))
        except DamagedRange as exc:
            with self._lock:
                self._damaged = merge_ranges([*self._damaged, (start, end)])
                self._damaged_chunks.add(str(self.revision.chunks[index]))
            if not self.zero_damaged:
                raise exc from None
            return self._zeros[: end - start]
