"""The OAuth 2.0 client-credentials grant (Authlib): clients made by customer admins, secrets hashed, tokens
narrowed to the client's scopes and VMs, revocation, errors as JSON, and the endpoint's rate limit."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import text

from portal.app import create_app
from portal.extensions import db
from portal.models import ApiToken
from portal.services import tokens

URL = "/api/v1/oauth/token"


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_client_credentials_issue_a_working_short_lived_token(client, world) -> None:
    row, secret = tokens.create_client(world["acme_admin"], "monitor", ["backups:read", "restores:read"])
    assert secret not in repr(db.session.execute(text("SELECT * FROM oauth_clients")).mappings().all())
    answer = client.post(URL, data={"grant_type": "client_credentials"}, headers=_basic(row.client_id, secret))
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body["token_type"].lower() == "bearer" and body["expires_in"] == 3600
    assert body["scope"] == "backups:read restores:read" and body["access_token"].startswith("lbo_")
    assert answer.headers["Cache-Control"] == "no-store"
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    listed = client.get("/api/v1/vms", headers=auth)
    assert listed.status_code == 200 and {v["organisation"] for v in listed.json["items"]} == {"acme"}
    assert client.get("/api/v1/audit", headers=auth).status_code == 403  # not one of the client's scopes
    token = ApiToken.query.filter_by(client_id=row.id).one()
    assert token.expires_at is not None and token.user_id == world["acme_admin"].id
    assert token.token_hash == tokens.hash_secret(body["access_token"])


def test_secret_in_the_form_and_narrower_scope(client, world) -> None:
    vm = world["acme_vm"]
    row, secret = tokens.create_client(world["acme_admin"], "", ["backups:read", "restores:write"], vm_ids=[vm.id])
    answer = client.post(URL, data={"grant_type": "client_credentials", "client_id": row.client_id,
                                    "client_secret": secret, "scope": "backups:read"})
    assert answer.status_code == 200 and answer.json["scope"] == "backups:read"
    auth = {"Authorization": f"Bearer {answer.json['access_token']}"}
    assert [v["id"] for v in client.get("/api/v1/vms", headers=auth).json["items"]] == [vm.id]
    bad = client.post(URL, data={"grant_type": "client_credentials", "client_id": row.client_id,
                                 "client_secret": secret, "scope": "nonsense"})
    assert bad.status_code == 400 and bad.json["error"] == "invalid_scope" and bad.json["message"]


def test_asking_only_for_scopes_the_client_lacks_is_invalid_scope(client, world) -> None:
    """Never all of the client's scopes instead (with ``"scope": ""`` in the answer)."""
    row, secret = tokens.create_client(world["acme_admin"], "m", ["backups:read", "restores:read"])
    refused = client.post(URL, data={"grant_type": "client_credentials", "scope": "audit:read"},
                          headers=_basic(row.client_id, secret))
    assert refused.status_code == 400 and refused.json["error"] == "invalid_scope", refused.json
    assert "backups:read" in refused.json["message"]
    assert ApiToken.query.filter_by(client_id=row.id).count() == 0
    some = client.post(URL, data={"grant_type": "client_credentials", "scope": "audit:read restores:read"},
                       headers=_basic(row.client_id, secret))
    assert some.status_code == 200 and some.json["scope"] == "restores:read"
    assert ApiToken.query.filter_by(client_id=row.id).one().scopes == ["restores:read"]


