"""Bearer tokens for the API: personal access tokens, OAuth client-credentials clients, and checking a token.

A token is ``lbt_`` (personal) or ``lbo_`` (issued to an OAuth client) plus 256 random bits. Only the SHA-256
of a secret is stored; the plain secret is returned once, by the call that creates it. A token acts as its
user, narrowed to its scopes and (optionally) to listed VMs, so it can never do more than the user could in
the portal: the API checks the same roles and tenancy as the pages, and the scope on top.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .. import clock
from ..errors import DomainError
from ..extensions import db
from ..models import VM, ApiToken, OAuthClient, User
from ..security import one_line
from . import access, audit

SCOPES: tuple[str, ...] = (
    "backups:read", "backups:write", "restores:read", "restores:write", "policies:read", "policies:write",
    "audit:read", "export:read", "tiers:read", "tiers:write", "inventory:write",
)
PERSONAL_PREFIX = "lbt_"
CLIENT_TOKEN_PREFIX = "lbo_"  # noqa: S105 - a prefix, not a secret
CLIENT_ID_PREFIX = "lbc_"
MAX_NAME = 200
MAX_VMS = 1000
#: ``last_used_at`` is written at most this often per token (not one write per API call)
TOUCH_EVERY = timedelta(seconds=60)


class TokenError(DomainError, ValueError):
    """A token or client request that cannot be accepted; the message says why."""


class TokenRejected(Exception):
    """A bearer secret that does not authenticate; ``code`` is the API error code (``invalid_token``,
    ``token_expired``, ``token_revoked``), the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def scopes_for(user: User) -> tuple[str, ...]:
    """The scopes worth offering ``user``: tiers are for staff, inventory for operators (a scope never lifts a
    role, so the others would only be noise)."""
    staff_only = () if user.is_operator else (("inventory:write",) if user.is_account_manager
                                              else ("tiers:read", "tiers:write", "inventory:write"))
    return tuple(s for s in SCOPES if s not in staff_only)


def parse_scopes(raw: str | list[str] | tuple[str, ...]) -> list[str]:
    """Clean a comma/space separated string or a list of scopes; unknown scopes are an error."""
    items = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw)
    unknown = sorted({s for s in items if s not in SCOPES}, key=str)
    if unknown:
        raise TokenError(f"unknown scope {', '.join(map(str, unknown))}; choose from {', '.join(SCOPES)}")
    scopes = [s for s in SCOPES if s in items]
    if not scopes:
        raise TokenError("choose at least one scope")
    return scopes


def _check_vms(user: User, vm_ids: list[int] | None) -> list[int] | None:
    """The VM restriction, each VM checked to be one the user may see (None: no restriction)."""
    if vm_ids is None:
        return None
    clean = sorted({int(v) for v in vm_ids})
    if not clean or len(clean) > MAX_VMS:
        raise TokenError(f"a VM restriction names 1 to {MAX_VMS} VMs")
    if clean[0] < 1 or clean[-1] > 2**31 - 1:
        raise TokenError(f"no such VM: {clean[0] if clean[0] < 1 else clean[-1]}")
    query = access.scope_to_user(select(VM.id).where(VM.id.in_(clean)), VM.organisation_id, user)
    found = set(db.session.scalars(query))
    missing = [v for v in clean if v not in found]
    if missing:
        raise TokenError(f"no such VM: {', '.join(map(str, missing))}")
    return clean


def _new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def _facts(token: ApiToken) -> dict[str, Any]:
    return {"name": token.name, "prefix": token.prefix, "scopes": list(token.scopes), "vm_ids": token.vm_ids,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            "client": token.client_id}


def _name(name: str | None) -> str:
    """A token's or client's label: one line, cut to MAX_NAME characters."""
    clean = (name or "").strip()[:MAX_NAME]
    if not one_line(clean):
        raise TokenError("the name must be one line, without control characters")
    return clean


