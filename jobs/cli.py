"""The whole ``lifeboat`` command: the portal's commands (``portal/cli.py``) plus ``lifeboat worker``.

The command is composed here because only the jobs layer may see both the portal and the jobs: the portal
enqueues jobs by dotted path and never imports them (ARCHITECTURE, enforced by ``.importlinter``).
"""

from __future__ import annotations

import sys

import click

from portal.cli import main

__all__ = ["main"]


@main.command("worker")
@click.option("-n", "--count", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
def worker(count: int, burst: bool) -> None:
    """Run workers on all queues, highest priority first (restores, then backups, then maintenance)."""
    from .worker import run  # imported when it runs: `lifeboat store ...` stays free of Flask and RQ

    try:
        sys.exit(run(count, burst))
    except RuntimeError as exc:
        click.echo(f"lifeboat: error: {exc}", err=True)
        sys.exit(2)
