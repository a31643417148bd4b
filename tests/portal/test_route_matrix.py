"""Walk every route as every role and as another tenant (see tests/portal/matrix)."""

from __future__ import annotations

import pytest

from portal.services import tokens

from .matrix import ROLES, all_routes


def token_endpoints() -> set[str]:
    """Endpoints declared by matrix modules that set ``API_TOKENS = True``."""
    import importlib
    import pkgutil

    from . import matrix

    found: set[str] = set()
    for module in pkgutil.iter_modules(matrix.__path__):
        loaded = importlib.import_module(f"{matrix.__name__}.{module.name}")
        if getattr(loaded, "API_TOKENS", False):
            found |= set(getattr(loaded, "ROUTES", {}))
    return found


def test_every_route_is_in_the_matrix(app) -> None:
    declared = all_routes()
    missing = sorted({rule.endpoint for rule in app.url_map.iter_rules()} - set(declared))
    assert not missing, f"routes without an access matrix entry (add them under tests/portal/matrix): {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_route_matrix(app, world, auth, role: str) -> None:
    client = auth.client
    if role != "anonymous":
        assert auth.login(world[role]).status_code == 302
    # API routes (/api/...) of modules with ``API_TOKENS = True`` get the role's bearer token with every scope and JSON
    # bodies (anonymous sends none); other modules' API routes are called with the session cookie alone
    api_headers = {} if role == "anonymous" else {
        "Authorization": f"Bearer {tokens.create_token(world[role], list(tokens.SCOPES), name='matrix')[1]}"}
    with_tokens = token_endpoints()
    failures = []
    for endpoint, cases in sorted(all_routes().items()):
        for case in cases:
            url = case.url(world)
            data = case.data(world) if case.data else None
            if endpoint in with_tokens and url.startswith("/api/"):
                answer = client.open(url, method=case.method, json=data, headers=api_headers)
            else:
                answer = client.open(url, method=case.method, data=data)
            if answer.status_code != case.expect[role]:
                failures.append(f"{case.method} {url} ({endpoint}) as {role}: {answer.status_code}, "
                                f"expected {case.expect[role]}")
            for text in case.absent.get(role, ()):
                if text.encode() in answer.data:
                    failures.append(f"{case.method} {url} as {role} shows {text!r} of another tenant")
            answer.close()
            if endpoint == "auth.logout" and role != "anonymous":
                auth.login(world[role])  # stay signed in for the next routes
    assert not failures, "\n".join(failures)
