"""Every destructive action asks first or offers Undo, the same way everywhere (issue 15).

- Deletions (VM, backup point, user, organisation) only schedule: Undo right where Delete was, and in the
  recycle bin until the grace period ends. No dialog: Undo is the safety (test_portal.py walks a point's).
- What cannot be undone from the page asks in a confirmation dialog (``data-confirm``, static/lifeboat.js):
  starting a disaster run, revoking a token or an API client, resolving an incident, cancelling a restore.
- Overwriting a VM's disk (restore in place, its undo) needs the VM's name typed out (test_restores.py).

The walk: dismissing the dialog changes nothing (checked in the database); accepting it acts.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from .conftest import LiveServer, sign_in

pytestmark = pytest.mark.slow

DESTRUCTIVE = re.compile(r"^(Delete|Revoke|Start: queue|Resolve|Cancel)\b")


def _unguarded(page: Any) -> list[str]:
    """Destructive buttons on the page that neither ask (form[data-confirm]) nor offer Undo (deletion controls)."""
    return list(page.evaluate(
        """re => [...document.querySelectorAll('main form button, main form [type=submit]')]
             .filter(b => new RegExp(re).test(b.textContent.trim()))
             .filter(b => !b.closest('form[data-confirm]') && !b.closest('.deletion-controls'))
             .map(b => location.pathname + ': ' + b.textContent.trim())""",
        DESTRUCTIVE.pattern,
    ))


def _disaster_runs(live_server: LiveServer) -> int:
    from portal.extensions import db
    from portal.models import DisasterRun

    with live_server.app.app_context():
        count = len(db.session.scalars(select(DisasterRun.id)).all())
        db.session.remove()
        return count


def _token_revoked(live_server: LiveServer, name: str) -> bool:
    from portal.extensions import db
    from portal.models import ApiToken

    with live_server.app.app_context():
        token = db.session.scalars(select(ApiToken).where(ApiToken.name == name)).one()
        revoked = bool(token.revoked)
        db.session.remove()
        return revoked


def test_starting_a_disaster_run_asks_first_and_a_no_starts_nothing(page: Any, live_server: LiveServer) -> None:
    sign_in(page, "operator@lifeboat.example")
    start = page.get_by_role("button", name=re.compile(r"^Start: queue"))
    for _ in range(30):  # VMs busy with a backup or restore (the worker is real) are left out of a plan
        page.goto("/operations/disaster")
        page.get_by_role("button", name="Plan").click()
        page.wait_for_load_state()
        if start.count():
            break
        page.wait_for_timeout(1000)
    expect(start).to_be_visible()
    assert _unguarded(page) == []
    before = _disaster_runs(live_server)
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    start.click()
    expect(start).to_be_visible()  # still on the plan: nothing was posted
    assert asked and "queue" in asked[0] and "restore" in asked[0]
    assert _disaster_runs(live_server) == before  # a real run would queue restores for every VM: not here


def test_revoking_a_token_asks_first(page: Any, live_server: LiveServer) -> None:
    sign_in(page, "admin@acme.example")
    page.goto("/tokens")
    page.locator("#new-token").get_by_label("Name").fill("confirm-walk")
    page.locator("#new-token").get_by_label("backups:read").check()
    page.get_by_role("button", name="Create token").click()
    row = page.locator("tr", has_text="confirm-walk")
    revoke = row.get_by_role("button", name="Revoke")
    expect(revoke).to_be_visible()
    assert _unguarded(page) == []

    page.once("dialog", lambda dialog: dialog.dismiss())
    revoke.click()
    expect(row).to_contain_text("active")
    assert not _token_revoked(live_server, "confirm-walk")

    page.once("dialog", lambda dialog: dialog.accept())
    revoke.click()
    expect(page.locator("tr", has_text="confirm-walk")).to_contain_text("revoked")
    assert _token_revoked(live_server, "confirm-walk")


def test_deleting_a_vm_offers_undo_in_place(page: Any) -> None:
    sign_in(page, "admin@acme.example")  # a staging VM: its customer admin may delete it (and undo)
    page.get_by_role("link", name="staging-api", exact=True).click()
    page.wait_for_url(re.compile(r"/vms/\d+$"))
    controls = page.locator("main > .deletion-controls")
    controls.get_by_role("button", name="Delete").click()  # no dialog: Undo is the safety
    expect(controls.get_by_role("status")).to_contain_text("will be deleted on")
    controls.get_by_role("button", name="Undo").click()
    expect(controls.get_by_role("status")).to_contain_text("Restored")
    expect(controls.get_by_role("button", name="Delete")).to_be_visible()


@pytest.mark.parametrize("email", ["admin@acme.example", "operator@lifeboat.example"])
def test_no_destructive_button_goes_without_a_question_or_an_undo(page: Any, email: str) -> None:
    sign_in(page, email)
    paths = ["/", "/tokens", "/users", "/recycle", "/restores", "/notifications/preferences"]
    if email.startswith("operator"):
        paths += ["/operations/disaster", "/operations/drills", "/manage/incidents", "/manage/organisations"]
    page.get_by_role("link", name="web-1", exact=True).first.click()
    page.wait_for_url(re.compile(r"/vms/\d+$"))
    paths.append(page.url)
    found: list[str] = []
    for path in paths:
        page.goto(path)
        found += _unguarded(page)
    assert found == []
