"""Webhook deliveries go to the address that was checked, never to a second DNS answer (DNS rebinding)."""

from __future__ import annotations

import pytest

from portal.services import webhooks


def test_a_delivery_connects_to_the_checked_address_and_keeps_the_host_name(app, receiver) -> None:
    port = receiver.url.rsplit(":", 1)[1].split("/", 1)[0]
    # A name that resolves nowhere: the request can only arrive because it went to the given address.
    url = f"http://hooks.customer.invalid:{port}/hook?x=1"
    body = b'{"event": "test"}'
    timestamp = "1700000000"
    headers = {"Content-Type": "application/json", "X-Lifeboat-Timestamp": timestamp,
               "X-Lifeboat-Signature": webhooks.sign(receiver.secret, timestamp, body)}
    assert webhooks.post_to(url, "127.0.0.1", body, headers, timeout=5) == 204
    assert receiver.received[0]["headers"]["Host"] == f"hooks.customer.invalid:{port}"


def test_the_check_hands_back_the_public_address_it_checked(app) -> None:
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    assert webhooks.check_address("https://192.0.43.8/hook") == "192.0.43.8"  # a public literal, no DNS
    with pytest.raises(webhooks.UnsafeAddress):
        webhooks.check_address("https://127.0.0.1/hook")
    app.config["WEBHOOK_ALLOW_PRIVATE"] = True
    assert webhooks.check_address("https://127.0.0.1/hook") is None  # allowed: an ordinary request
