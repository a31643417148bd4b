"""The restore job: a full restore to a new image, or a file restore into a downloadable archive.

Full restores restore every disk of the point, or the one the row names (``disk``): ``file:`` disks go to
``RESTORE_ROOT/vm-<id>-restore-<n>-<disk>.img`` (``...-restore-<n>.img`` for a point of one disk), ``rbd:``
disks to a new image ``POOL/<image>-restore-<n>`` beside the one backed up. The report lists every disk.
A retried job (worker died) continues the engine's partial output instead of starting over.

In place (target ``{"type": "in_place"}``): every disk of the point over the VM's disk it was backed up from
(or the one disk the row names). Under the same hold of the VM lock, first a safety backup of those disks as
they are now (tagged ``safety``, protected, recorded on the row and in the catalog), then the point over them,
disk by disk. A retried job keeps the safety backup it already took. Undo restores the safety point (every
disk of it: the ones overwritten). File restores with target ``{"type": "in_vm"}`` put the files back into
the disk they came from (``jobs.into_disk``).
Instant restores (kind ``instant``, RBD only) make a new image usable at once and hydrate it (``jobs.instant``).
"""

from __future__ import annotations

import gzip
import os

from portal.config import var_folder
from portal.extensions import db
from portal.models import Restore
from portal.services import disaster, notify, queue, runs
from storage.browse import open_revision_disk
from storage.errors import StorageError
from storage.files import archive
from storage.repository import Repository
from storage.restore import restore

from . import instant, into_disk, safety
from .context import DiskProgress, ProgressWriter, app_context, mark_finished, mark_started, vm_lock


def run_restore(restore_id: int) -> str:
    with app_context() as flask_app:
        row = db.session.get(Restore, restore_id)
        if row is None or row.state not in ("queued", "running"):
            return "skipped"  # cancelled before it started
        resumed = row.usable_at is not None  # an instant restore's hydration (or its resume): said already
        mark_started(row)
        if not resumed:
            notify.event("restore.started", row.vm.organisation, vm=row.vm, restore=row.id, kind=row.kind)
        try:
            def waiting() -> None:
                row.phase = "waiting for the VM"
                db.session.commit()

            finished = True
            with vm_lock(row.vm_id, on_wait=waiting):
                if row.kind == "instant":
                    finished = instant.run(row, flask_app.config)
                elif row.kind == "full":
                    _full(row, flask_app.config)
                else:
                    _files(row, flask_app.config)
            if not finished:  # usable first: the hydration is the next job's (the row says queued already)
                queue.enqueue(queue.restore_queue(row.priority_class), "jobs.restore.run_restore", row.id,
                              job_id=row.job_id)
                return row.output_path
            mark_finished(row, "done")
            notify.event("restore.finished", row.vm.organisation, vm=row.vm, restore=row.id, kind=row.kind)
            disaster.close_if_finished(row.id)  # the last restore of a disaster run ends it
            return row.output_path
        except instant.HydrationInterrupted as exc:
            db.session.rollback()
            row.phase, row.error = "usable; hydration to be resumed", str(exc)[:2000]
            db.session.commit()  # still running: the reconciler queues the job again, which resumes
            raise
        except Exception as exc:
            db.session.rollback()
            mark_finished(row, "failed", str(exc))
            notify.event("restore.failed", row.vm.organisation, vm=row.vm, restore=row.id, error=str(exc))
            disaster.close_if_finished(row.id)
            raise


def rate_limit(config: dict[str, object]) -> int | None:
    """The operator's per-worker restore bandwidth limit (RESTORE_RATE_LIMIT_MIB) in bytes per second."""
    mib = float(str(config.get("RESTORE_RATE_LIMIT_MIB") or 0))
    return int(mib * 1024 * 1024) if mib > 0 else None


def threads(config: dict[str, object]) -> int | None:
    """Engine threads per restore job (RESTORE_THREADS; 0 or unset: the engine's default)."""
    return int(str(config.get("RESTORE_THREADS") or 0)) or None


def _restore_root(config: dict[str, object]) -> str:
    root = str(config.get("RESTORE_ROOT") or os.path.join(var_folder(config), "restores"))
    os.makedirs(root, exist_ok=True)
    return root


