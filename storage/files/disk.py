"""A disk image as one read-only namespace of partitions and files (see ``storage.files`` for the rules)."""

from __future__ import annotations

import fnmatch
import io
import stat as statmod
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

from dissect.util.stream import RangeStream

from storage.errors import StorageError
from storage.files.entry import Entry, Range, type_of_mode
from storage.files.errors import (
    CorruptFilesystem,
    DamagedFile,
    IsASymlink,
    NoFilesystem,
    NoSuchPath,
    NotADirectory,
    NotAFile,
    PathEscapes,
    SymlinkEscapes,
    SymlinkLoop,
)
from storage.files.filesystems import Filesystem, Node, detect, open_filesystem
from storage.files.ranges import intersect, merge, shift

DamagedRangesFor = Callable[[int, int], list[Range]]

MAX_SYMLINKS = 40  # as Linux (MAXSYMLINKS)
MAX_DEPTH = 1024  # deeper directory nesting is taken for a corrupt, looping tree
CONTAINER_TYPES = {0x05, 0x0F, 0x85}  # MBR extended partitions: containers, not filesystems
PROTECTIVE_TYPES = {0xEE}


@dataclass
class Partition:
    """A partition (or the whole disk for a bare filesystem), named ``p<number>`` in paths."""

    number: int
    offset: int
    size: int
    type: str
    _fs: Filesystem | StorageError | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"p{self.number}"


@dataclass
class Located:
    """A path resolved to a node: its partition, its filesystem and the real path inside it."""

    partition: Partition
    fs: Filesystem
    node: Node
    names: list[str]  # components below the partition root, after resolving symlinks

    @property
    def path(self) -> str:
        return "/" + "/".join([self.partition.name, *self.names])


@dataclass
class _Pending:
    """One path component still to resolve; ``link`` names the symlink it came from, if any."""

    name: str
    link: tuple[str, str] | None = None  # (path of the symlink, its target)


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


