"""JSON errors for everything under ``/api/v1``: ``{"error": CODE, "message": TEXT}`` with the right status.

Flask picks one handler per exception class for the whole app, and routing errors (404, 405) happen before
any blueprint is known, so the API's handler is installed app-wide and answers JSON only for API paths,
passing everything else to the pages' handler (HTML error pages).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import marshmallow as ma
from flask import Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, InternalServerError

from ..errors import DomainError
from ..extensions import db

API_PREFIX = "/api/"

CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "unprocessable", 429: "rate_limited",
    500: "internal_error", 503: "unavailable",
}
MESSAGES = {
    401: "a valid bearer token is needed", 403: "not allowed", 404: "not found",
    405: "that method is not allowed here", 500: "internal error; the operators have been told",
}


class ErrorSchema(ma.Schema):
    """The body of every API error (``errors`` only for invalid fields)."""

    error = ma.fields.String(required=True, metadata={"description": "a stable machine-readable code"})
    message = ma.fields.String(required=True, metadata={"description": "what went wrong, for people"})
    errors = ma.fields.Dict(metadata={"description": "invalid fields and why"})


def is_api_request() -> bool:
    return request.path.startswith(API_PREFIX)


def api_error(status: int, message: str, code: str | None = None, **extra: Any) -> NoReturn:
    """Stop the request with a JSON error (``code`` defaults to the status's name)."""
    from flask_smorest import abort

    abort(status, message=message, error=code or CODES.get(status, "error"), **extra)
    raise AssertionError("unreachable")  # pragma: no cover


def error_body(error: HTTPException) -> tuple[dict[str, Any], int, dict[str, str]]:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    body: dict[str, Any] = {"error": str(data.get("error") or CODES.get(status, "error")),
                            "message": str(data.get("message") or _message(error, status))}
    errors = data.get("errors") or data.get("messages")
    if errors:
        body["errors"] = _flatten_locations(errors)
        if not data.get("message"):
            body["message"] = "invalid input: " + "; ".join(f"{k}: {_text(v)}" for k, v in body["errors"].items())
    headers = dict(data.get("headers") or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="lifeboat"')
    if status == 405 and hasattr(error, "valid_methods") and error.valid_methods:
        headers.setdefault("Allow", ", ".join(error.valid_methods))
    return body, status, headers


def _message(error: HTTPException, status: int) -> str:
    if status in MESSAGES and status >= 500:
        return MESSAGES[status]
    description = error.description if error.description and error.description != type(error).description else ""
    return description or MESSAGES.get(status) or (error.name or "error").lower()


def _flatten_locations(errors: Any) -> dict[str, Any]:
    """webargs nests errors by location (``json``, ``query``); callers want the field names."""
    if isinstance(errors, dict) and set(errors) <= {"json", "query", "form", "files", "headers", "view_args",
                                                    "path", "querystring"}:
        flat: dict[str, Any] = {}
        for value in errors.values():
            if isinstance(value, dict):
                flat.update(value)
        return flat or dict(errors)
    return dict(errors) if isinstance(errors, dict) else {"_": errors}


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return str(value)


def install(app: Flask) -> None:
    """Answer API paths with JSON errors; keep whatever handles errors for the pages for the rest."""
    previous: Callable[[HTTPException], ResponseReturnValue] | None = (
        app.error_handler_spec.get(None, {}).get(None, {}).get(HTTPException))  # type: ignore[assignment]  # not async

    def handle(error: HTTPException) -> ResponseReturnValue:
        if is_api_request():
            if isinstance(error, InternalServerError):
                current_app.logger.error("API error on %s %s", request.method, request.path,
                                         exc_info=getattr(error, "original_exception", None))
            body, status, headers = error_body(error)
            response = jsonify(body)
            response.status_code = status
            response.headers.update(headers)
            return response
        if previous is not None:
            return previous(error)
        return error

    app.register_error_handler(HTTPException, handle)

    pages: Callable[[DomainError], ResponseReturnValue] | None = (
        app.error_handler_spec.get(None, {}).get(None, {}).get(DomainError))  # type: ignore[assignment]  # not async

    def refused(error: DomainError) -> ResponseReturnValue:
        """A service's refusal on an API path: its status, code, message, field errors and extra fields."""
        if not is_api_request() and pages is not None:
            return pages(error)
        db.session.rollback()
        body: dict[str, Any] = {"error": error.api_code, "message": str(error), **error.extra()}
        if error.errors:
            body["errors"] = error.errors
        response = jsonify(body)
        response.status_code = error.status
        return response

    app.register_error_handler(DomainError, refused)
