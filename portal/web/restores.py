"""Restores from the portal: request full, in-place or file restores and follow them (queue position, priority
and why, progress, throughput, ETA, report). Browsing a point's files and downloading a selection: ``browse``."""

from __future__ import annotations

import os

from flask import Response, abort, current_app, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from ..auth.guards import login_required
from ..extensions import db
from ..models import VM, BackupPoint, Restore
from ..services import access, runs
from ..services.eta import estimate, finished_in, hydration_of
from . import bp
from .browse import point_of, refused
from .htmx import is_htmx


@bp.route("/vms/<int:vm_id>/backups/<int:backup_id>/restore", methods=["POST"])
@login_required
def request_restore(vm_id: int, backup_id: int) -> BaseResponse | tuple[str, int]:
    """Queue a restore; a refusal comes back on the page that asked (the browse page with its selection, the
    in-place confirmation), with the message."""
    vm, point = point_of(vm_id, backup_id)
    kind = request.form.get("kind", "full")
    paths = list(dict.fromkeys(request.form.getlist("path")))
    target = request.form.get("target", "new")
    try:
        if target not in ("new", "in_place", "in_vm"):
            raise runs.RestoreError("target must be 'new', 'in_place' or 'in_vm'")
        spec = {"type": target, **({"path": request.form.get("dest", "")[:4096]} if target == "in_vm" else {})}
        if target != "new":  # both overwrite what is on the VM's disk now
            _confirmed(vm)
        restore = runs.request_restore(current_user, vm, point, kind, paths=paths,
                                       target=spec, disk=request.form.get("disk", "")[:128])
    except runs.RestoreError as exc:
        db.session.rollback()
        if kind == "files":
            return refused(vm, point, str(exc), exc.status)
        if target == "in_place":
            return _in_place_page(vm, point, error=str(exc)), exc.status
        return _refused(exc)
    return redirect(url_for("web.restore_detail", restore_id=restore.id))


@bp.route("/vms/<int:vm_id>/backups/<int:backup_id>/restore-in-place")
@login_required
def confirm_in_place(vm_id: int, backup_id: int) -> str | tuple[str, int]:
    """The confirmation page: what will be overwritten, the safety backup, and the VM's name to type."""
    vm, point = point_of(vm_id, backup_id)
    if not runs.may_restore_in_place(current_user):
        return _refused(runs.RestoreForbidden(runs.IN_PLACE_FORBIDDEN))
    return _in_place_page(vm, point)


def _in_place_page(vm: VM, point: BackupPoint, error: str = "") -> str:
    """Names every disk the restore overwrites (a point's disk the inventory lacks: the request says why); offers
    the instant way for a VM on RBD where instant restores are set up (a disk that is not on RBD: the request
    says so)."""
    disks = []
    for name in point.disk_names or [""]:
        live = runs.inventory_disk(vm, point, name)
        disks.append((name, live.source if live else "(not a disk of the VM in the inventory)"))
    instant = (any(d.source.startswith("rbd:") for d in vm.disks)
               and bool(current_app.config.get("INSTANT_SOURCE_URL")))
    return render_template("restore_in_place.html", vm=vm, point=point, error=error, disks=disks,
                           chosen=request.form.get("disk", ""), instant_in_place=instant)


@bp.route("/restores/<int:restore_id>/undo", methods=["POST"])
@login_required
def restore_undo(restore_id: int) -> BaseResponse | tuple[str, int]:
    """Undo an in-place restore: restore its safety backup in place (itself with a safety backup first)."""
    restore = _restore(restore_id)
    try:
        _confirmed(restore.vm)
        undo = runs.request_undo(current_user, restore)
    except runs.RestoreError as exc:
        return _refused(exc)
    return redirect(url_for("web.restore_detail", restore_id=undo.id))


def _confirmed(vm: VM) -> None:
    runs.confirm_overwrite(current_user, vm, request.form.get("confirm", ""))


def _refused(exc: runs.RestoreError) -> tuple[str, int]:
    db.session.rollback()
    return render_template("error.html", code=exc.status, message=str(exc)), exc.status


def _restore(restore_id: int) -> Restore:
    restore = db.session.get(Restore, restore_id)
    if restore is None:
        abort(404)
    access.get_vm(current_user, restore.vm_id)  # 404 for another tenant's restore
    return restore


@bp.route("/restores")
@login_required
def restore_list() -> str:
    query = access.scope_to_user(select(Restore).join(VM), VM.organisation_id, current_user)
    restores = list(db.session.scalars(query.order_by(Restore.created_at.desc()).limit(100)))
    return render_template("restores.html", restores=restores, estimate=estimate)


@bp.route("/restores/<int:restore_id>")
@login_required
def restore_detail(restore_id: int) -> str:
    restore = _restore(restore_id)
    template = "restore.html"
    safety = restore.safety_point
    can_undo = ((restore.in_place or restore.into_disk) and safety is not None and not safety.pending_deletion
                and restore.state in ("done", "failed")
                and runs.may_restore_in_place(current_user))
    return render_template(template, restore=restore, eta=estimate(restore), elapsed=finished_in(restore),
                           partial=is_htmx(), can_undo=can_undo, hydration=hydration_of(restore))


@bp.route("/restores/<int:restore_id>/cancel", methods=["POST"])
@login_required
def restore_cancel(restore_id: int) -> BaseResponse:
    restore = _restore(restore_id)
    if not runs.cancel_restore(current_user, restore):
        abort(409, description="only a restore that has not started can be cancelled")
    return redirect(url_for("web.restore_detail", restore_id=restore.id))


@bp.route("/restores/<int:restore_id>/download")
@login_required
def restore_download(restore_id: int) -> Response:
    restore = _restore(restore_id)
    if (restore.kind != "files" or restore.into_disk or restore.state != "done"
            or not os.path.isfile(restore.output_path)):  # into the disk: output_path is the VM's own image
        abort(404)
    return send_file(restore.output_path, as_attachment=True,
                     download_name=f"{restore.vm.name}-restore-{restore.id}.tar.gz")
