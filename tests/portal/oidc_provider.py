"""A small, real OpenID Connect provider for tests, served over HTTP on loopback in a thread.

Written by hand with werkzeug and ``cryptography`` (not Authlib's server side) so the portal's Authlib client
is checked against an independent implementation: discovery, an authorization endpoint that approves
``provider.user`` at once, a token endpoint (client secret, single-use codes, redirect URI and PKCE checks)
that returns an RS256-signed ID token carrying the nonce, and the JWKS. Knobs let a test make the provider
misbehave: other claims, a wrong nonce, a token signed with a key that is not in the JWKS.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.serving import QUICK_STOP


@functools.cache
def _rsa_key(name: str) -> rsa.RSAPrivateKey:
    """One key per name per test run: generating RSA keys is slow, and no test needs a fresh one."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    claims: dict[str, Any]


@dataclass
class OpenIDProvider:
    client_id: str = "lifeboat"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    redirect_uris: tuple[str, ...] = ("http://localhost/login/oidc/callback",)
    #: the user the authorization endpoint approves without asking
    user: dict[str, Any] = field(default_factory=lambda: {"sub": "u-1", "email": "admin@acme.example",
                                                          "email_verified": True})
    #: claims forced into the next ID tokens (e.g. {"nonce": "wrong"})
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    #: sign ID tokens with a key the JWKS does not publish
    sign_with_stranger_key: bool = False
    #: after signing, swap these claims into the payload (a token tampered with in transit)
    tamper_claims: dict[str, Any] = field(default_factory=dict)
    #: the issuer discovery announces (None: the real one)
    announced_issuer: str | None = None
    issuer: str = ""
    key_id: str = "test-key-1"
    requests_seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key, self.stranger_key = _rsa_key("provider"), _rsa_key("stranger")
        self.grants: dict[str, Grant] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- serving ---------------------------------------------------------------------------------------

    def start(self) -> OpenIDProvider:
        self._server = make_server("127.0.0.1", 0, self.wsgi_app, threaded=True, request_handler=_QuietHandler)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs=QUICK_STOP, name="oidc-provider",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @contextmanager
    def running(self) -> Iterator[OpenIDProvider]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.requests_seen.append(f"{request.method} {request.path}")
        routes = {"/.well-known/openid-configuration": self.discovery, "/authorize": self.authorize,
                  "/token": self.token, "/jwks": self.jwks}
        handler = routes.get(request.path)
        response = handler(request) if handler else _json({"error": "not_found"}, 404)
        return response(environ, start_response)

    # -- endpoints -------------------------------------------------------------------------------------

    def discovery(self, request: Request) -> Response:
        return _json({
            "issuer": self.announced_issuer or self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "name"],
        })

    def authorize(self, request: Request) -> Response:
        args = request.args
        if args.get("client_id") != self.client_id or args.get("redirect_uri") not in self.redirect_uris:
            return _json({"error": "invalid_request", "error_description": "unknown client or redirect_uri"}, 400)
        redirect_uri = args["redirect_uri"]
        if args.get("response_type") != "code" or "openid" not in args.get("scope", "").split():
            return _redirect(redirect_uri, error="invalid_request", state=args.get("state"))
        if args.get("code_challenge") and args.get("code_challenge_method") != "S256":
            return _redirect(redirect_uri, error="invalid_request", state=args.get("state"))
        code = secrets.token_urlsafe(24)
        self.grants[code] = Grant(self.client_id, redirect_uri, args.get("nonce"), args.get("code_challenge"),
                                  dict(self.user))
        return _redirect(redirect_uri, code=code, state=args.get("state"))

    def token(self, request: Request) -> Response:
        form = request.form
        auth = request.authorization
        client_id, secret = (auth.username, auth.password) if auth else (form.get("client_id"),
                                                                          form.get("client_secret"))
        if client_id != self.client_id or not secret or not secrets.compare_digest(secret, self.client_secret):
            return _json({"error": "invalid_client"}, 401)
        if form.get("grant_type") != "authorization_code":
            return _json({"error": "unsupported_grant_type"}, 400)
        grant = self.grants.pop(form.get("code", ""), None)  # single use
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return _json({"error": "invalid_grant"}, 400)
        if grant.code_challenge:
            verifier = form.get("code_verifier", "")
            if b64url(hashlib.sha256(verifier.encode()).digest()) != grant.code_challenge:
                return _json({"error": "invalid_grant", "error_description": "PKCE verification failed"}, 400)
        access_token = secrets.token_urlsafe(24)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300, "auth_time": now,
            "at_hash": b64url(hashlib.sha256(access_token.encode()).digest()[:16]),
            **grant.claims,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(self.id_token_overrides)
        return _json({"access_token": access_token, "token_type": "Bearer", "expires_in": 300,
                      "scope": "openid email profile", "id_token": self.sign(claims)})

    def jwks(self, request: Request) -> Response:
        numbers = self.key.public_key().public_numbers()
        return _json({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.key_id,
                                "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}]})

    # -- signing ---------------------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact RS256 JWS, built by hand (RFC 7515): header.payload.signature."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.key_id}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}".encode()
        key = self.stranger_key if self.sign_with_stranger_key else self.key
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        token = f"{signing_input.decode()}.{b64url(signature)}"
        if self.tamper_claims:
            header_part, _, signature_part = token.split(".")
            payload_part = b64url(json.dumps({**claims, **self.tamper_claims}).encode())
            token = f"{header_part}.{payload_part}.{signature_part}"
        return token


class _QuietHandler(WSGIRequestHandler):
    """No access log: tests read ``requests_seen`` instead."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json",
                    headers={"Cache-Control": "no-store"})


def _redirect(uri: str, **params: str | None) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return Response(status=302, headers={"Location": f"{uri}{'&' if '?' in uri else '?'}{query}"})
