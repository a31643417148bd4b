"""Notifications: who hears about an event, on which channel, and once (not a storm).

``event(kind, organisation, vm=None, **details)`` is the one call the rest of the code makes. It decides the
recipients (by the kind's audience and each user's preferences), writes one ``Notification`` row per
recipient and channel, commits them, and only then queues the sending jobs (``jobs.notify.send`` on the
``maintenance`` queue, retried with backoff through RQ). It never raises into its caller: a backup that
failed must still be recorded as failed even if the notification of it cannot be written.

Why rows first: in the incident this product answers, the provider's own mail server was down. A mail that
cannot go out stays a row (``failed``, with why), the portal's notification centre has it anyway, and a
webhook goes out on its own job: one channel never waits for another.

No storms: for people (``portal`` and ``email``) one notification per VM and event kind per window
(``NOTIFY_WINDOW_MINUTES``); later ones within the window are rows in state ``suppressed`` naming the one
they duplicate. Webhooks get every event (machines want each ``backup.finished``). Restore and deletion
events are told apart by their restore or object, so two restores of one VM are two events.

Deletions by policy (retention, after every backup) would otherwise be a storm of their own: hourly backups
with ``keep_hourly=24`` let a point go every hour. So retention raises one ``deletion.scheduled`` per run and
VM listing its points (``policy_deletions_scheduled``), and a policy deletion's 24-hour reminder
(``deletion.imminent``) reaches people once per VM and day (``POLICY_PEOPLE_WINDOW``); webhooks still get
one reminder per point. Deletions people asked for keep one event and one reminder per object.

Notices are the same rows addressed to an organisation rather than a person (``portal``, no user; see
``portal.models.notifications``): ``notice()`` adds one inside the caller's transaction, ``dismiss_notices()``
ends them, ``open_notices()`` reads them. Kinds: ``deletion.scheduled`` (the banner, expiring when the
deletion is due; key: the object), ``deletion.blocked``, ``rpo.missed`` (one per episode; key: the VM) and
``tier.changed``.

``tick(now)`` runs from the scheduler every minute: RPO about to be missed, deletion reminders a day ahead,
the daily digests, and the reconciler that re-queues sends Redis lost (and moves due retries into the queue
when workers run without RQ's scheduler).
"""

from __future__ import annotations

import logging
import time as wall_clock
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Select, func, select

from .. import clock
from ..errors import DomainError
from ..extensions import db
from ..models import VM, BackupPoint, BackupRun, Notification, NotificationPreference, Organisation, User, Webhook
from ..models.accounts import ACCOUNT_MANAGER, CUSTOMER_ADMIN, CUSTOMER_MEMBER, OPERATOR
from ..models.notifications import EMAIL_MODES, FAILED, PENDING, SENT, SUPPRESSED
from . import deletables, queue

log = logging.getLogger(__name__)

QUEUE = "maintenance"
SEND_JOB = "jobs.notify.send"
AT_RISK_SHARE = 0.25  # "about to be missed": the last attempt failed and less than this share of the RPO is left
POLICY_PEOPLE_WINDOW = timedelta(days=1)  # people hear of a VM's policy deletions once a day per event kind


@dataclass(frozen=True)
class Kind:
    """An event kind: its label, who hears of it, and the subject line (``str.format`` over the details).

    audience: ``organisation`` (the organisation's users and its account manager), ``admins`` (its customer
    admins and account manager), ``staff`` (its account manager and the operators). ``people=False``: for
    webhooks only. ``distinct_by``: the detail that tells two events of one VM apart (not duplicates).
    """

    label: str
    subject: str
    audience: str = "organisation"
    people: bool = True
    distinct_by: str = ""


