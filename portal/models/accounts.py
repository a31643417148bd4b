"""Organisations, users and their roles, and SLA tiers."""

from __future__ import annotations

import hmac
import secrets

from flask import current_app, has_app_context
from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from .mixins import Deletable, Timestamped

CUSTOMER_MEMBER = "customer_member"
CUSTOMER_ADMIN = "customer_admin"
ACCOUNT_MANAGER = "account_manager"
OPERATOR = "operator"
ROLES = (CUSTOMER_MEMBER, CUSTOMER_ADMIN, ACCOUNT_MANAGER, OPERATOR)

PRIORITY_CLASSES = ("critical", "high", "normal", "low")



def hash_password(password: str) -> str:
    """The password's hash by the configured method (``PASSWORD_HASH_METHOD``; scrypt outside an app)."""
    method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt") if has_app_context() else "scrypt"
    return generate_password_hash(password, method=method)

class SlaTier(Timestamped, db.Model):  # type: ignore[name-defined,misc]
    """What an organisation has bought: how fine its RPO may be, how much it may keep, how fast it returns."""

    __tablename__ = "sla_tiers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    min_rpo_minutes: Mapped[int] = mapped_column(Integer)
    max_keep_hourly: Mapped[int] = mapped_column(Integer, default=24)
    max_keep_daily: Mapped[int] = mapped_column(Integer, default=7)
    max_keep_weekly: Mapped[int] = mapped_column(Integer, default=4)
    max_keep_monthly: Mapped[int] = mapped_column(Integer, default=3)
    restore_priority: Mapped[str] = mapped_column(String(16), default="normal")
    rto_minutes: Mapped[int] = mapped_column(Integer, default=24 * 60)
    business_critical_included: Mapped[bool] = mapped_column(Boolean, default=False)


class Organisation(Timestamped, Deletable, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    tier_id: Mapped[int | None] = mapped_column(ForeignKey("sla_tiers.id"))
    account_manager_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", use_alter=True))

    tier: Mapped[SlaTier | None] = relationship(foreign_keys=[tier_id])


class User(Timestamped, Deletable, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(256), default="")
    role: Mapped[str] = mapped_column(String(32))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: part of every session's user id (``get_id``): a new nonce (sign-out, a new password) ends every session
    #: signed with the old one, including a copy of the cookie taken before
    session_nonce: Mapped[str] = mapped_column(String(32), default=lambda: secrets.token_hex(16), server_default="")

    organisation: Mapped[Organisation | None] = relationship(foreign_keys=[organisation_id])

    # Flask-Login
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active and not self.pending_deletion

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """What the session cookie holds: the id and the current session nonce (see ``end_sessions``)."""
        return f"{self.id}:{self.session_nonce}"

    def has_session_nonce(self, nonce: str) -> bool:
        return hmac.compare_digest(self.session_nonce.encode(), nonce.encode())

    def end_sessions(self) -> None:
        """Invalidate every session of this user, everywhere: sign-out, a new password."""
        self.session_nonce = secrets.token_hex(16)

    def set_password(self, password: str) -> None:
        self.password_hash = hash_password(password)
        self.end_sessions()

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR

    @property
    def is_account_manager(self) -> bool:
        return self.role == ACCOUNT_MANAGER

    @property
    def is_customer(self) -> bool:
        return self.role in (CUSTOMER_MEMBER, CUSTOMER_ADMIN)

    @property
    def is_customer_admin(self) -> bool:
        return self.role == CUSTOMER_ADMIN

    @property
    def is_staff(self) -> bool:
        """Operators and account managers: they work on organisations in their scope, not in one of their own."""
        return self.is_operator or self.is_account_manager

    @property
    def is_admin(self) -> bool:
        """Who administers VMs in scope (policies, tokens, deletions, protection): customer admins and staff."""
        return self.is_customer_admin or self.is_staff
