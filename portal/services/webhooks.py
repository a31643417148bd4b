"""Organisation webhooks: register, disable, sign and shape what is POSTed.

Every delivery is a JSON body signed with HMAC-SHA256 over ``"<timestamp>.<body>"`` with the webhook's
secret, sent as ``X-Lifeboat-Signature: sha256=<hex>`` with ``X-Lifeboat-Timestamp: <unix seconds>``, so a
receiver can check both who sent it and that it is fresh (reject old timestamps: no replays).

Webhook URLs are customer input that a worker inside the provider's network will call. Addresses that
resolve to loopback, private, link-local or otherwise reserved networks are refused at send time unless
``WEBHOOK_ALLOW_PRIVATE`` is set, and redirects are never followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from ..errors import DomainError
from ..extensions import db
from ..models import Notification, Organisation, User, Webhook
from ..security import one_line
from . import audit
from .notify import KINDS, TEST_KIND, WEBHOOK_DEFAULT_EVENTS

#: every event a webhook may subscribe to
EVENTS = tuple(KINDS)


class WebhookError(DomainError, ValueError):
    """A webhook form the rules refuse (422); the message says why."""


class UnsafeAddress(Exception):
    """The webhook's host resolves to an address the worker must not call."""


def may_manage(user: User) -> bool:
    """Customer admins (their organisation), account managers and operators (organisations in scope)."""
    return user.role != "customer_member"


def for_organisation(org: Organisation) -> list[Webhook]:
    return list(db.session.scalars(select(Webhook).where(Webhook.organisation_id == org.id).order_by(Webhook.id)))


def deliveries(org: Organisation, limit: int = 50) -> list[Notification]:
    query = (select(Notification).where(Notification.organisation_id == org.id, Notification.channel == "webhook")
             .order_by(Notification.id.desc()).limit(limit))
    return list(db.session.scalars(query))


def check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if len(url) > 500 or parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookError("the URL must be an http:// or https:// address of at most 500 characters")
    if parts.username or parts.password:
        raise WebhookError("put no credentials in the URL; the signature authenticates Lifeboat")
    return url


def create(actor: User, org: Organisation, url: str, events: list[str], description: str = "",
           secret: str = "") -> Webhook:
    """Register a webhook; without a given secret one is made (shown once by the page)."""
    url = check_url(url)
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise WebhookError(f"unknown event {unknown[0]!r}")
    if not one_line(description.strip()):
        raise WebhookError("the description must be one line, without control characters")
    secret = secret.strip() or secrets.token_hex(32)
    if not 16 <= len(secret) <= 128:
        raise WebhookError("the secret must be 16 to 128 characters long")
    hook = Webhook(organisation_id=org.id, url=url, secret=secret, events=list(events or WEBHOOK_DEFAULT_EVENTS),
                   description=description.strip()[:200], active=True, created_by_id=actor.id)
    db.session.add(hook)
    db.session.flush()
    audit.record(actor, "webhook.create", hook, organisation_id=org.id,
                 after={"url": url, "events": hook.events, "description": hook.description})
    db.session.commit()
    return hook


def set_active(actor: User, hook: Webhook, active: bool) -> Webhook:
    if hook.active != active:
        audit.record(actor, "webhook.enable" if active else "webhook.disable", hook,
                     organisation_id=hook.organisation_id, before={"active": hook.active}, after={"active": active})
        hook.active = active
        db.session.commit()
    return hook


def test(actor: User, hook: Webhook) -> Notification:
    from .notify import webhook_test

    audit.record(actor, "webhook.test", hook, organisation_id=hook.organisation_id)
    return webhook_test(hook)


# -- what goes over the wire ------------------------------------------------------------------------------

def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, timestamp + "." + body)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (shown in the README): constant-time comparison of the signature."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def payload(row: Notification) -> dict[str, Any]:
    org = db.session.get(Organisation, row.organisation_id) if row.organisation_id else None
    return {
        "id": row.id,
        "event": row.kind,
        "created_at": row.created_at.isoformat() + "Z",
        "organisation": {"id": org.id, "slug": org.slug, "name": org.name} if org else None,
        "vm": {"id": row.vm_id, "name": row.vm_name} if row.vm_id is not None else None,
        "subject": row.subject,
        "details": row.details or {},
        "test": row.kind == TEST_KIND,
    }


def check_address(url: str) -> str | None:
    """Refuse hosts that resolve to non-public addresses unless ``WEBHOOK_ALLOW_PRIVATE`` is set.

    Returns the checked address to connect to (None when private addresses are allowed): the delivery must
    use that very address, not resolve the name again, or a DNS answer that changes between the check and
    the POST (DNS rebinding) would lead the workers into the provider's own network.
    """
    if current_app.config.get("WEBHOOK_ALLOW_PRIVATE"):
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise UnsafeAddress(f"cannot resolve {host}: {exc}") from exc
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        refused = not_public(address)
        if refused is not None:
            raise UnsafeAddress(f"{host} resolves to {refused}, which is not a public address "
                                "(LIFEBOAT_WEBHOOK_ALLOW_PRIVATE=true allows it)")
        addresses.append(str(address))
    if not addresses:
        raise UnsafeAddress(f"cannot resolve {host}")
    return addresses[0]


#: Networks that are not the public Internet, from IANA's special-purpose registries, spelled out rather than left
#: to ``is_global`` (whose answer differs between Python versions: 3.11 calls 192.0.0.9 and 2002::/16 global).
NOT_PUBLIC = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24",  # IETF protocol assignments, the whole /24 (DS-Lite, NAT64 discovery, PCP and TURN anycast)
    "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/8",  # unspecified, loopback, IPv4-compatible (::a.b.c.d) and -translated; IPv4-mapped is judged below
    "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): translated into the provider's own IPv4 networks
    "100::/64", "2001::/23",  # discard-only; IETF protocol assignments, Teredo (2001::/32) included
    "2001:db8::/32", "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))
#: IPv6 prefixes whose addresses carry an IPv4 address a packet ends up at: judged by that IPv4 address
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to: IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or 6to4
    (2002:AABB:CCDD::/48)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def not_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """None when ``address`` is a public unicast address; otherwise the address (with the IPv4 address it embeds)
    to name in the refusal."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return None if not_public(inner) is None else f"{address} (which leads to {inner})"
    if any(address in network for network in NOT_PUBLIC) or not address.is_global or address.is_multicast:
        return str(address)
    return None


def post_to(url: str, address: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` to ``url`` over a connection to ``address`` (already checked), keeping the URL's host
    name for the Host header, TLS SNI and certificate check; no redirects. Returns the status code."""
    import urllib3

    parts = urlsplit(url)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    name = parts.hostname or ""
    name = f"[{name}]" if ":" in name else name  # an IPv6 literal
    host_header = name if parts.port is None else f"{name}:{parts.port}"
    pool: urllib3.HTTPConnectionPool
    if secure:
        pool = urllib3.HTTPSConnectionPool(address, port, timeout=timeout, cert_reqs="CERT_REQUIRED",
                                           server_hostname=parts.hostname, assert_hostname=parts.hostname)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout)
    try:
        answer = pool.urlopen("POST", target, body=body, headers={**headers, "Host": host_header},
                              redirect=False, retries=False)
        return int(answer.status)
    finally:
        pool.close()
