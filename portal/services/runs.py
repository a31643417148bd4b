"""Requesting backups and restores: the row first (committed), the job second."""

from __future__ import annotations

import os
import re
import secrets
from typing import Any

from flask import current_app

from storage.browse import default_disk, split_path
from storage.errors import StorageError

from ..errors import DomainError
from ..extensions import db
from ..models import VM, BackupPoint, BackupRun, Disk, Restore, User
from ..models.runs import ACTIVE_STATES, CANCELLED, DONE, FAILED, QUEUED
from . import audit, deletions, disaster_end, notify, queue
from .priority import priority_of

KINDS = ("full", "files", "instant")


class RestoreError(DomainError, ValueError):
    """A restore request that cannot be accepted; the message says why."""

    status = 422
    code = "restore_refused"


class RestoreForbidden(RestoreError):
    """The actor may not request this kind of restore."""

    status = 403
    code = "forbidden"


class PointPendingDeletion(RestoreError):
    """The backup point waits in the recycle bin: nothing is restored from it unless the deletion is undone."""

    status = 409
    code = "deletion_pending"


def request_backup(vm: VM, actor: User | str = "system:scheduler") -> BackupRun:
    run = BackupRun(vm_id=vm.id, state=QUEUED)
    db.session.add(run)
    db.session.flush()
    run.job_id = f"backup-{run.id}"
    audit.record(actor, "backup.request", vm, after={"run": run.id})
    db.session.commit()
    queue.enqueue("backup", "jobs.backup.run_backup", run.id, job_id=run.job_id)
    return run


def request_restore(actor: User, vm: VM, point: BackupPoint, kind: str, paths: list[str] | None = None,
                    target: dict[str, Any] | None = None, disk: str = "", usable_first: bool = False) -> Restore:
    """Commit the restore row (audited), then queue its job.

    ``usable_first`` (instant restores, disaster mode): the job that makes the image usable waits on the
    ``restore-usable`` queue, ahead of every class, and hands the hydration to a second job on the class's
    queue (``jobs.instant``), so a whole fleet is usable before any hydration takes a worker.
    """
    if kind not in KINDS:
        raise RestoreError("kind must be 'full', 'files' or 'instant'")
    if point.vm_id != vm.id:
        raise RestoreError("that backup point is not available")
    if point.pending_deletion:
        raise PointPendingDeletion(deletions.pending_message(point))
    if disk and point.disks is not None and disk not in point.disk_names:
        raise RestoreError(f"that backup point has no disk {disk!r} (it has {', '.join(point.disk_names)})")
    if kind == "instant":
        check_instant(vm, target or {}, disk)
    if kind == "files":
        clean = [p for p in (paths or []) if isinstance(p, str) and p.startswith("/") and len(p) < 4096]
        if not clean or len(clean) != len(paths or []) or len(clean) > 1000:
            raise RestoreError("a file restore needs 1 to 1000 absolute paths")
        disk, paths = files_on_one_disk(point, clean, disk)
    if (target or {}).get("type") == "in_place":
        check_in_place(actor, vm, point, kind, disk)
    if (target or {}).get("type") == "in_vm":
        target = check_into_disk(actor, vm, point, kind, paths or [], target or {}, disk)
    priority = priority_of(vm)
    restore = Restore(vm_id=vm.id, backup_point_id=point.id, kind=kind, paths=paths or [],
                      target=target or {"type": "new"}, priority_class=priority.klass,
                      priority_reason=priority.reason, requested_by_id=actor.id, state=QUEUED, disk=disk,
                      source_secret=secrets.token_urlsafe(32) if kind == "instant" else "")
    if usable_first and kind == "instant":
        restore.target = {**restore.target, "usable_first": True}
    db.session.add(restore)
    db.session.flush()
    restore.job_id = f"restore-{restore.id}"
    audit.record(actor, "restore.request", vm, after={"restore": restore.id, "kind": kind, "backup": point.revision,
                                                       "class": priority.klass, "target": restore.target,
                                                       **({"disk": disk} if disk else {})})
    db.session.commit()
    queue.enqueue(queue.queue_of(restore), "jobs.restore.run_restore", restore.id, job_id=restore.job_id)
    notify.event("restore.queued", vm.organisation, vm=vm, restore=restore.id, kind=kind, priority=priority.klass)
    return restore


NOT_SET_UP = ("instant restores are not set up here (the operator sets INSTANT_SOURCE_URL, the portal's address "
              "as the hypervisors reach it); choose a full restore")


def instant_refusal(vm: VM, disk: str = "") -> str | None:
    """Why the VM (its disk ``disk``) cannot be restored instantly, or None: every disk restored must be a Ceph
    RBD image (each becomes its own live migration into a new image).

    The disaster planner asks this per VM, to fall back to a copy restore and say why.
    """
    disks = [d for d in vm.disks if not disk or d.name == disk]
    if not disks:
        return "an instant restore needs a VM whose disk is a Ceph RBD image; choose a full restore"
    others = [d.name for d in disks if not d.source.startswith("rbd:")]
    if len(vm.disks) == 1 and others:
        return "an instant restore needs a VM whose disk is a Ceph RBD image; choose a full restore"
    if others:
        return (f"an instant restore needs Ceph RBD images, and disk(s) {', '.join(others)} are not; choose a full "
                "restore (or restore instantly only a disk on RBD)")
    return None


