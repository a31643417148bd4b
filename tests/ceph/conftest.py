"""A real, throw-away Ceph cluster for the RBD tests: one monitor and one memstore OSD on loopback.

The session fixture installs Ceph with ``scripts/install-ceph.sh`` when it is missing (the tests skip, with
the reason, only when that is impossible), starts the cluster in a fresh temporary directory on free ports
(so parallel sessions do not collide), points ``CEPH_CONF`` at it, and stops it by pid at the end.
The ``rbd`` CLI serves as the independent oracle; the tests write data through librbd.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storage.errors import StorageError

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
OBJ = 4 << 20  # RBD's default object size, and the engine's chunk size
TOOLS = ("ceph-mon", "ceph-osd", "ceph-authtool", "monmaptool", "ceph", "rbd")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ceph: needs a real Ceph cluster (started by tests/ceph/conftest.py)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ceph)


def _missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def _bindings_error() -> str | None:
    from storage.sources.rbd import load_bindings

    try:
        load_bindings(lambda msg: StorageError(msg))
    except StorageError as e:
        return str(e)
    return None


def _ensure_ceph_installed() -> None:
    """Install Ceph if needed; skip the Ceph tests (with the reason) only when that is impossible."""
    if not _missing_tools() and _bindings_error() is None:
        return
    done = subprocess.run(
        ["bash", str(SCRIPTS / "install-ceph.sh")], capture_output=True, text=True, timeout=900, check=False
    )
    said = (done.stdout.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    missing = _missing_tools()
    if missing:
        pytest.skip(f"Ceph is not installed and could not be ({', '.join(missing)} missing): {said}")
    error = _bindings_error()
    if error:
        pytest.skip(f"{error}: {said}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ceph:
    """The running test cluster and the CLI helpers the tests check against."""

    dir: Path
    conf: Path
    pool: str = "rbd"

    def rbd(self, *args: str, input: bytes | None = None) -> bytes:
        done = subprocess.run(["rbd", *args], input=input, capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            raise AssertionError(f"rbd {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout

    def export(self, name: str) -> bytes:
        """The image (or ``image@snap``) as ``rbd export`` sees it."""
        return self.rbd("export", "--no-progress", f"{self.pool}/{name}", "-")

    def diff(self, name: str, from_snap: str | None = None) -> list[tuple[int, int]]:
        """``rbd diff --whole-object`` as merged [start, end) ranges (all extents, allocated or discarded)."""
        args = ["diff", "--whole-object", "--format", "json", f"{self.pool}/{name}"]
        if from_snap:
            args += ["--from-snap", from_snap]
        extents = json.loads(self.rbd(*args))
        return _merge([(e["offset"], e["offset"] + e["length"]) for e in extents])

    def snaps(self, image: str) -> list[str]:
        return [s["name"] for s in json.loads(self.rbd("snap", "ls", "--format", "json", f"{self.pool}/{image}"))]

    def images(self) -> list[str]:
        return list(json.loads(self.rbd("ls", "--format", "json", self.pool)))

    def used_bytes(self, image: str) -> int:
        doc = json.loads(self.rbd("du", "--format", "json", f"{self.pool}/{image}"))
        return int(sum(i["used_size"] for i in doc["images"] if i["name"] == image))

    def remove_all(self, prefix: str) -> None:
        """Remove every image whose name starts with ``prefix``, with its snapshots (one connection: fast)."""
        rados, rbd = self.bindings()
        cluster = rados.Rados(conffile=str(self.conf))
        cluster.connect()
        try:
            with cluster.open_ioctx(self.pool) as ioctx:
                for name in rbd.RBD().list(ioctx):
                    if name.startswith(prefix):
                        try:
                            rbd.RBD().migration_abort(ioctx, name)  # an unfinished instant restore
                            continue
                        except rbd.Error:
                            pass  # not migrating
                        with rbd.Image(ioctx, name) as img:
                            for snap in list(img.list_snaps()):
                                if img.is_protected_snap(snap["name"]):
                                    img.unprotect_snap(snap["name"])
                                img.remove_snap(snap["name"])
                        rbd.RBD().remove(ioctx, name)
        finally:
            cluster.shutdown()

    @staticmethod
    def bindings() -> tuple[Any, Any]:
        from storage.sources.rbd import load_bindings

        return load_bindings(lambda msg: StorageError(msg))

    def write(self, image: str, writes: list[tuple[int, bytes]], zeroes: list[tuple[int, int]] = ()) -> None:
        """Write ``(offset, data)`` pieces and zero ``(offset, length)`` ranges into the image's head."""
        rados, rbd = self.bindings()
        cluster = rados.Rados(conffile=str(self.conf))
        cluster.connect()
        try:
            with cluster.open_ioctx(self.pool) as ioctx, rbd.Image(ioctx, image) as img:
                for offset, data in writes:
                    img.write(data, offset)
                for offset, length in zeroes:
                    img.write_zeroes(offset, length)
                img.flush()
        finally:
            cluster.shutdown()


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


@pytest.fixture(scope="session")
def ceph_cluster() -> Iterator[Ceph]:
    _ensure_ceph_installed()
    # Short path: the daemons' admin sockets live under it (unix socket paths are limited to 107 bytes).
    directory = Path(tempfile.mkdtemp(prefix="lbceph-", dir="/tmp"))
    env = dict(os.environ, NO_MGR="1", MON_PORT=str(_free_port()), MON_V1_PORT=str(_free_port()))
    env.pop("CEPH_ARGS", None)
    started = subprocess.run(
        ["bash", str(SCRIPTS / "ceph" / "start-ceph.sh"), str(directory / "c"), "memstore"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        if started.returncode != 0:
            pytest.fail(f"the test Ceph cluster did not start:\n{started.stdout}\n{started.stderr}")
        conf = directory / "c" / "ceph.conf"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CEPH_CONF", str(conf))
            mp.delenv("CEPH_ID", raising=False)
            yield Ceph(directory, conf)
    finally:
        subprocess.run(
            ["bash", str(SCRIPTS / "ceph" / "stop-ceph.sh"), str(directory / "c")],
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def ceph(ceph_cluster: Ceph) -> Ceph:
    return ceph_cluster


@pytest.fixture
def image_name(ceph: Ceph) -> Iterator[str]:
    """A fresh image name; the image and its snapshots (and any restore of it) are removed afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    ceph.remove_all(name)


@pytest.fixture
def image(ceph: Ceph, image_name: str) -> str:
    """A 64 MiB image (16 objects) with random data in objects 0, 1, 5 and 9 and the rest unallocated."""
    ceph.rbd("create", "--size", "64M", f"{ceph.pool}/{image_name}")
    ceph.write(image_name, [(i * OBJ, os.urandom(OBJ)) for i in (0, 1, 5)] + [(9 * OBJ + 4096, b"x" * 100)])
    return image_name
