"""Organisation users: list, create, change role, deactivate, reactivate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import Case, signed_in


def new_user(email: str, org: str | None = None) -> Callable[[dict[str, Any]], dict[str, str]]:
    """A Case data factory: a valid new-user form, naming ``org`` when given."""

    def data(w: dict[str, Any]) -> dict[str, str]:
        form = {"email": email, "name": "New Person", "role": "customer_member", "password": "a long password!"}
        if org:
            form["organisation_id"] = str(w[org].id)
        return form
    return data


ROUTES = {
    # no master key in these apps: an admin's export is refused with the reason (tests/jobs/test_encryption.py
    # downloads one); staff never export a customer's key
    "web.organisation_key_export": [
        Case("POST", lambda w: "/organisation/key", signed_in(409, acme_member=403, manager=403, operator=403)),
    ],
    "web.users_list": [
        Case("GET", lambda w: "/users", signed_in(200, acme_member=403), absent={
            "acme_admin": ("admin@globex.example",), "manager": ("admin@globex.example",),
            "globex_admin": ("admin@acme.example", "dev@acme.example")}),
        Case("GET", lambda w: f"/users?organisation={w['globex'].id}",
             signed_in(404, acme_member=403, globex_admin=200, operator=200)),
    ],
    "web.users_create": [
        # Customer admins add to their own organisation; staff name one (in scope).
        Case("POST", lambda w: "/users", signed_in(303, acme_member=403, manager=422, operator=422),
             data=new_user("new1@example.org")),
        Case("POST", lambda w: "/users", signed_in(303, acme_member=403, globex_admin=404),
             data=new_user("new2@example.org", "acme")),
        Case("POST", lambda w: "/users", signed_in(404, acme_member=403, globex_admin=303, operator=303),
             data=new_user("new3@example.org", "globex")),
    ],
    "web.users_role": [
        Case("POST", lambda w: f"/users/{w['acme_member'].id}/role", signed_in(303, acme_member=403, globex_admin=404),
             data=lambda w: {"role": "customer_admin"}),
        # globex_admin is globex's only admin: demoting them is refused.
        Case("POST", lambda w: f"/users/{w['globex_admin'].id}/role",
             signed_in(404, acme_member=403, globex_admin=422, operator=422),
             data=lambda w: {"role": "customer_member"}),
        # Staff accounts are not managed here, even by operators.
        Case("POST", lambda w: f"/users/{w['manager'].id}/role", signed_in(404, acme_member=403),
             data=lambda w: {"role": "customer_admin"}),
    ],
    "web.users_deactivate": [
        Case("POST", lambda w: f"/users/{w['acme_member'].id}/deactivate",
             signed_in(303, acme_member=403, globex_admin=404)),
        Case("POST", lambda w: f"/users/{w['globex_admin'].id}/deactivate",
             signed_in(404, acme_member=403, globex_admin=422, operator=422)),
    ],
    "web.users_activate": [
        Case("POST", lambda w: f"/users/{w['acme_member'].id}/activate",
             signed_in(303, acme_member=403, globex_admin=404)),
        Case("POST", lambda w: "/users/999999/activate", signed_in(404, acme_member=403)),
    ],
}
