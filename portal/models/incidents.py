"""Incidents and maintenance windows that customers see on their status page, and heartbeats of the
long-running processes (the scheduler) that monitoring reads.

An incident's scope is every organisation (``scope_all``), a list of organisation ids, or a Ceph pool (the
organisations with a VM disk in that pool, worked out when asked, so VMs added later are covered too).
Organisation ids are a JSON list rather than a link table: an organisation purged later must not be held
back by an old incident, and the list is only ever read whole.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .. import clock
from ..extensions import db

DISASTER, MAINTENANCE = "disaster", "maintenance"
KINDS = (DISASTER, MAINTENANCE)
OPEN, RESOLVED = "open", "resolved"
STATES = (OPEN, RESOLVED)


class Incident(db.Model):  # type: ignore[name-defined,misc]
    """A disaster or an announced maintenance window. ``state`` is ``open`` until an operator resolves it;
    a maintenance window also stops being shown once ``ends_at`` has passed."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_state_starts", "state", "starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default=OPEN)
    scope_all: Mapped[bool] = mapped_column(Boolean, default=False)
    organisation_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    pool: Mapped[str | None] = mapped_column(String(100))
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=clock.now)
    created_by: Mapped[str] = mapped_column(String(254), default="")  # email or "system:<what>"
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime)

    updates: Mapped[list[IncidentUpdate]] = relationship(
        back_populates="incident", cascade="all, delete-orphan",
        order_by=lambda: [IncidentUpdate.at.desc(), IncidentUpdate.id.desc()])  # type: ignore[arg-type]  # newest first; the stubs know no callable returning a list

    @property
    def name(self) -> str:  # the audit log's label
        return self.title

    def phase(self, now: datetime) -> str:
        """``upcoming`` (announced, not started), ``active``, ``ended`` (its window passed) or ``resolved``."""
        if self.state == RESOLVED:
            return "resolved"
        if now < self.starts_at:
            return "upcoming"
        if self.ends_at is not None and now >= self.ends_at:
            return "ended"
        return "active"


class IncidentUpdate(db.Model):  # type: ignore[name-defined,misc]
    """A message an operator posted to an incident (customers read them on their status page)."""

    __tablename__ = "incident_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=clock.now)
    author: Mapped[str] = mapped_column(String(254), default="")
    author_id: Mapped[int | None] = mapped_column(Integer)  # no FK: users are deletable, the email stays
    message: Mapped[str] = mapped_column(Text)

    incident: Mapped[Incident] = relationship(back_populates="updates")


class Heartbeat(db.Model):  # type: ignore[name-defined,misc]
    """The last time a named process (``scheduler``) proved it was alive; ``lifeboat check`` and /metrics
    read its age. One row per name, overwritten each tick."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)
