"""The demo's loopback Ceph cluster: where Ceph is installed, ``make run`` has a VM on RBD to restore instantly.

One monitor and one memstore OSD on free loopback ports, configured under ``VAR/ceph`` (made anew each run:
memstore keeps nothing, so the pool and the demo VM's image are seeded every run from the demo disk's file).
Both daemons run in the foreground (``-f``) as children of the demo supervisor, so Ctrl-C, SIGTERM or the
supervisor's death stop them like every other part of the demo (not ``scripts/ceph/start-ceph.sh``, whose
daemons fork away from their parent). A cluster that cannot start costs the demo its RBD VM, never the demo:
``start`` stops what it started and says why in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass

from .supervisor import ChildFailed, Supervisor

TOOLS = ("ceph-mon", "ceph-osd", "ceph-authtool", "monmaptool", "ceph", "rbd")
POOL = "rbd"
IMAGE = "acme-app-rbd"  # the demo VM on RBD: acme/app-rbd, its disk rbd:rbd/acme-app-rbd
IMAGE_SIZE = 48 * 1024 * 1024
UP_SECONDS = 60.0
SOCKET_LIMIT = 100  # unix socket paths (the daemons' admin sockets) are limited to 107 bytes


@dataclass
class Cluster:
    conf: str
    image: str  # POOL/IMAGE of the demo VM's disk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unavailable(env: dict[str, str]) -> str | None:
    """Why this machine cannot run the demo's cluster (a missing Ceph binary or Python binding), or None."""
    missing = [tool for tool in TOOLS if shutil.which(tool, path=env.get("PATH")) is None]
    if missing:
        return f"Ceph is not installed here ({', '.join(missing)} not found; scripts/install-ceph.sh installs it)"
    from storage.errors import StorageError
    from storage.sources.rbd import load_bindings

    try:
        load_bindings(lambda message: StorageError(message))
    except StorageError as exc:
        return f"Ceph's Python bindings cannot be loaded ({exc})"
    return None


def no_rbd_line(reason: str) -> str:
    """The one line the demo prints, and its VM pages show, when it has no VM on RBD."""
    return f"This demo has no VM on RBD, so no instant restore: {reason}."


def start(supervisor: Supervisor, var: str, disk_file: str) -> Cluster | str:
    """Start the cluster, create the pool and the demo VM's image from ``disk_file``: the Cluster, or why not.

    On failure the daemons already started are stopped and ``CEPH_CONF`` is taken out of the children's
    environment again.
    """
    reason = unavailable(supervisor.env)
    if reason:
        return reason
    folder = os.path.join(var, "ceph")
    if len(os.path.join(folder, "run", "osd.0.asok")) > SOCKET_LIMIT:
        return f"the path {folder} is too long for Ceph's admin sockets (set LIFEBOAT_VAR to a shorter folder)"
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(os.path.join(folder, "run"))
    os.makedirs(os.path.join(folder, "log"))
    conf = os.path.join(folder, "ceph.conf")
    fsid = str(uuid.uuid4())
    mon_addr = f"[v2:127.0.0.1:{free_port()},v1:127.0.0.1:{free_port()}]"
    _write_conf(conf, folder, fsid, mon_addr)
    before = len(supervisor.children)
    supervisor.env["CEPH_CONF"] = conf
    supervisor.env.pop("CEPH_ID", None)
    try:
        _run(supervisor, folder, fsid, mon_addr, disk_file)
    except (ChildFailed, OSError, TimeoutError) as exc:
        supervisor.env.pop("CEPH_CONF", None)
        supervisor.stop_newest(len(supervisor.children) - before)
        return f"the loopback Ceph cluster did not start ({exc}; logs in {os.path.join(folder, 'log')})"
    return Cluster(conf, f"{POOL}/{IMAGE}")


def _run(supervisor: Supervisor, folder: str, fsid: str, mon_addr: str, disk_file: str) -> None:
    keyring = os.path.join(folder, "keyring")
    log = os.path.join(folder, "log", "setup.log")
    supervisor.step("ceph-authtool", ["ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.",
                                      "--cap", "mon", "allow *"], output=log)
    supervisor.step("ceph-authtool", ["ceph-authtool", keyring, "--gen-key", "-n", "client.admin", "--cap", "mon",
                                      "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *"], output=log)
    supervisor.step("ceph-authtool", ["ceph-authtool", keyring, "--gen-key", "-n", "osd.0", "--cap", "mon",
                                      "allow profile osd", "--cap", "osd", "allow *"], output=log)
    monmap = os.path.join(folder, "monmap")
    supervisor.step("monmaptool", ["monmaptool", "--create", "--fsid", fsid, "--addv", "a", mon_addr, monmap],
                    output=log)
    supervisor.step("ceph-mon --mkfs", ["ceph-mon", "--mkfs", "-i", "a", "--monmap", monmap, "--keyring", keyring],
                    output=log)
    supervisor.start("ceph-mon", ["ceph-mon", "-f", "-i", "a"], output=os.path.join(folder, "log", "mon.out"))
    osd_uuid = str(uuid.uuid4())
    os.makedirs(os.path.join(folder, "osd.0"))
    supervisor.step("ceph osd new", ["ceph", "--connect-timeout", "30", "osd", "new", osd_uuid, "0"], output=log)
    supervisor.step("ceph-osd --mkfs", ["ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], output=log)
    osd = supervisor.start("ceph-osd", ["ceph-osd", "-f", "-i", "0"], output=os.path.join(folder, "log", "osd.out"))
    if not supervisor.wait_for(lambda: _osd_up(supervisor.env), osd, timeout=UP_SECONDS):
        raise TimeoutError(f"the OSD was not up within {UP_SECONDS:.0f} s")
    supervisor.step("ceph osd pool create", ["ceph", "--connect-timeout", "30", "osd", "pool", "create", POOL, "8",
                                             "8"], output=log)
    supervisor.step("rbd pool init", ["rbd", "pool", "init", POOL], output=log)
    if not os.path.exists(disk_file):
        from .demo import make_image

        os.makedirs(os.path.dirname(disk_file), exist_ok=True)
        make_image(disk_file, IMAGE_SIZE, seed=7)
    supervisor.step("rbd import", ["rbd", "import", "--no-progress", disk_file, f"{POOL}/{IMAGE}"], output=log)


def _osd_up(env: dict[str, str]) -> bool:
    try:
        done = subprocess.run(["ceph", "--connect-timeout", "5", "osd", "stat", "-f", "json"],  # noqa: S607
                              env=env, capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    if done.returncode != 0:
        time.sleep(0.3)
        return False
    up = json.loads(done.stdout).get("num_up_osds", 0) == 1
    if not up:
        time.sleep(0.3)
    return bool(up)


def _write_conf(path: str, folder: str, fsid: str, mon_addr: str) -> None:
    settings = f"""[global]
fsid = {fsid}
mon host = {mon_addr}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {folder}/keyring
run dir = {folder}/run
admin socket = {folder}/run/$name.asok
pid file = {folder}/run/$name.pid
log file = {folder}/log/$name.log
crash dir = {folder}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
auth allow insecure global id reclaim = false
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
mgr initial modules =
[mon]
mon data = {folder}/$name
paxos propose interval = 0.05
paxos min wait = 0.01
[osd]
osd data = {folder}/$name
osd objectstore = memstore
memstore device bytes = 1073741824
osd memory target = 536870912
"""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(settings)
