"""The ``lifeboat check`` command: the Nagios/Icinga plugin around ``portal/check.py``'s probes.

Apart from the probes because it opens the portal's app, which the probes' other user (``/readyz``, inside
that app) must not import back.
"""

from __future__ import annotations

import os
import sys

import click

from .check import CHECKS, NAMES, UNKNOWN, Thresholds, one_line, run_checks, status_line


class PluginCommand(click.Command):
    """Usage errors answer like a plugin: one UNKNOWN line on stdout and exit 3."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            click.echo(f"LIFEBOAT UNKNOWN - {exc.format_message()}")
            raise click.exceptions.Exit(UNKNOWN) from None


def _names(raw: str) -> list[str]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise click.BadParameter(f"unknown check {unknown[0]!r} (choose from {', '.join(CHECKS)})")
    return names


@click.command("check", cls=PluginCommand)
@click.option("--only", default="", metavar="CHECKS", help=f"Comma-separated checks to run ({', '.join(CHECKS)}).")
@click.option("--skip", default="", metavar="CHECKS", help="Comma-separated checks to leave out.")
@click.option("--rpo-warning", type=float, help="WARNING when a VM's backup age exceeds this factor of its RPO.")
@click.option("--rpo-critical", type=float, help="CRITICAL beyond this factor of the RPO.")
@click.option("--workers-warning", type=int, help="WARNING with fewer live workers than this.")
@click.option("--workers-critical", type=int, help="CRITICAL with fewer live workers than this.")
@click.option("--scheduler-warning", type=float, help="WARNING when the scheduler's heartbeat is older (s).")
@click.option("--scheduler-critical", type=float, help="CRITICAL when the scheduler's heartbeat is older (s).")
@click.option("--storage-warning", type=float, help="WARNING below this percentage of free space.")
@click.option("--storage-critical", type=float, help="CRITICAL below this percentage of free space.")
@click.option("-v", "--verbose", is_flag=True, help="After the status line, one line per check.")
def check(only: str, skip: str, verbose: bool, **overrides: float | int | None) -> None:
    """Check Lifeboat's health for Nagios/Icinga: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    try:
        selected = _names(only) if only else list(CHECKS)
        skipped = set(_names(skip))
    except click.BadParameter as exc:
        click.echo(f"LIFEBOAT UNKNOWN - {exc.format_message()}")
        sys.exit(UNKNOWN)
    selected = [name for name in selected if name not in skipped]
    try:
        from .app import create_app

        # The check signs nothing: it must not need the portal's secret key to report on its health.
        app = create_app({"SECRET_KEY": os.environ.get("LIFEBOAT_SECRET_KEY") or "unused-by-lifeboat-check"})
        limits = Thresholds.from_config(app.config)
    except Exception as exc:  # noqa: BLE001 - bad configuration: the plugin cannot judge, it says why
        click.echo(f"LIFEBOAT UNKNOWN - cannot load the configuration ({one_line(exc)})")
        sys.exit(UNKNOWN)
    limits = Thresholds(**{**limits.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    with app.app_context():
        results = run_checks(app.config, selected, limits)
    code, line = status_line(results)
    click.echo(line)
    if verbose:
        for result in results:
            click.echo(f"{result.check}: {NAMES[result.status]} - {result.summary}")
    sys.exit(code)
