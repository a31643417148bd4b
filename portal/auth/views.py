from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from ..extensions import db, limiter
from ..security import same_site_path
from . import bp
from .guards import login_required
from .users import authenticate


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never redirect to another host (or with a CR/LF in the header) after login."""
    return same_site_path(target) or url_for("web.dashboard")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
def login() -> str | Response | tuple[str, int]:
    if request.method == "POST":
        email = request.form.get("email", "")[:254]
        password = request.form.get("password", "")[:1024]
        user = authenticate(email, password)
        if user is not None:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        flash("Wrong email or password.", "error")
        return render_template("login.html", email=email), 401
    return render_template("login.html", email="")


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Response:
    """Sign out: a new session nonce ends this session server-side (a copy of the cookie no longer works) and
    every other session of the user."""
    current_user.end_sessions()
    db.session.commit()
    logout_user()
    return redirect(url_for("auth.login"))
