"""Organisation users: created, promoted or demoted, deactivated and reactivated by those who manage them.

Customer admins manage their own organisation's users; account managers those of the organisations they
manage; operators everyone's. Only organisation roles (member, admin) are granted here: staff accounts
(account managers, operators) are not something a customer can mint, so asking for one is refused outright.
An organisation always keeps at least one active admin, so nobody locks a customer out of its own users.
Deleting a user goes through the deletion service (grace period, undo), not through here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, func, select

from ..errors import DomainError, NotFound
from ..extensions import db
from ..models import Organisation, User
from ..models.accounts import ACCOUNT_MANAGER, CUSTOMER_ADMIN, CUSTOMER_MEMBER, OPERATOR
from ..security import one_line
from . import access, audit

ORG_ROLES = (CUSTOMER_MEMBER, CUSTOMER_ADMIN)
STAFF_ROLES = (ACCOUNT_MANAGER, OPERATOR)
ROLE_LABELS = {CUSTOMER_MEMBER: "member", CUSTOMER_ADMIN: "admin"}
EMAIL = re.compile(r"[^@\s<>\"'\x00-\x1f\x7f-\x9f]{1,64}@[A-Za-z0-9.-]{1,189}\.[A-Za-z]{2,63}")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024


class UserError(DomainError, ValueError):
    """A request the rules refuse (422); ``errors`` maps each form field to a message."""

    status = 422

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors: dict[str, str] = errors


class RoleForbidden(UserError):
    """A role the actor may not grant here (staff roles): a permission problem, not a typo (403)."""

    status = 403
    code = "forbidden"


def can_manage(actor: User) -> bool:
    """Whether the actor manages any organisation's users at all (members do not)."""
    return actor.is_admin


def snapshot(user: User) -> dict[str, Any]:
    """A user as the audit log stores it: never the password hash."""
    return {"email": user.email, "name": user.name, "role": user.role, "organisation_id": user.organisation_id,
            "active": user.active}


def list_query(actor: User, organisation_id: int | None = None) -> Select[Any]:
    """Organisation users in the actor's scope (staff accounts are not listed here), newest last."""
    query = select(User).where(User.organisation_id.is_not(None), User.deletion_due_at.is_(None))
    if organisation_id is not None:
        query = query.where(User.organisation_id == organisation_id)
    return access.scope_to_user(query, User.organisation_id, actor).order_by(User.email)


def get_managed(actor: User, user_id: int) -> User:
    """A user the actor may manage: in scope and belonging to an organisation; 404 otherwise."""
    target = access.get_user(actor, user_id)
    if target.organisation_id is None:  # staff accounts are not managed from an organisation's page
        raise NotFound()
    return target


def check_role(role: str) -> str:
    """Refuse staff roles as forbidden (403) and anything else unknown as bad input (422)."""
    if role in STAFF_ROLES:
        raise RoleForbidden({"role": "account managers and operators cannot be created or granted here"})
    if role not in ORG_ROLES:
        raise UserError({"role": "choose member or admin"})
    return role


def parse_new(form: Mapping[str, str]) -> dict[str, str]:
    """Check a new-user form; raise UserError naming every bad field (RoleForbidden first: it is 403)."""
    role = str(form.get("role", ""))
    if role in STAFF_ROLES:
        check_role(role)  # raises RoleForbidden before anything else is looked at
    errors: dict[str, str] = {}
    email = str(form.get("email", "")).strip().lower()
    if len(email) > 254 or not EMAIL.fullmatch(email):
        errors["email"] = "enter a valid email address"
    name = str(form.get("name", "")).strip()
    if not name:
        errors["name"] = "enter the person's name"
    elif len(name) > 200:
        errors["name"] = "at most 200 characters"
    elif not one_line(name):
        errors["name"] = "one line, without control characters"
    password = str(form.get("password", ""))
    if len(password) < MIN_PASSWORD:
        errors["password"] = f"at least {MIN_PASSWORD} characters"
    elif len(password) > MAX_PASSWORD:
        errors["password"] = f"at most {MAX_PASSWORD} characters"
    if role not in ORG_ROLES:
        errors["role"] = "choose member or admin"
    if errors:
        raise UserError(errors)
    return {"email": email, "name": name, "password": password, "role": role}


def create(actor: User, org: Organisation, values: dict[str, str]) -> User:
    """Add a user to ``org`` with a hashed password; audited (without the password), committed."""
    taken = db.session.scalar(select(User.id).where(func.lower(User.email) == values["email"]))
    if taken is not None:
        raise UserError({"email": "this email address already has an account"})
    user = User(email=values["email"], name=values["name"], role=values["role"], organisation_id=org.id)
    user.set_password(values["password"])
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "user.create", user, after=snapshot(user))
    db.session.commit()
    return user


def change_role(actor: User, target: User, role: str) -> User:
    """Make ``target`` a member or an admin; refuses to demote the organisation's last active admin."""
    check_role(role)
    if role == target.role:
        return target
    if target.role == CUSTOMER_ADMIN:
        _keep_an_admin(target, "role")
    before = snapshot(target)
    target.role = role
    audit.record(actor, "user.role", target, before=before, after=snapshot(target))
    db.session.commit()
    return target


def set_active(actor: User, target: User, active: bool) -> User:
    """Deactivate (signs them out at their next request) or reactivate ``target``; audited.

    Deactivating yourself or the last active admin is refused: both lock people out with no way back in.
    """
    if target.active == active:
        return target
    if not active:
        if target.id == actor.id:
            raise UserError({"active": "you cannot deactivate your own account"})
        if target.role == CUSTOMER_ADMIN:
            _keep_an_admin(target, "active")
    before = snapshot(target)
    target.active = active
    audit.record(actor, "user.activate" if active else "user.deactivate", target, before=before,
                 after=snapshot(target))
    db.session.commit()
    return target


def _keep_an_admin(target: User, field: str) -> None:
    others = db.session.scalar(select(func.count()).select_from(User).where(
        User.organisation_id == target.organisation_id, User.role == CUSTOMER_ADMIN, User.active.is_(True),
        User.deletion_due_at.is_(None), User.id != target.id)) or 0
    if not others:
        raise UserError({field: "the organisation must keep at least one active admin"})
