"""Issue 12, item 5: where Ceph is installed, ``make run`` starts a loopback cluster and has a VM on RBD
(acme/app-rbd) that a newcomer can restore instantly: through the portal's API, by the demo's own worker,
from the demo's own ``lifeboat instant-source``. Stopping the demo stops the cluster's daemons too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from portal import demo_ceph

from .conftest import REPO, Demo, free_port, start_demo
from .test_stop import assert_all_stopped

RESTORE_BOUND = 180.0  # a failure bound, not a timed assertion


def _ensure_ceph() -> None:
    """Install Ceph as the Ceph tests do; skip (with the reason) only when that is impossible."""
    if demo_ceph.unavailable(dict(os.environ)) is None:
        return
    subprocess.run(["bash", str(REPO / "scripts" / "install-ceph.sh")], capture_output=True, timeout=900,
                   check=False)
    reason = demo_ceph.unavailable(dict(os.environ))
    if reason:
        pytest.skip(reason)


def api(demo: Demo, token: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{demo.url}/api/v1{path}", data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def demo_token(demo: Demo) -> str:
    """The API token the first seed prints for admin@acme.example."""
    line = next(line for line in demo.tail(full=True).splitlines() if line.startswith("API token of admin@acme"))
    return line.rsplit(" ", 1)[1]


def vm_id(demo: Demo, token: str, name: str) -> int:
    status, page = api(demo, token, "/vms")
    assert status == 200, page
    return next(int(vm["id"]) for vm in page["items"] if vm["name"] == name)


def test_the_demo_vm_on_rbd_restores_instantly_through_the_portal(demo_home: Path) -> None:
    _ensure_ceph()
    demo = start_demo(demo_home / "var", free_port())
    try:
        demo.wait_until_up()
        assert demo.has_ceph(), demo.tail()
        names = " ".join(demo.seen.values())
        assert "ceph-mon" in names and "ceph-osd" in names and "instant-source" in names
        config = (demo.var / "instance" / "lifeboat.toml").read_text(encoding="utf-8")
        assert 'DEMO_RBD = "rbd/acme-app-rbd"' in config and 'INSTANT_SOURCE_URL = "http://127.0.0.1:' in config

        token = demo_token(demo)
        vm = vm_id(demo, token, "app-rbd")
        status, points = api(demo, token, f"/vms/{vm}/backups")
        assert status == 200 and points["items"], points
        status, restore = api(demo, token, f"/vms/{vm}/restores", {"backup": points["items"][0]["id"],
                                                                    "kind": "instant"})
        assert status == 202, restore
        deadline, usable = time.monotonic() + RESTORE_BOUND, None
        while time.monotonic() < deadline:
            _, restore = api(demo, token, f"/restores/{restore['id']}")
            usable = usable or restore["usable_at"]
            if restore["state"] in ("done", "failed", "cancelled"):
                break
            time.sleep(0.5)
        assert restore["state"] == "done", (restore, demo.tail())
        assert usable and restore["report"]["damaged"] == []

        # The new image holds the demo disk's bytes (what the cluster was seeded with and backed up from).
        target = restore["report"]["target"].removeprefix("rbd:")
        exported = subprocess.run(["rbd", "export", "--no-progress", target, "-"], capture_output=True, timeout=120,
                                  env={**os.environ, "CEPH_CONF": str(demo.var / "ceph" / "ceph.conf")}, check=True)
        assert exported.stdout == (demo.var / "demo-images" / f"{demo_ceph.IMAGE}.img").read_bytes()

        os.killpg(demo.process.pid, signal.SIGINT)  # Ctrl-C: the cluster's daemons stop with the rest
        assert_all_stopped(demo)
    finally:
        demo.kill_all()
