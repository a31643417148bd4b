"""The ``lifeboat`` command group."""

from __future__ import annotations

import click

from storage.cli import store


@click.group()
@click.version_option(package_name="lifeboat")
def main() -> None:
    """Lifeboat: backups and restores of VM disks."""


main.add_command(store)
