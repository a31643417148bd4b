"""Sending notifications: one job per row (``send``), on the ``maintenance`` queue, retried with backoff.

Each channel is its own job, so a dead mail server never delays a webhook. Every attempt updates the row
(``attempts``, ``why``); a failure before the last attempt re-raises so RQ's ``Retry`` (intervals from
``NOTIFY_RETRY_INTERVALS``) schedules the next one, the last one marks the row ``failed`` with the reason.
A digest row, once sent, marks the held notifications it carried as sent.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import time
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import requests
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Notification, User
from portal.models.notifications import FAILED, PENDING, SENT, SUPPRESSED
from portal.services import notify, webhooks

from .context import app_context


class SendError(Exception):
    """A send that failed and may succeed on a later attempt."""


class Permanent(Exception):
    """A send that no retry can fix (refused address, recipient gone): failed at once."""


class Suppressed(Exception):
    """Nothing to send any more (webhook disabled, no SMTP server configured)."""


def send(notification_id: int) -> str:
    with app_context() as flask_app:
        row = db.session.get(Notification, notification_id)
        if row is None or row.state != PENDING:
            return "skipped"
        row.attempts += 1
        db.session.commit()
        config = flask_app.config
        try:
            outcome = _email(row, config) if row.channel == "email" else _webhook(row, config)
        except Suppressed as exc:
            return _finish(notification_id, SUPPRESSED, str(exc))
        except Permanent as exc:
            return _finish(notification_id, FAILED, str(exc))
        except Exception as exc:  # noqa: BLE001 - any error of a channel is this row's failure, nothing more
            why = _describe(exc)
            db.session.rollback()
            row = db.session.get(Notification, notification_id)
            if row is None or row.attempts >= notify.max_attempts(config):
                tries = row.attempts if row else "?"
                return _finish(notification_id, FAILED, f"failed after {tries} attempt(s): {why}")
            row.why = f"attempt {row.attempts} of {notify.max_attempts(config)} failed, will retry: {why}"
            db.session.commit()
            raise SendError(why) from exc
        return _finish(notification_id, SENT, outcome)


def _finish(notification_id: int, state: str, why: str) -> str:
    row = db.session.get(Notification, notification_id)
    if row is None:
        return "skipped"
    row.state, row.why = state, why[:2000]
    if state == SENT:
        row.sent_at = clock.now()
    if row.kind == notify.DIGEST_KIND:
        _settle_digest(row)
    db.session.commit()
    return state


def _settle_digest(digest: Notification) -> None:
    """Sent: the carried rows are sent too. Failed or suppressed: they wait for the next digest."""
    for item in db.session.scalars(select(Notification).where(Notification.digest_id == digest.id)):
        if digest.state == SENT:
            item.state, item.sent_at, item.why = SENT, digest.sent_at, f"sent in daily digest #{digest.id}"
        else:
            item.digest_id, item.why = None, f"daily digest #{digest.id} {digest.state}: {digest.why}"[:2000]


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException):
        text = f"{type(exc).__name__}: {text}"
    return text[:1000]


# -- email ------------------------------------------------------------------------------------------------

def _email(row: Notification, config: Any) -> str:
    host, port = str(config.get("SMTP_HOST") or ""), int(config["SMTP_PORT"])
    if not host:
        raise Suppressed("no SMTP server configured (LIFEBOAT_SMTP_HOST)")
    user = db.session.get(User, row.user_id) if row.user_id else None
    if user is None or not user.is_active:
        raise Permanent("recipient is no longer active")
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = user.email
    message["Subject"] = f"[Lifeboat] {row.subject}"
    message["Date"] = format_datetime(clock.now().replace(tzinfo=UTC))
    message["Message-ID"] = make_msgid(idstring=f"notification-{row.id}", domain="lifeboat")
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(row.body or row.subject)
    context = ssl.create_default_context(cafile=config.get("SMTP_CA_FILE") or None)
    with smtplib.SMTP(host, port, timeout=float(config["SMTP_TIMEOUT"])) as smtp:
        smtp.ehlo()
        if config.get("SMTP_STARTTLS"):
            if not smtp.has_extn("starttls"):
                raise SendError(f"{host}:{port} does not offer STARTTLS (LIFEBOAT_SMTP_STARTTLS is on)")
            smtp.starttls(context=context)
            smtp.ehlo()
        if config.get("SMTP_USER"):
            smtp.login(str(config["SMTP_USER"]), str(config.get("SMTP_PASSWORD") or ""))
        smtp.send_message(message)
    return f"accepted by {host}:{port}"


# -- webhooks ---------------------------------------------------------------------------------------------

def _webhook(row: Notification, config: Any) -> str:
    hook = row.webhook
    if hook is None or not hook.active:
        raise Suppressed("webhook disabled")
    try:
        address = webhooks.check_address(hook.url)
    except webhooks.UnsafeAddress as exc:
        raise Permanent(str(exc)) from exc
    body = json.dumps(webhooks.payload(row), separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Lifeboat-Webhook/1",
        "X-Lifeboat-Event": row.kind,
        "X-Lifeboat-Delivery": str(row.id),
        "X-Lifeboat-Timestamp": timestamp,
        "X-Lifeboat-Signature": webhooks.sign(hook.secret, timestamp, body),
    }
    timeout = float(config["WEBHOOK_TIMEOUT"])
    if address is None:  # private addresses allowed: an ordinary request
        answer = requests.post(hook.url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
        answer.close()
        status = answer.status_code
    else:  # to the very address that was checked
        try:
            status = webhooks.post_to(hook.url, address, body, headers, timeout)
        except Exception as exc:  # noqa: BLE001 - connection refused, TLS, timeout: retried like any failure
            raise SendError(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= status < 300:
        raise SendError(f"HTTP {status} from {hook.url}")
    return f"HTTP {status}"