def check_instant(vm: VM, target: dict[str, Any], disk: str = "") -> None:
    """Refuse an instant restore that cannot happen here, before any row is written.

    It needs a VM on an RBD image (Ceph's import-only live migration makes the new image), a new image as the
    target, and INSTANT_SOURCE_URL: the address at which the hypervisors reach the web app that serves the
    backup point until the image is hydrated. In place (after a safety backup of the disks overwritten, each
    original image moved aside and its restored one taking its name): every disk of the point or ``disk``, each
    over the VM's RBD image it was backed up from (``check_in_place`` then checks those disks).
    """
    refusal = instant_refusal(vm, disk)
    if refusal:
        raise RestoreError(_with_demo_reason(refusal))
    kind = target.get("type", "new")
    if kind not in ("new", "in_place"):
        raise RestoreError("an instant restore makes a new image, beside the original or in its place")
    if not current_app.config.get("INSTANT_SOURCE_URL"):
        raise RestoreError(_with_demo_reason(NOT_SET_UP))


def _with_demo_reason(refusal: str) -> str:
    """In a ``make run`` demo without Ceph, the refusal says why the demo has no VM on RBD."""
    reason = current_app.config.get("DEMO_NO_RBD") if current_app.config.get("DEMO") else ""
    return f"{refusal}. {reason}" if reason else refusal


def files_on_one_disk(point: BackupPoint, paths: list[str], disk: str) -> tuple[str, list[str]]:
    """The disk of a file selection and its paths inside that disk: ``/data/p1/etc`` -> (``data``, ``/p1/etc``).

    Paths of the old one-disk namespace (``/p1/...``, deprecated) stay as they are, on ``disk`` when the request
    names one, else on the point's default disk (the job reads it). A selection spans one disk.
    """
    if point.disks is None:  # disks not read from the repository yet: the point's only disk
        return disk, paths
    names, inner, legacy = point.disk_names, [], True
    found: set[str] = set()
    for path in paths:
        try:
            where = split_path(path, names)
        except StorageError:
            raise RestoreError(f"{path} is not in this backup point (its disks: {', '.join(names)})") from None
        if where is None:
            raise RestoreError("choose files or folders of one disk (the backup point holds the disks "
                               f"{', '.join(names)})")
        found.add(where.disk if not where.legacy else (disk or default_disk(names) or ""))
        inner.append(where.path)
        legacy = legacy and where.legacy
    if len(found) > 1:
        raise RestoreError(f"the selection holds files of the disks {', '.join(sorted(found))}: choose files of one "
                           "disk at a time")
    chosen = str(found.pop())
    if disk and chosen != disk:
        raise RestoreError(f"the paths are on disk {chosen}, not on disk {disk}")
    return (disk if legacy else chosen), inner


def inventory_disk(vm: VM, point: BackupPoint, name: str) -> Disk | None:
    """The VM's disk in the inventory that the point's disk ``name`` was backed up from: the same engine name;
    for a point of one disk and a VM of one disk (points of the one-disk portal call it ``root``), that disk."""
    for disk in vm.disks:
        if disk.engine_name == name:
            return disk
    if len(vm.disks) == 1 and len(point.disk_names) <= 1:
        return vm.disks[0]
    return None


def overwritten(vm: VM, point: BackupPoint, disk: str) -> list[tuple[str, Disk]]:
    """(disk of the point, disk of the VM) for every disk an in-place restore writes over: ``disk`` alone, or
    every disk of the point. A point's disk the inventory no longer lists is refused by name (RestoreError)."""
    names = [disk] if disk else (point.disk_names or [""])
    pairs = []
    for name in names:
        live = inventory_disk(vm, point, name)
        if live is None:
            raise RestoreError(f"disk {name} of the backup point is not a disk of the VM in the inventory: restore "
                               "it to a new image instead")
        if live.missing_since is not None:
            raise RestoreError(f"disk {live.name} is missing from the inventory feed since "
                               f"{live.missing_since:%Y-%m-%d %H:%M} UTC: restore it to a new image instead")
        pairs.append((name, live))
    return pairs


PARTITION_PATH = re.compile(r'^/p[0-9]+(/[^/"\\\n\r]+)*/?\Z')
IN_PLACE_FORBIDDEN = ("Only your organisation's administrators can restore over a VM's disk; ask one of them, "
                      "or restore to a new image.")


def may_restore_in_place(actor: User) -> bool:
    """Overwriting a VM's disk is for the organisation's administrators and operators, not members."""
    return actor.is_operator or actor.is_customer_admin


