"""Deterministic test disk images for the benchmarks, cached under benchmarks/work/.

A backup engine's speed depends on what is in the disk: incompressible data costs compression time for
nothing, text compresses well, empty space should cost nothing at all. So the image looks like a real VM
disk: a GPT partition table, one ext4 partition about 60% full with a mix of random data, already-compressed
archives, text logs and copies of system binaries, and the rest never written (holes, i.e. zero chunks).
Everything except the copied system files (which depend on what is installed) comes from a seeded PRNG.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import random
import shutil
import stat
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchlib import MIB, BenchError, ensure_tool, log, size_label

FORMAT_VERSION = 1  # bump when the content recipe changes, so cached images are rebuilt
PART_OFFSET = MIB  # first partition starts at 1 MiB (sector 2048), as partitioning tools do
FS_BLOCK = 4096
CHANGE_BLOCK = 4 * MIB  # the unit the incremental benchmark changes (the engine's chunk size)
FIXED_TIME = 1_700_000_000  # mtime of generated files and mkfs's clock, for reproducible images
DISK_GUID = "8F3B7A52-6C1D-4E0B-9A1F-2B5C7D9E0A11"
PART_GUID = "1C6A2E4F-3B5D-4F7A-8C9E-0D1F2A3B4C5D"
FS_UUID = "5b2f0c3e-7a1d-4c6b-9e8f-1a2b3c4d5e6f"
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

# Share of the filesystem content per kind; the content fills FILL of the partition.
FILL = 0.60
MIX = {"random": 0.30, "compressed": 0.10, "logs": 0.20, "binaries": 0.40}


@dataclass
class ImageInfo:
    """What is in an image, recorded next to it so a cached image can be described in the report."""

    path: str
    size: int
    seed: int
    content: dict[str, int] = field(default_factory=dict)  # bytes of file data per kind
    files: dict[str, int] = field(default_factory=dict)  # number of files per kind
    allocated: int = 0  # bytes allocated by the image file (the rest are holes)
    changed_blocks: list[int] = field(default_factory=list)  # for the changed copy: 4 MiB block indexes
    change_bytes: int = 0

    def describe(self) -> str:
        """One line for the report."""
        total = sum(self.content.values())
        parts = ", ".join(f"{kind} {v / MIB:.0f} MiB" for kind, v in self.content.items())
        return (
            f"{self.size / (1 << 30):g} GiB raw image, GPT + one ext4 partition holding "
            f"{total / MIB:.0f} MiB of files ({parts}); {self.allocated / MIB:.0f} MiB allocated, rest holes"
        )


def _info_path(image: Path) -> Path:
    return image.with_suffix(".json")


def load_info(image: Path) -> ImageInfo | None:
    """The recorded description of a cached image, or None when there is no complete cached image."""
    meta = _info_path(image)
    if not (image.exists() and meta.exists()):
        return None
    return ImageInfo(**json.loads(meta.read_text()))


def _save_info(image: Path, info: ImageInfo) -> None:
    info.allocated = image.stat().st_blocks * 512
    _info_path(image).write_text(json.dumps(asdict(info), indent=2) + "\n")


# --- content generators -------------------------------------------------------------------------------------

_SERVICES = [
    "sshd",
    "nginx",
    "postgres",
    "systemd",
    "cron",
    "kernel",
    "dockerd",
    "app-api",
    "redis",
    "haproxy",
]
_MESSAGES = [
    "Accepted publickey for deploy from {ip} port {n} ssh2",
    'GET /api/v1/orders/{n} HTTP/1.1" 200 {m} "-" "python-requests/2.31"',
    "checkpoint complete: wrote {n} buffers; sync files={m}, longest={m}.{n} s",
    "Started Session {n} of user app.",
    "connection reset by peer (fd={m}) while reading upstream, client: {ip}",
    "INFO worker[{m}] job {n} finished in {m} ms queue=default",
    "WARN slow query ({m} ms): SELECT * FROM invoices WHERE customer_id = {n}",
    "ERROR cache miss storm: key=session:{n} backend={ip}",
    'audit: type=1400 apparmor="ALLOWED" operation="open" pid={n} comm="worker"',
    "DHCPACK on {ip} to 52:54:00:{m:02x}:{n:02x}:7e via eth0",
]


def log_text(rng: random.Random, nbytes: int) -> bytes:
    """Syslog-like text (timestamps, hosts, ids vary): compresses like real logs, not like repeated lines.

    Lines are made in batches with rng.choices so generating hundreds of MiB takes seconds, not minutes.
    """
    out: list[str] = []
    size, clock = 0, FIXED_TIME
    hosts = [f"vm-{i:03d}" for i in range(12)]
    while size < nbytes:
        batch = 4096
        svcs = rng.choices(_SERVICES, k=batch)
        msgs = rng.choices(_MESSAGES, k=batch)
        hs = rng.choices(hosts, k=batch)
        lines = []
        for svc, msg, host in zip(svcs, msgs, hs, strict=True):
            clock += rng.random() < 0.3
            n, m = rng.getrandbits(16), rng.getrandbits(8)
            text = msg.format(ip=f"10.{m}.{n >> 8}.{n & 255}", n=n, m=m)
            lines.append(f"{clock} {host} {svc}[{n}]: {text} req={rng.getrandbits(32):08x}\n")
        chunk = "".join(lines)
        out.append(chunk)
        size += len(chunk)
    return "".join(out).encode()[:nbytes]


def _random_sizes(rng: random.Random, budget: int, lo: int, hi: int) -> list[int]:
    """File sizes spread log-uniformly between lo and hi, summing to `budget`."""
    sizes: list[int] = []
    while budget > 0:
        size = min(budget, int(lo * (hi / lo) ** rng.random()))
        sizes.append(size)
        budget -= size
    return sizes


def _system_files(rng: random.Random) -> list[Path]:
    """Regular files of /usr/bin and /usr/lib in a seeded random order (the real binaries of this host)."""
    found: list[Path] = []
    for top in ("/usr/bin", "/usr/lib"):
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                path = Path(root, name)
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and 1024 <= st.st_size <= 64 * MIB and os.access(path, os.R_OK):
                    found.append(path)
    rng.shuffle(found)
    return found


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (FIXED_TIME, FIXED_TIME))


def _fill_random(src: Path, rng: random.Random, budget: int) -> int:
    """Incompressible data (media, encrypted files, database pages of random ids)."""
    count = 0
    for i, size in enumerate(_random_sizes(rng, budget, 64 << 10, 64 * MIB)):
        _write(src / "home" / "user" / "data" / f"blob-{i:04d}.bin", rng.randbytes(size))
        count += 1
    return count


def _fill_logs(src: Path, rng: random.Random, budget: int) -> int:
    """Plain-text logs, highly compressible."""
    count = 0
    for i, size in enumerate(_random_sizes(rng, budget, 256 << 10, 48 * MIB)):
        _write(src / "var" / "log" / "app" / f"app-{i:04d}.log", log_text(rng, size))
        count += 1
    return count


def _fill_compressed(src: Path, rng: random.Random, budget: int, system: list[Path]) -> int:
    """Already-compressed archives (gzip of binaries, xz of logs): compressing them again gains nothing."""
    count, used, pos = 0, 0, len(system) // 2  # take binaries from the other end than _fill_binaries
    while used < budget:
        if count % 4 == 3:
            data = lzma.compress(log_text(rng, 8 * MIB), preset=1)
            name = f"logs-{count:04d}.tar.xz"
        else:
            raw = bytearray()
            while len(raw) < 6 * MIB and pos < len(system):
                raw += system[pos].read_bytes()
                pos += 1
            data = gzip.compress(bytes(raw), compresslevel=6, mtime=FIXED_TIME)
            name = f"pkg-{count:04d}.tar.gz"
        _write(src / "var" / "backups" / name, data[: budget - used])
        used += min(len(data), budget - used)
        count += 1
    return count


def _fill_binaries(src: Path, budget: int, system: list[Path]) -> tuple[int, int]:
    """Copies of this host's executables and libraries (what an OS disk mostly holds)."""
    used = count = 0
    for path in system[: len(system) // 2]:
        if used >= budget:
            break
        size = path.stat().st_size
        if used + size > budget * 1.02:
            continue
        dest = src / path.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        os.utime(dest, (FIXED_TIME, FIXED_TIME))
        used += size
        count += 1
    return used, count


def _populate(src: Path, content_bytes: int, seed: int) -> tuple[dict[str, int], dict[str, int]]:
    """Fill `src` with the content mix; return bytes and file counts per kind."""
    rng = random.Random(seed)
    system = _system_files(random.Random(seed + 1))
    budget = {kind: int(content_bytes * share) for kind, share in MIX.items()}
    files = {
        "random": _fill_random(src, rng, budget["random"]),
        "compressed": _fill_compressed(src, rng, budget["compressed"], system),
        "logs": _fill_logs(src, rng, budget["logs"]),
    }
    budget["binaries"], files["binaries"] = _fill_binaries(src, budget["binaries"], system)
    return budget, files


def _partition(image: Path, size: int) -> int:
    """Write a GPT with one Linux partition from 1 MiB to 1 MiB before the end; return its size in bytes."""
    sfdisk = ensure_tool("sfdisk", "fdisk")
    part_size = size - 2 * PART_OFFSET  # leave room for the backup GPT at the end
    script = (
        f"label: gpt\nlabel-id: {DISK_GUID}\nunit: sectors\nfirst-lba: 2048\n"
        f'start=2048, size={part_size // 512}, type={LINUX_FS_TYPE}, uuid={PART_GUID}, name="root"\n'
    )
    proc = subprocess.run([sfdisk, "-q", str(image)], input=script, text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"sfdisk failed: {proc.stderr.strip()}")
    return part_size


def _mkfs(image: Path, src: Path, part_size: int) -> None:
    """ext4 inside the partition, populated from `src` by mkfs itself (no mount, no root needed)."""
    mkfs = ensure_tool("mkfs.ext4", "e2fsprogs")
    blocks = part_size // FS_BLOCK
    opts = f"offset={PART_OFFSET},nodiscard,hash_seed={FS_UUID},root_owner=0:0"
    argv = [mkfs, "-q", "-F", "-b", str(FS_BLOCK), "-U", FS_UUID, "-E", opts, "-d", str(src), str(image)]
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(FIXED_TIME)}
    proc = subprocess.run([*argv, str(blocks)], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"mkfs.ext4 failed: {proc.stderr.strip()}")


