"""Server-rendered pages (htmx for partial updates)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint

from ..services import outcome

bp = Blueprint("web", __name__)


@bp.app_template_global()
def job_outcome(row: object) -> str:
    """A job's state for people: its step while active, its outcome once finished (services/outcome.py)."""
    return outcome.describe(row)


@bp.app_template_filter("epoch")
def format_epoch(seconds: float) -> str:
    """Seconds since the epoch (file mtimes inside backups) as a UTC date and time."""
    try:
        return datetime.fromtimestamp(float(seconds), UTC).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return "?"


from . import audit_text, browse, keys, manage, presentation, recycle, restores, tokens, users, verifications, views  # noqa: E402,F401 - registers the routes
