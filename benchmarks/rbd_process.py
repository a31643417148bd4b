"""RBD full vs incremental backup of a small image, as whole ``lifeboat store backup`` processes (issue 11: 13).

A 256 MiB RBD image of random data; a full backup, then 8 MiB changed (two 4 MiB objects) and an incremental,
then another 8 MiB and a second incremental (the steady state: by then there is an older snapshot to retire).
Each backup is a fresh ``lifeboat store backup --json`` process: "process" is its wall time (interpreter,
imports, connecting, snapshot, reads, chunks, manifest, snapshot retirement), "engine" the ``seconds`` it
reports. Median of ``--repeat`` runs.

Run on two clusters, because what a snapshot costs is the monitor's business: every snapshot create and
remove waits for the monitor to commit a new map, and monitors batch those commits (``paxos propose
interval``): 1 s by default, which production clusters run; the test cluster proposes every 0.05 s. A
request waits for the next proposal, at most one interval after the last commit, so each backup starts after
two idle intervals (its wait would otherwise depend on how recently the benchmark's last backup committed):
what is measured is how many proposals a backup waits for. An in-process run under
``storage.counters.counting()`` reports the operations each backup issued.

    .venv/bin/python benchmarks/rbd_process.py [--repeat 3] [--out benchmarks/results/rbd_process.md]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import save_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LIFEBOAT = str(Path(sys.executable).with_name("lifeboat"))
MiB = 1 << 20
SIZE = 256 * MiB
CHANGE = 8 * MiB
INTERVALS = ((0.05, "test cluster (monitor proposes every 0.05 s)"),
             (1.0, "Ceph's default (monitor proposes every 1 s, as in production)"))
COUNTED = ("rbd.snap_create", "rbd.snap_remove", "rbd.diff", "rbd.read", "rbd.open", "fsync")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(folder: Path, interval: float) -> dict[str, str]:
    subprocess.run(["bash", str(REPO / "scripts" / "install-ceph.sh")], check=True, capture_output=True)
    env = {**os.environ, "NO_MGR": "1", "MON_PORT": str(free_port()), "MON_V1_PORT": str(free_port()),
           "PAXOS_PROPOSE_INTERVAL": str(interval)}
    subprocess.run(["bash", str(REPO / "scripts" / "ceph" / "start-ceph.sh"), str(folder), "memstore"],
                   check=True, env=env, capture_output=True)
    return {**os.environ, "CEPH_CONF": str(folder / "ceph.conf")}


def process_backup(env: dict[str, str], root: Path, image: str, idle: float) -> tuple[float, float, int]:
    time.sleep(idle)  # the monitor's last commit is an interval or more ago, as for every backup measured
    started = time.perf_counter()
    done = subprocess.run([LIFEBOAT, "store", "backup", str(root), "vm", f"rbd:rbd/{image}", "--json"],
                          check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    result = json.loads(done.stdout)
    return wall, float(result["seconds"]), int(result["bytes_read"])


def write_changes(env: dict[str, str], image: str, writes: list[tuple[int, bytes]]) -> None:
    """Write into the image's head through librbd (as a VM would), in this process."""
    from storage.errors import StorageError
    from storage.sources.rbd import load_bindings

    rados, rbd = load_bindings(StorageError)
    cluster = rados.Rados(conffile=env["CEPH_CONF"])
    cluster.connect()
    try:
        with cluster.open_ioctx("rbd") as ioctx, rbd.Image(ioctx, image) as img:
            for offset, data in writes:
                img.write(data, offset)
            img.flush()
    finally:
        cluster.shutdown()


def import_image(env: dict[str, str], source: Path, image: str) -> str:
    subprocess.run(["rbd", "import", "--no-progress", str(source), f"rbd/{image}"], check=True, env=env,
                   capture_output=True)
    return image


