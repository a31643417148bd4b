"""Portal fixtures: an app on a fresh database (SQLite by default, PostgreSQL when
LIFEBOAT_TEST_DATABASE_URL is set), a client, an ``auth`` helper, and ``make_*`` factories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from portal import clock
from portal.app import create_app
from portal.extensions import db
from portal.models import VM, BackupPoint, Disk, Organisation, Policy, Restore, SlaTier, User

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("LIFEBOAT_TEST_DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db')}/test.db"


@pytest.fixture(scope="session")
def _schema(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Build the schema once per session through the real migrations."""
    from flask_migrate import upgrade

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        if database_url.startswith("postgresql"):
            with db.engine.begin() as connection:  # a clean slate on a shared server, whatever ran before
                connection.execute(text("DROP SCHEMA public CASCADE"))
                connection.execute(text("CREATE SCHEMA public"))
        upgrade()
        db.engine.dispose()


@pytest.fixture
def app(_schema: None, database_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = create_app({
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "WTF_CSRF_ENABLED": False,
        "STORAGE_ROOT": str(tmp_path / "repositories"),
        "RATELIMIT_ENABLED": False,
    })
    with app.app_context():
        yield app
        db.session.remove()
        _empty_tables()
        db.engine.dispose()  # each app has its own engine: close its connections now, not at GC time


def _empty_tables() -> None:
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Auth:
    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def login(self, user: User | str, password: str = PASSWORD) -> Any:
        email = user if isinstance(user, str) else user.email
        return self.client.post("/login", data={"email": email, "password": password})

    def logout(self) -> Any:
        return self.client.post("/logout")


@pytest.fixture
def auth(client: FlaskClient) -> Auth:
    return Auth(client)


# -- factories -------------------------------------------------------------------------------------------

def make_tier(**values: Any) -> SlaTier:
    defaults: dict[str, Any] = dict(name=f"Tier {SlaTier.query.count() + 1}", min_rpo_minutes=60, max_keep_hourly=24,
                                    max_keep_daily=14, max_keep_weekly=8, max_keep_monthly=6,
                                    restore_priority="high", rto_minutes=240, business_critical_included=True)
    tier = SlaTier(**{**defaults, **values})
    db.session.add(tier)
    db.session.commit()
    return tier


def make_org(slug: str = "acme", tier: SlaTier | None = None, **values: Any) -> Organisation:
    org = Organisation(slug=slug, name=values.pop("name", slug.title()), tier=tier, **values)
    db.session.add(org)
    db.session.commit()
    return org


def make_user(email: str, role: str = "customer_admin", org: Organisation | None = None) -> User:
    user = User(email=email, name=email.split("@")[0], role=role, organisation=org)
    user.set_password(PASSWORD)
    db.session.add(user)
    db.session.commit()
    return user


def make_vm(org: Organisation, name: str = "web-1", environment: str = "production", **policy: Any) -> VM:
    vm = VM(organisation=org, name=name, environment=environment, size_bytes=10 << 30)
    vm.disks.append(Disk(name="root", source=f"rbd:pool/{org.slug}-{name}", size_bytes=10 << 30))
    vm.policy = Policy(**{"rpo_minutes": 120, **policy})
    db.session.add(vm)
    db.session.commit()
    return vm


def make_point(vm: VM, revision: str = "20261124T000000Z-000000", **values: Any) -> BackupPoint:
    """A catalog row (no repository behind it: tests that read data make a real one)."""
    point = BackupPoint(vm_id=vm.id, revision=revision, created_at=values.pop("created_at", clock.now()),
                        size_bytes=values.pop("size_bytes", 1 << 30), state=values.pop("state", "ok"), **values)
    db.session.add(point)
    db.session.commit()
    return point


@pytest.fixture
def world(app: Flask) -> dict[str, Any]:
    """Two tenants on different tiers, a user of every role, a VM or two each."""
    premium = make_tier(name="Premium", min_rpo_minutes=15, max_keep_hourly=48, restore_priority="critical")
    basic = make_tier(name="Basic", min_rpo_minutes=1440, max_keep_hourly=0, max_keep_daily=7,
                      business_critical_included=False, rto_minutes=0, restore_priority="normal")
    manager = make_user("manager@lifeboat.example", "account_manager")
    acme = make_org("acme", premium, account_manager_id=manager.id)
    globex = make_org("globex", basic)
    acme_vm, globex_vm = make_vm(acme, "web-1"), make_vm(globex, "shop-1", rpo_minutes=1440)
    acme_point, globex_point = make_point(acme_vm), make_point(globex_vm)
    acme_admin = make_user("admin@acme.example", "customer_admin", acme)
    restore = Restore(vm_id=acme_vm.id, backup_point_id=acme_point.id, kind="full", priority_class="critical",
                      requested_by_id=acme_admin.id, job_id="restore-test")
    db.session.add(restore)
    db.session.commit()
    return {
        "premium": premium, "basic": basic, "acme": acme, "globex": globex, "manager": manager,
        "acme_point": acme_point, "globex_point": globex_point, "acme_restore": restore,
        "operator": make_user("operator@lifeboat.example", "operator"),
        "acme_admin": acme_admin,
        "acme_member": make_user("dev@acme.example", "customer_member", acme),
        "globex_admin": make_user("admin@globex.example", "customer_admin", globex),
        "acme_vm": acme_vm,
        "acme_staging": make_vm(acme, "staging-api", "staging"),
        "globex_vm": globex_vm,
    }
