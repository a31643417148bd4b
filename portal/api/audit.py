"""The audit log, scoped like the page: customers see their organisation's entries, account managers their
organisations', operators everything. Entries are not all about VMs (users, tokens, tiers), so the log is
organisation-wide: a token restricted to some VMs gets 403 rather than a filtered log that could leak."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from ..models import AuditEntry
from ..services import access
from . import schemas as s
from .auth import current_user, require_scope
from .pagination import paginate

blp = Blueprint("api_audit", __name__, url_prefix="/api/v1", description="Audit log")


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "actor": entry.actor, "action": entry.action,
            "object": {"type": entry.object_type, "id": entry.object_id, "label": entry.object_label},
            "organisation": entry.organisation_id, "before": entry.before, "after": entry.after, "at": entry.at,
            "remote_addr": entry.remote_addr}


@blp.route("/audit")
class Audit(MethodView):
    @require_scope("audit:read", organisation_wide=True)
    @blp.arguments(s.AuditFilterArgs, location="query")
    @blp.response(200, s.AuditPage)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Audit entries, newest first: who (`actor`), what (`action`, `object`), `before`, `after`, `at`.

        The log covers whole organisations, so a token restricted to some VMs gets 403.
        """
        query = access.scope_to_user(select(AuditEntry), AuditEntry.organisation_id, current_user())
        if args.get("action"):
            query = query.where(AuditEntry.action == args["action"])
        rows, cursor = paginate(query, [AuditEntry.id], args, descending=True)
        return {"items": [entry_json(e) for e in rows], "next": cursor}
