"""Restores: request a full or file restore of a backup point (202), follow it (state, queue position,
progress, report), cancel it while queued, download the result of a file restore."""

from __future__ import annotations

import os
from typing import Any

from flask import Response, send_file, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from ..extensions import db
from ..models import VM, Restore
from ..models.runs import DONE
from ..services import access, outcome, runs
from ..services.eta import estimate
from . import schemas as s
from .auth import check_vm, current_token, current_user, require_scope
from .errors import ErrorSchema, api_error
from .pagination import paginate
from .vms import get_point

blp = Blueprint("api_restores", __name__, url_prefix="/api/v1", description="Restores")


def is_downloadable(restore: Restore) -> bool:
    """A finished file restore to an archive; never one into the VM's disk (its ``output_path`` is the VM's
    own disk image, which the restore wrote into, not something to hand out)."""
    return restore.kind == "files" and not restore.into_disk and restore.state == DONE and bool(restore.output_path)


def restore_json(restore: Restore, *, with_position: bool = True) -> dict[str, Any]:
    eta = estimate(restore) if with_position else None
    downloadable = is_downloadable(restore)
    return {
        "id": restore.id, "vm": restore.vm_id, "backup": restore.backup_point_id, "kind": restore.kind,
        "paths": list(restore.paths or []), "target": dict(restore.target or {}), "disk": restore.disk,
        "state": restore.state,
        "phase": restore.phase, "outcome": outcome.describe(restore), "position": eta.position if eta else None,
        "priority_class": restore.priority_class, "priority_reason": restore.priority_reason,
        "progress": restore.progress, "bytes_done": restore.bytes_done, "bytes_total": restore.bytes_total,
        "eta_seconds": round(eta.seconds_left, 1) if eta and eta.seconds_left is not None else None,
        "error": restore.error, "report": dict(restore.report or {}), "created_at": restore.created_at,
        "started_at": restore.started_at, "finished_at": restore.finished_at, "usable_at": restore.usable_at,
        "download": url_for("api_restores.RestoreDownload", id=restore.id) if downloadable else None,
    }


def get_restore(restore_id: int) -> Restore:
    """A restore of a VM the token's user may see (and its VM restriction allows); else 404."""
    restore = db.session.get(Restore, restore_id)
    if restore is None:
        api_error(404, "not found")
    check_vm(restore.vm_id)
    access.get_vm(current_user(), restore.vm_id)
    return restore


@blp.route("/restores")
class Restores(MethodView):
    @require_scope("restores:read")
    @blp.arguments(s.RestoreFilterArgs, location="query")
    @blp.response(200, s.RestorePage)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Restores of the VMs this token may see, newest first."""
        query = access.scope_to_user(select(Restore).join(VM, VM.id == Restore.vm_id), VM.organisation_id,
                                     current_user())
        token = current_token()
        if token.vm_ids is not None:
            query = query.where(Restore.vm_id.in_(token.vm_ids))
        if args.get("state"):
            query = query.where(Restore.state == args["state"])
        rows, cursor = paginate(query, [Restore.id], args, descending=True)
        return {"items": [restore_json(r, with_position=False) for r in rows], "next": cursor}


@blp.route("/vms/<id:vm>/restores")
class VMRestores(MethodView):
    @require_scope("restores:write")
    @blp.arguments(s.RestoreRequestSchema)
    @blp.response(202, s.RestoreSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="the request cannot be accepted (why in `message`)")
    @blp.alt_response(409, schema=ErrorSchema, description="the backup point is scheduled for deletion "
                                                           "(`deletion_pending`): undo it first")
    def post(self, body: dict[str, Any], vm: int) -> dict[str, Any]:
        """Queue a full restore (to a new image, or in place), a file restore of `paths` (an archive, or back into
        the VM's disk), or an instant restore (RBD disks: an image usable at once, hydrated in the background)
        from backup point `backup`."""
        target, point = get_point(vm, body["backup"])
        where = body["target"]
        spec: dict[str, Any] = {"type": where["type"]}
        if where["type"] != "new":  # both overwrite what is on the VM's disk now
            runs.confirm_overwrite(current_user(), target, where["confirm"])
        if where["type"] == "in_vm":
            spec["path"] = where["path"]
        # a RestoreError answers 422 restore_refused (409 deletion_pending, 403 forbidden)
        restore = runs.request_restore(current_user(), target, point, body["kind"], paths=body["paths"],
                                       target=spec, disk=body["disk"])
        return restore_json(restore)


@blp.route("/restores/<id:id>")
class RestoreDetail(MethodView):
    @require_scope("restores:read")
    @blp.response(200, s.RestoreSchema)
    def get(self, id: int) -> dict[str, Any]:
        """A restore's state (queued, running, done, failed, cancelled), queue position, progress and report."""
        return restore_json(get_restore(id))


@blp.route("/restores/<id:id>/undo")
class RestoreUndo(MethodView):
    @require_scope("restores:write")
    @blp.arguments(s.ConfirmSchema)
    @blp.response(202, s.RestoreSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="nothing to put back, or not finished yet")
    def post(self, body: dict[str, Any], id: int) -> dict[str, Any]:
        """Put back the state from before an in-place restore (or files put back): an in-place restore of its
        safety backup, which takes a safety backup of its own."""
        restore = get_restore(id)
        runs.confirm_overwrite(current_user(), restore.vm, body["confirm"])
        return restore_json(runs.request_undo(current_user(), restore))


@blp.route("/restores/<id:id>/cancel")
class RestoreCancel(MethodView):
    @require_scope("restores:write")
    @blp.response(200, s.RestoreSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="the restore has already started or finished")
    def post(self, id: int) -> dict[str, Any]:
        """Cancel a restore that has not started yet."""
        restore = get_restore(id)
        if not runs.cancel_restore(current_user(), restore):
            api_error(409, "only a restore that has not started can be cancelled", "not_cancellable")
        return restore_json(restore)


@blp.route("/restores/<id:id>/download")
class RestoreDownload(MethodView):
    @require_scope("restores:read")
    @blp.response(200, {"type": "string", "format": "binary"}, content_type="application/gzip",
                  description="the .tar.gz a finished file restore produced")
    @blp.alt_response(404, schema=ErrorSchema, description="no such restore, a restore into the VM's disk, or "
                                                           "the restored files are gone")
    @blp.alt_response(409, schema=ErrorSchema, description="not a finished file restore")
    def get(self, id: int) -> Response:
        """Download the result of a finished file restore (to an archive; one into the VM's disk has none)."""
        restore = get_restore(id)
        if restore.into_disk:  # its output_path is the VM's live disk image, not a download (as on the page)
            api_error(404, "a restore into the VM's disk has no download")
        if restore.kind != "files" or restore.state != DONE:
            api_error(409, "only a finished file restore has a download", "not_ready")
        if not os.path.isfile(restore.output_path):
            api_error(404, "the restored files are no longer there", "gone")
        return send_file(restore.output_path, as_attachment=True,
                         download_name=f"{restore.vm.name}-restore-{restore.id}.tar.gz")
