"""Organisation keys: the key each organisation's encrypted repositories are wrapped by, kept wrapped by the
installation's master key (never in the clear in the database)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .. import clock
from ..extensions import db


class OrganisationKey(db.Model):  # type: ignore[name-defined,misc]
    """One organisation key; the newest of an organisation wraps new repositories, older ones stay to open
    repositories not rewrapped yet. ``exported_at``: shown once to the organisation (escrow), audited."""

    __tablename__ = "organisation_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    #: the key wrapped by the master key: {"by": master key id, "nonce": ..., "data": ...}
    wrapped: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=clock.now)
    exported_at: Mapped[datetime | None] = mapped_column(DateTime)
