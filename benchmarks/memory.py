"""Peak memory of a Lifeboat backup and restore must not grow with the image size.

    .venv/bin/python benchmarks/memory.py [--sizes 1G,4G] [--out benchmarks/results/memory.md]

Backs up and restores raw images of different sizes (a quarter of their 4 MiB blocks random data, the rest
holes, so the big one stays quick to make) and compares the peak RSS. A design that keeps per-chunk state
in memory, or queues without bounds, shows up here as memory growing with the size; the target is the
same ~flat figure under 300 MB for every size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from benchlib import (
    BenchError,
    Command,
    ensure_tool,
    find_lifeboat,
    fmt_bytes,
    identical,
    log,
    parse_size,
    timed,
    warm,
)
from diskimage import build_sparse_random_image

HERE = Path(__file__).resolve().parent
MEMORY_LIMIT = 300 * 10**6
GROWTH_LIMIT = 1.25  # largest image's peak RSS may be at most this times the smallest's


def measure(lifeboat: str, image: Path, scratch: Path) -> dict[str, float | int | bool]:
    """Back up `image` into a fresh repository, restore it, verify; return seconds and peak RSS of both."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    root, target = scratch / "repo", scratch / "restored.img"
    warm(image)
    log(f"backup {image.name}")
    backup = timed(Command([lifeboat, "store", "backup", str(root), "vm", f"file:{image}", "--json"]))
    warm(root)
    log(f"restore {image.name}")
    restore = timed(Command([lifeboat, "store", "restore", str(root), "vm", "latest", str(target), "--json"]))
    ok = identical(image, target)
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "size": image.stat().st_size,
        "backup_seconds": backup.seconds,
        "backup_peak_rss": backup.peak_rss,
        "restore_seconds": restore.seconds,
        "restore_peak_rss": restore.peak_rss,
        "identical": ok,
    }


def render(rows: list[dict[str, float | int | bool]], fill: float) -> str:
    """Markdown table plus the verdict."""
    lines = [
        "# Peak memory vs image size (Lifeboat)",
        "",
        f"Raw images with {fill:.0%} of their 4 MiB blocks random data, the rest holes. Peak RSS from GNU time.",
        "",
        "| image | backup s | backup peak RSS | restore s | restore peak RSS | restore identical |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {fmt_bytes(r['size'])} | {r['backup_seconds']:.2f} | {r['backup_peak_rss'] / 1e6:.0f} MB "
            f"| {r['restore_seconds']:.2f} | {r['restore_peak_rss'] / 1e6:.0f} MB "
            f"| {'yes' if r['identical'] else '**NO**'} |"
        )
    peaks = [max(r["backup_peak_rss"], r["restore_peak_rss"]) for r in rows]
    growth = peaks[-1] / peaks[0] if peaks[0] else 0.0
    ok = max(peaks) < MEMORY_LIMIT and growth <= GROWTH_LIMIT
    lines += [
        "",
        f"Largest / smallest image peak RSS: {growth:.2f}x (limit {GROWTH_LIMIT}x); highest peak "
        f"{max(peaks) / 1e6:.0f} MB (limit 300 MB): {'PASS' if ok else '**FAIL**'}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1G,4G", help="comma list of image sizes, smallest first")
    parser.add_argument("--fill", type=float, default=0.25, help="share of 4 MiB blocks holding data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "memory.md")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args(argv)

    ensure_tool("/usr/bin/time", "time")
    lifeboat = find_lifeboat()
    if lifeboat is None:
        raise BenchError("no lifeboat command next to this python or on PATH")
    rows = []
    for size in sorted(parse_size(s) for s in args.sizes.split(",")):
        image = build_sparse_random_image(args.work, size, args.fill)
        rows.append(measure(lifeboat, image, args.work / "run-memory"))
    report = render(rows, args.fill)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(2)
