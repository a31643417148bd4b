"""Block devices as source and restore target, on a real loop device (skips where one cannot be made)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .diskdata import CHUNK, block, write_image


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    backing = tmp_path / "device.img"
    with open(backing, "wb") as handle:
        handle.write(b"\xff" * (4 * CHUNK))  # non-zero everywhere: zero chunks must really be written
    try:
        device = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot attach a loop device here ({exc}); needs root and /dev/loop*")
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def test_restore_to_a_block_device_needs_force_and_writes_zeros(tmp_path: Path, root: Path, loop_device: str,
                                                                  lifeboat) -> None:
    image = tmp_path / "disk.img"
    expected = write_image(image, [block("random", 1), block("zero"), block("text", 2)])
    assert lifeboat("store", "backup", str(root), "vm1", f"file:{image}").code == 0
    refused = lifeboat("store", "restore", str(root), "vm1", "latest", loop_device)
    assert refused.code == 2 and "--force" in refused.stderr
    done = lifeboat("store", "restore", str(root), "vm1", "latest", loop_device, "--force", "--json")
    assert done.code == 0, done.stderr
    with open(loop_device, "rb") as handle:
        content = handle.read()
    assert content[: len(expected)] == expected  # the zero chunk overwrote the device's 0xff bytes
    assert content[len(expected):] == b"\xff" * (len(content) - len(expected))  # beyond the revision: untouched


def test_backup_from_a_block_device(tmp_path: Path, root: Path, loop_device: str, lifeboat) -> None:
    with open(loop_device, "r+b") as handle:
        handle.write(block("text", 3))
        handle.write(bytes(CHUNK))
    done = lifeboat("store", "backup", str(root), "vm1", f"file:{loop_device}", "--json")
    assert done.code == 0, done.stderr
    assert done.json["size"] == 4 * CHUNK and done.json["chunks_zero"] == 1 and done.json["chunks_new"] == 2
    out = tmp_path / "out.img"
    assert lifeboat("store", "restore", str(root), "vm1", "latest", str(out)).code == 0
    with open(loop_device, "rb") as handle:
        assert out.read_bytes() == handle.read()
