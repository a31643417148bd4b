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

from flask import Response, current_app

from storage.browse import open_revision_disk
from storage.errors import StorageError
from storage.files import archive
from storage.files.archive import members

from ..models import VM, BackupPoint

FORMATS = ("tar.gz", "zip")


class SelectionTooLarge(StorageError):
    """the selection holds more than {} of file data, the download limit (LIFEBOAT_DOWNLOAD_MAX_BYTES), passed at {} ({}); choose fewer files, or restore the selection as a job"""  # noqa: E501 - the message is one line


def check(root: str, vm: VM, point: BackupPoint, paths: list[str]) -> None:
    """Raise the engine's StorageError (with a message for the user) when a path is not in the backup, or the
    selection is larger than ``DOWNLOAD_MAX_BYTES`` (0: no limit)."""
    limit = int(current_app.config.get("DOWNLOAD_MAX_BYTES") or 0)
    with open_revision_disk(root, vm.repository_name, point.revision, disk=point.browse_disk) as disk:
        for path in paths:
            disk.stat(path)
        if limit <= 0:
            return
        total = 0
        for _, location, entry in members(disk, paths):
            if entry.type == "file":
                total += entry.size
                if total > limit:  # stop at once: the walk need not go on through a whole filesystem
                    raise SelectionTooLarge(_size(limit), location.path, _size(entry.size))


def _size(count: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.1f} {unit}"
    return f"{count} bytes"


def download(root: str, vm: VM, point: BackupPoint, paths: list[str], kind: str) -> Response:
    """A streamed attachment of the selection (call ``check`` first)."""
    repository, revision, browsed = vm.repository_name, point.revision, point.browse_disk

    def generate() -> Iterator[bytes]:
        with open_revision_disk(root, repository, revision, disk=browsed) as disk:
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
