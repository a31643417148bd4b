"""The nbdkit Python plugin that exports a revision over NBD (run by nbdkit, never imported by Lifeboat).

nbdkit speaks the protocol; this file only answers its callbacks from a ``ServedDisk``: reads of verified
chunks, extents from the manifest (zero chunks are holes, so ``qemu-img convert`` keeps the copy sparse), an
I/O error for a damaged chunk (or zeros with ``zero_damaged=1``). Each damaged range is appended as a JSON line
to ``damage_log`` so the ``lifeboat store serve`` process can report it. Writes never reach this plugin: a
writable export puts nbdkit's copy-on-write filter in front of it.

Parameters (``key=value`` on nbdkit's command line): ``syspath`` (where Lifeboat and its dependencies are,
joined with ``os.pathsep``), ``root``, ``vm``, ``revision``, ``zero_damaged`` (0/1), ``damage_log``.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import sys
import threading
from typing import Any

import nbdkit

API_VERSION = 2
KEYS = ("syspath", "root", "vm", "revision", "zero_damaged", "damage_log")

_settings: dict[str, str] = {}
_state: dict[str, Any] = {"logged": []}
_log_lock = threading.Lock()


def config(key: str, value: str) -> None:
    if key not in KEYS:
        raise ValueError(f"unknown parameter {key!r}; expected one of {', '.join(KEYS)}")
    _settings[key] = value


def config_complete() -> None:
    for path in reversed(_settings.get("syspath", "").split(os.pathsep)):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    from storage.repository import Repository
    from storage.serve.disk import ServedDisk

    repo = Repository.open(_settings["root"], _settings["vm"])
    revision = repo.resolve(_settings["revision"])
    _state["disk"] = ServedDisk(repo, revision, zero_damaged=_settings.get("zero_damaged") == "1")


def thread_model() -> int:
    return int(nbdkit.THREAD_MODEL_PARALLEL)  # chunk reads and hashing drop the GIL


def open(readonly: bool) -> int:  # noqa: A001 - the callback name nbdkit looks up
    return 1


def get_size(handle: int) -> int:
    return int(_state["disk"].size)


def can_write(handle: int) -> bool:
    return False


def can_multi_conn(handle: int) -> bool:
    return True  # read-only: every connection sees the same bytes


def can_extents(handle: int) -> bool:
    return True


def pread(handle: int, buf: bytearray, offset: int, flags: int) -> None:
    from storage.stream import DamagedRange

    disk = _state["disk"]
    position = 0
    try:
        for piece in disk.pieces(offset, offset + len(buf)):
            buf[position : position + len(piece)] = piece
            position += len(piece)
    except DamagedRange as exc:
        _log_damage(disk)
        nbdkit.set_error(errno.EIO)
        raise OSError(errno.EIO, str(exc)) from None
    if disk.zero_damaged:
        _log_damage(disk)


def extents(handle: int, count: int, offset: int, flags: int) -> list[tuple[int, int, int]]:
    hole = int(nbdkit.EXTENT_HOLE | nbdkit.EXTENT_ZERO)
    return [(e.start, e.end - e.start, hole if e.zero else 0) for e in _state["disk"].extents(offset, offset + count)]


def _log_damage(disk: Any) -> None:
    """Rewrite the damage log when new damage was found (small: one line per damaged run)."""
    path = _settings.get("damage_log")
    with _log_lock:
        damaged = disk.damaged
        if not path or damaged == _state["logged"]:
            return
        temporary = f"{path}.tmp"
        with builtins.open(temporary, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps([start, end]) + "\n" for start, end in damaged)
        os.replace(temporary, path)
        _state["logged"] = damaged
