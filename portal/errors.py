"""The services' one error model: every refusal is a ``DomainError`` carrying its HTTP status, a stable code
for the API and a message for people; each shell turns it into its own answer in one place: the pages into an
error page (``web/errors.py``), the API into ``{"error": CODE, "message": TEXT}`` (``api/errors.py``) and the
CLI into one line and exit code 2 (``cli.with_app``). Services never call ``abort()`` or build responses.

Views still catch a refusal where they re-render a form with the message next to the fields; everything else
reaches the shell's handler, which also rolls back the request's unfinished transaction.
"""

from __future__ import annotations

from typing import Any, ClassVar

#: the API's code for a status, when an error names none of its own
STATUS_CODES = {
    400: "bad_request", 403: "forbidden", 404: "not_found", 409: "conflict", 413: "too_large",
    422: "unprocessable",
}


class DomainError(Exception):
    """A request the rules refuse. Subclasses set ``status`` and ``code``; ``errors`` (field -> message) is for
    forms and the API's ``errors``; ``extra()`` adds fields to the API's answer."""

    status: int = 422
    code: ClassVar[str | None] = None
    errors: dict[str, str] | None = None

    @property
    def api_code(self) -> str:
        return self.code or STATUS_CODES.get(self.status, "error")

    def extra(self) -> dict[str, Any]:
        return {}


class NotFound(DomainError):
    """Nothing the actor may see has that id (the same answer as for a thing that does not exist)."""

    status = 404
    code = "not_found"

    def __init__(self, message: str = "not found") -> None:
        super().__init__(message)
