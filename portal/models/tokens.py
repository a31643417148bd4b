"""API credentials: bearer tokens (personal or issued to OAuth clients) and OAuth 2.0 machine clients.

Secrets are random (256 bits) and only their SHA-256 is stored: a leaked database gives no usable token, and
a lookup by hash needs no slow password hash (there is nothing to brute-force in 256 random bits).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .. import clock
from ..extensions import db
from .accounts import User
from .mixins import Timestamped


class OAuthClient(Timestamped, db.Model):  # type: ignore[name-defined,misc]
    """A machine client of the client-credentials grant, created by a customer admin; acts as that admin,
    with at most the scopes (and VMs) given here."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    vm_ids: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    token_lifetime: Mapped[int] = mapped_column(Integer, default=3600)  # seconds
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)

    user: Mapped[User] = relationship()

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class ApiToken(Timestamped, db.Model):  # type: ignore[name-defined,misc]
    """A bearer token: scopes, optional expiry, optional restriction to listed VMs, revocable, last use kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("oauth_clients.id"), index=True, default=None)
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), default="")  # shown in lists to tell tokens apart
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    vm_ids: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    last_used_addr: Mapped[str] = mapped_column(String(64), default="")

    user: Mapped[User] = relationship()
    client: Mapped[OAuthClient | None] = relationship()

    def allows_vm(self, vm_id: int) -> bool:
        """Whether the optional VM restriction lets this token touch ``vm_id`` (no restriction: every VM the
        user may see)."""
        return self.vm_ids is None or int(vm_id) in {int(v) for v in self.vm_ids}

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= clock.now()

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def usable(self) -> bool:
        return not self.revoked and not self.expired
