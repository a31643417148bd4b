"""The files of a backup point: browse the tree, download a selection, and the page's own error answers.

The selection form posts (its CSRF token must never land in a URL, a log or a Referer). When the download or
a restore of the selection is refused (nothing ticked, a path that is not in the backup, too large, the VM's
name mistyped when putting files back), the browse page comes back with the message and the selection as it
was: the folders holding ticked entries are opened again (at most ``MAX_OPENED`` of them) and their entries
ticked; ticked paths beyond that are kept as hidden fields and named, so nothing chosen is lost silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Response, abort, current_app, render_template, request
from flask_login import current_user

from storage.browse import open_revision_files
from storage.errors import StorageError
from storage.files.entry import Entry

from ..auth.guards import login_required
from ..models import VM, BackupPoint
from ..services import access, deletions, runs, selection
from . import bp
from .htmx import is_htmx

MAX_LISTING = 2000
MAX_PATHS = 1000
MAX_OPENED = 50  # folders opened again to show a kept selection; more ticked paths stay as hidden fields


@dataclass
class Node:
    """An entry of the tree as shown: ``children`` is the folder's listing when it is shown opened."""

    entry: Entry
    children: list[Node] | None = None


@dataclass
class Kept:
    """What the user had chosen, for a page that answers a refused selection."""

    paths: list[str] = field(default_factory=list)
    dest: str = ""
    shown: set[str] = field(default_factory=set)  # the kept paths the tree shows (ticked)

    @property
    def hidden(self) -> list[str]:
        return [p for p in self.paths if p not in self.shown]


def point_of(vm_id: int, backup_id: int) -> tuple[VM, BackupPoint]:
    """The VM and its point as the user may see them; a point waiting for deletion is refused (409, why)."""
    vm = access.get_vm(current_user, vm_id)
    point = access.get_backup(current_user, vm, backup_id)
    if point.pending_deletion:
        abort(409, description=deletions.pending_message(point))
    return vm, point


def _absolute(path: str) -> bool:
    return path.startswith("/") and len(path) <= 4096 and "\x00" not in path


def _path_arg(values: Any, name: str = "path", default: str = "/") -> str:
    path = values.get(name, default) or default
    if not _absolute(path):
        abort(400, description="path must be absolute")
    return str(path)


def _chosen(values: Any) -> list[str]:
    """The ticked paths, each once, in the order given (a folder and a file in it may both be ticked)."""
    return list(dict.fromkeys(values.getlist("path")))


@bp.route("/vms/<int:vm_id>/backups/<int:backup_id>/files")
@login_required
def browse(vm_id: int, backup_id: int) -> str | tuple[str, int]:
    vm, point = point_of(vm_id, backup_id)
    path = _path_arg(request.args)
    query = request.args.get("q", "").strip()[:200]
    if is_htmx():  # one folder's listing, opened by the tree
        return page(vm, point, path=path, query=query, partial=True)
    return page(vm, point, path=path, query=query)


def page(vm: VM, point: BackupPoint, *, path: str = "/", query: str = "", kept: Kept | None = None,
         message: str = "", status: int = 200, partial: bool = False) -> tuple[str, int]:
    """The browse page (or one folder's listing) with ``message`` above the selection and ``kept`` ticked."""
    kept = kept or Kept()
    chosen = set(kept.paths)
    error = None
    nodes: list[Node] = []
    try:
        with open_revision_files(current_app.config["STORAGE_ROOT"], vm.repository_name, point.revision) as files:
            if query:
                nodes = [Node(e) for e in files.search(path, query, limit=MAX_LISTING)]
            else:
                nodes = _tree(files, path, chosen, [MAX_OPENED])
    except StorageError as exc:
        error = str(exc)
        status = 422 if status == 200 else status  # a refusal keeps its own status
    kept.shown = {p for p in _paths(nodes) if p in chosen}
    can_put_back = (runs.may_restore_in_place(current_user)
                    and any(d.source.startswith("file:") and not d.missing_since for d in vm.disks))
    return render_template("browse.html", vm=vm, point=point, path=path, nodes=nodes, error=error, query=query,
                           partial=partial, can_put_back=can_put_back, kept=kept, chosen=chosen,
                           message=message, trail=trail(path)), status


def trail(path: str) -> list[tuple[str, str]]:
    """The breadcrumbs of ``path``: (name, path) from the disks down (``/data/p1/etc``: Disks, data, p1, etc)."""
    parts = [p for p in path.split("/") if p]
    return [("Disks", "/")] + [(part, "/" + "/".join(parts[: n + 1])) for n, part in enumerate(parts)]


def _tree(files: Any, path: str, chosen: set[str], budget: list[int]) -> list[Node]:
    """The listing of ``path``; folders that hold a chosen path are opened too, while ``budget`` lasts."""
    nodes = [Node(e) for e in files.list_dir(path)[:MAX_LISTING]]
    for node in nodes:
        inside = node.entry.path.rstrip("/") + "/"
        if node.entry.type == "dir" and budget[0] > 0 and any(p.startswith(inside) for p in chosen):
            budget[0] -= 1
            node.children = _tree(files, node.entry.path, chosen, budget)
    return nodes


def _paths(nodes: list[Node]) -> list[str]:
    found = []
    for node in nodes:
        found.append(node.entry.path)
        found += _paths(node.children or [])
    return found


def refused(vm: VM, point: BackupPoint, message: str, status: int, values: Any = None) -> tuple[str, int]:
    """The browse page again, as the selection form (``values``, default the posted form) left it, with why
    the selection was refused."""
    form = request.form if values is None else values
    kept = Kept(paths=_chosen(form)[:MAX_PATHS], dest=form.get("dest", "")[:4096])
    at = form.get("at", "/")
    return page(vm, point, path=at if _absolute(at) else "/", query=form.get("q", "").strip()[:200], kept=kept,
                message=message, status=status)


@bp.route("/vms/<int:vm_id>/backups/<int:backup_id>/download", methods=["GET", "POST"])
@login_required
def download_selection(vm_id: int, backup_id: int) -> Response | tuple[str, int]:
    """Stream a tar.gz or zip of the selection straight from the backup (no copy of the image anywhere).

    The page posts its selection; GET (a link, a script with a session) answers the same way."""
    vm, point = point_of(vm_id, backup_id)
    values = request.form if request.method == "POST" else request.args
    paths = _chosen(values)
    kind = values.get("format", "tar.gz")
    problem = None
    if not paths:
        problem = "Nothing is selected: tick the files or folders to download first."
    elif len(paths) > MAX_PATHS or not all(_absolute(p) for p in paths):
        problem = f"Choose 1 to {MAX_PATHS} files or folders (absolute paths)."
    elif kind not in selection.FORMATS:
        problem = "The format must be .tar.gz or .zip."
    if problem:
        return refused(vm, point, problem, 400, values)
    root = current_app.config["STORAGE_ROOT"]
    try:
        picked = selection.check(root, vm, point, paths)
    except StorageError as exc:
        return refused(vm, point, str(exc), 422, values)
    return selection.download(root, vm, point, picked, kind)
