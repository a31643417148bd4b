"""After Delete or Undo the page tells the truth without a reload (issue 11, item 6): the recycle bin's count and
row, a backup point's Browse / Full restore, the VM page's warning; and an undo is followed by a "deletion
cancelled" notification while the deletion's own one is marked read.

Globex's dev-box (development, so its admin may delete it) and shop-1 are used only here; every test undoes what
it deleted, so the other browser tests see the demo data as seeded.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from .conftest import LiveServer, sign_in

pytestmark = pytest.mark.slow


def _point_ids(live_server: LiveServer, org_slug: str, vm_name: str) -> list[int]:
    """The VM's backup point ids, newest first (the VM page's order)."""
    from portal.extensions import db
    from portal.models import VM, BackupPoint, Organisation

    with live_server.app.app_context():
        ids = list(db.session.scalars(
            select(BackupPoint.id).join(VM).join(Organisation)
            .where(Organisation.slug == org_slug, VM.name == vm_name).order_by(BackupPoint.created_at.desc())
        ))
        db.session.remove()
        return ids


def _portal_notifications(live_server: LiveServer, email: str, kind: str) -> list[tuple[str, bool]]:
    """(subject, read) of the user's portal notifications of ``kind``, oldest first, from the database."""
    from portal.extensions import db
    from portal.models import Notification, User

    with live_server.app.app_context():
        user = db.session.scalars(select(User).where(User.email == email)).one()
        rows = [(n.subject, n.read_at is not None) for n in db.session.scalars(
            select(Notification).where(Notification.user_id == user.id, Notification.channel == "portal",
                                       Notification.kind == kind).order_by(Notification.id))]
        db.session.remove()
        return rows


def _mark_document(page: Any) -> None:
    page.evaluate("window.__lifeboatMarker = 'still here'")


def _document_was_kept(page: Any) -> bool:
    return bool(page.evaluate("window.__lifeboatMarker === 'still here'"))


def _csrf(page: Any) -> str:
    return str(page.locator("meta[name=csrf-token]").get_attribute("content"))


def _open_vm(page: Any, name: str) -> None:
    page.get_by_role("link", name=name, exact=True).click()
    page.wait_for_url(re.compile(r"/vms/\d+$"))


def test_undo_in_the_bin_updates_its_count_and_row_in_place_and_notifies(page: Any, live_server: LiveServer) -> None:
    point_id = _point_ids(live_server, "globex", "dev-box")[-1]
    sign_in(page, "admin@globex.example")
    asked = page.request.post(f"/backups/{point_id}/delete", form={"csrf_token": _csrf(page), "next": "/recycle"})
    assert asked.ok, asked.status
    [(scheduled, read)] = _portal_notifications(live_server, "admin@globex.example", "deletion.scheduled")
    assert "will be deleted on" in scheduled and not read

    page.goto("/recycle")
    count = page.locator("#recycle-count")
    before = int(count.inner_text())
    assert before >= 1
    row = page.locator(f"#recycle-backup-{point_id}")
    expect(row).to_contain_text("backup of dev-box")
    _mark_document(page)
    row.get_by_role("button", name="Undo").click()

    expect(count).to_have_text(str(before - 1))  # the heading's count, without a reload
    expect(row).to_contain_text("kept: no longer scheduled for deletion")
    expect(row.get_by_role("status")).to_contain_text("Restored: the backup of dev-box")
    expect(row.get_by_role("button", name="Undo")).to_have_count(0)
    expect(row.get_by_role("button", name="Delete")).to_be_visible()
    assert _document_was_kept(page), "Undo was a full page load, not an htmx swap"

    # the deletion's notification is no longer news; a "cancelled" one follows it through the same path
    assert _portal_notifications(live_server, "admin@globex.example", "deletion.scheduled") == [(scheduled, True)]
    [(cancelled, read)] = _portal_notifications(live_server, "admin@globex.example", "deletion.cancelled")
    assert cancelled.startswith("Backup of dev-box") and "will not be deleted" in cancelled and not read
    page.get_by_role("link", name=re.compile(r"^Notifications")).click()
    expect(page.locator("table.notifications tr.unread")).to_contain_text("will not be deleted")

    page.goto("/recycle")
    expect(page.locator(f"#recycle-backup-{point_id}")).to_have_count(0)
    expect(page.locator("#recycle-count")).to_have_text(str(before - 1))


def test_a_point_being_deleted_offers_no_browse_or_restore_and_they_refuse(page: Any, live_server: LiveServer) -> None:
    point_id = _point_ids(live_server, "globex", "shop-1")[0]
    sign_in(page, "admin@globex.example")
    _open_vm(page, "shop-1")
    vm_url = page.url
    row = page.locator("table.points tbody tr", has=page.locator(f"#deletion-backup-{point_id}"))
    expect(row.get_by_role("link", name="Browse files")).to_be_visible()
    browse_url = row.get_by_role("link", name="Browse files").get_attribute("href")
    _mark_document(page)
    row.get_by_role("button", name="Delete").click()

    expect(row.get_by_role("status")).to_contain_text("will be deleted on")
    expect(row.get_by_role("link", name="Browse files")).to_have_count(0)  # gone at once, not on the next load
    expect(row.get_by_role("button", name="Full restore")).to_have_count(0)
    expect(row).to_contain_text("scheduled for deletion")
    assert _document_was_kept(page)

    # and the routes themselves refuse, with the reason (a stale tab or a bookmark still has the links)
    browse = page.request.get(browse_url)
    assert browse.status == 409 and "scheduled for deletion on" in browse.text() and "undo" in browse.text()
    full = page.request.post(f"{vm_url}/backups/{point_id}/restore", form={"csrf_token": _csrf(page), "kind": "full"})
    assert full.status == 409 and "scheduled for deletion on" in full.text()

    row.get_by_role("button", name="Undo").click()
    expect(row.get_by_role("link", name="Browse files")).to_be_visible()
    expect(row.get_by_role("button", name="Full restore")).to_be_visible()
    assert page.request.get(browse_url).ok


def test_the_vm_page_warning_follows_delete_and_undo(page: Any) -> None:
    sign_in(page, "admin@globex.example")
    _open_vm(page, "dev-box")
    warning = page.locator("#vm-deletion-warning")
    controls = page.locator("h1 ~ .deletion-controls").first
    expect(warning).to_have_text("")
    _mark_document(page)
    controls.get_by_role("button", name="Delete").click()
    expect(warning).to_contain_text("This VM and all its backups will be deleted on")
    page.locator("h1 ~ .deletion-controls").first.get_by_role("button", name="Undo").click()
    expect(warning).to_have_text("")
    expect(page.locator("h1 ~ .deletion-controls").first.get_by_role("button", name="Delete")).to_be_visible()
    assert _document_was_kept(page)
