"""Sign-in with local passwords (rate-limited) or, when configured, OpenID Connect; sign-out."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import oidc, views  # noqa: E402,F401 - registers the routes (OIDC ones only answer when configured)
