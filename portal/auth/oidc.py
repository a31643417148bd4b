"""Optional sign-in through an OpenID Connect provider, with Authlib's Flask client.

Local passwords stay the default: the provider is registered, and these routes answer, only when
``OIDC_ISSUER``, ``OIDC_CLIENT_ID`` and ``OIDC_CLIENT_SECRET`` are all set; otherwise both routes are 404.

Nobody is created here. Roles and tenancy are decided in Lifeboat, so the provider only proves an email
address, and that address must already belong to an active Lifeboat user. Anything else - an unknown or
unverified address, a bad ``state``, an ID token with the wrong signature, issuer, audience or ``nonce``, a
provider that cannot be reached - sends the browser back to the login page with a message, never a traceback.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.integrations.flask_client import OAuth, OAuthError
from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_login import login_user

from ..extensions import db, limiter
from ..models import User
from ..security import one_line
from ..services import audit
from . import bp
from .views import _safe_next

#: where the registered Authlib client lives on the app (absent: OIDC is off for that app)
EXTENSION = "lifeboat.oidc"
CLIENT_NAME = "oidc"
SETTINGS = ("OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET")
#: session key: the same-site page to return to once signed in
NEXT_KEY = "oidc_next"
#: seconds before a provider that does not answer counts as unreachable (a hung provider must not hang a worker)
TIMEOUT = 10


def is_configured(config: Any) -> bool:
    """All three settings are needed: with only some of them there is nothing sensible to do but stay off."""
    return all(str(config.get(key) or "").strip() for key in SETTINGS)


def provider_name(config: Any) -> str | None:
    """What the login button calls the provider: ``OIDC_PROVIDER_NAME``, else the issuer's host; None when off."""
    if not is_configured(config):
        return None
    return str(config.get("OIDC_PROVIDER_NAME") or "").strip() or urlsplit(config["OIDC_ISSUER"]).hostname or "SSO"


@bp.record_once
def _register_provider(state: BlueprintSetupState) -> None:
    """Register the provider on each app that gets the ``auth`` blueprint, from that app's own configuration.

    One Authlib registry per app (not a module-level one) because tests and the CLI build several apps with
    different settings. Discovery is fetched lazily on first use, so starting the portal never waits for the
    provider.
    """
    app = state.app
    if not is_configured(app.config):
        if any(app.config.get(key) for key in SETTINGS):
            app.logger.warning("OIDC sign-in is off: set all of %s to turn it on", ", ".join(SETTINGS))
        return
    issuer = str(app.config["OIDC_ISSUER"]).strip().rstrip("/")
    oauth = OAuth(app)
    app.extensions[EXTENSION] = oauth.register(
        CLIENT_NAME,
        client_id=str(app.config["OIDC_CLIENT_ID"]).strip(),
        client_secret=str(app.config["OIDC_CLIENT_SECRET"]).strip(),
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256", "default_timeout": TIMEOUT},
    )


@bp.app_context_processor
def _template_context() -> dict[str, Any]:
    """``oidc_provider_name`` for login.html: the "Sign in with ..." button shows only when OIDC is on."""
    return {"oidc_provider_name": provider_name(current_app.config)}


@bp.route("/login/oidc")
def oidc_login() -> ResponseReturnValue:
    """Send the browser to the provider; Authlib keeps ``state``, ``nonce`` and the PKCE verifier in the session."""
    client = _client()
    session[NEXT_KEY] = _safe_next(request.args.get("next"))
    try:
        _check_issuer(client)
        redirect_uri = url_for("auth.oidc_callback", _external=True)
        return client.authorize_redirect(redirect_uri, nonce=secrets.token_urlsafe(24))  # type: ignore[no-any-return]
    except requests.RequestException:
        current_app.logger.warning("OIDC provider unreachable", exc_info=True)
        return _refuse("The sign-in provider could not be reached. Try again later or sign in with a password.", 502)
    except _ProviderError as error:
        current_app.logger.warning("OIDC provider misconfigured: %s", error)
        return _refuse("Single sign-on is misconfigured. Sign in with a password and tell the operator.", 400)


@bp.route("/login/oidc/callback")
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"])
def oidc_callback() -> ResponseReturnValue:
    """Exchange the code, have Authlib verify the ID token (signature, issuer, audience, expiry, nonce), and sign
    in the active user whose email the provider vouches for."""
    client = _client()
    try:
        _check_issuer(client)
        token = client.authorize_access_token()
    except OAuthError as error:  # the provider said no, or the state does not match this browser's session
        current_app.logger.info("OIDC sign-in refused: %s", error)
        return _refuse("Single sign-on failed (the request expired or was not started here). Try again.", 400)
    except requests.RequestException:
        current_app.logger.warning("OIDC provider unreachable", exc_info=True)
        return _refuse("The sign-in provider could not be reached. Try again later or sign in with a password.", 502)
    except Exception:  # noqa: BLE001 - Authlib's token-validation errors differ between versions; none may be a 500
        current_app.logger.warning("OIDC sign-in failed", exc_info=True)
        return _refuse("Single sign-on failed: the provider's answer could not be verified.", 400)

    claims = token.get("userinfo")
    if not claims:  # no ID token in the answer: nothing verified about the user
        return _refuse("Single sign-on failed: the provider sent no ID token.", 400)
    email = str(claims.get("email") or "").strip().lower()
    if not email or len(email) > 254 or not one_line(email):  # a NUL would reach the database query
        return _refuse("The sign-in provider did not share an email address, so no Lifeboat account matches.", 401)
    verified = claims.get("email_verified", True)  # absent: many providers omit it and release only verified ones
    if verified is not True and str(verified).lower() != "true":
        return _refuse(f"The provider has not verified {email}. Verify it there, or sign in with a password.", 401)

    user = db.session.query(User).filter(User.email == email).first()
    if user is None or not user.is_active:
        current_app.logger.info("OIDC sign-in refused for %s: no active user", email)
        return _refuse(f"There is no active Lifeboat account for {email}. Ask your organisation's admin.", 401)

    login_user(user)
    audit.record(user, "auth.oidc_login", user, after={"issuer": claims.get("iss"), "subject": claims.get("sub")})
    db.session.commit()
    return redirect(_safe_next(session.pop(NEXT_KEY, None)))


class _ProviderError(Exception):
    """The provider's discovery document does not describe the configured issuer."""


def _client() -> Any:
    """The registered Authlib client, or 404: with OIDC off these routes do not exist."""
    client = current_app.extensions.get(EXTENSION)
    if client is None:
        abort(404)
    return client


def _check_issuer(client: Any) -> None:
    """OpenID Connect Discovery 1.0 section 4.3: the document's issuer must be the one configured. Authlib then
    checks each ID token's ``iss`` against it, so a document served for another issuer cannot slip tokens in."""
    metadata = client.load_server_metadata()
    expected = str(current_app.config["OIDC_ISSUER"]).strip().rstrip("/")
    if str(metadata.get("issuer") or "").rstrip("/") != expected:
        raise _ProviderError(f"discovery names issuer {metadata.get('issuer')!r}, expected {expected!r}")


def _refuse(message: str, status: int) -> tuple[str, int]:
    flash(message, "error")
    return render_template("login.html", email=""), status
