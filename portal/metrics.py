"""Prometheus metrics, read from the database and Redis at scrape time.

No counters live in process memory: gunicorn runs several web processes and workers run elsewhere, so an
in-process counter would answer differently depending on which process a scrape reaches. Every series here
is computed from rows (backup runs, restores, backup points, heartbeats, incidents) and from Redis (queues,
RQ worker registrations) when ``/metrics`` is asked, so every process gives the same answer.

A part that cannot be read (the database or Redis is down) leaves its series out and sets
``lifeboat_up{component=...}`` to 0; a scrape never fails because of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import ColumnElement, case, extract, func, select

from . import clock
from .check import redis_connection
from .extensions import db
from .models import VM, BackupPoint, BackupRun, Incident, Organisation, Policy, Restore
from .models.backups import BAD_STATES
from .models.backups import STATES as POINT_STATES
from .models.incidents import KINDS as INCIDENT_KINDS
from .models.incidents import OPEN
from .models.runs import CANCELLED, DONE, FAILED, QUEUED, RUNNING
from .services import heartbeat
from .services.queue import QUEUES

DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 2 * 3600, 6 * 3600, 24 * 3600)
# Label values always present (0 when no row has them), so alerts and rates never meet a missing series.
RUN_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
RESTORE_KINDS = ("full", "files")
PRIORITIES = ("critical", "high", "normal", "low")


class LifeboatCollector:
    """Collects every ``lifeboat_*`` series when called; needs an app context (the /metrics view has one)."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("lifeboat_up", "Whether a component answered this scrape (1) or not (0).",
                               labels=["component"])
        try:
            families = list(database_metrics(clock.now()))
            up.add_metric(["database"], 1)
        except Exception:  # noqa: BLE001 - a scrape reports the outage instead of failing
            db.session.rollback()
            families = []
            up.add_metric(["database"], 0)
        try:
            families += list(redis_metrics(self.config, clock.now()))
            up.add_metric(["redis"], 1)
        except Exception:  # noqa: BLE001
            up.add_metric(["redis"], 0)
        yield up
        yield from families


def registry_for(config: Any) -> CollectorRegistry:
    """A registry of its own per app (the global one would collect Python process metrics that differ per
    process, and tests build many apps)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LifeboatCollector(config))
    return registry


# -- database --------------------------------------------------------------------------------------------

def _seconds(start: Any, end: Any) -> ColumnElement[Any]:
    """``end - start`` in seconds, in SQL, for SQLite and PostgreSQL."""
    if db.session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return extract("epoch", end - start)


def _counts(query: Any, keys: list[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
    """Rows of (*labels, count) as a dict, with every expected key present."""
    found = {key: 0 for key in keys}
    for *labels, count in db.session.execute(query).all():
        found[tuple(str(label) for label in labels)] = int(count)
    return found


def _histogram(name: str, documentation: str, model: Any, labels: list[str], group: list[Any],
               expected: list[tuple[str, ...]] | None = None) -> Metric:
    """A histogram of finished jobs' run times, counted from the rows in one grouped query."""
    seconds = _seconds(model.started_at, model.finished_at)
    columns = [func.count(), func.coalesce(func.sum(seconds), 0.0),
               *(func.sum(case((seconds <= bound, 1), else_=0)) for bound in DURATION_BUCKETS)]
    query = (select(*group, *columns)
             .where(model.state == DONE, model.started_at.isnot(None), model.finished_at.isnot(None)))
    if group:
        query = query.group_by(*group)
    family = HistogramMetricFamily(name, documentation, labels=labels)
    seen = set()
    for row in db.session.execute(query).all():
        values = list(row)
        keys, count, total, cumulative = values[:len(group)], values[len(group)], values[len(group) + 1], \
            values[len(group) + 2:]
        buckets = [(str(float(bound)), int(n or 0)) for bound, n in zip(DURATION_BUCKETS, cumulative, strict=True)]
        buckets.append(("+Inf", int(count)))
        family.add_metric([str(k) for k in keys], buckets, max(float(total or 0.0), 0.0))
        seen.add(tuple(str(k) for k in keys))
    for key in expected or [()]:
        if key not in seen:
            family.add_metric(list(key), [(str(float(b)), 0) for b in DURATION_BUCKETS] + [("+Inf", 0)], 0.0)
    return family


