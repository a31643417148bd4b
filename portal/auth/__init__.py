"""Sign-in with local passwords (rate-limited), sign-out."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import views  # noqa: E402,F401 - registers the routes
