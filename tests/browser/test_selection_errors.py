"""A refused selection on the browse page (issue 11, item 11): the page comes back with the message and the
selection as it was, and the selection form's CSRF token never lands in a URL.

Read-only on the demo data: nothing here is restored or put back (acme's web-1, browsed as its admin).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import sign_in
from .test_restores import _browse_first_backup, _tar_members, tick_hostname

pytestmark = pytest.mark.slow


def _urls_seen(page: Any) -> list[str]:
    """Every URL the page requests from now on (navigations, htmx, downloads)."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    return seen


def test_downloading_nothing_says_so_on_the_page_and_keeps_the_token_out_of_urls(page: Any) -> None:
    sign_in(page, "admin@acme.example")
    _browse_first_backup(page, "web-1")
    seen = _urls_seen(page)
    page.get_by_role("button", name="Download .tar.gz").click()

    expect(page.locator("#selection-error")).to_have_text(
        "Nothing is selected: tick the files or folders to download first.")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Files in web-1")  # the page, not a bare 400
    expect(page.get_by_label("root", exact=True)).to_be_visible()  # with its tree (the disks), ready to tick
    assert seen and not [url for url in seen if "csrf_token" in url], seen
    assert "csrf_token" not in page.url and "?" not in page.url


def test_a_mistyped_vm_name_when_putting_back_keeps_the_selection(page: Any) -> None:
    partition = tick_hostname(page, "web-1")
    partition.get_by_label("srv", exact=True).check()
    seen = _urls_seen(page)
    page.get_by_text("Put the selection back into web-1's disk").click()
    page.get_by_label("Where").fill("/p1/restored")
    page.get_by_label("Type the VM's name").fill("web-2")
    page.get_by_role("button", name="Put back into the disk (as a job)").click()

    expect(page.locator("#selection-error")).to_contain_text("type the VM's name (web-1) to confirm")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Files in web-1")
    # the selection as it was: the folders holding it opened again, its entries ticked, the rest not
    expect(page.get_by_label("hostname", exact=True)).to_be_checked()
    expect(page.get_by_label("srv", exact=True)).to_be_checked()
    expect(page.get_by_label("motd", exact=True)).not_to_be_checked()
    expect(page.get_by_label("Where")).to_have_value("/p1/restored")  # and the form as it was
    expect(page.get_by_label("Type the VM's name")).to_be_visible()  # its section open for another try
    assert not [url for url in seen if "csrf_token" in url], seen

    with page.expect_download() as download:  # the kept selection is a working selection
        page.get_by_role("button", name="Download .tar.gz").click()
    names = set(_tar_members(Path(download.value.path()).read_bytes()))
    assert "hostname" in names and any(name.startswith("srv/") for name in names), names