def database_metrics(now: datetime) -> Iterator[Metric]:
    session = db.session

    backups = GaugeMetricFamily("lifeboat_backup_runs", "Backup runs by state (rows).", labels=["state"])
    for key, count in _counts(select(BackupRun.state, func.count()).group_by(BackupRun.state),
                              [(state,) for state in RUN_STATES]).items():
        backups.add_metric(list(key), count)
    restores = GaugeMetricFamily("lifeboat_restores", "Restores by state and kind (rows).", labels=["state", "kind"])
    for key, count in _counts(select(Restore.state, Restore.kind, func.count()).group_by(Restore.state, Restore.kind),
                              [(state, kind) for state in RUN_STATES for kind in RESTORE_KINDS]).items():
        restores.add_metric(list(key), count)
    waiting = GaugeMetricFamily("lifeboat_restores_queued", "Restores waiting to start, by priority class.",
                                labels=["priority"])
    for key, count in _counts(select(Restore.priority_class, func.count()).where(Restore.state == QUEUED)
                              .group_by(Restore.priority_class), [(p,) for p in PRIORITIES]).items():
        waiting.add_metric(list(key), count)
    yield from (backups, restores, waiting)

    yield _histogram("lifeboat_backup_duration_seconds", "Run time of finished backups.", BackupRun, [], [])
    yield _histogram("lifeboat_restore_duration_seconds", "Run time of finished restores.", Restore, ["kind"],
                     [Restore.kind], [(kind,) for kind in RESTORE_KINDS])

    backup_bytes = session.scalar(select(func.coalesce(func.sum(BackupRun.bytes_done), 0))
                                  .where(BackupRun.state == DONE))
    yield CounterMetricFamily("lifeboat_backup_read_bytes", "Bytes read by finished backups.", int(backup_bytes or 0))
    restored = CounterMetricFamily("lifeboat_restore_written_bytes", "Bytes written by finished restores.",
                                   labels=["kind"])
    for key, total in _counts(select(Restore.kind, func.coalesce(func.sum(Restore.bytes_done), 0))
                              .where(Restore.state == DONE).group_by(Restore.kind),
                              [(kind,) for kind in RESTORE_KINDS]).items():
        restored.add_metric(list(key), total)
    yield restored

    points = GaugeMetricFamily("lifeboat_backup_points", "Backup points in the catalog by state "
                               "(damaged and distrusted: verification found damage).", labels=["state"])
    stored = GaugeMetricFamily("lifeboat_backup_points_bytes", "Bytes of the catalog's backup points: 'size' is "
                               "the disks' size, 'new' what each backup added to its repository.", labels=["kind"])
    size_total = new_total = 0
    by_state = {state: 0 for state in POINT_STATES}
    for state, count, size, new in session.execute(
            select(BackupPoint.state, func.count(), func.coalesce(func.sum(BackupPoint.size_bytes), 0),
                   func.coalesce(func.sum(BackupPoint.new_bytes), 0))
            .where(BackupPoint.deletion_due_at.is_(None)).group_by(BackupPoint.state)).all():
        by_state[state] = int(count)
        size_total, new_total = size_total + int(size or 0), new_total + int(new or 0)
    for state, count in by_state.items():
        points.add_metric([state], count)
    stored.add_metric(["size"], size_total)
    stored.add_metric(["new"], new_total)
    yield from (points, stored)

    yield from vm_metrics(now)

    scheduler_age = heartbeat.age_seconds(heartbeat.SCHEDULER, now)
    yield GaugeMetricFamily("lifeboat_scheduler_heartbeat_age_seconds",
                            "Seconds since the scheduler's last tick (+Inf: it never ran).",
                            math.inf if scheduler_age is None else scheduler_age)

    incidents = GaugeMetricFamily("lifeboat_incidents_open", "Open incidents and maintenance windows (not yet "
                                  "ended).", labels=["kind"])
    for key, count in _counts(
            select(Incident.kind, func.count()).where(Incident.state == OPEN, Incident.starts_at <= now,
                                                      (Incident.ends_at.is_(None)) | (Incident.ends_at > now))
            .group_by(Incident.kind), [(kind,) for kind in INCIDENT_KINDS]).items():
        incidents.add_metric(list(key), count)
    yield incidents