class Disk:
    """Read partitions and files of a disk image given as a binary file-like object (read/seek/tell).

    Not thread-safe: the underlying stream has one position. Open one Disk per thread or request.
    """

    def __init__(
        self,
        fh: BinaryIO,
        size: int,
        partitions: list[Partition],
        damaged_ranges_for: DamagedRangesFor | None = None,
    ) -> None:
        self.fh = fh
        self.size = size
        self.partitions = partitions
        self.damaged_ranges_for = damaged_ranges_for

    # ------------------------------------------------------------ filesystems and paths

    def partition(self, name: str) -> Partition:
        for part in self.partitions:
            if part.name == name:
                return part
        raise NoSuchPath("/" + name)

    def filesystem(self, part: Partition) -> Filesystem:
        """Open (once) the filesystem of a partition; the failure is remembered too."""
        if part._fs is None:
            try:
                with self._guard(part, "/"):
                    part._fs = open_filesystem(RangeStream(self.fh, part.offset, part.size), part.name)
            except StorageError as error:
                part._fs = error
        if isinstance(part._fs, StorageError):
            raise part._fs
        return part._fs

    @contextmanager
    def _guard(self, part: Partition, path: str) -> Iterator[None]:
        """Turn a filesystem reader's own exception into one clear CorruptFilesystem error.

        The readers raise whatever their parsing hits (struct errors, EOFError, ValueError, their own
        Error classes) on a damaged filesystem; a StorageError (e.g. a damaged chunk) passes unchanged.
        """
        try:
            yield
        except StorageError:
            raise
        except Exception as error:  # any parsing failure of untrusted data
            raise CorruptFilesystem(part.name, path, f"{type(error).__name__}: {error}") from error

    def resolve(self, path: str, follow_symlinks: bool = False) -> Located | None:
        """Resolve ``path``; None is the disk root '/'.

        Intermediate symlinks are followed only with ``follow_symlinks`` (else IsASymlink), and always
        inside their filesystem: an absolute target starts at the filesystem root, a '..' above the root
        raises SymlinkEscapes; more than MAX_SYMLINKS expansions raise SymlinkLoop.
        """
        parts = _split(path)
        if not parts:
            return None
        if parts[0] == "..":
            raise PathEscapes(path)
        part = self.partition(parts[0])
        fs = self.filesystem(part)
        with self._guard(part, path):
            return self._walk(path, part, fs, deque(_Pending(p) for p in parts[1:]), follow_symlinks)

    def _walk(
        self, path: str, part: Partition, fs: Filesystem, pending: deque[_Pending], follow: bool
    ) -> Located:
        stack: list[tuple[str, Node]] = [("", fs.root)]
        expansions = 0
        while pending:
            item = pending.popleft()
            if item.name == "..":
                if len(stack) == 1:
                    raise SymlinkEscapes(*item.link) if item.link else PathEscapes(path)
                stack.pop()
                continue
            here = Located(part, fs, stack[-1][1], [n for n, _ in stack[1:]])
            child = self._lookup(fs, here, item.name)
            child_path = here.path + "/" + item.name
            if statmod.S_ISLNK(child.meta().mode) and (pending or follow):
                target = child.link_target()
                if not follow:
                    raise IsASymlink(child_path, target)
                expansions += 1
                if expansions > MAX_SYMLINKS:
                    raise SymlinkLoop(path)
                if target.startswith("/"):
                    del stack[1:]
                link = (child_path, target)
                pending.extendleft(reversed([_Pending(p, link) for p in _split(target)]))
                continue
            stack.append((item.name, child))
        return Located(part, fs, stack[-1][1], [n for n, _ in stack[1:]])

    def _lookup(self, fs: Filesystem, parent: Located, name: str) -> Node:
        if not statmod.S_ISDIR(parent.node.meta().mode):
            raise NotADirectory(parent.path)
        folded = None
        for child_name, child in parent.node.children():
            if child_name == name:
                return child
            if fs.case_insensitive and folded is None and child_name.lower() == name.lower():
                folded = child
        if folded is not None:
            return folded
        raise NoSuchPath(parent.path + "/" + name)

    # ------------------------------------------------------------ entries

    def _entry(self, loc: Located, name: str | None = None) -> Entry:
        meta = loc.node.meta()
        kind = type_of_mode(meta.mode)
        target = loc.node.link_target() if kind == "symlink" else None
        entry_name = name if name is not None else (loc.names[-1] if loc.names else loc.partition.name)
        return Entry(entry_name, loc.path, kind, meta.size, meta.mode, meta.uid, meta.gid, meta.mtime, target)

    def _partition_entry(self, part: Partition) -> Entry:
        """A partition lists as a directory when its filesystem opens, else as 'other' with its size."""
        try:
            fs = self.filesystem(part)
            with self._guard(part, "/" + part.name):
                meta = fs.root.meta()
        except StorageError:
            return Entry(part.name, "/" + part.name, "other", part.size, 0, 0, 0, 0.0)
        return Entry(part.name, "/" + part.name, "dir", part.size, meta.mode, meta.uid, meta.gid, meta.mtime)

    def stat(self, path: str, follow_symlinks: bool = False) -> Entry:
        """The entry of ``path`` (of the symlink itself unless ``follow_symlinks``)."""
        loc = self.resolve(path, follow_symlinks)
        if loc is None:
            return Entry("", "/", "dir", self.size, statmod.S_IFDIR | 0o555, 0, 0, 0.0)
        if not loc.names:
            return self._partition_entry(loc.partition)
        with self._guard(loc.partition, path):
            return self._entry(loc)

    def list_dir(self, path: str = "/", follow_symlinks: bool = False) -> list[Entry]:
        """The entries of a directory, sorted by name; '/' lists the partitions."""
        loc = self.resolve(path, follow_symlinks)
        if loc is None:
            return [self._partition_entry(part) for part in self.partitions]
        with self._guard(loc.partition, path):
            if not statmod.S_ISDIR(loc.node.meta().mode):
                raise NotADirectory(loc.path)
            entries = [self._entry(self._child(loc, name, node)) for name, node in loc.node.children()]
        return sorted(entries, key=lambda e: e.name)

    @staticmethod
    def _child(parent: Located, name: str, node: Node) -> Located:
        return Located(parent.partition, parent.fs, node, [*parent.names, name])

    # ------------------------------------------------------------ file data

    def open_file(self, path: str, follow_symlinks: bool = False, allow_damaged: bool = False) -> BinaryIO:
        """A regular file's data as a read-only, seekable binary stream, read on demand.

        With a ``damaged_ranges_for`` source, a file on damaged data raises DamagedFile unless
        ``allow_damaged``; then the damaged ranges read as the stream delivers them (zero-filled).
        """
        loc = self.resolve(path, follow_symlinks)
        if loc is None or not loc.names:
            raise NotAFile(path, "disk" if loc is None else "partition")
        with self._guard(loc.partition, path):
            entry = self._entry(loc)
        if entry.type == "symlink":
            raise IsASymlink(entry.path, entry.target)
        if entry.type != "file":
            raise NotAFile(entry.path, "directory" if entry.type == "dir" else "special file")
        if not allow_damaged:
            damaged = self.file_damage(loc)
            if damaged:
                raise DamagedFile(loc.path, ", ".join(f"[{s}, {e})" for s, e in damaged))
        return self.open_located(loc, allow_damaged)

    def open_located(self, loc: Located, allow_damaged: bool = False) -> BinaryIO:
        """The data of an already resolved regular file.

        Damage the stream discovers while reading (a revision stream learns of a damaged chunk when it
        fetches it) raises DamagedFile unless ``allow_damaged``; the reader's ``damaged`` lists it.
        """
        with self._guard(loc.partition, loc.path):
            raw = _GuardedReader(loc.node.open(), self, loc, allow_damaged)
        return io.BufferedReader(raw, 1024 * 1024)

    def file_damage(self, loc: Located, window: Range | None = None) -> list[Range]:
        """Ranges of the file (file offsets) that lie on damaged disk data; [] without a damage source.

        ``window`` limits the question to a range of the file. Where the filesystem cannot map file
        data to disk offsets (Btrfs), any damage inside the partition counts as damage of the whole
        file: better a false alarm than silent zeros.
        """
        if self.damaged_ranges_for is None:
            return []
        part = loc.partition
        with self._guard(part, loc.path):
            size = loc.node.meta().size
            extents = loc.node.extents()
        lo, hi = window if window is not None else (0, size)
        if extents is None:
            hit = self.damaged_ranges_for(part.offset, part.offset + part.size)
            return [(lo, min(hi, size))] if hit and lo < min(hi, size) else []
        damaged: list[Range] = []
        for file_off, fs_off, length in extents:
            s, e = max(file_off, lo), min(file_off + length, hi)
            if s >= e:
                continue
            disk_start = part.offset + fs_off + (s - file_off)
            for ds, de in intersect(
                self.damaged_ranges_for(disk_start, disk_start + e - s), [(disk_start, disk_start + e - s)]
            ):
                damaged.append((s + ds - disk_start, s + de - disk_start))
        return merge(damaged)

    # ------------------------------------------------------------ walking, search, damage map

    def walk(self, path: str, follow_symlinks: bool = False) -> Iterator[tuple[Located, Entry]]:
        """Yield ``path`` and everything below it, parents first; symlinks below are never followed."""
        loc = self.resolve(path, follow_symlinks)
        if loc is None:
            for part in self.partitions:
                if self._partition_entry(part).type == "dir":
                    yield from self.walk("/" + part.name)
            return
        yield from self._walk_tree(loc, self.stat(path, follow_symlinks))

    def _walk_tree(self, loc: Located, entry: Entry) -> Iterator[tuple[Located, Entry]]:
        """Depth-first, parents first, names sorted; iterative so a corrupt, looping tree cannot recurse."""
        todo: list[tuple[Located, Entry]] = [(loc, entry)]
        while todo:
            here, here_entry = todo.pop()
            yield here, here_entry
            if here_entry.type != "dir":
                continue
            if len(here.names) - len(loc.names) > MAX_DEPTH:
                raise CorruptFilesystem(
                    here.partition.name, here.path, "directories nested too deep (a loop?)"
                )
            with self._guard(here.partition, here.path):
                children = sorted(here.node.children(), key=lambda item: item[0], reverse=True)
            for name, node in children:
                child = self._child(here, name, node)
                with self._guard(here.partition, child.path):
                    todo.append((child, self._entry(child)))

    def search(
        self, path: str, pattern: str, limit: int = 1000, follow_symlinks: bool = False
    ) -> list[Entry]:
        """Entries below ``path`` whose name matches a case-insensitive glob, at most ``limit``.

        A pattern without wildcards matches names containing it ("report" finds "Q3-Report.pdf").
        """
        if not any(c in pattern for c in "*?["):
            pattern = f"*{pattern}*"
        pattern = pattern.lower()
        found: list[Entry] = []
        for index, (_, entry) in enumerate(self.walk(path, follow_symlinks)):
            if index and fnmatch.fnmatchcase(entry.name.lower(), pattern):
                found.append(entry)
                if len(found) >= limit:
                    break
        return found

    def files_in_ranges(self, byte_ranges: list[Range]) -> list[tuple[str, list[Range]]]:
        """Map damaged disk byte ranges to (path, [ranges within the file]) for every file they hit.

        A partition whose filesystem cannot be read, or cannot map data to disk offsets (Btrfs), is
        named itself with the ranges relative to the partition, so that no damage goes unreported.
        """
        wanted = merge(byte_ranges)
        hits: list[tuple[str, list[Range]]] = []
        for part in self.partitions:
            inside = intersect(wanted, [(part.offset, part.offset + part.size)])
            if inside:
                hits.extend(self._files_in_partition(part, shift(inside, -part.offset)))
        return hits

    def _files_in_partition(self, part: Partition, ranges: list[Range]) -> list[tuple[str, list[Range]]]:
        try:
            self.filesystem(part)
        except StorageError:
            return [("/" + part.name, ranges)]
        hits: list[tuple[str, list[Range]]] = []
        for loc, entry in self.walk("/" + part.name):
            if entry.type != "file":
                continue
            with self._guard(part, loc.path):
                extents = loc.node.extents()
            if extents is None:
                return [("/" + part.name, ranges)]
            in_file = []
            for file_off, fs_off, length in extents:
                for s, e in intersect(ranges, [(fs_off, fs_off + length)]):
                    in_file.append((file_off + s - fs_off, file_off + e - fs_off))
            if in_file:
                hits.append((loc.path, merge(in_file)))
        return hits


