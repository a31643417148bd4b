"""The instant restore job: new RBD images usable at once from the web app's HTTP source, then hydrated.

Runs under the VM's lock (``jobs.restore.run_restore``). Each disk restored is its own migration into its own
image: ``POOL/<image>-restore-<n>`` beside the disk's image (every disk of the point, or the one the row
names). Steps: prepare each import from ``INSTANT_SOURCE_URL/instant/<secret>/disk.raw`` (one disk) or
``.../disks/<name>.raw`` (the web app serves it, so a worker that dies never strands a VM running from the
image), open each, record ``usable_at`` once every disk is usable, hydrate them one after the other with
progress on the row, commit each. A retried job (its worker died, or hydration failed while a client had an
image open) finds the images and continues where Ceph stands. A step that fails while nobody uses the image
aborts the migration, which removes the image; the other disks' unfinished images are aborted too unless in use.

In place (target ``{"type": "in_place"}``; every disk of the point, or the one the row names, over the VM's RBD
image it was backed up from, ``runs.overwritten``): first the safety backup of exactly those disks as they are
(``jobs.safety``, as a full in-place restore takes it), then every one of those images is checked (it exists,
nobody has it open) before any is touched, and each is renamed aside (``<image>-replaced-<n>``, kept and named
in the report: nothing is deleted); each instant restore takes its original's name, so the VM's disks are the
restored ones at once. A failure before every disk is usable puts every original back (an image whose new one
is in use stays for a retry). Undo is today's: an in-place restore of the safety backup (every disk of it).

Usable first (``target["usable_first"]``, a disaster run's instant strategy): the job, taken from the
``restore-usable`` queue, stops once the images are usable: the row goes back to queued ("usable; hydration
queued") with the id of a second job, which ``jobs.restore`` queues on the class's queue after the VM lock is
released. That job finds the migrations prepared and hydrates; the reconciler re-queues either by the row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from portal import clock
from portal.extensions import db
from portal.models import Restore
from portal.services import instant as web_side
from portal.services import runs
from storage.errors import StorageError
from storage.instant import abort_unless_in_use, hydrate, zero_runs
from storage.manifest import Revision
from storage.repository import Repository
from storage.targets.migration import SOURCE_TIMEOUT, InstantRestoreFailed, RbdMigration

from . import safety
from .context import ProgressWriter

HYDRATION_QUEUED = "usable; hydration queued"


def target_of(row: Restore) -> str:
    return f"rbd:{row.vm.disks[0].source[len('rbd:'):]}-restore-{row.id}"


def hydration_job_id(row: Restore) -> str:
    return f"restore-{row.id}-hydrate"


@dataclass
class _Disk:
    name: str  # empty: the point's only disk (the one-disk URL and image name)
    revision: Revision  # the point seen as this one disk
    target: str
    url: str

    @property
    def label(self) -> str:
        return f" disk {self.name}" if self.name else ""


def _disks(row: Restore, config: dict[str, Any], revision: Revision,
           in_place: dict[str, str] | None = None) -> list[_Disk]:
    """The disks this row restores, each with its target image and the URL its source is served at.

    ``in_place``: the VM's image each point's disk goes over (by the point's disk name, ``runs.overwritten``).
    """
    single = len(revision.disks) == 1
    chosen = [revision.disk(row.disk)] if row.disk else revision.disks
    disks = []
    for disk in chosen:
        name = "" if single else disk.name
        if in_place is not None:
            target = _in_place_target(in_place, disk.name)
        elif single:
            target = row.output_path or target_of(row)
        else:
            target = f"{_source_of(row, disk.name, disk.source)}-restore-{row.id}"
        disks.append(_Disk(name, revision.only(disk.name), target, web_side.source_url(config, row, name)))
    return disks


def _in_place_target(in_place: dict[str, str], name: str) -> str:
    """The VM's image the point's disk ``name`` goes over (a point of one disk: the VM's one overwritten)."""
    source = in_place.get(name) or (next(iter(in_place.values())) if len(in_place) == 1 else "")
    if not source.startswith("rbd:"):
        raise StorageError(f"disk {name or 'root'} of the VM is not an RBD image ({source or 'not in the inventory'}):"
                           " an instant restore cannot replace it; choose a full restore")
    return source


def _source_of(row: Restore, name: str, backed_up: str) -> str:
    """The RBD image a disk was backed up from (the inventory's, where the backup did not record it)."""
    if backed_up.startswith("rbd:"):
        return backed_up
    for disk in row.vm.disks:
        if disk.name == name and disk.source.startswith("rbd:"):
            return disk.source
    raise StorageError(f"disk {name} of the backup point is not an RBD image: an instant restore cannot make it")


def run(row: Restore, config: dict[str, Any]) -> bool:
    """Make the images usable, hydrate them, commit; the caller holds the VM lock and marks the row.

    False when the row asked to be usable first and the images just became usable: the row is queued again
    for its hydration job, which the caller enqueues (``hydration_job_id``) and must not mark the row.
    """
    root = str(config["STORAGE_ROOT"])
    revision = Repository.open(root, row.vm.repository_name).resolve(row.backup_point.revision)
    in_place = None
    if row.in_place:  # before anything touches the disks; a retried job keeps the one it took
        try:
            overwritten = runs.overwritten(row.vm, row.backup_point, row.disk)
        except runs.RestoreError as exc:  # the inventory changed since the request
            raise StorageError(str(exc)) from exc
        in_place = {name: live.source for name, live in overwritten}
        for name in in_place:
            _in_place_target(in_place, name)  # every image an RBD one, before the safety backup is taken
        safety.take(row, root, [live for _, live in overwritten])
    disks = _disks(row, config, revision, in_place)
    row.output_path = disks[0].target
    if not (row.report or {}).get("disks"):
        row.report = {**(row.report or {}), "target": disks[0].target,
                      "disks": [{"disk": d.name, "target": d.target} for d in disks]}
    db.session.commit()
    with ExitStack() as stack:
        timeout = float(config.get("INSTANT_SOURCE_TIMEOUT") or SOURCE_TIMEOUT)
        migrations = [stack.enter_context(RbdMigration(d.target, timeout=timeout)) for d in disks]
        states: list[str | None] = []
        try:
            if row.in_place:
                _move_aside(row, disks, migrations)
            for disk, migration in zip(disks, migrations, strict=True):
                states.append(_make_usable(row, disk, migration, migrations))
        except InstantRestoreFailed as exc:
            if not row.in_place or row.usable_at is not None:
                raise
            db.session.rollback()
            raise InstantRestoreFailed(exc.args_[0], exc.reason + _put_back(row, migrations)) from None
        except HydrationInterrupted:
            raise  # a new image is in use: left for the retry, the originals stay aside
        except Exception:
            if row.in_place and row.usable_at is None:
                db.session.rollback()
                _put_back(row, migrations)
            raise
        if row.usable_at is None:
            row.usable_at = clock.now()
            started = row.started_at or row.usable_at
            row.report = {**(row.report or {}),
                          "usable_seconds": round((row.usable_at - started).total_seconds(), 3)}
        row.phase = "usable; hydrating"
        row.bytes_total = revision.size
        db.session.commit()
        if ((row.target or {}).get("usable_first") and row.job_id != hydration_job_id(row)
                and any(state is not None for state in states)):
            row.state, row.phase, row.job_id, row.attempts = "queued", HYDRATION_QUEUED, hydration_job_id(row), 0
            db.session.commit()
            return False
        writer = ProgressWriter(row)
        before = 0
        for disk, migration, state in zip(disks, migrations, states, strict=True):
            size = disk.revision.size
            if state in ("new", "prepared", "executing"):
                _step(row, migration, _hydration(migration, _progress(writer, f"usable; hydrating{disk.label}",
                                                                      before, size, revision.size)))
            row.phase = f"committing{disk.label}"
            db.session.commit()
            if state is not None:
                migration.commit()
            else:
                migration.finish()  # committed before a retry: only the tidying is left
            before += size
    row.phase = ""
    row.bytes_done = revision.size
    damage = {d.name: [list(r) for r in web_side.damage_of(config, row.id, d.name)] for d in disks}
    replaced = {d["target"]: d["replaced"] for d in (row.report or {}).get("disks", []) if d.get("replaced")}
    reports = [{"disk": d.name, "target": d.target, "bytes": d.revision.size, "damaged": damage[d.name],
                **({"replaced": replaced[d.target]} if d.target in replaced else {})} for d in disks]
    zero = sum(end - start for d in disks for start, end in zero_runs(d.revision))
    damaged = damage[disks[0].name] if len(disks) == 1 else [[d.name, *span] for d in disks for span in damage[d.name]]
    row.report = {**(row.report or {}), "target": disks[0].target, "revision": revision.id, "bytes": revision.size,
                  "disks": reports, "hydrated_bytes": revision.size - zero, "damaged": damaged,
                  **({"in_place": True, "safety_revision": row.safety_revision} if row.in_place else {})}
    return True


def _hydration(migration: RbdMigration, progress: Callable[[int, int], None]) -> Callable[[], None]:
    return lambda: hydrate(migration, progress)


def _progress(writer: ProgressWriter, phase: str, before: int, size: int,
              total: int) -> Callable[[int, int], None]:
    """One progress bar over the disks: this disk's objects as bytes, counted after the disks before it."""
    def report(done: int, of: int) -> None:
        writer(phase, before + (size * done // of if of else size), total)
    return report


def _make_usable(row: Restore, disk: _Disk, migration: RbdMigration, every: list[RbdMigration]) -> str | None:
    """Prepare the disk's import (unless a retry finds it) and open it; its migration state before this job
    (``new``, ``prepared``…; None: committed already)."""
    state = migration.state() if migration.exists() else "new"
    if state == "new":
        row.phase = f"preparing{disk.label}"
        db.session.commit()
        _step(row, migration, lambda: migration.prepare(disk.url, zero_runs(disk.revision)), every)
    if state is not None:  # still migrating
        _step(row, migration, migration.probe, every)
    return state


def aside_name(row: Restore, migration: RbdMigration) -> str:
    return f"{migration.name}-replaced-{row.id}"


def _move_aside(row: Restore, disks: list[_Disk], migrations: list[RbdMigration]) -> None:
    """In place: rename every VM's image aside (once; recorded on the row first) so the restores take their names.

    Every image is checked first (it exists, nobody has it open): an image in use refuses the restore before any
    is renamed. A retry finds the ones moved already (their ``-replaced-`` image exists) and moves the others.
    """
    todo = [(disk, migration) for disk, migration in zip(disks, migrations, strict=True)
            if not migration.exists(aside_name(row, migration))]
    for disk, migration in todo:
        target, of = str(migration.spec), f" of disk {disk.name}" if disk.name else ""
        if not migration.exists():
            raise InstantRestoreFailed(target, f"the VM's image{of} does not exist; restore to a new image instead")
        if migration.watchers():
            raise InstantRestoreFailed(target, f"the image{of} is open (is the VM still running?); stop the VM "
                                               "first: an image in use is not replaced")
    if not todo:
        return
    names = {str(m.spec): f"rbd:{m.spec.pool}/{aside_name(row, m)}" for m in migrations}
    entries = [{**d, "replaced": names[d["target"]]} if d["target"] in names else d
               for d in (row.report or {}).get("disks", [])]
    row.report = {**(row.report or {}), "disks": entries,
                  **({"replaced": next(iter(names.values()))} if len(names) == 1 else {})}
    row.phase = "moving the original image aside" if len(migrations) == 1 else "moving the original images aside"
    db.session.commit()
    for _, migration in todo:
        migration.rename(migration.name, aside_name(row, migration))


def _put_back(row: Restore, migrations: list[RbdMigration]) -> str:
    """In place, after a failure before usable: every original whose name is free (its new image removed) takes
    it again; the report no longer names those aside. Says what it did, for the error."""
    back = []
    for migration in migrations:
        aside = aside_name(row, migration)
        if migration.exists(aside) and not migration.exists():
            migration.rename(aside, migration.name)
            back.append(f"rbd:{migration.spec.pool}/{aside}")
    if not back:
        return ""
    report = row.report or {}
    entries = [{k: v for k, v in d.items() if not (k == "replaced" and v in back)} for d in report.get("disks", [])]
    row.report = {**{k: v for k, v in report.items() if not (k == "replaced" and v in back)}, "disks": entries}
    db.session.commit()
    return ("; the original image is back in place" if len(migrations) == 1
            else f"; {len(back)} original image(s) back in place")


class HydrationInterrupted(Exception):
    """Hydration failed while a client (a running VM) has the image open: the row stays running, the job fails,
    and the reconciler runs it again, which continues the hydration."""


def _step(row: Restore, migration: RbdMigration, action: Callable[[], None],
          every: Sequence[RbdMigration] = ()) -> None:
    """Run a step; if it fails, abort unless the image is in use (then it is left for a retry). Before the VM
    is usable (``every`` given), the other disks' unfinished images go too, unless in use."""
    try:
        action()
    except InstantRestoreFailed as exc:
        failed = abort_unless_in_use(migration, exc.reason) if migration.exists() else exc
        if migration.exists():
            raise HydrationInterrupted(failed.reason) from None
        for other in every:
            if other is not migration and other.exists() and other.state() is not None:
                abort_unless_in_use(other, "another disk failed")
        raise InstantRestoreFailed(str(migration.spec), failed.reason) from None  # the caller puts originals back
