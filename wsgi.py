"""WSGI entry point: ``gunicorn wsgi:app`` (configuration from LIFEBOAT_* environment variables)."""

from portal.app import create_app

app = create_app()
