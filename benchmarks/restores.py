"""Many restores at once: 40 VMs of 128 MiB restored by 1, 2 and 4 workers.

A worker here is what ``lifeboat worker`` runs for each restore job: one process restoring one VM after
another from a shared list (the engine's ``storage.restore.restore``, page cache warm). Measured twice:
with one engine thread per worker (the scaling test: 2 workers on 2 cores should cut the makespan by at
least 1.6x) and with the engine's default threads (aggregate throughput with 2 and 4 workers should stay
at 0.9x or more of one worker's: nothing serialises, nothing thrashes). Compared with the serial sum of
single restores and with ``cp --sparse=always`` of the same images. Restores run with ``sync=False`` like
cp; outputs are deleted between rounds.

    .venv/bin/python benchmarks/restores.py [--vms 40] [--size-mib 128] [--out benchmarks/results/restores.md]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MiB = 1 << 20


def make_images(work: Path, count: int, size: int) -> list[Path]:
    """Half random data, a quarter text, a quarter holes: realistic enough, and distinct per VM."""
    images = []
    for n in range(count):
        path = work / f"vm{n:02d}.img"
        images.append(path)
        if path.exists():
            continue
        rng = random.Random(n)
        line = f"vm{n} log line with some repeated text\n".encode()
        with open(path, "wb") as handle:
            handle.write(rng.randbytes(size // 2))
            handle.write((line * (size // 4 // len(line) + 1))[: size // 4])
            handle.truncate(size)
    return images


def backup_all(root: Path, images: list[Path]) -> None:
    from storage.backup import backup

    for n, image in enumerate(images):
        if not (root / f"vm{n:02d}").exists():
            backup(str(root), f"vm{n:02d}", f"file:{image}")


def _worker(root: str, out: str, queue: multiprocessing.Queue, threads: int | None) -> None:  # type: ignore[type-arg]
    from storage.restore import restore

    while True:
        vm = queue.get()
        if vm is None:
            return
        restore(root, vm, "latest", os.path.join(out, f"{vm}.img"), threads=threads, sync=False)


def makespan(root: Path, out: Path, vms: list[str], workers: int, threads: int | None) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    subprocess.run(["sync"], check=True)
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    for vm in vms:
        queue.put(vm)
    for _ in range(workers):
        queue.put(None)
    started = time.perf_counter()
    procs = [multiprocessing.Process(target=_worker, args=(str(root), str(out), queue, threads))
             for _ in range(workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError("a worker failed")
    return time.perf_counter() - started


def cp_time(images: list[Path], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    for image in images:
        subprocess.run(["cp", "--sparse=always", str(image), str(out / image.name)], check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=40)
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--work", type=Path, default=HERE / "work" / "restores")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "restores.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    images = make_images(args.work, args.vms, args.size_mib * MiB)
    root = args.work / "root"
    backup_all(root, images)
    for image in images:  # warm cache: source images and repository
        subprocess.run(["cat", str(image)], stdout=subprocess.DEVNULL, check=True)
    subprocess.run(["sh", "-c", f"cat {root}/*/chunks/*/* > /dev/null"], check=True)
    vms = [f"vm{n:02d}" for n in range(args.vms)]
    out = args.work / "out"
    total = args.vms * args.size_mib * MiB
    rows = []
    cp = cp_time(images, out)
    for threads, label in ((1, "1 engine thread per worker"), (None, "default engine threads")):
        single = makespan(root, out, vms[:1], 1, threads) * args.vms  # serial sum, from one restore
        times = {w: makespan(root, out, vms, w, threads) for w in (1, 2, 4)}
        rows.append({"threads": label, "serial_sum": single, **{f"w{w}": t for w, t in times.items()}})
    shutil.rmtree(out, ignore_errors=True)
    lines = [
        "# Many restores at once",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, one run. "
        f"{args.vms} VMs of {args.size_mib} MiB (half random, a quarter text, a quarter holes); page cache warm; "
        f"restores without the final flush, like cp. `cp --sparse=always` of all images: {cp:.2f} s.",
        "",
        "| engine threads | serial sum (40 x one restore) | 1 worker | 2 workers | 4 workers | 2 vs 1 worker "
        "| aggregate MB/s (1 / 2 / 4) | time vs cp (1 worker) |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        mbs = " / ".join(f"{total / r[f'w{w}'] / 1e6:.0f}" for w in (1, 2, 4))
        lines.append(f"| {r['threads']} | {r['serial_sum']:.2f} s | {r['w1']:.2f} s | {r['w2']:.2f} s "
                     f"| {r['w4']:.2f} s | {r['w1'] / r['w2']:.2f}x | {mbs} | {r['w1'] / cp:.2f}x |")
    one, default = rows
    lines += ["", f"- 2 workers vs 1 with one engine thread each: {one['w1'] / one['w2']:.2f}x (target 1.6x): "
              + ("PASS" if one["w1"] / one["w2"] >= 1.6 else "FAIL"),
              f"- default threads, aggregate throughput of 2 and 4 workers vs 1: "
              f"{default['w1'] / default['w2']:.2f}x and {default['w1'] / default['w4']:.2f}x (target 0.9x): "
              + ("PASS" if min(default["w1"] / default["w2"], default["w1"] / default["w4"]) >= 0.9 else "FAIL")]
    report = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps({"cp": cp, "rows": rows}, indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
