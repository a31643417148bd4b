# ruff: noqa: F811 - the rbd_vm fixture of test_instant_portal is imported and used by name
"""``lifeboat instant-source``: the keep-alive HTTP source of instant restores. librbd reads from it directly
(no proxy in between, unlike the other portal tests): the job hydrates and commits, the image equals the disk;
anything but an active restore's URL is a 404, as from the web app."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from test_instant_portal import newest_point, rbd_vm  # noqa: F401 - fixture used by name

from portal.extensions import db
from portal.instant_source import SourceServer
from portal.models import Restore
from portal.services import runs
from tests.conftest import LIFEBOAT
from tests.fixtures.jobs import run_jobs

if TYPE_CHECKING:
    from conftest import Ceph


@pytest.fixture
def source(app: Any) -> Iterator[str]:
    server = SourceServer(app, "127.0.0.1", 0)
    server.start()
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["INSTANT_SOURCE_URL"] = url
    yield url
    server.shutdown()
    server.server_close()


def head(url: str, path: str, connection: http.client.HTTPConnection | None = None) -> tuple[int, str | None]:
    own = connection or http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    try:
        own.request("HEAD", path)
        reply = own.getresponse()
        reply.read()
        return reply.status, reply.getheader("Connection")
    finally:
        if connection is None:
            own.close()


def test_librbd_hydrates_straight_from_the_keep_alive_source(
        ceph: Ceph, rbd_vm: tuple[Any, bytes], source: str, world: dict[str, Any], queues: Any) -> None:
    vm, original = rbd_vm
    restore = runs.request_restore(world["acme_admin"], vm, newest_point(vm), "instant")
    path = f"/instant/{restore.source_secret}/disk.raw"
    connection = http.client.HTTPConnection(source.removeprefix("http://"), timeout=30)
    assert head(source, path, connection) == (200, None)
    assert head(source, path, connection)[0] == 200  # the same connection again: kept alive
    connection.close()
    assert head(source, f"/instant/{'x' * 43}/disk.raw")[0] == 404
    assert head(source, f"/instant/{restore.source_secret}/disks/root.raw")[0] == 404  # a point of one disk
    run_jobs(queues)
    db.session.expire_all()
    row = db.session.get(Restore, restore.id)
    assert row.state == "done", row.error
    image = row.output_path[len(f"rbd:{ceph.pool}/"):]
    assert json.loads(ceph.rbd("status", "--format", "json", f"{ceph.pool}/{image}")).get("migration") is None
    assert ceph.export(image) == original
    assert head(source, path)[0] == 404  # done: the secret answers nothing any more


def test_the_command_refuses_a_bad_address() -> None:
    import subprocess

    done = subprocess.run([LIFEBOAT, "instant-source", "--listen", "nowhere"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "HOST:PORT" in done.stderr and len(done.stderr.strip().splitlines()) == 1
