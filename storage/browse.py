"""Open a revision's disk for file-level access, holding the VM's shared lock while it is in use.

The stream zero-fills damaged chunks and remembers them, and the file layer refuses (or, when asked,
returns with the ranges named) any file whose data lies on them: see ``storage.files``. When damage hits
filesystem metadata instead (a directory block, an inode table), the filesystem reader sees zeros and
reports a missing or corrupt entry; that error is turned into one that names the damage, because "no
such file" would send an operator looking for the wrong cause.
"""

from __future__ import annotations

import re
import stat as statmod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from .errors import StorageError
from .files import DamagedFile, Disk, FileAccessError, open_disk
from .files.entry import Entry
from .files.errors import NoSuchPath
from .manifest import ROOT_DISK, Revision
from .repository import Repository
from .stream import RevisionStream

T = TypeVar("T")
#: a path of the single-disk namespace (``/p1/etc``), read on the revision's default disk (deprecated)
LEGACY_PATH = re.compile(r"^/p[0-9]+(/|\Z)")


class MetadataDamaged(FileAccessError):
    """{} (filesystem metadata read from damaged backup data, disk byte ranges {})"""


@contextmanager
def open_revision_disk(root: str, vm: str, revision_id: str, *, wait: float | None = None,
                       disk: str | None = None) -> Iterator[Disk]:
    """The files of one disk (``disk``; default: the revision's only disk) of a revision."""
    repo = Repository.open(root, vm)
    with repo.lock(exclusive=False, wait=wait, purpose="browse"):
        revision = repo.resolve(revision_id).only(disk)
        stream = RevisionStream(repo, revision, on_damage="zero")
        try:
            yield open_disk(stream, damaged_ranges_for=stream.damaged_ranges_for)  # type: ignore[arg-type]
        except DamagedFile:
            raise
        except FileAccessError as exc:
            if stream.damaged:
                ranges = ", ".join(f"{s}-{e}" for s, e in stream.damaged)
                raise MetadataDamaged(str(exc), ranges) from exc
            raise
        finally:
            stream.close()


def default_disk(names: list[str]) -> str | None:
    """The disk a path without a disk reads (the old single-disk namespace): ``root`` when the revision has
    it, else its first disk; None when it has none."""
    return ROOT_DISK if ROOT_DISK in names else (names[0] if names else None)


@dataclass(frozen=True)
class DiskPath:
    """A path of the VM namespace split: the disk, the path inside it (``/``, ``/p1/etc``), and the prefix the
    answers carry (``/<disk>``; empty for an old single-disk path, so old clients get the paths they know)."""

    disk: str
    path: str
    prefix: str

    @property
    def legacy(self) -> bool:
        return not self.prefix


def split_path(path: str, names: list[str]) -> DiskPath | None:
    """Split ``/<disk>/p1/...`` among the disks ``names``; None for ``/`` (the disks themselves).

    A path whose first part is not a disk but a partition (``/p1/...``: the namespace before a point had
    several disks) reads the default disk (``default_disk``). Anything else is NoSuchPath.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        return None
    if parts[0] in names:
        return DiskPath(parts[0], "/" + "/".join(parts[1:]), "/" + parts[0])
    fallback = default_disk(names)
    if fallback is not None and LEGACY_PATH.match("/" + "/".join(parts)):
        return DiskPath(fallback, "/" + "/".join(parts), "")
    raise NoSuchPath(path)


class RevisionFiles:
    """Every disk of a revision as one read-only namespace: ``/`` lists the disks, ``/<disk>`` a disk's
    partitions, ``/<disk>/p1/etc/hosts`` a file. Disks are opened on first use, under the caller's lock.

    Why one namespace: a VM's files are on several disks, and the browser, the API and a selection name a file
    by one path. The paths of the single-disk namespace (``/p1/...``) still read the default disk
    (``split_path``) and are answered in that namespace, for the clients written before it (deprecated).
    """

    def __init__(self, repo: Repository, revision: Revision) -> None:
        self.repo, self.revision = repo, revision
        self.names = revision.disk_names
        self._open: dict[str, tuple[RevisionStream, Disk]] = {}

    def split(self, path: str) -> DiskPath | None:
        return split_path(path, self.names)

    def disk(self, name: str) -> Disk:
        """The file view of one disk (opened once)."""
        if name not in self._open:
            stream = RevisionStream(self.repo, self.revision.only(name), on_damage="zero")
            self._open[name] = (stream, open_disk(stream, damaged_ranges_for=stream.damaged_ranges_for))  # type: ignore[arg-type]
        return self._open[name][1]

    def _on(self, name: str, work: Callable[[Disk], T]) -> T:
        """Run ``work`` on a disk, naming damaged backup data when the filesystem reader trips over it."""
        disk = self.disk(name)
        try:
            return work(disk)
        except DamagedFile:
            raise
        except FileAccessError as exc:
            stream = self._open[name][0]
            if stream.damaged:
                raise MetadataDamaged(str(exc), ", ".join(f"{s}-{e}" for s, e in stream.damaged)) from exc
            raise

    def disk_entries(self) -> list[Entry]:
        """The disks, as folders with their sizes (in the revision's order)."""
        moment = datetime.fromisoformat(self.revision.created.replace("Z", "+00:00")).timestamp()
        return [Entry(d.name, "/" + d.name, "dir", d.size, statmod.S_IFDIR | 0o555, 0, 0, moment)
                for d in self.revision.disks]

    @staticmethod
    def _qualified(where: DiskPath, entries: list[Entry]) -> list[Entry]:
        if where.legacy:
            return entries
        return [replace(e, path=where.prefix + (e.path if e.path != "/" else "")) for e in entries]

    def stat(self, path: str) -> Entry:
        where = self.split(path)
        if where is None:
            return Entry("", "/", "dir", self.revision.size, statmod.S_IFDIR | 0o555, 0, 0, 0.0)
        if where.path == "/" and not where.legacy:
            return next(e for e in self.disk_entries() if e.name == where.disk)
        return self._qualified(where, [self._on(where.disk, lambda d: d.stat(where.path))])[0]

    def list_dir(self, path: str = "/") -> list[Entry]:
        where = self.split(path)
        if where is None:
            return self.disk_entries()
        return self._qualified(where, self._on(where.disk, lambda d: d.list_dir(where.path)))

    def search(self, path: str, pattern: str, limit: int = 1000) -> list[Entry]:
        """Names matching ``pattern`` below ``path``; below ``/``, on every disk in turn."""
        where = self.split(path)
        if where is None:
            found: list[Entry] = []
            for name in self.names:
                if len(found) < limit:
                    found += self.search("/" + name, pattern, limit - len(found))
            return found
        return self._qualified(where, self._on(where.disk, lambda d: d.search(where.path, pattern, limit=limit)))

    def close(self) -> None:
        for stream, _ in self._open.values():
            stream.close()
        self._open.clear()


@contextmanager
def open_revision_files(root: str, vm: str, revision_id: str, *, wait: float | None = None
                        ) -> Iterator[RevisionFiles]:
    """Every disk of a revision as one namespace (``RevisionFiles``), holding the VM's shared lock."""
    repo = Repository.open(root, vm)
    with repo.lock(exclusive=False, wait=wait, purpose="browse"):
        files = RevisionFiles(repo, repo.resolve(revision_id))
        try:
            yield files
        finally:
            files.close()


__all__ = ["DiskPath", "MetadataDamaged", "RevisionFiles", "StorageError", "default_disk", "open_revision_disk",
           "open_revision_files", "split_path"]
