"""Numbered pages of a list, for every page that lists: one ``page`` argument rule and one way to count."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, request
from sqlalchemy import Select, func, select

from ..extensions import db


def page_arg() -> int:
    """The ``page`` query argument (1-based); nonsense is a 400, not a silent first page."""
    raw = request.args.get("page", "1")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not 1 <= int(raw) <= 100_000:
        abort(400, "page must be a whole number from 1")
    return int(raw)


def paginate(query: Select[Any], page: int) -> tuple[list[Any], int]:
    """One page of ``query`` and the number of pages (at least 1)."""
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    limit, offset = window(page)
    rows = list(db.session.scalars(query.limit(limit).offset(offset)).unique())
    return rows, page_count(total)


def page_count(total: int) -> int:
    """How many pages ``total`` rows make (at least 1)."""
    size = int(current_app.config["PAGE_SIZE"])
    return max(1, -(-total // size))


def window(page: int) -> tuple[int, int]:
    """The limit and offset of ``page``."""
    size = int(current_app.config["PAGE_SIZE"])
    return size, (page - 1) * size
