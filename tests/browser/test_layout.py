"""Every page, as every demo role, on a phone (390 px) and a laptop (1366 px): no horizontal overflow, every
navigation entry reachable, no serious or critical accessibility violation (axe-core, vendored in
tests/browser/vendor), and, through the ``page`` fixture, no Content-Security-Policy violation.

One browser context per role: each page is visited once per width, and axe-core runs on each visit. axe is
injected as an init script (the DevTools protocol's, exempt from the page's CSP, which allows no inline script),
so the page under test keeps its real policy and any violation it causes is still reported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from .conftest import LiveServer, sign_in

pytestmark = pytest.mark.slow

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
ROLES = ("admin@acme.example", "dev@acme.example", "admin@globex.example", "manager@lifeboat.example",
         "operator@lifeboat.example")
WIDTHS = ((390, 844), (1366, 900))
SERIOUS = ("serious", "critical")


#: the outermost elements reaching past the window's right edge, outside any box that scrolls on its own
WIDEST = """() => [...document.querySelectorAll('body *')].filter(e => {
    if (e.getBoundingClientRect().right <= window.innerWidth + 1) return false;
    for (let a = e.parentElement; a; a = a.parentElement) {
      if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(a).overflowX)) return false;
      if (a.getBoundingClientRect().right > window.innerWidth + 1) return false;
    }
    return true;
  }).slice(0, 3).map(e => e.tagName + '.' + e.className)"""


def overflow(page: Any) -> int:
    """How many CSS pixels the document is wider than the window (0: no horizontal scrolling)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def axe_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the current page, one line each (rule, impact, where)."""
    found = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})); }"
    )
    return [f"{v['id']} ({v['impact']}) at {v['nodes']}" for v in found if v["impact"] in SERIOUS]


def nav_links(page: Any) -> list[str]:
    return list(page.locator("#site-menu a").evaluate_all("links => links.map(a => a.getAttribute('href'))"))


def unreachable_nav_entries(page: Any) -> list[str]:
    """Open the menu (when it is folded) and each group in turn; every link must then be visible on screen."""
    missing: list[str] = []
    toggle = page.locator(".menu-toggle")
    if toggle.is_visible():
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
    width = page.evaluate("window.innerWidth")

    def check(link: Any) -> None:
        box = link.bounding_box()
        if not link.is_visible() or box is None or box["x"] < 0 or box["x"] + box["width"] > width + 0.5:
            missing.append(f"{link.inner_text()!r} ({link.get_attribute('href')}), box {box}")

    for link in page.locator("#site-menu > ul.primary a").all():
        check(link)
    for group in page.locator("#site-menu details.nav-group").all():
        group.locator("summary").click()
        expect(group).to_have_attribute("open", "")
        for link in group.locator("a").all():
            check(link)
        group.locator("summary").click()  # closed again, so the next group's list is not under it
    sign_out = page.get_by_role("button", name="Sign out")
    if not sign_out.is_visible():
        missing.append("Sign out")
    return missing


def pages_of(page: Any) -> list[str]:
    """The role's pages: its navigation, then one of each detail page reachable from it (VM, files, restore)."""
    found = [href for href in nav_links(page) if href and href.startswith("/")]
    page.goto("/")
    vm = page.locator("table.vms tbody a[href^='/vms/']").first
    if vm.count():
        vm_href = vm.get_attribute("href")
        found.append(vm_href)
        page.goto(vm_href)
        browse = page.get_by_role("link", name="Browse files").first
        if browse.count():
            found.append(browse.get_attribute("href"))
    page.goto("/restores")
    restore = page.locator("main table a[href^='/restores/']").first
    if restore.count():
        found.append(restore.get_attribute("href"))
    seen: list[str] = []
    for href in found:
        path = urlsplit(href).path
        if path not in seen:
            seen.append(path)
    return seen


@pytest.mark.parametrize("email", ROLES)
def test_every_page_fits_both_widths_with_reachable_nav_and_no_serious_axe_violation(
    page: Any, live_server: LiveServer, outage: dict[str, int], email: str
) -> None:
    """During an outage (``outage``: a running and a queued restore), so the dashboard's banner and restore
    badges and a restore's page are part of the sweep."""
    page.context.add_init_script(path=str(AXE))
    sign_in(page, email)
    paths = pages_of(page)
    assert len(paths) >= 6, paths
    failures: list[str] = []
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        page.goto("/")
        failures += [f"{width}px nav: {entry} not reachable" for entry in unreachable_nav_entries(page)]
        for path in paths:
            answer = page.goto(path)
            if answer is None or answer.status != 200:
                failures.append(f"{width}px {path}: HTTP {answer.status if answer else None}")
                continue
            extra = overflow(page)
            if extra > 0:
                wide = page.evaluate(WIDEST)
                failures.append(f"{width}px {path}: {extra}px too wide ({wide})")
            failures += [f"{width}px {path}: {v}" for v in axe_violations(page)]
    assert not failures, "\n".join(failures)


def test_the_login_page_fits_and_passes_axe(page: Any) -> None:
    page.context.add_init_script(path=str(AXE))
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        page.goto("/login")
        assert overflow(page) <= 0
        assert axe_violations(page) == []


def test_the_favicon_is_served(page: Any) -> None:
    page.goto("/login")
    href = page.locator("link[rel=icon]").get_attribute("href")
    answer = page.request.get(href)
    assert answer.ok and answer.headers["content-type"].startswith("image/svg")


def test_times_are_relative_with_the_absolute_utc_time_on_hover(page: Any) -> None:
    sign_in(page, "admin@acme.example")
    times = page.locator("main table time")
    assert times.count() > 0
    for element in times.all()[:10]:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", element.get_attribute("title") or "")
        assert re.search(r"ago|just now|^in |\d{4}-\d\d-\d\d", element.inner_text())
    sizes = page.locator("table.vms tbody td").all_inner_texts()
    assert not [s for s in sizes if re.fullmatch(r"\d{4,} B", s.strip())], sizes  # never "838890 B"


def test_the_chart_marks_lie_inside_its_frame_at_both_widths(page: Any) -> None:
    sign_in(page, "dev@acme.example")
    page.get_by_role("link", name="db-1", exact=True).click()
    page.wait_for_url(re.compile(r"/vms/\d+$"))
    chart = page.locator("svg.chart")
    expect(chart).to_be_visible()
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        frame = chart.locator("rect.frame").bounding_box()
        svg = chart.bounding_box()
        assert frame is not None and svg is not None
        assert svg["x"] >= 0 and svg["x"] + svg["width"] <= width  # the chart itself fits the window
        marks = chart.locator(".mark").all()
        assert len(marks) >= 3  # at least two points: bars, dots and the line
        scale = svg["width"] / 640  # the viewBox's width
        for mark in marks:
            box = mark.bounding_box()
            assert box is not None
            # bars lie inside; a dot's radius (3) and the line's stroke may reach over the edge, no more
            slack = 0.5 if mark.evaluate("m => m.tagName") == "rect" else 3.5 * scale + 0.5
            assert frame["x"] - slack <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"] + slack
            assert frame["y"] - slack <= box["y"] and box["y"] + box["height"] <= frame["y"] + frame["height"] + slack
        labels = chart.locator("text.x-label").evaluate_all("els => els.map(e => e.textContent)")
        assert labels and all(re.fullmatch(r"\d{4}-\d\d-\d\d|\d\d-\d\d \d\d:\d\d(:\d\d)?", t) for t in labels), labels
