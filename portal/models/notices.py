"""Notices shown to an organisation's admins (and to operators): upcoming deletions, tier changes, alerts.

Shown in the portal itself, so a customer learns about a change even when mail is down.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .. import clock
from ..extensions import db


class Notice(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # deletion | tier_change | rpo_missed | sync_refused | ...
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=clock.now, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    dismissed_at: Mapped[datetime | None] = mapped_column(DateTime)
