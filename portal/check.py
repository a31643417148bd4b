"""Lifeboat's health in the Nagios/Icinga plugin format, and the probes behind it that ``/readyz`` shares
(the ``lifeboat check`` command itself is ``check_cli.py``).

One status line on stdout, ``LIFEBOAT <STATE> - <summary> | <perfdata>``, and the exit code monitoring
systems read: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. The worst check decides. A check that cannot run
because what it needs is down (the RPO check without a database) is UNKNOWN, and the probe that found the
outage is CRITICAL, so the line names the cause, not the consequences. Bad options and configuration the
portal cannot load are UNKNOWN too (exit 3, never Click's usage code 2, which would read as CRITICAL).

Checks: ``database`` and ``redis`` reachable; ``rpo`` (the VM furthest behind its RPO, as a factor of it:
WARNING beyond ``CHECK_RPO_WARNING``, CRITICAL beyond ``CHECK_RPO_CRITICAL``); ``workers`` (RQ worker
registrations with a recent heartbeat); ``scheduler`` (age of its heartbeat row); ``storage`` (free space
under the storage root, percent).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.backend import is_object_root, open_store
from storage.errors import StorageError

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
SEVERITY = (CRITICAL, UNKNOWN, WARNING, OK)  # worst first
CHECKS = ("database", "redis", "rpo", "workers", "scheduler", "storage")
PROBE_TIMEOUT = 3.0  # seconds for a Redis or database probe: a hanging server is as bad as a dead one


@dataclass
class Result:
    check: str
    status: int
    summary: str
    perfdata: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Thresholds:
    rpo_warning: float = 1.0  # factor of the RPO
    rpo_critical: float = 2.0
    workers_warning: int = 1  # fewer live workers than this
    workers_critical: int = 1
    worker_stale: float = 480.0  # seconds without a heartbeat after which a registered worker counts as dead
    scheduler_warning: float = 300.0  # seconds since its last tick
    scheduler_critical: float = 900.0
    storage_warning: float = 15.0  # percent free
    storage_critical: float = 5.0

    @classmethod
    def from_config(cls, config: Any) -> Thresholds:
        defaults = cls()
        values = {}
        for name in cls.__dataclass_fields__:
            raw = config.get(f"CHECK_{name.upper()}", getattr(defaults, name))
            values[name] = type(getattr(defaults, name))(raw)
        return cls(**values)


# -- probes (shared with /readyz) ------------------------------------------------------------------------

def probe_database() -> str | None:
    """None when ``SELECT 1`` answers, else why not (one line)."""
    from sqlalchemy import text

    from .extensions import db

    try:
        db.session.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"; the reason is reported
        db.session.rollback()
        return one_line(exc)


def redis_connection(config: Any, timeout: float = PROBE_TIMEOUT) -> Any:
    """A Redis client with short timeouts (raises RuntimeError when no Redis is configured)."""
    import redis

    from .services.queue import redis_url

    return redis.Redis.from_url(redis_url(config), socket_connect_timeout=timeout, socket_timeout=timeout)


def probe_redis(config: Any) -> str | None:
    try:
        connection = redis_connection(config)
        try:
            connection.ping()
        finally:
            connection.close()
        return None
    except Exception as exc:  # noqa: BLE001
        return one_line(exc)


def probe_storage(config: Any) -> str | None:
    root = str(config.get("STORAGE_ROOT") or "")
    if is_object_root(root):
        try:
            open_store(root)
        except StorageError as exc:
            return str(exc)
        return None
    if not root or not os.path.isdir(root):
        return f"storage root {root!r} is not a directory"
    if not os.access(root, os.W_OK | os.X_OK):
        return f"storage root {root!r} is not writable"
    return None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)[:300]


# -- checks ----------------------------------------------------------------------------------------------

def check_database(config: Any, limits: Thresholds) -> Result:
    error = probe_database()
    if error:
        return Result("database", CRITICAL, f"database unreachable ({error})", ["database_up=0;;;0;1"])
    return Result("database", OK, "database reachable", ["database_up=1;;;0;1"])


def check_redis(config: Any, limits: Thresholds) -> Result:
    error = probe_redis(config)
    if error:
        return Result("redis", CRITICAL, f"Redis unreachable ({error})", ["redis_up=0;;;0;1"])
    return Result("redis", OK, "Redis reachable", ["redis_up=1;;;0;1"])


def rpo_ratios(now: datetime) -> tuple[list[tuple[str, float]], int]:
    """(VM label, age of its newest good backup / its RPO) for every VM under a policy, worst first, and the
    number of VMs considered. A VM never backed up counts from when it was added.

    VMs the inventory feed no longer lists are included (labelled "not in the feed"): a feed that drops VMs must
    not also drop them from monitoring, or their backups could stop unnoticed."""
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    from .extensions import db
    from .models import VM
    from .services.status import statuses

    vms = list(db.session.scalars(
        select(VM).options(joinedload(VM.policy), joinedload(VM.organisation))
        .where(VM.deletion_due_at.is_(None))).unique())
    state = statuses(vms)
    ratios = []
    for vm in vms:
        if vm.policy is None or vm.policy.excluded or not vm.policy.rpo_minutes:
            continue
        since = state[vm.id].last_good or vm.created_at
        missing = " (not in the feed)" if vm.missing_since is not None else ""
        ratios.append((f"{vm.organisation.slug}/{vm.name}{missing}",
                       max((now - since).total_seconds(), 0.0) / (vm.policy.rpo_minutes * 60)))
    ratios.sort(key=lambda item: -item[1])
    return ratios, len(ratios)


def check_rpo(config: Any, limits: Thresholds) -> Result:
    from . import clock

    ratios, total = rpo_ratios(clock.now())
    late = [label for label, ratio in ratios if ratio > limits.rpo_warning]
    critical = [label for label, ratio in ratios if ratio > limits.rpo_critical]
    worst = ratios[0][1] if ratios else 0.0
    perf = [f"vms_late={len(late)};1;;0;{total}", f"vms_critical={len(critical)};;1;0;{total}",
            f"worst_rpo_ratio={worst:.2f};{limits.rpo_warning:g};{limits.rpo_critical:g};0;"]
    if not late:
        return Result("rpo", OK, f"{total} VMs within RPO", perf)
    names = ", ".join(late[:3]) + (", ..." if len(late) > 3 else "")
    status = CRITICAL if critical else WARNING
    return Result("rpo", status, f"{len(late)} of {total} VMs beyond RPO (worst {worst:.1f}x: {names})", perf)


def check_workers(config: Any, limits: Thresholds) -> Result:
    from .services.heartbeat import workers

    try:
        connection = redis_connection(config)
        try:
            found = workers(connection)
        finally:
            connection.close()
    except Exception as exc:  # noqa: BLE001
        return Result("workers", UNKNOWN, f"workers unknown ({one_line(exc)})")
    alive = [w for w in found if w.age_seconds <= limits.worker_stale]
    oldest = max((w.age_seconds for w in alive), default=0.0)
    perf = [f"workers={len(alive)};{limits.workers_warning}:;{limits.workers_critical}:;0;",
            f"worker_heartbeat_age={oldest:.0f}s;;;0;"]
    summary = f"{len(alive)} worker(s) alive" + (f", {len(found) - len(alive)} stale" if len(found) > len(alive)
                                                  else "")
    if len(alive) < limits.workers_critical:
        return Result("workers", CRITICAL, summary, perf)
    if len(alive) < limits.workers_warning:
        return Result("workers", WARNING, summary, perf)
    return Result("workers", OK, summary, perf)


def check_scheduler(config: Any, limits: Thresholds) -> Result:
    from .services.heartbeat import SCHEDULER, age_seconds

    age = age_seconds(SCHEDULER)
    if age is None:
        return Result("scheduler", CRITICAL, "scheduler has never run (no heartbeat)",
                      [f"scheduler_age=U;{limits.scheduler_warning:g};{limits.scheduler_critical:g};0;"])
    perf = [f"scheduler_age={age:.0f}s;{limits.scheduler_warning:g};{limits.scheduler_critical:g};0;"]
    summary = f"scheduler last ticked {age:.0f} s ago"
    if age > limits.scheduler_critical:
        return Result("scheduler", CRITICAL, summary, perf)
    if age > limits.scheduler_warning:
        return Result("scheduler", WARNING, summary, perf)
    return Result("scheduler", OK, summary, perf)


def check_storage(config: Any, limits: Thresholds) -> Result:
    error = probe_storage(config)
    if error:
        return Result("storage", CRITICAL, error)
    store = open_store(str(config["STORAGE_ROOT"]))
    usage = store.usage()
    if not usage.total:  # an S3 bucket has no capacity; a Ceph cluster without a running mgr reports none
        why = "an S3 bucket has none" if store.kind == "s3" else "the cluster reports none: is its ceph-mgr running?"
        return Result("storage", OK, f"the storage root reports no capacity ({why})")
    free = 100.0 * usage.free / usage.total if usage.total else 0.0
    perf = [f"storage_free={free:.1f}%;{limits.storage_warning:g}:;{limits.storage_critical:g}:;0;100",
            f"storage_free_bytes={usage.free}B;;;0;{usage.total}"]
    summary = f"{free:.1f}% free on the storage root ({usage.free / 2**30:.1f} GiB)"
    if free < limits.storage_critical:
        return Result("storage", CRITICAL, summary, perf)
    if free < limits.storage_warning:
        return Result("storage", WARNING, summary, perf)
    return Result("storage", OK, summary, perf)


RUNNERS: dict[str, Callable[[Any, Thresholds], Result]] = {
    "database": check_database, "redis": check_redis, "rpo": check_rpo, "workers": check_workers,
    "scheduler": check_scheduler, "storage": check_storage,
}
NEEDS = {"rpo": "database", "scheduler": "database", "workers": "redis"}


def run_checks(config: Any, selected: list[str], limits: Thresholds) -> list[Result]:
    """Run the selected checks in order (in an app context); a check whose dependency is down is UNKNOWN."""
    results: dict[str, Result] = {}
    probes = {"database": check_database, "redis": check_redis}
    for name in selected:
        needed = NEEDS.get(name)
        if needed:
            if needed not in results:
                results[needed] = probes[needed](config, limits)
            if results[needed].status != OK:
                results[name] = Result(name, UNKNOWN, f"{name} unknown ({needed} unreachable)")
                continue
        if name not in results:
            try:
                results[name] = RUNNERS[name](config, limits)
            except Exception as exc:  # noqa: BLE001 - a plugin answers UNKNOWN, never a traceback
                results[name] = Result(name, UNKNOWN, f"{name} check failed ({one_line(exc)})")
    return [results[name] for name in results if name in selected or results[name].status != OK]


def status_line(results: list[Result]) -> tuple[int, str]:
    """The exit code and the plugin's line: the worst state decides (CRITICAL, then UNKNOWN: not seeing is
    worse than a warning, then WARNING), problems first in the text, then the OK checks."""
    ordered = sorted(results, key=lambda r: SEVERITY.index(r.status))
    worst = ordered[0].status if ordered else UNKNOWN
    summary = "; ".join(r.summary for r in ordered) or "no checks selected"
    perf = " ".join(p for r in results for p in r.perfdata)
    return worst, f"LIFEBOAT {NAMES[worst]} - {summary}" + (f" | {perf}" if perf else "")
