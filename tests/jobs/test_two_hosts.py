"""Workers on two "hosts": two `lifeboat worker` processes with folders of their own (working folder, HOME, TMPDIR,
LIFEBOAT_VAR, restore outputs, restore state) and no shared filesystem between them, sharing only the database,
Redis and the RADOS pool that holds the repositories (the backup cluster of tests/fixtures/store.py).

Both VMs' backups and restores run at once, one on each host (each job holds its VM's lock while the other
host's job runs); each host restores from chunks the other wrote. The VM-level rules across hosts (one backup
or gc per VM, a dead host's lock expiring) are the engine's RADOS lock, tested in tests/storage/test_rados.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from portal.demo import make_image
from portal.extensions import db
from portal.models import BackupPoint, BackupRun, Restore
from portal.services import runs
from storage.repository import Repository
from tests.conftest import LIFEBOAT

from ..fixtures.store import BackupCluster
from .test_workers import wait_until

pytestmark = [pytest.mark.ceph, pytest.mark.slow]


@contextmanager
def host(name: str, base: Path, app: Any, database_url: str, redis_url: str,
         cluster: BackupCluster) -> Iterator[Path]:
    """One worker process on a "host" of its own: every local folder it uses is under ``base/name``."""
    folder = base / name
    for sub in ("var", "restores", "state", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **cluster.env(), "LIFEBOAT_DATABASE_URL": database_url, "LIFEBOAT_REDIS_URL": redis_url,
           "LIFEBOAT_STORAGE_ROOT": app.config["STORAGE_ROOT"], "LIFEBOAT_SECRET_KEY": "two-hosts",
           "LIFEBOAT_VAR": str(folder / "var"), "LIFEBOAT_RESTORE_ROOT": str(folder / "restores"),
           "LIFEBOAT_STORE_STATE_DIR": str(folder / "state"), "HOME": str(folder), "TMPDIR": str(folder / "tmp")}
    log = open(folder / "worker.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([LIFEBOAT, "worker", "-n", "1"], env=env, cwd=folder, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        yield folder
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def fresh(model: Any, row_id: int) -> Any:
    db.session.expire_all()
    row = db.session.get(model, row_id)
    assert row is not None and row.state != "failed", row.error
    return row


def test_backups_and_restores_of_two_vms_run_on_two_hosts(file_vm, queues, world, app, database_url, redis_url,
                                                          backup_cluster: BackupCluster, tmp_path: Path) -> None:
    app.config["STORAGE_ROOT"] = f"rados:{backup_cluster.pool}/hosts-{uuid.uuid4().hex[:8]}"
    other = world["globex_vm"]
    shop = tmp_path / "shop-1.img"
    make_image(str(shop), 24 * 1024 * 1024, seed=2)
    other.disks[0].source = f"file:{shop}"
    db.session.query(BackupPoint).delete()  # the world's sample points have no repository behind them
    db.session.commit()
    vms = [file_vm, other]
    locks = [queues.lock(f"lifeboat:vm:{vm.id}", timeout=120) for vm in vms]
    assert all(lock.acquire(blocking=False) for lock in locks)  # hold both VMs: each host keeps one job

    backups = [runs.request_backup(vm, world["operator"]) for vm in vms]
    with host("a", tmp_path, app, database_url, redis_url, backup_cluster) as a, \
            host("b", tmp_path, app, database_url, redis_url, backup_cluster) as b:
        wait_until(lambda: all(fresh(BackupRun, r.id).phase == "waiting for the VM" for r in backups),
                   "both backups taken, one by each host")
        for lock in locks:
            lock.release()
        wait_until(lambda: all(fresh(BackupRun, r.id).state == "done" for r in backups), "both backups")
        points = [BackupPoint.query.filter_by(vm_id=vm.id, revision=fresh(BackupRun, r.id).revision).one()
                  for vm, r in zip(vms, backups, strict=True)]

        assert all(lock.acquire(blocking=False) for lock in locks)
        restores = [runs.request_restore(world["operator"], vm, point, "full")
                    for vm, point in zip(vms, points, strict=True)]
        wait_until(lambda: all(fresh(Restore, r.id).phase == "waiting for the VM" for r in restores),
                   "both restores taken, one by each host")
        for lock in locks:
            lock.release()
        wait_until(lambda: all(fresh(Restore, r.id).state == "done" for r in restores), "both restores")

    outputs = [Path(fresh(Restore, r.id).output_path) for r in restores]
    assert {p.parents[1] for p in outputs} == {a, b}  # one restore on each host, into its own folder
    for vm, output in zip(vms, outputs, strict=True):
        assert output.read_bytes() == Path(vm.disks[0].source[len("file:"):]).read_bytes()
    for vm in vms:  # the repositories are in the pool, not on either host
        assert Repository.open(app.config["STORAGE_ROOT"], vm.repository_name).store.kind == "rados"
    assert not any((folder / "var" / "repositories").exists() for folder in (a, b))
