"""Cursor pagination for list endpoints: ``{"items": [...], "next": CURSOR-or-null}``.

The cursor is the sort key of the last item, opaque to clients (URL-safe base64 of JSON). Keyset paging stays
correct while rows are added and costs the same on page 1000 as on page 1, unlike offsets.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import marshmallow as ma
from sqlalchemy import Select, and_, or_

from ..extensions import db
from .errors import api_error

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class PageArgs(ma.Schema):
    cursor = ma.fields.String(load_default=None, validate=ma.validate.Length(max=500),
                              metadata={"description": "the `next` value of the previous page"})
    limit = ma.fields.Integer(load_default=DEFAULT_LIMIT, validate=ma.validate.Range(min=1),
                              metadata={"description": f"items per page (at most {MAX_LIMIT})"})


def page_schema(item: type[ma.Schema] | ma.Schema, name: str) -> type[ma.Schema]:
    """A ``{"items": [...], "next": ...}`` schema around ``item``."""
    return ma.Schema.from_dict({
        "items": ma.fields.List(ma.fields.Nested(item), required=True),
        "next": ma.fields.String(required=True, allow_none=True,
                                 metadata={"description": "cursor of the next page; null on the last page"}),
    }, name=name)


def encode(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode(cursor: str, kinds: Sequence[type]) -> list[Any]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(kinds):
            raise ValueError("shape")
        values: list[Any] = []
        for kind, value in zip(kinds, raw, strict=True):
            if kind is datetime:
                values.append(datetime.fromisoformat(value))
            elif kind is int:
                if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**31 - 1:
                    raise ValueError("int")
                values.append(value)
            else:
                values.append(str(value))
        return values
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        api_error(400, "the cursor is not valid; start again without one", "bad_cursor")


def paginate(query: Select[Any], columns: Sequence[Any], args: dict[str, Any], *, descending: bool = False,
             key: Callable[[Any], Sequence[Any]] | None = None) -> tuple[list[Any], str | None]:
    """One page of ``query`` ordered by ``columns`` (the last one unique, e.g. the id), and the next cursor."""
    limit = min(int(args.get("limit") or DEFAULT_LIMIT), MAX_LIMIT)
    kinds = [_kind(c) for c in columns]
    if args.get("cursor"):
        after = decode(args["cursor"], kinds)
        query = query.where(_after(columns, after, descending))
    order = [c.desc() if descending else c.asc() for c in columns]
    rows = list(db.session.scalars(query.order_by(*order).limit(limit + 1)).unique())
    more = len(rows) > limit
    rows = rows[:limit]
    if not more or not rows:
        return rows, None
    last = rows[-1]
    values = key(last) if key else [getattr(last, c.key) for c in columns]
    return rows, encode(values)


def _kind(column: Any) -> type:
    python = column.type.python_type
    return datetime if python is datetime else (int if python is int else str)


def _after(columns: Sequence[Any], values: Sequence[Any], descending: bool) -> Any:
    """Rows strictly after ``values`` in the (lexicographic) order of ``columns``."""
    clauses = []
    for i, column in enumerate(columns):
        equal = [columns[j] == values[j] for j in range(i)]
        beyond = column < values[i] if descending else column > values[i]
        clauses.append(and_(*equal, beyond))
    return or_(*clauses)
