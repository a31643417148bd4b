"""Open a revision's disk for file-level access, holding the VM's shared lock while it is in use.

The stream zero-fills damaged chunks and remembers them, and the file layer refuses (or, when asked,
returns with the ranges named) any file whose data lies on them: see ``storage.files``. When damage hits
filesystem metadata instead (a directory block, an inode table), the filesystem reader sees zeros and
reports a missing or corrupt entry; that error is turned into one that names the damage, because "no
such file" would send an operator looking for the wrong cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .errors import StorageError
from .files import DamagedFile, Disk, FileAccessError, open_disk
from .repository import Repository
from .stream import RevisionStream


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


__all__ = ["MetadataDamaged", "StorageError", "open_revision_disk"]