def create_token(user: User, scopes: list[str], name: str = "", vm_ids: list[int] | None = None,
                 expires_at: datetime | None = None, *, actor: User | str | None = None,
                 client: OAuthClient | None = None, secret: str | None = None) -> tuple[ApiToken, str]:
    """Create a bearer token acting as ``user``; return the row and the plain secret (shown once, never
    stored). Audited and committed. ``secret`` is for the OAuth server, which makes its own."""
    if not user.is_active:
        raise TokenError(f"{user.email} cannot sign in, so cannot hold a token")
    clean_scopes = parse_scopes(scopes)
    name = _name(name)
    if expires_at is not None and expires_at <= clock.now():
        raise TokenError("the expiry must be in the future")
    secret = secret or _new_secret(CLIENT_TOKEN_PREFIX if client else PERSONAL_PREFIX)
    token = ApiToken(user_id=user.id, name=name, token_hash=hash_secret(secret), prefix=secret[:12],
                     scopes=clean_scopes, vm_ids=_check_vms(user, vm_ids), expires_at=expires_at,
                     client_id=client.id if client else None, last_used_addr="")
    db.session.add(token)
    db.session.flush()
    if client is None:  # client tokens are many and short-lived: the client's creation is the audited act
        audit.record(actor or user, "token.create", token, after=_facts(token),
                     organisation_id=user.organisation_id, label=name or token.prefix)
    db.session.commit()
    return token, secret


def revoke_token(actor: User | str, token: ApiToken) -> ApiToken:
    """Revoke at once (a credential has no grace period). Revoking twice changes nothing."""
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        audit.record(actor, "token.revoke", token, after=_facts(token), organisation_id=token.user.organisation_id,
                     label=token.name or token.prefix)
        db.session.commit()
    return token


def tokens_of(user: User) -> list[ApiToken]:
    """A user's personal tokens, newest first (client-issued tokens are listed with their client)."""
    query = select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.client_id.is_(None))
    return list(db.session.scalars(query.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def get_token_of(user: User, token_id: int) -> ApiToken | None:
    token = db.session.get(ApiToken, token_id)
    return token if token is not None and token.user_id == user.id and token.client_id is None else None


def authenticate(secret: str, remote_addr: str = "") -> ApiToken:
    """The usable token for a bearer secret, its last use recorded; raises ``TokenRejected``."""
    if not secret or len(secret) > 200:
        raise TokenRejected("invalid_token", "the bearer token is not valid")
    # One query with the user and client: this runs for every API request (each chunk of a replication).
    token = db.session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret))
                               .options(joinedload(ApiToken.user), joinedload(ApiToken.client))).first()
    if token is None:
        raise TokenRejected("invalid_token", "the bearer token is not valid")
    if token.revoked or (token.client is not None and not token.client.active):
        raise TokenRejected("token_revoked", "the bearer token has been revoked")
    if token.expired:
        raise TokenRejected("token_expired", "the bearer token has expired")
    if not token.user.is_active:
        raise TokenRejected("invalid_token", "the token's user cannot sign in")
    now = clock.now()
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
        token.last_used_at = now
        token.last_used_addr = (remote_addr or "")[:64]
        db.session.commit()
    return token


# -- OAuth 2.0 clients (client-credentials grant) ----------------------------------------------------------

