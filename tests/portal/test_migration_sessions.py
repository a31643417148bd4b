"""Migration 0010_issue18 on a database with users: each user gets a nonce of its own and can still sign in."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from flask_migrate import upgrade
from werkzeug.security import generate_password_hash

from portal.app import create_app
from portal.extensions import db


def test_users_from_before_the_migration_sign_in_and_stay_signed_in(tmp_path: Path) -> None:
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "SESSION_COOKIE_SECURE": False,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/old.db"})
    with app.app_context():
        upgrade(revision="0009")
        with db.engine.begin() as connection:
            for email in ("old@lifeboat.example", "older@lifeboat.example"):
                connection.execute(sa.text(
                    "INSERT INTO users (email, name, password_hash, role, active, created_at) "
                    "VALUES (:email, 'Old', :hash, 'operator', 1, '2026-11-01')"),
                    {"email": email, "hash": generate_password_hash("an old passphrase")})
        upgrade()
        with db.engine.connect() as connection:
            nonces = connection.execute(sa.text("SELECT session_nonce FROM users")).scalars().all()
        client = app.test_client()
        answer = client.post("/login", data={"email": "old@lifeboat.example", "password": "an old passphrase"})
        assert answer.status_code == 302
        assert client.get("/").status_code == 200
        db.engine.dispose()
    assert len(nonces) == 2 and all(len(n) == 32 for n in nonces) and nonces[0] != nonces[1]
