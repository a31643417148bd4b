"""A revision as a read-only, seekable byte stream that fetches, verifies and caches chunks on demand.

This is how file-level access reads a filesystem inside a backup without restoring the image: only the
chunks that hold the requested bytes are read. A damaged chunk raises ``DamagedRange`` by default (a
file read must not silently return zeros); ``on_damage="zero"`` reads zeros instead and records the
range in ``damaged``.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

from .errors import StorageError
from .manifest import Range, Revision, merge_ranges
from .repository import ChunkDamaged, Repository

DEFAULT_CACHE_CHUNKS = 8


class DamagedRange(StorageError):
    """bytes {}-{} of revision {!r} are damaged (chunk {}: {})"""


class RevisionStream(io.RawIOBase):
    """The bytes of one disk of a revision: pass ``revision.only(name)`` for a revision of several disks."""

    def __init__(
        self,
        repo: Repository,
        revision: Revision,
        *,
        cache_chunks: int = DEFAULT_CACHE_CHUNKS,
        on_damage: str = "raise",
    ) -> None:
        super().__init__()
        if on_damage not in ("raise", "zero"):
            raise ValueError("on_damage must be 'raise' or 'zero'")
        self.repo = repo
        self.revision = revision
        self.size = revision.disk().size  # AmbiguousDisk now, not at the first read
        self.on_damage = on_damage
        self.damaged: list[Range] = []
        self.chunks_fetched = 0
        self._position = 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_chunks = max(1, cache_chunks)
        self._lock = threading.Lock()

    # -- io.RawIOBase ----------------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError("negative seek position")
        self._position = position
        return position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self.pread(self._position, len(view))
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self.size - self._position)
        data = self.pread(self._position, size)
        self._position += len(data)
        return data

    # -- random access ---------------------------------------------------------------------------
    def pread(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset+length)`` clipped to the revision size."""
        end = min(self.size, offset + length)
        if offset >= end:
            return b""
        chunk_size = self.revision.chunk_size
        parts: list[bytes] = []
        position = offset
        while position < end:
            index = position // chunk_size
            block = self.block(index)
            inner = position - index * chunk_size
            piece = block[inner : inner + (end - position)]
            parts.append(piece)
            position += len(piece)
        return b"".join(parts)

    def damaged_ranges_for(self, start: int, end: int) -> list[Range]:
        """Damaged ranges (found so far) that overlap ``[start, end)``."""
        return [(max(s, start), min(e, end)) for s, e in self.damaged if s < end and e > start]

    def block(self, index: int) -> bytes:
        """The verified bytes of chunk ``index`` (zeros for a zero chunk), from the cache when there."""
        with self._lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
        start, end = self.revision.chunk_range(index)
        chunk = self.revision.chunks[index]
        if chunk is None:
            block = bytes(end - start)
        else:
            try:
                block = self.repo.read_chunk(chunk)
                if len(block) != end - start:
                    raise ChunkDamaged(chunk, "length does not match the manifest")
                self.chunks_fetched += 1
            except ChunkDamaged as exc:
                if self.on_damage == "raise":
                    raise DamagedRange(start, end, self.revision.id, chunk, exc.reason) from None
                with self._lock:
                    self.damaged = merge_ranges([*self.damaged, (start, end)])
                block = bytes(end - start)
        with self._lock:
            self._cache[index] = block
            while len(self._cache) > self._cache_chunks:
                self._cache.popitem(last=False)
        return block


def open_revision(root: str, vm: str, revision_id: str, disk: str | None = None,
                  **options: object) -> RevisionStream:
    """Open a disk (default: the only one) of ``ROOT/<vm>`` revision (or ``latest``) as a stream.

    See RevisionStream for the options.
    """
    repo = Repository.open(root, vm)
    revision = repo.resolve(revision_id).only(disk)
    return RevisionStream(repo, revision, **options)  # type: ignore[arg-type]
