"""One error model: services refuse with a DomainError (status, code, message); the pages, the API and the CLI
each turn it into their own answer in one place, and services never build answers themselves."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import portal.services
from portal.errors import DomainError, NotFound
from portal.extensions import db
from portal.models import Organisation

SERVICES = Path(portal.services.__file__).parent
#: exceptions of the services that are not refusals of a request: infrastructure and internal signals
NOT_REFUSALS = {"NoRedis", "TokenRejected", "UnsafeAddress", "SelectionTooLarge", "MixedDisks", "_Blocked", "_Deferred"}


class Refused(DomainError):
    status = 409
    code = "test_refusal"

    def extra(self) -> dict[str, object]:
        return {"detail": 7}


def test_every_refusal_a_service_raises_is_a_domain_error() -> None:
    found = {}
    for module in pkgutil.iter_modules([str(SERVICES)]):
        loaded = importlib.import_module(f"portal.services.{module.name}")
        for name, value in vars(loaded).items():
            if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == loaded.__name__:
                found[name] = value
    refusals = {n: c for n, c in found.items() if n not in NOT_REFUSALS}
    assert len(refusals) >= 15
    assert [n for n, c in refusals.items() if not issubclass(c, DomainError)] == []
    assert all(400 <= c.status < 500 for c in refusals.values())


def test_services_never_abort_or_build_answers() -> None:
    offenders = []
    for path in SERVICES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "flask":
                names = {alias.name for alias in node.names}
                offenders += [f"{path.name}: {n}" for n in names & {"abort", "make_response", "jsonify", "redirect"}]
    assert offenders == []


@pytest.mark.own_app  # registers routes of its own
def test_a_refusal_no_view_catches_is_a_page_and_json_with_its_status(app, client, auth, world) -> None:
    def refuse() -> str:
        db.session.add(Organisation(slug="half-made", name="Half made"))
        db.session.flush()  # unfinished work of the refused request: rolled back by the handler
        raise Refused("the rules say no")

    def missing() -> str:
        raise NotFound()

    app.add_url_rule("/test-refusal", "test_refusal", refuse)
    app.add_url_rule("/api/v1/test-refusal", "api_test_refusal", refuse)
    app.add_url_rule("/api/v1/test-missing", "api_test_missing", missing)
    page = client.get("/test-refusal")
    assert page.status_code == 409 and b"the rules say no" in page.data and page.mimetype == "text/html"
    answer = client.get("/api/v1/test-refusal")
    assert answer.status_code == 409
    assert answer.json == {"error": "test_refusal", "message": "the rules say no", "detail": 7}
    assert client.get("/api/v1/test-missing").json == {"error": "not_found", "message": "not found"}
    assert Organisation.query.filter_by(slug="half-made").count() == 0
