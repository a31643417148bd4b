"""API fixtures: the portal's app and world, plus bearer tokens for any user and set of scopes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from portal.models import User
from portal.services import tokens

Bearer = Callable[..., dict[str, str]]


def make_token(user: User, scopes: list[str] | tuple[str, ...] = tokens.SCOPES, *, name: str = "test",
               vm_ids: list[int] | None = None, expires_at: datetime | None = None) -> str:
    return tokens.create_token(user, list(scopes), name=name, vm_ids=vm_ids, expires_at=expires_at)[1]


@pytest.fixture
def bearer(app) -> Bearer:
    """``bearer(user, scopes=..., vm_ids=...)`` -> an Authorization header with a new token."""

    def make(user: User, scopes: list[str] | tuple[str, ...] = tokens.SCOPES, **options: object) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(user, scopes, **options)}"}  # type: ignore[arg-type]

    return make
