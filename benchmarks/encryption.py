"""Encrypted vs plain repositories: backup and restore of the benchmark disk image, and the cipher's own speed.

    .venv/bin/python benchmarks/encryption.py [--size 2G] [--repeat 3] [--out benchmarks/results/encryption.md]

The image is the one benchmarks/engine.py uses (benchmarks/diskimage.py: a GPT + ext4 disk of logs, binaries,
compressed and random files). Each round backs it up into a fresh plain repository and a fresh encrypted one
(``--key-file``), then restores each (``--no-sync``, page cache warm, as engine.py does), checked byte-identical
with cmp; plain and encrypted alternate so drift on a shared machine hits both. The fastest of ``--repeat``
rounds is reported. The limit: AES-256-GCM and keyed BLAKE3 on 4 MiB buffers in this process, on one core and
on all (the engine's threads do exactly these calls per chunk, beside reading, zstd and writing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib import (
    BenchError,
    Command,
    du_bytes,
    ensure_tool,
    find_lifeboat,
    fmt_bytes,
    identical,
    log,
    parse_size,
    timed,
    warm,
)
from diskimage import build_disk_image

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024
TARGET = 1.15  # encrypted at most 15% slower


def cipher_speed(threads: int, seconds: float = 2.0) -> dict[str, float]:
    """MiB/s of AES-256-GCM seal and open and of keyed and plain BLAKE3, on 4 MiB buffers, ``threads`` at once."""
    import blake3
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data = os.urandom(4 * MIB)
    key = os.urandom(32)
    aes = AESGCM(key)
    sealed = aes.encrypt(b"\0" * 12, data, b"aad")

    def rate(work: object) -> float:
        def loop() -> int:
            done, end = 0, time.perf_counter() + seconds
            while time.perf_counter() < end:
                work()  # type: ignore[operator]
                done += 1
            return done

        with ThreadPoolExecutor(threads) as pool:
            start = time.perf_counter()
            count = sum(pool.map(lambda _: loop(), range(threads)))
            return count * 4 / (time.perf_counter() - start)

    return {
        "aes-256-gcm seal": rate(lambda: aes.encrypt(os.urandom(12), data, b"aad")),
        "aes-256-gcm open": rate(lambda: aes.decrypt(b"\0" * 12, sealed, b"aad")),
        "blake3 keyed": rate(lambda: blake3.blake3(data, key=key).digest()),
        "blake3 plain": rate(lambda: blake3.blake3(data).digest()),
    }


def cpu_seconds() -> float:
    """User + system CPU seconds of every finished child so far (GNU time and the command it ran)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def round_trip(binary: str, work: Path, image: Path, key: Path | None) -> dict[str, float]:
    """One backup of ``image`` into a fresh repository, then its restore; seconds of each, and the repo size."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    repo = work / "repo"
    extra = ["--key-file", str(key)] if key else []
    warm(image)
    before = cpu_seconds()
    backup = timed(Command([binary, "store", "backup", str(repo), "vm", f"file:{image}", "--json", *extra]))
    backup_cpu = cpu_seconds() - before
    warm(repo)
    target = work / "restored.img"
    before = cpu_seconds()
    restore = timed(Command([binary, "store", "restore", str(repo), "vm", "latest", str(target), "--no-sync",
                             "--json", *extra]))
    restore_cpu = cpu_seconds() - before
    if not identical(target, image):
        raise BenchError(f"the restore of {image} from {'an encrypted' if key else 'a plain'} repository differs")
    result = {"backup": backup.seconds, "restore": restore.seconds, "backup_cpu": backup_cpu,
              "restore_cpu": restore_cpu, "repo_bytes": float(du_bytes(repo)),
              "backup_rss": float(backup.peak_rss), "restore_rss": float(restore.peak_rss)}
    shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2G")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "encryption.md")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    ensure_tool("/usr/bin/time", "time")
    binary = find_lifeboat()
    if binary is None:
        raise BenchError("the lifeboat command is not installed (make install)")
    size = parse_size(args.size)
    image, info = build_disk_image(args.work, size, args.seed)
    key = args.work / "bench.key"
    if not key.exists():
        from storage.keys import KeyFile

        KeyFile.create("bench").save(str(key))
    cores = os.cpu_count() or 1
    log("cipher speed")
    speed = {"1 thread": cipher_speed(1), f"{cores} threads": cipher_speed(cores)}
    rounds: dict[str, list[dict[str, float]]] = {"plain": [], "encrypted": []}
    for number in range(args.repeat):
        for kind in ("plain", "encrypted") if number % 2 == 0 else ("encrypted", "plain"):
            log(f"round {number + 1}: {kind}")
            rounds[kind].append(round_trip(binary, args.work / "enc-run", image, key if kind == "encrypted" else None))
    best = {kind: {job: min(r[job] for r in runs) for job in runs[0]} for kind, runs in rounds.items()}
    ratio = {job: best["encrypted"][job] / best["plain"][job] for job in ("backup", "restore", "backup_cpu",
                                                                           "restore_cpu")}
    gib = size / 2**30
    lines = [
        "# Encrypted vs plain repositories",
        "",
        f"{platform.node()}: {cores} cores, Python {platform.python_version()}, load before "
        f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}; fastest of {args.repeat} rounds; "
        "`benchmarks/encryption.py`.",
        "",
        f"Image: {info.describe()}.",
        "",
        "| job | plain | encrypted | encrypted / plain | CPU plain | CPU encrypted | CPU ratio | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for job in ("backup", "restore"):
        plain, sealed = best["plain"][job], best["encrypted"][job]
        cpu_plain, cpu_sealed = best["plain"][f"{job}_cpu"], best["encrypted"][f"{job}_cpu"]
        met = "met" if ratio[job] <= TARGET else "missed"
        lines.append(f"| full {job} | {plain:.2f} s ({gib / plain * 1024:.0f} MiB/s) | {sealed:.2f} s "
                     f"({gib / sealed * 1024:.0f} MiB/s) | {ratio[job]:.2f}x | {cpu_plain:.2f} s | "
                     f"{cpu_sealed:.2f} s | {ratio[f'{job}_cpu']:.2f}x | {met} (wall at most {TARGET:.2f}x) |")
    lines += [
        "",
        f"Repository: plain {fmt_bytes(best['plain']['repo_bytes'])}, encrypted "
        f"{fmt_bytes(best['encrypted']['repo_bytes'])} (72 bytes per chunk of seal). Peak RSS backup "
        f"{fmt_bytes(best['plain']['backup_rss'])} / {fmt_bytes(best['encrypted']['backup_rss'])}, restore "
        f"{fmt_bytes(best['plain']['restore_rss'])} / {fmt_bytes(best['encrypted']['restore_rss'])}.",
        "",
        "CPU = user + system seconds of the command (less sensitive than wall time to other work on a shared "
        "machine: compare the two ratios).",
        "",
        "Cipher speed on this machine (MiB/s, 4 MiB buffers; the limit of what encryption adds per chunk):",
        "",
        "| | " + " | ".join(speed) + " |",
        "|---|" + "---|" * len(speed),
    ]
    for name in next(iter(speed.values())):
        lines.append(f"| {name} | " + " | ".join(f"{s[name]:.0f}" for s in speed.values()) + " |")
    report = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"size": size, "rounds": rounds, "best": best, "ratio": ratio, "cipher_mib_s": speed}, indent=1) + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(2)
