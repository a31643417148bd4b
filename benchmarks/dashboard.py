"""Dashboard speed: 1,000 VMs and 100,000 backup points must render in under 100 ms, with no N+1 queries.

Why it is built this way:
- The schema comes from the real migrations (flask_migrate.upgrade), so the indexes measured are the ones that
  ship; the rows are bulk-inserted with SQLAlchemy Core (one executemany per table), since going through the ORM
  would make seeding take minutes and measure nothing useful.
- SQLite runs on a temporary file. PostgreSQL, when reachable, runs in a database this script creates
  (``lifeboat_bench``) and drops at the end, because the test suite shares the server's ``test`` database and
  must not find benchmark tables there. PostgreSQL gets an ANALYZE after the bulk load (autovacuum would do it
  within a minute in production); SQLite is measured as it ships, without ANALYZE.
- Requests go through the Flask test client, signed in through the real login form: the whole request (session,
  user loading, queries, templates) is timed, without network noise. Warm: median of 20 after a few warm-ups.
- Statements are counted with a ``before_cursor_execute`` listener; the count must not change between a page of
  10 and a page of 50 VMs, which is what "no N+1" means. The slowest statement of a request is reported, so a
  regression points at its query.

    .venv/bin/python benchmarks/dashboard.py [--vms 1000] [--points 100000] [--repeat 20] [--no-postgres]
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--out benchmarks/results/dashboard.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.engine import Connection, Engine, make_url

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the project, when run as `python benchmarks/dashboard.py`

from portal import clock  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.models import VM, BackupPoint, Disk, Organisation, Policy, ResourceGroup, SlaTier, User  # noqa: E402

TARGET_MS = 100.0
PASSWORD = "bench-password"  # noqa: S105 - a throwaway database
BENCH_DB = "lifeboat_bench"
# Share of the VMs per organisation: one big customer (the page under test), and smaller ones beside it.
ORG_SHARES = (0.6, 0.2, 0.12, 0.08)
TIERS = (
    dict(name="Premium", min_rpo_minutes=15, max_keep_hourly=48, max_keep_daily=30, max_keep_weekly=12,
         max_keep_monthly=12, restore_priority="critical", rto_minutes=60, business_critical_included=True),
    dict(name="Business", min_rpo_minutes=60, max_keep_hourly=24, max_keep_daily=14, max_keep_weekly=8,
         max_keep_monthly=6, restore_priority="high", rto_minutes=240, business_critical_included=True),
    dict(name="Basic", min_rpo_minutes=1440, max_keep_hourly=0, max_keep_daily=7, max_keep_weekly=4,
         max_keep_monthly=1, restore_priority="normal", rto_minutes=0, business_critical_included=False),
)
ENVIRONMENTS = ("production", "production", "staging", "development", "testing")


def log(message: str) -> None:
    """Progress to stderr, so stdout stays the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- seeding -----------------------------------------------------------------------------------------------

@dataclass
class World:
    """What the benchmark needs to know about the seeded data."""

    customer_email: str
    operator_email: str
    biggest_org_vms: int
    vms: int
    points: int


