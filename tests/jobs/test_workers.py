"""Forked workers: real `lifeboat worker` processes (RQ forks a work horse per job) against the test database
and Redis. Two VMs restore at once on two workers; two restores of one VM take turns; a work horse killed in
the middle of a restore is re-queued by the reconciler and the retry resumes from the partial output.

Waits are for states, never for durations: restores are slowed with the operator's bandwidth limit
(RESTORE_RATE_LIMIT_MIB) so that "in the middle" lasts long enough to be seen on any machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from portal import clock
from portal.extensions import db
from portal.models import Restore
from portal.services import runs, schedule
from tests.conftest import LIFEBOAT

from .helpers import make_point_for
from .test_jobs import backed_up

MiB = 1024 * 1024


@pytest.fixture
def random_vm(file_vm: Any, tmp_path: Path) -> tuple[Any, bytes]:
    """web-1 on a 32 MiB image of random bytes: every chunk is data, so a rate-limited restore takes a while."""
    image = tmp_path / "random.img"
    data = os.urandom(32 * MiB)
    image.write_bytes(data)
    file_vm.disks[0].source = f"file:{image}"
    db.session.commit()
    return file_vm, data


@contextmanager
def workers(app: Any, database_url: str, redis_url: str, count: int, **config: Any) -> Iterator[subprocess.Popen]:
    """`lifeboat worker -n COUNT` with the test app's database, storage and Redis; stopped at the end."""
    env = {**os.environ, "LIFEBOAT_DATABASE_URL": database_url, "LIFEBOAT_REDIS_URL": redis_url,
           "LIFEBOAT_STORAGE_ROOT": app.config["STORAGE_ROOT"], "LIFEBOAT_SECRET_KEY": "worker-test",
           **{f"LIFEBOAT_{key}": str(value) for key, value in config.items()}}
    log = open(Path(app.config["STORAGE_ROOT"]).parent / "workers.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([LIFEBOAT, "worker", "-n", str(count)], env=env, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:  # the test killed them already
            proc.wait()
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.05)


def fresh(restore_id: int) -> Restore:
    """The row as the workers left it; a failed restore ends the test at once, with the worker's error."""
    db.session.expire_all()
    row = db.session.get(Restore, restore_id)
    assert row is not None
    assert row.state != "failed", row.error
    return row


def waiting(restore_id: int) -> bool:
    return fresh(restore_id).phase == "waiting for the VM"


def test_two_vms_restore_at_once_and_one_vm_takes_turns(file_vm, queues, world, app, database_url,
                                                        redis_url) -> None:
    point = backed_up(file_vm, queues, world)
    other = world["globex_vm"]
    other.disks[0].source = file_vm.disks[0].source  # a file disk like web-1's (the world's is on Ceph)
    other_point = make_point_for(other, point)
    lock_a = queues.lock(f"lifeboat:vm:{file_vm.id}", timeout=120)
    lock_b = queues.lock(f"lifeboat:vm:{other.id}", timeout=120)
    assert lock_a.acquire(blocking=False) and lock_b.acquire(blocking=False)  # hold both VMs

    a1 = runs.request_restore(world["acme_admin"], file_vm, point, "full")
    b1 = runs.request_restore(world["globex_admin"], other, other_point, "full")
    with workers(app, database_url, redis_url, 2):
        # Both workers took one restore each and both wait for their VM: two jobs in progress at once.
        wait_until(lambda: waiting(a1.id) and waiting(b1.id), "both restores waiting for their VM")
        lock_b.release()
        wait_until(lambda: fresh(b1.id).state == "done", "the other VM's restore to finish")
        # ... while the first VM is still held: nothing global serialises different VMs.
        assert fresh(a1.id).state == "running" and waiting(a1.id)

        a2 = runs.request_restore(world["acme_admin"], file_vm, point, "full")
        wait_until(lambda: waiting(a2.id), "the second restore of the same VM waiting")
        lock_a.release()
        wait_until(lambda: fresh(a1.id).state == "done" and fresh(a2.id).state == "done", "both restores of web-1")

    source = Path(file_vm.disks[0].source[len("file:"):]).read_bytes()
    for row in (fresh(a1.id), fresh(a2.id), fresh(b1.id)):
        assert Path(row.output_path).read_bytes() == source, row.id


def test_one_vm_never_restores_twice_at_the_same_time(random_vm, queues, world, app, database_url,
                                                      redis_url) -> None:
    vm, data = random_vm
    point = backed_up(vm, queues, world)
    a1 = runs.request_restore(world["acme_admin"], vm, point, "full")
    a2 = runs.request_restore(world["acme_admin"], vm, point, "full")
    both_running_mid_restore = 0
    seen_one_mid_other_waiting = 0
    with workers(app, database_url, redis_url, 2, RESTORE_RATE_LIMIT_MIB=16):
        while {fresh(a1.id).state, fresh(a2.id).state} != {"done"}:
            rows = [fresh(a1.id), fresh(a2.id)]
            mid = [r for r in rows if r.phase == "restore" and 0 < r.bytes_done < r.bytes_total]
            both_running_mid_restore += len(mid) == 2
            seen_one_mid_other_waiting += len(mid) == 1 and any(r.phase == "waiting for the VM" for r in rows)
            time.sleep(0.05)
    assert both_running_mid_restore == 0
    assert seen_one_mid_other_waiting > 0  # the two workers did hold both jobs at once, one of them waiting
    for row in (fresh(a1.id), fresh(a2.id)):
        assert Path(row.output_path).read_bytes() == data


