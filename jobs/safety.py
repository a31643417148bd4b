"""The safety backup taken before anything writes over a VM's disk (in-place restores, files put back).

Tagged ``safety`` and protected at once, so neither retention nor a deletion can take it; recorded on the
restore row (``safety_revision``, ``safety_point_id``) and in the catalog, so "Undo" can restore it in place.
The caller holds the VM lock. A retried job (worker died) keeps the safety backup it already took.
"""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import BackupPoint, Restore
from portal.services import audit, catalog
from storage.backup import backup
from storage.retention import set_protected

from .context import ProgressWriter


def take(row: Restore, root: str) -> None:
    if row.safety_revision:
        return
    vm = row.vm
    writer = ProgressWriter(row)
    revision = backup(root, vm.repository_name, vm.disks[0].source, tags=["safety"], wait=None,
                      progress=lambda phase, done, total: writer(f"safety {phase}", done, total))
    set_protected(root, vm.repository_name, revision.id, True)  # before anything can choose to forget it
    row.safety_revision = revision.id
    catalog.refresh(vm)
    row.safety_point_id = db.session.scalar(select(BackupPoint.id).where(
        BackupPoint.vm_id == vm.id, BackupPoint.revision == revision.id))
    audit.record("system:restore", "restore.safety_backup", vm,
                 after={"restore": row.id, "revision": revision.id, "protected": True})
    db.session.commit()
