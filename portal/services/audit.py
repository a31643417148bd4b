"""Writing the audit log. Callers add the entry in the same transaction as the change it describes."""

from __future__ import annotations

from typing import Any

from flask import has_request_context, request

from ..extensions import db
from ..models import AuditEntry, User


def record(
    actor: User | str,
    action: str,
    obj: Any,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    organisation_id: int | None = None,
    label: str | None = None,
) -> AuditEntry:
    """Add an audit row for ``action`` on ``obj`` (not committed: the caller's transaction decides)."""
    entry = AuditEntry(
        actor_id=actor.id if isinstance(actor, User) else None,
        actor=actor.email if isinstance(actor, User) else actor,
        action=action,
        object_type=type(obj).__name__.lower() if obj is not None else "",
        object_id=getattr(obj, "id", None) if obj is not None else None,
        object_label=label if label is not None else str(getattr(obj, "name", "") or getattr(obj, "email", "")),
        organisation_id=organisation_id if organisation_id is not None else _organisation_of(obj),
        before=before,
        after=after,
        remote_addr=request.remote_addr or "" if has_request_context() else "",
    )
    db.session.add(entry)
    return entry


def _organisation_of(obj: Any) -> int | None:
    if obj is None:
        return None
    if type(obj).__name__ == "Organisation":
        return int(obj.id) if obj.id is not None else None
    value = getattr(obj, "organisation_id", None)
    return int(value) if value is not None else None
