"""``POST /api/v1/oauth/token``: the OAuth 2.0 client-credentials grant (RFC 6749 4.4) through Authlib.

Clients authenticate with HTTP Basic (``client_secret_basic``) or form fields (``client_secret_post``) and get a
short-lived bearer token with the client's scopes (narrowed by ``scope`` if asked: asking only for scopes the
client does not hold is ``invalid_scope``) and VM restriction (less VMs its user no longer sees). Error
bodies keep OAuth's ``error``/``error_description`` and add the API's ``message``. Rate-limited per address.
"""

from __future__ import annotations

import json
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, InvalidClientError, InvalidScopeError, grants
from flask import Response, current_app
from flask_smorest import Blueprint

from ..extensions import db, limiter
from ..models import OAuthClient
from ..services import tokens

blp = Blueprint("api_oauth", __name__, url_prefix="/api/v1", description="OAuth 2.0 token endpoint")

AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class Client(ClientMixin):  # type: ignore[misc]
    """Authlib's view of an ``OAuthClient`` row (the row stays free of OAuth library code)."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(tokens.allowed_client_scopes(self.row, (scope or "").split()))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return tokens.check_client_secret(self.row, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_token_request(self) -> None:
        """Authlib's checks, then ours, as OAuth errors (400) rather than a token that is not what was asked:
        ``invalid_scope`` when none of the scopes asked for is the client's, ``invalid_client`` when none of
        the client's VMs is visible to its user any more."""
        super().validate_token_request()
        row = self.request.client.row
        try:
            tokens.allowed_client_scopes(row, (self.request.payload.scope or "").split())
        except tokens.TokenError as exc:
            raise InvalidScopeError(str(exc)) from exc
        try:
            tokens.client_vm_ids(row)
        except tokens.TokenError as exc:
            raise InvalidClientError(description=str(exc)) from exc


def _query_client(client_id: str) -> Client | None:
    row = tokens.find_client(client_id)
    return Client(row) if row is not None and row.active and row.user.is_active else None


def _generate_token(grant_type: str, client: Client, user: Any = None, scope: str | None = None,
                    expires_in: int | None = None, include_refresh_token: bool = False) -> dict[str, Any]:
    return {"token_type": "Bearer", "access_token": tokens.new_client_secret(),
            "expires_in": client.row.token_lifetime, "scope": client.get_allowed_scope(scope)}


def _save_token(token: dict[str, Any], request: Any) -> None:
    """Store the token's hash only; the plain secret goes to the client in this response and nowhere else."""
    try:
        tokens.issue_client_token(request.client.row, token["scope"].split(), secret=token["access_token"])
    except tokens.TokenError as exc:  # checked in the grant already; a change since then is still no 500
        db.session.rollback()
        raise InvalidClientError(description=str(exc)) from exc


def init_server(app: Any) -> None:
    """One authorization server per app (tests make many apps)."""
    app.config.setdefault("OAUTH2_SCOPES_SUPPORTED", list(tokens.SCOPES))
    server = AuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_token_generator("default", _generate_token)
    server.register_grant(ClientCredentialsGrant)
    app.extensions["lifeboat_oauth"] = server


TOKEN_FORM = {
    "application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["grant_type"],
        "properties": {
            "grant_type": {"type": "string", "enum": ["client_credentials"]},
            "scope": {"type": "string", "description": "space-separated scopes (default: all of the client's); "
                                                     "none of them the client's is `invalid_scope`"},
            "client_id": {"type": "string", "description": "with client_secret_post; else use HTTP Basic"},
            "client_secret": {"type": "string"},
        }}},
}
TOKEN_ANSWER = {"application/json": {"schema": {"type": "object", "properties": {
    "access_token": {"type": "string"}, "token_type": {"type": "string"}, "expires_in": {"type": "integer"},
    "scope": {"type": "string"}}}}}
OAUTH_ERROR = {"application/json": {"schema": {"type": "object", "properties": {
    "error": {"type": "string"}, "error_description": {"type": "string"}, "message": {"type": "string"}}}}}


@blp.route("/oauth/token", methods=["POST"])
@blp.doc(security=[], requestBody={"required": True, "content": TOKEN_FORM},
         responses={"200": {"description": "a bearer token", "content": TOKEN_ANSWER},
                    "400": {"description": "a bad request (OAuth error)", "content": OAUTH_ERROR},
                    "401": {"description": "the client did not authenticate", "content": OAUTH_ERROR},
                    "429": {"description": "too many requests", "content": OAUTH_ERROR}})
@limiter.limit(lambda: current_app.config["TOKEN_RATE_LIMIT"])
def token() -> Response:
    """Exchange client credentials for a bearer token (`grant_type=client_credentials`)."""
    response: Response = current_app.extensions["lifeboat_oauth"].create_token_response()
    if response.status_code >= 400 and response.is_json:
        body = response.get_json(silent=True) or {}
        body.setdefault("message", body.get("error_description") or str(body.get("error", "error")).replace("_", " "))
        response.set_data(json.dumps(body))
    return response
