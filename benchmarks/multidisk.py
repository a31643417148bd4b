"""A VM of several disks backed up as one point vs the same disks as single-disk backups (issue 14).

Four raw disks of ``--size`` each (a quarter of each 4 MiB block holds random data, the rest are holes, each
disk its own seed), then:

- **one VM**: one ``lifeboat store backup ROOT vm --disk d0=file:... --disk d1=... ...`` process (one freeze,
  one repository, one manifest of four disks);
- **four VMs**: four ``lifeboat store backup ROOT vm-N file:...`` processes, one after the other (what the
  one-disk portal would have needed, and what a peer backing up disk by disk does);
- **cp**: ``cp --sparse=always`` of the four disks (the physical limit of reading them and writing the data).

Then a second round after 8 MiB changed on every disk (incrementals). Each number is the median of
``--repeat`` runs on fresh repositories; the report gives the ratios. The VM backup must be no slower.

    .venv/bin/python benchmarks/multidisk.py [--size 256M] [--repeat 3] [--out benchmarks/results/multidisk.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from benchlib import Command, find_lifeboat, fmt_bytes, log, parse_size, save_report, timed, warm
from diskimage import build_sparse_random_image

HERE = Path(__file__).resolve().parent
DISKS = 4
CHANGE = 8 << 20


def change(disk: Path, seed: int) -> None:
    """Overwrite 8 MiB in the middle of the disk with new data (two 4 MiB blocks)."""
    import random

    with open(disk, "r+b") as handle:
        handle.seek(os.path.getsize(disk) // 2)
        handle.write(random.Random(seed).randbytes(CHANGE))


def one_vm(lifeboat: str, root: Path, disks: list[Path]) -> float:
    argv = [lifeboat, "store", "backup", str(root), "vm"]
    for n, disk in enumerate(disks):
        argv += ["--disk", f"d{n}=file:{disk}"]
    return timed(Command(argv)).seconds


def four_vms(lifeboat: str, root: Path, disks: list[Path]) -> float:
    return sum(timed(Command([lifeboat, "store", "backup", str(root), f"vm-{n}", f"file:{disk}"])).seconds
               for n, disk in enumerate(disks))


def copy_all(target: Path, disks: list[Path]) -> float:
    target.mkdir(parents=True, exist_ok=True)
    return timed(Command(["cp", "--sparse=always", *map(str, disks), str(target)])).seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", default="256M", help="size of each disk (default 256M)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "multidisk.md")
    args = parser.parse_args()
    lifeboat = find_lifeboat()
    if lifeboat is None:
        raise SystemExit("multidisk: no lifeboat command (run `make install` first)")
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="lifeboat-multidisk-") as work:
        folder = Path(work)
        disks = []
        for n in range(DISKS):
            image = build_sparse_random_image(folder / "images", size, seed=100 + n)
            disks.append(image)
        times: dict[str, list[float]] = {k: [] for k in ("vm full", "vms full", "cp", "vm incr", "vms incr")}
        for attempt in range(args.repeat):
            log(f"round {attempt + 1} of {args.repeat}")
            work_disks = []
            for n, disk in enumerate(disks):  # fresh copies: the incremental round changes them
                copy = folder / f"disk-{n}.img"
                shutil.copyfile(disk, copy)
                work_disks.append(copy)
            warm(*work_disks)
            vm_root, vms_root = folder / f"vm-{attempt}", folder / f"vms-{attempt}"
            times["vm full"].append(one_vm(lifeboat, vm_root, work_disks))
            times["vms full"].append(four_vms(lifeboat, vms_root, work_disks))
            times["cp"].append(copy_all(folder / f"cp-{attempt}", work_disks))
            for n, disk in enumerate(work_disks):
                change(disk, seed=attempt * 10 + n)
            warm(*work_disks)
            times["vm incr"].append(one_vm(lifeboat, vm_root, work_disks))
            times["vms incr"].append(four_vms(lifeboat, vms_root, work_disks))
            for path in (vm_root, vms_root, folder / f"cp-{attempt}"):
                shutil.rmtree(path, ignore_errors=True)
        median = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        f"# {DISKS} disks x {fmt_bytes(size)} (25 % data): one VM of {DISKS} disks vs {DISKS} one-disk backups",
        "",
        f"Median of {args.repeat} runs, each a separate `lifeboat store backup` process (fresh repositories).",
        "",
        "| step | seconds | ratio |",
        "|---|---:|---:|",
        f"| full: one VM of {DISKS} disks | {median['vm full']:.2f} | {median['vm full'] / median['vms full']:.2f}x "
        f"the {DISKS} backups |",
        f"| full: {DISKS} one-disk backups | {median['vms full']:.2f} | 1.00x |",
        f"| cp --sparse=always of the {DISKS} disks | {median['cp']:.2f} | "
        f"VM backup {median['vm full'] / median['cp']:.2f}x cp |",
        f"| incremental (8 MiB changed per disk): one VM | {median['vm incr']:.2f} | "
        f"{median['vm incr'] / median['vms incr']:.2f}x the {DISKS} backups |",
        f"| incremental: {DISKS} one-disk backups | {median['vms incr']:.2f} | 1.00x |",
        "",
    ]
    save_report(args.out, "\n".join(lines), {"size": size, "disks": DISKS, "runs": times, "median": median})


if __name__ == "__main__":
    main()