def build_disk_image(workdir: Path, size: int, seed: int = 42) -> tuple[Path, ImageInfo]:
    """Return the cached GPT+ext4 image of `size` bytes, building it first if needed."""
    image = workdir / f"disk-{size_label(size)}-s{seed}-v{FORMAT_VERSION}.img"
    info = load_info(image)
    if info is not None:
        log(f"using cached image {image}")
        return image, info
    log(f"building {image.name} (one-off, cached afterwards)")
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = image.with_suffix(".img.tmp")
    with tempfile.TemporaryDirectory(dir=workdir, prefix="src-") as src_dir:
        src = Path(src_dir)
        with open(tmp, "wb") as f:
            f.truncate(size)
        part_size = _partition(tmp, size)
        content, files = _populate(src, int(part_size * FILL), seed)
        log(f"content generated ({sum(content.values()) / MIB:.0f} MiB); running mkfs.ext4")
        _mkfs(tmp, src, part_size)
    os.replace(tmp, image)
    info = ImageInfo(path=str(image), size=size, seed=seed, content=content, files=files)
    _save_info(image, info)
    return image, info


def build_changed_copy(
    image: Path, info: ImageInfo, fraction: float = 0.02, write_size: int = 64 << 10
) -> tuple[Path, ImageInfo]:
    """A copy of `image` with `fraction` of its 4 MiB blocks changed in place (seeded random writes).

    Each chosen block gets `write_size` random bytes at a random 4 KiB-aligned offset, like a guest that
    rewrote a few files and metadata blocks here and there since the last backup.
    """
    changed = image.with_name(image.stem + f"-changed{int(fraction * 1000)}.img")
    cached = load_info(changed)
    if cached is not None:
        return changed, cached
    rng = random.Random(info.seed + 7)
    nblocks = info.size // CHANGE_BLOCK
    blocks = sorted(rng.sample(range(nblocks), max(1, round(nblocks * fraction))))
    tmp = changed.with_suffix(".img.tmp")
    subprocess.run(["cp", "--sparse=always", str(image), str(tmp)], check=True)
    with open(tmp, "r+b") as f:
        for block in blocks:
            f.seek(block * CHANGE_BLOCK + rng.randrange(0, CHANGE_BLOCK - write_size + 1, 4096))
            f.write(rng.randbytes(write_size))
    os.replace(tmp, changed)
    new = ImageInfo(
        path=str(changed),
        size=info.size,
        seed=info.seed,
        content=info.content,
        files=info.files,
        changed_blocks=blocks,
        change_bytes=len(blocks) * write_size,
    )
    _save_info(changed, new)
    return changed, new


def build_sparse_random_image(workdir: Path, size: int, fill: float = 0.25, seed: int = 42) -> Path:
    """A raw image where `fill` of the 4 MiB blocks hold random data and the rest are holes.

    Used to show peak memory does not grow with image size: data blocks cost hashing and compression,
    holes cost bookkeeping only, and both scale with size.
    """
    image = workdir / f"sparse-{size_label(size)}-f{int(fill * 100)}-s{seed}.img"
    if image.exists():
        return image
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    tmp = image.with_suffix(".img.tmp")
    with open(tmp, "wb") as f:
        f.truncate(size)
        for block in range(size // CHANGE_BLOCK):
            if rng.random() < fill:
                f.seek(block * CHANGE_BLOCK)
                f.write(rng.randbytes(CHANGE_BLOCK))
    os.replace(tmp, image)
    return image