def _full(row: Restore, config: dict[str, object]) -> None:
    """Restore every disk of the point (or the one the row names), one output each; the report lists them.

    A point of one disk restored without a name keeps the one-disk output names (a retried job of an older
    version continues its partial output); otherwise each file output is named after its disk.
    """
    if row.in_place:
        _in_place(row, config)
        return
    root, vm = str(config["STORAGE_ROOT"]), row.vm
    revision = Repository.open(root, vm.repository_name).resolve(row.backup_point.revision)
    disks = [revision.disk(row.disk)] if row.disk else revision.disks
    named = bool(row.disk) or len(disks) > 1
    targets = [(disk, _full_target(row, config, disk.source, disk.name if named else "")) for disk in disks]
    row.output_path = targets[0][1]
    db.session.commit()
    progress = DiskProgress(ProgressWriter(row), [disk.size for disk in disks])
    reports = []
    for disk, target in targets:
        result = restore(root, vm.repository_name, revision.id, target, wait=None, disk=disk.name,
                         progress=progress.next_disk(disk.name), limit_bytes_per_second=rate_limit(config),
                         threads=threads(config))
        reports.append({**result.as_dict(), "disk": disk.name, "target": target})
    if len(reports) == 1:
        row.report = {**reports[0], "disks": reports}
        return
    row.report = {"revision": revision.id, "disks": reports, "target": targets[0][1],
                  "bytes": sum(r["bytes"] for r in reports), "seconds": sum(r["seconds"] for r in reports),
                  "damaged": [[r["disk"], *span] for r in reports for span in r["damaged"]]}


def _full_target(row: Restore, config: dict[str, object], source: str, disk: str) -> str:
    """``rbd:`` disks to a new image beside the backed-up one, others to a file under RESTORE_ROOT."""
    if source.startswith("rbd:"):
        return f"{source}-restore-{row.id}"
    suffix = f"-{disk}" if disk else ""
    return os.path.join(_restore_root(config), f"{row.vm.repository_name}-restore-{row.id}{suffix}.img")


def _in_place(row: Restore, config: dict[str, object]) -> None:
    """Safety backup of the disks to overwrite, then the point over them. The caller holds the VM lock."""
    root, vm = str(config["STORAGE_ROOT"]), row.vm
    if not vm.disks:
        raise StorageError("the VM has no disk in the inventory to restore over")
    try:
        pairs = runs.overwritten(vm, row.backup_point, row.disk)
    except runs.RestoreError as exc:  # the inventory changed since the request
        raise StorageError(str(exc)) from exc
    targets = [(name, live.source[len("file:"):] if live.source.startswith("file:") else live.source)
               for name, live in pairs]  # rbd:POOL/IMAGE as it is
    safety.take(row, root, [live for _, live in pairs])
    row.output_path = targets[0][1]
    db.session.commit()
    revision = Repository.open(root, vm.repository_name).resolve(row.backup_point.revision)
    progress = DiskProgress(ProgressWriter(row), [revision.disk(name or None).size for name, _ in targets])
    reports = []
    for name, target in targets:
        # A file disk is replaced by the engine's completed partial file (a new inode): give it back the mode and
        # owner the hypervisor expects.
        before = os.stat(target) if not target.startswith("rbd:") and os.path.isfile(target) else None
        result = restore(root, vm.repository_name, revision.id, target, force=True, wait=None, disk=name or None,
                         progress=progress.next_disk(name), limit_bytes_per_second=rate_limit(config),
                         threads=threads(config))
        report: dict[str, object] = {**result.as_dict(), "disk": name or revision.disks[0].name, "target": target}
        if before is not None:
            os.chmod(target, before.st_mode & 0o7777)
            try:
                os.chown(target, before.st_uid, before.st_gid)
            except PermissionError:
                report["owner_not_kept"] = f"{before.st_uid}:{before.st_gid} (the worker may not chown)"
        reports.append(report)
    common = {"in_place": True, "safety_revision": row.safety_revision, "disks": reports}
    if len(reports) == 1:
        row.report = {**reports[0], **common}
        return
    row.report = {"revision": revision.id, "target": targets[0][1], **common,
                  "bytes": sum(int(str(r["bytes"])) for r in reports),
                  "seconds": sum(float(str(r["seconds"])) for r in reports),
                  "damaged": [[r["disk"], *span] for r in reports for span in r["damaged"]]}  # type: ignore[attr-defined]


def _files(row: Restore, config: dict[str, object]) -> None:
    if row.into_disk:
        into_disk.put_back(row, config)
        return
    out = os.path.join(_restore_root(config), f"{row.vm.repository_name}-files-{row.id}.tar.gz")
    partial = out + ".partial"
    with open_revision_disk(str(config["STORAGE_ROOT"]), row.vm.repository_name, row.backup_point.revision,
                            disk=row.disk or row.backup_point.browse_disk) as disk:
        entries = [disk.stat(path) for path in row.paths]
        row.bytes_total = sum(e.size for e in entries)
        row.phase = "archiving"
        db.session.commit()
        with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as gz:
            for piece in archive.iter_tar(disk, row.paths):  # streamed from the backup: no copy of the image
                gz.write(piece)
    os.replace(partial, out)
    row.output_path = out
    row.bytes_done = row.bytes_total
    row.report = {"files": [e.to_json() for e in entries], "archive": out, "bytes": os.path.getsize(out)}
