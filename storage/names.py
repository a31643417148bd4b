"""Validation of names that become file names or path segments (VMs, revisions, disks): no input leaves the root."""

from __future__ import annotations

import re

from .errors import BadName

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise BadName(kind, name)
    return name
