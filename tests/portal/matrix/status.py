"""Health endpoints, /metrics, the customer status page and the operators' incident pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from portal import clock
from portal.extensions import db
from portal.models import Incident

from . import Case, everyone, signed_in

OPERATOR_ONLY = signed_in(403, operator=200)
OPERATOR_POST = signed_in(403, operator=303)
WINDOW = {"kind": "maintenance", "title": "Matrix window", "scope": "all", "ends_at": "2099-01-01T00:00"}


def incident(world: dict[str, Any]) -> int:
    """A fresh open maintenance window for acme (each case gets its own, so resolving one leaves the next)."""
    now = clock.now()
    row = Incident(kind="maintenance", title="Matrix maintenance", organisation_ids=[world["acme"].id],
                   starts_at=now, ends_at=now + timedelta(hours=1), created_by="matrix")
    db.session.add(row)
    db.session.commit()
    return int(row.id)


ROUTES = {
    "health.healthz": [Case("GET", lambda w: "/healthz", everyone(200))],
    # The matrix app has neither Redis nor a storage root: not ready, whoever asks.
    "health.readyz": [Case("GET", lambda w: "/readyz", everyone(503))],
    # No METRICS_TOKEN and no METRICS_ALLOW (and not the demo): nobody, signed in or not.
    "health.metrics": [Case("GET", lambda w: "/metrics", everyone(403))],
    "status.page": [Case("GET", lambda w: "/status", signed_in(200), absent={
        "globex_admin": ("web-1", "staging-api"), "acme_member": ("shop-1",), "acme_admin": ("shop-1",)})],
    "status.manage_incidents": [Case("GET", lambda w: "/manage/incidents", OPERATOR_ONLY)],
    "status.incident_create": [
        Case("POST", lambda w: "/manage/incidents", OPERATOR_POST, data=lambda w: WINDOW),
        Case("POST", lambda w: "/manage/incidents", signed_in(403, operator=422),
             data=lambda w: {**WINDOW, "ends_at": ""}),
    ],
    "status.incident_detail": [
        Case("GET", lambda w: f"/manage/incidents/{incident(w)}", OPERATOR_ONLY),
        Case("GET", lambda w: "/manage/incidents/999999", signed_in(403, operator=404)),
    ],
    "status.incident_update": [
        Case("POST", lambda w: f"/manage/incidents/{incident(w)}/updates", OPERATOR_POST,
             data=lambda w: {"message": "Disks are being replaced."}),
        Case("POST", lambda w: f"/manage/incidents/{incident(w)}/updates", signed_in(403, operator=422),
             data=lambda w: {"message": ""}),
    ],
    "status.incident_resolve": [
        Case("POST", lambda w: f"/manage/incidents/{incident(w)}/resolve", OPERATOR_POST,
             data=lambda w: {"message": "Done."}),
    ],
}
