"""S3 repositories: backup and restore of the benchmark image into a bucket of radosgw, against a folder and
plain boto3 puts of the same bytes.

Starts a throw-away memstore cluster (benchmarks/rados.py's) with Ceph's S3 gateway on a free port
(scripts/ceph/install-radosgw.sh finds or unpacks it), a user and the bucket ``backups``, and measures each from a
fresh start: ``lifeboat store backup`` / ``restore`` with a folder root and with ``s3://backups/bench``, and the
limit: the chunk bytes as stored (read from the folder repository) put with plain boto3 (8 threads, what the
engine runs) and read back, with no hashing or compression.

    .venv/bin/python benchmarks/s3.py [--size 2G] [--out benchmarks/results/s3.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from benchlib import log, parse_size  # noqa: E402
from diskimage import build_disk_image  # noqa: E402
from rados import free_port, lifeboat, start_cluster  # noqa: E402

MiB = 1 << 20
KEY, SECRET = "bench", "bench-secret"


def start_radosgw(folder: Path, env: dict[str, str]) -> tuple[dict[str, str], int]:
    found = subprocess.run(["bash", str(REPO / "scripts" / "ceph" / "install-radosgw.sh")], capture_output=True,
                           text=True, check=False)
    binary = found.stdout.strip().splitlines()[-1]
    conf = env["LIFEBOAT_STORE_CEPH_CONF"]
    for option in ("osd_pool_default_pg_num", "osd_pool_default_pgp_num"):
        subprocess.run(["ceph", "--conf", conf, "config", "set", "global", option, "8"], check=True)
    keyring = subprocess.run(["ceph", "--conf", conf, "auth", "get-or-create", "client.rgw.a", "mon", "allow rw",
                              "osd", "allow rwx"], check=True, capture_output=True, text=True).stdout
    with open(folder / "keyring", "a") as file:
        file.write("\n" + keyring)
    port = free_port()
    (folder / "rgw.a").mkdir(exist_ok=True)
    with open(conf, "a") as file:
        file.write(f"\n[client.rgw.a]\nrgw data = {folder}/rgw.a\nrgw frontends = beast endpoint=127.0.0.1:{port}\n")
    rgw_env = {**env, "LD_LIBRARY_PATH": str(Path(binary).parents[1] / "lib" / "x86_64-linux-gnu")}
    subprocess.run([binary, "--conf", conf, "-n", "client.rgw.a"], env=rgw_env, check=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 - our loopback endpoint
            break
        except OSError:
            time.sleep(0.2)
    pid = int((folder / "run" / "client.rgw.a.pid").read_text())
    subprocess.run(["radosgw-admin", "--conf", conf, "user", "create", "--uid=bench", "--display-name=bench",
                    f"--access-key={KEY}", f"--secret={SECRET}"], check=True, capture_output=True)
    s3_env = {**env, "LIFEBOAT_STORE_S3_ENDPOINT": url, "LIFEBOAT_STORE_S3_ACCESS_KEY": KEY,
              "LIFEBOAT_STORE_S3_SECRET_KEY": SECRET}
    client(s3_env).create_bucket(Bucket="backups")
    return s3_env, pid


def client(env: dict[str, str]):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=env["LIFEBOAT_STORE_S3_ENDPOINT"], aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))


def plain(env: dict[str, str], chunks_folder: Path) -> tuple[float, float, int, int]:
    s3 = client(env)
    files = [Path(d) / f for d, _, fs in os.walk(chunks_folder) for f in fs if not f.startswith(".")]
    datas = [p.read_bytes() for p in files]
    with ThreadPoolExecutor(8) as pool:
        started = time.perf_counter()
        list(pool.map(lambda n: s3.put_object(Bucket="backups", Key=f"plain/{n}", Body=datas[n]), range(len(datas))))
        write = time.perf_counter() - started
        started = time.perf_counter()
        list(pool.map(lambda n: s3.get_object(Bucket="backups", Key=f"plain/{n}")["Body"].read(),
                      range(len(datas))))
        read = time.perf_counter() - started
        list(pool.map(lambda n: s3.delete_object(Bucket="backups", Key=f"plain/{n}"), range(len(datas))))
    return write, read, sum(map(len, datas)), len(datas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2G")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    image, _ = build_disk_image(args.work, parse_size(args.size))
    size = image.stat().st_size
    scratch = Path(tempfile.mkdtemp(prefix="lbsb-", dir="/tmp"))
    pid = 0
    try:
        env = start_cluster(scratch / "c")
        env, pid = start_radosgw(scratch / "c", env)
        local = scratch / "repo"
        log("backup to a folder")
        t_local, b_local = lifeboat(env, "store", "backup", str(local), "vm", f"file:{image}")
        log("restore from a folder")
        r_local, _ = lifeboat(env, "store", "restore", str(local), "vm", "latest", str(scratch / "l.img"))
        os.unlink(scratch / "l.img")
        log("plain boto3 put / get of the same stored bytes")
        w_plain, rd_plain, stored, count = plain(env, local / "vm" / "chunks")
        log("backup to S3")
        t_s3, b_s3 = lifeboat(env, "store", "backup", "s3://backups/bench", "vm", f"file:{image}")
        log("restore from S3")
        r_s3, _ = lifeboat(env, "store", "restore", "s3://backups/bench", "vm", "latest", str(scratch / "s.img"))
        os.unlink(scratch / "s.img")
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            time.sleep(2)
        subprocess.run(["bash", str(REPO / "scripts" / "ceph" / "stop-ceph.sh"), str(scratch / "c")],
                       capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)

    def rate(nbytes: int, seconds: float) -> str:
        return f"{nbytes / MiB / seconds:.0f} MiB/s"

    rows = [
        ("backup to a folder", t_local, rate(size, t_local)),
        ("backup to s3://backups (radosgw)", t_s3, rate(size, t_s3)),
        (f"plain boto3 put_object of the {count} stored chunks ({stored / MiB:.0f} MiB), 8 threads", w_plain,
         rate(stored, w_plain)),
        ("restore from a folder", r_local, rate(size, r_local)),
        ("restore from s3://backups", r_s3, rate(size, r_s3)),
        ("plain boto3 get_object of the same chunks, 8 threads", rd_plain, rate(stored, rd_plain)),
    ]
    lines = [f"# S3 repositories ({size / MiB:.0f} MiB benchmark image, radosgw on a memstore OSD, this machine)", "",
             "| what | seconds | rate (image bytes; plain: stored bytes) |", "|---|---|---|"]
    lines += [f"| {what} | {seconds:.2f} | {speed} |" for what, seconds, speed in rows]
    lines += ["", f"- backup to S3 vs plain boto3 puts of its bytes: {w_plain / t_s3:.2f}x the limit's speed; "
              f"vs a folder: {t_local / t_s3:.2f}x",
              f"- restore from S3 vs plain gets: {rd_plain / r_s3:.2f}x; vs a folder: {r_local / r_s3:.2f}x",
              f"- bytes written: folder {b_local['bytes_written']}, S3 {b_s3['bytes_written']} (the same chunks)",
              "- times are whole `lifeboat` processes (start-up and connecting included); radosgw, the OSD and the "
              "engine share the machine's 2 cores"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
