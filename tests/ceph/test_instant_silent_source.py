"""A source that accepts the connection and never answers must not hang the CLI or a worker: librbd's HTTP
client has no timeout, so the instant restore gives up after its deadline with one clear error and leaves
nothing behind. Real cluster, real CLI, real job; the silent sources are real sockets."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from portal.extensions import db
from portal.models import BackupPoint, Restore
from portal.services import runs
from storage.targets.migration import InstantRestoreFailed, RbdMigration
from tests import images
from tests.conftest import LIFEBOAT
from tests.fixtures.jobs import run_jobs
from tests.serving import backed_up_disk

if TYPE_CHECKING:
    from conftest import Ceph

pytestmark = pytest.mark.skipif(not images.have("sfdisk", "mkfs.ext4"), reason="needs sfdisk and mkfs.ext4")


class Silent:
    """A listening socket that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.accepted: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.closed = True
        self.socket.close()
        for connection in self.accepted:
            connection.close()


class SizeOnly:
    """Answers HEAD with a size as a disk source does, then never answers a read (a source that hangs later)."""

    def __init__(self, size: int) -> None:
        gate = self.gate = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

            def do_GET(self) -> None:
                gate.wait(120)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    source = Silent()
    yield source
    source.close()


def test_the_cli_gives_up_on_a_source_that_never_answers(ceph: Ceph, silent: Silent, tmp_path: Path, root: Path,
                                                           image_name: str) -> None:
    _, revision = backed_up_disk(tmp_path / "work", root)
    started = time.monotonic()
    done = subprocess.run([LIFEBOAT, "store", "instant-restore", str(root), "vm1", revision,
                           f"rbd:{ceph.pool}/{image_name}", "--listen", "127.0.0.1:0", "--url-base", silent.url,
                           "--source-timeout", "2", "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert time.monotonic() - started < 60
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not answer within 2 s" in lines[0] and silent.url in lines[0], done.stderr
    assert silent.accepted  # it was asked, and kept silent
    assert image_name not in ceph.images()
    assert not list((root / "vm1" / "restore-state").glob("instant-*"))  # no record of a restore never made
    # The same source with a longer deadline: still one clear error, never a hang.
    done = subprocess.run([LIFEBOAT, "store", "instant-restore", str(root), "vm1", revision,
                           f"rbd:{ceph.pool}/{image_name}", "--listen", "127.0.0.1:0", "--url-base",
                           f"{silent.url}/x", "--source-timeout", "0.5"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and "did not answer within 0.5 s" in done.stderr


def test_librbd_waiting_on_a_source_that_stops_answering_is_given_up_on(ceph: Ceph, image_name: str) -> None:
    """The source answers the size, so prepare goes ahead; then it never answers a read, and the open (what a
    booting VM does first) would wait for ever inside librbd: it fails after the deadline instead."""
    source = SizeOnly(16 << 20)
    try:
        with RbdMigration(f"rbd:{ceph.pool}/{image_name}", timeout=3) as migration:
            migration.prepare(f"{source.url}/disk.raw", [])
            started = time.monotonic()
            with pytest.raises(InstantRestoreFailed, match="open: no answer within 3 s"):
                migration.probe()
            assert time.monotonic() - started < 30
            assert migration.stuck
    finally:
        source.close()  # the read waiting in librbd gets its answer (or an error) and returns


def test_a_worker_gives_up_on_a_source_that_never_answers(
        app: Any, ceph: Ceph, silent: Silent, world: dict[str, Any], queues: Any, image_name: str,
        tmp_path: Path) -> None:
    disk = tmp_path / "d.img"
    disk.write_bytes(b"\1" * (4 << 20))
    ceph.rbd("import", "--no-progress", str(disk), f"{ceph.pool}/{image_name}")
    vm = world["acme_vm"]
    vm.disks[0].source = f"rbd:{ceph.pool}/{image_name}"
    db.session.delete(world["acme_restore"])
    db.session.commit()
    runs.request_backup(vm)
    run_jobs(queues)
    app.config["INSTANT_SOURCE_URL"] = silent.url
    app.config["INSTANT_SOURCE_TIMEOUT"] = 2
    point = db.session.query(BackupPoint).filter_by(vm_id=vm.id).order_by(BackupPoint.created_at.desc()).first()
    restore = runs.request_restore(world["acme_admin"], vm, point, "instant")
    started = time.monotonic()
    run_jobs(queues)
    assert time.monotonic() - started < 60
    db.session.expire_all()
    row = db.session.get(Restore, restore.id)
    assert row.state == "failed" and "did not answer within 2 s" in row.error, row.error
    assert silent.url in row.error and row.source_secret not in row.error  # the secret is not told
    assert f"{image_name}-restore-{row.id}" not in ceph.images()
