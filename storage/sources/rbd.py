"""``rbd:POOL/IMAGE``: a Ceph RBD image as a backup source, read through librbd (Debian's python3-rbd).

Every backup takes an RBD snapshot named ``lifeboat-<revision id>`` and reads from it, so the guest keeps
writing while Lifeboat reads a frozen point in time. The previous backup's snapshot is the parent: librbd's
diff between the two snapshots names the objects (4 MiB by default) that changed, and only those are read.
When the parent snapshot is gone (deleted by hand, image restored from elsewhere) or the image was resized,
``changed_ranges`` answers None and the engine reads everything that is allocated (``data_ranges``).

Why the bindings and not the ``rbd`` CLI: the engine pulls ``read(offset, length)`` from several threads at
once, in any order. librbd does that natively against a read-only snapshot handle, without root, without a
kernel mapping and without one process per chunk; the CLI can only stream a whole export. The bindings are not
on PyPI, so :func:`load_bindings` also finds Debian's modules for this Python version when Lifeboat runs in a
virtualenv. Tests use the ``rbd`` CLI as the independent oracle (``rbd export``, ``rbd diff``).

Connection settings come from the environment, as for the ``rbd`` CLI: ``CEPH_CONF`` (config file; otherwise
librados' default search), ``CEPH_ID`` (client name without ``client.``; default ``admin``) and
``LIFEBOAT_CEPH_TIMEOUT`` (seconds to wait for the cluster, default 30) so that a cluster that is down gives
an error instead of a hang.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from storage import counters
from storage.errors import BadSource, SourceError, StorageError
from storage.sources.base import Range, Retirement, Snapshot, Source

log = logging.getLogger(__name__)

PREFIX = "rbd:"
SNAP_PREFIX = "lifeboat-"
DEFAULT_TIMEOUT = 30
# Pool and image names Lifeboat accepts: a safe subset of what Ceph allows, so a name never needs quoting in
# a shell, a log line or a snapshot spec ("pool/image@snap") and never looks like a command-line option.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,127}")
# Where distributions install the bindings for the system Python (Debian/Ubuntu, then Fedora/RHEL-style).
_BINDING_DIRS = (
    "/usr/lib/python3/dist-packages",
    f"/usr/lib64/python{sys.version_info.major}.{sys.version_info.minor}/site-packages",
    f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages",
)

Fail = Callable[[str], StorageError]


class BadRbdName(BadSource):
    """invalid {} name {!r} in {!r}: use letters, digits, '.', '_' and '-' (at most 128, not starting with '.' or '-')"""  # noqa: E501


class CephUnavailable(SourceError):
    """cannot use Ceph for {}: {}"""


@dataclass(frozen=True)
class RbdSpec:
    """A parsed ``rbd:POOL/IMAGE``."""

    spec: str
    pool: str
    image: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.pool}/{self.image}"


def parse_spec(spec: str) -> RbdSpec:
    """Split and validate ``rbd:POOL/IMAGE``; junk is a BadSource naming the offending part."""
    if not spec.startswith(PREFIX):
        raise BadSource(spec)
    pool, sep, image = spec[len(PREFIX) :].partition("/")
    if not sep or not pool or not image:
        raise BadSource(spec)
    for kind, name in (("pool", pool), ("image", image)):
        if not _NAME.fullmatch(name):
            raise BadRbdName(kind, name, spec)
    return RbdSpec(spec, pool, image)


def snap_name(revision_id: str) -> str:
    """The RBD snapshot name of a revision; the id is checked so it cannot smuggle '@' or '/' into a spec."""
    if not _REVISION.fullmatch(revision_id):
        raise SourceError(revision_id, "revision id is not usable in an RBD snapshot name")
    return SNAP_PREFIX + revision_id


def merge_ranges(ranges: list[Range]) -> list[Range]:
    """Sort and coalesce touching or overlapping ``[start, end)`` ranges (librbd reports one per object)."""
    merged: list[Range] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# --- bindings and connections -------------------------------------------------------------------------


def _load_from(directory: str, suffix: str) -> tuple[ModuleType, ModuleType] | None:
    """Load rados, then rbd from ``directory`` (rbd's init imports rados, so rados is registered first)."""
    paths = [os.path.join(directory, name + suffix) for name in ("rados", "rbd")]
    if not all(os.path.exists(p) for p in paths):
        return None
    modules = []
    for name, path in zip(("rados", "rbd"), paths, strict=True):
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules.append(module)
    return modules[0], modules[1]


_bindings: tuple[ModuleType, ModuleType] | None = None
_bindings_lock = threading.Lock()


def load_bindings(fail: Fail) -> tuple[Any, Any]:
    """Return ``(rados, rbd)``: importable modules first, else the distribution's copy for this Python.

    The distribution's modules are loaded one by one (not by adding its whole dist-packages to sys.path) so
    no other system package can shadow the virtualenv's.
    """
    global _bindings
    with _bindings_lock:
        if _bindings is not None:
            return _bindings
        try:
            import rados  # system-provided, not on PyPI
            import rbd

            _bindings = (rados, rbd)
        except ImportError:
            suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
            for directory in _BINDING_DIRS:
                try:
                    _bindings = _load_from(directory, suffix)
                except ImportError as e:  # built for another Python/librados: try the next place
                    log.debug("cannot load Ceph bindings from %s: %s", directory, e)
                if _bindings is not None:
                    break
        if _bindings is None:
            raise fail(
                "the Ceph Python bindings (python3-rbd, python3-rados) for Python "
                f"{sys.version_info.major}.{sys.version_info.minor} are not installed"
            )
        return _bindings


def _timeout() -> int:
    try:
        return max(1, int(os.environ.get("LIFEBOAT_CEPH_TIMEOUT", DEFAULT_TIMEOUT)))
    except ValueError:
        return DEFAULT_TIMEOUT


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def connect(spec: RbdSpec, fail: Fail) -> Iterator[Any]:
    """Yield an I/O context on the spec's pool; a missing pool or a cluster out of reach is ``fail(line)``."""
    rados, _ = load_bindings(fail)
    conffile = os.environ.get("CEPH_CONF", "")
    if conffile and not os.path.isfile(conffile):
        raise fail(f"Ceph config file {conffile} (CEPH_CONF) does not exist")
    timeout = str(_timeout())
    try:
        cluster = rados.Rados(rados_id=os.environ.get("CEPH_ID") or None, conffile=conffile)
        # librados would otherwise print its own log lines on stderr and retry for 5 minutes.
        for key, value in (
            ("log_to_stderr", "false"),
            ("err_to_stderr", "false"),
            ("client_mount_timeout", timeout),
            ("rados_mon_op_timeout", timeout),
        ):
            cluster.conf_set(key, value)
        counters.count("rbd.connect")
        cluster.connect()
    except rados.Error as e:
        raise fail(f"cannot connect to the Ceph cluster: {_one_line(e)}") from None
    try:
        if not cluster.pool_exists(spec.pool):
            raise fail(f"pool {spec.pool!r} does not exist")
        ioctx = cluster.open_ioctx(spec.pool)
        try:
            yield ioctx
        finally:
            ioctx.close()
    except rados.Error as e:
        raise fail(_one_line(e)) from None
    finally:
        cluster.shutdown()


def open_image(
    spec: RbdSpec, ioctx: Any, fail: Fail, snapshot: str | None = None, read_only: bool = False
) -> Any:
    """Open the image (at ``snapshot``); a missing image or snapshot is ``fail(one line)``."""
    _, rbd = load_bindings(fail)
    counters.count("rbd.open")
    try:
        return rbd.Image(ioctx, spec.image, snapshot=snapshot, read_only=read_only)
    except rbd.ImageNotFound:
        what = f"snapshot {snapshot!r} of image" if snapshot else "image"
        raise fail(f"{what} {spec.image!r} does not exist in pool {spec.pool!r}") from None
    except rbd.Error as e:
        raise fail(_one_line(e)) from None


# --- the source ---------------------------------------------------------------------------------------


class RbdSnapshot(Snapshot):
    """A read-only librbd handle on one ``lifeboat-*`` snapshot, shared by the engine's reader threads.

    librbd is thread-safe and the binding releases the GIL during I/O, so one handle serves every thread.
    """

    def __init__(self, spec: RbdSpec, revision_id: str, parent_id: str | None, ioctx: Any = None) -> None:
        self._spec = spec
        self._fail: Fail = lambda msg: SourceError(spec.spec, msg)
        self._rbd = load_bindings(self._fail)[1]
        self._parent_id = parent_id
        self.path = f"{spec}@{snap_name(revision_id)}"  # how the engine names a source in its messages
        self._changed: list[Range] | None = None
        self._removed: list[Range] = []
        self._changed_known = False
        self._resources = ExitStack()
        try:
            if ioctx is None:
                ioctx = self._resources.enter_context(connect(spec, self._fail))
            self._image = open_image(spec, ioctx, self._fail, snapshot=snap_name(revision_id), read_only=True)
            self._resources.callback(self._image.close)
            self.size = int(self._image.size())
        except BaseException:
            self._resources.close()
            raise

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        length = min(length, self.size - offset)
        if length <= 0:
            return b""
        counters.count("rbd.read")
        try:
            return bytes(self._image.read(offset, length))
        except self._rbd.Error as e:
            raise SourceError(self._spec.spec, f"read at {offset}: {_one_line(e)}") from None

    def _diff(self, from_snapshot: str | None) -> tuple[list[Range], list[Range]]:
        """Object-granular extents from librbd (uses the object map when the image has fast-diff): those
        that hold data, and those that do not (discarded since ``from_snapshot``), each merged."""
        data: list[Range] = []
        gone: list[Range] = []

        def collect(offset: int, length: int, exists: bool) -> int:
            (data if exists else gone).append((offset, offset + length))
            return 0

        counters.count("rbd.diff")
        try:
            self._image.diff_iterate(0, self.size, from_snapshot, collect, whole_object=True)
        except self._rbd.Error as e:
            raise SourceError(self._spec.spec, f"rbd diff: {_one_line(e)}") from None
        return merge_ranges(data), merge_ranges(gone)

    def data_ranges(self) -> list[Range] | None:
        """Allocated objects of the snapshot: unallocated ones read as zeros and are not read at all."""
        return self._diff(None)[0]

    def changed_ranges(self) -> list[Range] | None:
        """Objects written or discarded since the parent's snapshot; None when it is gone or sizes differ."""
        if not self._changed_known:
            self._changed = self._compute_changed()
            self._changed_known = True
        return self._changed

    def removed_ranges(self) -> list[Range]:
        """Objects discarded since the parent's snapshot (from the same diff as ``changed_ranges``)."""
        self.changed_ranges()
        return self._removed

    def _compute_changed(self) -> list[Range] | None:
        if self._parent_id is None:
            return None
        parent = snap_name(self._parent_id)
        sizes = {s["name"]: int(s["size"]) for s in self._image.list_snaps()}
        if parent not in sizes:
            log.warning("%s: parent snapshot %s is gone; reading the whole image", self._spec, parent)
            return None
        if sizes[parent] != self.size:
            # A resized image: chunks past the parent's end have no parent chunk to reuse. Rare; read it all.
            log.warning("%s: image was resized since %s; reading the whole image", self._spec, parent)
            return None
        written, self._removed = self._diff(parent)
        return merge_ranges(written + self._removed)

    def close(self) -> None:
        self._resources.close()  # closes the image, then the pool and the cluster connection; idempotent


class RbdSource(Source):
    """``rbd:POOL/IMAGE``; takes, reads and retires ``lifeboat-<revision>`` snapshots of the image.

    Each snapshot create and remove waits for the monitor to commit a new map, and the monitor batches
    commits (``paxos propose interval``: 1 s by default), so one costs up to a second. ``snapshot_and_retire``
    issues the removals and the create together, so that they share a round.
    """

    def __init__(self, spec: str) -> None:
        self._spec = parse_spec(spec)
        self.spec = str(self._spec)
        self._fail: Fail = lambda msg: SourceError(self.spec, msg)
        self._connection = ExitStack()
        self._ioctx: Any = None
        self._lock = threading.Lock()

    def _io(self) -> Any:
        """One cluster connection for the whole backup (snapshot, reads, retiring): each costs ~10 ms."""
        with self._lock:
            if self._ioctx is None:
                self._ioctx = self._connection.enter_context(connect(self._spec, self._fail))
            return self._ioctx

    def prepare(self) -> None:
        """Connect now, so that the freeze around the snapshots of a VM's disks lasts only for the snapshots."""
        self._io()

    def close(self) -> None:
        with self._lock:
            self._connection.close()
            self._ioctx = None

    @contextmanager
    def _image(self) -> Iterator[Any]:
        """The image's head, opened for snapshot management only (never for writing data), and closed again:
        a handle left open would watch the image (and could hold its exclusive lock) between operations."""
        image = open_image(self._spec, self._io(), self._fail)
        try:
            yield image
        finally:
            image.close()

    def _snapshots(self, image: Any) -> list[str]:
        counters.count("rbd.snap_list")
        return [s["name"] for s in image.list_snaps()]

    def create_snapshot(self, revision_id: str) -> None:
        """Snapshot the image; an existing snapshot of this revision (a resumed backup) is reused."""
        with self._image() as image:
            self._create(image, snap_name(revision_id), self._snapshots(image))

    def _create(self, image: Any, name: str, existing: list[str]) -> None:
        if name in existing:
            log.info("%s: reusing existing snapshot %s", self.spec, name)
            return
        _, rbd = load_bindings(self._fail)
        counters.count("rbd.snap_create")
        counters.event("rbd.snap_create:start")
        try:
            image.create_snap(name)
        except rbd.Error as e:
            raise SourceError(self.spec, f"cannot create snapshot {name}: {_one_line(e)}") from None
        finally:
            counters.event("rbd.snap_create:end")

    def snapshot_and_retire(self, revision_id: str, keep: set[str]) -> Retirement:
        """Create the snapshot while removing the old ones, all issued at once: one monitor round, not two.

        A removal thread signals just before it calls librbd, which updates the image header before it asks
        the monitor; the create asks the monitor first. Issued within milliseconds of each other, both land
        in the same proposal (a few tens of milliseconds apart, the later one waits a whole interval).
        """
        name = snap_name(revision_id)
        image = open_image(self._spec, self._io(), self._fail)
        threads: list[threading.Thread] = []
        warnings: list[str] = []

        def finish() -> list[str]:
            for thread in threads:
                thread.join()
            image.close()
            return warnings

        try:
            existing = self._snapshots(image)
            doomed = self._retirable(existing, keep | {revision_id})
            issued = [threading.Event() for _ in doomed]
            for old, signal in zip(doomed, issued, strict=True):
                threads.append(threading.Thread(target=self._remove_into, args=(image, old, warnings, signal),
                                                name=f"retire-{old}", daemon=True))
            for thread in threads:
                thread.start()
            for signal in issued:
                signal.wait(timeout=5)  # never longer: a stuck removal must not hold up the snapshot
            self._create(image, name, existing)
        except BaseException:
            finish()
            raise
        return Retirement(finish)

    def _remove_into(self, image: Any, name: str, warnings: list[str], issued: threading.Event) -> None:
        try:
            problem = self._remove(image, name, issued)
        except Exception as exc:  # noqa: BLE001 - housekeeping: reported, never fatal
            problem = f"cannot remove snapshot {name}: {_one_line(exc)}"
        finally:
            issued.set()
        if problem:
            warnings.append(f"could not remove old snapshots: {problem}")

    def _open(self, revision_id: str, parent_id: str | None) -> Snapshot:
        return RbdSnapshot(self._spec, revision_id, parent_id, ioctx=self._io())

    def discard_snapshot(self, revision_id: str) -> None:
        """Remove the snapshot of a failed backup; a snapshot that is already gone is fine."""
        name = snap_name(revision_id)
        with self._image() as image:
            if name in self._snapshots(image):
                self._remove(image, name)

    def retire_snapshots(self, keep: set[str]) -> None:
        """Remove ``lifeboat-*`` snapshots of revisions not in ``keep``; other snapshots are not ours.

        A snapshot that cannot be removed (protected because someone cloned it) is logged and left: a
        backup must not turn into a failure over housekeeping.
        """
        with self._image() as image:
            for name in self._retirable(self._snapshots(image), keep):
                self._remove(image, name)

    @staticmethod
    def _retirable(names: list[str], keep: set[str]) -> list[str]:
        keep_names = {snap_name(rev) for rev in keep}
        return [n for n in names if n.startswith(SNAP_PREFIX) and n not in keep_names]

    def lifeboat_snapshots(self) -> list[str]:
        """Revision ids that still have a snapshot on the image, oldest first (for listings and tests)."""
        with self._image() as image:
            return [n[len(SNAP_PREFIX) :] for n in self._snapshots(image) if n.startswith(SNAP_PREFIX)]

    def _remove(self, image: Any, name: str, issued: threading.Event | None = None) -> str | None:
        """Remove one snapshot; what went wrong (logged too) or None. ``issued`` is set just before librbd's
        call (see ``snapshot_and_retire``)."""
        _, rbd = load_bindings(self._fail)
        try:
            if image.is_protected_snap(name):
                log.warning("%s: snapshot %s is protected (cloned?); left in place", self.spec, name)
                return f"snapshot {name} is protected (cloned?); left in place"
            counters.count("rbd.snap_remove")
            counters.event("rbd.snap_remove:start")
            if issued is not None:
                issued.set()
            try:
                image.remove_snap(name)
            finally:
                counters.event("rbd.snap_remove:end")
        except rbd.ImageNotFound:
            return None
        except rbd.Error as e:
            log.warning("%s: cannot remove snapshot %s: %s", self.spec, name, _one_line(e))
            return f"cannot remove snapshot {name}: {_one_line(e)}"
        return None


def make_rbd_source(spec: str) -> RbdSource:
    """Factory for ``storage.sources.open_source``; checks the spec's syntax only (no cluster access yet)."""
    return RbdSource(spec)
