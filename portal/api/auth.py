"""Bearer-token authentication and scopes for API views.

Only the ``Authorization: Bearer`` header authenticates: a portal session cookie does not, so a page open in
a browser can never be used to call the API on the user's behalf (and CSRF does not apply to the API).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, g, request

from ..models import VM, ApiToken, User
from ..services import tokens
from .errors import api_error

F = TypeVar("F", bound=Callable[..., Any])
CHECKED = "lifeboat.api_token"


def bearer_secret() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def authenticate() -> ApiToken:
    """Set ``g.api_user`` and ``g.api_token`` from the request's bearer token, or stop with a 401."""
    secret = bearer_secret()
    if secret is None:
        api_error(401, "send a bearer token: Authorization: Bearer TOKEN", "unauthorized")
    try:
        token = tokens.authenticate(secret, request.remote_addr or "")
    except tokens.TokenRejected as exc:
        api_error(401, str(exc), exc.code)
    g.api_token = token
    g.api_user = token.user
    return token


RESTRICTED_MESSAGE = ("this token is restricted to some VMs; this route covers a whole organisation (or more), "
                      "so it needs a token without a VM restriction")


def require_scope(*scopes: str, organisation_wide: bool = False) -> Callable[[F], F]:
    """Let the view run only for a valid bearer token holding every scope in ``scopes``.

    401 for a missing, invalid, expired or revoked token; 403 (``insufficient_scope``) for a missing scope.
    ``organisation_wide``: the route's answer or effect is not about listed VMs (the audit log, tiers,
    inventory), so a token restricted to some VMs gets 403 (``forbidden``) rather than reach past its VMs.
    Roles and tenancy are still checked by the view, through the same services as the pages.
    """
    unknown = [s for s in scopes if s not in tokens.SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}")

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check(scopes, organisation_wide=organisation_wide)
            return view(*args, **kwargs)

        wrapper.required_scopes = scopes  # type: ignore[attr-defined]
        wrapper.organisation_wide = organisation_wide  # type: ignore[attr-defined]
        # what the OpenAPI document says about the operation (flask-smorest merges ``_apidoc``)
        apidoc = dict(getattr(wrapper, "_apidoc", {}))
        manual = dict(apidoc.get("manual_doc", {}))
        manual["security"] = [{"bearer": []}]
        manual["x-scopes"] = list(scopes)
        if organisation_wide:
            manual["x-organisation-wide"] = True  # 403 for a token restricted to some VMs
        apidoc["manual_doc"] = manual
        wrapper._apidoc = apidoc  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorator


def check(scopes: tuple[str, ...], *, organisation_wide: bool = False) -> ApiToken:
    """Authenticate and check ``scopes`` (and, for an organisation-wide route, that the token has no VM
    restriction) once per request (the before-request hook usually got there first)."""
    checked = request.environ.get(CHECKED)  # per request (``g`` can outlive one when tests push an app context)
    if checked is not None:
        return checked  # type: ignore[no-any-return]
    token = authenticate()
    missing = [s for s in scopes if not token.has_scope(s)]
    if missing:
        api_error(403, f"this token lacks the scope {', '.join(missing)}", "insufficient_scope")
    if organisation_wide and token.vm_ids is not None:
        api_error(403, RESTRICTED_MESSAGE, "forbidden")
    request.environ[CHECKED] = token
    return token


def check_before_request() -> None:
    """Check a view's token and scopes before anything else runs, so that a request without a valid token is
    a 401 even when its input is invalid too, wherever ``require_scope`` sits among the view's decorators."""
    if request.endpoint is None:
        return
    view = current_app.view_functions.get(request.endpoint)
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        method = request.method.lower()
        view = getattr(view_class, method, None) or (getattr(view_class, "get", None) if method == "head" else None)
    scopes = getattr(view, "required_scopes", None)
    if scopes is not None:
        check(tuple(scopes), organisation_wide=getattr(view, "organisation_wide", False))


def current_user() -> User:
    return cast(User, g.api_user)


def current_token() -> ApiToken:
    return cast(ApiToken, g.api_token)


def check_vm(vm: VM | int) -> None:
    """A VM outside the token's VM restriction is answered like one that does not exist (404)."""
    vm_id = vm if isinstance(vm, int) else vm.id
    if not current_token().allows_vm(vm_id):
        api_error(404, "not found")