class _GuardedReader(io.RawIOBase):
    """A file's data stream: reader errors become CorruptFilesystem, damage found is named or refused."""

    def __init__(self, stream: BinaryIO, disk: Disk, loc: Located, allow_damaged: bool) -> None:
        super().__init__()
        self._stream = stream
        self._disk = disk
        self._loc = loc
        self._allow_damaged = allow_damaged
        self.damaged: list[Range] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        position = self._stream.tell()
        with self._disk._guard(self._loc.partition, self._loc.path):
            data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        if data and self._disk.damaged_ranges_for is not None:
            hit = self._disk.file_damage(self._loc, (position, position + len(data)))
            if hit:
                self.damaged = merge([*self.damaged, *hit])
                if not self._allow_damaged:
                    raise DamagedFile(self._loc.path, ", ".join(f"[{s}, {e})" for s, e in self.damaged))
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


def open_disk(fileobj: BinaryIO, damaged_ranges_for: DamagedRangesFor | None = None) -> Disk:
    """Open a disk image: a bare filesystem becomes ``/p1``, else the partition table is read.

    Raises NoFilesystem when there is neither a known filesystem at offset 0 nor a partition table.
    """
    size = fileobj.seek(0, io.SEEK_END)
    fileobj.seek(0)
    whole = RangeStream(fileobj, 0, size)
    if detect(whole) is not None:
        return Disk(fileobj, size, [Partition(1, 0, size, "filesystem")], damaged_ranges_for)
    return Disk(fileobj, size, _partitions(whole), damaged_ranges_for)


def _partitions(whole: BinaryIO) -> list[Partition]:
    from dissect.volume.disk import Disk as VolumeDisk

    whole.seek(0)
    try:
        table = VolumeDisk(whole)
    except StorageError:
        raise
    except Exception as error:  # dissect raises several kinds on garbage
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise NoFilesystem(reason.rstrip(":")) from error
    parts = []
    for p in table.partitions:
        if p.type in CONTAINER_TYPES or p.type in PROTECTIVE_TYPES or not p.size:
            continue
        parts.append(Partition(p.number, p.offset, p.size, str(getattr(p, "type_str", p.type))))
    if not parts:
        raise NoFilesystem("the partition table lists no partitions")
    return parts
