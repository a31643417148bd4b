"""``rbd:POOL/IMAGE`` as a restore target: a new Ceph RBD image, or an existing one with ``--force``.

A new image is restored under a temporary name, ``IMAGE.lifeboat-partial``, and renamed into place by
``commit``: like a file target, the final name only ever shows a complete image, an interrupted restore keeps
its partial image for resuming, and a second restore of the same target finds the partial busy. A fresh RBD
image reads as zeros and allocates nothing until written, so ``zero_is_free`` is True and zero chunks cost
nothing (the result is as sparse as the backup).

Over an existing image (``force``) Lifeboat writes in place: the image keeps its id, features, watchers'
configuration, clones and snapshots, and Lifeboat's own ``lifeboat-*`` snapshots stay valid parents (librbd
diffs compare data, so the next backup of that image is still incremental). Zero chunks are then written as
``write_zeroes`` (which deallocates whole objects), so ``zero_is_free`` is False. An image that is open
elsewhere (a running VM has a watch on it) is refused even with ``force``.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Any

from storage.errors import BadSource, BadTarget, StorageError, TargetExists
from storage.sources.rbd import (
    BadRbdName,
    Fail,
    RbdSpec,
    connect,
    load_bindings,
    open_image,
    parse_spec,
)
from storage.targets.base import Target

PARTIAL_SUFFIX = ".lifeboat-partial"


class TargetWriteError(StorageError):
    """cannot write restore target {}: {}"""


def parse_target_spec(spec: str) -> RbdSpec:
    """Validate ``rbd:POOL/IMAGE`` as a target; bad names are a BadTarget saying which part is wrong."""
    try:
        return parse_spec(spec)
    except BadRbdName as e:
        kind, name, _ = e.args_
        raise BadTarget(spec, f"bad {kind} name {name!r}: use letters, digits, '.', '_' and '-'") from None
    except BadSource:
        raise BadTarget(spec, "expected rbd:POOL/IMAGE") from None


def default_state_dir() -> str:
    """Where resume state lives when the engine names no directory: the user's cache."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "lifeboat", "restore-state")


