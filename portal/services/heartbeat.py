"""Heartbeats of long-running processes, kept as database rows so every web process, ``lifeboat check``
and the metrics endpoint read the same value (an in-memory timestamp would differ per process).

The scheduler beats once per tick; its age is the scheduler's lag. Workers need no rows: RQ registers each
worker in Redis with its own heartbeat and lets the registration expire when the worker dies; ``workers``
reads those registrations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import clock
from ..extensions import db
from ..models import Heartbeat

SCHEDULER = "scheduler"


def beat(name: str, at: datetime | None = None) -> Heartbeat:
    """Record that ``name`` is alive now (committed at once: a beat must not wait for other work)."""
    moment = at or clock.now()
    row = db.session.get(Heartbeat, name)
    if row is None:
        row = Heartbeat(name=name, at=moment)
        db.session.add(row)
    else:
        row.at = moment
    db.session.commit()
    return row


def last(name: str) -> datetime | None:
    row = db.session.get(Heartbeat, name)
    return row.at if row is not None else None


def age_seconds(name: str, now: datetime | None = None) -> float | None:
    """Seconds since ``name`` last beat (never negative); None when it never has."""
    at = last(name)
    if at is None:
        return None
    return max(((now or clock.now()) - at).total_seconds(), 0.0)


@dataclass(frozen=True)
class WorkerBeat:
    name: str
    state: str  # idle | busy | suspended ...
    age_seconds: float  # since its last heartbeat
    queues: tuple[str, ...]


def workers(connection: Any, now: datetime | None = None) -> list[WorkerBeat]:
    """The RQ workers registered in Redis with the age of their last heartbeat (raises when Redis is down).

    An idle RQ worker beats about every ``worker_ttl - 15`` seconds (405 s by default) and its registration
    expires ``worker_ttl + 60`` seconds (480 s) after the last beat, so a listed worker was alive recently.
    """
    from rq import Worker

    moment = (now or clock.now()).replace(tzinfo=UTC)
    found = []
    for worker in Worker.all(connection=connection):
        beat_at = worker.last_heartbeat or worker.birth_date
        age = (moment - beat_at.astimezone(UTC)).total_seconds() if beat_at else float("inf")
        found.append(WorkerBeat(name=worker.name, state=str(worker.get_state()),
                                age_seconds=max(age, 0.0), queues=tuple(worker.queue_names())))
    return sorted(found, key=lambda w: w.name)
