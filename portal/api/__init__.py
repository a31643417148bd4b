"""REST API v1 under ``/api/v1``: flask-smorest blueprints, an OpenAPI 3 document generated from the code at
``/api/v1/openapi.json``, bearer tokens with scopes (``auth.require_scope``), JSON errors and cursor pages.

Views are thin: they call the same services and access checks as the pages (``portal.services.*``).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint

from ..extensions import csrf
from ..security import MAX_ID, IdConverter
from . import auth, errors


def _id_schema(converter: IdConverter) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": MAX_ID}

SPEC_DESCRIPTION = (
    "Self-service access to backups and restores. Authenticate with `Authorization: Bearer TOKEN` (a personal "
    "access token from the portal or `lifeboat token create`, or a token from `POST /api/v1/oauth/token` with the "
    "client-credentials grant). Errors are `{\"error\": CODE, \"message\": TEXT}`; lists are "
    "`{\"items\": [...], \"next\": CURSOR-or-null}` (pass `cursor=NEXT` for the next page). A token restricted to "
    "some VMs sees only those VMs (others are 404) and is refused (403 `forbidden`) on organisation-wide routes "
    "(marked `x-organisation-wide`): the audit log, changing tiers, inventory."
)


class Api(SmorestApi):  # type: ignore[misc]
    """flask-smorest's Api, but its app-wide JSON error handler is limited to API paths (the pages keep
    their HTML error pages)."""

    ERROR_SCHEMA = errors.ErrorSchema

    def _register_error_handlers(self) -> None:
        errors.install(self._app)



def init_api(app: Flask) -> None:
    """Bind the API to ``app``: its blueprints and the document."""
    app.config.setdefault("API_TITLE", "Lifeboat API")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api/v1")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("TOKEN_RATE_LIMIT", "20 per minute")
    app.url_map.converters["id"] = IdConverter
    api = Api(app, spec_kwargs={"info": {"description": SPEC_DESCRIPTION}})
    api.register_converter(IdConverter, _id_schema)
    app.extensions["lifeboat_api"] = api
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    from .oauth import init_server

    init_server(app)
    for blueprint in blueprints():
        csrf.exempt(blueprint)  # bearer tokens only: no cookie, so no cross-site request to forge
        api.register_blueprint(blueprint)
    app.before_request(auth.check_before_request)


def blueprints() -> list[Blueprint]:
    from . import audit, export, inventory, oauth, restores, tiers, vms

    return [vms.blp, restores.blp, audit.blp, tiers.blp, inventory.blp, oauth.blp, export.blp]
