"""The catalog of backup points, kept in step with the repositories (which stay the source of truth).

``refresh`` upserts from a VM's repository manifests (a point whose manifest cannot be read becomes
``damaged``: it cannot be restored); it never deletes a point because its manifest is absent (a repository
being restored or moved must not empty the catalog); points whose revision is gone from the repository are
left for the retention job, which forgets through the engine and records it. Each point records its disks
(name and size) from its revision, so coverage and the VM page need no manifest read.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from storage.clock import parse_iso
from storage.errors import StorageError
from storage.repository import Repository, repository_exists

from ..extensions import db
from ..models import VM, BackupPoint
from ..models.backups import STATE_OF_TRUST, PointState


def refresh(vm: VM) -> int:
    """Upsert the VM's backup points from its repository; return how many were added or changed."""
    root = current_app.config["STORAGE_ROOT"]
    if not repository_exists(root, vm.repository_name):
        return 0
    try:
        repository = Repository.open(root, vm.repository_name)
        revisions = repository.revisions()
    except StorageError:
        return 0
    existing = {p.revision: p for p in db.session.scalars(select(BackupPoint).where(BackupPoint.vm_id == vm.id))}
    changed = 0
    for revision_id in repository.unreadable:  # its manifest cannot be read: it cannot be restored either
        point = existing.get(revision_id)
        if point is not None and point.state != PointState.DAMAGED:
            point.state = PointState.DAMAGED.value
            changed += 1
    for revision in revisions:
        point = existing.get(revision.id)
        if point is None:
            point = BackupPoint(vm_id=vm.id, revision=revision.id)
            db.session.add(point)
        values = {
            "created_at": parse_iso(revision.created).replace(tzinfo=None),
            "size_bytes": revision.size,
            "new_bytes": int(revision.stats.get("bytes_written", 0)),
            "state": STATE_OF_TRUST.get(revision.trust, PointState.OK.value),
            "verified_at": parse_iso(revision.verified_at).replace(tzinfo=None) if revision.verified_at else None,
            "protected": revision.protected,
            "disks": [{"name": d.name, "size": d.size} for d in revision.disks],
        }
        if any(getattr(point, k) != v for k, v in values.items()):
            changed += 1
            for key, value in values.items():
                setattr(point, key, value)
    return changed


def rebuild() -> int:
    """Refresh every VM's catalog from the repositories."""
    total = sum(refresh(vm) for vm in db.session.scalars(select(VM)))
    db.session.commit()
    return total
