"""Stream a selection of files as tar or zip without buffering whole files or the whole archive.

Tar members are written by hand (PAX headers from ``tarfile``, data copied in 1 MiB pieces) so a
10 GiB file never sits in memory; zip goes through ``zipfile`` on a non-seekable sink that is drained
after every piece. Tar keeps modes, owners (uid/gid), mtimes and symlinks; zip keeps modes, mtimes
(to the two seconds zip allows) and symlinks (the Info-ZIP convention), but has no owners.

Symlinks inside the selection are stored as symlinks and never followed. Devices, fifos and sockets
are left out: their data is not file data.
"""

from __future__ import annotations

import stat as statmod
import tarfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from storage.files.disk import Disk, Located
from storage.files.entry import Entry, Range
from storage.files.errors import DamagedFile

PIECE = 1024 * 1024
DAMAGE_NOTE = "LIFEBOAT-DAMAGED.txt"
Member = tuple[str, Located, Entry]


def members(disk: Disk, paths: Iterable[str], follow_symlinks: bool = False) -> Iterator[Member]:
    """Yield (name in the archive, location, entry) for the selection, each file once.

    A selected path is stored under its own name (``/p1/etc`` -> ``etc/...``); '/' stores every
    readable partition under its name (``p1/...``). Only the selected paths themselves are resolved
    through symlinks (with ``follow_symlinks``).
    """
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for path in paths:
        top = disk.resolve(path, follow_symlinks)
        if top is None:
            parts = [p for p in disk.partitions if disk.stat("/" + p.name).type == "dir"]
            yield from members(disk, ["/" + p.name for p in parts])
            continue
        prefix = top.names[-1] if top.names else top.partition.name
        depth = len(top.names)
        for loc, entry in disk.walk(path, follow_symlinks):
            key = (loc.partition.name, tuple(loc.names))
            if key in seen or entry.type == "other":
                continue
            seen.add(key)
            yield "/".join([prefix, *loc.names[depth:]]), loc, entry


def _check_damage(disk: Disk, selection: list[str], follow_symlinks: bool) -> None:
    """Refuse before the first byte is sent, rather than break a download half-way."""
    if disk.damaged_ranges_for is None:
        return
    for _, loc, entry in members(disk, selection, follow_symlinks):
        if entry.type == "file":
            damaged = disk.file_damage(loc)
            if damaged:
                raise DamagedFile(loc.path, _fmt(damaged))


def _fmt(ranges: list[Range]) -> str:
    return ", ".join(f"[{s}, {e})" for s, e in ranges)


def _damage_note(damaged: list[tuple[str, list[Range]]]) -> bytes:
    lines = ["These files lie on damaged backup data; the listed byte ranges read as zeros:", ""]
    lines += [f"{path}: {_fmt(ranges)}" for path, ranges in damaged]
    return ("\n".join(lines) + "\n").encode()


