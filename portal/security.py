"""What every request and answer goes through: hostile input refused up front, security headers on every answer.

Input (``check_request``, before any view):

- **text**: no NUL anywhere (query, form, JSON strings) and no other control characters (C0 but tab, line feed
  and carriage return; DEL; C1), except in the fields that name files inside a backup (``path``, ``paths``,
  ``dest``, ``q``), whose names may hold any byte but NUL. PostgreSQL cannot store NUL at all (a 500 otherwise),
  and control characters in names and emails only ever serve to deceive whoever reads them. (Fields that hold
  one line, such as names and titles, are also refused line breaks by the services that take them.)
- **JSON bodies**: parsed once here; nested too deeply (Python's parser recurses) or a number with more digits
  than Python converts (4300) is a 400 here rather than a 500 inside a view or a library.
- **ids in URLs**: ``<int:...>`` in page routes matches 1 to 2**31 - 1 (database ids are 32-bit); larger is a 404
  at routing, not an "integer out of range" from PostgreSQL.

Answers (``add_headers``): a Content-Security-Policy that allows only this site's own scripts, styles and forms and
no framing (the pages use the vendored htmx with ``allowEval`` and inline styles off, and no inline script or
style), ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, abort, request
from werkzeug.routing import IntegerConverter

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
#: fields that hold paths of files inside a backup: any character but NUL
FILE_NAME_FIELDS = frozenset({"path", "paths", "dest", "q"})
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
NUL = "\x00"
NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: the largest id a route's ``<int:...>`` accepts (PostgreSQL ``integer``)
MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """A database id in a URL, 1 to 2**31 - 1: ``<int:name>`` in page routes, ``<id:name>`` in the API."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)


def init_app(app: Flask) -> None:
    """Install the checks and headers; call before any blueprint is registered (routes bind converters then)."""
    app.url_map.converters["int"] = IdConverter
    app.before_request(check_request)
    app.after_request(add_headers)


def add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def bad_text(name: str, value: str) -> str | None:
    """Why ``value`` (of field ``name``) is refused, or None."""
    if NUL in value:
        return f"{name} contains a NUL character"
    if name not in FILE_NAME_FIELDS and CONTROL.search(value):
        return f"{name} contains a control character"
    return None


def check_request() -> None:
    """Refuse (400) hostile input before any view sees it; see the module docstring."""
    for source in (request.args, request.form):
        for name, value in source.items(multi=True):
            reason = bad_text(name, name) or bad_text(name, value)
            if reason:
                abort(400, description=f"{reason}: text fields may not hold control characters")
    if request.is_json and request.content_length:
        reason = _bad_json(request.get_data(cache=True))
        if reason:
            abort(400, description=reason)


def _bad_json(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return None  # malformed: the view (or webargs) answers it as it always has
    except RecursionError:
        return "the JSON body is nested too deeply"
    except (ValueError, UnicodeDecodeError):  # an integer of more than 4300 digits; bytes that are not UTF-8
        return "the JSON body cannot be read (not UTF-8, or a number of more than 4300 digits)"
    return _bad_strings(document, "the JSON body")


def _bad_strings(document: Any, where: str) -> str | None:
    """The first string (key or value) in ``document`` that holds NUL or a control character, iteratively."""
    todo: list[tuple[str, Any]] = [("", document)]
    while todo:
        name, value = todo.pop()
        if isinstance(value, str):
            reason = bad_text(name or "a value", value)
            if reason:
                return f"{where}: {reason}"
        elif isinstance(value, dict):
            for key, item in value.items():
                reason = bad_text("a key", key)
                if reason:
                    return f"{where}: {reason}"
                todo.append((key, item))
        elif isinstance(value, list):
            todo.extend((name, item) for item in value)
    return None


def one_line(text: str) -> bool:
    """True when ``text`` holds no control character at all, line breaks and tabs included (names, titles)."""
    return not NOT_ONE_LINE.search(text)


def same_site_path(target: str | None) -> str | None:
    """``target`` when it is a path on this site to redirect to, else None.

    Refused: other hosts (``//host``, ``https://host``), backslashes (browsers read ``/\\host`` as ``//host``) and
    control characters (a CR/LF would split the Location header: a 500 before, header injection at worst).
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if CONTROL.search(target) or any(c in target for c in "\r\n\t") or urlsplit(target).netloc:
        return None
    return target
