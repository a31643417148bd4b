"""Restores from the portal: browse a backup point's files, download a selection, request full or file
restores, and follow them (queue position, priority and why, progress, throughput, ETA, report)."""

from __future__ import annotations

import os

from flask import Response, abort, current_app, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from storage.browse import open_revision_disk
from storage.errors import StorageError

from ..extensions import db
from ..models import VM, Restore
from ..services import access, runs, selection
from ..services.eta import estimate, finished_in, hydration_of
from . import bp

MAX_LISTING = 2000


def _point(vm_id: int, backup_id: int) -> tuple[VM, object]:
    vm = access.get_vm(current_user, vm_id)
    point = access.get_backup(current_user, vm, backup_id)
    if point.pending_deletion:
        abort(404)
    return vm, point


def _path_arg(name: str = "path", default: str = "/") -> str:
    path = request.args.get(name, default)
    if not path.startswith("/") or len(path) > 4096 or "\x00" in path:
        abort(400, description="path must be absolute")
    return path


@bp.route("/vms/<int:vm_id>/backups/<int:backup_id>/files")
@login_required
def browse(vm_id: int, backup_id: int) -> str | tuple[str, int]:
    vm, point = _point(vm_id, backup_id)
    path = _path_arg()
    query = request.args.get("q", "").strip()[:200]
    try:
        with open_revision_disk(current_app.config["STORAGE_ROOT"], vm.repository_name, point.revision) as disk:
            if query:
                entries = disk.search(path, query, limit=MAX_LISTING)
            else:
                entries = disk.list_dir(path)[:MAX_LISTING]
    except StorageError as exc:
        return render_template("browse.html", vm=vm, point=point, path=path, entries=[], error=str(exc),
                               query=query, partial=bool(request.headers.get("HX-Request"))), 422
    return render_template("browse.html", vm=vm, point=point, path=path, entries=entries, error=None,
                           query=query, partial=bool(request.headers.get("HX-Request")),
                           can_put_back=runs.may_restore_in_place(current_user)  # type: ignore[arg-type]
                           and bool(vm.disks) and vm.disks[0].source.startswith("file:"))


@bp.route("/vms/<int:vm_id>/backups/<int:backup_id>/download")
@login_required
def download_selection(vm_id: int, backup_id: int) -> Response:
    """Stream a tar.gz or zip of the selection straight from the backup (no copy of the image anywhere)."""
    vm, point = _point(vm_id, backup_id)
    paths = request.args.getlist("path")
    if not paths or len(paths) > 1000 or any(not p.startswith("/") or len(p) > 4096 for p in paths):
        abort(400, description="choose 1 to 1000 absolute paths")
    kind = request.args.get("format", "tar.gz")
    if kind not in ("tar.gz", "zip"):
        abort(400, description="format must be tar.gz or zip")
    root = current_app.config["STORAGE_ROOT"]
    try:
        selection.check(root, vm, point, paths)
    except StorageError as exc:
        abort(422, description=str(exc))
    return selection.download(root, vm, point, paths, kind)


@bp.route("/vms/<int:vm_id>/backups/<int:backup_id>/restore", methods=["POST"])
@login_required
def request_restore(vm_id: int, backup_id: int) -> BaseResponse | tuple[str, int]:
    vm, point = _point(vm_id, backup_id)
    kind = request.form.get("kind", "full")
    paths = request.form.getlist("path")
    target = request.form.get("target", "new")
    if target not in ("new", "in_place", "in_vm"):
        return _refused(runs.RestoreError("target must be 'new', 'in_place' or 'in_vm'"))
    spec = {"type": target, **({"path": request.form.get("dest", "")[:4096]} if target == "in_vm" else {})}
    try:
        if target != "new":  # both overwrite what is on the VM's disk now
            _confirmed(vm)
        restore = runs.request_restore(current_user, vm, point, kind, paths=paths,  # type: ignore[arg-type]
                                       target=spec)
    except runs.RestoreError as exc:
        return _refused(exc)
    return redirect(url_for("web.restore_detail", restore_id=restore.id))


@bp.route("/vms/<int:vm_id>/backups/<int:backup_id>/restore-in-place")
@login_required
def confirm_in_place(vm_id: int, backup_id: int) -> str | tuple[str, int]:
    """The confirmation page: what will be overwritten, the safety backup, and the VM's name to type."""
    vm, point = _point(vm_id, backup_id)
    if not runs.may_restore_in_place(current_user):  # type: ignore[arg-type]
        return _refused(runs.RestoreForbidden(runs.IN_PLACE_FORBIDDEN))
    return render_template("restore_in_place.html", vm=vm, point=point, disk=vm.disks[0].source if vm.disks else "")


@bp.route("/restores/<int:restore_id>/undo", methods=["POST"])
@login_required
def restore_undo(restore_id: int) -> BaseResponse | tuple[str, int]:
    """Undo an in-place restore: restore its safety backup in place (itself with a safety backup first)."""
    restore = _restore(restore_id)
    try:
        _confirmed(restore.vm)
        undo = runs.request_undo(current_user, restore)  # type: ignore[arg-type]
    except runs.RestoreError as exc:
        return _refused(exc)
    return redirect(url_for("web.restore_detail", restore_id=undo.id))


def _confirmed(vm: VM) -> None:
    """Overwriting a disk needs the actor's role and the VM's name typed out (not a double click)."""
    if not runs.may_restore_in_place(current_user):  # type: ignore[arg-type]
        raise runs.RestoreForbidden(runs.IN_PLACE_FORBIDDEN)
    if request.form.get("confirm", "").strip() != vm.name:
        raise runs.RestoreError(f"type the VM's name ({vm.name}) to confirm that its disk will be overwritten")


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
                and runs.may_restore_in_place(current_user))  # type: ignore[arg-type]
    return render_template(template, restore=restore, eta=estimate(restore), elapsed=finished_in(restore),
                           partial=request.headers.get("HX-Request") == "true", can_undo=can_undo,
                           hydration=hydration_of(restore))


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
