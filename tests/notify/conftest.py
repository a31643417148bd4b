"""Real parts for the notification tests: an SMTP server (aiosmtpd, with STARTTLS and AUTH when asked) and a
webhook receiver (werkzeug) that checks the HMAC signature itself, plus the job fixtures (real Redis)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.serving import QUICK_STOP

SMTP_USER, SMTP_PASSWORD = "lifeboat", "mail password"
HOOK_SECRET = "receiver-shared-secret-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- SMTP -------------------------------------------------------------------------------------------------

class Mailbox:
    """Collects what the SMTP server accepted."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.envelopes.append(envelope)
        return "250 OK"

    @property
    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(e.original_content or e.content, policy=policy.default)  # type: ignore[misc]
                for e in self.envelopes]

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox
    cafile: str = ""


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the STARTTLS tests need it to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",  # noqa: S607
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


def _start(tls: ssl.SSLContext | None = None, with_auth: bool = False) -> Iterator[SmtpServer]:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    kwargs: dict[str, Any] = {}
    if tls is not None:
        kwargs.update(tls_context=tls, require_starttls=True)
    if with_auth:
        kwargs.update(authenticator=_authenticator, auth_required=True, auth_require_tls=tls is not None)
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    try:
        yield SmtpServer(controller.port, mailbox)
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A plain SMTP server without TLS or AUTH."""
    yield from _start()


@pytest.fixture
def smtp_tls(certificate: tuple[str, str]) -> Iterator[SmtpServer]:
    """An SMTP server that requires STARTTLS and then AUTH (LOGIN/PLAIN)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    for server in _start(context, with_auth=True):
        server.cafile = certificate[0]
        yield server


@pytest.fixture
def smtp_auth_plain() -> Iterator[SmtpServer]:
    """AUTH without TLS (what a relay on localhost may offer)."""
    yield from _start(with_auth=True)


# -- webhooks ---------------------------------------------------------------------------------------------

@dataclass
class Receiver:
    """An HTTP endpoint that checks ``X-Lifeboat-Signature`` the way the README tells receivers to."""

    secret: str
    url: str = ""
    fail_next: int = 0  # answer 500 to this many requests first
    received: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        timestamp = request.headers.get("X-Lifeboat-Timestamp", "")
        expected = "sha256=" + hmac.new(self.secret.encode(), timestamp.encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Lifeboat-Signature", "")):
            self.rejected.append(body.decode())
            return Response("bad signature", 401)(environ, start_response)
        if self.fail_next > 0:
            self.fail_next -= 1
            return Response("try later", 500)(environ, start_response)
        self.received.append({"headers": dict(request.headers), "json": json.loads(body)})
        return Response(status=204)(environ, start_response)

    def events(self) -> list[str]:
        return [r["json"]["event"] for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(HOOK_SECRET)
    server = make_server("127.0.0.1", 0, receiver, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs=QUICK_STOP, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_port}/hook"
    try:
        yield receiver
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def notifying(app: Any, queues: Any) -> Any:
    """The app sending mail to 127.0.0.1 (the test points SMTP_PORT at its server), webhooks to loopback,
    retries without waiting (intervals of 0 s: RQ re-queues at once, so a burst worker runs every attempt)."""
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=free_port(), SMTP_STARTTLS=False, SMTP_USER="",
                      SMTP_PASSWORD="", NOTIFY_RETRY_INTERVALS=[0, 0], WEBHOOK_ALLOW_PRIVATE=True,
                      MAIL_FROM="lifeboat@provider.example", PORTAL_URL="https://backup.provider.example")
    return queues

