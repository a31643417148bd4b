"""Browsing a backup's files, downloads, restore requests and restore pages."""

from __future__ import annotations

from . import Case, everyone, signed_in


def _files(w: dict, point: str, suffix: str = "files") -> str:
    vm = "acme_vm" if point == "acme_point" else "globex_vm"
    return f"/vms/{w[vm].id}/backups/{w[point].id}/{suffix}"


SECRET = "x" * 43  # the length of a real source secret: no restore has it

ROUTES = {
    # The HTTP source of instant restores: the secret is the only key, whoever asks; none is known here.
    "instant.source": [
        Case("GET", lambda w: f"/instant/{SECRET}/disk.raw", everyone(404)),
        Case("HEAD", lambda w: f"/instant/{SECRET}/disk.raw", everyone(404)),
        Case("GET", lambda w: "/instant/short/disk.raw", everyone(404)),
        Case("POST", lambda w: f"/instant/{SECRET}/disk.raw", everyone(405)),
    ],
    # The catalog rows of the matrix world have no repository behind them: allowed roles get a clear 422.
    "web.browse": [
        Case("GET", lambda w: _files(w, "acme_point"), signed_in(422, globex_admin=404)),
        Case("GET", lambda w: _files(w, "globex_point"), signed_in(404, globex_admin=422, operator=422)),
        Case("GET", lambda w: f"/vms/{w['acme_vm'].id}/backups/{w['globex_point'].id}/files", signed_in(404)),
    ],
    "web.download_selection": [
        Case("GET", lambda w: _files(w, "acme_point", "download") + "?path=/p1", signed_in(422, globex_admin=404)),
        Case("GET", lambda w: _files(w, "acme_point", "download"), signed_in(400, globex_admin=404)),
        # the browse page's form posts (its CSRF token stays out of the URL); refusals re-render that page
        Case("POST", lambda w: _files(w, "acme_point", "download"), signed_in(400, globex_admin=404),
             data=lambda w: {"format": "zip"}),
        Case("POST", lambda w: _files(w, "acme_point", "download"), signed_in(422, globex_admin=404),
             data=lambda w: {"path": "/p1/etc", "format": "tar.gz"}),
    ],
    "web.request_restore": [
        Case("POST", lambda w: _files(w, "acme_point", "restore"), signed_in(422, globex_admin=404),
             data=lambda w: {"kind": "bogus"}),
        Case("POST", lambda w: _files(w, "globex_point", "restore"), signed_in(404, globex_admin=422, operator=422),
             data=lambda w: {"kind": "bogus"}),
        Case("POST", lambda w: _files(w, "acme_point", "restore"),
             signed_in(422, acme_member=403, manager=403, globex_admin=404),
             data=lambda w: {"kind": "full", "target": "in_place", "confirm": "not the name"}),
        Case("POST", lambda w: _files(w, "acme_point", "restore"),  # instant: not set up (no INSTANT_SOURCE_URL)
             signed_in(422, globex_admin=404), data=lambda w: {"kind": "instant"}),
        Case("POST", lambda w: _files(w, "acme_point", "restore"),  # files back into an rbd disk: refused
             signed_in(422, acme_member=403, manager=403, globex_admin=404),
             data=lambda w: {"kind": "files", "path": "/p1/etc", "target": "in_vm", "confirm": "web-1"}),
    ],
    # In place: members and account managers are refused (403) before anything else is looked at; admins and
    # operators without the typed VM name get a 422.
    "web.confirm_in_place": [
        Case("GET", lambda w: _files(w, "acme_point", "restore-in-place"),
             signed_in(200, acme_member=403, manager=403, globex_admin=404)),
        Case("GET", lambda w: _files(w, "globex_point", "restore-in-place"), signed_in(404, operator=200,
                                                                                          globex_admin=200)),
    ],
    "web.restore_undo": [  # the matrix restore is not in place: nothing to put back (422 once confirmed)
        Case("POST", lambda w: f"/restores/{w['acme_restore'].id}/undo",
             signed_in(422, acme_member=403, manager=403, globex_admin=404), data=lambda w: {"confirm": "web-1"}),
    ],
    "web.restore_list": [Case("GET", lambda w: "/restores", signed_in(200), absent={"globex_admin": ("web-1",)})],
    "web.restore_detail": [
        Case("GET", lambda w: f"/restores/{w['acme_restore'].id}", signed_in(200, globex_admin=404)),
        Case("GET", lambda w: "/restores/99999", signed_in(404)),
    ],
    "web.restore_download": [Case("GET", lambda w: f"/restores/{w['acme_restore'].id}/download", signed_in(404))],
    # Operators only; the matrix world's VMs have no repository, so an operator gets a clear 409.
    "web.verify_now": [
        Case("POST", lambda w: f"/vms/{w['acme_vm'].id}/verify",
             signed_in(403, globex_admin=404, operator=409)),
        Case("POST", lambda w: f"/vms/{w['globex_vm'].id}/verify",
             signed_in(404, globex_admin=403, operator=409)),
    ],
    "web.restore_cancel": [
        Case("POST", lambda w: f"/restores/{w['acme_restore'].id}/cancel", signed_in(302, globex_admin=404)),
    ],
}