KINDS: dict[str, Kind] = {
    "rpo.missed": Kind("RPO missed", "{vm} has no good backup within its RPO of {rpo_minutes} minutes"),
    "rpo.at_risk": Kind("RPO about to be missed",
                        "{vm} will miss its RPO of {rpo_minutes} minutes in {minutes_left} minutes: "
                        "the last backup failed"),
    "backup.failed": Kind("Backup failed", "Backup of {vm} failed: {error}"),
    "backup.finished": Kind("Backup finished", "Backup of {vm} finished", people=False, distinct_by="run"),
    "verify.damage": Kind("Verification found damage", "Verification found damage in the backups of {vm}"),
    "restore.queued": Kind("Restore queued", "Restore #{restore} of {vm} is queued", distinct_by="restore"),
    "restore.started": Kind("Restore started", "Restore #{restore} of {vm} has started", distinct_by="restore"),
    "restore.finished": Kind("Restore finished", "Restore #{restore} of {vm} has finished",
                             distinct_by="restore"),
    "restore.failed": Kind("Restore failed", "Restore #{restore} of {vm} failed: {error}", distinct_by="restore"),
    "deletion.scheduled": Kind("Deletion scheduled", "{label} will be deleted on {due} UTC", audience="admins",
                               distinct_by="object"),
    "deletion.imminent": Kind("Deletion within 24 hours", "{label} will be deleted within a day, on {due} UTC",
                              audience="admins", distinct_by="object"),
    "deletion.cancelled": Kind("Deletion cancelled", "{label} will not be deleted: the deletion due on {due} UTC "
                               "was cancelled", audience="admins", distinct_by="object"),
    "inventory.sync_refused": Kind("Inventory sync refused", "Inventory sync for {scope} refused: {reason}",
                                   audience="staff", distinct_by="sync"),
    "drill.failed": Kind("Fire drill failed", "Fire drill of {vm} failed: {error}", audience="admins"),
}
#: not events of the world: a webhook's test delivery and the daily digest mail
TEST_KIND, DIGEST_KIND = "webhook.test", "digest"
#: what a webhook gets when it names no events
WEBHOOK_DEFAULT_EVENTS = ("backup.finished", "restore.finished", "rpo.missed", "deletion.scheduled",
                          "deletion.cancelled")

DEFAULT_EMAIL = {CUSTOMER_ADMIN: "immediate", CUSTOMER_MEMBER: "daily", ACCOUNT_MANAGER: "off",
                 OPERATOR: "immediate"}


@dataclass(frozen=True)
class Preference:
    email: str  # off | immediate | daily
    portal: bool


# -- preferences ------------------------------------------------------------------------------------------

def default_preference(user: User, kind: str) -> Preference:
    """Everyone gets the portal; customer admins and operators mail at once, members a daily digest."""
    return Preference(email=DEFAULT_EMAIL.get(user.role, "off"), portal=True)


def people_kinds(user: User) -> list[str]:
    """The kinds ``user`` can hear of at all (their role is in the kind's audience)."""
    return [name for name, kind in KINDS.items() if kind.people and _in_audience(user, kind.audience)]


def _in_audience(user: User, audience: str) -> bool:
    if audience == "organisation":
        return user.role != OPERATOR
    if audience == "admins":
        return user.role in (CUSTOMER_ADMIN, ACCOUNT_MANAGER)
    return user.role in (ACCOUNT_MANAGER, OPERATOR)


def preferences_of(user: User) -> dict[str, Preference]:
    rows = {p.kind: p for p in db.session.scalars(select(NotificationPreference)
                                                  .where(NotificationPreference.user_id == user.id))}
    return {kind: Preference(rows[kind].email, rows[kind].portal) if kind in rows
            else default_preference(user, kind) for kind in people_kinds(user)}


class PreferenceError(DomainError, ValueError):
    """A preferences form the rules refuse (422)."""


def save_preferences(user: User, choices: dict[str, Preference]) -> None:
    """Store ``user``'s choices for the kinds they can hear of; audited as one change."""
    from . import audit

    allowed = set(people_kinds(user))
    for kind, choice in choices.items():
        if kind not in allowed:
            raise PreferenceError(f"unknown event kind {kind!r}")
        if choice.email not in EMAIL_MODES:
            raise PreferenceError(f"email must be one of {', '.join(EMAIL_MODES)}")
    before = {k: vars(v) for k, v in preferences_of(user).items()}
    existing = {p.kind: p for p in db.session.scalars(select(NotificationPreference)
                                                      .where(NotificationPreference.user_id == user.id))}
    for kind, choice in choices.items():
        row = existing.get(kind) or NotificationPreference(user_id=user.id, kind=kind)
        row.email, row.portal = choice.email, choice.portal
        db.session.add(row)
    db.session.flush()
    after = {k: vars(v) for k, v in preferences_of(user).items()}
    audit.record(user, "notifications.preferences", user, before=before, after=after)
    db.session.commit()


