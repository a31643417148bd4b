"""An RBD image's import-only live migration (Ceph Pacific and later), through librbd's migration calls.

This is the target side of an instant restore (``storage.instant``): ``prepare`` creates an image whose
unhydrated ranges every client reads from an HTTP source, ``execute`` copies the rest, ``commit`` ends the
dependency on the source, ``abort`` removes the image (and works without the source).

While a migration is prepared or executing, librbd opens the source to open the image at all, even for
``migration_status``: with the source down the image cannot be opened. So whoever resumes must know the source
URL without asking the image: ``storage.instant`` keeps it in the repository's restore state.

librbd's HTTP client has no timeout: a source that accepts the connection and never answers (a wrong
``--url-base`` or INSTANT_SOURCE_URL pointing at something else, a hung proxy) hangs prepare, the open and the
status query for ever, and with them a worker or the CLI (which holds Ctrl-C during prepare). So ``prepare``
first asks the source itself (HEAD, with ``timeout``), and the calls that open the source run in a thread
with that deadline; past it they fail with one clear error. A call left hanging cannot be cancelled: the
connection is then not shut down (that would wait for it too) and is left to the process's exit.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from storage.errors import BadTarget, StorageError
from storage.manifest import Range
from storage.sources.rbd import RbdSpec, connect, load_bindings
from storage.targets.rbd import parse_target_spec

SPARSIFY_BYTES = 4 << 20  # deallocate whole all-zero 4 MiB objects
PROBE_BYTES = 512
ZERO_IN_FLIGHT = 32
SOURCE_TIMEOUT = 30.0  # seconds the source may take to answer before librbd is given up on


def where(url: str) -> str:
    """The URL without its path, which holds the secret: for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_source(target: str, url: str, timeout: float) -> int:
    """HEAD the source as librbd will, with a deadline; its size. InstantRestoreFailed when it does not answer
    in time or answers anything but 200 with a size (a wrong address, a wrong or expired secret)."""
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("HEAD", parts.path + (f"?{parts.query}" if parts.query else ""))
        reply = connection.getresponse()
        size = reply.getheader("Content-Length")
        reply.read()
    except TimeoutError:
        raise InstantRestoreFailed(target, f"the source at {where(url)} did not answer within {timeout:g} s; "
                                           "check the address Ceph reads from (--url-base, INSTANT_SOURCE_URL)") \
            from None
    except (OSError, http.client.HTTPException) as exc:
        raise InstantRestoreFailed(target, f"the source at {where(url)} cannot be reached ({exc}); check the "
                                           "address Ceph reads from (--url-base, INSTANT_SOURCE_URL)") from None
    finally:
        connection.close()
    if reply.status != 200 or not (size or "").isdigit():
        raise InstantRestoreFailed(target, f"the source at {where(url)} answered {reply.status} "
                                           f"{reply.reason} instead of the disk; check the address Ceph reads from")
    return int(size or 0)


class InstantRestoreFailed(StorageError):
    """instant restore into {} failed: {}"""

    exit_code = 1

    @property
    def reason(self) -> str:
        return str(self.args_[1])


