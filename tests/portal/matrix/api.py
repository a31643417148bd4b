"""The REST API (bearer tokens: the matrix test sends each role's token with every scope; anonymous sends
none) and the API access page (personal access tokens and OAuth clients)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from portal import clock
from portal.extensions import db
from portal.models import Disk, Restore
from portal.services import tokens
from tests.fixtures.portal import make_point, make_vm

from . import Case, everyone, signed_in

V1 = "/api/v1"
#: the matrix test sends each role's bearer token (every scope) to these routes, anonymous none
API_TOKENS = True


def api(code: int, **overrides: int) -> dict[str, int]:
    return everyone(code, anonymous=401, **overrides)


def _once(w: dict[str, Any], key: str, make: Any) -> Any:
    """An extra object for one case, made the first time its URL is built (the world is fresh per role)."""
    if key not in w:
        w[key] = make()
    return w[key]


def _spare_vm(w: dict[str, Any]) -> Any:
    """An acme VM of its own for deletions, so their notices name no VM other matrix modules look for."""
    return _once(w, "api_spare_vm", lambda: make_vm(w["acme"], "api-spare", "staging"))


def _doomed(w: dict[str, Any]) -> Any:
    return _once(w, "api_doomed_point", lambda: make_point(_spare_vm(w), revision="20261125T000000Z-000000"))


def _pending(w: dict[str, Any]) -> Any:
    now = clock.now()
    return _once(w, "api_pending_point", lambda: make_point(
        _spare_vm(w), revision="20261126T000000Z-000000", deletion_requested_at=now,
        deletion_due_at=now + timedelta(days=14), deletion_requested_by_id=w["acme_admin"].id))


def _missing_disk(w: dict[str, Any], key: str, pending: bool = False) -> str:
    """A disk of the spare VM that the feed no longer lists (confirmed removed already when ``pending``)."""
    def make() -> Disk:
        now = clock.now()
        vm = _spare_vm(w)
        disk = Disk(vm_id=vm.id, name=key, source=f"rbd:pool/{key}", missing_since=now,
                    deletion_requested_at=now if pending else None,
                    deletion_due_at=now + timedelta(days=1) if pending else None)
        db.session.add(disk)
        db.session.commit()
        return disk

    disk = _once(w, key, make)
    return f"{V1}/vms/{disk.vm_id}/disks/{disk.id}/removal"


def _queued_restore(w: dict[str, Any]) -> Restore:
    def make() -> Restore:
        restore = Restore(vm_id=w["acme_vm"].id, backup_point_id=w["acme_point"].id, kind="full",
                          priority_class="critical", requested_by_id=w["acme_admin"].id, job_id="restore-matrix")
        db.session.add(restore)
        db.session.commit()
        return restore

    return _once(w, "api_queued_restore", make)


def _vm(w: dict[str, Any], key: str = "acme_vm") -> str:
    return f"{V1}/vms/{w[key].id}"


def _point(w: dict[str, Any], point: Any, suffix: str = "") -> str:
    return f"{V1}/vms/{point.vm_id}/backups/{point.id}{suffix}"


ACME_ONLY = api(200, globex_admin=404)
GLOBEX_ONLY = api(404, globex_admin=200, operator=200)
ADMINS = api(200, acme_member=403, globex_admin=404)
STAFF_ONLY = api(403, manager=200, operator=200)

ROUTES = {
    "api-docs.openapi_json": [Case("GET", lambda w: f"{V1}/openapi.json", everyone(200))],
    "api_oauth.token": [Case("POST", lambda w: f"{V1}/oauth/token", everyone(400))],
    "api_vms.VMs": [Case("GET", lambda w: f"{V1}/vms", api(200), absent={
        "acme_member": ("shop-1",), "acme_admin": ("shop-1",), "globex_admin": ("web-1", "staging-api"),
        "manager": ("shop-1",)})],
    "api_vms.VMDetail": [
        Case("GET", lambda w: _vm(w), ACME_ONLY),
        Case("GET", lambda w: _vm(w, "globex_vm"), GLOBEX_ONLY),
        Case("GET", lambda w: f"{V1}/vms/999999", api(404)),
    ],
    "api_vms.VMPolicy": [
        Case("GET", lambda w: _vm(w) + "/policy", ACME_ONLY),
        Case("PATCH", lambda w: _vm(w) + "/policy", ADMINS, data=lambda w: {"rpo_minutes": 120}),
        Case("PATCH", lambda w: _vm(w, "globex_vm") + "/policy", api(404, globex_admin=422, operator=422),
             data=lambda w: {"rpo_minutes": 120}),
    ],
    "api_vms.Backups": [
        Case("GET", lambda w: _vm(w) + "/backups", ACME_ONLY),
        Case("GET", lambda w: _vm(w, "globex_vm") + "/backups", GLOBEX_ONLY),
    ],
    "api_vms.BackupDetail": [
        Case("GET", lambda w: _point(w, w["acme_point"]), ACME_ONLY),
        Case("GET", lambda w: f"{_vm(w)}/backups/{w['globex_point'].id}", api(404)),  # another VM's point
        Case("DELETE", lambda w: _point(w, _doomed(w)), api(202, acme_member=403, globex_admin=404)),
    ],
    "api_vms.DiskRemoval": [
        Case("POST", lambda w: _missing_disk(w, "gone"), api(202, acme_member=403, globex_admin=404)),
        Case("DELETE", lambda w: _missing_disk(w, "back", pending=True), ADMINS),
        Case("POST", lambda w: f"{_vm(w)}/disks/{w['acme_vm'].disks[0].id}/removal",
             api(409, acme_member=403, globex_admin=404)),  # listed by the feed: nothing to confirm
        Case("POST", lambda w: f"{_vm(w, 'globex_vm')}/disks/{w['acme_vm'].disks[0].id}/removal", api(404)),
    ],
    "api_vms.BackupUndelete": [Case("POST", lambda w: _point(w, _pending(w), "/undelete"), ADMINS)],
    "api_vms.BackupProtect": [Case("POST", lambda w: _point(w, w["acme_point"], "/protect"), ADMINS)],
    "api_vms.BackupUnprotect": [Case("POST", lambda w: _point(w, w["acme_point"], "/unprotect"), ADMINS)],
    # The matrix world's catalog rows have no repository behind them: allowed roles get a clear 422.
    "api_vms.BackupFiles": [
        Case("GET", lambda w: _point(w, w["acme_point"], "/files?path=/"), api(422, globex_admin=404)),
        Case("GET", lambda w: f"{_vm(w)}/backups/{w['globex_point'].id}/files", api(404)),
    ],
    "api_vms.BackupDownload": [
        Case("GET", lambda w: _point(w, w["acme_point"], "/download?path=/p1"), api(422, globex_admin=404)),
        Case("GET", lambda w: _point(w, w["acme_point"], "/download"), api(422)),  # no path: invalid input
    ],
    "api_restores.Restores": [Case("GET", lambda w: f"{V1}/restores", api(200))],
    "api_restores.VMRestores": [
        Case("POST", lambda w: _vm(w) + "/restores", api(422, globex_admin=404),
             data=lambda w: {"backup": w["acme_point"].id, "kind": "files", "paths": []}),
        Case("POST", lambda w: _vm(w, "globex_vm") + "/restores", api(404, globex_admin=422, operator=422),
             data=lambda w: {"backup": w["globex_point"].id, "kind": "files", "paths": []}),
        # in place without the VM's name typed: refused before anything is queued (members may not at all)
        Case("POST", lambda w: _vm(w) + "/restores", api(422, acme_member=403, manager=403, globex_admin=404),
             data=lambda w: {"backup": w["acme_point"].id, "kind": "full",
                             "target": {"type": "in_place", "confirm": "not-web-1"}}),
    ],
    "api_restores.RestoreDetail": [
        Case("GET", lambda w: f"{V1}/restores/{w['acme_restore'].id}", ACME_ONLY),
        Case("GET", lambda w: f"{V1}/restores/999999", api(404)),
    ],
    "api_restores.RestoreUndo": [  # the matrix restore is not in place: nothing to put back (422 once confirmed)
        Case("POST", lambda w: f"{V1}/restores/{w['acme_restore'].id}/undo",
             api(422, acme_member=403, manager=403, globex_admin=404), data=lambda w: {"confirm": "web-1"}),
    ],
    "api_restores.RestoreCancel": [
        Case("POST", lambda w: f"{V1}/restores/{_queued_restore(w).id}/cancel", ACME_ONLY),
    ],
    "api_restores.RestoreDownload": [
        Case("GET", lambda w: f"{V1}/restores/{w['acme_restore'].id}/download", api(409, globex_admin=404)),
    ],
    "api_audit.Audit": [Case("GET", lambda w: f"{V1}/audit", api(200))],
    "api_tiers.Tiers": [
        Case("GET", lambda w: f"{V1}/tiers", STAFF_ONLY),
        Case("POST", lambda w: f"{V1}/tiers", api(403, manager=422, operator=422),
             data=lambda w: {"name": "Gold", "min_rpo_minutes": 1}),
    ],
    "api_tiers.TierDetail": [
        Case("GET", lambda w: f"{V1}/tiers/{w['premium'].id}", STAFF_ONLY),
        Case("PATCH", lambda w: f"{V1}/tiers/{w['premium'].id}", api(403, manager=422, operator=422),
             data=lambda w: {"min_rpo_minutes": 1}),
    ],
    "api_tiers.OrganisationTier": [
        Case("PUT", lambda w: f"{V1}/organisations/{w['acme'].id}/tier", STAFF_ONLY,
             data=lambda w: {"tier": w["premium"].id}),
        Case("PUT", lambda w: f"{V1}/organisations/{w['globex'].id}/tier", api(403, manager=404, operator=200),
             data=lambda w: {"tier": w["basic"].id}),
    ],
    "api_inventory.InventorySync": [
        # an empty feed for acme would mark all its VMs missing: the mass-drop guard refuses it (409)
        Case("POST", lambda w: f"{V1}/inventory/sync?scope=acme", api(403, operator=409),
             data=lambda w: {"organisations": []}),
    ],
    "api_inventory.InventoryExport": [Case("GET", lambda w: f"{V1}/inventory", api(403, operator=200))],
    # the API access page (tokens and OAuth clients): administrators and staff; members ask their admin
    "web.tokens_page": [Case("GET", lambda w: "/tokens", signed_in(200, acme_member=403))],
    "web.tokens_create": [Case("POST", lambda w: "/tokens", signed_in(201, acme_member=403),
                               data=lambda w: {"name": "matrix", "scope": "backups:read", "expires_days": "30"})],
    "web.tokens_revoke": [Case("POST", lambda w: f"/tokens/{_admin_token(w).id}/revoke",
                               signed_in(404, acme_member=403, acme_admin=303))],
    "web.tokens_client_create": [Case("POST", lambda w: "/tokens/clients", signed_in(201, acme_member=403),
                                      data=lambda w: {"name": "matrix", "scope": "backups:read"})],
    "web.tokens_client_revoke": [Case("POST", lambda w: f"/tokens/clients/{_admin_client(w).id}/revoke",
                                      signed_in(404, acme_member=403, acme_admin=303))],
}


def _admin_token(w: dict[str, Any]) -> Any:
    return _once(w, "api_admin_token", lambda: tokens.create_token(w["acme_admin"], ["backups:read"])[0])


def _admin_client(w: dict[str, Any]) -> Any:
    return _once(w, "api_admin_client", lambda: tokens.create_client(w["acme_admin"], "c", ["backups:read"])[0])
