"""File-level access benchmark: list a directory and fetch a 10 MiB file from a revision of a large disk.

Builds sparse GPT + ext4 images (default 4 GiB and 40 GiB; the filesystem spans the whole disk, the files
are a small tree plus one 10 MiB file), backs each up with the engine, then opens the latest revision
through the chunk stream and times (a) opening the disk and listing a directory, (b) reading the 10 MiB
file. Reports seconds and how many chunks each step fetched against the chunks the revision stores.
Each measurement runs in a fresh process so nothing is cached between steps.

    .venv/bin/python benchmarks/files.py [--sizes 4G,40G] [--out benchmarks/results/files.md]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GiB = 1 << 30
MiB = 1 << 20

PROBE = r"""
import json, sys, time
from storage.files import open_disk
from storage.repository import Repository
from storage.stream import RevisionStream
root, vm = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
repo = Repository.open(root, vm)
revision = repo.resolve("latest")
stream = RevisionStream(repo, revision)
disk = open_disk(stream)
names = [e.name for e in disk.list_dir("/p1/srv/www")]
t1 = time.perf_counter()
listed_chunks = stream.chunks_fetched
with disk.open_file("/p1/srv/big-10MiB.bin") as handle:
    size = len(handle.read())
t2 = time.perf_counter()
print(json.dumps({"list_seconds": t1 - t0, "list_chunks": listed_chunks, "entries": len(names),
                  "get_seconds": t2 - t1, "get_chunks": stream.chunks_fetched - listed_chunks,
                  "file_bytes": size, "stored_chunks": sum(1 for c in revision.chunks if c),
                  "total_chunks": len(revision.chunks)}))
"""


def parse_size(text: str) -> int:
    return int(text[:-1]) * GiB if text.upper().endswith("G") else int(text)


def build_image(workdir: Path, size: int) -> Path:
    image = workdir / f"files-{size // GiB}G.img"
    if image.exists():
        return image
    src = workdir / "files-tree"
    shutil.rmtree(src, ignore_errors=True)
    rng = random.Random(7)
    for n in range(200):
        folder = src / "srv" / "www" if n % 2 else src / "etc" / f"conf{n % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{n:03d}.txt").write_bytes(rng.randbytes(rng.randint(100, 50_000)))
    (src / "srv" / "big-10MiB.bin").write_bytes(rng.randbytes(10 * MiB))
    with open(image, "wb") as handle:
        handle.truncate(size)
    layout = "label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
    subprocess.run(["sfdisk", "-q", str(image)], input=layout, text=True, check=True)
    blocks = (size - 2 * MiB) // 4096
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-b", "4096", "-d", str(src), "-E", "offset=1048576", str(image), str(blocks)],
        check=True,
    )
    return image


def measure(workdir: Path, size: int) -> dict[str, float]:
    image = build_image(workdir, size)
    root = workdir / f"files-root-{size // GiB}G"
    shutil.rmtree(root, ignore_errors=True)
    lifeboat = str(Path(sys.executable).with_name("lifeboat"))
    started = time.perf_counter()
    subprocess.run(
        [lifeboat, "store", "backup", str(root), "vm", f"file:{image}", "--json"], check=True, capture_output=True
    )
    backup_seconds = time.perf_counter() - started
    subprocess.run(["sync"], check=True)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(root), "vm"], check=True, capture_output=True, text=True, cwd=HERE.parent
    )
    result = json.loads(done.stdout)
    result["image_gib"] = size / GiB
    result["backup_seconds"] = backup_seconds
    return result


def render(results: list[dict[str, float]]) -> str:
    lines = [
        "# File-level access benchmark",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, one run, each probe in a fresh process.",
        "GPT + ext4 spanning the whole (sparse) image; a tree of 200 small files and one 10 MiB file.",
        "'open + list' includes reading the partition table and superblock and listing /p1/srv/www.",
        "",
        "| image | stored chunks | open + list s | chunks read | fetch 10 MiB s | chunks read | target < 1 s |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ok = r["list_seconds"] < 1 and r["get_seconds"] < 1
        lines.append(
            f"| {r['image_gib']:.0f} GiB | {r['stored_chunks']:.0f} of {r['total_chunks']:.0f} "
            f"| {r['list_seconds']:.3f} | {r['list_chunks']:.0f} | {r['get_seconds']:.3f} "
            f"| {r['get_chunks']:.0f} | {'PASS' if ok else 'FAIL'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4G,40G")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "files.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = [measure(args.work, parse_size(s)) for s in args.sizes.split(",")]
    report = render(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
