"""Durable file operations: every write is temp file + fsync + rename, then the folder is fsynced."""

from __future__ import annotations

import json
import os
import secrets
from typing import Any


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(final_path: str) -> str:
    """A unique temporary name in the final file's folder (so rename is atomic), marked ``.tmp``."""
    folder, name = os.path.split(final_path)
    return os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_file_atomic(path: str, data: bytes, *, mode: int = 0o644, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(os.path.dirname(path) or ".")


def write_json_atomic(path: str, document: Any) -> None:
    data = json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
    write_file_atomic(path, data)


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")