# -- events -----------------------------------------------------------------------------------------------

def event(kind: str, organisation: Organisation | None, /, vm: VM | None = None, **details: Any) -> list[int]:
    """Record ``kind`` for ``organisation`` (and ``vm``) on every chosen channel, then queue the sends.

    Returns the ids of the rows written. Never raises: a notification problem is logged, never passed on to
    the backup, restore or deletion that reported the event.
    """
    return _guarded(kind, organisation, vm, details)


def _guarded(kind: str, organisation: Organisation | None, vm: VM | None, details: dict[str, Any],
             **grouping: Any) -> list[int]:
    try:
        return _event(kind, organisation, vm, details, **grouping)
    except Exception:  # noqa: BLE001 - the caller's work is done and committed; do not fail it now
        log.exception("notification %s could not be recorded", kind)
        db.session.rollback()
        return []


def _event(kind: str, organisation: Organisation | None, vm: VM | None, details: dict[str, Any], *,
           key: str = "", people_group: str = "", people_window: timedelta | None = None) -> list[int]:
    """``key`` overrides the row's dedup key; ``people_group`` (a key prefix) and ``people_window`` widen what
    counts as a duplicate for people (policy deletions: any of the VM's, for a day)."""
    spec = KINDS[kind]
    now = clock.now()
    clean = {key: _jsonable(value) for key, value in details.items()}
    vm_name = vm.name if vm is not None else ""
    subject = _subject(spec.subject, vm_name, clean)
    body = _body(subject, organisation, vm_name, clean)
    key = key or _dedup_key(spec, organisation, vm, clean)
    common = dict(organisation_id=organisation.id if organisation else None, kind=kind,
                  vm_id=vm.id if vm is not None else None, vm_name=vm_name, dedup_key=key, subject=subject,
                  body=body, details=clean, created_at=now)
    rows: list[Notification] = []
    if spec.people:
        smtp = bool(current_app.config.get("SMTP_HOST"))
        window = now - (people_window or timedelta(minutes=float(current_app.config["NOTIFY_WINDOW_MINUTES"])))
        users = recipients(spec, organisation)
        prefs = _preferences(users, kind)
        for user in users:
            choice = prefs[user.id]
            if choice.portal:
                rows.append(_person_row(common, user, "portal", window, people_group, state=SENT, sent_at=now))
            if choice.email != "off":
                row = _person_row(common, user, "email", window, people_group, state=PENDING,
                                  digest=choice.email == "daily")
                if row.state == PENDING and not smtp:
                    row.state, row.why = SUPPRESSED, "no SMTP server configured (LIFEBOAT_SMTP_HOST)"
                elif row.state == PENDING and row.digest:
                    row.why = "held for the daily digest"
                rows.append(row)
    if organisation is not None:
        for hook in db.session.scalars(select(Webhook).where(Webhook.organisation_id == organisation.id,
                                                             Webhook.active.is_(True)).order_by(Webhook.id)):
            if kind in (hook.events or WEBHOOK_DEFAULT_EVENTS):
                rows.append(Notification(**common, channel="webhook", webhook_id=hook.id, state=PENDING))
    db.session.add_all(rows)
    db.session.commit()
    enqueue([row for row in rows if row.state == PENDING and not row.digest])
    return [row.id for row in rows]


def organisation_by_slug(slug: str) -> Organisation | None:
    """The organisation an inventory scope names (None for ``all``: the operators hear of it)."""
    return db.session.scalar(select(Organisation).where(Organisation.slug == slug)) if slug != "all" else None


def webhook_test(hook: Webhook) -> Notification:
    """A test delivery to one webhook (from its page), through the same job as real events."""
    org = hook.organisation
    row = Notification(organisation_id=org.id, kind=TEST_KIND, channel="webhook", webhook_id=hook.id,
                       state=PENDING, subject=f"Test delivery to {hook.url}"[:300],
                       body="A test of this webhook from the Lifeboat portal.", details={"test": True},
                       created_at=clock.now())
    db.session.add(row)
    db.session.commit()
    enqueue([row])
    return row


