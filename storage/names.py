"""Validation of names that become file names (VMs, revisions), so no input can leave the root."""

from __future__ import annotations

import re

from .errors import BadName

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadName(kind, name)
    return name