def vm_metrics(now: datetime) -> Iterator[Metric]:
    """Per VM (labels ``vm``, ``organisation``): newest good backup's age, the RPO, whether it is within it,
    and damaged points. Three grouped queries whatever the number of VMs."""
    labels = ["vm", "organisation"]
    age = GaugeMetricFamily("lifeboat_vm_backup_age_seconds", "Age of the VM's newest good backup (+Inf: none).",
                            labels=labels)
    rpo = GaugeMetricFamily("lifeboat_vm_rpo_seconds", "The VM's RPO (VMs excluded from backup are left out).",
                            labels=labels)
    within = GaugeMetricFamily("lifeboat_vm_within_rpo", "1 when the VM's newest good backup is within its RPO.",
                               labels=labels)
    damaged = GaugeMetricFamily("lifeboat_vm_damaged_points", "The VM's backup points that verification found "
                                "damaged or distrusted.", labels=labels)
    missing = GaugeMetricFamily("lifeboat_vm_missing_from_inventory", "1 when the inventory feed no longer lists the "
                                "VM (it stays, and stays monitored, until an operator decides).", labels=labels)
    rows = db.session.execute(
        select(VM.id, VM.name, Organisation.slug, Policy.rpo_minutes, Policy.excluded, VM.missing_since)
        .join(Organisation, VM.organisation_id == Organisation.id).outerjoin(Policy, Policy.vm_id == VM.id)
        .where(VM.deletion_due_at.is_(None))).all()
    good = dict(db.session.execute(
        select(BackupPoint.vm_id, func.max(BackupPoint.created_at))
        .where(BackupPoint.good())
        .group_by(BackupPoint.vm_id)).all())
    bad = dict(db.session.execute(
        select(BackupPoint.vm_id, func.count()).where(BackupPoint.state.in_(BAD_STATES))
        .group_by(BackupPoint.vm_id)).all())
    for vm_id, name, org, rpo_minutes, excluded, missing_since in rows:
        key = [name, org]
        missing.add_metric(key, 1 if missing_since is not None else 0)
        last = good.get(vm_id)
        seconds = max((now - last).total_seconds(), 0.0) if last else math.inf
        age.add_metric(key, seconds)
        damaged.add_metric(key, bad.get(vm_id, 0))
        if rpo_minutes and not excluded:
            rpo.add_metric(key, rpo_minutes * 60)
            within.add_metric(key, 1 if seconds <= rpo_minutes * 60 else 0)
    yield from (age, rpo, within, damaged, missing)


# -- Redis -----------------------------------------------------------------------------------------------

def redis_metrics(config: Any, now: datetime) -> Iterator[Metric]:
    """Queue lengths per queue and the RQ workers' heartbeats (raises when Redis is unreachable)."""
    from rq import Queue
    from rq.registry import FailedJobRegistry, StartedJobRegistry

    connection = redis_connection(config)
    try:
        length = GaugeMetricFamily("lifeboat_queue_length", "Jobs waiting in each queue (strict priority order: "
                                   "restore-usable first).", labels=["queue"])
        running = GaugeMetricFamily("lifeboat_queue_running", "Jobs a worker is running, per queue.",
                                    labels=["queue"])
        failed = GaugeMetricFamily("lifeboat_queue_failed", "Jobs in each queue's failed registry.",
                                   labels=["queue"])
        for name in QUEUES:
            queue = Queue(name, connection=connection)
            length.add_metric([name], queue.count)
            running.add_metric([name], StartedJobRegistry(name, connection=connection).count)
            failed.add_metric([name], FailedJobRegistry(name, connection=connection).count)
        found = heartbeat.workers(connection, now)
        workers = GaugeMetricFamily("lifeboat_workers", "RQ workers registered in Redis.", len(found))
        ages = GaugeMetricFamily("lifeboat_worker_heartbeat_age_seconds", "Seconds since each worker's last "
                                 "heartbeat (an idle worker beats about every 405 s).", labels=["worker"])
        for worker in found:
            ages.add_metric([worker.name], worker.age_seconds)
        families: list[Metric] = [length, running, failed, workers, ages]
    finally:
        connection.close()
    yield from families