def create_client(actor: User, name: str, scopes: list[str], vm_ids: list[int] | None = None,
                  token_lifetime: int = 3600) -> tuple[OAuthClient, str]:
    """A machine client acting as ``actor`` with at most ``scopes``; return it and its secret (shown once)."""
    if not actor.is_admin:
        raise TokenError("only administrators create API clients")
    if not 60 <= token_lifetime <= 24 * 3600:
        raise TokenError("a client's token lifetime is 60 to 86400 seconds")
    secret = secrets.token_urlsafe(32)
    client = OAuthClient(client_id=CLIENT_ID_PREFIX + secrets.token_hex(12), secret_hash=hash_secret(secret),
                         name=_name(name), user_id=actor.id, scopes=parse_scopes(scopes),
                         vm_ids=_check_vms(actor, vm_ids), token_lifetime=token_lifetime)
    db.session.add(client)
    db.session.flush()
    audit.record(actor, "oauth_client.create", client, organisation_id=actor.organisation_id,
                 after={"client_id": client.client_id, "name": client.name, "scopes": client.scopes,
                        "vm_ids": client.vm_ids}, label=client.name or client.client_id)
    db.session.commit()
    return client, secret


def clients_of(user: User) -> list[OAuthClient]:
    query = select(OAuthClient).where(OAuthClient.user_id == user.id)
    return list(db.session.scalars(query.order_by(OAuthClient.created_at.desc(), OAuthClient.id.desc())))


def get_client_of(user: User, client_pk: int) -> OAuthClient | None:
    client = db.session.get(OAuthClient, client_pk)
    return client if client is not None and client.user_id == user.id else None


def find_client(client_id: str) -> OAuthClient | None:
    if not client_id or len(client_id) > 64:
        return None
    return db.session.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).first()


def check_client_secret(client: OAuthClient, secret: str) -> bool:
    return secrets.compare_digest(client.secret_hash, hash_secret(secret or ""))


def revoke_client(actor: User | str, client: OAuthClient) -> OAuthClient:
    """Revoke a client and, with it, every token it was issued."""
    if client.revoked_at is None:
        now = clock.now()
        client.revoked_at = now
        for token in db.session.scalars(select(ApiToken).where(ApiToken.client_id == client.id,
                                                               ApiToken.revoked_at.is_(None))):
            token.revoked_at = now
        audit.record(actor, "oauth_client.revoke", client, organisation_id=client.user.organisation_id,
                     after={"client_id": client.client_id}, label=client.name or client.client_id)
        db.session.commit()
    return client


def allowed_client_scopes(client: OAuthClient, asked: list[str]) -> list[str]:
    """The scopes a client gets: those asked for that it holds (all of its scopes when none are asked).

    Asking only for scopes the client does not hold is a ``TokenError``: never all of its scopes instead.
    """
    if not asked:
        return list(client.scopes)
    granted = [s for s in client.scopes if s in asked]
    if not granted:
        raise TokenError(f"the client holds none of the scopes asked for; it holds {' '.join(client.scopes)}")
    return granted


def client_vm_ids(client: OAuthClient) -> list[int] | None:
    """The client's VM restriction less the VMs its user can no longer see (moved to another organisation,
    purged), so issuing does not fail for good; never wider: when none is left, a ``TokenError``."""
    if client.vm_ids is None:
        return None
    listed = [int(v) for v in client.vm_ids]
    query = access.scope_to_user(select(VM.id).where(VM.id.in_(listed)), VM.organisation_id, client.user)
    visible = set(db.session.scalars(query))
    kept = [v for v in listed if v in visible]
    if not kept:
        raise TokenError("none of the VMs this client is restricted to is visible to its user any more; "
                         "create a new client")
    return kept


def new_client_secret() -> str:
    return _new_secret(CLIENT_TOKEN_PREFIX)


def issue_client_token(client: OAuthClient, scopes: list[str], secret: str | None = None) -> tuple[ApiToken, str]:
    """A short-lived token for a client: its scopes narrowed to those asked for, its VM restriction kept (less
    VMs gone from its user's sight). Raises ``TokenError`` when nothing asked for can be granted."""
    vm_ids = client_vm_ids(client)
    client.last_used_at = clock.now()
    return create_token(client.user, allowed_client_scopes(client, scopes), name=client.name, vm_ids=vm_ids,
                        expires_at=clock.now() + timedelta(seconds=client.token_lifetime), client=client,
                        secret=secret)
