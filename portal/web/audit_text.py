"""The audit log as sentences: "RPO 30 → 60 min" rather than two JSON blobs (the raw JSON stays one click away).

Only presentation: the entry is unchanged, the API and the CSV/JSON exports keep the raw before/after.
A field or action not named here still reads sensibly ("field: old → new", the action's own name).
"""

from __future__ import annotations

from typing import Any

from . import bp

#: action -> what the actor did, in words
VERBS = {
    "policy.update": "changed the backup policy", "policy.clamp": "fitted the policy to the tier",
    "backup.request": "asked for a backup", "backup.protect": "changed the protection of a backup",
    "deletion.request": "scheduled a deletion", "deletion.undo": "undid a deletion",
    "deletion.purge": "carried out a deletion", "deletion.blocked": "found a deletion blocked",
    "restore.request": "requested a restore", "restore.cancel": "cancelled a restore",
    "restore.rerank": "re-ranked a restore", "restore.safety_backup": "took a safety backup",
    "disaster.start": "started a disaster run", "disaster.finish": "finished a disaster run",
    "drill.request": "asked for a fire drill", "incident.update": "updated an incident",
    "incident.resolve": "resolved an incident", "inventory.sync": "synced the inventory",
    "inventory.sync_refused": "had an inventory sync refused", "organisation.tier": "changed the tier",
    "tier.create": "created a tier", "tier.update": "changed a tier", "token.create": "created an API token",
    "token.revoke": "revoked an API token", "oauth_client.create": "created an API client",
    "oauth_client.revoke": "revoked an API client", "user.create": "created a user",
    "user.activate": "changed a user's access", "user.role": "changed a user's role",
    "webhook.create": "added a webhook", "webhook.enable": "changed a webhook", "webhook.test": "tested a webhook",
    "verification.request": "asked for a verification", "verification.damage": "found damage",
    "retention.failed": "saw retention fail", "notifications.preferences": "changed notification preferences",
    "auth.oidc_login": "signed in with single sign-on",
}
#: field -> (label, unit)
FIELDS = {
    "rpo_minutes": ("RPO", " min"), "keep_hourly": ("hourly points kept", ""),
    "keep_daily": ("daily points kept", ""), "keep_weekly": ("weekly points kept", ""),
    "keep_monthly": ("monthly points kept", ""), "business_critical": ("business-critical", ""),
    "excluded": ("excluded from backup", ""), "role": ("role", ""), "active": ("active", ""),
    "tier": ("tier", ""), "protected": ("protected", ""), "deletion_due_at": ("deletion due", ""),
}


def _value(value: Any) -> str:
    if value is None or value == "":
        return "none"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if isinstance(value, list | dict):
        return f"{len(value)} item(s)"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """Each changed field as "label old → new unit"; a field only after (or only before) as "label: value"."""
    before, after = before or {}, after or {}
    out: list[str] = []
    for key in [*before, *(k for k in after if k not in before)]:
        label, unit = FIELDS.get(key, (key.replace("_", " "), ""))
        if key in before and key in after:
            if before[key] != after[key]:
                out.append(f"{label} {_value(before[key])} → {_value(after[key])}{unit}")
        elif key in after:
            out.append(f"{label}: {_value(after[key])}{unit}")
        else:
            out.append(f"{label} was {_value(before[key])}{unit}")
    return out


@bp.app_template_global()
def audit_sentence(action: str, object_type: str, object_label: str, actor: str,
                   before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """One entry as people say it: "changed the backup policy of VM web-1: RPO 30 → 60 min, by admin@acme"."""
    verb = VERBS.get(action, action)
    target = f"{object_type} {object_label}".strip()
    said = f"{actor or 'the system'} {verb}" + (f" — {target}" if target else "")
    diff = changes(before, after)
    return said + (": " + "; ".join(diff) if diff else "")
