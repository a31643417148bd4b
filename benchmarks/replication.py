"""Replication over loopback HTTP against a plain HTTP download of the same chunk files (the limit).

    .venv/bin/python benchmarks/replication.py [--size 2G] [--repeat 2] [--threads 8] \
        [--out benchmarks/results/replication.md]

A portal (its own SQLite database and storage root, served by werkzeug's threaded server in a process of its
own) holds a backup of the realistic 2 GiB disk image of engine.py. Measured, page cache warm on the server
side for both:

- the limit: `python -m http.server` serving the repository's chunk folder, fetched by `curl --parallel`
  (as many transfers at once as the pull uses threads), then flushed to disk (fdatasync of every file);
- `lifeboat replicate pull` of the same repository into an empty root: bearer token, the export API's batch
  endpoint (up to 16 chunks per request), every chunk decompressed and checked against its BLAKE3 before it
  is stored with fsync, manifests last;
- for information: curl fetching the same chunks from the portal one GET per chunk (no checks), which shows
  the portal's cost per request;
- after 2% of the image's 4 MiB blocks changed and a second backup: the second pull's bytes moved, against
  the whole repository.

The replica is checked once (untimed): `lifeboat store verify` clean and a restore of the latest revision
identical to the image. Writes a markdown report and a JSON file of raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchlib import (
    BenchError,
    Command,
    find_lifeboat,
    flush_seconds,
    fmt_bytes,
    identical,
    link_as,
    log,
    parse_size,
    run_quiet,
    timed,
    warm,
)
from diskimage import build_changed_copy, build_disk_image

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
SECRET = "benchmark-only-secret-key-not-for-production"
RATIO_TARGET = 0.7
INCREMENTAL_TARGET = 0.03


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    flush: list[float] = field(default_factory=list)
    peak_rss: int = 0

    @property
    def best(self) -> float:
        return min(s + f for s, f in zip(self.seconds, self.flush, strict=True))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"server for {url} exited with {process.returncode}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise BenchError(f"{url} did not answer within 60 s")


def portal_env(work: Path) -> dict[str, str]:
    return {"LIFEBOAT_DATABASE_URL": f"sqlite:///{work / 'portal.db'}", "LIFEBOAT_STORAGE_ROOT": str(work / "root"),
            "LIFEBOAT_SECRET_KEY": SECRET, "LIFEBOAT_VAR": str(work / "var")}


def set_up_portal(work: Path) -> tuple[str, str]:
    """A fresh database (migrations), one organisation, one VM, an admin and an export token."""
    os.environ.update(portal_env(work))
    sys.path.insert(0, str(PROJECT))
    from flask_migrate import upgrade

    from portal.app import create_app
    from portal.extensions import db
    from portal.models import VM, Organisation, User
    from portal.services.tokens import create_token

    app = create_app()
    with app.app_context():
        upgrade()
        org = Organisation(slug="acme", name="Acme")
        vm = VM(organisation=org, name="bench-vm", environment="production", size_bytes=2 << 30)
        admin = User(email="admin@acme.example", name="admin", role="customer_admin", organisation=org)
        admin.set_password("bench")
        db.session.add_all([org, vm, admin])
        db.session.commit()
        _, secret = create_token(admin, ["export:read"], name="benchmark")
        repository = vm.repository_name
        db.engine.dispose()
    return repository, secret


def serve_portal(port: int) -> None:
    """The portal's app under werkzeug's threaded server (run in a child process)."""
    import logging

    from werkzeug.serving import WSGIRequestHandler, make_server

    from portal.app import create_app

    class KeepAlive(WSGIRequestHandler):
        # HTTP/1.1 answers; note that werkzeug's server still sends "Connection: close" after every answer (no
        # keep-alive, unlike gunicorn or nginx): one more per-request cost the batch endpoint amortises
        protocol_version = "HTTP/1.1"

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    make_server("127.0.0.1", port, create_app(), threaded=True, request_handler=KeepAlive).serve_forever()


def start(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def chunk_list(chunks: Path) -> list[str]:
    return sorted(f"{p.parent.name}/{p.name}" for p in chunks.glob("*/*") if not p.name.startswith("."))


def plain_download(base_url: str, names: list[str], dest: Path, threads: int, token: str = "") -> tuple[
        float, float, int]:
    """curl --parallel of every chunk file into ``dest``; returns (seconds, flush seconds, peak RSS).

    ``names`` are ``xx/HASH`` paths under ``base_url``; with a token, the export API's ``HASH`` URLs.
    """
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    config = dest.parent / "curl.config"
    with open(config, "w") as handle:
        if token:
            handle.write(f'header = "Authorization: Bearer {token}"\n')
        for name in names:
            path = name.split("/", 1)[1] if token else name
            handle.write(f'url = "{base_url}/{path}"\noutput = "{dest / name.replace("/", "_")}"\n')
    run = timed(Command(["curl", "-s", "-f", "--parallel", "--parallel-max", str(threads), "--config", str(config)]))
    flush = flush_seconds(dest)
    got = sum(1 for _ in dest.iterdir())
    if got != len(names):
        raise BenchError(f"curl fetched {got} of {len(names)} files")
    return run.seconds, flush, run.peak_rss


def lifeboat_pull(binary: str, url: str, token: str, repository: str, replica: Path, threads: int) -> tuple[
        float, dict[str, object], int]:
    run = timed(Command([binary, "replicate", "pull", url, "--vm", repository, str(replica), "--threads",
                         str(threads), "--no-progress", "--json"], env={"LIFEBOAT_TOKEN": token}))
    return run.seconds, json.loads(run.stdout), run.peak_rss


def repository_bytes(path: Path) -> int:
    """Bytes of a repository as stored (chunks and manifests): what a full pull has to move."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.parent.name != "quarantine"
               and not p.name.endswith("lock"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="2G")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--work", default=str(HERE / "work"))
    parser.add_argument("--out", default=str(HERE / "results" / "replication.md"))
    args = parser.parse_args()
    binary = find_lifeboat()
    if binary is None:
        raise BenchError("no lifeboat next to this python or on PATH")
    images = Path(args.work)
    image, info = build_disk_image(images, parse_size(args.size))
    changed, changed_info = build_changed_copy(image, info)
    work = images / "replication"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    repository, token = set_up_portal(work)
    root = work / "root"
    disk = work / "disk.img"
    link_as(image, disk)
    log("backing up the image into the portal's storage root (not measured)")
    run_quiet(Command([binary, "store", "backup", str(root), repository, f"file:{disk}", "--json"]))

    portal_port, plain_port = free_port(), free_port()
    portal_url, plain_url = f"http://127.0.0.1:{portal_port}", f"http://127.0.0.1:{plain_port}"
    env = {**portal_env(work), "PYTHONPATH": str(PROJECT)}
    servers = [
        start([sys.executable, str(Path(__file__).resolve()), "--serve", str(portal_port)], env=env),
        start([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(plain_port), "--directory",
               str(root / repository / "chunks")]),
    ]
    try:
        wait_for(f"{portal_url}/api/v1/export", servers[0])
        wait_for(plain_url, servers[1])
        results = measure(binary, work, repository, token, portal_url, plain_url, args, disk, changed)
    finally:
        for server in servers:
            server.terminate()
            server.wait()
    results["image"] = {"size": info.size, "describe": info.describe(),
                        "changed_blocks": len(changed_info.changed_blocks or []),
                        "blocks": info.size // (4 << 20)}
    write_report(results, Path(args.out))
    shutil.rmtree(work, ignore_errors=True)


def measure(binary: str, work: Path, repository: str, token: str, portal_url: str, plain_url: str,
            args: argparse.Namespace, disk: Path, changed: Path) -> dict[str, object]:
    root = work / "root"
    names = chunk_list(root / repository / "chunks")
    total = repository_bytes(root / repository)
    plain, pull, export_curl = Timing(), Timing(), Timing()
    documents: list[dict[str, object]] = []
    replica = work / "replica"
    for attempt in range(args.repeat):
        warm(root / repository)
        log(f"plain download, round {attempt + 1}")
        seconds, flush, rss = plain_download(plain_url, names, work / "plain", args.threads)
        plain.seconds.append(seconds)
        plain.flush.append(flush)
        plain.peak_rss = max(plain.peak_rss, rss)
        shutil.rmtree(work / "plain")
        log(f"the export API fetched by curl, round {attempt + 1}")
        seconds, flush, rss = plain_download(f"{portal_url}/api/v1/export/{repository}/chunks", names,
                                             work / "plain", args.threads, token)
        export_curl.seconds.append(seconds)
        export_curl.flush.append(flush)
        export_curl.peak_rss = max(export_curl.peak_rss, rss)
        shutil.rmtree(work / "plain")
        shutil.rmtree(replica, ignore_errors=True)
        warm(root / repository)
        log(f"lifeboat replicate pull, round {attempt + 1}")
        seconds, doc, rss = lifeboat_pull(binary, portal_url, token, repository, replica, args.threads)
        pull.seconds.append(seconds)
        pull.flush.append(flush_seconds(replica / repository / "revisions"))  # fsynced already: ~0
        pull.peak_rss = max(pull.peak_rss, rss)
        documents.append(doc)
    first = documents[-1]
    if first.get("chunks_fetched") != len(names):
        raise BenchError(f"the pull fetched {first.get('chunks_fetched')} chunks, the repository has {len(names)}")

    log("checking the replica (verify, restore, cmp; not measured)")
    verify = json.loads(run_quiet(Command([binary, "store", "verify", str(replica), repository, "--json"])))
    restored = work / "restored.img"
    run_quiet(Command([binary, "store", "restore", str(replica), repository, "latest", str(restored), "--no-sync"]))
    same = identical(restored, disk)
    restored.unlink()

    log("second backup after 2% of the blocks changed, then a second pull")
    link_as(changed, disk)
    run_quiet(Command([binary, "store", "backup", str(root), repository, f"file:{disk}", "--json"]))
    total_after = repository_bytes(root / repository)
    seconds, again, _ = lifeboat_pull(binary, portal_url, token, repository, replica, args.threads)
    verify_again = json.loads(run_quiet(Command([binary, "store", "verify", str(replica), repository, "--json"])))
    nothing_new = lifeboat_pull(binary, portal_url, token, repository, replica, args.threads)[1]
    return {
        "chunks": len(names),
        "repository_bytes": total,
        "repository_bytes_after": total_after,
        "threads": args.threads,
        "plain": asdict(plain) | {"best": plain.best},
        "pull": asdict(pull) | {"best": pull.best},
        "export_curl": asdict(export_curl) | {"best": export_curl.best},
        "pull_document": first,
        "replica_verify_clean": bool(verify.get("clean")),
        "restore_identical": same,
        "incremental": {"seconds": seconds, "document": again, "verify_clean": bool(verify_again.get("clean"))},
        "nothing_new": nothing_new,
        "machine": machine(),
    }


def machine() -> dict[str, str]:
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "nproc": str(os.cpu_count()),
            "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "python": sys.version.split()[0],
            "curl": subprocess.run(["curl", "--version"], capture_output=True, text=True,
                                   check=False).stdout.split("\n")[0].split(" (")[0]}