def _pieces(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """The file's bytes in pieces, exactly ``size`` of them (zero-padded if the data ends early)."""
    left = size
    while left > 0:
        data = stream.read(min(PIECE, left))
        if not data:
            data = bytes(min(PIECE, left))
        yield data
        left -= len(data)


# ------------------------------------------------------------------------------------------------ tar


def _tar_header(name: str, entry: Entry) -> bytes:
    info = tarfile.TarInfo(name)
    info.mode = entry.mode & 0o7777
    info.uid, info.gid = entry.uid, entry.gid
    info.mtime = entry.mtime
    if entry.type == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.type == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, entry.target or ""
    else:
        info.size = entry.size
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _tar_file(name: str, data: bytes, like: Entry) -> Iterator[bytes]:
    note = Entry(name, "", "file", len(data), statmod.S_IFREG | 0o644, like.uid, like.gid, time.time())
    yield _tar_header(name, note)
    yield data + bytes(-len(data) % tarfile.BLOCKSIZE)


def iter_tar(
    disk: Disk, paths: Iterable[str], follow_symlinks: bool = False, allow_damaged: bool = False
) -> Iterator[bytes]:
    """Yield a tar archive (PAX format) of the selection, piece by piece.

    Files on damaged data: refused with DamagedFile before anything is yielded, unless
    ``allow_damaged``; then they are included (damaged ranges zero-filled) and listed in a final
    ``LIFEBOAT-DAMAGED.txt`` member.
    """
    selection = list(paths)
    if not allow_damaged:
        _check_damage(disk, selection, follow_symlinks)
    written = 0
    damaged: list[tuple[str, list[Range]]] = []
    last: Entry | None = None
    for name, loc, entry in members(disk, selection, follow_symlinks):
        header = _tar_header(name, entry)
        written += len(header)
        yield header
        last = entry
        if entry.type != "file":
            continue
        with disk.open_located(loc, allow_damaged) as stream:
            for piece in _pieces(stream, entry.size):
                written += len(piece)
                yield piece
        if allow_damaged and (ranges := disk.file_damage(loc)):
            damaged.append((loc.path, ranges))
        padding = bytes(-entry.size % tarfile.BLOCKSIZE)
        written += len(padding)
        yield padding
    if damaged and last is not None:
        for piece in _tar_file(DAMAGE_NOTE, _damage_note(damaged), last):
            written += len(piece)
            yield piece
    end = bytes(2 * tarfile.BLOCKSIZE)
    written += len(end)
    yield end + bytes(-written % tarfile.RECORDSIZE)


def write_tar(disk: Disk, paths: Iterable[str], out: BinaryIO, **options: bool) -> int:
    """Write the tar of ``iter_tar`` to ``out``; return the number of bytes written."""
    total = 0
    for piece in iter_tar(disk, paths, **options):
        out.write(piece)
        total += len(piece)
    return total


# ------------------------------------------------------------------------------------------------ zip


class _Sink:
    """A write-only, non-seekable target for zipfile; ``drain`` hands over what was written."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._pieces.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._pieces)
        self._pieces.clear()
        return data


def _zip_info(name: str, entry: Entry) -> zipfile.ZipInfo:
    stamp = time.gmtime(max(entry.mtime, 315532800))  # zip cannot store dates before 1980
    date_time = stamp[:6] if stamp.tm_year < 2108 else (2107, 12, 31, 23, 59, 58)
    info = zipfile.ZipInfo(name + "/" if entry.type == "dir" else name, date_time)
    info.create_system = 3  # Unix: external_attr carries the mode
    info.external_attr = (entry.mode & 0xFFFF) << 16
    if entry.type == "dir":
        info.external_attr |= 0x10  # MS-DOS directory flag
    info.compress_type = zipfile.ZIP_DEFLATED if entry.type == "file" else zipfile.ZIP_STORED
    return info


def iter_zip(
    disk: Disk, paths: Iterable[str], follow_symlinks: bool = False, allow_damaged: bool = False
) -> Iterator[bytes]:
    """Yield a zip archive of the selection, piece by piece (damage handled as in ``iter_tar``)."""
    selection = list(paths)
    if not allow_damaged:
        _check_damage(disk, selection, follow_symlinks)
    sink = _Sink()
    damaged: list[tuple[str, list[Range]]] = []
    with zipfile.ZipFile(sink, "w", compresslevel=1) as zf:  # type: ignore[call-overload]
        for name, loc, entry in members(disk, selection, follow_symlinks):
            info = _zip_info(name, entry)
            if entry.type == "dir":
                zf.writestr(info, b"")
            elif entry.type == "symlink":
                zf.writestr(info, (entry.target or "").encode("utf-8", "surrogateescape"))
            else:
                big = entry.size > 2**31
                with (
                    disk.open_located(loc, allow_damaged) as stream,
                    zf.open(info, "w", force_zip64=big) as out,
                ):
                    for piece in _pieces(stream, entry.size):
                        out.write(piece)
                        yield sink.drain()
                if allow_damaged and (ranges := disk.file_damage(loc)):
                    damaged.append((loc.path, ranges))
            yield sink.drain()
        if damaged:
            zf.writestr(DAMAGE_NOTE, _damage_note(damaged))
    yield sink.drain()
