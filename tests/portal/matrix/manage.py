"""Management pages (tiers, customers, compliance, coverage, organisations, syncs) and the audit export."""

from __future__ import annotations

from . import Case, signed_in

STAFF_ONLY = signed_in(403, manager=200, operator=200)
OPERATOR_ONLY = signed_in(403, operator=200)
TIER_FORM = {"name": "Gold", "min_rpo_minutes": "30", "max_keep_hourly": "24", "max_keep_daily": "14",
             "max_keep_weekly": "8", "max_keep_monthly": "6", "restore_priority": "high", "rto_minutes": "120",
             "business_critical_included": "on"}
PREMIUM_FORM = {**TIER_FORM, "name": "Premium", "min_rpo_minutes": "15", "max_keep_hourly": "48"}
NOT_GLOBEX = {"manager": ("Globex", "shop-1")}

ROUTES = {
    "web.manage_tiers": [Case("GET", lambda w: "/manage/tiers", STAFF_ONLY)],
    "web.manage_tier_create": [
        Case("POST", lambda w: "/manage/tiers", signed_in(403, manager=303, operator=303), data=lambda w: TIER_FORM),
    ],
    "web.manage_tier": [
        Case("GET", lambda w: f"/manage/tiers/{w['premium'].id}", STAFF_ONLY),
        Case("GET", lambda w: "/manage/tiers/999999", signed_in(403, manager=404, operator=404)),
    ],
    "web.manage_tier_update": [
        Case("POST", lambda w: f"/manage/tiers/{w['premium'].id}", signed_in(403, manager=303, operator=303),
             data=lambda w: PREMIUM_FORM),
        Case("POST", lambda w: "/manage/tiers/999999", signed_in(403, manager=404, operator=404),
             data=lambda w: PREMIUM_FORM),
    ],
    "web.manage_customers": [Case("GET", lambda w: "/manage/customers", STAFF_ONLY, absent=NOT_GLOBEX)],
    "web.manage_customer_tier": [
        Case("POST", lambda w: f"/manage/customers/{w['acme'].id}/tier", signed_in(403, manager=303, operator=303),
             data=lambda w: {"tier_id": str(w["premium"].id)}),
        Case("POST", lambda w: f"/manage/customers/{w['globex'].id}/tier", signed_in(403, operator=303, manager=404),
             data=lambda w: {"tier_id": str(w["basic"].id)}),
        Case("POST", lambda w: "/manage/customers/999999/tier", signed_in(403, operator=404, manager=404),
             data=lambda w: {"tier_id": str(w["basic"].id)}),
    ],
    "web.manage_compliance": [Case("GET", lambda w: "/manage/compliance", STAFF_ONLY, absent=NOT_GLOBEX)],
    "web.manage_coverage": [Case("GET", lambda w: "/manage/coverage", STAFF_ONLY, absent=NOT_GLOBEX)],
    "web.manage_organisations": [Case("GET", lambda w: "/manage/organisations", OPERATOR_ONLY)],
    "web.manage_syncs": [Case("GET", lambda w: "/manage/syncs", OPERATOR_ONLY)],
    "web.audit_export_csv": [
        Case("GET", lambda w: "/audit.csv", signed_in(200)),
        Case("GET", lambda w: f"/audit.csv?organisation={w['globex'].id}",
             signed_in(404, globex_admin=200, operator=200)),
    ],
    "web.audit_export_json": [
        Case("GET", lambda w: "/audit.json", signed_in(200)),
        Case("GET", lambda w: f"/audit.json?organisation={w['acme'].id}", signed_in(200, globex_admin=404)),
    ],
}
