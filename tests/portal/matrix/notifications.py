"""The notification centre, preferences and organisation webhooks (portal/web/notifications.py).

Helpers put a portal notification for each tenant's admin and a webhook for each tenant in place before the
cases that need them, so the centre and the webhooks pages have another tenant's data to hide.
"""

from __future__ import annotations

from typing import Any

from portal import clock
from portal.extensions import db
from portal.models import Notification, Webhook

from . import Case, signed_in

HOOK_URLS = {"acme": "https://acme-hooks.example/lifeboat", "globex": "https://globex-hooks.example/lifeboat"}


def notification(world: dict[str, Any], user: str, vm: str) -> int:
    """A delivered portal notification for ``world[user]`` about ``world[vm]``."""
    user_id = db.session.merge(world[user]).id
    found = Notification.query.filter_by(user_id=user_id, channel="portal", kind="backup.failed").first()
    if found is None:
        vm_row = db.session.merge(world[vm])
        found = Notification(organisation_id=vm_row.organisation_id, user_id=user_id, channel="portal",
                             kind="backup.failed", vm_id=vm_row.id, vm_name=vm_row.name, state="sent",
                             subject=f"Backup of {vm_row.name} failed: disk gone", created_at=clock.now(),
                             sent_at=clock.now())
        db.session.add(found)
        db.session.commit()
    return int(found.id)


def hook(world: dict[str, Any], org: str) -> int:
    org_id = db.session.merge(world[org]).id
    found = Webhook.query.filter_by(organisation_id=org_id, url=HOOK_URLS[org]).first()
    if found is None:
        found = Webhook(organisation_id=org_id, url=HOOK_URLS[org], secret="s" * 32, events=["backup.failed"])
        db.session.add(found)
        db.session.commit()
    return int(found.id)


def _centre(world: dict[str, Any]) -> str:
    notification(world, "acme_admin", "acme_vm")
    notification(world, "globex_admin", "globex_vm")
    return "/notifications"


def _webhooks(world: dict[str, Any], org: str) -> str:
    hook(world, "acme")
    hook(world, "globex")
    return f"/organisations/{db.session.merge(world[org]).id}/webhooks"


def _org_url(world: dict[str, Any], org: str) -> str:
    return f"/organisations/{db.session.merge(world[org]).id}/webhooks"


NEW_HOOK = {"url": "https://receiver.example/hook", "events": "backup.failed", "description": "matrix"}

ROUTES = {
    "notifications.centre": [Case("GET", _centre, signed_in(200), absent={
        "acme_member": ("shop-1", "web-1"), "acme_admin": ("shop-1",), "globex_admin": ("web-1",),
        "manager": ("shop-1", "web-1"), "operator": ("shop-1", "web-1")})],
    "notifications.mark_read": [
        Case("POST", lambda w: f"/notifications/{notification(w, 'acme_admin', 'acme_vm')}/read",
             signed_in(404, acme_admin=303)),
        Case("POST", lambda w: "/notifications/999999/read", signed_in(404)),
    ],
    "notifications.mark_all_read": [Case("POST", lambda w: "/notifications/read", signed_in(303))],
    "notifications.preferences": [Case("GET", lambda w: "/notifications/preferences", signed_in(200))],
    "notifications.preferences_save": [
        Case("POST", lambda w: "/notifications/preferences", signed_in(303), data=lambda w: {}),
    ],
    "notifications.webhooks_page": [
        Case("GET", lambda w: _webhooks(w, "acme"), signed_in(200, acme_member=403, globex_admin=404),
             absent={"acme_admin": (HOOK_URLS["globex"],), "manager": (HOOK_URLS["globex"],)}),
        Case("GET", lambda w: _webhooks(w, "globex"), signed_in(404, acme_member=403, globex_admin=200,
                                                                 operator=200),
             absent={"globex_admin": (HOOK_URLS["acme"],)}),
        Case("GET", lambda w: "/organisations/999999/webhooks", signed_in(404, acme_member=403)),
    ],
    "notifications.webhook_create": [
        Case("POST", lambda w: _org_url(w, 'acme'),
             signed_in(201, acme_member=403, globex_admin=404), data=lambda w: NEW_HOOK),
        Case("POST", lambda w: _org_url(w, 'globex'),
             signed_in(404, acme_member=403, globex_admin=201, operator=201), data=lambda w: NEW_HOOK),
        Case("POST", lambda w: _org_url(w, 'acme'),
             signed_in(422, acme_member=403, globex_admin=404), data=lambda w: {"url": "ftp://nope"}),
    ],
    "notifications.webhook_disable": [
        Case("POST", lambda w: f"/webhooks/{hook(w, 'acme')}/disable",
             signed_in(303, acme_member=403, globex_admin=404)),
        Case("POST", lambda w: f"/webhooks/{hook(w, 'globex')}/disable",
             signed_in(404, acme_member=403, globex_admin=303, operator=303)),
    ],
    "notifications.webhook_enable": [
        Case("POST", lambda w: f"/webhooks/{hook(w, 'acme')}/enable",
             signed_in(303, acme_member=403, globex_admin=404)),
        Case("POST", lambda w: "/webhooks/999999/enable", signed_in(404, acme_member=403)),
    ],
    "notifications.webhook_test": [
        Case("POST", lambda w: f"/webhooks/{hook(w, 'acme')}/test",
             signed_in(303, acme_member=403, globex_admin=404)),
        Case("POST", lambda w: f"/webhooks/{hook(w, 'globex')}/test",
             signed_in(404, acme_member=403, globex_admin=303, operator=303)),
    ],
}
