"""Helpers shared by the benchmarks: tool installation, timed runs, page-cache warming, sizes.

The benchmarks compare wall-clock time and peak memory of separate processes, so every measured step runs
as a child process under GNU time (`/usr/bin/time -f %M`), which reports the largest resident set of the
child (wait4 folds in the children it waited for).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

GNU_TIME = "/usr/bin/time"
MIB = 1 << 20

_apt_updated = False


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_tool(binary: str, package: str) -> str:
    """Return the path of `binary`, installing Debian `package` with apt-get when missing.

    The benchmark is meant to run with one command on a fresh machine, so it installs what it needs when it
    can (root); `apt-get update` is run once, only if a first install fails (stale or empty lists).
    """
    global _apt_updated
    found = shutil.which(binary) or (binary if os.path.isabs(binary) and os.access(binary, os.X_OK) else None)
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError(f"{binary} is missing; install the Debian package {package!r} (needs root)")
    log(f"installing {package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0 and not _apt_updated:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        _apt_updated = True
        subprocess.run(install, env=env, capture_output=True, check=False)
    found = shutil.which(binary) or (binary if os.access(binary, os.X_OK) else None)
    if not found:
        raise BenchError(f"could not install {package!r} (for {binary})")
    return found


@dataclass
class Run:
    """One measured child process."""

    seconds: float
    peak_rss: int  # bytes
    stdout: str
    stderr: str


@dataclass
class Command:
    """A command line with its working directory and extra environment."""

    argv: list[str]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


def timed(cmd: Command) -> Run:
    """Run `cmd` under GNU time; return wall seconds and peak RSS. A non-zero exit is an error.

    Dirty pages of earlier steps are flushed first (untimed) so one contender's write-back does not land in
    the next one's measurement.
    """
    os.sync()
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rss_file:
        argv = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *cmd.argv]
        start = time.perf_counter()
        proc = subprocess.run(
            argv, cwd=cmd.cwd, env={**os.environ, **cmd.env}, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - start
        rss_lines = [line for line in Path(rss_file.name).read_text().splitlines() if line.strip().isdigit()]
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise BenchError(f"{' '.join(cmd.argv)} exited {proc.returncode}: {' | '.join(tail)}")
    peak = int(rss_lines[-1]) * 1024 if rss_lines else 0
    return Run(seconds=seconds, peak_rss=peak, stdout=proc.stdout, stderr=proc.stderr)


def run_quiet(cmd: Command) -> str:
    """Run an unmeasured set-up step; return stdout, raise with its stderr on failure."""
    proc = subprocess.run(
        cmd.argv, cwd=cmd.cwd, env={**os.environ, **cmd.env}, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd.argv)} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def warm(*paths: Path) -> None:
    """Read files (or every file under directories) once so all contenders start with a warm page cache."""
    buf = bytearray(8 * MIB)
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for name in files:
            with open(name, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass


def du_bytes(path: Path) -> int:
    """Bytes actually allocated on disk under `path` (like `du -sB1`), counting hard links once."""
    if path.is_file():
        return path.stat().st_blocks * 512
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, f) for f in files)]:
            st = os.lstat(name)
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def flush_seconds(path: Path) -> float:
    """Seconds to fdatasync every file under `path`: the write-back a job left behind in the page cache.

    Per file rather than sync(2), so other processes' dirty data on a shared machine is not counted.
    """
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    start = time.perf_counter()
    for name in files:
        fd = os.open(name, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - start


def identical(a: Path, b: Path) -> bool:
    """Byte-for-byte comparison with cmp (C speed; the files are GiB-sized)."""
    return subprocess.run(["cmp", "-s", str(a), str(b)], check=False).returncode == 0


def link_as(target: Path, link: Path) -> None:
    """Point `link` at `target`'s inode (hard link), atomically replacing what was there.

    Every contender backs up the same path, so the second backup looks like the same VM disk changed.
    """
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    os.link(target, tmp)
    os.replace(tmp, link)


def find_lifeboat() -> str | None:
    """The `lifeboat` next to the running interpreter (its venv), else the one on PATH."""
    sibling = Path(sys.executable).parent / "lifeboat"
    if sibling.exists():
        return str(sibling)
    return shutil.which("lifeboat")


def parse_size(text: str) -> int:
    """Parse sizes like 2G, 1536M, 1GiB, 4096 into bytes (binary units)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1] if t and t[-1] in units else ""
    return int(float(t[: len(t) - len(unit)]) * units[unit])


def fmt_bytes(n: float) -> str:
    """Human size in binary units, one decimal."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def size_label(n: int) -> str:
    """Short label for file names, e.g. 2G or 1536M."""
    return f"{n >> 30}G" if n % (1 << 30) == 0 else f"{n >> 20}M"


def save_report(out: Path, report: str, results: object) -> None:
    """Write the Markdown report to ``out`` and the raw results beside it as JSON, and print the report."""
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(report)
