"""What only a RADOS root has: locks that expire when their holder dies, and a store that can go away.

The engine's round-trip, damage, crash, retention and copy tests run on RADOS too (their ``root`` is
``store_root``); these are the failure modes a folder does not have.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.backend import open_store
from storage.repository import Repository
from tests import images
from tests.serving import ServeProcess, backed_up_disk, http_image, qemu

from ..fixtures.store import BackupCluster, started_cluster
from .diskdata import block, write_image
from .test_processes import finish, held_backup, start, wait_for

pytestmark = pytest.mark.ceph


@pytest.fixture
def root(backup_cluster: BackupCluster) -> str:
    return f"rados:{backup_cluster.pool}/t-{uuid.uuid4().hex[:10]}"


def test_a_killed_holder_blocks_its_vm_only_until_the_lock_expires(tmp_path: Path, root: str, lifeboat) -> None:
    image = tmp_path / "disk.img"
    expected = write_image(image, [block("random", 1), block("text", 1)])
    marker = tmp_path / "holding"
    holder = held_backup(root, "vm1", image, marker)  # holds the lock in its pre-hook
    wait_for(marker.exists)
    holder.send_signal(signal.SIGKILL)  # a host that dies: nobody unlocks
    finish(holder)
    marker.unlink()

    busy = lifeboat("store", "backup", root, "vm1", f"file:{image}")
    assert busy.code == 2 and "busy" in busy.stderr and "RADOS lock" in busy.stderr, busy.stderr
    assert len(busy.stderr.strip().splitlines()) == 1
    taken_over = lifeboat("store", "backup", root, "vm1", f"file:{image}", "--wait", "60", "--json")
    assert taken_over.code == 0, taken_over.stderr  # the expiry (5 s here) freed the VM
    out = tmp_path / "out.img"
    assert lifeboat("store", "restore", root, "vm1", "latest", str(out)).code == 0
    assert out.read_bytes() == expected


@pytest.fixture
def own_cluster() -> Iterator[BackupCluster]:
    """A cluster of this test's own: its OSD is paused, which would stall every other test's store."""
    with started_cluster("lbout-") as cluster:
        yield cluster


def test_an_outage_mid_backup_is_one_clear_error_and_publishes_nothing(tmp_path: Path, own_cluster: BackupCluster,
                                                                       lifeboat) -> None:
    env = {**own_cluster.env(), "LIFEBOAT_STORE_CEPH_TIMEOUT": "3", "LIFEBOAT_STORE_LOCK_SECONDS": "5",
           "LIFEBOAT_STORE_STATE_DIR": str(tmp_path / "state")}
    root = f"rados:{own_cluster.pool}/outage"
    image = tmp_path / "disk.img"
    first = write_image(image, [block("random", 1), block("text", 1)])
    assert lifeboat("store", "backup", root, "vm1", f"file:{image}", env=env).code == 0
    write_image(image, [block("random", 100 + n) for n in range(40)])

    def chunks() -> int:
        listed = own_cluster.rados("--namespace", "outage#chunks", "ls")
        return len(listed.split())

    before = chunks()
    proc = start("store", "backup", root, "vm1", f"file:{image}", "--threads", "1", env=env)
    wait_for(lambda: chunks() >= before + 3 or proc.poll() is not None)
    osd = own_cluster.osd_pid()
    os.kill(osd, signal.SIGSTOP)  # the store stops answering (a network partition, a hung OSD)
    try:
        done = finish(proc)
        checking = lifeboat("store", "verify", root, "vm1", "--json", env=env)  # during the outage
    finally:
        os.kill(osd, signal.SIGCONT)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "unavailable" in lines[0], done.stderr
    assert checking.code == 2 and "unavailable" in checking.stderr, checking.stdout + checking.stderr
    assert not own_cluster.rados("--namespace", "outage", "ls").decode().count("quarantine/")  # not damage

    with_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert len(Repository.open(root, "vm1").revisions()) == 1  # nothing half-written is published
    finally:
        for key, value in with_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    verified = lifeboat("store", "verify", root, "vm1", "--json", env=env)
    assert verified.code == 0 and verified.json["clean"], verified.stdout + verified.stderr
    out = tmp_path / "first.img"
    assert lifeboat("store", "restore", root, "vm1", "latest", str(out), env=env).code == 0
    assert out.read_bytes() == first
    again = lifeboat("store", "backup", root, "vm1", f"file:{image}", "--wait", "30", "--json", env=env)
    assert again.code == 0, again.stderr
    assert again.json["chunks_reused"] >= 1  # what reached the store before the outage is kept


def test_unknown_pool_and_unreachable_cluster_are_one_line_exit_2(tmp_path: Path, backup_cluster: BackupCluster,
                                                                   lifeboat) -> None:
    unknown = lifeboat("store", "list", "rados:nosuchpool")
    assert unknown.code == 2 and "no pool 'nosuchpool'" in unknown.stderr
    conf = tmp_path / "down.conf"
    conf.write_text(backup_cluster.conf.read_text().replace("mon host =", "mon host = 127.0.0.1:1 #"))
    down = lifeboat("store", "list", "rados:backups", env={"LIFEBOAT_STORE_CEPH_CONF": str(conf),
                                                           "LIFEBOAT_STORE_CEPH_TIMEOUT": "2"})
    assert down.code == 2 and "unavailable" in down.stderr, down.stderr
    for bad in ("rados:", "rados:bad@pool", "rados:backups/na me"):
        done = lifeboat("store", "list", bad)
        assert done.code == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_backup_whose_lock_lapsed_publishes_nothing(tmp_path: Path, root: str, lifeboat) -> None:
    """A host paused longer than the expiry (a hung VM, a stalled network) may have lost its VM to another host:
    when it wakes up its backup must not publish, because gc may have run in between."""
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1)])
    assert lifeboat("store", "backup", root, "vm1", f"file:{image}").code == 0
    write_image(image, [block("random", 2), block("text", 2)])
    marker = tmp_path / "holding"
    paused = held_backup(root, "vm1", image, marker)
    wait_for(marker.exists)  # it holds the lock, in its pre-hook
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        other_host = lifeboat("store", "gc", root, "vm1", "--wait", "60", "--json")  # after the 5 s expiry
        assert other_host.code == 0, other_host.stderr
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    marker.unlink()
    done = finish(paused)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "lapsed" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert len(Repository.open(root, "vm1").revisions()) == 1
    assert lifeboat("store", "verify", root, "vm1").code == 0


@pytest.mark.skipif(not images.have("sfdisk", "mkfs.ext4", "qemu-img", "nbdkit"),
                    reason="needs sfdisk, mkfs.ext4, qemu-utils and nbdkit (make sysdeps)")
def test_a_backup_point_in_rados_serves_as_a_disk_over_http_and_nbd(tmp_path: Path, root: str) -> None:
    image, revision = backed_up_disk(tmp_path / "work", root)
    with ServeProcess(root, "vm1", revision, "--http", "--nbd") as served:
        for source in (http_image(served.urls["http"]), served.urls["nbd"]):
            compared = qemu("qemu-img", "compare", "-f", "raw", str(image), source)
            assert compared.returncode == 0 and "identical" in compared.stdout, compared.stderr


def test_the_portals_storage_check_reads_a_pool(root: str) -> None:
    """`lifeboat check` and /health on a rados: root: free space is the cluster's; an unknown pool is the error."""
    from portal.check import Thresholds, check_storage, probe_storage

    assert probe_storage({"STORAGE_ROOT": root}) is None
    found = check_storage({"STORAGE_ROOT": root}, Thresholds())
    if open_store(root).usage().total:  # a cluster with a mgr reports its capacity
        assert "free on the storage root" in found.summary and any("storage_free_bytes=" in p for p in found.perfdata)
    else:  # the test cluster runs no mgr: no capacity is known, which is not an outage
        assert found.status == 0 and "ceph-mgr" in found.summary
    assert "no pool 'nosuchpool'" in (probe_storage({"STORAGE_ROOT": "rados:nosuchpool"}) or "")
