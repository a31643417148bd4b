"""Background durability: fsync in threads of its own, so the CPU-bound threads never wait for the disk.

Hashing and compressing a chunk takes about as long as writing it out with fsync; doing both in the same
thread serialises them. Here the worker threads only write into the page cache and hand the file over;
flusher threads fsync it and only then rename it to its final name, so a chunk is never visible under
its name before its bytes are on disk (a power cut cannot leave a "known" chunk that holds garbage).
"""

from __future__ import annotations

import os
import queue
import threading

from .fsutil import fsync, temp_name

MAX_PENDING = 32  # chunks written but not yet durable: bounds the dirty page cache (128 MiB)


def write_temp(final_path: str, data: bytes) -> tuple[int, str]:
    """Write ``data`` to a new read-only temp file beside ``final_path``; return its open fd and its path.

    The caller fsyncs and closes the fd and renames the file; on a write error nothing is left behind.
    """
    tmp = temp_name(final_path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


class ChunkWriter:
    """Write chunk files; ``close()`` returns once every one is durable under its final name."""

    def __init__(self, flushers: int = 2) -> None:
        self._queue: queue.Queue[tuple[int, str, str] | None] = queue.Queue(maxsize=MAX_PENDING)
        self._error: BaseException | None = None
        self._closed = False
        self._threads = [threading.Thread(target=self._flush_loop, name=f"fsync-{n}", daemon=True)
                         for n in range(flushers)]
        for thread in self._threads:
            thread.start()

    def write(self, final_path: str, data: bytes) -> None:
        """Write ``data`` to a temp file beside ``final_path``; a flusher makes it durable and renames it."""
        if self._error is not None:
            raise self._error
        fd, tmp = write_temp(final_path, data)
        self._queue.put((fd, tmp, final_path))  # blocks while MAX_PENDING chunks wait for the disk

    def _flush_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fd, tmp, final_path = item
            try:
                fsync(fd)
                os.close(fd)
                os.replace(tmp, final_path)
            except BaseException as exc:  # reported by write()/close() in the caller's thread
                self._error = self._error or exc
                _close_quietly(fd)

    def close(self) -> None:
        """Wait until every chunk written so far is durable and renamed; re-raise a flusher's error.

        Idempotent, so a failing backup can call it again on its way out.
        """
        if not self._closed:
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)
            for thread in self._threads:
                thread.join()
        if self._error is not None:
            raise self._error


class BackgroundFlush:
    """Call ``flush`` in a thread of its own whenever asked, coalescing requests that pile up.

    A restore asks for it every few chunks: the disk then writes while the CPUs decompress and hash, and
    the final flush before publishing the output has little left to do.
    """

    def __init__(self, flush: object) -> None:
        self._flush = flush
        self._wanted = threading.Event()
        self._stopping = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="flush", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            try:
                self._flush()  # type: ignore[operator]
            except BaseException as exc:
                self._error = exc
                return

    def close(self) -> None:
        self._stopping = True
        self._wanted.set()
        self._thread.join()
        if self._error is not None:
            raise self._error


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


BATCH_CHUNKS = 16  # chunks written between two durability points (64 MiB)
BATCHES_IN_FLIGHT = 2  # written batches waiting for their fsyncs: bounds the dirty page cache


class BatchWriter:
    """Write chunk files now; make them durable, then visible under their names, a batch at a time.

    Like the engine's ChunkWriter, a chunk is only renamed to its name after its fsync, so no chunk is ever
    visible before its bytes are on disk, and an interrupted pull leaves only temp files. Unlike it, the
    fsyncs run a batch at a time in one committer thread: fsyncing each 4 MiB file as it arrives, from
    several threads, costs a journal commit per chunk and competed with the downloads (measured: about a
    third of a pull's time); a batch is flushed while the next one downloads.
    """

    def __init__(self, batch: int = BATCH_CHUNKS) -> None:
        self._batch = batch
        self._pending: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[list[tuple[str, str]] | None] = queue.Queue(maxsize=BATCHES_IN_FLIGHT)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._commit_loop, name="chunk-commit", daemon=True)
        self._thread.start()

    def write(self, final_path: str, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        fd, tmp = write_temp(final_path, data)
        os.close(fd)
        with self._lock:
            self._pending.append((tmp, final_path))
            if len(self._pending) < self._batch:
                return
            batch, self._pending = self._pending, []
        self._queue.put(batch)  # blocks while earlier batches still wait for the disk

    def _commit_loop(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is not None:
                continue
            try:
                _commit(batch)
            except BaseException as exc:  # reported by write()/close() in the caller's thread
                self._error = exc

    def close(self) -> None:
        """Commit what is pending and wait for every batch; re-raise a commit error. Idempotent."""
        if not self._closed:
            self._closed = True
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                self._queue.put(batch)
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error


def _commit(batch: list[tuple[str, str]]) -> None:
    for tmp, _ in batch:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for tmp, final_path in batch:
        os.replace(tmp, final_path)
