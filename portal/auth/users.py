"""Loading users for Flask-Login."""

from __future__ import annotations

from ..extensions import db
from ..models import User


def load_user(user_id: str) -> User | None:
    if not user_id.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    return user if user is not None and user.is_active else None


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, or None (same answer for every kind of failure)."""
    user = db.session.query(User).filter(User.email == email.strip().lower()).first()
    if user is None or not user.is_active or not user.check_password(password):
        return None
    return user
