"""A selection of files and folders from a backup point, streamed as .tar.gz or .zip straight from the backup.

The pages and the API both offer it; neither makes a copy of the image: pieces are read from the backup's
chunks as the archive is written. Every path is checked before the first byte goes out, so a bad selection
is still a clean 4xx rather than a broken download.

A selection is capped at ``DOWNLOAD_MAX_BYTES`` of file data (the files' sizes as they will be streamed). A sparse
file can claim terabytes on a small disk, and streaming its holes as zeros would keep a portal worker busy for
hours: such a selection is refused up front with the numbers, and can still be restored as a job.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from flask import Response, current_app

from storage.browse import RevisionFiles, open_revision_disk, open_revision_files
from storage.errors import StorageError
from storage.files import archive
from storage.files.archive import members

from ..models import VM, BackupPoint

FORMATS = ("tar.gz", "zip")


class SelectionTooLarge(StorageError):
    """the selection holds more than {} of file data, the download limit (LIFEBOAT_DOWNLOAD_MAX_BYTES), passed at {} ({}); choose fewer files, or restore the selection as a job"""  # noqa: E501 - the message is one line


class MixedDisks(StorageError):
    """the selection holds files of the disks {}: choose files of one disk at a time"""


@dataclass(frozen=True)
class Picked:
    """A selection as the engine reads it: one disk of the point and paths inside that disk (``/p1/etc``)."""

    disk: str
    paths: list[str]


def pick(files: RevisionFiles, paths: list[str]) -> Picked:
    """Split the selection's paths (``/<disk>/p1/...``, or the deprecated ``/p1/...``) among the disks; a
    selection spans one disk (an archive of several would have to name the disk in every member)."""
    wheres = [files.split(path) for path in paths]
    disks = sorted({w.disk if w is not None else "/" for w in wheres})
    if disks == ["/"] and len(files.names) == 1:  # "/" of a point of one disk: that disk, whole
        return Picked(files.names[0], ["/"])
    if len(disks) != 1 or disks == ["/"]:
        raise MixedDisks(", ".join(files.names if "/" in disks else disks))
    return Picked(disks[0], [w.path for w in wheres if w is not None])


def check(root: str, vm: VM, point: BackupPoint, paths: list[str]) -> Picked:
    """The selection, on one disk; raise the engine's StorageError (with a message for the user) when a path is
    not in the backup, the selection spans disks, or it is larger than ``DOWNLOAD_MAX_BYTES`` (0: no limit)."""
    limit = int(current_app.config.get("DOWNLOAD_MAX_BYTES") or 0)
    with open_revision_files(root, vm.repository_name, point.revision) as files:
        picked = pick(files, paths)
        for path in paths:
            files.stat(path)
        if limit <= 0:
            return picked
        total = 0
        for _, location, entry in members(files.disk(picked.disk), picked.paths):
            if entry.type == "file":
                total += entry.size
                if total > limit:  # stop at once: the walk need not go on through a whole filesystem
                    raise SelectionTooLarge(_size(limit), location.path, _size(entry.size))
    return picked


def _size(count: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.1f} {unit}"
    return f"{count} bytes"


def download(root: str, vm: VM, point: BackupPoint, picked: Picked, kind: str) -> Response:
    """A streamed attachment of the selection (``check`` picks it)."""
    repository, revision, paths = vm.repository_name, point.revision, picked.paths

    def generate() -> Iterator[bytes]:
        with open_revision_disk(root, repository, revision, disk=picked.disk) as disk:
            if kind == "zip":
                yield from archive.iter_zip(disk, paths)
                return
            gzip = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
            for piece in archive.iter_tar(disk, paths):
                out = gzip.compress(piece)
                if out:
                    yield out
            yield gzip.flush()

    name = f"{vm.name}-{revision}.{kind}".replace("/", "_").replace('"', "_")
    return Response(generate(), mimetype="application/gzip" if kind == "tar.gz" else "application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
