"""The tenant-isolation route matrix: every route of the app, as every role and as another tenant.

Each module in this package declares ``ROUTES``: endpoint -> list of ``Case``. The test walks the app's
URL map and fails for any endpoint no module declares, so a new route cannot ship without saying who may
reach it. Roles: anonymous, acme_member, acme_admin (the tenant that owns the objects), globex_admin
(another tenant), manager (account manager of acme, not of globex), operator.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ROLES = ("anonymous", "acme_member", "acme_admin", "globex_admin", "manager", "operator")


@dataclass(frozen=True)
class Case:
    method: str
    url: Callable[[dict[str, Any]], str]
    expect: dict[str, int]
    data: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    #: text that must not appear in the answer for a role (another tenant's names)
    absent: dict[str, tuple[str, ...]] = field(default_factory=dict)


def everyone(code: int, **overrides: int) -> dict[str, int]:
    return {role: overrides.get(role, code) for role in ROLES}


def signed_in(code: int, **overrides: int) -> dict[str, int]:
    return everyone(code, anonymous=302, **overrides)


def all_routes() -> dict[str, list[Case]]:
    routes: dict[str, list[Case]] = {}
    for module in pkgutil.iter_modules(__path__):
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        for endpoint, cases in getattr(loaded, "ROUTES", {}).items():
            assert endpoint not in routes, f"{endpoint} is declared twice"
            routes[endpoint] = cases
    return routes
