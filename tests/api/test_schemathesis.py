"""Property-based tests of every operation in /api/v1/openapi.json (schemathesis, in-process through the WSGI
app): as a customer's token and as another organisation's token, with generated ids and with the first
tenant's real ids. No answer may be a 5xx, every answer must match the document, and no answer may carry the
other tenant's data (its VM names, organisation slug or emails)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from portal.services import tokens

from .conftest import make_token

EXAMPLES = 5  # per operation, token, id and generation mode: ~30 x 2 x 4 x 5 requests, well under a minute

#: what each tenant's answers must never contain: the other tenant's names
FOREIGN = {"acme_admin": ("shop-1", "globex", "admin@globex.example"),
           "globex_admin": ("web-1", "staging-api", "acme", "admin@acme.example")}


def _acme_ids(world: dict[str, Any]) -> dict[str, Any]:
    """Real ids of acme's objects for every path parameter name in the document."""
    vm = world["acme_vm"]
    return {"vm": vm.id, "backup": world["acme_point"].id, "id": world["acme_restore"].id,
            "tier": world["premium"].id, "organisation": world["acme"].id, "repository": vm.repository_name,
            "revision": world["acme_point"].revision, "chunk": "0" * 64}


@pytest.mark.slow
@pytest.mark.parametrize("role", ["acme_admin", "globex_admin"])
def test_every_operation_as_a_customer_and_as_another_tenant(app, world, queues, role: str) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {make_token(world[role], tokens.SCOPES)}"}
    ids = _acme_ids(world)
    foreign = FOREIGN[role]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    problems: list[str] = []

    modes = [(mode, fixed) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) for fixed in (False, True)]
    for operation in operations:
        wanted = {p.name for p in operation.path_parameters}
        for mode, use_ids in modes:
            fixed = {k: v for k, v in ids.items() if k in wanted} if use_ids else None
            if use_ids and not fixed:
                continue
            strategy = operation.as_strategy(mode, headers=headers, path_parameters=fixed)

            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case: Any) -> None:
                response = case.call()
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                                         content_type_conformance])
                if not response.headers.get("Content-Type", "").startswith("application/json"):
                    return
                text = response.text
                leaked = [name for name in foreign if name in text]
                assert not leaked, f"{case.method} {case.formatted_path} as {role} shows {leaked}: {text[:300]}"

            try:
                run()
            except Unsatisfiable:  # negative mode with nothing left to make invalid (all parameters fixed)
                continue
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
                problems.append(f"{operation.label} ({mode.value}, ids {fixed}): {exc}")
    assert not problems, "\n\n".join(problems)
