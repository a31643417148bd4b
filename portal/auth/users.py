"""Loading users for Flask-Login, and checking passwords without telling which email addresses exist."""

from __future__ import annotations

import secrets
from functools import cache

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import User


def load_user(user_id: str) -> User | None:
    """The active user a session names as ``<id>:<session nonce>``; None once the nonce has changed (signed out
    elsewhere, a new password) or for a cookie from before nonces existed."""
    raw_id, _, nonce = user_id.partition(":")
    if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 10 or not nonce:
        return None
    user = db.session.get(User, int(raw_id))
    if user is None or not user.is_active or not user.has_session_nonce(nonce):
        return None
    return user


@cache
def _dummy_hash(method: str) -> str:
    """A hash of a random password, checked for unknown emails so they take as long as known ones."""
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, or None (same answer, and the same work, for every failure).

    An unknown email, an inactive user and a user without a password still cost one password hash check, so the
    time of the answer does not tell which addresses have accounts.
    """
    user = db.session.query(User).filter(User.email == email.strip().lower()).first()
    if user is None or not user.password_hash:
        check_password_hash(_dummy_hash(current_app.config["PASSWORD_HASH_METHOD"]), password)
        return None
    if not user.check_password(password) or not user.is_active:
        return None
    return user