def write_report(results: dict[str, object], out: Path) -> None:
    plain: dict[str, object] = results["plain"]  # type: ignore[assignment]
    pull: dict[str, object] = results["pull"]  # type: ignore[assignment]
    export: dict[str, object] = results["export_curl"]  # type: ignore[assignment]
    incremental: dict[str, object] = results["incremental"]  # type: ignore[assignment]
    inc_doc: dict[str, object] = incremental["document"]  # type: ignore[assignment]
    nothing: dict[str, object] = results["nothing_new"]  # type: ignore[assignment]
    image: dict[str, object] = results["image"]  # type: ignore[assignment]
    machine_info: dict[str, str] = results["machine"]  # type: ignore[assignment]
    total = int(results["repository_bytes"])  # type: ignore[call-overload]
    total_after = int(results["repository_bytes_after"])  # type: ignore[call-overload]
    plain_best, pull_best = float(plain["best"]), float(pull["best"])  # type: ignore[arg-type]
    plain_download = min(plain["seconds"])  # type: ignore[type-var]
    ratio = plain_best / pull_best
    ratio_download = float(plain_download) / pull_best
    moved = int(inc_doc["bytes_fetched"])  # type: ignore[call-overload]
    share = moved / total_after
    rate = total / 2**20
    lines = [
        "# Replication benchmark",
        "",
        f"Measured {machine_info['date']}: {machine_info['nproc']} CPUs, Python {machine_info['python']}, "
        f"{machine_info['curl']}; load average {machine_info['load']} at the end. Best of "
        f"{len(plain['seconds'])} runs (times drift on a shared machine: quote the ratios).",  # type: ignore[arg-type]
        "",
        f"- Image: {image['describe']}",
        f"- Repository at the primary: {results['chunks']} chunks, {fmt_bytes(total)} as stored; "
        f"pulled with {results['threads']} parallel downloads over loopback HTTP.",
        "- Limit: `python -m http.server` serving the repository's chunk folder, fetched by "
        f"`curl --parallel --parallel-max {results['threads']}`, then fdatasync of every file (Lifeboat's pull "
        "fsyncs each chunk before it names it).",
        "- Lifeboat: the portal (werkzeug threaded server, SQLite) serving `/api/v1/export` with a bearer token; "
        "`lifeboat replicate pull` into an empty root, asking for up to 16 chunks per request "
        "(`POST /api/v1/export/{repository}/chunks`), every chunk decompressed and BLAKE3-checked before it "
        "is stored, manifests last.",
        "",
        "| transfer | seconds | incl. flush | MiB/s (incl. flush) | peak RSS |",
        "|---|---:|---:|---:|---:|",
        f"| plain HTTP download (curl, the limit) | {plain_download:.2f} | {plain_best:.2f} | "
        f"{rate / plain_best:.0f} | {int(plain['peak_rss']) / 1e6:.0f} MB |",  # type: ignore[call-overload]
        f"| (info) the export API one GET per chunk (portal, werkzeug), fetched by curl, unchecked | "
        f"{min(export['seconds']):.2f} | "  # type: ignore
        f"{float(export['best']):.2f} | {rate / float(export['best']):.0f} | |",  # type: ignore[arg-type]
        f"| lifeboat replicate pull | {pull_best:.2f} | {pull_best:.2f} | {rate / pull_best:.0f} | "
        f"{int(pull['peak_rss']) / 1e6:.0f} MB |",  # type: ignore[call-overload]
        "",
        f"All runs (s): plain {plain['seconds']} + flush {[round(f, 2) for f in plain['flush']]}; "  # type: ignore
        f"pull {[round(s, 2) for s in pull['seconds']]}.",  # type: ignore[attr-defined]
        "",
        "| second pull after 2% of the blocks changed | value |",
        "|---|---:|",
        f"| blocks changed | {image['changed_blocks']} of {image['blocks']} |",
        f"| revisions pulled | {len(inc_doc['revisions_pulled'])} |",  # type: ignore[arg-type]
        f"| chunks fetched | {inc_doc['chunks_fetched']} ({inc_doc['chunks_present']} already at the replica) |",
        f"| bytes moved | {fmt_bytes(moved)} |",
        f"| repository as stored | {fmt_bytes(total_after)} |",
        f"| moved / repository | {share * 100:.2f}% |",
        f"| seconds | {float(incremental['seconds']):.2f} |",  # type: ignore[arg-type]
        f"| a third pull with nothing new: chunks fetched | {nothing['chunks_fetched']} |",
        "",
        "Where the time goes (incl. flush): the portal serving the same files one GET per chunk to the same curl "
        f"costs {float(export['best']) - plain_best:+.2f} s over `http.server` (per request: werkzeug's "  # type: ignore
        "server, which closes the connection after every answer, Flask, the bearer token and the tenancy "
        f"check). The pull asks for 16 chunks per request, so it pays that {-(-int(results['chunks']) // 16)} "  # type: ignore
        f"times instead of {results['chunks']}: {pull_best - float(export['best']):+.2f} s against curl's "  # type: ignore
        "per-chunk GETs, although it decompresses and BLAKE3-checks every chunk and fsyncs it before the "
        "rename. Client and server share the same CPUs here.",
        "",
        "## Targets",
        "",
        "| target | measured | result |",
        "|---|---|---|",
        f"| pull at least {RATIO_TARGET}x the speed of the plain download (both incl. flush) | {ratio:.2f}x | "
        f"{'PASS' if ratio >= RATIO_TARGET else '**FAIL**'} |",
        f"| (info) against the download without its flush | {ratio_download:.2f}x | - |",
        f"| second pull after 2% new data moves at most {INCREMENTAL_TARGET:.0%} of the bytes | {share:.2%} | "
        f"{'PASS' if share <= INCREMENTAL_TARGET else '**FAIL**'} |",
        f"| a pull with nothing new fetches no chunk | {nothing['chunks_fetched']} | "
        f"{'PASS' if nothing['chunks_fetched'] == 0 else '**FAIL**'} |",
        f"| replica verifies clean, restore identical to the image | verify "
        f"{'clean' if results['replica_verify_clean'] else 'DAMAGE'}, restore "
        f"{'identical' if results['restore_identical'] else 'DIFFERENT'}, after the 2nd pull verify "
        f"{'clean' if incremental['verify_clean'] else 'DAMAGE'} | "
        f"{'PASS' if results['replica_verify_clean'] and results['restore_identical'] and incremental['verify_clean'] else '**FAIL**'} |",  # noqa: E501
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve_portal(int(sys.argv[2]))
    else:
        try:
            main()
        except BenchError as exc:
            log(f"error: {exc}")
            sys.exit(1)
