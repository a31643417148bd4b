"""Security headers on every answer, and templates that keep working under the Content-Security-Policy (no inline
script, style or event handler; htmx with eval and its inline indicator style off)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from portal.security import CONTENT_SECURITY_POLICY

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
EXPECTED = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def test_the_policy_allows_only_this_sites_scripts_styles_and_forms_and_no_framing() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"  # no unsafe-inline/-eval
    assert directives["frame-ancestors"] == "'none'" and directives["form-action"] == "'self'"
    assert directives["base-uri"] == "'none'"


@pytest.mark.parametrize("role", [None, "acme_admin"])
def test_every_kind_of_answer_carries_the_headers(client, auth, world, role: str | None) -> None:
    if role:
        auth.login(world[role])
    for path in ("/login", "/", "/static/lifeboat.css", "/nowhere", "/api/v1/vms", "/healthz"):
        answer = client.get(path)
        answer.close()  # a static file is streamed from an open file
        for name, value in EXPECTED.items():
            assert answer.headers.get(name) == value, (path, name, answer.headers.get(name))


def test_templates_have_no_inline_script_style_or_event_handler() -> None:
    """What the policy would block: a <script> without src, a <style> element, style="..." and on...="..." or
    hx-on attributes (htmx runs those through eval)."""
    problems = []
    for path in sorted(TEMPLATES.glob("*.html")):
        text = path.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"<style\b", r"\sstyle\s*=", r"\son[a-z]+\s*=", r"\shx-on",
                        r"javascript:", r"hx-vals\s*=\s*['\"]js:"):
            problems += [f"{path.name}: {m.group(0)!r}" for m in re.finditer(pattern, text, re.IGNORECASE)]
    assert not problems, problems


def test_htmx_is_configured_for_the_policy(client) -> None:
    page = client.get("/login").get_data(as_text=True)
    config = re.search(r'<meta name="htmx-config" content=\'([^\']*)\'', page)
    assert config is not None
    assert '"allowEval":false' in config.group(1) and '"includeIndicatorStyles":false' in config.group(1)
    assert '"allowScriptTags":false' in config.group(1)


def test_every_form_that_carries_the_csrf_token_posts() -> None:
    """A GET form (or a button with ``formmethod="get"``) would put the token into the URL: history, logs,
    Referer headers. Every form with the token posts, and none of its buttons switches to GET."""
    offenders = []
    for path in sorted(TEMPLATES.glob("*.html")):
        for form in re.findall(r"<form\b.*?</form>", path.read_text(), flags=re.S):
            if "csrf_token" not in form:
                continue
            opening = form[:form.index(">") + 1]
            if 'method="post"' not in opening or re.search(r'formmethod="(?!post")', form):
                offenders.append(f"{path.name}: {opening[:100]}")
    assert not offenders, offenders
