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


# -- looking into a repository through its backend (the same for a folder and a RADOS pool) ------------------

def stored_chunks(root: str | Path, vm: str) -> dict[str, int]:
    """The chunks the repository holds: name -> size as stored (temp files left out)."""
    from storage.repository import Repository

    repo = Repository.open(str(root), vm)
    found: dict[str, int] = {}
    for name, key in repo.iter_chunk_files():
        info = repo.store.stat(key)
        if info is not None and not name.startswith("."):
            found[name] = info.size
    return found


def read_object(root: str | Path, key: str) -> bytes:
    """An object (a file, for a folder root) of the repository root, by key (``vm1/repository.json``)."""
    from storage.backend import open_store

    return open_store(str(root)).get(key, 1 << 30)


def write_object(root: str | Path, key: str, data: bytes) -> None:
    """Overwrite an object in place (to damage it), whatever the backend; a read-only chunk file is made writable."""
    from storage.backend import LocalStore, open_store

    store = open_store(str(root))
    if isinstance(store, LocalStore):
        path = Path(store.path(key))
        if path.exists():
            path.chmod(0o644)
        path.write_bytes(data)
        return
    store.put(key, data)


def delete_object(root: str | Path, key: str) -> None:
    from storage.backend import open_store

    assert open_store(str(root)).delete(key)


def object_exists(root: str | Path, key: str) -> bool:
    from storage.backend import open_store

    return open_store(str(root)).exists(key)


def flip_object_bit(root: str | Path, key: str) -> None:
    """``flip_bit`` for an object of any backend (the middle of it: see flip_bit)."""
    data = bytearray(read_object(root, key))
    data[len(data) // 2] ^= 0x10
    write_object(root, key, bytes(data))
