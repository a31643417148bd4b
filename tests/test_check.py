"""`lifeboat check` as Nagios/Icinga run it: a real subprocess against the test database and a real Redis,
configured through LIFEBOAT_* variables; exit codes 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from portal import clock
from portal.extensions import db
from portal.services import heartbeat
from tests.conftest import run_lifeboat

PLUGIN_LINE = re.compile(r"^LIFEBOAT (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| [^\n]+)?$")


@pytest.fixture
def env(app, database_url, redis_url, queues, tmp_path: Path) -> dict[str, str]:
    storage = tmp_path / "repositories"
    storage.mkdir()
    return {"LIFEBOAT_DATABASE_URL": database_url, "LIFEBOAT_REDIS_URL": redis_url,
            "LIFEBOAT_STORAGE_ROOT": str(storage), "LIFEBOAT_SECRET_KEY": "check-tests"}


@pytest.fixture
def healthy(env, world, queues) -> dict[str, str]:
    """A scheduler that just ticked (the real command) and a worker registered in Redis."""
    from rq import Queue, Worker

    ticked = run_lifeboat("scheduler", "--once", env=env)
    assert ticked.code == 0, ticked.stderr
    worker = Worker([Queue("backup", connection=queues)], connection=queues, name="check-test-worker")
    worker.register_birth()  # the registration `lifeboat worker` makes; RQ expires it when the worker dies
    yield env
    worker.register_death()


def check(env: dict[str, str], *args: str):
    result = run_lifeboat("check", *args, env=env)
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and PLUGIN_LINE.match(lines[0]), result.stdout + result.stderr
    assert result.stderr == ""
    return result


def test_a_healthy_setup_is_ok(healthy) -> None:
    result = check(healthy, "--storage-warning", "0", "--storage-critical", "0")
    assert result.code == 0, result.stdout
    line = result.stdout
    assert line.startswith("LIFEBOAT OK - ") and "3 VMs within RPO" in line and "1 worker(s) alive" in line
    for perf in ("database_up=1", "redis_up=1", "vms_late=0", "workers=1", "scheduler_age=", "storage_free="):
        assert perf in line


def test_a_vm_beyond_its_rpo_warns_then_goes_critical(healthy, world) -> None:
    point = world["acme_point"]  # web-1, RPO 120 minutes
    point.created_at = clock.now() - timedelta(hours=3)
    db.session.commit()
    late = check(healthy, "--only", "rpo")
    assert late.code == 1 and late.stdout.startswith("LIFEBOAT WARNING - 1 of 3 VMs beyond RPO")
    assert "acme/web-1" in late.stdout and "vms_late=1" in late.stdout
    point.created_at = clock.now() - timedelta(hours=5)  # beyond twice the RPO
    db.session.commit()
    assert check(healthy, "--only", "rpo").code == 2
    assert check(healthy, "--only", "rpo", "--rpo-critical", "3").code == 1  # thresholds are options too
    assert check(healthy, "--only", "rpo", "--rpo-warning", "3", "--rpo-critical", "4").code == 0
    everything = check(healthy, "--storage-warning", "0", "--storage-critical", "0")
    assert everything.code == 2 and everything.stdout.startswith("LIFEBOAT CRITICAL - 1 of 3 VMs beyond RPO")


def test_redis_unreachable_is_critical_and_the_workers_unknown(env, world) -> None:
    result = check({**env, "LIFEBOAT_REDIS_URL": "redis://127.0.0.1:1/0"}, "--skip", "storage")
    assert result.code == 2
    assert result.stdout.startswith("LIFEBOAT CRITICAL - Redis unreachable")
    assert "workers unknown (redis unreachable)" in result.stdout and "redis_up=0" in result.stdout


def test_database_unreachable_is_critical(env) -> None:
    dead = {**env, "LIFEBOAT_DATABASE_URL": "postgresql+psycopg://lifeboat@127.0.0.1:1/lifeboat"}
    result = check(dead, "--only", "database,rpo")
    assert result.code == 2 and result.stdout.startswith("LIFEBOAT CRITICAL - database unreachable")
    assert "rpo unknown (database unreachable)" in result.stdout
    only_rpo = check(dead, "--only", "rpo")  # the probe it depends on is reported even when not chosen
    assert only_rpo.code == 2 and "database unreachable" in only_rpo.stdout


def test_no_worker_and_no_scheduler_are_critical(env, world) -> None:
    result = check(env, "--only", "workers,scheduler")
    assert result.code == 2
    assert "0 worker(s) alive" in result.stdout and "scheduler has never run" in result.stdout


def test_a_late_scheduler_warns(env, world) -> None:
    heartbeat.beat(heartbeat.SCHEDULER, clock.now() - timedelta(seconds=400))
    assert check(env, "--only", "scheduler").code == 1
    assert check(env, "--only", "scheduler", "--scheduler-critical", "350").code == 2
    assert check({**env, "LIFEBOAT_CHECK_SCHEDULER_WARNING": "600"}, "--only", "scheduler").code == 0


def test_storage_free_space_and_a_missing_root(env, tmp_path) -> None:
    assert check(env, "--only", "storage", "--storage-warning", "0", "--storage-critical", "0").code == 0
    assert check(env, "--only", "storage", "--storage-warning", "101", "--storage-critical", "0").code == 1
    assert check(env, "--only", "storage", "--storage-critical", "101").code == 2
    missing = check({**env, "LIFEBOAT_STORAGE_ROOT": str(tmp_path / "nowhere")}, "--only", "storage")
    assert missing.code == 2 and "is not a directory" in missing.stdout


@pytest.mark.parametrize("args", [("--only", "bogus"), ("--skip", "rpo,nope"), ("--no-such-option",),
                                  ("--rpo-warning", "lots")])
def test_bad_options_are_unknown_not_critical(env, args) -> None:
    result = check(env, *args)
    assert result.code == 3 and result.stdout.startswith("LIFEBOAT UNKNOWN - ")


def test_configuration_it_cannot_load_is_unknown(env) -> None:
    result = check({**env, "LIFEBOAT_CHECK_RPO_WARNING": "\"often\""}, "--only", "rpo")
    assert result.code == 3 and "cannot load the configuration" in result.stdout


def test_a_vm_missing_from_the_inventory_is_still_watched(healthy, world) -> None:
    """A feed that drops a VM must not drop it from monitoring too: its backups stop, and that must show."""
    vm, point = world["acme_vm"], world["acme_point"]
    vm.missing_since = clock.now() - timedelta(hours=4)
    point.created_at = clock.now() - timedelta(hours=3)  # web-1's RPO is 120 minutes
    db.session.commit()
    late = check(healthy, "--only", "rpo")
    assert late.code == 1 and late.stdout.startswith("LIFEBOAT WARNING - 1 of 3 VMs beyond RPO")
    assert "acme/web-1 (not in the feed)" in late.stdout