def seed(connection: Connection, n_vms: int, n_points: int, rng: random.Random) -> World:
    """Bulk-insert tiers, organisations, users, VMs with disks and policies, and backup points (Core inserts)."""
    from werkzeug.security import generate_password_hash

    now = clock.now()
    connection.execute(insert(SlaTier.__table__), [{**t, "created_at": now} for t in TIERS])
    tier_ids = [row[0] for row in connection.execute(text("SELECT id FROM sla_tiers ORDER BY id"))]
    orgs = [dict(slug=f"org{i}", name=f"Organisation {i}", tier_id=tier_ids[i % len(tier_ids)], created_at=now)
            for i in range(len(ORG_SHARES))]
    connection.execute(insert(Organisation.__table__), orgs)
    org_ids = [row[0] for row in connection.execute(text("SELECT id FROM organisations ORDER BY id"))]
    password_hash = generate_password_hash(PASSWORD)
    customer, operator = "admin@org0.example", "operator@lifeboat.example"
    connection.execute(insert(User.__table__), [
        dict(email=customer, name="admin", password_hash=password_hash, role="customer_admin",
             organisation_id=org_ids[0], active=True, created_at=now),
        dict(email=operator, name="operator", password_hash=password_hash, role="operator",
             organisation_id=None, active=True, created_at=now),
    ])
    connection.execute(insert(ResourceGroup.__table__),
                       [dict(organisation_id=o, name="default", created_at=now) for o in org_ids])
    groups = dict(connection.execute(text("SELECT organisation_id, id FROM resource_groups")).all())

    counts = [round(share * n_vms) for share in ORG_SHARES]
    counts[0] += n_vms - sum(counts)
    vm_rows = []
    for org_index, (org_id, count) in enumerate(zip(org_ids, counts, strict=True)):
        for n in range(count):
            vm_rows.append(dict(
                organisation_id=org_id, resource_group_id=groups[org_id], name=f"vm-{org_index}-{n:05d}",
                environment=rng.choice(ENVIRONMENTS), size_bytes=rng.randrange(5, 500) << 30, created_at=now,
                last_seen_at=now, missing_since=now - timedelta(days=2) if rng.random() < 0.01 else None,
            ))
    connection.execute(insert(VM.__table__), vm_rows)
    vms = connection.execute(text("SELECT id, environment, size_bytes FROM vms ORDER BY id")).all()
    connection.execute(insert(Disk.__table__), [
        dict(vm_id=vm_id, name="root", source=f"rbd:pool/vm-{vm_id}", size_bytes=size) for vm_id, _, size in vms
    ])
    rpos = {}
    policy_rows = []
    for vm_id, environment, _ in vms:
        rpos[vm_id] = rng.choice((15, 60, 240, 1440))
        policy_rows.append(dict(
            vm_id=vm_id, rpo_minutes=rpos[vm_id], keep_hourly=24, keep_daily=7, keep_weekly=4, keep_monthly=3,
            business_critical=environment != "production" and rng.random() < 0.2,
            excluded=False, exclusion_reason="", pre_hook="", post_hook="",
        ))
    connection.execute(insert(Policy.__table__), policy_rows)

    # Points: spread evenly over the VMs, one per RPO interval back from a recent last backup; most ok, a few
    # verified, damaged or distrusted; a few already in the recycle bin.
    per_vm, extra = divmod(n_points, len(vms))
    batch: list[dict[str, Any]] = []
    for index, (vm_id, _, size) in enumerate(vms):
        last = now - timedelta(minutes=rng.uniform(0, 3 * rpos[vm_id]))
        for k in range(per_vm + (1 if index < extra else 0)):
            created = last - timedelta(minutes=rpos[vm_id] * k)
            state = rng.choices(("ok", "verified", "damaged", "distrusted"), (90, 8, 1, 1))[0]
            batch.append(dict(
                vm_id=vm_id, revision=f"{vm_id:06d}-{k:06d}", created_at=created, size_bytes=size,
                new_bytes=rng.randrange(0, max(1, size // 50)), state=state,
                verified_at=created + timedelta(hours=1) if state == "verified" else None,
                protected=rng.random() < 0.02,
                deletion_requested_at=now if rng.random() < 0.005 else None,
                deletion_due_at=now + timedelta(days=14) if rng.random() < 0.005 else None,
            ))
        if len(batch) >= 20_000:
            connection.execute(insert(BackupPoint.__table__), batch)
            batch.clear()
    if batch:
        connection.execute(insert(BackupPoint.__table__), batch)
    return World(customer, operator, counts[0], len(vms), n_points)


# -- measuring -------------------------------------------------------------------------------------------

@dataclass
class StatementLog:
    """Statements run while ``active``, with their durations (a listener on the engine)."""

    active: bool = False
    statements: list[tuple[str, Any, float]] = field(default_factory=list)
    _started: float = 0.0

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *args: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if self.active:
            self.statements.append((statement, parameters, (time.perf_counter() - self._started) * 1000))

    @contextmanager
    def recording(self) -> Iterator[list[tuple[str, Any, float]]]:
        self.statements = []
        self.active = True
        try:
            yield self.statements
        finally:
            self.active = False


@dataclass
class Result:
    database: str
    viewer: str
    vms_visible: int
    median_ms: float
    p95_ms: float
    max_ms: float
    statements: int
    statements_small_page: int
    slowest_sql: str
    slowest_sql_ms: float
    slowest_plan: str

    @property
    def passed(self) -> bool:
        return self.median_ms < TARGET_MS and self.statements == self.statements_small_page


def measure(app: Any, engine: Engine, statements: StatementLog, email: str, visible: int, database: str,
            viewer: str, repeat: int) -> Result:
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": PASSWORD})
    if response.status_code != 302:
        raise SystemExit(f"could not sign in as {email}: HTTP {response.status_code}")
    for _ in range(3):  # warm: templates compiled, connections pooled, pages cached by the database
        check = client.get("/")
        if check.status_code != 200 or f"<small>{visible}</small>".encode() not in check.data:
            raise SystemExit(f"dashboard of {email} did not list {visible} VMs (HTTP {check.status_code})")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get("/")
        times.append((time.perf_counter() - started) * 1000)
    with statements.recording() as full:
        client.get("/")
    page_size = app.config["PAGE_SIZE"]
    app.config["PAGE_SIZE"] = 10
    try:
        with statements.recording() as small:
            client.get("/")
    finally:
        app.config["PAGE_SIZE"] = page_size
    slowest = max(full, key=lambda s: s[2])
    times.sort()
    return Result(
        database=database, viewer=viewer, vms_visible=visible, median_ms=statistics.median(times),
        p95_ms=times[max(0, round(0.95 * len(times)) - 1)], max_ms=times[-1], statements=len(full),
        statements_small_page=len(small), slowest_sql=" ".join(slowest[0].split())[:160],
        slowest_sql_ms=slowest[2], slowest_plan=query_plan(engine, slowest[0], slowest[1]),
    )


def query_plan(engine: Engine, statement: str, parameters: Any) -> str:
    """The database's plan for a statement, so a slow row in the report names the index it did (not) use."""
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(explain + statement, parameters).all()
    if engine.dialect.name == "sqlite":
        return "; ".join(str(row[-1]) for row in rows)
    return "; ".join(str(row[0]).strip() for row in rows)


def run_backend(name: str, url: str, args: argparse.Namespace, analyze: bool) -> list[Result]:
    """Migrate, seed and measure one database."""
    from flask_migrate import upgrade

    app = create_app({
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": os.urandom(32).hex(),
        "SESSION_COOKIE_SECURE": False,  # the test client speaks http
        "WTF_CSRF_ENABLED": False,  # signing in is not what is measured
        "RATELIMIT_ENABLED": False,
        "STORAGE_ROOT": tempfile.mkdtemp(prefix="lifeboat-bench-storage-"),
    })
    with app.app_context():
        log(f"{name}: migrating")
        upgrade()
        started = time.perf_counter()
        with db.engine.begin() as connection:
            world = seed(connection, args.vms, args.points, random.Random(42))
        log(f"{name}: seeded {world.vms} VMs and {world.points} backup points in "
            f"{time.perf_counter() - started:.1f} s")
        if analyze:
            with db.engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        statements = StatementLog()
        statements.attach(db.engine)
        engine = db.engine
        db.session.remove()
    # Measured outside any app context: each request then pushes its own, with a fresh session, as in production
    # (inside one, requests would share a session whose identity map already holds the user and the VMs).
    results = [
        measure(app, engine, statements, world.customer_email, world.biggest_org_vms, name,
                "customer admin, biggest org", args.repeat),
        measure(app, engine, statements, world.operator_email, world.vms, name, "operator, all orgs", args.repeat),
    ]
    engine.dispose()
    for result in results:
        log(f"{name} / {result.viewer}: median {result.median_ms:.1f} ms, {result.statements} statements")
    return results


@contextmanager
def bench_database(admin_url: str) -> Iterator[str | None]:
    """A fresh PostgreSQL database for the run, dropped afterwards; None when the server is not reachable."""
    url = make_url(admin_url)
    try:
        admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"))
            connection.execute(text(f"CREATE DATABASE {BENCH_DB}"))
    except Exception as exc:  # noqa: BLE001 - any failure here means "no PostgreSQL to measure"
        log(f"PostgreSQL not measured: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
        yield None
        return
    try:
        yield url.set(database=BENCH_DB).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"))
        admin.dispose()
        log(f"PostgreSQL: dropped {BENCH_DB}")


def report(results: list[Result], args: argparse.Namespace, versions: dict[str, str]) -> str:
    lines = [
        "# Dashboard benchmark",
        "",
        f"{args.vms:,} VMs in {len(ORG_SHARES)} organisations (with policies), {args.points:,} backup points. "
        f"Flask test client, signed in, warm; median of {args.repeat} requests of `/` (page 1, "
        f"{50} VMs per page). Target: median under {TARGET_MS:.0f} ms, and the same number of SQL statements "
        "for a page of 10 and of 50 VMs (no N+1).",
        "",
        "| Database | Viewer | VMs visible | Median ms | p95 ms | Max ms | SQL statements (50 / 10 rows) "
        "| Slowest statement ms | Result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.database} | {r.viewer} | {r.vms_visible:,} | {r.median_ms:.1f} | {r.p95_ms:.1f} | {r.max_ms:.1f} "
            f"| {r.statements} / {r.statements_small_page} | {r.slowest_sql_ms:.1f} | "
            f"{'PASS' if r.passed else 'FAIL'} |"
        )
    lines += ["", "Slowest statement per row, and its plan:", ""]
    lines += [f"- {r.database} / {r.viewer}: `{r.slowest_sql}`\n  plan: `{r.slowest_plan}`" for r in results]
    lines += ["", "Environment: " + ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--pg-url", default=os.environ.get("LIFEBOAT_BENCH_PG_URL",
                                                           "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dashboard.md")
    args = parser.parse_args()

    versions = {"Python": platform.python_version(), "SQLite": sqlite3.sqlite_version,
                "CPU": platform.processor() or platform.machine()}
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="lifeboat-bench-") as folder:
        results += run_backend("SQLite", f"sqlite:///{folder}/bench.db", args, analyze=False)
    if not args.no_postgres:
        with bench_database(args.pg_url) as url:
            if url is not None:
                engine = create_engine(url)
                with engine.connect() as connection:
                    versions["PostgreSQL"] = str(connection.execute(text("SHOW server_version")).scalar())
                engine.dispose()
                results += run_backend("PostgreSQL", url, args, analyze=True)
    markdown = report(results, args, versions)
    print(markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown)
    log(f"wrote {args.out}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
