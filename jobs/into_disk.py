"""Putting files from a backup back into the VM's own disk: ext2/3/4 filesystems on ``file:`` disks.

Why debugfs: it writes an ext filesystem inside an image file (``IMAGE?offset=N`` for a partition) as an
ordinary user, without mounting it, so no kernel driver ever parses the customer's filesystem and no root is
needed. The selection is read from the backup point (verified chunks, damaged files refused), staged file by
file in a scratch folder, and written with ``debugfs -w``: folders created as needed, existing files replaced,
modes, owners and mtimes set as in the backup; files in the VM that the backup does not have are left alone.
Afterwards the result is read back through the same reader the portal uses (every file present, same size)
and ``e2fsck -fn`` must find the filesystem clean; otherwise the job fails and says so (undo: restore the
safety backup in place).

The files go back into the disk they came from (the row's ``disk``, else the point's default disk): for a VM
of several disks, the inventory's disk that the point's disk was backed up from. Destinations: the original
place (``target = {"type": "in_vm"}``), or under another folder on that disk
(``{"type": "in_vm", "path": "/p1/restored"}``): ``/p1/etc/hosts`` goes to ``/p1/restored/hosts``.
Before anything is written, a protected safety backup of that disk is taken (``jobs.safety``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from portal.extensions import db
from portal.models import Restore
from portal.services import runs
from storage.browse import open_revision_disk
from storage.errors import StorageError
from storage.files.disk import Disk, open_disk

from . import safety

#: debugfs messages that only say "already there" / "not there" for our mkdir and rm, and its banner
HARMLESS = re.compile(r"directory already exists|File not found by ext2_lookup while trying to resolve|^debugfs \d")


@dataclass(frozen=True)
class Placement:
    source: str  # path in the backup: /p1/etc/hosts
    partition: str  # destination partition: p1
    path: str  # destination inside it: /etc/hosts
    type: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    target: str | None  # symlink target


def tool(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)),
                                       None)
    if not found:
        raise StorageError(f"{name} (e2fsprogs) is needed to put files back into a disk; install e2fsprogs")
    return found


def _split(path: str) -> tuple[str, str]:
    """``/p1/etc/hosts`` -> (``p1``, ``/etc/hosts``)."""
    parts = path.strip("/").split("/", 1)
    return parts[0], "/" + (parts[1] if len(parts) > 1 else "")


def plan(backup_disk: Disk, paths: list[str], dest: str | None) -> list[Placement]:
    """Every entry below the selection and where it goes, parents before children."""
    placements = []
    for selected in paths:
        sel = selected.rstrip("/") or "/"
        if dest:
            partition, folder = _split(dest)
            base = folder.rstrip("/") + "/" + sel.rsplit("/", 1)[-1]
        else:
            partition, base = _split(sel)
        for _, entry in backup_disk.walk(sel):
            where = (base.rstrip("/") + entry.path[len(sel):]) or "/"
            placements.append(Placement(entry.path, partition, where, entry.type, entry.size, entry.mode,
                                        entry.uid, entry.gid, entry.mtime, entry.target))
    return placements


def _quote(path: str) -> str:
    if any(c in path for c in '"\n\r\\'):
        raise StorageError(f"cannot write {path!r} with debugfs (quotes, backslashes or newlines in the name)")
    return f'"{path}"'


def _parents(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: n + 1]) for n in range(len(parts))]


def _existing_dirs(live: Disk, placements: list[Placement]) -> set[tuple[str, str]]:
    """The (partition, folder) the placements need that the VM's disk already has: never ``mkdir``-ed again
    (debugfs 1.47 leaves an unlinked directory inode behind when it refuses to make one that exists)."""
    wanted = {(p.partition, d) for p in placements for d in [*_parents(p.path), *([p.path] if p.type == "dir"
                                                                                   else [])]}
    found = set()
    for partition, folder in wanted:
        try:
            if live.stat(f"/{partition}{folder}").type == "dir":
                found.add((partition, folder))
        except StorageError:
            continue
    return found


def _commands(placements: list[Placement], backup_disk: Disk, scratch: str,
              existing: frozenset[str] = frozenset()) -> tuple[list[str], int]:
    lines: list[str] = []
    made: set[str] = set(existing)
    written = 0
    for n, item in enumerate(placements):
        for parent in _parents(item.path):
            if parent not in made:
                lines.append(f"mkdir {_quote(parent)}")
                made.add(parent)
        dest = _quote(item.path)
        if item.type == "dir":
            if item.path != "/" and item.path not in made:
                lines.append(f"mkdir {dest}")
                made.add(item.path)
        elif item.type == "file":
            staged = os.path.join(scratch, str(n))
            loc = backup_disk.resolve(item.source)
            with backup_disk.open_located(loc) as reader, open(staged, "wb") as out:  # type: ignore[arg-type]
                shutil.copyfileobj(reader, out, 1 << 20)
            written += item.size
            lines += [f"rm {dest}", f"write {_quote(staged)} {dest}"]
        elif item.type == "symlink" and item.target is not None:
            lines += [f"rm {dest}", f"symlink {dest} {_quote(item.target)}"]
        else:
            continue  # devices, fifos, sockets: not put back
        if item.path != "/" and item.type != "symlink":
            lines += [f"sif {dest} mode 0{item.mode:o}", f"sif {dest} uid {item.uid}", f"sif {dest} gid {item.gid}",
                      f"sif {dest} mtime @{int(item.mtime)}"]
    return lines, written


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=3600, check=False)  # noqa: S603


def put_back(row: Restore, config: dict[str, object]) -> None:
    """The job's work for a file restore into the VM's disk; the caller holds the VM lock."""
    root, vm, point = str(config["STORAGE_ROOT"]), row.vm, row.backup_point
    from_disk = row.disk or point.browse_disk  # None: the point's only disk
    try:
        (_, into), = runs.overwritten(vm, point, from_disk or "")
    except runs.RestoreError as exc:  # the inventory changed since the request
        raise StorageError(str(exc)) from exc
    if not into.source.startswith("file:"):
        raise StorageError("files can be put back only into file: disks; download them instead")
    image = into.source[len("file:"):]
    debugfs, e2fsck = tool("debugfs"), tool("e2fsck")
    dest = (row.target or {}).get("path") or None
    scratch_root = str(config.get("RESTORE_ROOT") or os.path.join(os.path.dirname(root), "restores"))
    os.makedirs(scratch_root, exist_ok=True)
    safety.take(row, root, [into])  # first: the backup takes the repository's exclusive lock, reading shares it
    with open_revision_disk(root, vm.repository_name, point.revision, disk=from_disk) as backup_disk:
        placements = plan(backup_disk, row.paths, dest)
        row.bytes_total = sum(p.size for p in placements if p.type == "file")
        row.phase = "writing into the disk"
        db.session.commit()
        with open(image, "rb") as handle:
            live = open_disk(handle)
            offsets = {}
            for name in {p.partition for p in placements}:
                part = live.partition(name)
                if not live.filesystem(part).kind.startswith("ext"):
                    raise StorageError(f"/{name} of the VM's disk is not an ext2/3/4 filesystem: files can be "
                                       "put back only into ext filesystems")
                offsets[name] = part.offset
            existing = _existing_dirs(live, placements)
        with tempfile.TemporaryDirectory(dir=scratch_root, prefix=f"files-{row.id}-") as scratch:
            for name, offset in sorted(offsets.items()):
                mine = [p for p in placements if p.partition == name]
                lines, written = _commands(mine, backup_disk, scratch,
                                           frozenset(d for p, d in existing if p == name))
                script = os.path.join(scratch, f"{name}.debugfs")
                with open(script, "w", encoding="utf-8") as out:
                    out.write("\n".join(lines) + "\n")
                done = _run([debugfs, "-w", "-f", script, f"{image}?offset={offset}"])
                problems = [line for line in done.stderr.splitlines()
                            if line.strip() and not HARMLESS.search(line)]
                if done.returncode != 0 or problems:
                    raise StorageError("debugfs: " + "; ".join(problems[:5] or [f"exit {done.returncode}"]))
                row.bytes_done += written
                db.session.commit()
                check = _run([e2fsck, "-fn", f"{image}?offset={offset}"])
                if check.returncode != 0:
                    raise StorageError(f"e2fsck finds /{name} not clean after writing (undo restores the safety "
                                       f"backup): {check.stdout.strip().splitlines()[-1:]}")
    row.report = {"into_disk": image, "disk": into.name, "destination": dest or "original paths",
                  "files": _read_back(image, placements), "bytes": row.bytes_total,
                  "safety_revision": row.safety_revision}
    row.output_path = image


def _read_back(image: str, placements: list[Placement]) -> int:
    """Check every file is in the disk with its size, through the portal's own reader; return the count."""
    count = 0
    with open(image, "rb") as handle:
        live = open_disk(handle)
        for item in placements:
            if item.type != "file":
                continue
            found = live.stat(f"/{item.partition}{item.path}")
            if found.type != "file" or found.size != item.size:
                raise StorageError(f"/{item.partition}{item.path} was not written as expected")
            count += 1
    return count
