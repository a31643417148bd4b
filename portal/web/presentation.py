"""How times, sizes and states read on every page: one filter each, so no page mixes "838890 B" with "4.0 MiB" or
"2026-12-04 18:25" with "3 min ago".

- ``when``: a ``<time>`` element whose text is relative ("3 min ago", "in 2 days") and whose ``title`` and
  ``datetime`` carry the absolute UTC time, so hovering (or a screen reader's description) gives the exact moment.
  Relative to the moment the page is rendered: the pages that change (restores, queues) poll and re-render.
- ``size``: bytes in binary units with one decimal, always with a unit ("819.2 KiB", never "838890 B").
- ``state_tone``: the colour family of a state name, the one place that decides that "late" is a warning and
  "damaged" an error (the ``badge`` macro in templates/_macros.html uses it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import url_for
from flask_login import current_user
from markupsafe import Markup

from . import bp

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")

#: state name -> tone (a CSS class): good, warn, bad, busy (in progress), idle (neutral)
TONES = {
    **dict.fromkeys(("ok", "verified", "done", "usable", "healthy", "passed", "up", "sent", "delivered",
                     "complete", "completed", "resolved", "restore-tested", "active", "enabled", "protected"), "good"),
    **dict.fromkeys(("late", "warn", "warning", "unverified", "pending", "degraded", "maintenance", "upcoming",
                     "partial", "deletion", "retrying", "stale"), "warn"),
    **dict.fromkeys(("damaged", "distrusted", "failed", "missed", "none", "error", "down", "disaster", "refused",
                     "dead", "lost", "overdue"), "bad"),
    **dict.fromkeys(("running", "queued", "hydrating", "verifying", "in_progress", "started", "scheduled",
                     "planned", "open"), "busy"),
}


def as_utc(moment: datetime) -> datetime:
    """The database stores naive UTC times; an aware time is converted. Both compare after this."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def relative(moment: datetime, now: datetime) -> str:
    """``moment`` as people say it relative to ``now``: "just now", "5 min ago", "in 3 h", "2 days ago"."""
    seconds = (as_utc(now) - as_utc(moment)).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "just now" if not future else "in a moment"
    if seconds < 90 * 60:
        amount = f"{max(1, round(seconds / 60))} min"
    elif seconds < 36 * 3600:
        amount = f"{round(seconds / 3600)} h"
    elif seconds < 60 * 86400:
        amount = f"{round(seconds / 86400)} days"
    else:
        return as_utc(moment).strftime("%Y-%m-%d")  # far away: the date says more than "14 months ago"
    return f"in {amount}" if future else f"{amount} ago"


def absolute(moment: datetime) -> str:
    """The exact moment, always in UTC and always saying so."""
    return as_utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def when_markup(moment: datetime | None, now: datetime | None = None, *, empty: str = "never") -> Markup:
    """A ``<time>`` with the relative text and the absolute UTC time as ``title`` (see the module docstring)."""
    if moment is None:
        return Markup('<span class="never">{}</span>').format(empty)
    now = now or datetime.now(UTC)
    iso = as_utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, absolute(moment), relative(moment, now))


def human_size(n: int | float | None) -> str:
    """Bytes in binary units, one decimal above bytes: 838890 -> "819.2 KiB"; None -> "—"."""
    if n is None:
        return "—"
    value = float(n)
    for unit in UNITS:
        if abs(value) < 1024 or unit == UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def duration(seconds: float | None) -> str:
    """A duration for people: "0.4 s", "42 s", "3 min 5 s", "2 h 10 min"."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def state_tone(state: str | None) -> str:
    """The colour family of a state (``TONES``); unknown states are neutral rather than guessed."""
    return TONES.get((state or "").lower(), "idle")


@bp.app_template_filter("when")
def when_filter(moment: datetime | None, empty: str = "never") -> Markup:
    return when_markup(moment, empty=empty)


@bp.app_template_filter("size")
def size_filter(n: int | float | None) -> str:
    return human_size(n)


@bp.app_template_filter("duration")
def duration_filter(seconds: float | None) -> str:
    return duration(seconds)


@bp.app_template_filter("utc")
def utc_filter(moment: datetime | None) -> Markup:
    """The absolute UTC time as the text, where a window is planned ahead (maintenance): people plan by the clock."""
    if moment is None:
        return Markup("—")
    iso = as_utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, relative(moment, datetime.now(UTC)),
                                                                    absolute(moment))


@bp.app_template_global()
def tone(state: str | None) -> str:
    return state_tone(state)


@bp.app_template_global()
def notification_link(kind: str, details: dict[str, Any] | None, vm_id: int | None) -> str | None:
    """Where a notification's object lives: the restore, the recycle bin for a deletion, else the VM.

    The notification is the reader's own (the centre lists no one else's); the page linked checks access again.
    """
    details = details or {}
    restore = details.get("restore")
    if kind.startswith("restore.") and isinstance(restore, int):
        return url_for("web.restore_detail", restore_id=restore)
    if kind.startswith("deletion."):
        return url_for("web.recycle_bin")
    if vm_id is not None:
        return url_for("web.vm_detail", vm_id=vm_id)
    return None


@bp.app_template_global()
def mail_why(why: str) -> str:
    """Why an email was not sent, for the reader: the server's configuration is the operator's business."""
    if current_user.is_authenticated and current_user.is_operator:
        return why
    return "email is not set up for this portal yet; the portal shows everything" if "SMTP" in why else why

