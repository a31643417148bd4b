"""Two portals on loopback: a primary (the test database: SQLite, or PostgreSQL when
LIFEBOAT_TEST_DATABASE_URL is set) and a replica (its own SQLite database), each a real ``create_app`` with
its own storage root, served by werkzeug in a thread. Repositories are made by real engine backups of
real images."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from portal.app import create_app
from portal.extensions import db
from portal.models import VM, User
from portal.services.catalog import rebuild
from portal.services.tokens import create_token
from storage.backup import backup
from tests.fixtures.portal import _empty_tables, make_org, make_tier, make_user, make_vm
from tests.serving import QUICK_STOP
from tests.storage.diskdata import block, write_image

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def blocks_v1() -> list[bytes]:
    """A 12-chunk disk: random (incompressible), text (compressible) and zero blocks."""
    kinds = ["random", "text", "zero", "random", "random", "text", "zero", "random", "text", "random",
             "zero", "random"]
    return [block(kind, seed) for seed, kind in enumerate(kinds)]


def blocks_v2() -> list[bytes]:
    """v1 with two blocks changed: a second backup stores exactly two new chunks."""
    blocks = blocks_v1()
    blocks[3] = block("random", 1003)
    blocks[8] = block("text", 1008)
    return blocks


class Server:
    """A WSGI app on 127.0.0.1 in a thread; ``wrap`` lets a test put a middleware in front of it."""

    def __init__(self, application: WSGIApp) -> None:
        self.app = application
        self.middleware: Callable[[WSGIApp], WSGIApp] | None = None
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self._dispatch, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs=QUICK_STOP, daemon=True)
        self._thread.start()

    def _dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        target = self.middleware(self.app) if self.middleware else self.app
        return target(environ, start_response)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@dataclass
class Portal:
    """One portal: its app, storage root, server, the customer admin and their VMs."""

    app: Flask
    root: Path
    server: Server
    admin: User
    vms: dict[str, VM] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def token(self, scopes: list[str] | None = None, vm_ids: list[int] | None = None) -> str:
        with self.app.app_context():
            admin = db.session.merge(self.admin)
            _, secret = create_token(admin, scopes or ["export:read"], name="replication", vm_ids=vm_ids)
            return secret

    def repository(self, name: str = "web-1") -> str:
        return self.vms[name].repository_name

    def rebuild_catalog(self) -> int:
        with self.app.app_context():
            return rebuild()


def _seed(flask_app: Flask) -> tuple[User, dict[str, VM]]:
    """The same inventory on both portals (same order, so the same ids and repository names)."""
    with flask_app.app_context():
        tier = make_tier(name="Premium")
        acme = make_org("acme", tier)
        vms = {name: make_vm(acme, name) for name in ("web-1", "db-1")}
        admin = make_user("admin@acme.example", "customer_admin", acme)
        make_user("admin@globex.example", "customer_admin", make_org("globex", tier))
        for vm in vms.values():
            db.session.refresh(vm)
        db.session.expunge_all()
        return admin, vms


def _portal(flask_app: Flask, root: Path) -> Portal:
    admin, vms = _seed(flask_app)
    return Portal(app=flask_app, root=root, server=Server(flask_app), admin=admin, vms=vms)


@pytest.fixture
def image_v1(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "disk-v1.img"
    return path, write_image(path, blocks_v1())


@pytest.fixture
def image_v2(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "disk-v2.img"
    return path, write_image(path, blocks_v2())


@pytest.fixture
def primary(app: Flask, tmp_path: Path,
            image_v1: tuple[Path, bytes], image_v2: tuple[Path, bytes]) -> Iterator[Portal]:
    """The primary portal with two backups of web-1 (v1, then v2) and one of db-1, cataloged."""
    root = Path(app.config["STORAGE_ROOT"])
    portal = _portal(app, root)
    web, other = portal.repository("web-1"), portal.repository("db-1")
    backup(str(root), web, f"file:{image_v1[0]}")
    backup(str(root), web, f"file:{image_v2[0]}")
    backup(str(root), other, f"file:{image_v1[0]}")
    portal.rebuild_catalog()
    yield portal
    portal.server.stop()


@pytest.fixture(scope="session")
def _replica_schema(tmp_path_factory: pytest.TempPathFactory) -> str:
    from flask_migrate import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('replica-db')}/replica.db"
    replica_app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with replica_app.app_context():
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture
def replica(_replica_schema: str, tmp_path: Path) -> Iterator[Portal]:
    """A second portal: its own SQLite database and storage root, the same inventory, no backups yet."""
    replica_app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": _replica_schema,
                              "STORAGE_ROOT": str(tmp_path / "replica-root"), "RATELIMIT_ENABLED": False})
    portal = _portal(replica_app, tmp_path / "replica-root")
    yield portal
    portal.server.stop()
    with replica_app.app_context():
        db.session.remove()
        _empty_tables()
        db.engine.dispose()
