"""Notifications: one row per recipient and channel, per-user preferences, and organisation webhooks.

Every notification is a row written (and committed) before anything is sent, so what was sent, what failed
and why stays visible after the fact. Channels: ``portal`` (the notification centre: delivered when the row is
written), ``email`` (sent by a job, or held for the daily digest) and ``webhook`` (POSTed by a job).
``vm_id`` has no foreign key on purpose: a purged VM must not take its notification history with it, nor be
blocked by it; ``vm_name`` keeps the label.

An organisation's *notice* is a ``portal`` row without a user: the standing message the portal itself shows
(the upcoming-deletion banner with its Undo, an RPO miss while it lasts, a tier change), so a customer learns
of a change even when mail is down. It lives until ``expires_at`` or until it is dismissed (``dismissed_at``:
the deletion undone or done, the VM back within its RPO). People's portal rows are their inbox; the notice is
the organisation's, so reading one's inbox never hides a banner from the other admins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .. import clock
from ..extensions import db
from .accounts import Organisation, User

PENDING, SENT, FAILED, SUPPRESSED = "pending", "sent", "failed", "suppressed"
NOTIFICATION_STATES = (PENDING, SENT, FAILED, SUPPRESSED)
CHANNELS = ("portal", "email", "webhook")
EMAIL_MODES = ("off", "immediate", "daily")


class Webhook(db.Model):  # type: ignore[name-defined,misc]
    """An organisation's HTTPS endpoint for events, signed with ``secret`` (HMAC-SHA256).

    The secret is stored as given: signing needs the secret itself, so it cannot be hashed like a password.
    Webhooks are disabled, never deleted, so their delivery history stays readable.
    """

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=clock.now)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    organisation: Mapped[Organisation] = relationship()

    @property
    def name(self) -> str:  # the audit log's label
        return self.url


class Notification(db.Model):  # type: ignore[name-defined,misc]
    """One event for one recipient on one channel: ``state`` says where it stands and ``why`` explains it.

    - ``pending``: waiting for its job (or, with ``digest`` set, for the recipient's daily digest);
    - ``sent``: delivered (portal rows are delivered when written);
    - ``failed``: gave up after the configured retries; ``why`` holds the last error;
    - ``suppressed``: deliberately not sent (a duplicate within the window, no SMTP server, webhook disabled).
    A digest mail is itself a row (kind ``digest``); the rows it carries point at it with ``digest_id``.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_dedup", "kind", "dedup_key", "channel", "created_at"),
        Index("ix_notifications_inbox", "user_id", "channel", "read_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    webhook_id: Mapped[int | None] = mapped_column(ForeignKey("webhooks.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(48))
    vm_id: Mapped[int | None] = mapped_column(Integer)
    vm_name: Mapped[str] = mapped_column(String(200), default="")
    dedup_key: Mapped[str] = mapped_column(String(120), default="")
    subject: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    why: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    digest: Mapped[bool] = mapped_column(Boolean, default=False)
    digest_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=clock.now, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    read_at: Mapped[datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)  # notices: shown until then
    dismissed_at: Mapped[datetime | None] = mapped_column(DateTime)  # notices: no longer true since then

    user: Mapped[User | None] = relationship()
    webhook: Mapped[Webhook | None] = relationship()

    @property
    def job_id(self) -> str:
        return f"notify-{self.id}"

    @property
    def message(self) -> str:
        """A notice's whole text (its body; the subject is the same text cut to one header line)."""
        return self.body


class NotificationPreference(db.Model):  # type: ignore[name-defined,misc]
    """A user's choice for one event kind: email ``off``/``immediate``/``daily`` (digest), portal on or off.

    No row means the role's default (``portal.services.notify.default_preference``).
    """

    __tablename__ = "notification_preferences"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(48), primary_key=True)
    email: Mapped[str] = mapped_column(String(16), default="immediate")
    portal: Mapped[bool] = mapped_column(Boolean, default=True)
