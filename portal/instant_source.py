"""``lifeboat instant-source``: the HTTP source of instant restores, with keep-alive, apart from the web app.

Why apart: librbd's HTTP client (Ceph 16) keeps one connection for many ranges and does not cope with a
server that closes it after every answer. Werkzeug's server (``flask run``, ``make run``) and gunicorn's sync
workers answer ``Connection: close``; seen here, an import prepared from such a server read back empty and its
hydration never ended. This server speaks HTTP/1.1 with keep-alive (the standard library's threading server,
as ``lifeboat store serve`` does) and answers exactly the web app's source URLs
(``/instant/<secret>/disk.raw`` and ``/instant/<secret>/disks/<name>.raw``) from the same rules
(``portal.services.instant``: the secret of a queued or running instant restore, verified chunks, damage
recorded in Redis). It keeps no state of its own: run as many as you like, anywhere that sees the database and
the repositories, and point INSTANT_SOURCE_URL at them.
"""

from __future__ import annotations

import re
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from flask import Flask

from storage.serve.answer import Answer, plain
from storage.stream import DamagedRange

from .extensions import db
from .services import instant

PATH = re.compile(r"^/instant/([A-Za-z0-9_-]{1,64})/(?:disk\.raw|disks/([^/?#]{1,400})\.raw)$")
IDLE_TIMEOUT = 300


def answer_for(app: Flask, method: str, path: str, range_header: str | None) -> Answer:
    """The answer to one request (call inside an app context): 404 for anything but an active source's URL."""
    found = PATH.match(path)
    restore = instant.active_restore(found.group(1)) if found else None
    reply = None
    if found and restore is not None:
        reply = instant.serve(app.config, restore, method, range_header, unquote(found.group(2) or ""))
    return reply or plain(404, "not found")


class SourceServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, app: Flask, host: str, port: int) -> None:
        self.app = app
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no FQDN look-up (it can take seconds)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="instant-source", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: what librbd needs
    server_version = "Lifeboat"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True  # headers and body are separate writes (see storage.serve.http)
    server: SourceServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per range of a hydration would drown everything else."""

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def _refuse(self) -> None:
        self._send(plain(405, "only GET and HEAD"))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _answer(self) -> None:
        with self.server.app.app_context():
            try:
                self._send(answer_for(self.server.app, self.command, self.path, self.headers.get("Range")))
            finally:
                db.session.remove()

    def _send(self, reply: Answer) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            for piece in reply.body:
                self.wfile.write(piece)
        except DamagedRange:
            self.close_connection = True  # a short body: the client sees an error, never wrong bytes
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
