"""Instant restore benchmark: time until an RBD image is usable, against a full restore and `rbd import`.

Starts a throw-away memstore Ceph cluster (scripts/ceph/start-ceph.sh on free ports; installs Ceph first if
needed) and measures, for images of 1, 4 and 16 GiB (1 GiB of random data each, spread over the disk in
4 MiB chunks, the rest zeros: what a half-empty filesystem looks like to a block device):

- **usable**: seconds from the start of an instant restore (engine, in process) until the image is open and its
  first sector read (`ready_seconds`), and until the first 4 MiB read through librbd returned (through the
  HTTP source: nothing is hydrated yet);
- **hydration**: seconds of `migration execute` + commit, and its throughput over the data;
- **full restore** into RBD (`lifeboat store restore ... rbd:POOL/IMAGE`, engine seconds): the image is usable
  only when it ends; and `rbd import` of the same raw file (the limit of any copy into RBD);
- **random 4 KiB reads**: median and p95 latency through the unhydrated image vs the imported plain image.

Then the HTTP source alone (`lifeboat store serve` of the 1 GiB point): a whole-disk GET, 4 MiB ranged GETs one
at a time and four at a time, against `dd`/`cp` of the raw file (page cache warm), `qemu-img convert` over
NBD against the same from the raw file, and Ceph's `migration execute` reading from it against reading from a
plain raw-file range server (what the source costs hydration). Last, a fleet of 40 VMs (1 GiB each, 256 MiB of
data, one worker): time until every VM is usable (instant, all prepared first) against time until every VM is
restored (copy).

    .venv/bin/python benchmarks/instant.py [--out benchmarks/results/instant.md] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from storage.backup import backup  # noqa: E402
from storage.errors import StorageError  # noqa: E402
from storage.instant import hydrate, instant_restore, zero_runs  # noqa: E402
from storage.repository import Repository  # noqa: E402
from storage.restore import restore  # noqa: E402
from storage.serve import Address, Serving  # noqa: E402
from storage.sources.rbd import load_bindings  # noqa: E402
from storage.targets.migration import RbdMigration  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
CHUNK = 4 * MiB
LIFEBOAT = str(Path(sys.executable).with_name("lifeboat"))
LOOPBACK = Address("127.0.0.1", 0)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_cluster(folder: Path) -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "install-ceph.sh")], check=True, capture_output=True)
    env = {**os.environ, "NO_MGR": "1", "MON_PORT": str(free_port()), "MON_V1_PORT": str(free_port())}
    subprocess.run(["bash", str(REPO / "scripts" / "ceph" / "start-ceph.sh"), str(folder), "memstore"],
                   check=True, env=env, capture_output=True)
    os.environ["CEPH_CONF"] = str(folder / "ceph.conf")


def rbd_cli(*args: str) -> None:
    subprocess.run(["rbd", *args], check=True, capture_output=True)


def make_image(path: Path, size: int, data: int, seed: int) -> int:
    """A sparse raw image of ``size`` with ``data`` bytes of random chunks spread evenly; returns data bytes."""
    chunks = size // CHUNK
    every = max(1, chunks // max(1, data // CHUNK))
    rng = random.Random(seed)
    written = 0
    with open(path, "wb") as handle:
        handle.truncate(size)
        for index in range(0, chunks, every):
            if written >= data:
                break
            handle.seek(index * CHUNK)
            handle.write(rng.randbytes(CHUNK))
            written += CHUNK
    return written


@contextmanager
def opened(name: str, read_only: bool = True) -> Iterator[Any]:
    rados, rbd = load_bindings(lambda message: StorageError(message))
    cluster = rados.Rados(conffile=os.environ["CEPH_CONF"])
    cluster.connect()
    try:
        with cluster.open_ioctx("rbd") as ioctx, rbd.Image(ioctx, name, read_only=read_only) as image:
            yield image
    finally:
        cluster.shutdown()


def first_read(name: str) -> float:
    started = time.perf_counter()
    with opened(name) as image:
        image.read(0, CHUNK)
    return time.perf_counter() - started


def read_latency(name: str, size: int, count: int = 200) -> dict[str, float]:
    rng = random.Random(7)
    times = []
    with opened(name) as image:
        for _ in range(count):
            offset = rng.randrange(size // 4096) * 4096
            started = time.perf_counter()
            image.read(offset, 4096)
            times.append(time.perf_counter() - started)
    times.sort()
    return {"median_ms": statistics.median(times) * 1000, "p95_ms": times[int(len(times) * 0.95)] * 1000}


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def one_size(work: Path, size: int, data: int, index: int) -> dict[str, Any]:
    raw = work / f"disk-{index}.img"
    data = make_image(raw, size, data, index)
    root = work / f"root-{index}"
    backup(str(root), "vm", f"file:{raw}")
    log(f"{size // GiB} GiB: instant restore")
    seen: dict[str, Any] = {}
    name = f"inst-{index}"

    def at_ready(event: dict[str, Any]) -> None:
        if event["event"] == "ready":  # called before hydration starts: the reads go to the HTTP source
            started = time.perf_counter()
            seen["first_4mib"] = first_read(name)
            seen["latency_unhydrated"] = read_latency(name, size)
            seen["reads"] = time.perf_counter() - started

    result = instant_restore(str(root), "vm", "latest", f"rbd:rbd/{name}", listen=LOOPBACK, events=at_ready)
    hydration = result.seconds - result.ready_seconds - seen["reads"]  # execute + commit + sparsify
    rbd_cli("rm", "--no-progress", f"rbd/{name}")
    log(f"{size // GiB} GiB: full restore")
    full = restore(str(root), "vm", "latest", f"rbd:rbd/full-{index}", sync=True)
    rbd_cli("rm", "--no-progress", f"rbd/full-{index}")
    log(f"{size // GiB} GiB: rbd import")
    imported, _ = timed(lambda: rbd_cli("import", "--no-progress", str(raw), f"rbd/imp-{index}"))
    plain = read_latency(f"imp-{index}", size)
    rbd_cli("rm", "--no-progress", f"rbd/imp-{index}")
    raw.unlink()
    shutil.rmtree(root)
    return {
        "size": size, "data": data, "ready_seconds": result.ready_seconds, "first_4mib_seconds": seen["first_4mib"],
        "hydration_seconds": hydration, "hydration_mib_s": data / MiB / hydration,
        "full_restore_seconds": full.seconds, "full_restore_mib_s": data / MiB / full.seconds,
        "rbd_import_seconds": imported, "rbd_import_mib_s": data / MiB / imported,
        "latency_unhydrated": seen["latency_unhydrated"], "latency_plain": plain,
    }


def ranged_gets(url: str, size: int, parallel: int) -> float:
    parts = urlsplit(url)
    offsets = list(range(0, size, CHUNK))

    def worker(mine: list[int]) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        for offset in mine:
            connection.request("GET", parts.path, headers={"Range": f"bytes={offset}-{offset + CHUNK - 1}"})
            response = connection.getresponse()
            response.read()
            assert response.status == 206
        connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(worker, [offsets[i::parallel] for i in range(parallel)]))
    return time.perf_counter() - started


class _RawFile(BaseHTTPRequestHandler):
    """The baseline source: a raw file with Range and HEAD and nothing else (no chunks, no hashes)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    path_on_disk = ""

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.answer(body=False)

    def do_GET(self) -> None:
        self.answer(body=True)

    def answer(self, body: bool) -> None:
        size = os.path.getsize(self.path_on_disk)
        first, _, last = (self.headers.get("Range") or f"bytes=0-{size - 1}")[6:].partition("-")
        start, end = int(first), min(int(last or size - 1), size - 1)
        self.send_response(206 if self.headers.get("Range") else 200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if body:
            with open(self.path_on_disk, "rb") as handle:
                handle.seek(start)
                self.wfile.write(handle.read(end - start + 1))


def execute_from(url: str, name: str) -> float:
    """Seconds of ``rbd migration execute`` (the CLI, another process) of a fresh import from ``url``."""
    spec = json.dumps({"type": "raw", "stream": {"type": "http", "url": url}})
    rbd_cli("migration", "prepare", "--import-only", "--source-spec", spec, f"rbd/{name}")
    seconds, _ = timed(lambda: rbd_cli("migration", "execute", "--no-progress", f"rbd/{name}"))
    rbd_cli("migration", "commit", "--no-progress", f"rbd/{name}")
    rbd_cli("rm", "--no-progress", f"rbd/{name}")
    return seconds


def serve_throughput(work: Path) -> dict[str, Any]:
    raw = work / "serve.img"
    size = GiB
    make_image(raw, size, size, 99)
    root = work / "root-serve"
    backup(str(root), "vm", f"file:{raw}")
    results: dict[str, Any] = {"size": size}
    results["dd"], _ = timed(lambda: subprocess.run(["dd", f"if={raw}", "of=/dev/null", "bs=4M"], check=True,
                                                    capture_output=True))
    copy = work / "copy.img"
    results["cp"], _ = timed(lambda: subprocess.run(["cp", str(raw), str(copy)], check=True))
    copy.unlink()
    process = subprocess.Popen([LIFEBOAT, "store", "serve", str(root), "vm", "latest", "--http", "--nbd", "--json"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        urls = json.loads(process.stdout.readline())
        results["http_whole_get"], _ = timed(lambda: subprocess.run(
            ["curl", "-sf", "-o", "/dev/null", urls["http"]], check=True))
        results["http_4mib_ranges_1"] = ranged_gets(urls["http"], size, 1)
        results["http_4mib_ranges_4"] = ranged_gets(urls["http"], size, 4)
        out = work / "out.img"
        results["qemu_img_nbd"], _ = timed(lambda: subprocess.run(
            ["qemu-img", "convert", "-O", "raw", urls["nbd"], str(out)], check=True, capture_output=True))
        out.unlink()
        results["qemu_img_file"], _ = timed(lambda: subprocess.run(
            ["qemu-img", "convert", "-O", "raw", str(raw), str(out)], check=True, capture_output=True))
        out.unlink()
        results["execute_from_lifeboat"] = execute_from(urls["http"], "exec-lifeboat")
    finally:
        process.terminate()
        process.wait(30)
    handler = type("RawFile", (_RawFile,), {"path_on_disk": str(raw)})
    plain = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    try:
        results["execute_from_raw_file"] = execute_from(f"http://127.0.0.1:{plain.server_port}/disk.raw",
                                                        "exec-raw")
    finally:
        plain.shutdown()
        plain.server_close()
    raw.unlink()
    shutil.rmtree(root)
    return results


def fleet(work: Path, count: int, data: int) -> dict[str, Any]:
    """Every VM made usable first (all images exist at once), then hydrated one by one; against full restores.

    An image that is only prepared holds no data yet (its zero chunks are zero writes), so the whole fleet fits
    the memstore OSD; each image is removed after it was hydrated (or restored), which does not change the
    times of the others.
    """
    size = GiB
    raw = work / "fleet.img"
    make_image(raw, size, data, 5)
    roots = []
    for index in range(count):
        root = work / f"fleet-{index}"
        backup(str(root), "vm", f"file:{raw}")
        roots.append(root)
    raw.unlink()
    log(f"fleet of {count}: instant")
    started = time.perf_counter()
    usable = []
    with ExitStack() as everything:
        prepared = []
        for index, root in enumerate(roots):
            one = everything.enter_context(ExitStack())
            serving = one.enter_context(Serving(str(root), "vm", "latest", http=LOOPBACK, zero_damaged=True))
            migration = one.enter_context(RbdMigration(f"rbd:rbd/fleet-i-{index}"))
            revision = Repository.open(str(root), "vm").resolve("latest")
            migration.prepare(serving.urls["http"], zero_runs(revision))
            migration.probe()
            usable.append(time.perf_counter() - started)
            prepared.append((one, migration, index))
        all_usable = time.perf_counter() - started
        for one, migration, index in prepared:
            hydrate(migration, lambda done, total: None)
            migration.commit()
            one.close()
            rbd_cli("rm", "--no-progress", f"rbd/fleet-i-{index}")
        all_hydrated = time.perf_counter() - started
    log(f"fleet of {count}: copy")
    elapsed, restored = 0.0, []
    for index, root in enumerate(roots):
        began = time.perf_counter()
        restore(str(root), "vm", "latest", f"rbd:rbd/fleet-c-{index}")
        elapsed += time.perf_counter() - began
        restored.append(elapsed)
        rbd_cli("rm", "--no-progress", f"rbd/fleet-c-{index}")  # not timed: it only makes room in the OSD
    for root in roots:
        shutil.rmtree(root)
    return {"vms": count, "size": size, "data": data, "instant_all_usable": all_usable,
            "instant_first_usable": usable[0], "instant_all_hydrated": all_hydrated,
            "copy_first_restored": restored[0], "copy_all_restored": restored[-1]}


def render(sizes: list[dict[str, Any]], serve: dict[str, Any], fleet_result: dict[str, Any]) -> str:
    lines = [
        "# Instant restore benchmark",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, one run; single-node memstore Ceph on "
        "loopback, 2 cores shared with other work. Engine in process (no interpreter start). Images hold 1 GiB of "
        "random data in 4 MiB chunks spread over the disk, zeros elsewhere.",
        "",
        "| image | usable (ready) | first 4 MiB read | hydration | full restore (usable at end) | rbd import "
        "| hydration / rbd import | 4 KiB read unhydrated (median, p95) | 4 KiB read plain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sizes:
        lines.append(
            f"| {r['size'] // GiB} GiB | {r['ready_seconds']:.2f} s | {r['first_4mib_seconds'] * 1000:.0f} ms "
            f"| {r['hydration_seconds']:.2f} s ({r['hydration_mib_s']:.0f} MiB/s) "
            f"| {r['full_restore_seconds']:.2f} s ({r['full_restore_mib_s']:.0f} MiB/s) "
            f"| {r['rbd_import_seconds']:.2f} s ({r['rbd_import_mib_s']:.0f} MiB/s) "
            f"| {r['hydration_mib_s'] / r['rbd_import_mib_s']:.2f}x "
            f"| {r['latency_unhydrated']['median_ms']:.2f} / {r['latency_unhydrated']['p95_ms']:.2f} ms "
            f"| {r['latency_plain']['median_ms']:.2f} / {r['latency_plain']['p95_ms']:.2f} ms |")
    mib = serve["size"] / MiB
    lines += [
        "",
        f"HTTP source (`lifeboat store serve`, {mib:.0f} MiB of random data, verified chunks) against the raw file:",
        "",
        "| read | seconds | MiB/s |",
        "|---|---:|---:|",
    ]
    for key, label in (("dd", "dd if=raw of=/dev/null bs=4M (page cache)"), ("cp", "cp raw copy"),
                       ("http_whole_get", "curl: one GET of the whole disk"),
                       ("http_4mib_ranges_1", "4 MiB ranged GETs, one at a time (keep-alive)"),
                       ("http_4mib_ranges_4", "4 MiB ranged GETs, four at a time"),
                       ("qemu_img_file", "qemu-img convert from the raw file"),
                       ("qemu_img_nbd", "qemu-img convert from the NBD export"),
                       ("execute_from_lifeboat", "rbd migration execute (CLI) from lifeboat store serve"),
                       ("execute_from_raw_file", "rbd migration execute (CLI) from a plain raw-file range server")):
        lines.append(f"| {label} | {serve[key]:.2f} | {mib / serve[key]:.0f} |")
    f = fleet_result
    lines += [
        "",
        f"Fleet: {f['vms']} VMs of {f['size'] // GiB} GiB ({f['data'] // MiB} MiB of data each), one after another:",
        "",
        "| | seconds |",
        "|---|---:|",
        f"| instant: first VM usable | {f['instant_first_usable']:.1f} |",
        f"| instant: every VM usable | {f['instant_all_usable']:.1f} |",
        f"| instant: every VM hydrated | {f['instant_all_hydrated']:.1f} |",
        f"| copy (full restores): first VM restored | {f['copy_first_restored']:.1f} |",
        f"| copy (full restores): every VM restored | {f['copy_all_restored']:.1f} |",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "instant.md")
    parser.add_argument("--quick", action="store_true", help="1 GiB only, a fleet of 8")
    args = parser.parse_args()
    plan = [(GiB, GiB)] if args.quick else [(GiB, GiB), (4 * GiB, GiB), (16 * GiB, GiB)]
    with tempfile.TemporaryDirectory(prefix="lifeboat-instant-bench-", dir="/tmp") as folder:
        work = Path(folder)
        start_cluster(work / "ceph")
        try:
            sizes = [one_size(work, size, data, index) for index, (size, data) in enumerate(plan)]
            log("HTTP source throughput")
            serve = serve_throughput(work)
            fleet_result = fleet(work, 8 if args.quick else 40, 64 * MiB if args.quick else 256 * MiB)
        finally:
            subprocess.run(["bash", str(REPO / "scripts" / "ceph" / "stop-ceph.sh"), str(work / "ceph")],
                           check=False, capture_output=True)
    report = render(sizes, serve, fleet_result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps({"sizes": sizes, "serve": serve, "fleet": fleet_result},
                                                        indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
