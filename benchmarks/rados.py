"""RADOS repositories: backup and restore of the benchmark image into a pool, against a folder and the pool's limit.

Starts a throw-away memstore cluster of its own (scripts/ceph/start-ceph.sh, free ports, no manager) with the
pool ``backups``, builds (or reuses) the GPT + ext4 benchmark image, and measures, each from a fresh start:

- ``lifeboat store backup`` and ``restore`` with a folder root (the default backend) and with ``rados:backups``;
- the limit: the same chunk bytes as stored (read from the folder repository) written to the pool with plain
  ``aio_write_full`` (32 in flight, what the engine does) and read back, with no hashing or compression; and
  ``rados bench`` writing 4 MiB objects for comparison.

Target (issue 16): a backup to RADOS at least 0.7x the speed of writing its bytes with plain write_full. The
memstore OSD keeps data in RAM, so the limit is the OSD's CPU: on 2 cores it competes with the engine's own
hashing and compression, which the numbers show.

    .venv/bin/python benchmarks/rados.py [--size 2G] [--out benchmarks/results/rados.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from benchlib import log, parse_size  # noqa: E402
from diskimage import build_disk_image  # noqa: E402

LIFEBOAT = str(Path(sys.executable).with_name("lifeboat"))
MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(folder: Path) -> dict[str, str]:
    subprocess.run(["bash", str(REPO / "scripts" / "install-ceph.sh")], check=True, capture_output=True)
    env = {**os.environ, "NO_MGR": "1", "MON_PORT": str(free_port()), "MON_V1_PORT": str(free_port())}
    subprocess.run(["bash", str(REPO / "scripts" / "ceph" / "start-ceph.sh"), str(folder), "memstore"],
                   check=True, env=env, capture_output=True)
    conf = str(folder / "ceph.conf")
    for args in (["osd", "pool", "create", "backups", "32", "32"],
                 ["osd", "pool", "application", "enable", "backups", "lifeboat"]):
        subprocess.run(["ceph", "--conf", conf, *args], check=True, capture_output=True)
    return {**os.environ, "LIFEBOAT_STORE_CEPH_CONF": conf, "LIFEBOAT_STORE_STATE_DIR": str(folder / "state")}


def lifeboat(env: dict[str, str], *args: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    done = subprocess.run([LIFEBOAT, *args, "--json"], capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"lifeboat {' '.join(args)} failed: {done.stderr}")
    return seconds, json.loads(done.stdout)


PLAIN = r"""
import os, sys, time
sys.path.insert(0, sys.argv[3])
from storage.sources.rbd import load_bindings
from storage.errors import StorageError
rados, _ = load_bindings(StorageError)
cluster = rados.Rados(rados_id="admin"); cluster.conf_read_file(sys.argv[1]); cluster.connect()
io = cluster.open_ioctx("backups"); io.set_namespace("plain")
files = [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[2]) for f in fs if not f.startswith(".")]
datas = [open(p, "rb").read() for p in files]
started = time.perf_counter(); pending = []
for n, data in enumerate(datas):
    pending.append(io.aio_write_full(f"obj-{n}", data))
    if len(pending) > 32:
        pending.pop(0).wait_for_complete()
for c in pending:
    c.wait_for_complete()
write = time.perf_counter() - started
started = time.perf_counter(); pending = []
for n, data in enumerate(datas):
    pending.append(io.aio_read(f"obj-{n}", len(data) + 1, 0, lambda c, d: None))
    if len(pending) > 32:
        pending.pop(0).wait_for_complete()
for c in pending:
    c.wait_for_complete()
read = time.perf_counter() - started
for n in range(len(datas)):
    io.remove_object(f"obj-{n}")
