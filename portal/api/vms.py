"""VMs, their policies and backup points (list, protect, unprotect, deletion with grace and undo), and
browsing or downloading files inside a backup point."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from storage.browse import open_revision_files
from storage.errors import StorageError

from ..extensions import db
from ..models import VM, BackupPoint, Disk, Organisation
from ..services import access, deletions, policies, protection, selection
from ..services.priority import priority_of
from ..services.status import statuses
from . import schemas as s
from .auth import check_vm, current_token, current_user, require_scope
from .errors import ErrorSchema, api_error
from .pagination import decode, encode, paginate

blp = Blueprint("api_vms", __name__, url_prefix="/api/v1", description="VMs, policies, backup points and files")

PENDING_409 = "the backup point is scheduled for deletion (`deletion_pending`): undo the deletion first"


# -- lookups through the same access checks as the pages ---------------------------------------------------

def get_vm(vm_id: int) -> VM:
    check_vm(vm_id)
    return access.get_vm(current_user(), vm_id)


def get_point(vm_id: int, backup_id: int) -> tuple[VM, BackupPoint]:
    vm = get_vm(vm_id)
    return vm, access.get_backup(current_user(), vm, backup_id)


def vm_json(vm: VM, status: Any = None) -> dict[str, Any]:
    policy = policies.policy_of(vm)
    bounds = policies.Bounds.of(vm.organisation.tier)
    priority = priority_of(vm)
    status = status or statuses([vm])[vm.id]
    return {
        "id": vm.id, "name": vm.name, "organisation": vm.organisation.slug,
        "resource_group": vm.resource_group.name if vm.resource_group else None,
        "environment": vm.environment, "size_bytes": vm.size_bytes,
        "disks": [{"id": d.id, "name": d.name, "size_bytes": d.size_bytes, "missing_since": d.missing_since,
                   "removal_due_at": d.deletion_due_at} for d in vm.disks],
        "policy": policies.snapshot(policy), "tier": vm.organisation.tier.name if vm.organisation.tier else None,
        "bounds": _bounds_json(bounds), "priority_class": priority.klass, "priority_reason": priority.reason,
        "backup_status": status.state, "last_backup_at": status.last_good, "missing_since": vm.missing_since,
        "deletion_due_at": vm.deletion_due_at,
    }


def _bounds_json(bounds: policies.Bounds) -> dict[str, Any]:
    return {"min_rpo_minutes": bounds.min_rpo, **{f"max_{k}": n for k, n in bounds.max_keep.items()},
            "business_critical_allowed": bounds.business_critical_allowed}


def point_json(point: BackupPoint) -> dict[str, Any]:
    return {"id": point.id, "vm": point.vm_id, "revision": point.revision, "created_at": point.created_at,
            "size_bytes": point.size_bytes, "new_bytes": point.new_bytes, "state": point.state,
            "verified_at": point.verified_at, "protected": point.protected, "deletion_due_at": point.deletion_due_at,
            "disks": [{"name": d["name"], "size_bytes": d["size"]} for d in point.disks or []]}


# -- VMs --------------------------------------------------------------------------------------------------

@blp.route("/vms")
class VMs(MethodView):
    @require_scope()
    @blp.arguments(s.VMFilterArgs, location="query")
    @blp.response(200, s.VMPage)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the VMs this token may see (any scope), by id."""
        query = access.scope_to_user(select(VM), VM.organisation_id, current_user())
        token = current_token()
        if token.vm_ids is not None:
            query = query.where(VM.id.in_(token.vm_ids))
        if args.get("organisation"):
            query = query.join(Organisation, Organisation.id == VM.organisation_id).where(
                Organisation.slug == args["organisation"])
        if args.get("environment"):
            query = query.where(VM.environment == args["environment"])
        query = query.options(joinedload(VM.organisation).joinedload(Organisation.tier), joinedload(VM.policy),
                              joinedload(VM.disks), joinedload(VM.resource_group))
        rows, cursor = paginate(query, [VM.id], args)
        status = statuses(rows)
        return {"items": [vm_json(vm, status[vm.id]) for vm in rows], "next": cursor}


@blp.route("/vms/<id:vm>")
class VMDetail(MethodView):
    @require_scope()
    @blp.response(200, s.VMSchema)
    def get(self, vm: int) -> dict[str, Any]:
        """One VM with its environment, policy, tier bounds and restore priority class (any scope)."""
        return vm_json(get_vm(vm))


