"""Each event reaches each chosen channel exactly once, through a real SMTP server and a real webhook receiver;
duplicates within the window are suppressed; digests aggregate; a dead channel never blocks another."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from portal import clock
from portal.extensions import db
from portal.models import Notification, Webhook
from portal.services import notify
from portal.services.notify import KINDS, Preference
from tests.fixtures.jobs import run_jobs

from .conftest import HOOK_SECRET, SMTP_PASSWORD, SMTP_USER, free_port

#: aiosmtpd warns (rightly) about a server offering AUTH without TLS; these tests need exactly that server
PLAIN_AUTH = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def rows(**filters: Any) -> list[Notification]:
    db.session.expire_all()
    return list(Notification.query.filter_by(**filters).order_by(Notification.id))


def add_hook(world: dict[str, Any], url: str, events: list[str], org: str = "acme",
             secret: str = HOOK_SECRET) -> Webhook:
    hook = Webhook(organisation_id=world[org].id, url=url, secret=secret, events=events)
    db.session.add(hook)
    db.session.commit()
    return hook


def test_one_event_reaches_each_chosen_channel_once(world, notifying, smtp, receiver, app) -> None:
    app.config["SMTP_PORT"] = smtp.port
    hook = add_hook(world, receiver.url, ["backup.failed"])
    add_hook(world, receiver.url, ["backup.failed"], org="globex")  # another tenant's webhook: never called
    ids = notify.event("backup.failed", world["acme"], vm=world["acme_vm"], error="disk gone")
    run_jobs(notifying)

    admin, member, manager = world["acme_admin"], world["acme_member"], world["manager"]
    assert sorted((r.user_id or 0, r.channel, r.state) for r in rows(kind="backup.failed")) == sorted([
        (admin.id, "portal", "sent"), (admin.id, "email", "sent"),  # admins: portal and mail at once
        (member.id, "portal", "sent"), (member.id, "email", "pending"),  # members: portal, mail in the digest
        (manager.id, "portal", "sent"),  # the account manager: portal only
        (0, "webhook", "sent")])
    assert len(ids) == 6
    assert not rows(user_id=world["globex_admin"].id) and not rows(user_id=world["operator"].id)

    [mail] = smtp.mailbox.messages
    assert mail["To"] == "admin@acme.example" and mail["From"] == "lifeboat@provider.example"
    assert mail["Subject"] == "[Lifeboat] Backup of web-1 failed: disk gone"
    assert "https://backup.provider.example/notifications" in mail.get_content()
    assert smtp.mailbox.envelopes[0].rcpt_tos == ["admin@acme.example"]

    [delivery] = receiver.received  # the signature was checked by the receiver
    assert not receiver.rejected
    payload = delivery["json"]
    assert payload["event"] == "backup.failed" and payload["vm"] == {"id": world["acme_vm"].id, "name": "web-1"}
    assert payload["organisation"]["slug"] == "acme" and payload["details"] == {"error": "disk gone"}
    assert delivery["headers"]["X-Lifeboat-Event"] == "backup.failed"
    assert rows(channel="webhook")[0].webhook_id == hook.id


def test_every_kind_gives_exactly_one_notification_per_chosen_channel(world, notifying, smtp, app) -> None:
    app.config["SMTP_PORT"] = smtp.port
    for who in ("acme_admin", "manager"):
        user = world[who]
        notify.save_preferences(user, {k: Preference("immediate", True) for k in notify.people_kinds(user)})
    people = [(kind, spec) for kind, spec in KINDS.items() if spec.people]
    for n, (kind, spec) in enumerate(people):
        person = world["manager"] if spec.audience == "staff" else world["acme_admin"]
        notify.event(kind, world["acme"], vm=world["acme_vm"], error="boom", restore=n, object=f"vm:{n}",
                     sync=n, scope="acme", reason="too many missing", rpo_minutes=120, minutes_left=5,
                     label="VM web-1", due=clock.now())
        assert sorted(r.channel for r in rows(kind=kind, user_id=person.id)) == ["email", "portal"], kind
    run_jobs(notifying)
    to_admin = smtp.mailbox.to("admin@acme.example")
    to_manager = smtp.mailbox.to("manager@lifeboat.example")  # acme's account manager hears of every kind
    assert len(to_manager) == len(people)
    assert len(to_admin) == len([k for k, spec in people if spec.audience != "staff"])
    assert len({m["Subject"] for m in to_admin}) == len(to_admin)  # one mail per kind, none twice
    assert all(r.state == "sent" for r in rows(channel="email", user_id=world["acme_admin"].id))


def test_duplicates_within_the_window_are_suppressed(world, notifying, smtp, app, receiver) -> None:
    app.config.update(SMTP_PORT=smtp.port, NOTIFY_WINDOW_MINUTES=30)
    add_hook(world, receiver.url, ["backup.failed"])
    start = datetime(2026, 11, 29, 9, 0)
    clock.set_now(start)
    try:
        for minutes in (0, 5, 29):  # a storm: the scheduler retries a failing backup every minute
            clock.set_now(start + timedelta(minutes=minutes))
            notify.event("backup.failed", world["acme"], vm=world["acme_vm"], error="disk gone")
        notify.event("backup.failed", world["acme"], vm=world["acme_staging"], error="disk gone")  # another VM
        clock.set_now(start + timedelta(minutes=31))  # the window has passed
        notify.event("backup.failed", world["acme"], vm=world["acme_vm"], error="disk gone")
    finally:
        clock.set_now(None)
    run_jobs(notifying)
    subjects = [m["Subject"] for m in smtp.mailbox.to("admin@acme.example")]
    assert subjects == ["[Lifeboat] Backup of web-1 failed: disk gone", "[Lifeboat] Backup of staging-api failed: "
                        "disk gone", "[Lifeboat] Backup of web-1 failed: disk gone"]
    mails = rows(channel="email", user_id=world["acme_admin"].id)
    assert [m.state for m in mails] == ["sent", "suppressed", "suppressed", "sent", "sent"]
    assert mails[1].why == f"duplicate of notification #{mails[0].id} within the 30-minute window"
    portal = rows(channel="portal", user_id=world["acme_admin"].id)
    assert [p.state for p in portal] == ["sent", "suppressed", "suppressed", "sent", "sent"]
    assert len(receiver.received) == 5  # machines get every event


def test_the_daily_digest_aggregates_held_mails(world, notifying, smtp, app) -> None:
    app.config.update(SMTP_PORT=smtp.port, NOTIFY_DIGEST_HOUR=7)
    member = world["acme_member"]  # members get a daily digest by default
    evening = datetime(2026, 11, 28, 18, 0)
    clock.set_now(evening)
    try:
        notify.event("backup.failed", world["acme"], vm=world["acme_vm"], error="disk gone")
        notify.event("restore.finished", world["acme"], vm=world["acme_staging"], restore=7)
        notify.event("rpo.missed", world["acme"], vm=world["acme_vm"], rpo_minutes=120)
        run_jobs(notifying)
        assert smtp.mailbox.to(member.email) == []  # held, not sent one by one
        assert notify.digests(evening + timedelta(hours=1)) == []  # today's digest hour has passed: tomorrow
        [digest_id] = notify.digests(datetime(2026, 11, 29, 7, 0))
        assert notify.digests(datetime(2026, 11, 29, 7, 1)) == []  # once a day
    finally:
        clock.set_now(None)
    run_jobs(notifying)
    [mail] = smtp.mailbox.to(member.email)
    assert mail["Subject"] == "[Lifeboat] Lifeboat daily digest: 3 notification(s)"
    text = mail.get_content()
    for line in ("Backup of web-1 failed: disk gone", "Restore #7 of staging-api has finished",
                 "web-1 has no good backup within its RPO of 120 minutes"):
        assert line in text
    held = [r for r in rows(channel="email", user_id=member.id) if r.kind != "digest"]
    why = f"sent in daily digest #{digest_id}"
    assert [(r.state, r.digest_id, r.why) for r in held] == [("sent", digest_id, why)] * 3
    assert len(smtp.mailbox.to("admin@acme.example")) == 3  # admins chose immediate mail: unaffected


def test_a_dead_mail_server_does_not_stop_webhooks(world, notifying, receiver, app) -> None:
    app.config["SMTP_PORT"] = free_port()  # nothing listens there
    add_hook(world, receiver.url, ["restore.failed"])
    notify.event("restore.failed", world["acme"], vm=world["acme_vm"], restore=3, error="target full")
    run_jobs(notifying)
    assert receiver.events() == ["restore.failed"]
    [mail] = rows(channel="email", user_id=world["acme_admin"].id)
    assert mail.state == "failed" and mail.attempts == 3  # the first try and two retries (RQ Retry)
    assert mail.why.startswith("failed after 3 attempt(s): ConnectionRefusedError")
    assert rows(channel="webhook")[0].state == "sent"
    assert rows(channel="portal", user_id=world["acme_admin"].id)[0].state == "sent"


def test_no_smtp_server_configured_suppresses_mail_and_says_why(world, queues, app) -> None:
    assert app.config["SMTP_HOST"] == ""  # the default: mail off
    notify.event("backup.failed", world["acme"], vm=world["acme_vm"], error="x")
    [mail] = rows(channel="email", user_id=world["acme_admin"].id)
    assert (mail.state, mail.why) == ("suppressed", "no SMTP server configured (LIFEBOAT_SMTP_HOST)")
    assert queues.llen("rq:queue:maintenance") == 0  # nothing to send, nothing queued


def test_starttls_and_auth(world, notifying, smtp_tls, app) -> None:
    app.config.update(SMTP_PORT=smtp_tls.port, SMTP_STARTTLS=True, SMTP_CA_FILE=smtp_tls.cafile,
                      SMTP_USER=SMTP_USER, SMTP_PASSWORD=SMTP_PASSWORD)
    notify.event("verify.damage", world["acme"], vm=world["acme_vm"], damaged_chunks=2)
    run_jobs(notifying)
    [mail] = smtp_tls.mailbox.to("admin@acme.example")
    assert mail["Subject"] == "[Lifeboat] Verification found damage in the backups of web-1"
    assert "accepted by 127.0.0.1" in rows(channel="email", user_id=world["acme_admin"].id)[0].why


def test_a_wrong_smtp_password_fails_with_the_servers_answer(world, notifying, smtp_tls, app) -> None:
    app.config.update(SMTP_PORT=smtp_tls.port, SMTP_STARTTLS=True, SMTP_CA_FILE=smtp_tls.cafile,
                      SMTP_USER=SMTP_USER, SMTP_PASSWORD="wrong")
    notify.event("verify.damage", world["acme"], vm=world["acme_vm"])
    run_jobs(notifying)
    [mail] = rows(channel="email", user_id=world["acme_admin"].id)
    assert mail.state == "failed" and "535" in mail.why and "Authentication" in mail.why
    assert smtp_tls.mailbox.messages == []


def test_an_untrusted_certificate_is_refused(world, notifying, smtp_tls, app) -> None:
    app.config.update(SMTP_PORT=smtp_tls.port, SMTP_STARTTLS=True, SMTP_CA_FILE="",  # the system's CAs
                      SMTP_USER=SMTP_USER, SMTP_PASSWORD=SMTP_PASSWORD)
    notify.event("verify.damage", world["acme"], vm=world["acme_vm"])
    run_jobs(notifying)
    [mail] = rows(channel="email", user_id=world["acme_admin"].id)
    assert mail.state == "failed" and "CERTIFICATE_VERIFY_FAILED" in mail.why
    assert smtp_tls.mailbox.messages == []


@PLAIN_AUTH
def test_starttls_required_but_not_offered_sends_nothing(world, notifying, smtp_auth_plain, app) -> None:
    app.config.update(SMTP_PORT=smtp_auth_plain.port, SMTP_STARTTLS=True, SMTP_USER=SMTP_USER,
                      SMTP_PASSWORD=SMTP_PASSWORD)
    notify.event("verify.damage", world["acme"], vm=world["acme_vm"])
    run_jobs(notifying)
    [mail] = rows(channel="email", user_id=world["acme_admin"].id)
    assert mail.state == "failed" and "does not offer STARTTLS" in mail.why
    assert smtp_auth_plain.mailbox.messages == []


@PLAIN_AUTH
def test_auth_without_tls_when_starttls_is_off(world, notifying, smtp_auth_plain, app) -> None:
    """A relay on localhost without TLS: only when the operator turns SMTP_STARTTLS off."""
    app.config.update(SMTP_PORT=smtp_auth_plain.port, SMTP_STARTTLS=False, SMTP_USER=SMTP_USER,
                      SMTP_PASSWORD=SMTP_PASSWORD)
    notify.event("verify.damage", world["acme"], vm=world["acme_vm"])
    run_jobs(notifying)
    assert len(smtp_auth_plain.mailbox.to("admin@acme.example")) == 1