def test_a_client_s_vms_that_left_its_user_s_sight_are_dropped_never_widened(client, world) -> None:
    """A VM moved to another organisation or purged must not make issuing fail (500) for ever; with none
    left, the client is refused rather than given every VM."""
    web, staging = world["acme_vm"], world["acme_staging"]
    row, secret = tokens.create_client(world["acme_admin"], "m", ["backups:read"], vm_ids=[web.id, staging.id])
    staging.organisation_id = world["globex"].id
    db.session.commit()
    issued = client.post(URL, data={"grant_type": "client_credentials"}, headers=_basic(row.client_id, secret))
    assert issued.status_code == 200, issued.json
    assert ApiToken.query.filter_by(client_id=row.id).one().vm_ids == [web.id]
    auth = {"Authorization": f"Bearer {issued.json['access_token']}"}
    assert [v["id"] for v in client.get("/api/v1/vms", headers=auth).json["items"]] == [web.id]
    db.session.delete(staging)
    web.organisation_id = world["globex"].id
    db.session.commit()
    refused = client.post(URL, data={"grant_type": "client_credentials"}, headers=_basic(row.client_id, secret))
    assert refused.status_code == 400 and refused.json["error"] == "invalid_client", refused.json
    assert "VMs" in refused.json["message"]
    assert ApiToken.query.filter_by(client_id=row.id).count() == 1


@pytest.mark.parametrize("case", ["wrong secret", "unknown client", "no credentials", "bad grant"])
def test_refusals_are_oauth_errors_with_a_message(client, world, case) -> None:
    row, secret = tokens.create_client(world["acme_admin"], "m", ["backups:read"])
    data = {"grant_type": "password" if case == "bad grant" else "client_credentials"}
    headers = {"wrong secret": _basic(row.client_id, "nope"), "unknown client": _basic("lbc_x", secret),
               "no credentials": {}, "bad grant": _basic(row.client_id, secret)}[case]
    answer = client.post(URL, data=data, headers=headers)
    assert answer.status_code in (400, 401)
    assert answer.json["error"] in ("invalid_client", "unsupported_grant_type", "unauthorized_client")
    assert answer.json["message"]


def test_revoking_a_client_revokes_its_tokens(client, world) -> None:
    row, secret = tokens.create_client(world["acme_admin"], "m", ["backups:read"])
    issued = client.post(URL, data={"grant_type": "client_credentials"}, headers=_basic(row.client_id, secret))
    auth = {"Authorization": f"Bearer {issued.json['access_token']}"}
    assert client.get("/api/v1/vms", headers=auth).status_code == 200
    tokens.revoke_client(world["acme_admin"], row)
    assert client.get("/api/v1/vms", headers=auth).status_code == 401
    again = client.post(URL, data={"grant_type": "client_credentials"}, headers=_basic(row.client_id, secret))
    assert again.status_code == 401 and again.json["error"] == "invalid_client"


def test_only_administrators_make_clients(world) -> None:
    with pytest.raises(tokens.TokenError, match="administrators"):
        tokens.create_client(world["acme_member"], "m", ["backups:read"])


def test_clients_from_the_page(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    made = client.post("/tokens/clients", data={"name": "monitor", "scope": ["backups:read"]})
    assert made.status_code == 201
    page = made.get_data(as_text=True)
    secret = page.split('client_secret <code class="secret">')[1].split("<")[0]
    client_id = page.split("client_id <code>")[1].split("<")[0]
    issued = client.post(URL, data={"grant_type": "client_credentials"}, headers=_basic(client_id, secret))
    assert issued.status_code == 200
    listing = client.get("/tokens").get_data(as_text=True)
    assert client_id in listing and secret not in listing


def test_the_token_endpoint_is_rate_limited(app, world, database_url) -> None:
    from portal.extensions import limiter

    limited = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "RATELIMIT_ENABLED": True,
                          "TOKEN_RATE_LIMIT": "3 per minute"})
    limiter.reset()
    try:
        client = limited.test_client()
        codes = [client.post(URL, data={"grant_type": "client_credentials"}, headers=_basic("lbc_x", "y"))
                 for _ in range(4)]
        assert [c.status_code for c in codes] == [401, 401, 401, 429]
        assert codes[-1].json["error"] == "rate_limited" and codes[-1].json["message"]
    finally:
        limiter.reset()
        with limited.app_context():
            db.engine.dispose()
