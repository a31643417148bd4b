"""What an htmx request asks for, read in one place (the pages answer a fragment instead of the whole page)."""

from __future__ import annotations

from flask import request


def is_htmx() -> bool:
    """True for a request htmx made (``HX-Request: true``): answer with the fragment it swaps in."""
    return request.headers.get("HX-Request") == "true"


def target() -> str | None:
    """The id of the element the htmx request will swap (``HX-Target``), if any."""
    return request.headers.get("HX-Target") if is_htmx() else None
