"""Error pages: a clear message and the right status, never a traceback."""

from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..errors import DomainError, NotFound
from ..extensions import db


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> tuple[str, int]:
        return render_template("error.html", code=400, message="The form expired or was not sent by this "
                               "site (CSRF check failed). Reload the page and try again."), 400

    @app.errorhandler(DomainError)
    def domain_error(error: DomainError) -> tuple[str, int]:
        """A refusal no view turned into a form message: the page says why (the API answers its own paths)."""
        db.session.rollback()
        message = "Not found." if isinstance(error, NotFound) else str(error)
        return render_template("error.html", code=error.status, message=message), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        code = error.code or 500
        message = {404: "Not found.", 403: "You may not do that."}.get(code, error.description or "Error.")
        return render_template("error.html", code=code, message=message), code
