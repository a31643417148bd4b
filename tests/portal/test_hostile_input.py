"""Hostile input through the real app: every route of the matrix (tests/portal/matrix) with huge numbers, NUL and
control characters in its path, query and form, and JSON bodies nested too deeply or holding huge numbers. No
answer may be a 5xx; the specific refusals say why.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from portal.extensions import db
from portal.models import User
from portal.services import tokens
from tests.fixtures.portal import PASSWORD

from .matrix import all_routes
from .test_route_matrix import token_endpoints

HUGE = "9" * 5000  # more digits than Python's int() converts (4300)
HOSTILE = [HUGE, "9" * 20, "\x00", "x\r\nSet-Cookie: a=b\x07"]
#: query arguments pages read, tried on every GET route
QUERY_NAMES = ["page", "organisation", "vm", "path", "q", "next", "since", "until", "action", "part", "cursor",
               "limit", "format", "scope", "kind", "workers", "at", "run", "state", "organisation_id"]
NESTED = "[" * 100_000 + "]" * 100_000


def _paths_with_huge_ids(url: str) -> list[str]:
    path, _, query = url.partition("?")
    if not re.search(r"/\d+", path):
        return []
    return [re.sub(r"/\d+", "/" + value, path) + (f"?{query}" if query else "") for value in (HUGE, "9" * 20)]


def _with_query(url: str, value: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{urlencode({name: value for name in QUERY_NAMES})}"


@pytest.mark.slow
@pytest.mark.parametrize("role", ["acme_admin", "operator"])
def test_no_route_answers_hostile_input_with_a_server_error(app, world, auth, role: str) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a 500 is an answer to collect here, not an exception in the test
    client = auth.client
    assert auth.login(world[role]).status_code == 302
    api_headers = {"Authorization": f"Bearer {tokens.create_token(world[role], list(tokens.SCOPES), name='f')[1]}"}
    with_tokens = token_endpoints()
    failures: list[str] = []

    def call(endpoint: str, method: str, url: str, data: dict[str, Any] | None, expected: int) -> None:
        if endpoint in with_tokens and url.startswith("/api/"):
            answer = client.open(url, method=method, json=data, headers=api_headers)
        else:
            answer = client.open(url, method=method, data=data)
        if answer.status_code >= 500 and answer.status_code != expected:  # /readyz is 503 without Redis, by design
            failures.append(f"{method} {url[:120]!r} {str(data)[:120]} ({endpoint}): {answer.status_code}")
        answer.close()
        db.session.rollback()  # a refused request must leave nothing half-done in the shared session

    for endpoint, cases in sorted(all_routes().items()):
        for case in cases:
            url = case.url(world)
            data = case.data(world) if case.data else None
            for variant in _paths_with_huge_ids(url):
                call(endpoint, case.method, variant, data, case.expect[role])
            for value in HOSTILE:
                if case.method == "GET":
                    call(endpoint, "GET", _with_query(url, value), None, case.expect[role])
                else:
                    fields = {**(data or {}), "next": "", "confirm": "", "name": "", "email": ""}
                    call(endpoint, case.method, url, {name: value for name in fields}, case.expect[role])
            if case.method != "GET":
                auth.login(world[role])  # a sign-out (or a deactivation) among the cases must not end the walk
    assert not failures, "\n".join(failures)


def test_a_cr_lf_or_backslash_in_next_never_reaches_the_location_header(client, world) -> None:
    form = {"email": world["acme_admin"].email, "password": PASSWORD}
    for target in ("/%0d%0aSet-Cookie:%20x=1", "/vms%0a", "/\\evil.example", "/%09/evil.example"):
        answer = client.post(f"/login?next={target}", data=form)
        assert answer.status_code == 302 and answer.headers["Location"] == "/", target
        assert "x=1" not in answer.headers.get("Set-Cookie", "")
        client.post("/logout")
    assert client.post("/login?next=/audit", data=form).headers["Location"] == "/audit"  # a plain path still works


@pytest.mark.parametrize("email", ["admin@acme.example\x00", "adm\x00in@acme.example", "admin@acme.example\x07"])
def test_nul_or_a_control_character_in_the_sign_in_email_is_a_400(client, world, email: str) -> None:
    answer = client.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 400 and b"may not hold control characters" in answer.data


@pytest.mark.parametrize(("field", "value", "status"), [
    ("email", "new\x00user@acme.example", 400), ("email", "new\u0085user@acme.example", 400),
    ("name", "New\x00User", 400), ("name", "New\x1bUser", 400), ("name", "New\nUser", 422), ("name", "New\tUser", 422),
])
def test_control_characters_in_a_new_users_fields_are_refused_and_nothing_is_stored(client, auth, world, field: str,
                                                                                      value: str, status: int) -> None:
    auth.login(world["acme_admin"])
    form = {"email": "new.user@acme.example", "name": "New User", "password": "a long enough password",
            "role": "customer_member", field: value}
    answer = client.post("/users", data=form)
    assert answer.status_code == status, answer.data[:300]
    assert User.query.filter(User.email.like("new%")).count() == 0


@pytest.mark.parametrize("body", [NESTED, '{"a": ' + "1" * 5000 + "}", '{"name": "a\\u0000b"}', '{"k\\u0000": 1}'])
def test_hostile_json_bodies_are_a_400_on_every_api_route_that_takes_one(client, world, body: str) -> None:
    headers = {"Authorization": f"Bearer {tokens.create_token(world['operator'], list(tokens.SCOPES), name='j')[1]}",
               "Content-Type": "application/json"}
    vm = world["acme_vm"]
    for url in ("/api/v1/inventory/sync?scope=all", f"/api/v1/vms/{vm.id}/restores",
                f"/api/v1/vms/{vm.id}/policy", "/api/v1/export/vm-1/chunks"):
        for method in ("POST", "PUT", "PATCH"):
            answer = client.open(url, method=method, data=body, headers=headers)
            assert answer.status_code < 500, (method, url, answer.status_code, answer.data[:200])
            if answer.status_code != 405:
                assert answer.status_code == 400 and answer.is_json, (method, url, answer.data[:200])


def test_path_ids_beyond_32_bits_are_404_at_routing(client, auth, world) -> None:
    auth.login(world["operator"])
    vm = world["acme_vm"]
    for url in (f"/vms/{2**31}", f"/vms/{HUGE}", f"/restores/{10**19}", f"/vms/{vm.id}/backups/{2**40}/files"):
        assert client.get(url).status_code == 404, url
