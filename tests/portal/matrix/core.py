"""Sign-in, dashboard, VM page, policy form, audit log."""

from __future__ import annotations

from . import Case, everyone, signed_in

POLICY_FORM = {"rpo_minutes": "120", "keep_hourly": "24", "keep_daily": "7", "keep_weekly": "4",
               "keep_monthly": "3", "pre_hook": "", "post_hook": ""}

ROUTES = {
    "static": [Case("GET", lambda w: "/static/lifeboat.css", everyone(200))],
    "auth.login": [Case("GET", lambda w: "/login", everyone(200))],
    "auth.logout": [Case("POST", lambda w: "/logout", everyone(302))],
    "web.dashboard": [Case("GET", lambda w: "/", signed_in(200), absent={
        "acme_member": ("shop-1",), "acme_admin": ("shop-1",), "globex_admin": ("web-1", "staging-api"),
        "manager": ("shop-1",)})],
    "web.vm_detail": [
        Case("GET", lambda w: f"/vms/{w['acme_vm'].id}", signed_in(200, globex_admin=404)),
        Case("GET", lambda w: f"/vms/{w['globex_vm'].id}", signed_in(404, globex_admin=200, operator=200)),
        Case("GET", lambda w: "/vms/999999", signed_in(404)),
    ],
    "web.vm_policy": [
        Case("POST", lambda w: f"/vms/{w['acme_vm'].id}/policy", signed_in(200, acme_member=403, globex_admin=404),
             data=lambda w: POLICY_FORM),
        Case("POST", lambda w: f"/vms/{w['globex_vm'].id}/policy",
             signed_in(404, globex_admin=422, operator=422), data=lambda w: POLICY_FORM),
    ],
    "web.audit_log": [Case("GET", lambda w: "/audit", signed_in(200))],
    # "off": releasing an unprotected point changes nothing, so the routes walked after it (deleting the VM)
    # see the world as it was; tests/portal/test_protect_page.py protects for real
    "web.point_protect": [
        Case("POST", lambda w: f"/vms/{w['acme_vm'].id}/backups/{w['acme_point'].id}/protect",
             signed_in(302, acme_member=403, globex_admin=404), data=lambda w: {"protected": "off"}),
        Case("POST", lambda w: f"/vms/{w['globex_vm'].id}/backups/{w['globex_point'].id}/protect",
             signed_in(404, globex_admin=302, operator=302), data=lambda w: {"protected": "off"}),
    ],
}
