"""The application factory."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from . import config, instance
from .extensions import csrf, db, limiter, login_manager, migrate

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        template_folder=os.path.join(PROJECT, "templates"),
        static_folder=os.path.join(PROJECT, "static"),
        instance_path=instance.instance_path(),
    )
    config.apply(app, test_config)
    if app.config.get("DEMO"):
        app.config["SESSION_COOKIE_SECURE"] = False  # the demo serves plain http on 127.0.0.1
        app.config["REMEMBER_COOKIE_SECURE"] = False
    config.require_secret(app.config)
    _make_sqlite_folder(app.config["SQLALCHEMY_DATABASE_URI"])

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(PROJECT, "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    from . import security

    security.init_app(app)  # before the blueprints: their <int:...> routes bind the bounded id converter

    from . import models  # noqa: F401 - registers the tables
    from .auth import bp as auth_bp
    from .auth.users import load_user
    from .web import bp as web_bp

    login_manager.user_loader(load_user)
    login_manager.login_view = "auth.login"
    app.register_blueprint(auth_bp)
    app.register_blueprint(web_bp)
    from .web.operations import bp as operations_bp

    app.register_blueprint(operations_bp)
    from .web.health import bp as health_bp
    from .web.status import bp as status_bp

    app.register_blueprint(health_bp)  # /healthz, /readyz, /metrics
    app.register_blueprint(status_bp)  # /status, incidents and maintenance windows, the banner
    from .web.notifications import bp as notifications_bp

    app.register_blueprint(notifications_bp)
    from .web.instant import bp as instant_bp

    app.register_blueprint(instant_bp)  # /instant/<secret>/disk.raw: the source of instant restores
    from .web.errors import register_error_handlers

    register_error_handlers(app)
    from .api import init_api

    init_api(app)  # after the pages' error handlers: the API answers its own paths with JSON errors
    from .services import keys

    keys.install(app)  # the engine finds organisation keys through this app (with a master key configured)
    return app


def _make_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        folder = os.path.dirname(url[len("sqlite:///") :])
        if folder:
            os.makedirs(folder, exist_ok=True)
