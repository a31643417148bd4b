"""/metrics against real rows, a real Redis and a real backup job: the series exist and move."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from portal import clock
from portal.app import create_app
from portal.extensions import db
from portal.models import BackupPoint
from portal.services import heartbeat, runs
from tests.fixtures.jobs import run_jobs

SERIES = (
    "lifeboat_up", "lifeboat_backup_runs", "lifeboat_restores", "lifeboat_restores_queued",
    "lifeboat_backup_duration_seconds", "lifeboat_restore_duration_seconds", "lifeboat_backup_read_bytes",
    "lifeboat_restore_written_bytes", "lifeboat_backup_points", "lifeboat_backup_points_bytes",
    "lifeboat_vm_backup_age_seconds", "lifeboat_vm_rpo_seconds", "lifeboat_vm_within_rpo",
    "lifeboat_vm_damaged_points", "lifeboat_vm_missing_from_inventory",
    "lifeboat_scheduler_heartbeat_age_seconds", "lifeboat_incidents_open",
    "lifeboat_queue_length", "lifeboat_queue_running", "lifeboat_queue_failed", "lifeboat_workers",
    "lifeboat_worker_heartbeat_age_seconds",
)


def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics", headers={"Authorization": "Bearer scrape"})
    assert answer.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


@pytest.fixture
def metrics_client(app, client) -> Any:
    app.config["METRICS_TOKEN"] = "scrape"
    return client


def test_every_series_is_exposed(metrics_client, world, queues) -> None:
    samples = scrape(metrics_client)
    exposed = {name.removesuffix("_total").removesuffix("_count").removesuffix("_sum").removesuffix("_bucket")
               for name in names(samples)}
    assert set(SERIES) - exposed == {"lifeboat_worker_heartbeat_age_seconds"}  # no worker registered yet
    assert value(samples, "lifeboat_up", component="database") == 1
    assert value(samples, "lifeboat_up", component="redis") == 1
    for queue in ("restore-critical", "restore-high", "restore-normal", "restore-low", "backup", "maintenance"):
        assert value(samples, "lifeboat_queue_length", queue=queue) == 0
    assert value(samples, "lifeboat_vm_rpo_seconds", vm="web-1", organisation="acme") == 120 * 60
    assert value(samples, "lifeboat_vm_backup_age_seconds", vm="staging-api", organisation="acme") == math.inf
    assert value(samples, "lifeboat_vm_within_rpo", vm="staging-api", organisation="acme") == 0
    assert value(samples, "lifeboat_restores_queued", priority="critical") == 1  # the world's sample restore
    assert value(samples, "lifeboat_scheduler_heartbeat_age_seconds") == math.inf  # it never ran


def test_a_vm_missing_from_the_inventory_stays_in_the_rpo_series(metrics_client, world, queues) -> None:
    from portal import clock
    from portal.extensions import db

    world["acme_staging"].missing_since = clock.now()
    db.session.commit()
    samples = scrape(metrics_client)
    assert value(samples, "lifeboat_vm_missing_from_inventory", vm="staging-api", organisation="acme") == 1
    assert value(samples, "lifeboat_vm_missing_from_inventory", vm="web-1", organisation="acme") == 0
    assert value(samples, "lifeboat_vm_within_rpo", vm="staging-api", organisation="acme") == 0  # still watched


def test_a_backup_job_moves_the_series(metrics_client, file_vm, queues, world) -> None:
    db.session.execute(db.delete(BackupPoint).where(BackupPoint.vm_id == file_vm.id))  # no backup yet
    db.session.commit()
    before = scrape(metrics_client)
    assert value(before, "lifeboat_backup_runs", state="done") == 0
    assert value(before, "lifeboat_vm_backup_age_seconds", vm="web-1", organisation="acme") == math.inf
    assert value(before, "lifeboat_backup_duration_seconds_count") == 0

    run = runs.request_backup(file_vm, world["operator"])
    queued = scrape(metrics_client)
    assert value(queued, "lifeboat_queue_length", queue="backup") == 1
    assert value(queued, "lifeboat_backup_runs", state="queued") == 1

    run_jobs(queues)
    after = scrape(metrics_client)
    db.session.expire_all()
    assert db.session.get(type(run), run.id).state == "done"
    assert value(after, "lifeboat_queue_length", queue="backup") == 0
    assert value(after, "lifeboat_backup_runs", state="done") == 1
    assert value(after, "lifeboat_backup_runs", state="queued") == 0
    assert value(after, "lifeboat_backup_duration_seconds_count") == 1
    assert value(after, "lifeboat_backup_duration_seconds_bucket", le="+Inf") == 1
    assert value(after, "lifeboat_backup_read_bytes_total") > 0
    assert value(after, "lifeboat_backup_points", state="ok") == 2  # web-1's new one and globex's
    age = value(after, "lifeboat_vm_backup_age_seconds", vm="web-1", organisation="acme")
    assert age is not None and 0 <= age < 120 * 60
    assert value(after, "lifeboat_vm_within_rpo", vm="web-1", organisation="acme") == 1
    assert value(after, "lifeboat_backup_points_bytes", kind="size") >= 24 * 1024 * 1024


def test_damage_workers_and_scheduler_lag(metrics_client, world, queues) -> None:
    from rq import Queue, Worker

    now = clock.now()
    point = world["acme_point"]
    point.state = "distrusted"  # what verify records for a point that needs a damaged chunk
    db.session.commit()
    heartbeat.beat(heartbeat.SCHEDULER, now - timedelta(seconds=90))
    worker = Worker([Queue("backup", connection=queues)], connection=queues, name="metrics-test-worker")
    worker.register_birth()  # a real registration in Redis, as `lifeboat worker` makes one
    try:
        samples = scrape(metrics_client)
    finally:
        worker.register_death()
    assert value(samples, "lifeboat_vm_damaged_points", vm="web-1", organisation="acme") == 1
    assert value(samples, "lifeboat_backup_points", state="distrusted") == 1
    assert value(samples, "lifeboat_vm_within_rpo", vm="web-1", organisation="acme") == 0  # no good point left
    assert value(samples, "lifeboat_workers") == 1
    assert 0 <= value(samples, "lifeboat_worker_heartbeat_age_seconds", worker="metrics-test-worker") < 3600
    assert 90 <= value(samples, "lifeboat_scheduler_heartbeat_age_seconds") < 3600


def test_every_process_gives_the_same_answer(app, metrics_client, world, queues, database_url) -> None:
    """Two apps stand for two gunicorn processes: nothing is counted in memory, so they agree."""
    clock.set_now(clock.now())
    try:
        other = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "METRICS_TOKEN": "scrape",
                            "REDIS_URL": app.config["REDIS_URL"], "STORAGE_ROOT": app.config["STORAGE_ROOT"]})
        runs.request_backup(world["acme_vm"], world["operator"])
        with other.test_client() as second:
            assert scrape(second) == scrape(metrics_client)
        with other.app_context():
            db.engine.dispose()
    finally:
        clock.set_now(None)


def test_redis_down_still_answers_with_the_database_series(app, metrics_client, world) -> None:
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    samples = scrape(metrics_client)
    assert value(samples, "lifeboat_up", component="redis") == 0
    assert value(samples, "lifeboat_up", component="database") == 1
    assert "lifeboat_queue_length" not in names(samples)
    assert value(samples, "lifeboat_vm_rpo_seconds", vm="web-1", organisation="acme") == 120 * 60
