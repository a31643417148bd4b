"""The instant restore job: a new RBD image usable at once from the web app's HTTP source, then hydrated.

Runs under the VM's lock (``jobs.restore.run_restore``). The new image is ``POOL/<image>-restore-<n>`` beside
the original. Steps: prepare the import from ``INSTANT_SOURCE_URL/instant/<secret>/disk.raw`` (the web app
serves it, so a worker that dies never strands a VM running from the image), open it, record ``usable_at``,
hydrate with progress on the row, commit. A retried job (its worker died, or hydration failed while a client
had the image open) finds the image and continues where Ceph stands. A hydration that fails while nobody uses
the image aborts the migration, which removes the image.

Usable first (``target["usable_first"]``, a disaster run's instant strategy): the job, taken from the
``restore-usable`` queue, stops once the image is usable: the row goes back to queued ("usable; hydration
queued") with the id of a second job, which ``jobs.restore`` queues on the class's queue after the VM lock is
released. That job finds the migration prepared and hydrates; the reconciler re-queues either by the row.
"""

from __future__ import annotations

from typing import Any

from portal import clock
from portal.extensions import db
from portal.models import Restore
from portal.services import instant as web_side
from storage.instant import abort_unless_in_use, hydrate, zero_runs
from storage.repository import Repository
from storage.targets.migration import InstantRestoreFailed, RbdMigration

from .context import ProgressWriter


def target_of(row: Restore) -> str:
    return f"rbd:{row.vm.disks[0].source[len('rbd:'):]}-restore-{row.id}"


HYDRATION_QUEUED = "usable; hydration queued"


def hydration_job_id(row: Restore) -> str:
    return f"restore-{row.id}-hydrate"


def run(row: Restore, config: dict[str, Any]) -> bool:
    """Make the image usable, hydrate it, commit; the caller holds the VM lock and marks the row.

    False when the row asked to be usable first and the image just became usable: the row is queued again
    for its hydration job, which the caller enqueues (``hydration_job_id``) and must not mark the row.
    """
    target = row.output_path or target_of(row)
    row.output_path = target
    revision = Repository.open(str(config["STORAGE_ROOT"]), row.vm.repository_name).resolve(row.backup_point.revision)
    url = web_side.source_url(config, row)
    with RbdMigration(target) as migration:
        state = migration.state() if migration.exists() else "new"
        if state == "new":
            row.phase = "preparing"
            db.session.commit()
            migration.prepare(url, zero_runs(revision))
        if state is not None:  # still migrating (None: committed before a retry, only tidying is left)
            _step(migration, migration.probe)
        if row.usable_at is None:
            row.usable_at = clock.now()
            started = row.started_at or row.usable_at
            row.report = {"target": target, "usable_seconds": round((row.usable_at - started).total_seconds(), 3)}
        row.phase = "usable; hydrating"
        row.bytes_total = revision.size
        db.session.commit()
        if (row.target or {}).get("usable_first") and row.job_id != hydration_job_id(row) and state is not None:
            row.state, row.phase, row.job_id, row.attempts = "queued", HYDRATION_QUEUED, hydration_job_id(row), 0
            db.session.commit()
            return False
        if state in ("new", "prepared", "executing"):
            writer = ProgressWriter(row)
            _step(migration, lambda: hydrate(
                migration, lambda done, total: writer("usable; hydrating", revision.size * done // total,
                                                      revision.size)))
        row.phase = "committing"
        db.session.commit()
        if state is not None:
            migration.commit()
        else:
            migration.finish()
    damaged = web_side.damage_of(config, row.id)
    row.phase = ""
    row.bytes_done = revision.size
    row.report = {**(row.report or {}), "target": target, "revision": revision.id, "bytes": revision.size,
                  "damaged": [list(r) for r in damaged],
                  "hydrated_bytes": revision.size - sum(end - start for start, end in zero_runs(revision))}
    return True


class HydrationInterrupted(Exception):
    """Hydration failed while a client (a running VM) has the image open: the row stays running, the job fails,
    and the reconciler runs it again, which continues the hydration."""


def _step(migration: RbdMigration, action: Any) -> None:
    """Run a step; if it fails, abort unless the image is in use (then it is left for a retry)."""
    try:
        action()
    except InstantRestoreFailed as exc:
        failed = abort_unless_in_use(migration, exc.reason)
        if migration.exists():
            raise HydrationInterrupted(failed.reason) from None
        raise failed from None
