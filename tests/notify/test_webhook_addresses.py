"""The webhook address check, address by address: IPv4 special-purpose networks (all of 192.0.0.0/24) and IPv6
addresses that lead to an IPv4 address (IPv4-mapped and -compatible, NAT64, 6to4, Teredo) are refused unless the
IPv4 address they lead to is public. Literal addresses need no DNS, so every case runs here."""

from __future__ import annotations

import pytest

from portal.services import webhooks

REFUSED = [
    "192.0.0.1", "192.0.0.8", "192.0.0.9", "192.0.0.10", "192.0.0.170", "192.0.0.255",  # IETF protocol assignments
    "127.0.0.1", "10.1.2.3", "100.64.0.1", "169.254.169.254", "198.18.0.1", "240.0.0.1", "0.0.0.0",
    "::1", "::", "fe80::1", "fc00::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",  # IPv4-mapped
    "::127.0.0.1", "::8.8.8.8",  # IPv4-compatible (deprecated, never a real destination)
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::c000:9",  # NAT64 to 127.0.0.1, 169.254.169.254, 192.0.0.9
    "64:ff9b:1::1", "64:ff9b:1:ffff::808:808",  # local-use NAT64: the provider's own translation
    "2002:7f00:1::1", "2002:a9fe:a9fe::1", "2002:c000:9::1",  # 6to4 of 127.0.0.1, 169.254.169.254, 192.0.0.9
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::1",  # Teredo
]
ALLOWED = ["192.0.43.8", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_a_non_public_address_is_refused(app, address: str) -> None:
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(webhooks.UnsafeAddress, match="not a public address"):
        webhooks.check_address(f"https://{host}/hook")


@pytest.mark.parametrize("address", ALLOWED)
def test_a_public_address_is_allowed(app, address: str) -> None:
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    host = f"[{address}]" if ":" in address else address
    assert webhooks.check_address(f"https://{host}/hook") is not None


def test_the_refusal_names_the_ipv4_address_an_ipv6_address_leads_to(app) -> None:
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    with pytest.raises(webhooks.UnsafeAddress, match=r"2002:7f00:1::1 \(which leads to 127\.0\.0\.1\)"):
        webhooks.check_address("https://[2002:7f00:1::1]/hook")
