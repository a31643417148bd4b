"""Build real disk images with the real tools (sfdisk, mkfs.*), for tests and benchmarks.

Nothing is mounted and nothing needs root beyond what the tools themselves need: ``mkfs.ext4 -d`` and
``mkfs.btrfs --rootdir`` copy a source tree into the new filesystem, ``mkfs.xfs -p`` reads a prototype
file, and ``mcopy`` writes into a FAT image at an offset. Owners are only set on the source tree when the
process may chown (root); :data:`TREE_OWNER` says what the tests may expect.

A helper returns ``None`` (or callers skip) when its tool is missing, so that a machine without, say,
``mkfs.xfs`` skips those tests with a reason instead of failing.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
PART_OFFSET = MIB  # first partition starts at sector 2048, as every modern partitioner does
MTIME = 1_700_000_000  # 2023-11-14, a fixed mtime so that listings are predictable
CAN_CHOWN = hasattr(os, "geteuid") and os.geteuid() == 0
TREE_OWNER = (1000, 1001) if CAN_CHOWN else (os.getuid(), os.getgid())


@dataclass(frozen=True)
class TreeFile:
    """One regular file of the sample tree, as the tests expect to find it."""

    path: str
    data: bytes
    mode: int
    mtime: int


def have(*tools: str) -> bool:
    """Tell whether every tool is on PATH (sbin included, where mkfs lives)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return all(shutil.which(tool, path=path) for tool in tools)


def _run(*args: str, stdin: str | None = None) -> None:
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin", MTOOLS_SKIP_CHECK="1")
    subprocess.run(args, input=stdin, text=True, check=True, capture_output=True, env=env)


def sample_files(big_size: int = 3 * MIB) -> list[TreeFile]:
    """The regular files of the sample tree: small text, nested, binary and a multi-MiB random file."""
    rng = random.Random(1234)
    return [
        TreeFile("README.txt", b"Lifeboat test image\n", 0o644, MTIME),
        TreeFile("etc/hosts", b"127.0.0.1 localhost\n", 0o600, MTIME + 60),
        TreeFile("etc/script.sh", b"#!/bin/sh\necho hi\n", 0o755, MTIME + 120),
        TreeFile("a/b/c/deep.txt", b"deep down\n" * 100, 0o640, MTIME + 180),
        TreeFile("data/big.bin", rng.randbytes(big_size), 0o644, MTIME + 240),
        TreeFile("data/Photo.JPG", b"\xff\xd8\xff" + rng.randbytes(5000), 0o644, MTIME + 300),
        TreeFile("empty", b"", 0o644, MTIME + 360),
    ]


SYMLINKS = {
    "link-to-readme": "README.txt",
    "a/up": "../etc/hosts",
    "dirlink": "a/b",
    "abs-hosts": "/etc/hosts",
    "escape": "../../../../etc/passwd",
    "loop1": "loop2",
    "loop2": "loop1",
    "a/self": "self",
}


