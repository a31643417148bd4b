"""Webhook deliveries against a real receiver: signatures, retries with backoff through RQ, refusals, and the
reconciler that re-queues sends Redis lost."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from portal.extensions import db
from portal.models import Notification
from portal.services import notify, webhooks
from tests.fixtures.jobs import run_jobs

from .conftest import HOOK_SECRET
from .test_channels import add_hook, rows


def test_a_failing_receiver_is_retried_until_it_answers(world, notifying, receiver) -> None:
    receiver.fail_next = 2  # two 500s, then 204: the third and last attempt succeeds
    add_hook(world, receiver.url, ["backup.finished"])
    notify.event("backup.finished", world["acme"], vm=world["acme_vm"], run=1, revision="r1")
    run_jobs(notifying)
    [row] = rows(channel="webhook")
    assert (row.state, row.attempts, row.why) == ("sent", 3, "HTTP 204")
    assert receiver.events() == ["backup.finished"]
    assert not rows(channel="email")  # backup.finished is for webhooks only


def test_retries_are_scheduled_with_backoff_through_rq(world, notifying, receiver, app) -> None:
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    app.config["NOTIFY_RETRY_INTERVALS"] = [30, 120, 600]
    receiver.fail_next = 1
    add_hook(world, receiver.url, ["backup.finished"])
    [row_id] = notify.event("backup.finished", world["acme"], vm=world["acme_vm"], run=1)
    run_jobs(notifying)
    row = db.session.get(Notification, row_id)
    assert row.state == "pending" and row.attempts == 1
    assert row.why == "attempt 1 of 4 failed, will retry: HTTP 500 from " + receiver.url
    registry = ScheduledJobRegistry(queue=Queue("maintenance", connection=notifying))
    assert registry.get_job_ids() == [row.job_id]  # waiting 30 s in RQ's scheduled registry
    notify.reconcile(notify.clock.now())  # not due yet: stays scheduled, not re-queued
    assert registry.get_job_ids() == [row.job_id]
    notifying.zadd(registry.key, {row.job_id: 1})  # as if the 30 s had passed (no waiting in tests)
    notify.reconcile(notify.clock.now())  # the scheduler's tick moves due retries into the queue
    assert registry.get_job_ids() == []
    run_jobs(notifying)
    db.session.expire_all()
    row = db.session.get(Notification, row_id)
    assert (row.state, row.attempts) == ("sent", 2) and receiver.events() == ["backup.finished"]


def test_a_wrong_secret_is_rejected_by_the_receiver_and_the_delivery_fails(world, notifying, receiver) -> None:
    add_hook(world, receiver.url, ["rpo.missed"], secret="not-the-receivers-secret")
    notify.event("rpo.missed", world["acme"], vm=world["acme_vm"], rpo_minutes=120)
    run_jobs(notifying)
    [row] = rows(channel="webhook")
    assert row.state == "failed" and "HTTP 401" in row.why and len(receiver.rejected) == 3
    assert receiver.received == []


def test_signature_covers_timestamp_and_body(world) -> None:
    body, timestamp = b'{"event":"rpo.missed"}', "1764400000"
    signature = webhooks.sign(HOOK_SECRET, timestamp, body)
    assert signature == "sha256=" + hmac.new(HOOK_SECRET.encode(), b"1764400000." + body, hashlib.sha256).hexdigest()
    assert webhooks.verify(HOOK_SECRET, timestamp, body, signature)
    assert not webhooks.verify(HOOK_SECRET, "1764400001", body, signature)  # a replayed body, new timestamp


def test_private_addresses_are_refused_unless_allowed(world, notifying, receiver, app) -> None:
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False  # the default
    add_hook(world, receiver.url, ["rpo.missed"])
    notify.event("rpo.missed", world["acme"], vm=world["acme_vm"], rpo_minutes=120)
    run_jobs(notifying)
    [row] = rows(channel="webhook")
    assert row.state == "failed" and row.attempts == 1  # no retry can fix it
    assert "127.0.0.1 resolves to 127.0.0.1, which is not a public address" in row.why
    assert receiver.received == []


def test_a_disabled_webhook_gets_nothing_and_a_queued_delivery_is_suppressed(world, notifying, receiver) -> None:
    hook = add_hook(world, receiver.url, ["rpo.missed"])
    notify.event("rpo.missed", world["acme"], vm=world["acme_vm"], rpo_minutes=120)  # queued, not yet sent
    webhooks.set_active(world["acme_admin"], hook, False)
    notify.event("rpo.missed", world["acme"], vm=world["acme_staging"], rpo_minutes=120)  # not even a row
    run_jobs(notifying)
    [row] = rows(channel="webhook")
    assert (row.state, row.why) == ("suppressed", "webhook disabled")
    assert receiver.received == []


def test_the_reconciler_requeues_sends_redis_lost(world, notifying, receiver) -> None:
    add_hook(world, receiver.url, ["rpo.missed"])
    notify.event("rpo.missed", world["acme"], vm=world["acme_vm"], rpo_minutes=120)
    notifying.flushdb()  # Redis restarted empty: the job is gone, the row is not
    [row] = rows(channel="webhook")
    assert row.id in notify.reconcile(notify.clock.now())  # (the mails too)
    run_jobs(notifying)
    assert rows(channel="webhook")[0].state == "sent" and receiver.events() == ["rpo.missed"]


@pytest.mark.slow
def test_a_test_delivery_from_the_page(world, notifying, receiver) -> None:
    hook = add_hook(world, receiver.url, ["rpo.missed"])
    webhooks.test(world["acme_admin"], hook)
    run_jobs(notifying)
    [delivery] = receiver.received
    assert delivery["json"]["event"] == "webhook.test" and delivery["json"]["test"] is True
