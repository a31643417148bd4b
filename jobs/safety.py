"""The safety backup taken before anything writes over a VM's disks (in-place restores, files put back).

It covers exactly the disks about to be overwritten (every disk of an in-place restore of a whole point, the
one disk of a one-disk restore or of files put back), named as the VM's backups name them, so "Undo" (every
disk of the safety point, in place) puts back those disks and never touches one the restore left alone.

Tagged ``safety`` and protected at once, so neither retention nor a deletion can take it; recorded on the
restore row (``safety_revision``, ``safety_point_id``) and in the catalog, so "Undo" can restore it in place.
The caller holds the VM lock. A retried job (worker died) keeps the safety backup it already took.
"""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import BackupPoint, Disk, Restore
from portal.services import audit, catalog
from storage.backup import backup
from storage.retention import set_protected

from .context import ProgressWriter


def take(row: Restore, root: str, disks: list[Disk]) -> None:
    """Back ``disks`` (the VM's, about to be overwritten) up as one protected point, unless already done."""
    if row.safety_revision:
        return
    vm = row.vm
    writer = ProgressWriter(row)
    revision = backup(root, vm.repository_name, [(d.engine_name, d.source) for d in disks], tags=["safety"],
                      wait=None, progress=lambda phase, done, total: writer(f"safety {phase}", done, total))
    set_protected(root, vm.repository_name, revision.id, True)  # before anything can choose to forget it
    row.safety_revision = revision.id
    catalog.refresh(vm)
    row.safety_point_id = db.session.scalar(select(BackupPoint.id).where(
        BackupPoint.vm_id == vm.id, BackupPoint.revision == revision.id))
    audit.record("system:restore", "restore.safety_backup", vm,
                 after={"restore": row.id, "revision": revision.id, "protected": True,
                        "disks": [d.engine_name for d in disks]})
    db.session.commit()
