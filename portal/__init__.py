"""The Lifeboat portal (web app, API and the ``lifeboat`` command)."""
