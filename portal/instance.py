"""The instance folder (Flask's convention): settings of one installation that are not in the code.

``make run`` writes its generated settings (secret key, database, storage root) once to
``VAR/instance/lifeboat.toml`` so that every ``lifeboat`` command started beside it, in another terminal,
reads the same ones as the web app; restarts keep the secret key and so the sessions. Production keeps
``LIFEBOAT_*`` environment variables, which override the file. ``LIFEBOAT_INSTANCE_PATH`` moves the folder.

The file is TOML, read as data (never executed as Python, unlike Flask's ``from_pyfile``): a ``lifeboat``
command run in someone else's folder must not run their code.
"""

from __future__ import annotations

import os
import secrets
import stat
import tomllib
from typing import Any

FILENAME = "lifeboat.toml"


def var_path() -> str:
    """The folder of the defaults (``LIFEBOAT_VAR``, else ``./var``), absolute."""
    return os.path.abspath(os.environ.get("LIFEBOAT_VAR") or "var")


def instance_path() -> str:
    """``LIFEBOAT_INSTANCE_PATH``, else ``VAR/instance``, absolute (Flask requires it absolute)."""
    return os.path.abspath(os.environ.get("LIFEBOAT_INSTANCE_PATH") or os.path.join(var_path(), "instance"))


def config_file(folder: str | None = None) -> str:
    return os.path.join(folder or instance_path(), FILENAME)


class InstanceConfigError(RuntimeError):
    """The instance config cannot be used (unreadable, not TOML, or writable by others)."""


def load(path: str) -> dict[str, Any]:
    """The file's upper-case settings; ``{}`` when there is no file.

    A file that other users may write is refused: whoever can write it chooses the secret key and database.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return {}
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InstanceConfigError(f"{path} is writable by other users: refusing to use it (chmod 600 it)")
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise InstanceConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InstanceConfigError(f"{path} is not valid TOML: {exc}") from None
    return {key: value for key, value in document.items() if key.isupper()}


def demo_settings(var: str) -> dict[str, Any]:
    """What ``make run`` generates: a new secret key, and the database and repositories under ``var``."""
    return {
        "SECRET_KEY": secrets.token_hex(32),
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{os.path.join(var, 'lifeboat.db')}",
        "STORAGE_ROOT": os.path.join(var, "repositories"),
        "INVENTORY_FILE_DIRS": [os.path.join(var, "demo-images")],  # the demo VMs' disks: `inventory sync` works
        "DEMO": True,
    }


def write_once(path: str, settings: dict[str, Any]) -> bool:
    """Create ``path`` (mode 0600) with ``settings``; False, leaving it untouched, when it exists already."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    lines = [
        "# Written once by `make run` (lifeboat demo init). Every `lifeboat` command and the web app read it;",
        "# LIFEBOAT_* environment variables override it. Delete it to generate new settings (and a new key).",
    ]
    lines += [f"{key} = {_toml_value(value)}" for key, value in settings.items()]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return True


def update(path: str, settings: dict[str, Any]) -> None:
    """Set ``settings`` in the existing file at ``path`` (what ``make run`` decides anew each start, such as
    the demo cluster's instant-restore source), keeping every other line; replaced atomically, mode 0600."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle]
    kept = [line for line in lines if line.split("=", 1)[0].strip() not in settings]
    kept += [f"{key} = {_toml_value(value)}" for key, value in settings.items()]
    partial = f"{path}.tmp"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(kept) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    text = str(value)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in escaped):
        raise ValueError(f"control characters cannot go into the instance config: {text!r}")
    return f'"{escaped}"'
