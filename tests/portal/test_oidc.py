"""OIDC sign-in against a real OpenID provider on loopback (tests/portal/oidc_provider.py): no mocks of Authlib."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from portal import clock
from portal.app import create_app
from portal.extensions import db, limiter
from portal.models import AuditEntry, User

from .oidc_provider import OpenIDProvider


@pytest.fixture
def provider() -> Iterator[OpenIDProvider]:
    with OpenIDProvider().running() as running:
        yield running


def make_oidc_app(database_url: str, provider: OpenIDProvider | None, **config: Any) -> Flask:
    settings: dict[str, Any] = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "WTF_CSRF_ENABLED": False,
                                "RATELIMIT_ENABLED": False}
    if provider is not None:
        settings.update(OIDC_ISSUER=provider.issuer, OIDC_CLIENT_ID=provider.client_id,
                        OIDC_CLIENT_SECRET=provider.client_secret)
    return create_app({**settings, **config})


@pytest.fixture
def oidc_app(app: Flask, world: dict[str, Any], database_url: str, provider: OpenIDProvider) -> Iterator[Flask]:
    """A second app on the same database (``world`` lives there), configured for the provider."""
    configured = make_oidc_app(database_url, provider)
    yield configured
    with configured.app_context():
        db.engine.dispose()


@pytest.fixture
def browser(oidc_app: Flask) -> FlaskClient:
    return oidc_app.test_client()


def follow(client: FlaskClient, provider: OpenIDProvider, url: str) -> TestResponse:
    """Follow redirects like a browser, across both sites: the portal through its test client, the provider
    over real HTTP. Returns the first portal answer that is not a redirect to the provider or back."""
    answer = client.get(url)
    for _ in range(10):
        location = answer.headers.get("Location", "")
        if answer.status_code != 302 or not location.startswith(provider.issuer):
            return answer
        hop = requests.get(location, allow_redirects=False, timeout=5)
        assert hop.status_code == 302, hop.text
        answer = client.get(hop.headers["Location"])
    raise AssertionError("redirect loop")


def provider_redirect(client: FlaskClient, provider: OpenIDProvider) -> str:
    """Start a sign-in and let the provider approve it: the callback URL it sends the browser to."""
    start = client.get("/login/oidc")
    assert start.status_code == 302 and start.headers["Location"].startswith(f"{provider.issuer}/authorize?")
    hop = requests.get(start.headers["Location"], allow_redirects=False, timeout=5)
    assert hop.status_code == 302
    return str(hop.headers["Location"])


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | params
    return urlunsplit(parts._replace(query=urlencode(query)))


def signed_in(client: FlaskClient) -> bool:
    return client.get("/").status_code == 200


# -- the happy path ----------------------------------------------------------------------------------------

def test_sign_in_through_the_provider(browser: FlaskClient, provider: OpenIDProvider,
                                      world: dict[str, Any]) -> None:
    start = browser.get("/login/oidc")
    request = parse_qs(urlsplit(start.headers["Location"]).query)
    assert request["response_type"] == ["code"] and "openid" in request["scope"][0].split()
    assert request["redirect_uri"] == ["http://localhost/login/oidc/callback"]
    assert request["state"][0] and request["nonce"][0] and request["code_challenge_method"] == ["S256"]

    done = follow(browser, provider, "/login/oidc")
    assert done.status_code == 302 and done.headers["Location"] == "/"
    page = browser.get("/")
    assert page.status_code == 200 and b"web-1" in page.data and b"shop-1" not in page.data
    assert {"GET /.well-known/openid-configuration", "GET /authorize", "POST /token", "GET /jwks"} <= set(
        provider.requests_seen)

    entry = db.session.query(AuditEntry).filter_by(action="auth.oidc_login").one()
    assert entry.actor == "admin@acme.example" and entry.actor_id == world["acme_admin"].id
    assert entry.organisation_id == world["acme"].id
    assert entry.after == {"issuer": provider.issuer, "subject": "u-1"}


def test_returns_to_the_page_asked_for_but_never_off_site(browser: FlaskClient, provider: OpenIDProvider,
                                                          world: dict[str, Any]) -> None:
    vm_page = f"/vms/{world['acme_vm'].id}"
    assert follow(browser, provider, f"/login/oidc?next={vm_page}").headers["Location"] == vm_page
    other = browser.application.test_client()
    assert follow(other, provider, "/login/oidc?next=https://evil.example/").headers["Location"] == "/"


def test_email_is_matched_without_regard_to_case(browser: FlaskClient, provider: OpenIDProvider,
                                                 world: dict[str, Any]) -> None:
    provider.user["email"] = "Admin@ACME.example"
    assert follow(browser, provider, "/login/oidc").status_code == 302
    assert signed_in(browser)


def test_email_verified_may_be_absent(browser: FlaskClient, provider: OpenIDProvider, world: dict[str, Any]) -> None:
    del provider.user["email_verified"]
    assert follow(browser, provider, "/login/oidc").status_code == 302
    assert signed_in(browser)


# -- who is refused ----------------------------------------------------------------------------------------

def test_unknown_email_is_refused_and_nobody_is_created(browser: FlaskClient, provider: OpenIDProvider,
                                                        world: dict[str, Any]) -> None:
    users = db.session.query(User).count()
    provider.user["email"] = "stranger@acme.example"
    refused = follow(browser, provider, "/login/oidc")
    assert refused.status_code == 401
    assert b"no active Lifeboat account for stranger@acme.example" in refused.data
    assert b"Traceback" not in refused.data
    assert db.session.query(User).count() == users
    assert not signed_in(browser)
    assert db.session.query(AuditEntry).filter_by(action="auth.oidc_login").count() == 0


@pytest.mark.parametrize("how", ["deactivated", "pending deletion"])
def test_inactive_user_is_refused(browser: FlaskClient, provider: OpenIDProvider, world: dict[str, Any],
                                  how: str) -> None:
    user = world["acme_admin"]
    if how == "deactivated":
        user.active = False
    else:
        user.deletion_requested_at = user.deletion_due_at = clock.now()
    db.session.commit()
    refused = follow(browser, provider, "/login/oidc")
    assert refused.status_code == 401 and b"no active Lifeboat account" in refused.data
    assert not signed_in(browser)


@pytest.mark.parametrize("verified", [False, "false"])
def test_unverified_email_is_refused(browser: FlaskClient, provider: OpenIDProvider, world: dict[str, Any],
                                     verified: object) -> None:
    provider.user["email_verified"] = verified
    refused = follow(browser, provider, "/login/oidc")
    assert refused.status_code == 401 and b"has not verified admin@acme.example" in refused.data
    assert not signed_in(browser)


def test_token_without_email_is_refused(browser: FlaskClient, provider: OpenIDProvider,
                                        world: dict[str, Any]) -> None:
    provider.user = {"sub": "u-2"}
    refused = follow(browser, provider, "/login/oidc")
    assert refused.status_code == 401 and b"did not share an email address" in refused.data


# -- protocol failures -------------------------------------------------------------------------------------

def test_wrong_state_is_refused(browser: FlaskClient, provider: OpenIDProvider, world: dict[str, Any]) -> None:
    callback = provider_redirect(browser, provider)
    refused = browser.get(with_query(callback, state="not-the-one-we-sent"))
    assert refused.status_code == 400 and b"Single sign-on failed" in refused.data
    assert not signed_in(browser)


def test_callback_from_another_browser_is_refused(browser: FlaskClient, provider: OpenIDProvider,
                                                  world: dict[str, Any]) -> None:
    """Login CSRF: a code and state obtained by an attacker do not sign in a victim whose session did not
    start that sign-in."""
    callback = provider_redirect(browser, provider)
    victim = browser.application.test_client()
    assert victim.get(callback).status_code == 400
    assert not signed_in(victim)


def test_callback_cannot_be_replayed(browser: FlaskClient, provider: OpenIDProvider, world: dict[str, Any]) -> None:
    callback = provider_redirect(browser, provider)
    assert browser.get(callback).status_code == 302
    browser.post("/logout")
    assert browser.get(callback).status_code == 400  # state was used up (and the code too)
    assert not signed_in(browser)


def test_callback_without_parameters_is_refused(browser: FlaskClient, world: dict[str, Any]) -> None:
    assert browser.get("/login/oidc/callback").status_code == 400


def test_provider_error_is_shown_not_raised(browser: FlaskClient, provider: OpenIDProvider,
                                            world: dict[str, Any]) -> None:
    callback = provider_redirect(browser, provider)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    refused = browser.get(f"/login/oidc/callback?error=access_denied&state={state}")
    assert refused.status_code == 400 and b"Single sign-on failed" in refused.data


@pytest.mark.parametrize("attack", [
    pytest.param({"id_token_overrides": {"nonce": "replayed-nonce"}}, id="wrong nonce"),
    pytest.param({"id_token_overrides": {"nonce": None}}, id="no nonce"),
    pytest.param({"sign_with_stranger_key": True}, id="key not in the JWKS"),
    pytest.param({"tamper_claims": {"email": "operator@lifeboat.example"}}, id="payload swapped after signing"),
    pytest.param({"id_token_overrides": {"aud": "another-client"}}, id="another audience"),
    pytest.param({"id_token_overrides": {"iss": "https://evil.example"}}, id="another issuer"),
    pytest.param({"id_token_overrides": {"exp": int(time.time()) - 3600}}, id="expired"),
    pytest.param({"id_token_overrides": {"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}}, id="at_hash of another token"),
])
@pytest.mark.slow
def test_bad_id_token_is_refused(browser: FlaskClient, provider: OpenIDProvider, world: dict[str, Any],
                                 attack: dict[str, Any]) -> None:
    for name, value in attack.items():
        setattr(provider, name, value)
    refused = follow(browser, provider, "/login/oidc")
    assert refused.status_code == 400 and b"could not be verified" in refused.data
    assert b"Traceback" not in refused.data
    assert not signed_in(browser)
    assert db.session.query(AuditEntry).filter_by(action="auth.oidc_login").count() == 0


def test_discovery_for_another_issuer_is_refused(browser: FlaskClient, provider: OpenIDProvider,
                                                 world: dict[str, Any]) -> None:
    provider.announced_issuer = "https://evil.example"
    refused = browser.get("/login/oidc")
    assert refused.status_code == 400 and b"misconfigured" in refused.data


def test_unreachable_provider_is_a_message(app: Flask, world: dict[str, Any], database_url: str) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = make_oidc_app(database_url, None, OIDC_ISSUER=f"http://127.0.0.1:{port}", OIDC_CLIENT_ID="lifeboat",
                         OIDC_CLIENT_SECRET="s")
    answer = down.test_client().get("/login/oidc")
    assert answer.status_code == 502 and b"could not be reached" in answer.data
    with down.app_context():
        db.engine.dispose()


def test_callback_is_rate_limited(app: Flask, world: dict[str, Any], database_url: str,
                                  provider: OpenIDProvider) -> None:
    limited = make_oidc_app(database_url, provider, RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="3 per minute")
    limiter.reset()
    try:
        client = limited.test_client()
        codes = [client.get("/login/oidc/callback?code=x&state=y").status_code for _ in range(4)]
        assert codes == [400, 400, 400, 429]
    finally:
        limiter.reset()
        with limited.app_context():
            db.engine.dispose()


# -- off unless configured ---------------------------------------------------------------------------------

def test_not_configured_means_no_routes(client: FlaskClient, world: dict[str, Any]) -> None:
    assert client.get("/login/oidc").status_code == 404
    assert client.get("/login/oidc/callback?code=x&state=y").status_code == 404
    assert client.get("/login").status_code == 200  # local passwords remain


def test_partly_configured_stays_off(app: Flask, database_url: str) -> None:
    partial = make_oidc_app(database_url, None, OIDC_ISSUER="https://id.example", OIDC_CLIENT_ID="lifeboat")
    assert partial.test_client().get("/login/oidc").status_code == 404
    with partial.app_context():
        db.engine.dispose()


def test_login_page_knows_the_provider_only_when_configured(app: Flask, oidc_app: Flask) -> None:
    template = "{{ oidc_provider_name or 'off' }}"
    with app.test_request_context("/login"):
        assert render_template_string(template) == "off"
    with oidc_app.test_request_context("/login"):
        assert render_template_string(template) == "127.0.0.1"
    oidc_app.config["OIDC_PROVIDER_NAME"] = "Acme SSO"
    with oidc_app.test_request_context("/login"):
        assert render_template_string(template) == "Acme SSO"