@blp.route("/vms/<id:vm>/policy")
class VMPolicy(MethodView):
    @require_scope("policies:read")
    @blp.response(200, s.PolicySchema)
    def get(self, vm: int) -> dict[str, Any]:
        """The VM's backup policy."""
        return policies.snapshot(policies.policy_of(get_vm(vm)))

    @require_scope("policies:write")
    @blp.arguments(s.PolicyPatchSchema)
    @blp.response(200, s.PolicySchema)
    @blp.alt_response(422, schema=ErrorSchema, description="a value outside the tier's bounds; nothing was saved")
    def patch(self, values: dict[str, Any], vm: int) -> dict[str, Any]:
        """Change any of the policy's values within the organisation's SLA tier; all or nothing."""
        user = current_user()
        target = get_vm(vm)
        if not user.is_admin:
            api_error(403, "only administrators change policies")
        policy = policies.update(user, target, values)  # a PolicyError answers 422 policy_outside_tier
        return policies.snapshot(policy)


# -- disks missing from the feed, confirmed removed --------------------------------------------------------

def _disk_of(vm: int, disk: int) -> Disk:
    target = get_vm(vm)
    found = next((d for d in target.disks if d.id == disk), None)
    if found is None:
        api_error(404, "not found")
    return found


@blp.route("/vms/<id:vm>/disks/<id:disk>/removal")
class DiskRemoval(MethodView):
    @require_scope("backups:write")
    @blp.response(202, s.DeletionSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="the inventory feed lists the disk (`deletion_refused`)")
    def post(self, vm: int, disk: int) -> dict[str, Any]:
        """Confirm that a disk the inventory feed no longer lists was removed from the VM on purpose. It takes
        effect after the grace period (undo until then): the VM's backups then no longer include the disk, nor
        fail on it; its data stays in the older backup points until they expire. Audited and announced."""
        target = _disk_of(vm, disk)
        deletions.request_deletion(current_user(), target)  # a DeletionError answers its status
        return _disk_removal(target.id, "will be removed from the VM")

    @require_scope("backups:write")
    @blp.response(200, s.DeletionSchema)
    def delete(self, vm: int, disk: int) -> dict[str, Any]:
        """Undo a confirmed removal before it takes effect."""
        target = _disk_of(vm, disk)
        deletions.undo(current_user(), target)
        return _disk_removal(target.id, "the removal was undone")


def _disk_removal(disk_id: int, message: str) -> dict[str, Any]:
    fresh = db.session.get(Disk, disk_id)
    if fresh is None:  # a grace of 0 days: already removed
        return {"kind": "disk", "id": disk_id, "deletion_requested_at": None, "deletion_due_at": None,
                "message": "removed"}
    if fresh.deletion_due_at is not None:
        message = f"{message} at {fresh.deletion_due_at:%Y-%m-%d %H:%M} UTC unless undone"
    return {"kind": "disk", "id": fresh.id, "deletion_requested_at": fresh.deletion_requested_at,
            "deletion_due_at": fresh.deletion_due_at, "message": message}


# -- backup points ----------------------------------------------------------------------------------------

@blp.route("/vms/<id:vm>/backups")
class Backups(MethodView):
    @require_scope("backups:read")
    @blp.arguments(s.VMFilterArgs(only=("cursor", "limit")), location="query")
    @blp.response(200, s.BackupPage)
    def get(self, args: dict[str, Any], vm: int) -> dict[str, Any]:
        """The VM's backup points, newest first (points scheduled for deletion included, with their due time)."""
        target = get_vm(vm)
        query = select(BackupPoint).where(BackupPoint.vm_id == target.id)
        rows, cursor = paginate(query, [BackupPoint.created_at, BackupPoint.id], args, descending=True)
        return {"items": [point_json(p) for p in rows], "next": cursor}


@blp.route("/vms/<id:vm>/backups/<id:backup>")
class BackupDetail(MethodView):
    @require_scope("backups:read")
    @blp.response(200, s.BackupSchema)
    def get(self, vm: int, backup: int) -> dict[str, Any]:
        """One backup point."""
        return point_json(get_point(vm, backup)[1])

    @require_scope("backups:write")
    @blp.response(202, s.DeletionSchema)
    def delete(self, vm: int, backup: int) -> dict[str, Any]:
        """Request the point's deletion: it waits in the recycle bin for the grace period (undo until then)."""
        point = get_point(vm, backup)[1]
        return _deletion(point, undo=False)


@blp.route("/vms/<id:vm>/backups/<id:backup>/undelete")
class BackupUndelete(MethodView):
    @require_scope("backups:write")
    @blp.response(200, s.DeletionSchema)
    def post(self, vm: int, backup: int) -> dict[str, Any]:
        """Undo a requested deletion before it is due."""
        point = get_point(vm, backup)[1]
        return _deletion(point, undo=True)


def _deletion(point: BackupPoint, *, undo: bool) -> dict[str, Any]:
    user, point_id = current_user(), point.id
    if undo:  # a DeletionError answers its status (409 deletion_refused, 403, 404)
        deletions.undo(user, point)
    else:
        deletions.request_deletion(user, point)
    fresh = db.session.get(BackupPoint, point_id)
    if fresh is None:
        return {"kind": "backup", "id": point_id, "deletion_requested_at": None, "deletion_due_at": None,
                "message": "deleted"}
    if undo:
        message = "the deletion was undone"
    else:
        message = f"will be deleted at {fresh.deletion_due_at:%Y-%m-%d %H:%M} UTC unless undone"
    return {"kind": "backup", "id": fresh.id, "deletion_requested_at": fresh.deletion_requested_at,
            "deletion_due_at": fresh.deletion_due_at, "message": message}