def recipients(spec: Kind, organisation: Organisation | None) -> list[User]:
    """Active users in the kind's audience: the organisation's customers, its account manager, operators."""
    query = select(User).where(User.active.is_(True), User.deletion_due_at.is_(None))
    wanted: list[ColumnElement[bool]] = []
    if organisation is not None and spec.audience in ("organisation", "admins"):
        roles = (CUSTOMER_ADMIN, CUSTOMER_MEMBER) if spec.audience == "organisation" else (CUSTOMER_ADMIN,)
        wanted.append((User.organisation_id == organisation.id) & User.role.in_(roles))
    if organisation is not None and organisation.account_manager_id is not None:
        wanted.append(User.id == organisation.account_manager_id)
    if spec.audience == "staff" or organisation is None:
        wanted.append(User.role == OPERATOR)
    if not wanted:
        return []
    condition = wanted[0]
    for extra in wanted[1:]:
        condition = condition | extra
    return list(db.session.scalars(query.where(condition).order_by(User.id)))


def _preferences(users: list[User], kind: str) -> dict[int, Preference]:
    ids = [u.id for u in users]
    stored = {p.user_id: p for p in db.session.scalars(select(NotificationPreference).where(
        NotificationPreference.user_id.in_(ids), NotificationPreference.kind == kind))} if ids else {}
    return {u.id: Preference(stored[u.id].email, stored[u.id].portal) if u.id in stored
            else default_preference(u, kind) for u in users}


def _person_row(common: dict[str, Any], user: User, channel: str, window: datetime, group: str = "",
                **values: Any) -> Notification:
    row = Notification(**common, user_id=user.id, channel=channel, **values)
    same = Notification.dedup_key.startswith(group, autoescape=True) if group else \
        Notification.dedup_key == common["dedup_key"]
    earlier = db.session.scalar(
        select(Notification.id).where(Notification.kind == common["kind"], same, Notification.channel == channel,
                                      Notification.user_id == user.id, Notification.created_at >= window,
                                      Notification.state.in_((PENDING, SENT))).order_by(Notification.id).limit(1))
    if earlier is not None:
        row.state, row.sent_at, row.digest = SUPPRESSED, None, False
        minutes = round((common["created_at"] - window).total_seconds() / 60)
        row.why = f"duplicate of notification #{earlier} within the {minutes}-minute window"
    return row


def _dedup_key(spec: Kind, organisation: Organisation | None, vm: VM | None, details: dict[str, Any]) -> str:
    base = f"vm:{vm.id}" if vm is not None else (f"org:{organisation.id}" if organisation else "all")
    extra = details.get(spec.distinct_by) if spec.distinct_by else None
    return f"{base}:{extra}"[:120] if extra is not None else base


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def _subject(template: str, vm_name: str, details: dict[str, Any]) -> str:
    values = _Blank({k: _short(v) for k, v in details.items()})
    values["vm"] = vm_name or "?"
    text = template.format_map(values)  # VM names keep their case, even at the start
    return " ".join(text.split())[:300]  # one line: subjects become mail headers


