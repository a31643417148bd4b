"""A selection of files and folders from a backup point, streamed as .tar.gz or .zip straight from the backup.

The pages and the API both offer it; neither makes a copy of the image: pieces are read from the backup's
chunks as the archive is written. Every path is checked before the first byte goes out, so a bad selection
is still a clean 4xx rather than a broken download.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from flask import Response

from storage.browse import open_revision_disk

from ..models import VM, BackupPoint

FORMATS = ("tar.gz", "zip")


def check(root: str, vm: VM, point: BackupPoint, paths: list[str]) -> None:
    """Raise the engine's StorageError (with a message for the user) when a path is not in the backup."""
    with open_revision_disk(root, vm.repository_name, point.revision) as disk:
        for path in paths:
            disk.stat(path)


def download(root: str, vm: VM, point: BackupPoint, paths: list[str], kind: str) -> Response:
    """A streamed attachment of the selection (call ``check`` first)."""
    repository, revision = vm.repository_name, point.revision

    def generate() -> Iterator[bytes]:
        with open_revision_disk(root, repository, revision) as disk:
            if kind == "zip":
                yield from disk.iter_zip(paths)
                return
            gzip = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
            for piece in disk.iter_tar(paths):
                out = gzip.compress(piece)
                if out:
                    yield out
            yield gzip.flush()

    name = f"{vm.name}-{revision}.{kind}".replace("/", "_").replace('"', "_")
    return Response(generate(), mimetype="application/gzip" if kind == "tar.gz" else "application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