class RbdTarget(Target):
    """Restores into a new RBD image (temp name + rename) or, with ``force``, over an existing one."""

    can_read_back = True

    def __init__(self, spec: str, force: bool, state_dir: str | None = None) -> None:
        self._spec = parse_target_spec(spec)
        self.spec = str(self._spec)
        self._force = force
        self._fail: Fail = lambda msg: BadTarget(self.spec, msg)
        self._state_dir = state_dir or default_state_dir()
        self._rbd = load_bindings(self._fail)[1]
        self._resources = ExitStack()
        self._image: Any = None
        self._ioctx: Any = None
        self._in_place = self._check_existing()
        self.zero_is_free = not self._in_place
        self._work_name = self._spec.image if self._in_place else self._spec.image + PARTIAL_SUFFIX

    # --- checks before anything is written

    def _check_existing(self) -> bool:
        """True when the restore goes over an existing image: only with force, and only if nobody uses it."""
        with connect(self._spec, self._fail) as ioctx:
            if self._spec.image not in self._rbd.RBD().list(ioctx):
                return False
            if not self._force:
                raise TargetExists(self.spec)
            image = open_image(self._spec, ioctx, self._fail, read_only=True)
            try:
                watchers = list(image.watchers_list())
            finally:
                image.close()
        if watchers:
            raise BadTarget(
                self.spec, f"image is in use ({len(watchers)} client(s) have it open); stop them first"
            )
        return True

    def can_resume(self) -> bool:
        """True when there is something to continue: the partial image, or the image restored in place."""
        if self._in_place:
            return True
        with connect(self._spec, self._fail) as ioctx:
            return self._work_name in self._rbd.RBD().list(ioctx)

    @property
    def state_path(self) -> str:
        # '@' cannot occur in a valid pool or image name, so the file name is unambiguous.
        return os.path.join(self._state_dir, f"rbd-{self._spec.pool}@{self._spec.image}.restore.json")

    # --- the restore

    def begin(self, size: int, resuming: bool) -> None:
        """Open the image to write: the partial one (new, or reopened to resume) or the existing one.

        On failure everything opened so far is released (the engine calls ``close`` only after a good begin).
        """
        os.makedirs(self._state_dir, exist_ok=True)
        try:
            self._ioctx = self._resources.enter_context(connect(self._spec, self._fail))
            if self._in_place:
                self._begin_in_place(size)
            else:
                self._begin_partial(size, resuming)
        except BaseException:
            self.close()
            raise

    def _begin_in_place(self, size: int) -> None:
        self._image = self._open(self._work_name)
        if int(self._image.size()) != size:
            self._call("resize", lambda: self._image.resize(size, allow_shrink=True))

    def _begin_partial(self, size: int, resuming: bool) -> None:
        """Reopen the partial image to resume, or create it afresh (removing a stale one)."""
        exists = self._work_name in self._rbd.RBD().list(self._ioctx)
        if resuming and not exists:
            raise BadTarget(
                self.spec, f"cannot resume: partial image {self._work_name} is gone; remove {self.state_path}"
            )
        if exists and not resuming:
            self._remove_partial()
        if not resuming:
            self._call("create", lambda: self._rbd.RBD().create(self._ioctx, self._work_name, size))
        self._image = self._open(self._work_name)
        if int(self._image.size()) != size:
            raise BadTarget(self.spec, f"cannot resume: partial image {self._work_name} has another size")

    def _open(self, name: str) -> Any:
        try:
            image = self._rbd.Image(self._ioctx, name)
        except self._rbd.Error as e:
            raise BadTarget(self.spec, f"cannot open image {name}: {' '.join(str(e).split())}") from None
        return image

    def _call(self, what: str, action: Any) -> Any:
        """Run a librbd call; its errors become one-line TargetWriteErrors."""
        try:
            return action()
        except self._rbd.Error as e:
            raise TargetWriteError(self.spec, f"{what}: {' '.join(str(e).split())}") from None

    def read_back(self, offset: int, length: int) -> bytes:
        """Bytes already restored, so the engine can check chunks a resume state claims are done."""
        return bytes(self._call(f"read at {offset}", lambda: self._image.read(offset, length)))

    def write(self, offset: int, data: bytes) -> None:
        # One librbd handle serves all threads: librbd is thread-safe and the binding drops the GIL.
        self._call(f"write at {offset}", lambda: self._image.write(data, offset))

    def zero(self, offset: int, length: int) -> None:
        """Zero a range of the existing image; whole objects are deallocated rather than filled."""
        self._call(f"zero at {offset}", lambda: self._image.write_zeroes(offset, length))

    def flush(self) -> None:
        self._call("flush", lambda: self._image.flush())

    def commit(self) -> None:
        """Flush, close and publish: rename the partial image to its final name (nothing to do in place)."""
        self.flush()
        ioctx = self._ioctx
        try:
            self._close_image()  # the image must be closed (its exclusive lock released) before the rename
            if not self._in_place:
                if self._spec.image in self._rbd.RBD().list(ioctx):
                    raise TargetExists(self.spec)  # created by someone else while we restored
                self._call("rename", lambda: self._rbd.RBD().rename(ioctx, self._work_name, self._spec.image))
        finally:
            self._resources.close()

    def abort(self) -> None:
        """Remove the partial image (a new-image restore); an in-place restore cannot be undone."""
        try:
            if self._image is not None:
                self._close_image()
            if not self._in_place and self._ioctx is not None:
                self._remove_partial()
        finally:
            self.close()

    def _remove_partial(self) -> None:
        try:
            self._rbd.RBD().remove(self._ioctx, self._work_name)
        except self._rbd.ImageNotFound:
            pass
        except self._rbd.ImageBusy:
            raise BadTarget(self.spec, f"{self._work_name} is open elsewhere (another restore?)") from None
        except self._rbd.Error as e:
            raise TargetWriteError(
                self.spec, f"remove {self._work_name}: {' '.join(str(e).split())}"
            ) from None

    def _close_image(self) -> None:
        image, self._image = self._image, None
        if image is not None:
            image.close()

    def close(self) -> None:
        """Release the image and the connection without publishing; a partial image stays for a resume."""
        self._close_image()
        self._ioctx = None
        self._resources.close()


def make_rbd_target(spec: str, force: bool, state_dir: str | None = None) -> RbdTarget:
    """Factory for ``storage.targets.open_target``: an existing image without ``force`` is TargetExists."""
    return RbdTarget(spec, force, state_dir)
