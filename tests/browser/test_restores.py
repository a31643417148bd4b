"""Restore flows in a real browser against the demo data, with a real worker process running the jobs:
browse a backup's files and download a selection; restore a selection as a job; a full restore followed
live to its report."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from .conftest import LiveServer, sign_in

JOB_TIMEOUT_MS = 120_000  # a restore on a busy CI machine; the page polls once a second meanwhile


def _browse_first_backup(page: Any, vm_name: str) -> None:
    page.get_by_role("link", name=vm_name, exact=True).click()
    page.wait_for_url(re.compile(r"/vms/\d+$"))
    page.get_by_role("link", name="Browse files").first.click()
    page.wait_for_url(re.compile(r"/backups/\d+/files"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Files in {vm_name}")


def _open_folder(page: Any, name: str, within: Any = None) -> Any:
    """Open a folder of the tree (loaded lazily by htmx) and return its list item."""
    item = (within or page).locator("li").filter(has=page.get_by_label(name, exact=True)).last
    item.get_by_role("button", name="open").first.click()
    expect(item.locator(".children li").first).to_be_visible()
    return item


def _tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]


def tick_hostname(page: Any, vm_name: str) -> Any:
    """Sign in as acme's admin, browse the VM's newest backup, tick /root/p1/etc/hostname; the p1 item."""
    sign_in(page, "admin@acme.example")
    _browse_first_backup(page, vm_name)
    partition = _open_folder(page, "p1", within=_open_folder(page, "root"))
    etc = _open_folder(page, "etc", within=partition)
    etc.get_by_label("hostname", exact=True).check()
    return partition


def test_browse_a_backup_and_download_a_selection(page: Any) -> None:
    tick_hostname(page, "web-1")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download .tar.gz").click()
    members = _tar_members(Path(download.value.path()).read_bytes())
    assert members == {"hostname": b"demo\n"}  # exactly the selection (named from its folder), streamed


def test_restore_a_selection_as_a_job_then_download_it(page: Any) -> None:
    sign_in(page, "admin@acme.example")
    _browse_first_backup(page, "db-1")
    partition = _open_folder(page, "p1", within=_open_folder(page, "root"))
    partition.get_by_label("etc", exact=True).check()
    page.get_by_role("button", name="Restore selection (as a job)").click()
    page.wait_for_url(re.compile(r"/restores/\d+$"))
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "done", timeout=JOB_TIMEOUT_MS)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the restored files").click()
    members = _tar_members(Path(download.value.path()).read_bytes())
    assert members["etc/hostname"] == b"demo\n" and members["etc/motd"] == b"Backed up by Lifeboat\n"


def test_a_finished_restore_shows_its_outcome_not_its_last_step(page: Any) -> None:
    """Issue 11: 4. The worker's last step was "archiving"; the page says how it ended."""
    sign_in(page, "admin@acme.example")
    _browse_first_backup(page, "web-1")
    partition = _open_folder(page, "p1", within=_open_folder(page, "root"))
    etc = _open_folder(page, "etc", within=partition)
    etc.get_by_label("motd", exact=True).check()
    page.get_by_role("button", name="Restore selection (as a job)").click()
    page.wait_for_url(re.compile(r"/restores/\d+$"))
    state = page.locator("#status [data-state]")
    expect(state).to_have_attribute("data-state", "done", timeout=JOB_TIMEOUT_MS)
    expect(state).to_have_text("finished")
    expect(page.locator("#status")).not_to_contain_text("archiving")
    restore_id = page.url.rsplit("/", 1)[1]
    page.goto("/restores")
    row = page.locator("tr").filter(has=page.locator(f'a[href="/restores/{restore_id}"]'))
    expect(row.locator("[data-state]")).to_have_text("finished")


def test_full_restore_shows_progress_and_ends_with_its_report(page: Any, live_server: LiveServer) -> None:
    sign_in(page, "admin@acme.example")
    page.get_by_role("link", name="staging-api", exact=True).click()
    page.wait_for_url(re.compile(r"/vms/\d+$"))
    page.get_by_role("button", name="Full restore").first.click()
    page.wait_for_url(re.compile(r"/restores/\d+$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Full restore of staging-api")
    expect(page.get_by_text(re.compile(r"Priority: .*(critical|high|normal|low)"))).to_be_visible()
    expect(page.locator("progress")).to_be_visible()
    _mark_document(page)
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "done", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.__lifeboatMarker === 'kept'")  # followed by htmx polling, no page reloads
    expect(page.locator("progress")).to_have_attribute("value", "1.0")
    expect(page.get_by_text("No damage: every chunk matched its hash.")).to_be_visible()
    output = page.locator("code").first.inner_text()
    restore_id = int(page.url.rsplit("/", 1)[1])
    assert Path(output).read_bytes() == _source_of(live_server, restore_id)


def _mark_document(page: Any) -> None:
    page.evaluate("window.__lifeboatMarker = 'kept'")


def _source_of(live_server: LiveServer, restore_id: int) -> bytes:
    """The bytes the restored backup point was taken from (the demo image, unchanged since its last backup)."""
    from portal.extensions import db
    from portal.models import Restore
    from storage.restore import restore

    with live_server.app.app_context():
        row = db.session.get(Restore, restore_id)
        assert row is not None
        root, repo, revision = live_server.app.config["STORAGE_ROOT"], row.vm.repository_name, row.backup_point.revision
        db.session.remove()
    out = Path(root).parent / f"expected-{restore_id}.img"
    restore(root, repo, revision, str(out), sync=False)  # the engine alone, as the reference
    try:
        return out.read_bytes()
    finally:
        out.unlink()
