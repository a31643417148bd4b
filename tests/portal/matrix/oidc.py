"""OIDC sign-in routes. The matrix app has no OIDC settings, so both routes do not exist for anyone (404);
the configured behaviour is tested against a real provider in tests/portal/test_oidc.py."""

from __future__ import annotations

from . import Case, everyone

ROUTES = {
    "auth.oidc_login": [Case("GET", lambda w: "/login/oidc", everyone(404))],
    "auth.oidc_callback": [Case("GET", lambda w: "/login/oidc/callback?code=x&state=y", everyone(404))],
}
