"""Sessions end on the server: signing out (or a new password) invalidates every session of the user, also a copy
of the cookie taken before; and signing in costs the same password-hash work whether or not the email exists."""

from __future__ import annotations

from typing import Any

import pytest

from portal.extensions import db
from tests.fixtures.portal import PASSWORD, Auth


def signed_in(client: Any) -> bool:
    """Whether the client's session opens the dashboard, asked in a fresh app context like every real request
    (the tests' shared one would keep Flask-Login's user of the previous request in ``g``)."""
    with client.application.app_context():
        return bool(client.get("/").status_code == 200)


def test_a_session_cookie_copied_before_sign_out_no_longer_works(app, client, auth, world) -> None:
    assert auth.login(world["acme_admin"]).status_code == 302
    stolen = client.get_cookie("session").value
    assert auth.logout().status_code == 302
    client.set_cookie("session", stolen)  # replayed, e.g. from a shared computer or a leaked proxy log
    assert not signed_in(client)


def test_signing_out_ends_the_users_sessions_elsewhere(app, world) -> None:
    laptop, phone = Auth(app.test_client()), Auth(app.test_client())
    laptop.login(world["acme_admin"])
    phone.login(world["acme_admin"])
    assert signed_in(laptop.client) and signed_in(phone.client)
    laptop.logout()
    assert not signed_in(phone.client)
    other = Auth(app.test_client())  # another user is not affected
    other.login(world["acme_member"])
    laptop.login(world["acme_admin"])
    assert signed_in(laptop.client) and signed_in(other.client)


def test_a_new_password_ends_every_session(app, client, auth, world) -> None:
    auth.login(world["acme_admin"])
    assert signed_in(client)
    world["acme_admin"].set_password("a completely different passphrase")
    db.session.commit()
    assert not signed_in(client)
    assert auth.login(world["acme_admin"], "a completely different passphrase").status_code == 302
    assert signed_in(client)


@pytest.fixture
def hash_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count werkzeug's password-hash checks (the real ones still run) wherever sign-in calls them."""
    import portal.auth.users
    import portal.models.accounts

    calls: list[str] = []
    for module in (portal.auth.users, portal.models.accounts):
        real = module.check_password_hash

        def counting(hashed: str, password: str, _real: Any = real) -> bool:
            calls.append(hashed.split("$", 1)[0])
            return bool(_real(hashed, password))

        monkeypatch.setattr(module, "check_password_hash", counting)
    return calls


@pytest.mark.parametrize("who", ["unknown", "wrong password", "inactive", "no password", "right password"])
def test_every_sign_in_costs_one_password_hash_check(app, client, auth, world, hash_checks, who: str) -> None:
    """The time of an answer must not tell which emails have accounts: each costs one (scrypt) hash check."""
    user = world["acme_member"]
    if who == "inactive":
        user.active = False
    if who == "no password":
        user.password_hash = ""
    db.session.commit()
    email = "nobody@acme.example" if who == "unknown" else user.email
    answer = auth.login(email, PASSWORD if who in ("inactive", "right password") else "not the password")
    assert answer.status_code == (302 if who == "right password" else 401)
    assert len(hash_checks) == 1 and hash_checks[0].startswith("scrypt")  # the same kind of hash as a real one
