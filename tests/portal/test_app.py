"""The factory, sign-in and the basic pages."""

from __future__ import annotations

import pytest

from portal.app import create_app


def test_factory_is_not_in_testing_mode_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFEBOAT_SECRET_KEY", "x" * 32)
    assert not create_app().testing


def test_passwords_are_hashed_at_the_production_cost_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from portal.models import User

    monkeypatch.setenv("LIFEBOAT_SECRET_KEY", "x" * 32)
    monkeypatch.delenv("LIFEBOAT_PASSWORD_HASH_METHOD")  # the suite's cheap setting (tests/conftest.py)
    user = User(email="a@b.example", name="a", role="operator")
    with create_app().app_context():
        user.set_password("pw")
    assert user.password_hash.startswith("scrypt:32768:8:1$") and user.check_password("pw")
    monkeypatch.setenv("LIFEBOAT_PASSWORD_HASH_METHOD", "pbkdf2:sha256:1000")
    with create_app().app_context():
        user.set_password("pw2")
    assert user.password_hash.startswith("pbkdf2:sha256:1000$") and user.check_password("pw2")


def test_factory_refuses_to_start_without_a_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFEBOAT_SECRET_KEY", raising=False)
    monkeypatch.delenv("LIFEBOAT_DEMO", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app()


def test_login_and_logout(client, auth, world) -> None:
    assert client.get("/").status_code == 302  # to the login page
    wrong = auth.login("admin@acme.example", "nope")
    assert wrong.status_code == 401 and b"Wrong email or password" in wrong.data
    assert auth.login(world["acme_admin"]).status_code == 302
    page = client.get("/")
    assert page.status_code == 200 and b"web-1" in page.data and b"shop-1" not in page.data
    assert client.get("/logout").status_code == 405  # only POST signs out
    assert auth.logout().status_code == 302
    assert client.get("/").status_code == 302


def test_login_redirects_only_within_the_site(client, auth, world) -> None:
    done = client.post("/login?next=https://evil.example/", data={"email": "admin@acme.example",
                                                                 "password": "correct horse battery staple"})
    assert done.headers["Location"] == "/"


def test_session_cookie_is_secure_and_httponly(client, world) -> None:
    done = client.post("/login", data={"email": "admin@acme.example", "password": "correct horse battery staple"})
    cookie = done.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie


def test_csrf_is_required_on_forms(app, world) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    refused = client.post("/login", data={"email": "admin@acme.example", "password": "x"})
    assert refused.status_code == 400 and b"CSRF" in refused.data


def test_login_is_rate_limited(app, world, database_url) -> None:
    from portal.extensions import limiter

    limited = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "WTF_CSRF_ENABLED": False,
                          "RATELIMIT_ENABLED": True})
    limiter.reset()
    client = limited.test_client()
    codes = [client.post("/login", data={"email": "admin@acme.example", "password": "bad"}).status_code
             for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[-1] == 429
    limiter.reset()
    with limited.app_context():
        from portal.extensions import db

        db.engine.dispose()


def test_names_with_markup_render_inert(client, auth, world) -> None:
    from portal.extensions import db

    world["acme_vm"].name = "<script>alert(1)</script>"
    db.session.commit()
    auth.login(world["acme_admin"])
    page = client.get("/").data
    assert b"<script>alert(1)</script>" not in page and b"&lt;script&gt;" in page


def test_dashboard_shows_priority_and_state(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    page = client.get("/").data.decode()
    assert "critical" in page  # production on a tier with an RTO target
    assert 'data-state="none"' in page  # no backups yet


def test_bad_page_numbers_are_400(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    assert client.get("/?page=abc").status_code == 400
    assert client.get("/?page=0").status_code == 400
    assert client.get("/?page=\u00b2").status_code == 400  # a digit to str.isdigit(), not to int()
    auth.login(world["operator"])
    assert client.get("/manage/syncs?page=\u00b2").status_code == 400
