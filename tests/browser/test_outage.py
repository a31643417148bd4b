"""The dashboard during an outage (issue 15): on the first screen, even on a phone, which VMs are being restored,
in which order and by when: a running and a queued restore next to their VMs' backup state, and a banner over
the customer's own restores.

The two restores are rows as the portal writes them (a running one 42% through, a queued one behind it), not
enqueued: a real worker would finish a 48 MiB demo restore before the page could be looked at. The ``outage``
fixture (conftest.py) cancels both at the end, so the queue the other tests see is as it was.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import sign_in

pytestmark = pytest.mark.slow


def test_the_dashboard_shows_a_running_and_a_queued_restore_on_a_phone(page: Any, outage: dict[str, int]) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, "admin@acme.example")
    banner = page.locator("#restore-summary")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(re.compile(r"Your restores: 1 running, 1 queued"))
    running = page.locator("table.vms tr", has=page.get_by_role("link", name="web-1", exact=True))
    queued = page.locator("table.vms tr", has=page.get_by_role("link", name="db-1", exact=True))
    expect(running.locator("td.restore-state")).to_contain_text("running 42%")
    expect(queued.locator("td.restore-state")).to_contain_text(re.compile(r"queued #\d+"))
    expect(running.locator("td.state .badge")).to_be_visible()  # the backup state beside it
    # the banner names them in the order they will be back, on the first screen of a phone
    order = banner.locator("ol.restore-order li")
    expect(order.nth(0)).to_contain_text("web-1")
    expect(order.nth(0)).to_contain_text("running 42%")
    expect(order.nth(1)).to_contain_text("db-1")
    expect(order.nth(1)).to_contain_text(re.compile(r"queued #\d+"))
    for element in (order.nth(0), order.nth(1)):
        box = element.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844
    for cell in (running.locator("td.restore-state .badge"), queued.locator("td.restore-state .badge")):
        box = cell.bounding_box()  # and beside each VM, within the width (no sideways scrolling)
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    # each links to its restore
    queued.locator("td.restore-state a").click()
    page.wait_for_url(re.compile(rf"/restores/{outage['db-1']}$"))
    expect(page.locator(".queue-position")).to_contain_text("Queue position")


def test_another_tenant_sees_none_of_it(page: Any, outage: dict[str, int]) -> None:
    sign_in(page, "admin@globex.example")
    expect(page.locator("#restore-summary")).to_have_count(0)
    expect(page.locator("td.restore-state .badge")).to_have_count(0)
