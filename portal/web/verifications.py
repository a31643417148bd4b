"""Verify now: an operator asks for a VM's backups to be re-read and re-hashed ahead of the rolling schedule."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse

from storage.repository import has_repository

from ..auth.guards import login_required
from ..services import access, verification
from . import bp


@bp.route("/vms/<int:vm_id>/verify", methods=["POST"])
@login_required
def verify_now(vm_id: int) -> BaseResponse | tuple[str, int]:
    vm = access.get_vm(current_user, vm_id)  # another tenant's VM: 404 before anything else
    if not current_user.is_operator:
        return render_template("error.html", code=403,
                               message="Only operators can start a verification; every backup point is "
                                       "verified automatically at least once a week."), 403
    if not has_repository(current_app.config["STORAGE_ROOT"], vm.repository_name):
        return render_template("error.html", code=409, message=f"{vm.name} has no backups to verify yet."), 409
    already = verification.active_for(vm)
    row = verification.request(vm, current_user)
    flash(f"A verification of all of {vm.name}'s backups is already {row.state}." if already else
          f"Verification of all of {vm.name}'s backups queued; the backup points show the result.", "ok")
    return redirect(url_for("web.vm_detail", vm_id=vm.id), code=303)
