"""Server-rendered pages (htmx for partial updates)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("web", __name__)

from . import manage, recycle, restores, users, views  # noqa: E402,F401 - registers the routes
