"""Serve a revision over HTTP as a raw disk image: GET and HEAD with byte ranges, behind a secret path.

This is the source Ceph's import-only live migration reads (its ``http`` stream asks HEAD for the size,
then one range per request) and what QEMU's curl driver attaches to. The standard library's threading HTTP
server is enough: the work is reading and hashing chunks, which drops the GIL. Nothing but
``/<secret>/disk.raw`` is answered (404 otherwise, also after ``expires_at``), the secret is 256 random bits,
and the default address is loopback.

A body is made only of verified chunks (see ``answer``): damage is a clean ``500`` naming the byte range, or,
past the verified start of a long answer, a connection ended early (a short read), never wrong bytes.
"""

from __future__ import annotations

import hmac
import secrets
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..stream import DamagedRange
from .answer import Answer, answer, plain
from .disk import ServedDisk

#: seconds an idle keep-alive connection is kept
IDLE_TIMEOUT = 300
DISK_NAME = "disk.raw"


def new_secret() -> str:
    """A fresh unguessable path component (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def url_host(host: str) -> str:
    """The host part of a URL for a bind address: the machine's name for a wildcard, brackets for IPv6."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding to it
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


class DiskHTTPServer(ThreadingHTTPServer):
    """One revision at ``http://HOST:PORT/<secret>/disk.raw`` until ``stop``."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, host: str, port: int, disk: ServedDisk, *, secret: str | None = None,
                 expires_at: float | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.disk = disk
        self.secret = secret or new_secret()
        self.disk_path = f"/{self.secret}/{DISK_NAME}"
        self.expires_at = expires_at
        self.refusing = False
        self.requests = 0
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _DiskHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's FQDN up, which can take seconds; the name is not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, base: str | None = None) -> str:
        """The disk's URL; ``base`` (``http://name:port``) replaces the bind address for remote clients."""
        if base:
            return base.rstrip("/") + self.disk_path
        return f"http://{url_host(str(self.server_address[0]))}:{self.port}{self.disk_path}"

    def admits(self, path: str) -> bool:
        """True for the disk's path while the secret is valid (compared in constant time)."""
        if self.expires_at is not None and time.time() >= self.expires_at:
            return False
        return hmac.compare_digest(path.encode("utf-8", "replace"), self.disk_path.encode())

    def refuse(self) -> None:
        """Answer 503 from now on: a client copying from us (Ceph's hydration) stops at its next read."""
        self.refusing = True

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="disk-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


class _DiskHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Ceph and QEMU reuse one connection for many ranges
    server_version = "Lifeboat"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version
    timeout = IDLE_TIMEOUT
    # Headers and body go out in separate writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK of the headers (40 ms a request on Linux), which makes every small read of a disk slow.
    disable_nagle_algorithm = True
    server: DiskHTTPServer

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _refuse(self) -> None:
        if self.server.admits(self.path):
            self._send(answer(self.server.disk, self.command, None))  # 405
        else:
            self._send(plain(404, "not found"))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per range of a hydration would drown the command's own output."""

    def _answer(self, *, body: bool) -> None:
        self.server.requests += 1
        if not self.server.admits(self.path):
            self._send(plain(404, "not found"))
        elif self.server.refusing:
            self._send(plain(503, "this source is stopping", {"Retry-After": "30"}))
        else:
            self._send(answer(self.server.disk, self.command, self.headers.get("Range")))

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
