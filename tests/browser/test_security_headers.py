"""The pages under the Content-Security-Policy in a real browser: the vendored htmx loads, adds no inline style,
and nothing is blocked. The ``page`` fixture fails any browser test on a violation Chromium reports, so every htmx
swap the other browser tests make (policy form, delete and undo, refusals) runs under the policy too."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import sign_in

pytestmark = pytest.mark.slow

PAGES = ["/", "/restores", "/recycle", "/users", "/manage/tiers", "/manage/customers", "/manage/compliance",
         "/manage/coverage", "/manage/organisations", "/manage/syncs", "/manage/incidents", "/status", "/audit",
         "/tokens", "/notifications", "/notifications/preferences", "/operations/disaster", "/operations/drills"]


def test_every_page_loads_htmx_under_the_policy_without_a_violation(page: Any) -> None:
    sign_in(page, "operator@lifeboat.example")
    page.get_by_role("link", name="web-1", exact=True).first.click()  # a VM page: policy form, chart, points
    pages = [page.url, *PAGES]
    for path in pages:
        answer = page.goto(path)
        assert answer is not None and answer.status == 200, path
        headers = answer.headers
        assert "script-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
        assert page.evaluate("typeof window.htmx") == "object", path  # the vendored script ran
        assert page.evaluate("document.querySelectorAll('style').length") == 0, path  # htmx injected no style
