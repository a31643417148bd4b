"""Raw disk images for engine tests, described block by block so expectations follow from the layout."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

MiB = 1024 * 1024
CHUNK = 4 * MiB


def block(kind: str, seed: int = 0, size: int = CHUNK) -> bytes:
    """``zero``, ``random`` (incompressible, unique per seed) or ``text`` (compressible) bytes."""
    if kind == "zero":
        return bytes(size)
    if kind == "random":
        return random.Random(seed).randbytes(size)
    if kind == "text":
        line = f"2026-11-24 01:00:{seed % 60:02d} host{seed} service[{seed}]: all is well\n".encode()
        return (line * (size // len(line) + 1))[:size]
    raise ValueError(kind)


def write_image(path: Path, blocks: Sequence[bytes], *, sparse: bool = True) -> bytes:
    """Write blocks one after another; all-zero blocks become holes when ``sparse``. Returns the bytes."""
    with open(path, "wb") as handle:
        for data in blocks:
            if sparse and not any(data):
                handle.seek(len(data), os.SEEK_CUR)
            else:
                handle.write(data)
        handle.truncate()
    return b"".join(blocks)


def flip_bit(path: Path, offset: int | None = None) -> None:
    """Flip one bit in the middle of a stored chunk (bit rot).

    The middle, not the header: a flip in an unused corner of a zstd frame can leave the decoded bytes
    unchanged, which is no damage at all.
    """
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        where = path.stat().st_size // 2 if offset is None else offset
        handle.seek(where)
        byte = handle.read(1)
        handle.seek(where)
        handle.write(bytes([byte[0] ^ 0x01]))


def chunk_files(vm_path: Path) -> list[Path]:
    return sorted(p for p in (vm_path / "chunks").glob("*/*") if not p.name.startswith("."))


def temp_files(vm_path: Path) -> list[Path]:
    return sorted(vm_path.rglob(".*.tmp"))