def changes(rng: random.Random, round_: int) -> list[tuple[int, bytes]]:
    """Two whole 4 MiB objects, somewhere else each round."""
    first = (8 * round_ + 3) % (SIZE // (4 * MiB) - 1)
    return [(first * 4 * MiB, rng.randbytes(4 * MiB)), ((first + 1) * 4 * MiB, rng.randbytes(4 * MiB))]


def counted_run(env: dict[str, str], work: Path, image: str, rng: random.Random) -> dict[str, dict[str, int]]:
    """Full, incremental, incremental in this process, counting each one's operations."""
    from storage import counters
    from storage.backup import backup

    os.environ["CEPH_CONF"] = env["CEPH_CONF"]
    root = work / "root-counted"
    found = {}
    for label, round_ in (("full", None), ("incremental", 90), ("steady incremental", 91)):
        if round_ is not None:
            write_changes(env, image, changes(rng, round_))
        with counters.counting() as ops:
            backup(str(root), "vm", f"rbd:rbd/{image}")
        found[label] = {name: ops[name] for name in COUNTED}
    return found


def measure(interval: float, work: Path, repeat: int) -> dict[str, Any]:
    env = start_cluster(work / "ceph", interval)
    try:
        rng = random.Random(11)
        source = work / "random.img"
        with open(source, "wb") as handle:
            for _ in range(SIZE // (16 * MiB)):
                handle.write(rng.randbytes(16 * MiB))
        runs: dict[str, list[tuple[float, float, int]]] = {"full": [], "incremental": [], "steady incremental": []}
        for n in range(repeat + 1):
            image = import_image(env, source, f"bench-small-{n}")  # each full is an image's first backup
            if n == repeat:
                break
            root = work / f"root-{n}"
            idle = 2 * interval
            runs["full"].append(process_backup(env, root, image, idle))
            write_changes(env, image, changes(rng, 2 * n))
            runs["incremental"].append(process_backup(env, root, image, idle))
            write_changes(env, image, changes(rng, 2 * n + 1))
            runs["steady incremental"].append(process_backup(env, root, image, idle))
            shutil.rmtree(root)
        operations = counted_run(env, work, image, rng)
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "ceph" / "stop-ceph.sh"), str(work / "ceph")],
                       check=False, capture_output=True)
    summary = {kind: {"process_s": statistics.median(r[0] for r in rs), "engine_s": statistics.median(r[1] for r in rs),
                      "bytes_read": rs[0][2], "process_runs": [round(r[0], 3) for r in rs]}
               for kind, rs in runs.items()}
    return {"paxos_propose_interval": interval, "backups": summary, "operations": operations}


def render(results: list[dict[str, Any]], repeat: int) -> str:
    lines = [
        "# RBD full vs incremental backup, whole processes (256 MiB image, 8 MiB changed)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; median of {repeat} runs; single-node "
        "memstore cluster on loopback, 2 shared cores. process s (engine s); operations from one in-process run.",
        "",
        "| cluster | full | incremental | steady incremental | steady / full (process) | bytes read (full, incr.) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        b = r["backups"]
        cell = {k: f"{v['process_s']:.2f} ({v['engine_s']:.2f})" for k, v in b.items()}
        lines.append(
            f"| {dict(INTERVALS)[r['paxos_propose_interval']]} | {cell['full']} | {cell['incremental']} "
            f"| {cell['steady incremental']} | {b['steady incremental']['process_s'] / b['full']['process_s']:.0%} "
            f"| {b['full']['bytes_read'] / MiB:.0f} MiB, {b['steady incremental']['bytes_read'] / MiB:.0f} MiB |")
    lines += ["", "| operations per backup | " + " | ".join(COUNTED) + " |",
              "|---|" + "---:|" * len(COUNTED)]
    for kind, ops in results[0]["operations"].items():
        lines.append(f"| {kind} | " + " | ".join(str(ops[name]) for name in COUNTED) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "rbd_process.md")
    args = parser.parse_args()
    results = []
    for interval, _ in INTERVALS:
        with tempfile.TemporaryDirectory(prefix="lifeboat-rbd-process-") as folder:
            results.append(measure(interval, Path(folder), args.repeat))
    save_report(args.out, render(results, args.repeat), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
