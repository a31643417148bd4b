"""The export routes as every role's bearer token sees them (tests/portal/matrix/export.py, TOKEN_ROUTES)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portal.services.tokens import create_token
from storage.backup import backup
from storage.repository import Repository
from tests.portal.matrix import ROLES
from tests.portal.matrix.export import ROUTES, TOKEN_ROUTES
from tests.storage.diskdata import block, write_image


def test_every_export_route_has_token_cases(app) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint.startswith("export.")}
    assert endpoints == set(ROUTES) == set(TOKEN_ROUTES)


@pytest.mark.parametrize("role", ROLES)
def test_export_token_matrix(app, client, world, tmp_path: Path, role: str) -> None:
    root = app.config["STORAGE_ROOT"]
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1), block("text", 2), block("zero")])
    facts: dict[str, Any] = dict(world)
    for key in ("acme_vm", "globex_vm"):
        revision = backup(root, world[key].repository_name, f"file:{image}")
        facts[f"{key}_revision"] = revision.id
        facts[f"{key}_chunk"] = next(c for c in revision.chunks if c is not None)
        assert Repository.open(root, world[key].repository_name).has_chunk(facts[f"{key}_chunk"])
    headers = {}
    if role != "anonymous":
        headers["Authorization"] = "Bearer " + create_token(world[role], ["export:read"])[1]
    failures = []
    for endpoint, cases in sorted(TOKEN_ROUTES.items()):
        for case in cases:
            url = case.url(facts)
            data = case.data(facts) if case.data else None
            answer = client.open(url, method=case.method, headers=headers, json=data)
            if answer.status_code != case.expect[role]:
                failures.append(f"{case.method} {url} ({endpoint}) as {role}: {answer.status_code}, "
                                f"expected {case.expect[role]}")
            if answer.status_code >= 400 and not {"error", "message"} <= set(answer.get_json() or {}):
                failures.append(f"{case.method} {url} as {role}: not a JSON error")
            for text in case.absent.get(role, ()):
                if text.encode() in answer.data:
                    failures.append(f"{case.method} {url} as {role} shows {text!r} of another tenant")
            answer.close()
    assert not failures, "\n".join(failures)
