"""Issue 12, item 5: where Ceph is not installed (here: a PATH without its binaries), ``make run`` starts as
before and says in one line why it has no VM on RBD: printed, in the instance config, and in the refusal of an
instant restore."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from portal import demo_ceph

from .conftest import free_port, start_demo
from .test_demo_ceph import api, demo_token, vm_id
from .test_stop import assert_all_stopped


def path_without_ceph(folder: Path) -> str:
    """A PATH of one folder linking every program of the current PATH except Ceph's."""
    folder.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            link = folder / name
            if name not in demo_ceph.TOOLS and not link.exists() and not link.is_symlink():
                link.symlink_to(os.path.join(directory, name))
    return str(folder)


def test_without_ceph_the_demo_runs_and_says_why_it_has_no_rbd_vm(demo_home: Path) -> None:
    demo = start_demo(demo_home / "var", free_port(), env={"PATH": path_without_ceph(demo_home / "bin")})
    try:
        demo.wait_until_up()
        log = demo.tail(full=True)
        line = "This demo has no VM on RBD, so no instant restore: Ceph is not installed here (ceph-mon, "
        assert line in log and not demo.has_ceph()
        assert not any("ceph-" in command for command in demo.seen.values())
        config = (demo.var / "instance" / "lifeboat.toml").read_text(encoding="utf-8")
        assert "DEMO_NO_RBD = \"This demo has no VM on RBD" in config and 'INSTANT_SOURCE_URL = ""' in config

        token = demo_token(demo)
        vm = vm_id(demo, token, "web-1")
        _, points = api(demo, token, f"/vms/{vm}/backups")
        status, refused = api(demo, token, f"/vms/{vm}/restores", {"backup": points["items"][0]["id"],
                                                                    "kind": "instant"})
        assert status == 422 and "This demo has no VM on RBD" in refused["message"], refused

        os.kill(demo.process.pid, signal.SIGTERM)
        assert_all_stopped(demo)
    finally:
        demo.kill_all()


def test_a_cluster_that_does_not_start_costs_the_rbd_vm_not_the_demo(demo_home: Path) -> None:
    """A ceph-osd that fails (here: a PATH whose ceph-osd exits 1): the monitor already started is stopped, the
    demo runs on and says why."""
    folder = demo_home / "bin-broken-osd"
    path = path_without_ceph(folder)
    for tool in demo_ceph.TOOLS:
        real = shutil.which(tool)
        if real is None:
            pytest.skip(f"Ceph is not installed here ({tool} not found)")
        (folder / tool).symlink_to(real)
    (folder / "ceph-osd").unlink()
    (folder / "ceph-osd").write_text("#!/bin/sh\necho 'ceph-osd: broken on purpose' >&2\nexit 1\n")
    (folder / "ceph-osd").chmod(0o755)
    demo = start_demo(demo_home / "var", free_port(), env={"PATH": path})
    try:
        demo.wait_until_up()
        log = demo.tail(full=True)
        assert "This demo has no VM on RBD, so no instant restore: the loopback Ceph cluster did not start " \
               "(ceph-osd --mkfs exited with 1" in log, log
        assert not any("ceph-mon" in command for command in demo.processes().values())
        os.killpg(demo.process.pid, signal.SIGINT)
        assert_all_stopped(demo)
    finally:
        demo.kill_all()
