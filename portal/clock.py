"""The portal's single source of time (tests pin it with ``set_now``)."""

from __future__ import annotations

from datetime import UTC, datetime

_fixed: datetime | None = None


def now() -> datetime:
    """Current UTC time, naive (the database stores naive UTC everywhere)."""
    moment = _fixed or datetime.now(UTC)
    return moment.astimezone(UTC).replace(tzinfo=None)


def set_now(moment: datetime | None) -> None:
    global _fixed
    _fixed = moment