def make_tree(root: Path, *, symlinks: bool = True, big_size: int = 3 * MIB) -> list[TreeFile]:
    """Write the sample tree under ``root`` with fixed modes, mtimes and (as root) owners."""
    files = sample_files(big_size)
    for f in files:
        target = root / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.data)
    if symlinks:
        for name, dest in SYMLINKS.items():
            os.symlink(dest, root / name)
    for f in files:
        os.chmod(root / f.path, f.mode)
    for d in ("a", "a/b", "a/b/c", "etc", "data"):
        os.chmod(root / d, 0o750 if d == "etc" else 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            if CAN_CHOWN:
                os.lchown(path, *TREE_OWNER)
            os.utime(path, (MTIME, MTIME), follow_symlinks=False)
    for f in files:
        os.utime(root / f.path, (f.mtime, f.mtime))
    os.utime(root, (MTIME, MTIME))
    return files


def _sized_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def _mkfs_ext4(image: Path, src: Path | None, offset: int, size: int) -> None:
    blocks = size // 4096
    args = ["mkfs.ext4", "-q", "-F", "-b", "4096", "-E", f"offset={offset}", "-L", "lifeboat"]
    if src is not None:
        args += ["-d", str(src)]
    _run(*args, str(image), str(blocks))


def gpt_ext4(image: Path, src: Path, size: int = 64 * MIB) -> Path:
    """One GPT partition (from 1 MiB to 1 MiB before the end) holding ext4 with ``src``'s tree."""
    _sized_file(image, size)
    _run("sfdisk", "-q", str(image), stdin="label: gpt\nstart=2048, type=linux\n")
    part_size = size - PART_OFFSET - MIB  # the backup GPT header lives in the last sectors
    _mkfs_ext4(image, src, PART_OFFSET, part_size)
    return image


def bare_ext4(image: Path, src: Path, size: int = 32 * MIB) -> Path:
    """An ext4 filesystem directly on the disk, without a partition table."""
    _sized_file(image, size)
    _mkfs_ext4(image, src, 0, size)
    return image


def mbr_two(image: Path, src1: Path, src2: Path, size: int = 64 * MIB) -> Path:
    """An MBR disk with two ext4 partitions of 24 MiB each (p1 at 1 MiB, p2 at 32 MiB)."""
    _sized_file(image, size)
    _run(
        "sfdisk",
        "-q",
        str(image),
        stdin="label: dos\nstart=2048, size=49152, type=83\nstart=65536, size=49152, type=83\n",
    )
    _mkfs_ext4(image, src1, PART_OFFSET, 24 * MIB)
    _mkfs_ext4(image, src2, 32 * MIB, 24 * MIB)
    return image


def mbr_fat(image: Path, src: Path, size: int = 48 * MIB) -> Path:
    """An MBR disk with one FAT32 partition, filled with ``mcopy`` (no symlinks or owners on FAT)."""
    _sized_file(image, size)
    _run("sfdisk", "-q", str(image), stdin="label: dos\nstart=2048, type=c\n")
    sectors = (size - PART_OFFSET) // 512
    _run("mkfs.vfat", "-F", "32", "-n", "LIFEBOAT", "--offset", "2048", str(image), str(sectors // 2))
    target = f"{image}@@{PART_OFFSET}"
    for entry in sorted(src.iterdir()):
        _run("mcopy", "-s", "-p", "-m", "-i", target, str(entry), "::/")
    return image


def bare_xfs(image: Path, src: Path, size: int = 300 * MIB) -> Path:
    """XFS (which needs at least 300 MiB; the file stays sparse) built from a prototype file."""
    _sized_file(image, size)
    proto = image.with_suffix(".proto")
    proto.write_text(_xfs_proto(src))
    _run("mkfs.xfs", "-q", "-f", "-p", str(proto), str(image))
    return image


def _xfs_proto(src: Path) -> str:
    """Describe ``src`` in mkfs.xfs prototype syntax (files, dirs, symlinks; owners and modes)."""
    lines = ["/dev/null", "0 0", f"d--{_perm(src)} {_owner(src)}"]
    _xfs_proto_dir(src, lines, 1)
    lines.append("$")
    return "\n".join(lines) + "\n"


def _xfs_proto_dir(directory: Path, lines: list[str], depth: int) -> None:
    pad = " " * depth
    for entry in sorted(directory.iterdir()):
        if entry.is_symlink():
            lines.append(f"{pad}{entry.name} l--{_perm(entry)} {_owner(entry)} {os.readlink(entry)}")
        elif entry.is_dir():
            lines.append(f"{pad}{entry.name} d--{_perm(entry)} {_owner(entry)}")
            _xfs_proto_dir(entry, lines, depth + 1)
            lines.append(pad + "$")
        else:
            lines.append(f"{pad}{entry.name} ---{_perm(entry)} {_owner(entry)} {entry}")


def _perm(path: Path) -> str:
    return f"{path.lstat().st_mode & 0o777:03o}"


def _owner(path: Path) -> str:
    st = path.lstat()
    return f"{st.st_uid} {st.st_gid}"


def bare_btrfs(image: Path, src: Path, size: int = 128 * MIB) -> Path:
    """Btrfs filled with ``mkfs.btrfs --rootdir`` (the file stays sparse)."""
    _sized_file(image, size)
    _run("mkfs.btrfs", "-q", "-f", "--rootdir", str(src), str(image))
    return image


def bare_ntfs(image: Path, size: int = 16 * MIB) -> Path:
    """An empty NTFS filesystem (filling it would need a FUSE mount)."""
    _sized_file(image, size)
    _run("mkntfs", "-q", "-F", "-f", "-L", "lifeboat", str(image))
    return image


def random_disk(image: Path, size: int = 4 * MIB) -> Path:
    """Random bytes: no partition table, no filesystem."""
    image.write_bytes(random.Random(99).randbytes(size))
    return image
