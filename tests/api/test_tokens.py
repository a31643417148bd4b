"""Bearer tokens: scopes, expiry, revocation, VM restriction, hashing at rest, last use; the API access page and
``lifeboat token create``; CSRF never applies to bearer calls and a session cookie never authenticates one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from portal import clock
from portal.extensions import db
from portal.models import ApiToken, AuditEntry
from portal.services import tokens

from .conftest import make_token


def _get(client, url: str, secret: str):
    return client.get(url, headers={"Authorization": f"Bearer {secret}"})


def test_a_token_is_stored_only_as_a_hash_and_shows_its_prefix(client, world) -> None:
    token, secret = tokens.create_token(world["acme_admin"], ["backups:read"], name="ci")
    assert secret.startswith("lbt_") and len(secret) > 40 and token.prefix == secret[:12]
    raw = db.session.execute(text("SELECT * FROM api_tokens")).mappings().all()
    assert secret not in repr(raw) and token.token_hash == tokens.hash_secret(secret)
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "token.create")).one()
    assert entry.organisation_id == world["acme"].id and entry.after["scopes"] == ["backups:read"]
    assert secret not in repr(entry.after)


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "bearer lbt_" + "x" * 43])
def test_missing_or_invalid_tokens_are_401_json(client, world, header) -> None:
    answer = client.get("/api/v1/vms", headers={"Authorization": header} if header else {})
    assert answer.status_code == 401 and answer.json["error"] in ("unauthorized", "invalid_token")
    assert answer.json["message"] and answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_scopes_are_enforced_per_operation(client, world) -> None:
    secret = make_token(world["acme_admin"], ["backups:read"])
    vm = world["acme_vm"].id
    assert _get(client, f"/api/v1/vms/{vm}/backups", secret).status_code == 200
    refused = _get(client, f"/api/v1/vms/{vm}/policy", secret)
    assert refused.status_code == 403 and refused.json == {
        "error": "insufficient_scope", "message": "this token lacks the scope policies:read"}
    patch = client.patch(f"/api/v1/vms/{vm}/policy", json={"rpo_minutes": 60},
                         headers={"Authorization": f"Bearer {secret}"})
    assert patch.status_code == 403


def test_a_scope_never_lifts_the_role(client, world) -> None:
    """A member's token with policies:write still cannot change a policy: the page's rule applies."""
    secret = make_token(world["acme_member"], ["policies:write"])
    answer = client.patch(f"/api/v1/vms/{world['acme_vm'].id}/policy", json={"rpo_minutes": 60},
                          headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 403


def test_expired_tokens_are_refused(client, world) -> None:
    secret = make_token(world["acme_admin"], ["backups:read"], expires_at=clock.now() + timedelta(hours=1))
    assert _get(client, "/api/v1/vms", secret).status_code == 200
    clock.set_now(clock.now() + timedelta(hours=2))
    try:
        answer = _get(client, "/api/v1/vms", secret)
    finally:
        clock.set_now(None)
    assert answer.status_code == 401 and answer.json["error"] == "token_expired"
    with pytest.raises(tokens.TokenError, match="future"):
        tokens.create_token(world["acme_admin"], ["backups:read"], expires_at=clock.now() - timedelta(days=1))


def test_revoked_tokens_are_refused_at_once(client, world) -> None:
    token, secret = tokens.create_token(world["acme_admin"], ["backups:read"])
    assert _get(client, "/api/v1/vms", secret).status_code == 200
    tokens.revoke_token(world["acme_admin"], token)
    answer = _get(client, "/api/v1/vms", secret)
    assert answer.status_code == 401 and answer.json["error"] == "token_revoked"


def test_a_deactivated_user_s_tokens_stop(client, world) -> None:
    secret = make_token(world["acme_member"], ["backups:read"])
    world["acme_member"].active = False
    db.session.commit()
    assert _get(client, "/api/v1/vms", secret).status_code == 401


def test_vm_restriction_hides_other_vms_like_missing_ones(client, world) -> None:
    vm, other = world["acme_vm"], world["acme_staging"]
    secret = make_token(world["acme_admin"], tokens.SCOPES, vm_ids=[vm.id])
    listed = _get(client, "/api/v1/vms", secret).json["items"]
    assert [item["id"] for item in listed] == [vm.id]
    assert _get(client, f"/api/v1/vms/{vm.id}", secret).status_code == 200
    for url in (f"/api/v1/vms/{other.id}", f"/api/v1/vms/{other.id}/backups", f"/api/v1/vms/{other.id}/policy"):
        assert _get(client, url, secret).status_code == 404, url
    restore = world["acme_restore"]  # of web-1: visible
    assert _get(client, f"/api/v1/restores/{restore.id}", secret).status_code == 200
    with pytest.raises(tokens.TokenError, match="no such VM"):  # another tenant's VM cannot be named
        tokens.create_token(world["acme_admin"], ["backups:read"], vm_ids=[world["globex_vm"].id])


def test_last_use_is_recorded(client, world) -> None:
    token, secret = tokens.create_token(world["acme_admin"], ["backups:read"])
    assert token.last_used_at is None
    _get(client, "/api/v1/vms", secret)
    db.session.expire_all()
    token = db.session.get(ApiToken, token.id)
    assert token.last_used_at is not None and token.last_used_addr == "127.0.0.1"


def test_unknown_scopes_are_refused(world) -> None:
    with pytest.raises(tokens.TokenError, match="unknown scope"):
        tokens.create_token(world["acme_admin"], ["backups:read", "root"])
    with pytest.raises(tokens.TokenError, match="at least one"):
        tokens.create_token(world["acme_admin"], [])


def test_a_session_cookie_does_not_authenticate_the_api(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/vms").status_code == 401


def test_csrf_protects_pages_but_not_bearer_calls(app, client, auth, world) -> None:
    auth.login(world["acme_admin"])
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        page = client.post(f"/vms/{world['acme_vm'].id}/policy", data={"rpo_minutes": "60"})
        secret = make_token(world["acme_admin"], ["policies:write"])
        api = client.patch(f"/api/v1/vms/{world['acme_vm'].id}/policy", json={"rpo_minutes": 60},
                           headers={"Authorization": f"Bearer {secret}"})
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert page.status_code == 400  # CSRF still guards the form
    assert api.status_code == 200 and api.json["rpo_minutes"] == 60


# -- the API access page -----------------------------------------------------------------------------------

def test_page_creates_shows_once_lists_and_revokes(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    vm = world["acme_vm"]
    created = client.post("/tokens", data={"name": "nightly", "scope": ["backups:read", "restores:write"],
                                           "expires_days": "30", "vm": [str(vm.id)]})
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    page = created.get_data(as_text=True)
    token = db.session.scalars(select(ApiToken).where(ApiToken.name == "nightly")).one()
    secret = page.split('<code class="secret">')[1].split("<")[0]
    assert tokens.hash_secret(secret) == token.token_hash and token.vm_ids == [vm.id]
    assert token.scopes == ["backups:read", "restores:write"]
    assert token.expires_at is not None and token.expires_at > clock.now() + timedelta(days=29)
    _get(client, f"/api/v1/vms/{vm.id}/backups", secret)
    listing = client.get("/tokens").get_data(as_text=True)
    assert secret not in listing and token.prefix in listing and "backups:read, restores:write" in listing
    assert "web-1" in listing and "from 127.0.0.1" in listing  # VM restriction and last use shown
    revoked = client.post(f"/tokens/{token.id}/revoke")
    assert revoked.status_code == 303
    assert _get(client, "/api/v1/vms", secret).status_code == 401
    assert "revoked" in client.get("/tokens").get_data(as_text=True)


def test_page_refuses_bad_input_and_members(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    none = client.post("/tokens", data={"name": "x", "expires_days": "30"})
    assert none.status_code == 422 and b"choose at least one scope" in none.data
    foreign = client.post("/tokens", data={"scope": "backups:read", "expires_days": "30",
                                           "vm": str(world["globex_vm"].id)})
    assert foreign.status_code == 422 and b"no such VM" in foreign.data
    assert client.post("/tokens", data={"scope": "backups:read", "expires_days": "9"}).status_code == 422
    for digits in ("²", "١"):  # str.isdigit() says yes, int() says no: a 422, not a 500
        odd = client.post("/tokens", data={"scope": "backups:read", "expires_days": "30", "vm": digits})
        assert odd.status_code == 422 and b"choose VMs from the list" in odd.data
    assert ApiToken.query.count() == 0
    other = tokens.create_token(world["globex_admin"], ["backups:read"])[0]
    assert client.post(f"/tokens/{other.id}/revoke").status_code == 404  # another user's token
    auth.logout()
    auth.login(world["acme_member"])
    assert client.get("/tokens").status_code == 403


# -- the CLI -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_token_create_prints_a_working_token(client, world, lifeboat, database_url, tmp_path) -> None:
    env = {"LIFEBOAT_DATABASE_URL": database_url, "LIFEBOAT_SECRET_KEY": "test", "LIFEBOAT_VAR": str(tmp_path)}
    vm = world["acme_vm"]
    done = lifeboat("token", "create", "admin@acme.example", "--scopes", "backups:read,restores:read",
                    "--name", "cli", "--expires-days", "7", "--vm", str(vm.id), env=env)
    assert done.code == 0, done.stderr
    secret = done.stdout.strip()
    db.session.expire_all()
    token = db.session.scalars(select(ApiToken).where(ApiToken.name == "cli")).one()
    assert token.scopes == ["backups:read", "restores:read"] and token.vm_ids == [vm.id] and token.expires_at
    assert _get(client, f"/api/v1/vms/{vm.id}/backups", secret).status_code == 200
    bad = lifeboat("token", "create", "admin@acme.example", "--scopes", "everything", env=env)
    assert bad.code == 2 and bad.stderr.startswith("lifeboat: error: unknown scope") and not bad.stdout
    nobody = lifeboat("token", "create", "nobody@acme.example", "--scopes", "backups:read", env=env)
    assert nobody.code == 2 and "no user" in nobody.stderr
    revoked = lifeboat("token", "revoke", token.prefix, env=env)
    assert revoked.code == 0, revoked.stderr
    db.session.expire_all()  # the revocation came from another process
    assert _get(client, "/api/v1/vms", secret).status_code == 401


def test_the_page_offers_the_scopes_a_role_can_use(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    page = client.get("/tokens").get_data(as_text=True)
    assert 'value="backups:read"' in page and 'value="tiers:write"' not in page
    assert tokens.scopes_for(world["manager"])[-1] == "tiers:write" and "inventory:write" in tokens.scopes_for(
        world["operator"])