def _protect(vm: int, backup: int, protected: bool) -> dict[str, Any]:
    point = get_point(vm, backup)[1]
    protection.set_protected(current_user(), point, protected)  # a ProtectionError answers its status
    return point_json(point)


@blp.route("/vms/<id:vm>/backups/<id:backup>/protect")
class BackupProtect(MethodView):
    @require_scope("backups:write")
    @blp.response(200, s.BackupSchema)
    def post(self, vm: int, backup: int) -> dict[str, Any]:
        """Protect the point: retention and deletion leave it alone until it is unprotected."""
        return _protect(vm, backup, True)


@blp.route("/vms/<id:vm>/backups/<id:backup>/unprotect")
class BackupUnprotect(MethodView):
    @require_scope("backups:write")
    @blp.response(200, s.BackupSchema)
    def post(self, vm: int, backup: int) -> dict[str, Any]:
        """Release the point's protection."""
        return _protect(vm, backup, False)


# -- files inside a backup point --------------------------------------------------------------------------

def _live_point(vm: int, backup: int) -> tuple[VM, BackupPoint]:
    target, point = get_point(vm, backup)
    if point.pending_deletion:
        api_error(409, deletions.pending_message(point), "deletion_pending")
    return target, point


@blp.route("/vms/<id:vm>/backups/<id:backup>/files")
class BackupFiles(MethodView):
    @require_scope("backups:read")
    @blp.arguments(s.FilesArgs, location="query")
    @blp.response(200, s.FilesSchema)
    @blp.alt_response(409, schema=ErrorSchema, description=PENDING_409)
    def get(self, args: dict[str, Any], vm: int, backup: int) -> dict[str, Any]:
        """List a directory inside the backup without restoring it: `/` lists the point's disks (`/root`,
        `/data`), `/root` its partitions (`/root/p1`), `/root/p1/etc` a folder; with `q`, search names below
        `path`. Paged like every list (`items`, `next`). Deprecated for one release: `entries` and `truncated`
        (aliases), and paths without the disk (`/p1/etc`), which read disk `root` (else the first disk) and
        answer in that form."""
        target, point = _live_point(vm, backup)
        path = args["path"]
        if not path.startswith("/") or "\x00" in path:
            api_error(400, "path must be absolute")
        # A backup point never changes, so a position in its listing is a stable cursor.
        start = decode(args["cursor"], [int])[0] if args["cursor"] else 0
        if start < 0:
            api_error(400, "the cursor is not valid; start again without one", "bad_cursor")
        end = start + min(args["limit"], s.FILES_PAGE)
        try:
            with open_revision_files(current_app.config["STORAGE_ROOT"], target.repository_name,
                                     point.revision) as files:
                if args["q"].strip():
                    entries = files.search(path, args["q"].strip(), limit=end + 1)
                else:
                    entries = files.list_dir(path)
        except StorageError as exc:
            api_error(422, str(exc), "storage_error")
        items = [e.to_json() for e in entries[start:end]]
        more = len(entries) > end
        return {"items": items, "next": encode([end]) if more else None, "path": path, "entries": items,
                "truncated": more}


@blp.route("/vms/<id:vm>/backups/<id:backup>/download")
class BackupDownload(MethodView):
    @require_scope("backups:read")
    @blp.arguments(s.DownloadArgs, location="query")
    @blp.response(200, {"type": "string", "format": "binary"},
                  content_type="application/gzip", description="a .tar.gz (or .zip) of the selection")
    @blp.doc(responses={"200": {"description": "a .tar.gz (`format=tar.gz`) or .zip (`format=zip`) of the selection",
                                "content": {kind: {"schema": {"type": "string", "format": "binary"}}
                                            for kind in ("application/gzip", "application/zip")}}})
    @blp.alt_response(409, schema=ErrorSchema, description=PENDING_409)
    def get(self, args: dict[str, Any], vm: int, backup: int) -> Response:
        """Stream a .tar.gz or .zip of the selected files and folders straight from the backup (paths as the
        files list names them, `/root/p1/etc`; all of one disk)."""
        target, point = _live_point(vm, backup)
        paths, kind = args["path"], args["format"]
        if any(not p.startswith("/") or "\x00" in p for p in paths):
            api_error(400, "paths must be absolute")
        root = current_app.config["STORAGE_ROOT"]
        try:
            picked = selection.check(root, target, point, paths)
        except StorageError as exc:
            api_error(422, str(exc), "storage_error")
        return selection.download(root, target, point, picked, kind)