def horse_of(worker_pid: int) -> int | None:
    """The work horse RQ forked for the current job: the worker's child process."""
    found = subprocess.run(["pgrep", "-P", str(worker_pid)], capture_output=True, text=True).stdout.split()
    return int(found[0]) if found else None


def test_a_restore_whose_worker_died_is_requeued_and_resumes(random_vm, queues, world, app, database_url,
                                                            redis_url) -> None:
    vm, data = random_vm
    point = backed_up(vm, queues, world)
    restore = runs.request_restore(world["acme_admin"], vm, point, "full")
    # Slow, a short-lived lock (the dead horse's expires soon), and the engine records every finished chunk.
    config = {"RESTORE_RATE_LIMIT_MIB": 4, "VM_LOCK_SECONDS": 3, "RESTORE_STATE_EVERY": 1}
    with workers(app, database_url, redis_url, 1, **config) as proc:
        wait_until(lambda: fresh(restore.id).bytes_done >= 12 * MiB, "the restore to be well under way")
        horse = horse_of(proc.pid)
        assert horse is not None
        os.kill(horse, signal.SIGKILL)  # the OOM killer, a crash: the job never reports back
        wait_until(lambda: queues.exists(f"rq:job:{restore.job_id}") and _rq_status(queues, restore.job_id)
                   == "failed", "RQ to notice the dead work horse")
        row = fresh(restore.id)
        assert row.state == "running" and row.attempts == 1  # the row still says what it was doing

        result = schedule.TickResult()
        schedule.reconcile(result)
        assert result.requeued == [restore.job_id]
        wait_until(lambda: fresh(restore.id).state in ("done", "failed"), "the retried restore")
    row = fresh(restore.id)
    assert row.state == "done", row.error
    assert row.attempts == 2
    assert row.report["resumed"] is True and row.report["chunks_skipped"] >= 2  # it went on, not over
    assert Path(row.output_path).read_bytes() == data


def _rq_status(connection: Any, job_id: str) -> str:
    from rq.job import Job

    status = Job.fetch(job_id, connection=connection).get_status()
    return str(getattr(status, "value", status))


def test_a_restore_whose_whole_worker_died_is_requeued_once_its_heartbeat_expires(
        random_vm, queues, world, app, database_url, redis_url) -> None:
    vm, data = random_vm
    point = backed_up(vm, queues, world)
    restore = runs.request_restore(world["acme_admin"], vm, point, "full")
    config = {"RESTORE_RATE_LIMIT_MIB": 4, "VM_LOCK_SECONDS": 3, "RESTORE_STATE_EVERY": 1}
    with workers(app, database_url, redis_url, 1, **config) as proc:
        wait_until(lambda: fresh(restore.id).bytes_done >= 12 * MiB, "the restore to be under way")
        horse = horse_of(proc.pid)  # RQ puts the work horse in a process group of its own
        assert horse is not None
        os.killpg(proc.pid, signal.SIGKILL)  # the machine is gone: worker and work horse alike
        os.kill(horse, signal.SIGKILL)
        proc.wait()
    assert _rq_status(queues, restore.job_id) == "started"  # Redis still believes it runs
    result = schedule.TickResult()
    schedule.reconcile(result)  # now: its heartbeat has not expired yet, so it is left alone
    assert result.requeued == [] and fresh(restore.id).state == "running"
    later = clock.now() + timedelta(minutes=3)  # the scheduler's tick once the heartbeat (about 90 s) expired
    schedule.reconcile(result, later)
    assert result.requeued == [restore.job_id]
    with workers(app, database_url, redis_url, 1, **config):  # a worker comes back
        wait_until(lambda: fresh(restore.id).state == "done", "the retried restore")
    row = fresh(restore.id)
    assert row.attempts == 2 and row.report["resumed"] is True and row.report["chunks_skipped"] >= 1
    assert Path(row.output_path).read_bytes() == data


def in_group(pgid: int) -> list[int]:
    """Live processes of one process group (zombies are gone for this purpose)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("delay", [0.0, 0.3], ids=["while-starting", "started"])
def test_sigterm_to_the_workers_parent_stops_every_worker(app, database_url, redis_url, delay) -> None:
    """A supervisor that stops at once sends SIGTERM while `lifeboat worker -n 3` is still starting its
    processes: none of them may be left behind (the parent's handler is in place before the first starts)."""
    with workers(app, database_url, redis_url, 3) as proc:
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)  # the parent only, as a supervisor's stop does
        proc.wait(timeout=60)
        wait_until(lambda: in_group(proc.pid) == [], "every worker process gone", timeout=60)


def test_a_killed_workers_parent_takes_its_workers_along(app, database_url, redis_url) -> None:
    with workers(app, database_url, redis_url, 2) as proc:
        wait_until(lambda: len(in_group(proc.pid)) >= 3, "two workers started")
        proc.kill()  # SIGKILL: no handler runs; the kernel's parent-death signal must stop the workers
        proc.wait()
        wait_until(lambda: in_group(proc.pid) == [], "every worker process gone", timeout=60)


def test_an_idle_worker_stops_at_once_on_sigterm(app, database_url, redis_url) -> None:
    """RQ's command listener polled every 60 s, and redis-py 8 waits for it when the worker stops: a SIGTERM to
    an idle worker took up to a minute. The bound is generous; the failure it guards against is that minute."""
    import redis as redis_client
    from rq import Worker

    connection = redis_client.Redis.from_url(redis_url)
    with workers(app, database_url, redis_url, 1) as proc:
        wait_until(lambda: Worker.count(connection=connection) >= 1, "the worker registered")
        time.sleep(1.0)  # well inside the listener's first poll
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    connection.close()
