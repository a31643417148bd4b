"""Organisation users: who may list, add, promote, demote, deactivate; bad input refused with nothing saved."""

from __future__ import annotations

import pytest
from flask import g
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEntry, User
from tests.fixtures.portal import make_user

NEW = {"email": "New.Person@Acme.example", "name": "New Person", "role": "customer_member",
       "password": "twelve chars!"}


def _user(email: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.email == email))


def test_customer_admin_lists_only_their_organisation(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    page = client.get("/users")
    assert page.status_code == 200
    assert b"dev@acme.example" in page.data and b"admin@globex.example" not in page.data
    assert b"manager@lifeboat.example" not in page.data.split(b"</header>")[1]  # staff are not org users


def test_members_may_not_manage_users(client, auth, world) -> None:
    auth.login(world["acme_member"])
    assert client.get("/users").status_code == 403
    assert client.post("/users", data=NEW).status_code == 403
    assert client.post(f"/users/{world['acme_admin'].id}/role", data={"role": "customer_member"}).status_code == 403
    assert _user("new.person@acme.example") is None and AuditEntry.query.count() == 0


def test_customer_admin_creates_a_user_with_a_hashed_password(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    done = client.post("/users", data=NEW)
    assert done.status_code == 303
    user = _user("new.person@acme.example")  # stored lower-case
    assert user.organisation_id == world["acme"].id and user.role == "customer_member" and user.active
    assert user.password_hash and "twelve chars!" not in user.password_hash and user.check_password("twelve chars!")
    entry = AuditEntry.query.filter_by(action="user.create").one()
    assert entry.actor == "admin@acme.example" and entry.organisation_id == world["acme"].id
    assert entry.after["email"] == "new.person@acme.example" and "password" not in str(entry.after)
    auth.logout()
    assert auth.login("new.person@acme.example", "twelve chars!").status_code == 302


@pytest.mark.parametrize(("field", "value", "message"), [
    ("email", "not-an-email", b"enter a valid email address"),
    ("email", "a@b", b"enter a valid email address"),
    ("email", "x" * 250 + "@example.org", b"enter a valid email address"),
    ("email", "dev@acme.example", b"this email address already has an account"),
    ("email", "DEV@acme.example", b"this email address already has an account"),
    ("name", "   ", b"enter the person&#39;s name"),
    ("name", "n" * 201, b"at most 200 characters"),
    ("password", "short pw", b"at least 12 characters"),
    ("password", "p" * 1025, b"at most 1024 characters"),
    ("role", "superuser", b"choose member or admin"),
])
def test_bad_user_input_is_refused_and_nothing_saved(client, auth, world, field, value, message) -> None:
    auth.login(world["acme_admin"])
    count = User.query.count()
    done = client.post("/users", data={**NEW, field: value})
    assert done.status_code == 422 and message in done.data and b"Nothing was saved" in done.data
    assert User.query.count() == count and AuditEntry.query.count() == 0


@pytest.mark.parametrize("role", ["account_manager", "operator"])
@pytest.mark.parametrize("actor", ["acme_admin", "manager", "operator"])
def test_staff_roles_cannot_be_created_or_granted_here(client, auth, world, role, actor) -> None:
    auth.login(world[actor])
    done = client.post("/users", data={**NEW, "role": role, "organisation_id": str(world["acme"].id)})
    assert done.status_code == 403 and b"cannot be created or granted here" in done.data
    assert client.post(f"/users/{world['acme_member'].id}/role", data={"role": role}).status_code == 403
    assert _user("new.person@acme.example") is None
    assert _user("dev@acme.example").role == "customer_member" and AuditEntry.query.count() == 0


def test_customer_admin_cannot_touch_another_organisation(client, auth, world) -> None:
    auth.login(world["globex_admin"])
    member = world["acme_member"]
    assert client.post(f"/users/{member.id}/role", data={"role": "customer_admin"}).status_code == 404
    assert client.post(f"/users/{member.id}/deactivate").status_code == 404
    assert client.post("/users", data={**NEW, "organisation_id": str(world["acme"].id)}).status_code == 404
    assert client.get(f"/users?organisation={world['acme'].id}").status_code == 404
    assert _user("dev@acme.example").role == "customer_member" and _user("dev@acme.example").active
    assert _user("new.person@acme.example") is None and AuditEntry.query.count() == 0


def test_role_change_is_audited(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    member = world["acme_member"]
    assert client.post(f"/users/{member.id}/role", data={"role": "customer_admin"}).status_code == 303
    assert _user("dev@acme.example").role == "customer_admin"
    entry = AuditEntry.query.filter_by(action="user.role").one()
    assert entry.before["role"] == "customer_member" and entry.after["role"] == "customer_admin"
    assert entry.object_id == member.id and entry.organisation_id == world["acme"].id


def test_the_last_active_admin_stays(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    admin = world["acme_admin"]
    done = client.post(f"/users/{admin.id}/role", data={"role": "customer_member"})
    assert done.status_code == 422 and b"at least one active admin" in done.data
    assert _user("admin@acme.example").role == "customer_admin"
    second = make_user("second@acme.example", "customer_admin", world["acme"])
    assert client.post(f"/users/{admin.id}/role", data={"role": "customer_member"}).status_code == 303
    auth.login(world["operator"])
    done = client.post(f"/users/{second.id}/deactivate")
    assert done.status_code == 422 and b"at least one active admin" in done.data
    assert _user("second@acme.example").active


def test_deactivation_signs_the_user_out_and_is_undone_by_reactivation(client, auth, world, app) -> None:
    member = world["acme_member"]
    other = app.test_client()
    other.post("/login", data={"email": member.email, "password": "correct horse battery staple"})
    assert other.get("/").status_code == 200
    auth.login(world["acme_admin"])
    assert client.post(f"/users/{member.id}/deactivate").status_code == 303
    assert not _user(member.email).active
    g.pop("_login_user", None)  # the test shares one app context (and g) across requests and clients
    assert other.get("/").status_code == 302  # the session no longer loads the user
    g.pop("_login_user", None)
    entry = AuditEntry.query.filter_by(action="user.deactivate").one()
    assert entry.before["active"] is True and entry.after["active"] is False
    assert b"deactivated" in client.get("/users").data
    assert client.post(f"/users/{member.id}/activate").status_code == 303
    assert _user(member.email).active and AuditEntry.query.filter_by(action="user.activate").count() == 1


def test_nobody_deactivates_themselves(client, auth, world) -> None:
    auth.login(world["operator"])
    assert client.post(f"/users/{world['operator'].id}/deactivate").status_code == 404  # staff: not here
    make_user("second@acme.example", "customer_admin", world["acme"])
    auth.login(world["acme_admin"])
    done = client.post(f"/users/{world['acme_admin'].id}/deactivate")
    assert done.status_code == 422 and b"your own account" in done.data
    assert _user("admin@acme.example").active


def test_manager_manages_users_of_their_customers_only(client, auth, world) -> None:
    auth.login(world["manager"])
    page = client.get("/users")
    assert b"dev@acme.example" in page.data and b"admin@globex.example" not in page.data
    missing = client.post("/users", data=NEW)
    assert missing.status_code == 422 and b"choose the organisation" in missing.data
    assert client.post("/users", data={**NEW, "organisation_id": str(world["globex"].id)}).status_code == 404
    assert client.post("/users", data={**NEW, "organisation_id": str(world["acme"].id)}).status_code == 303
    assert _user("new.person@acme.example").organisation_id == world["acme"].id
    assert client.post(f"/users/{world['globex_admin'].id}/deactivate").status_code == 404


def test_operator_manages_any_organisation(client, auth, world) -> None:
    auth.login(world["operator"])
    page = client.get(f"/users?organisation={world['globex'].id}")
    assert b"admin@globex.example" in page.data and b"dev@acme.example" not in page.data
    assert client.post("/users", data={**NEW, "email": "x@globex.example",
                                       "organisation_id": str(world["globex"].id)}).status_code == 303
    assert _user("x@globex.example").organisation_id == world["globex"].id


def test_htmx_row_change_answers_the_page_with_the_row(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    member = world["acme_member"]
    done = client.post(f"/users/{member.id}/role", data={"role": "customer_admin"}, headers={"HX-Request": "true"})
    assert done.status_code == 200 and f'id="user-{member.id}"'.encode() in done.data
    assert b"dev@acme.example is now admin" in done.data


def test_user_names_render_inert(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    client.post("/users", data={**NEW, "name": "<script>alert(1)</script>"})
    page = client.get("/users")
    assert b"<script>alert(1)" not in page.data and b"&lt;script&gt;alert(1)" in page.data
