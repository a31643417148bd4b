"""Recycle bin, delete and undo (portal/web/recycle.py).

Cases run in endpoint order within one world per role, so the helpers put the state each case needs in
place (a backup point to delete, an object already in the recycle bin to undo) before answering its URL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from portal import clock
from portal.extensions import db
from portal.models import BackupPoint, Disk

from . import Case, everyone, signed_in


def point(world: dict[str, Any], vm: str) -> int:
    """A catalog row for ``vm`` (no repository needed: requesting a deletion never touches storage)."""
    vm_id = world[vm].id
    found = BackupPoint.query.filter_by(vm_id=vm_id, revision="matrix").first()
    if found is None:
        found = BackupPoint(vm_id=vm_id, revision="matrix", created_at=clock.now(), size_bytes=1 << 20)
        db.session.add(found)
        db.session.commit()
    return int(found.id)


def pending(world: dict[str, Any], key: str) -> int:
    """Put ``world[key]`` in the recycle bin (as if someone asked) and return its id."""
    obj = db.session.merge(world[key])
    if obj.deletion_due_at is None:
        obj.deletion_requested_at = clock.now()
        obj.deletion_due_at = clock.now() + timedelta(days=14)
        db.session.commit()
    return int(obj.id)


def missing_disk(world: dict[str, Any]) -> int:
    """A disk of acme's staging VM that the feed no longer lists (to confirm it was removed)."""
    vm_id = world["acme_staging"].id
    found = Disk.query.filter_by(vm_id=vm_id, name="gone").first()
    if found is None:
        found = Disk(vm_id=vm_id, name="gone", source="rbd:pool/gone", missing_since=clock.now())
        db.session.add(found)
        db.session.commit()
    return int(found.id)


def _bin_url(world: dict[str, Any]) -> str:
    pending(world, "globex_vm")
    pending(world, "acme_staging")
    return "/recycle"


ROUTES = {
    "web.recycle_bin": [Case("GET", _bin_url, signed_in(200), absent={
        "acme_member": ("shop-1",), "acme_admin": ("shop-1",), "manager": ("shop-1",),
        "globex_admin": ("staging-api", "web-1")})],
    "web.backup_delete": [
        Case("POST", lambda w: f"/backups/{point(w, 'acme_vm')}/delete",
             signed_in(303, acme_member=403, globex_admin=404)),
        Case("POST", lambda w: f"/backups/{point(w, 'globex_vm')}/delete",
             signed_in(404, globex_admin=303, operator=303)),
        Case("POST", lambda w: "/backups/999999/delete", signed_in(404)),
        Case("GET", lambda w: f"/backups/{point(w, 'acme_vm')}/delete", everyone(405)),
    ],
    "web.vm_delete": [
        Case("POST", lambda w: f"/vms/{w['acme_staging'].id}/delete",
             signed_in(303, acme_member=403, globex_admin=404)),
        # production: the customer admin asks the account manager (see services/deletions.py)
        Case("POST", lambda w: f"/vms/{w['acme_vm'].id}/delete",
             signed_in(303, acme_member=403, acme_admin=403, globex_admin=404)),
        Case("POST", lambda w: f"/vms/{w['globex_vm'].id}/delete", signed_in(404, globex_admin=403, operator=303)),
        Case("POST", lambda w: "/vms/999999/delete", signed_in(404)),
        Case("GET", lambda w: f"/vms/{w['acme_vm'].id}/delete", everyone(405)),
    ],
    "web.deletion_request": [
        Case("POST", lambda w: f"/recycle/user/{w['acme_member'].id}/delete",
             signed_in(303, acme_member=403, globex_admin=404)),
        Case("POST", lambda w: f"/recycle/organisation/{w['globex'].id}/delete",
             signed_in(404, globex_admin=403, operator=303)),
        Case("POST", lambda w: f"/recycle/user/{w['operator'].id}/delete",
             signed_in(404, operator=403)),  # staff accounts are operators' business; nobody deletes themselves
        Case("POST", lambda w: f"/recycle/disk/{missing_disk(w)}/delete",
             signed_in(303, acme_member=403, globex_admin=404)),
        Case("POST", lambda w: "/recycle/nonsense/1/delete", signed_in(404)),
        Case("GET", lambda w: f"/recycle/user/{w['acme_member'].id}/delete", everyone(405)),
    ],
    "web.deletion_undo": [
        Case("POST", lambda w: f"/recycle/vm/{pending(w, 'acme_vm')}/undo",
             signed_in(303, acme_member=403, globex_admin=404)),
        Case("POST", lambda w: f"/recycle/organisation/{pending(w, 'acme')}/undo",
             signed_in(303, acme_member=403, acme_admin=403, globex_admin=404)),
        Case("POST", lambda w: f"/recycle/vm/{pending(w, 'globex_vm')}/undo",
             signed_in(404, globex_admin=303, operator=303)),
        Case("POST", lambda w: "/recycle/vm/999999/undo", signed_in(404)),
        Case("GET", lambda w: f"/recycle/vm/{w['acme_vm'].id}/undo", everyone(405)),
    ],
}