def check_in_place(actor: User, vm: VM, point: BackupPoint, kind: str, disk: str = "") -> None:
    """Refuse an in-place restore that cannot or may not happen, before any row is written.

    Every disk of the point goes over the VM's disk it was backed up from, or only ``disk``. ``file:`` disks
    are overwritten at their path (the engine writes a partial file and renames it over the original only when
    complete); ``rbd:`` images in place, keeping their id, snapshots and clones (the engine refuses an image
    that is open, e.g. by the running VM, and the restore fails with that message).
    """
    if not may_restore_in_place(actor):
        raise RestoreForbidden(IN_PLACE_FORBIDDEN)
    if kind not in ("full", "instant"):
        raise RestoreError("an in-place restore puts back the whole disk: choose a full restore")
    if not vm.disks:
        raise RestoreError("the VM has no disk in the inventory to restore over")
    for _, live in overwritten(vm, point, disk):
        source = live.source
        if kind == "instant" and not source.startswith("rbd:"):
            raise RestoreError(f"disk {live.name} is not a Ceph RBD image ({source}): an instant restore cannot "
                               "replace it; choose a full restore (or restore instantly only a disk on RBD)")
        if source.startswith("file:") and not os.path.exists(source[len("file:"):]):
            raise RestoreError(f"the VM's disk {source[len('file:'):]} does not exist; restore to a new image "
                               "instead")
        if not source.startswith(("file:", "rbd:")):
            raise RestoreError(f"cannot restore in place over {source}")


def check_into_disk(actor: User, vm: VM, point: BackupPoint, kind: str, paths: list[str], target: dict[str, Any],
                    disk: str = "") -> dict[str, Any]:
    """Refuse a file restore into the VM's disk that cannot or may not happen; return the clean target.

    The files go back into the disk they came from (``disk``, the selection's); a destination folder is on
    that disk (``/p1/restored``, or ``/<disk>/p1/restored``). Only ``file:`` disks (ext filesystems, written
    with debugfs by the job); names the job cannot pass to debugfs safely (quotes, backslashes, newlines) and
    ``.``/``..`` components are refused here, up front.
    """
    if not may_restore_in_place(actor):
        raise RestoreForbidden(IN_PLACE_FORBIDDEN)
    if kind != "files":
        raise RestoreError("putting files back into the disk is a file restore: choose files and folders")
    name = disk or default_disk(point.disk_names) or ""
    (_, live), = overwritten(vm, point, name)
    if not live.source.startswith("file:"):
        raise RestoreError(f"files can be put back only into file: disks (disk {live.name} is not one); download "
                           "them instead")
    dest = str(target.get("path") or "").strip()
    first, _, rest = dest.strip("/").partition("/")
    if dest and first in point.disk_names:  # /<disk>/p1/restored: on the selection's disk only
        if first != name:
            raise RestoreError(f"files go back into the disk they come from ({name}), not into disk {first}")
        dest = "/" + rest
    for path in [*paths, *([dest] if dest else [])]:
        if not isinstance(path, str) or not PARTITION_PATH.match(path) or set(path.split("/")) & {".", ".."}:
            raise RestoreError(f"{path!r} is not a path inside a partition of the disk, like /p1/etc/hosts")
    return {"type": "in_vm", "path": dest.rstrip("/") or None}


def confirm_overwrite(actor: User, vm: VM, typed: str) -> None:
    """Overwriting a disk (in place, files put back, undo) needs the actor's role and the VM's name typed out:
    not a double click on a page, not a default in an API call."""
    if not may_restore_in_place(actor):
        raise RestoreForbidden(IN_PLACE_FORBIDDEN)
    if typed.strip() != vm.name:
        raise RestoreError(f"type the VM's name ({vm.name}) to confirm that its disk will be overwritten")


def request_undo(actor: User, restore: Restore) -> Restore:
    """Put back the state from before an in-place restore (or files put back into the disk): an in-place
    restore of its safety backup (which takes a safety backup of its own, so the undo can be undone too)."""
    point = restore.safety_point
    if not (restore.in_place or restore.into_disk) or point is None:
        raise RestoreError("this restore took no safety backup, so there is nothing to put back")
    if restore.state not in (DONE, FAILED):
        raise RestoreError("the restore is still queued or running; wait for it to finish")
    return request_restore(actor, restore.vm, point, "full", target={"type": "in_place", "undo_of": restore.id})


def cancel_restore(actor: User, restore: Restore) -> bool:
    """Cancel a restore that has not started; a running one is not interrupted (it may be half-written).

    An instant restore whose image is usable and whose hydration waits is not cancelled either: a VM may run
    from the image, which needs its source until it is hydrated.
    """
    if restore.state != QUEUED or restore.usable_at is not None:
        return False
    restore.state = CANCELLED
    audit.record(actor, "restore.cancel", restore.vm, after={"restore": restore.id})
    db.session.commit()
    try:
        from rq.job import Job

        Job.fetch(restore.job_id, connection=queue.connection()).cancel()
    except Exception:  # noqa: BLE001,S110 - the row says cancelled; the job checks it before it starts anyway
        pass
    disaster_end.close_if_finished(restore.id)  # the last open restore of a disaster run ends it
    return True


def is_active(row: BackupRun | Restore) -> bool:
    return row.state in ACTIVE_STATES
