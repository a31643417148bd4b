"""``login_required`` with its type kept: Flask-Login ships no type information, so its decorator would
make every page view untyped for mypy."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar, cast

import flask_login

P = ParamSpec("P")
R = TypeVar("R")


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    """Flask-Login's ``login_required``: anonymous requests go to the sign-in page."""
    return cast(Callable[P, R], flask_login.login_required(view))