def _short(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _body(subject: str, organisation: Organisation | None, vm_name: str, details: dict[str, Any]) -> str:
    lines = [subject, ""]
    if organisation is not None:
        lines.append(f"Organisation: {organisation.name}")
    if vm_name:
        lines.append(f"VM: {vm_name}")
    lines += [f"{key.replace('_', ' ').capitalize()}: {value}" for key, value in details.items()]
    url = str(current_app.config.get("PORTAL_URL") or "").rstrip("/")
    if url:
        lines += ["", f"Notifications and preferences: {url}/notifications"]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


# -- queueing ---------------------------------------------------------------------------------------------

def max_attempts(config: Any = None) -> int:
    intervals = (config or current_app.config)["NOTIFY_RETRY_INTERVALS"]
    return len(intervals) + 1


def enqueue(rows: Iterable[Notification]) -> None:
    """Queue the send job of each row; Redis being away leaves the rows pending for the reconciler."""
    rows = list(rows)
    if not rows:
        return
    try:
        from rq import Queue, Retry

        intervals = [int(s) for s in current_app.config["NOTIFY_RETRY_INTERVALS"]]
        retry = Retry(max=len(intervals), interval=intervals) if intervals else None
        target = Queue(QUEUE, connection=queue.connection())
        for row in rows:
            target.enqueue(SEND_JOB, row.id, job_id=row.job_id, job_timeout=300, retry=retry,
                           result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600)
    except Exception as exc:  # noqa: BLE001 - rows stay pending; tick() queues them once Redis is back
        log.warning("notification sends not queued (%s); the scheduler will retry", exc)


# -- the scheduler's part ---------------------------------------------------------------------------------

def tick(now: datetime, rpo_missed: Iterable[int] = ()) -> None:
    """Run from ``schedule.tick`` every minute; each part on its own so one failure never stops the rest."""
    for part, args in ((_rpo_missed, (list(rpo_missed),)), (at_risk, (now,)), (deletion_reminders, (now,)),
                       (digests, (now,)), (reconcile, (now,))):
        try:
            part(*args)
        except Exception:  # noqa: BLE001 - the scheduler keeps ticking
            log.exception("notifications: %s failed", part.__name__)
            db.session.rollback()


def _rpo_missed(vm_ids: list[int]) -> None:
    for vm in list(db.session.scalars(select(VM).where(VM.id.in_(vm_ids)))) if vm_ids else []:
        event("rpo.missed", vm.organisation, vm=vm, rpo_minutes=vm.policy.rpo_minutes if vm.policy else None)


def at_risk(now: datetime) -> list[int]:
    """``rpo.at_risk`` for VMs whose last backup attempt failed with less than a quarter of the RPO left;
    once per VM until it has a newer good backup."""
    from .status import statuses

    vms = list(db.session.scalars(select(VM).where(VM.deletion_due_at.is_(None))))
    state = statuses(vms)
    raised = []
    for vm in vms:
        policy, last = vm.policy, state[vm.id].last_good if vm.id in state else None
        if policy is None or policy.excluded or last is None:
            continue
        left = last + timedelta(minutes=policy.rpo_minutes) - now
        if not timedelta(0) < left <= timedelta(minutes=policy.rpo_minutes * AT_RISK_SHARE):
            continue
        latest = db.session.scalars(select(BackupRun).where(BackupRun.vm_id == vm.id, BackupRun.created_at >= last)
                                    .order_by(BackupRun.id.desc()).limit(1)).first()
        if latest is None or latest.state != FAILED:
            continue
        if _raised_since("rpo.at_risk", f"vm:{vm.id}", last):
            continue
        event("rpo.at_risk", vm.organisation, vm=vm, rpo_minutes=policy.rpo_minutes,
              minutes_left=int(left.total_seconds() // 60), error=latest.error[:300])
        raised.append(vm.id)
    return raised


def _raised_since(kind: str, key: str, since: datetime) -> bool:
    return db.session.scalar(select(Notification.id).where(Notification.kind == kind, Notification.dedup_key == key,
                                                           Notification.created_at >= since).limit(1)) is not None


def deletion_event(kind: str, obj: Any, *, due: datetime | None = None, by_policy: bool | None = None,
                   **extra: Any) -> list[int]:
    """``deletion.scheduled``, ``deletion.imminent`` or ``deletion.cancelled`` for a backup point, VM, user or
    organisation. ``due`` and ``by_policy`` default to the object's state; an undo has already cleared it."""
    try:
        org_id = deletables.organisation_id_of(obj)
        org = db.session.get(Organisation, org_id) if org_id is not None else None
        what = deletables.kind_of(obj)
        vm = deletables.vm_of(obj)
        label = deletables.label_of(obj)
    except Exception:  # noqa: BLE001 - as event(): never fail the deletion that reported it
        log.exception("deletion notification for %r could not be prepared", obj)
        return []
    details = {"object": f"{what}:{obj.id}", "label": label[0].upper() + label[1:],
               "due": due or obj.deletion_due_at, **extra}
    if vm is not None and (_by_policy(obj) if by_policy is None else by_policy):
        return _guarded(kind, org, vm, details, key=_policy_key(vm, details["object"]),
                        people_group=_policy_key(vm, ""), people_window=POLICY_PEOPLE_WINDOW)
    return _guarded(kind, org, vm, details)


def deletion_cancelled(obj: Any, *, due: datetime, by_policy: bool, actor: str) -> list[int]:
    """Tell the people who heard of ``obj``'s deletion that it was undone, and mark their unread
    ``deletion.scheduled`` / ``deletion.imminent`` portal notifications of it read: they are no longer true,
    and the unread count should not keep announcing a deletion that will not happen.

    A retention run's grouped ``deletion.scheduled`` (one for many points) stays as it is: the other points
    it lists are still going.
    """
    try:
        ref = f"{deletables.kind_of(obj)}:{obj.id}"
        vm = deletables.vm_of(obj)
        org_id = deletables.organisation_id_of(obj)
        org = db.session.get(Organisation, org_id) if org_id is not None else None
        keys = {_dedup_key(KINDS["deletion.scheduled"], org, vm, {"object": ref})}
        if vm is not None:
            keys.add(_policy_key(vm, ref))
        now = clock.now()
        for row in db.session.scalars(select(Notification).where(
                Notification.kind.in_(("deletion.scheduled", "deletion.imminent")), Notification.channel == "portal",
                Notification.user_id.is_not(None), Notification.dedup_key.in_(keys), Notification.read_at.is_(None))):
            row.read_at = now
        db.session.commit()
    except Exception:  # noqa: BLE001 - as event(): never fail the undo that reported it
        log.exception("superseded deletion notifications of %r could not be marked read", obj)
        db.session.rollback()
    return deletion_event("deletion.cancelled", obj, due=due, by_policy=by_policy, cancelled_by=actor)


def _by_policy(obj: Any) -> bool:
    """A backup point retention scheduled (a person's request names the person)."""
    return isinstance(obj, BackupPoint) and obj.deletion_requested_by_id is None


def _policy_key(vm: VM, suffix: str) -> str:
    return f"vm:{vm.id}:retention:{suffix}"


def policy_deletions_scheduled(vm: VM, points: list[BackupPoint]) -> list[int]:
    """One ``deletion.scheduled`` for a retention run that let ``points`` of ``vm`` go, listing them."""
    if not points:
        return []
    try:
        count = len(points)
        label = f"{count} backup point{'s' if count != 1 else ''} of {vm.name} (out of its retention policy)"
        listed = [{"id": p.id, "revision": p.revision, "created_at": p.created_at} for p in points[:200]]
        details = {"object": f"retention:vm:{vm.id}", "label": label,
                   "due": min(p.deletion_due_at for p in points if p.deletion_due_at is not None),
                   "points": listed, "count": count}
        org = vm.organisation
    except Exception:  # noqa: BLE001 - as event(): never fail the retention run that reported it
        log.exception("retention notification for VM %s could not be prepared", vm.id)
        return []
    return _guarded("deletion.scheduled", org, vm, details, key=_policy_key(vm, "scheduled"),
                    people_group=_policy_key(vm, ""), people_window=POLICY_PEOPLE_WINDOW)


def deletion_reminders(now: datetime) -> list[str]:
    """``deletion.imminent`` once per deletion request, when it takes effect within a day (for people, a VM's
    policy deletions are grouped: see the module docstring)."""
    hours = float(current_app.config.get("DELETION_NOTICE_HOURS", 24))
    reminded = []
    for model in deletables.KINDS.values():
        query = select(model).where(model.deletion_due_at > now, model.deletion_due_at <= now + timedelta(hours=hours))
        for obj in list(db.session.scalars(query.order_by(model.id))):
            ref = f"{deletables.kind_of(obj)}:{obj.id}"
            vm = obj.vm if isinstance(obj, BackupPoint) else (obj if isinstance(obj, VM) else None)
            org_id = deletables.organisation_id_of(obj)
            key = _policy_key(vm, ref) if vm is not None and _by_policy(obj) else _dedup_key(
                KINDS["deletion.imminent"], db.session.get(Organisation, org_id) if org_id else None, vm,
                {"object": ref})
            if _raised_since("deletion.imminent", key, obj.deletion_requested_at or now - timedelta(days=365)):
                continue
            deletion_event("deletion.imminent", obj)
            reminded.append(ref)
    return reminded


def digest_boundary(now: datetime) -> datetime:
    """The start of the current digest day: today at ``NOTIFY_DIGEST_HOUR`` UTC, or yesterday's if earlier."""
    hour = int(current_app.config["NOTIFY_DIGEST_HOUR"])
    start = datetime.combine(now.date(), time(hour))
    return start if now >= start else datetime.combine(now.date() - timedelta(days=1), time(hour))


def digests(now: datetime) -> list[int]:
    """One digest mail per user whose held mails include one from before the latest digest hour; at most one
    a day per user (a failed digest waits for the next day). Returns the digest rows' ids."""
    boundary = digest_boundary(now)
    held = (select(Notification.user_id).where(Notification.channel == "email", Notification.digest.is_(True),
                                               Notification.state == PENDING, Notification.digest_id.is_(None),
                                               Notification.created_at < boundary).distinct())
    made = []
    for user_id in list(db.session.scalars(held)):
        if db.session.scalar(select(Notification.id).where(Notification.kind == DIGEST_KIND,
                                                           Notification.user_id == user_id,
                                                           Notification.created_at >= boundary).limit(1)):
            continue
        made.append(_make_digest(db.session.get(User, user_id), now))
    return [row.id for row in made if row is not None]


def _make_digest(user: User | None, now: datetime) -> Notification | None:
    if user is None:
        return None
    items = list(db.session.scalars(select(Notification).where(
        Notification.user_id == user.id, Notification.channel == "email", Notification.digest.is_(True),
        Notification.state == PENDING, Notification.digest_id.is_(None)).order_by(Notification.created_at,
                                                                                    Notification.id)))
    if not user.is_active or not current_app.config.get("SMTP_HOST"):
        why = "recipient is no longer active" if not user.is_active else "no SMTP server configured"
        for item in items:
            item.state, item.why = SUPPRESSED, why
        db.session.commit()
        return None
    lines = [f"{len(items)} notification(s) from Lifeboat since the last digest:", ""]
    lines += [f"- {item.created_at:%Y-%m-%d %H:%M} UTC  {item.subject}" for item in items]
    url = str(current_app.config.get("PORTAL_URL") or "").rstrip("/")
    if url:
        lines += ["", f"Notifications and preferences: {url}/notifications"]
    digest = Notification(organisation_id=user.organisation_id, user_id=user.id, channel="email",
                          kind=DIGEST_KIND, subject=f"Lifeboat daily digest: {len(items)} notification(s)",
                          body="\n".join(lines), details={"count": len(items), "date": now.date().isoformat()},
                          state=PENDING, created_at=now)
    db.session.add(digest)
    db.session.flush()
    for item in items:
        item.digest_id = digest.id
        item.why = f"in daily digest #{digest.id}"
    db.session.commit()
    enqueue([digest])
    return digest


def reconcile(now: datetime) -> list[int]:
    """Queue again the sends Redis lost or whose worker died; fail them after the last attempt.

    Also moves due retries of the ``maintenance`` queue from RQ's scheduled registry into the queue, since
    ``lifeboat worker`` runs without RQ's own scheduler.
    """
    from rq import Queue
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    connection = queue.connection()
    _move_due_retries(Queue(QUEUE, connection=connection))
    lost = []
    pending = select(Notification).where(Notification.state == PENDING, Notification.channel.in_(("email", "webhook")),
                                         (Notification.digest.is_(False)) | (Notification.kind == DIGEST_KIND))
    for row in list(db.session.scalars(pending.order_by(Notification.id).limit(500))):
        try:
            job = Job.fetch(row.job_id, connection=connection)
            status = str(getattr(job.get_status(), "value", job.get_status()))
        except NoSuchJobError:
            job, status = None, None
        if status in ("queued", "started", "scheduled", "deferred"):
            continue
        if row.attempts >= max_attempts():
            row.state, row.why = FAILED, f"gave up after {row.attempts} attempts (worker or queue lost); {row.why}"
            db.session.commit()
            continue
        if job is not None:
            job.delete()
        enqueue([row])
        lost.append(row.id)
    return lost


def _move_due_retries(target: Any) -> None:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry

    registry = ScheduledJobRegistry(queue=target)  # type: ignore[no-untyped-call]  # RQ's __init__ is untyped
    # RQ's registries keep wall-clock time (the portal clock may be pinned in tests)
    for job_id in registry.get_jobs_to_schedule(int(wall_clock.time())):
        registry.remove(job_id)
        try:
            target.enqueue_job(Job.fetch(job_id, connection=target.connection))
        except NoSuchJobError:
            continue


# -- the notification centre ------------------------------------------------------------------------------

def inbox_query(user: User) -> Any:
    return (select(Notification).where(Notification.user_id == user.id, Notification.channel == "portal",
                                       Notification.state == SENT)
            .order_by(Notification.created_at.desc(), Notification.id.desc()))


def unread_count(user: User) -> int:
    return int(db.session.scalar(select(func.count(Notification.id)).where(
        Notification.user_id == user.id, Notification.channel == "portal", Notification.state == SENT,
        Notification.read_at.is_(None))) or 0)


def recent_mail(user: User, limit: int = 20) -> list[Notification]:
    """The user's latest email notifications with their state, so a failed mail is visible in the portal."""
    return list(db.session.scalars(select(Notification).where(Notification.user_id == user.id,
                                                              Notification.channel == "email")
                                   .order_by(Notification.id.desc()).limit(limit)))


def mark_read(user: User, notification_id: int | None = None) -> int:
    """Mark one (or every) portal notification of ``user`` read; another user's id is not found (0).

    Not audited: reading one's own notifications changes nothing anybody else sees.
    """
    query = select(Notification).where(Notification.user_id == user.id, Notification.channel == "portal",
                                       Notification.read_at.is_(None))
    if notification_id is not None:
        query = query.where(Notification.id == notification_id)
    now, count = clock.now(), 0
    for row in db.session.scalars(query):
        row.read_at = now
        count += 1
    db.session.commit()
    return count


def own_notification(user: User, notification_id: int) -> Notification | None:
    return db.session.scalar(select(Notification).where(Notification.id == notification_id,
                                                        Notification.user_id == user.id,
                                                        Notification.channel == "portal"))



# -- organisation notices ---------------------------------------------------------------------------------

NOTICE_CHANNEL = "portal"
DELETION_NOTICE, BLOCKED_NOTICE, RPO_NOTICE, TIER_NOTICE = ("deletion.scheduled", "deletion.blocked", "rpo.missed",
                                                            "tier.changed")


def notice(kind: str, organisation_id: int | None, message: str, *, key: str = "", vm: VM | None = None,
           at: datetime | None = None, expires_at: datetime | None = None) -> Notification:
    """Add the organisation's notice ``kind`` (``key`` tells two of one kind apart) to the session.

    Part of the caller's transaction, so nothing is committed here: a tier change and its notice, or a
    deletion request and its banner, land together or not at all.
    """
    moment = at or clock.now()
    row = Notification(organisation_id=organisation_id, user_id=None, channel=NOTICE_CHANNEL, kind=kind,
                       dedup_key=key[:120], vm_id=vm.id if vm is not None else None,
                       vm_name=vm.name if vm is not None else "", subject=" ".join(message.split())[:300],
                       body=message, details={}, state=SENT, sent_at=moment, created_at=moment,
                       expires_at=expires_at)
    db.session.add(row)
    return row


def notices_query(kind: str | None = None, key: str | None = None, *,
                  organisation_id: int | None = None) -> Select[tuple[Notification]]:
    """Notices not dismissed, of ``kind`` and ``key`` and ``organisation_id`` where given."""
    query = select(Notification).where(Notification.channel == NOTICE_CHANNEL, Notification.user_id.is_(None),
                                       Notification.dismissed_at.is_(None))
    if kind is not None:
        query = query.where(Notification.kind == kind)
    if key is not None:
        query = query.where(Notification.dedup_key == key)
    if organisation_id is not None:
        query = query.where(Notification.organisation_id == organisation_id)
    return query


def open_notices(kind: str | None = None, key: str | None = None, *,
                 organisation_id: int | None = None) -> list[Notification]:
    return list(db.session.scalars(notices_query(kind, key, organisation_id=organisation_id)
                                   .order_by(Notification.id)))


def dismiss_notices(moment: datetime, kind: str | None = None, key: str | None = None, *,
                    organisation_id: int | None = None) -> int:
    """End the matching notices (no longer true); in the caller's transaction. Returns how many."""
    found = open_notices(kind, key, organisation_id=organisation_id)
    for row in found:
        row.dismissed_at = moment
    return len(found)