print(write, read, sum(map(len, datas)), len(datas))
"""


def plain(env: dict[str, str], chunks_folder: Path) -> tuple[float, float, int, int]:
    done = subprocess.run([sys.executable, "-c", PLAIN, env["LIFEBOAT_STORE_CEPH_CONF"], str(chunks_folder),
                           str(REPO)], capture_output=True, text=True, env=env, check=True)
    write, read, size, count = done.stdout.split()
    return float(write), float(read), int(size), int(count)


def rados_bench(env: dict[str, str]) -> float:
    done = subprocess.run(["rados", "--conf", env["LIFEBOAT_STORE_CEPH_CONF"], "-p", "backups", "bench", "10",
                           "write", "-b", str(4 * MiB), "-t", "16", "--no-cleanup", "--run-name", "lb"],
                          capture_output=True, text=True, env=env, check=True, timeout=120)
    subprocess.run(["rados", "--conf", env["LIFEBOAT_STORE_CEPH_CONF"], "-p", "backups", "cleanup",
                    "--run-name", "lb"], capture_output=True, env=env, check=False, timeout=120)
    for line in done.stdout.splitlines():
        if line.startswith("Bandwidth (MB/sec):"):
            return float(line.split(":")[1])
    return 0.0


def fleet(env: dict[str, str], scratch: Path, vms: int, size: int, per_host: int) -> list[tuple[str, float]]:
    """40 VMs backed up by one "host" vs two (each its own working folder, HOME and TMPDIR, ``per_host``
    backups at a time), into one pool: the aggregate makespans."""
    images = []
    for n in range(vms):
        path = scratch / f"fleet-{n}.img"
        path.write_bytes(os.urandom(size))
        images.append(path)
    results = []
    for hosts in (1, 2):
        namespace = f"fleet{hosts}"
        folders = []
        for h in range(hosts):
            folder = scratch / f"host{hosts}-{h}"
            (folder / "tmp").mkdir(parents=True)
            folders.append(folder)
        queues = [[n for n in range(vms) if n % hosts == h] for h in range(hosts)]
        started = time.perf_counter()
        running: dict[subprocess.Popen[bytes], int] = {}
        while any(queues) or running:
            for h, queue in enumerate(queues):
                mine = [p for p, host in running.items() if host == h]
                while queue and len(mine) < per_host:
                    n = queue.pop(0)
                    host_env = {**env, "HOME": str(folders[h]), "TMPDIR": str(folders[h] / "tmp")}
                    proc = subprocess.Popen([LIFEBOAT, "store", "backup", f"rados:backups/{namespace}", f"vm{n}",
                                             f"file:{images[n]}", "--threads", "2"],
                                            cwd=folders[h], env=host_env, stdout=subprocess.DEVNULL)
                    running[proc] = h
                    mine.append(proc)
            for proc in list(running):
                if proc.poll() is not None:
                    if proc.returncode != 0:
                        raise SystemExit(f"a fleet backup failed: {proc.args}")
                    del running[proc]
            time.sleep(0.05)
        results.append((f"{vms} VMs of {size // MiB} MiB by {hosts} host(s), {per_host} backups at a time each",
                        time.perf_counter() - started))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2G")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--fleet", action="store_true", help="only the fleet: 40 VMs by one host vs two")
    args = parser.parse_args()
    if args.fleet:
        scratch = Path(tempfile.mkdtemp(prefix="lbrf-", dir="/tmp"))
        try:
            env = start_cluster(scratch / "c")
            found = fleet(env, scratch, 40, 32 * MiB, 2)
        finally:
            subprocess.run(["bash", str(REPO / "scripts" / "ceph" / "stop-ceph.sh"), str(scratch / "c")],
                           capture_output=True, check=False)
            shutil.rmtree(scratch, ignore_errors=True)
        text = "| fleet | seconds | VMs/s |\n|---|---|---|\n" + "".join(
            f"| {what} | {seconds:.2f} | {40 / seconds:.2f} |\n" for what, seconds in found)
        print(text)
        if args.out:
            args.out.write_text(text)
        return
    image, _ = build_disk_image(args.work, parse_size(args.size))
    size = image.stat().st_size
    scratch = Path(tempfile.mkdtemp(prefix="lbrb-", dir="/tmp"))
    rows: list[tuple[str, float, str]] = []
    try:
        env = start_cluster(scratch / "c")
        log("rados bench (first: the memstore OSD holds everything in RAM, and its objects are removed after)")
        bench = rados_bench(env)
        local = scratch / "repo"
        log("backup to a folder")
        t_local, b_local = lifeboat(env, "store", "backup", str(local), "vm", f"file:{image}")
        log("restore from a folder")
        r_local, _ = lifeboat(env, "store", "restore", str(local), "vm", "latest", str(scratch / "l.img"))
        os.unlink(scratch / "l.img")
        log("backup to RADOS")
        t_rados, b_rados = lifeboat(env, "store", "backup", "rados:backups/bench", "vm", f"file:{image}")
        log("restore from RADOS")
        r_rados, _ = lifeboat(env, "store", "restore", "rados:backups/bench", "vm", "latest",
                              str(scratch / "r.img"))
        os.unlink(scratch / "r.img")
        log("plain write_full / read of the same stored bytes")
        w_plain, rd_plain, stored, count = plain(env, local / "vm" / "chunks")
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "ceph" / "stop-ceph.sh"), str(scratch / "c")],
                       capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)

    def rate(nbytes: int, seconds: float) -> str:
        return f"{nbytes / MiB / seconds:.0f} MiB/s"

    rows = [
        ("backup to a folder", t_local, rate(size, t_local)),
        ("backup to rados:backups", t_rados, rate(size, t_rados)),
        (f"plain aio_write_full of the {count} stored chunks ({stored / MiB:.0f} MiB)", w_plain, rate(stored, w_plain)),
        ("restore from a folder", r_local, rate(size, r_local)),
        ("restore from rados:backups", r_rados, rate(size, r_rados)),
        ("plain aio_read of the same chunks", rd_plain, rate(stored, rd_plain)),
    ]
    lines = [f"# RADOS repositories ({size / MiB:.0f} MiB benchmark image, memstore OSD, this machine)", "",
             "| what | seconds | rate (image bytes; plain: stored bytes) |", "|---|---|---|"]
    lines += [f"| {what} | {seconds:.2f} | {speed} |" for what, seconds, speed in rows]
    lines += ["", f"- backup to RADOS vs plain write_full of its bytes: {w_plain / t_rados:.2f}x the limit's speed "
              f"(target >= 0.7x); vs a folder: {t_local / t_rados:.2f}x",
              f"- restore from RADOS vs plain read: {rd_plain / r_rados:.2f}x; vs a folder: {r_local / r_rados:.2f}x",
              f"- `rados bench` 4 MiB writes, 16 in flight, 10 s: {bench:.0f} MB/s",
              f"- bytes written: folder {b_local['bytes_written']}, RADOS {b_rados['bytes_written']} (the same chunks)",
              "- times are whole `lifeboat` processes (start-up and connecting included)"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