class RbdMigration:
    """One image's import-only migration, through librbd's migration calls; use as a context manager."""

    def __init__(self, target_spec: str, timeout: float = SOURCE_TIMEOUT) -> None:
        self.spec: RbdSpec = parse_target_spec(target_spec)
        self.timeout = timeout
        self.stuck = False  # a call that opens the source never returned: do not shut the connection down
        self.name = self.spec.image
        self._fail = lambda message: BadTarget(str(self.spec), message)
        self._rbd = load_bindings(self._fail)[1]
        self._stack = ExitStack()
        self.ioctx: Any = None

    def __enter__(self) -> RbdMigration:
        self.ioctx = self._stack.enter_context(connect(self.spec, self._fail))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.stuck:
            self._stack.pop_all()  # librados would wait for the hanging call; the process's exit ends both
            return
        self._stack.__exit__(kind, error, trace)

    # --- what is there

    def exists(self, name: str | None = None) -> bool:
        return (name or self.name) in self._rbd.RBD().list(self.ioctx)

    def rename(self, old: str, new: str) -> None:
        """Rename an image of the pool (an instant restore in place moves the original aside, or back)."""
        self._call(f"rename {old} to {new}", lambda: self._rbd.RBD().rename(self.ioctx, old, new))

    def state(self) -> str | None:
        """``prepared``, ``executing``, ``executed``…; None when the image is absent or not migrating."""
        try:
            status = self._bounded("status", lambda: self._rbd.RBD().migration_status(self.ioctx, self.name))
        except (self._rbd.ImageNotFound, self._rbd.InvalidArgument):
            return None
        except self._rbd.Error as exc:  # the source cannot be reached
            raise InstantRestoreFailed(str(self.spec), f"status: {' '.join(str(exc).split())}") from None
        names = {getattr(self._rbd, f"RBD_IMAGE_MIGRATION_STATE_{name.upper()}", None): name
                 for name in ("preparing", "prepared", "executing", "executed", "aborting", "error")}
        return names.get(status["state"], "unknown")

    def watchers(self, name: str | None = None) -> int:
        """How many clients have the image (or ``name``) open (a running VM is one), asked of its header object.

        Not through librbd: opening an unfinished import opens its source, and the question matters most
        when the source is gone. The python-rados binding cannot list watchers; the ``rados`` CLI can.
        """
        name = name or self.name
        ids = {entry["name"]: entry["id"] for entry in self._rbd.RBD().list2(self.ioctx)}
        if name not in ids:
            return 0
        try:
            done = subprocess.run(["rados", "-p", self.spec.pool, "listwatchers", f"rbd_header.{ids[name]}"],
                                  capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InstantRestoreFailed(str(self.spec), f"cannot ask who uses the image: {exc}") from None
        if done.returncode != 0:
            raise InstantRestoreFailed(str(self.spec), f"cannot ask who uses the image: {done.stderr.strip()}")
        return sum(1 for line in done.stdout.splitlines() if line.startswith("watcher="))

    # --- the steps

    def prepare(self, url: str, zero_ranges: list[Range]) -> None:
        """Create the image reading from ``url``; write ``zero_ranges`` as zeros so they are never fetched."""
        spec = json.dumps({"type": "raw", "stream": {"type": "http", "url": url}})
        check_source(str(self.spec), url, self.timeout)
        self._call("prepare", lambda: self._bounded(
            "prepare", lambda: self._rbd.RBD().migration_prepare_import(spec, self.ioctx, self.name)))
        try:
            with self._rbd.Image(self.ioctx, self.name) as image:
                self._write_zeroes(image, zero_ranges)
                image.flush()
        except BaseException:
            self.abort()  # nobody has seen the image yet: take it back rather than leave it half made
            raise

    def _write_zeroes(self, image: Any, ranges: list[Range]) -> None:
        """Zero the ranges with up to ZERO_IN_FLIGHT asynchronous requests at once (one per range, in order).

        One at a time, a 16 GiB image of scattered data took 0.5 s here; the time until the image is usable
        would grow with the size of the disk.
        """
        done = threading.Semaphore(0)
        errors: list[int] = []

        def finished(completion: Any) -> None:
            value = completion.get_return_value()
            if value < 0:
                errors.append(value)
            done.release()

        in_flight = 0
        for start, end in ranges:
            if in_flight >= ZERO_IN_FLIGHT:
                done.acquire()
                in_flight -= 1
            image.aio_write_zeroes(start, end - start, finished)
            in_flight += 1
        for _ in range(in_flight):
            done.acquire()
        if errors:
            raise InstantRestoreFailed(str(self.spec), f"writing zeros: error {errors[0]}")

    def probe(self) -> None:
        """Open the image and read its first sector, as a VM booting from it would."""
        def read() -> None:
            with self._rbd.Image(self.ioctx, self.name, read_only=True) as image:
                image.read(0, min(PROBE_BYTES, int(image.size())))
        self._call("open", lambda: self._bounded("open", read))

    def execute(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Hydrate: copy every object not yet copied from the source (blocks until done)."""
        def on_progress(done: int, total: int) -> int:
            # librbd calls this from its own thread and would print (then ignore) an exception: progress
            # reporting must never get in the way of the copy, so a failing reporter is ignored quietly.
            if progress is not None:
                try:
                    progress(int(done), int(total))
                except Exception:  # noqa: S110 - a closed stdout (the reader went away) is no reason to stop
                    pass
            return 0
        self._call("execute", lambda: self._rbd.RBD().migration_execute(self.ioctx, self.name,
                                                                          on_progress=on_progress))

    def commit(self) -> None:
        """End the migration (the source is no longer needed), then tidy up (see ``finish``)."""
        self._call("commit", lambda: self._rbd.RBD().migration_commit(self.ioctx, self.name))
        self.finish()

    def finish(self) -> None:
        """Deallocate the all-zero objects the copy wrote (only whole 4 MiB objects; online, server side)."""
        def sparsify() -> None:
            with self._rbd.Image(self.ioctx, self.name) as image:
                image.sparsify(SPARSIFY_BYTES)
        self._call("sparsify", sparsify)

    def abort(self) -> None:
        """Abort the migration; for an import that removes the image."""
        self._call("abort", lambda: self._bounded(
            "abort", lambda: self._rbd.RBD().migration_abort(self.ioctx, self.name)))

    def _bounded(self, what: str, action: Callable[[], Any]) -> Any:
        """Run a librbd call that opens the source in a thread, and give up on it after ``timeout`` seconds."""
        result: list[Any] = []
        failure: list[BaseException] = []
        done = threading.Event()

        def run() -> None:
            try:
                result.append(action())
            except BaseException as exc:  # handed to the waiting thread
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name=f"rbd-{what}", daemon=True).start()
        if not done.wait(self.timeout):
            self.stuck = True
            raise InstantRestoreFailed(str(self.spec), f"{what}: no answer within {self.timeout:g} s (librbd waits "
                                                       "for the source, which does not answer)")
        if failure:
            raise failure[0]
        return result[0] if result else None

    def _call(self, what: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except self._rbd.Error as exc:
            raise InstantRestoreFailed(str(self.spec), f"{what}: {' '.join(str(exc).split())}") from None


