"""``lifeboat demo run`` (``make run``): every part of the demo as a child of one Supervisor, in order.

The database, the loopback Ceph cluster where Ceph is installed (``portal.demo_ceph``: a VM on RBD to restore
instantly), the demo data, the embedded Redis, the instant-restore source (``lifeboat instant-source``, only
with the cluster), two workers, the scheduler and the web app. What the cluster decides (the source's address,
the RBD VM, or why there is none) goes into the instance config too, so a ``lifeboat`` command in another
terminal sees the same as the web app.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from . import demo_ceph, instance
from .supervisor import ChildFailed, Stopped, Supervisor, exit_code


def run_demo(lifeboat: str, flask: str, port: int, var: str, env: dict[str, str]) -> int:
    """``make run``: the database, Ceph (where it can), demo data, Redis, workers, scheduler, the web app."""
    pointer = os.path.join(var, "redis.url")
    try:
        with Supervisor(env) as supervisor:
            supervisor.step("lifeboat db upgrade", [lifeboat, "db", "upgrade"])
            began = time.monotonic()
            cluster = demo_ceph.start(supervisor, var, os.path.join(var, "demo-images", f"{demo_ceph.IMAGE}.img"))
            source = f"127.0.0.1:{demo_ceph.free_port()}" if isinstance(cluster, demo_ceph.Cluster) else ""
            if isinstance(cluster, demo_ceph.Cluster):
                supervisor.say(f"loopback Ceph cluster up in {time.monotonic() - began:.1f} s (CEPH_CONF="
                               f"{cluster.conf}); acme/app-rbd is on RBD ({cluster.image}): try an instant restore")
                settings = {"DEMO_RBD": cluster.image, "DEMO_NO_RBD": "", "INSTANT_SOURCE_URL": f"http://{source}"}
            else:
                supervisor.say(demo_ceph.no_rbd_line(cluster))
                settings = {"DEMO_RBD": "", "DEMO_NO_RBD": demo_ceph.no_rbd_line(cluster), "INSTANT_SOURCE_URL": ""}
            instance.update(instance.config_file(), settings)
            supervisor.step("lifeboat demo seed", [lifeboat, "demo", "seed"])
            if os.path.exists(pointer):
                os.unlink(pointer)  # left by a Redis that was killed: wait for the new one's
            redis = supervisor.start("lifeboat redis", [lifeboat, "redis"])
            if not supervisor.wait_for(lambda: os.path.exists(pointer), redis, timeout=30):
                raise ChildFailed("lifeboat redis", -1)
            if source:
                served = supervisor.start("lifeboat instant-source", [lifeboat, "instant-source", "--listen", source])
                if not supervisor.wait_for(lambda: _listening(source), served, timeout=30):
                    raise ChildFailed("lifeboat instant-source", -1)
            supervisor.start("lifeboat worker", [lifeboat, "worker", "-n", "2"])
            supervisor.start("lifeboat scheduler", [lifeboat, "scheduler"])
            supervisor.say(f"\nLifeboat demo on http://127.0.0.1:{port}  (logins above, password: demo; "
                           "Ctrl-C stops everything)")
            sys.stdout.flush()
            supervisor.start("web", [flask, "--app", "portal.app:create_app()", "run", "--host", "127.0.0.1",
                                     "--port", str(port)])
            supervisor.wait()
    except Stopped as exc:
        print(f"lifeboat demo: {exc}: stopped everything", file=sys.stderr)
        return exit_code(exc)
    except ChildFailed as exc:
        print(f"lifeboat demo: {exc}; stopped the others", file=sys.stderr)
        return exit_code(exc)
    return 0


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False
