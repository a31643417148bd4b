"""The recycle bin, delete and undo: one click, no "are you sure" (the grace period and Undo are the safety).

htmx requests get ``_deletion_response.html``: the controls (the button turns into "deleted on … Undo" and
back), or in the bin the whole row, plus out-of-band swaps of what else the action made stale on the page the
form names in ``place`` (the bin's count, the VM page's warning, a point's Browse / Full restore) and on every
page (the upcoming-deletions banner, the unread count: an undo notifies). Plain form posts get a redirect with
a flash message, so everything works without JavaScript. Refusals keep their status (403, 404, 409) and a
message; the fragment opts in to being swapped on them.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from markupsafe import escape
from werkzeug.wrappers import Response

from ..auth.guards import login_required
from ..extensions import db
from ..models import Notification
from ..security import same_site_path
from ..services import deletables, deletions
from ..services.deletions import DeletionError
from . import bp
from .htmx import is_htmx

PLACES = ("bin", "vm", "point")


@bp.app_context_processor
def _deletion_helpers() -> dict[str, Any]:
    """Template helpers for the delete/undo controls and the banner; queries run only when a template calls."""

    def notices() -> list[Notification]:
        if not current_user.is_authenticated:
            return []
        return deletions.upcoming_notices(current_user)

    return {
        "deletion_kind": deletables.kind_of,
        "may_delete": lambda obj: current_user.is_authenticated and deletions.may_delete(current_user, obj),
        "may_undo": lambda obj: current_user.is_authenticated and deletions.may_undo(current_user, obj),
        "deletion_url": _delete_url,
        "undo_url": lambda obj: url_for("web.deletion_undo", kind=deletables.kind_of(obj), obj_id=obj.id),
        "deletion_notices": notices,
    }


def _delete_url(obj: Any) -> str:
    kind = deletables.kind_of(obj)
    if kind == "backup":
        return url_for("web.backup_delete", backup_id=obj.id)
    if kind == "vm":
        return url_for("web.vm_delete", vm_id=obj.id)
    return url_for("web.deletion_request", kind=kind, obj_id=obj.id)


@bp.route("/recycle")
@login_required
def recycle_bin() -> str:
    return render_template("recycle.html", entries=deletions.pending_for(current_user))


@bp.route("/backups/<int:backup_id>/delete", methods=["POST"])
@login_required
def backup_delete(backup_id: int) -> Response | tuple[str, int]:
    return _act("delete", _find("backup", backup_id))


@bp.route("/vms/<int:vm_id>/delete", methods=["POST"])
@login_required
def vm_delete(vm_id: int) -> Response | tuple[str, int]:
    return _act("delete", _find("vm", vm_id))


@bp.route("/recycle/<kind>/<int:obj_id>/delete", methods=["POST"])
@login_required
def deletion_request(kind: str, obj_id: int) -> Response | tuple[str, int]:
    """Users and organisations (and, for symmetry, backups and VMs) by kind."""
    return _act("delete", _find(kind, obj_id))


@bp.route("/recycle/<kind>/<int:obj_id>/undo", methods=["POST"])
@login_required
def deletion_undo(kind: str, obj_id: int) -> Response | tuple[str, int]:
    return _act("undo", _find(kind, obj_id))


def _find(kind: str, obj_id: int) -> Any:
    if kind not in deletables.KINDS:
        abort(404)
    try:
        return deletions.find(current_user, kind, obj_id)
    except DeletionError:
        abort(404)


def _act(action: str, obj: Any) -> Response | tuple[str, int]:
    label = deletables.label_of(obj)
    obj_id, kind = obj.id, deletables.kind_of(obj)
    try:
        if action == "delete":
            deletions.request_deletion(current_user, obj)
        else:
            deletions.undo(current_user, obj)
    except DeletionError as exc:
        return _refused(obj, exc)
    fresh = db.session.get(deletables.KINDS[kind], obj_id)
    message = _message(action, fresh, label)
    if is_htmx():
        if fresh is None or deletions.is_purged(fresh):  # a kind without grace: already gone
            return f'<span class="deletion-controls" role="status">{escape(message)}</span>', 200
        return _fragment(fresh, message=message), 200
    flash(message, "ok")
    return redirect(_back(), code=303)


def _place() -> str:
    """Where the form sits (``bin``, ``vm``, ``point`` or nothing): which out-of-band pieces exist there."""
    place = request.form.get("place", "")
    return place if place in PLACES else ""


def _fragment(obj: Any, **shown: str) -> str:
    place = _place()
    extra: dict[str, Any] = {}
    if place == "bin":
        extra = {"e": deletions.entry_for(obj), "count": len(deletions.pending_for(current_user))}
    return render_template("_deletion_response.html", obj=obj, place=place, back=_back(), **shown, **extra)


def _message(action: str, obj: Any, label: str) -> str:
    if action == "undo":
        return f"Restored: the {label} will not be deleted."
    if obj is None or deletions.is_purged(obj):
        return f"Deleted: the {label}."
    if obj.deletion_due_at is None:
        return f"The {label} was kept: it is protected (see the audit log)."
    return f"The {label} will be deleted on {obj.deletion_due_at:%Y-%m-%d %H:%M} UTC. Undo in the recycle bin."


def _refused(obj: Any, exc: DeletionError) -> tuple[str, int]:
    if exc.status == 404:
        abort(404)
    if is_htmx():
        return _fragment(obj, error=str(exc)), exc.status
    return render_template("error.html", code=exc.status, message=str(exc)), exc.status




def _back() -> str:
    """Where a plain form post returns: the ``next`` field if it is a path on this site, else the bin."""
    return same_site_path(request.form.get("next", "")[:500]) or url_for("web.recycle_bin")
