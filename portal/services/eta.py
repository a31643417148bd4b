"""Queue positions and ETAs of restores, from the measured throughput of recent restores and fire drills.

One model for every page that shows them (a restore's page, the status page, the disaster board, the
customer dashboard during a disaster, the API), computed by ``queue`` (``estimate`` is one row of it):

- **Order.** Workers take running restores to the end, then queued ones by priority class, and within a
  class in the order they were requested (``waiting_order``; the queues are FIFO per class, and re-ranking
  puts a moved job back in that order, ``portal.services.ranking``).
- **Position** of a queued restore = 1 + the number of restores that will start before it (the queued
  restores ahead of it in that order; running ones have started already). 1 = next to start. Running and
  finished restores have no position.
- **ETA** = the time until the restore finishes: the work ahead of it (what is left of the running
  restores, then the queued restores before it, ``workers`` at a time, each worker taking the next one when
  it is free: list scheduling) plus its own size, at the measured throughput of one restore. Nothing
  measured yet (no full restore or fire drill finished here): the ETA is unknown (None), never a guess.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .. import clock
from ..extensions import db
from ..models import FireDrill, Restore
from ..models.runs import ACTIVE_STATES, DONE, QUEUED, RUNNING
from .priority import CLASSES

RECENT = 20


@dataclass(frozen=True)
class Estimate:
    position: int | None  # 1 + restores that will start before this one; None unless queued
    bytes_per_second: float | None  # measured throughput of one restore; None: nothing measured yet
    seconds_left: float | None  # until it finishes, the work ahead included; None: unknown or finished

    @property
    def before(self) -> int:
        """Restores (any tenant's) that will start before this one."""
        return self.position - 1 if self.position else 0


def throughput() -> float | None:
    """Bytes/second of one restore, from recent full restores and fire drills (they are I/O bound).

    None when neither has finished here yet: an ETA from an assumed speed would be an invented one.
    """
    restores = db.session.scalars(
        select(Restore).where(Restore.state == DONE, Restore.kind == "full", Restore.started_at.isnot(None),
                              Restore.finished_at.isnot(None), Restore.bytes_total > 0)
        .order_by(Restore.finished_at.desc()).limit(RECENT)).all()
    drills = db.session.scalars(
        select(FireDrill).where(FireDrill.state == DONE, FireDrill.seconds > 0, FireDrill.bytes_total > 0)
        .order_by(FireDrill.finished_at.desc()).limit(RECENT)).all()
    total = sum(r.bytes_total for r in restores) + sum(d.bytes_total for d in drills)
    seconds = sum(max((r.finished_at - r.started_at).total_seconds(), 0.001)
                  for r in restores if r.finished_at and r.started_at) + sum(d.seconds for d in drills)
    return total / seconds if total > 0 and seconds > 0 else None


def simulate(sizes: Iterable[int], workers: int, bytes_per_second: float,
             busy: Iterable[float] = ()) -> list[float]:
    """Seconds from now until each restore (in this order) finishes on ``workers`` workers.

    ``busy`` holds the seconds left of restores already running; each occupies a worker until then.
    """
    return schedule([max(size, 0) / bytes_per_second for size in sizes], workers, busy)[0]


def schedule(durations: Iterable[float], workers: int, busy: Iterable[float] = ()) -> tuple[list[float], list[float]]:
    """List scheduling: when each job (in this order) finishes, each worker taking the next one when it is free;
    and when each worker is free afterwards (to chain a second phase: ``busy`` of the next call)."""
    free = sorted(busy)
    free += [0.0] * max(workers - len(free), 0)
    heapq.heapify(free)
    finishes = []
    for duration in durations:
        end = heapq.heappop(free) + duration
        finishes.append(end)
        heapq.heappush(free, end)
    return finishes, sorted(free)


def usable_seconds() -> float | None:
    """Seconds an instant restore takes until its image is usable, from recent ones; None: none measured yet."""
    measured = [float(r.report["usable_seconds"]) for r in db.session.scalars(
        select(Restore).where(Restore.kind == "instant", Restore.usable_at.isnot(None))
        .order_by(Restore.usable_at.desc()).limit(RECENT))
        if isinstance((r.report or {}).get("usable_seconds"), int | float)]
    return sum(measured) / len(measured) if measured else None


def hydration_throughput() -> float | None:
    """Bytes/second of one hydration, from recent finished instant restores (from usable, or from the start of
    their hydration job when it waited in the queue, to done); None: none finished yet."""
    rows = db.session.scalars(
        select(Restore).where(Restore.kind == "instant", Restore.state == DONE, Restore.usable_at.isnot(None),
                              Restore.finished_at.isnot(None), Restore.bytes_total > 0)
        .order_by(Restore.finished_at.desc()).limit(RECENT)).all()
    total = sum(r.bytes_total for r in rows)
    seconds = sum(max((r.finished_at - max(r.usable_at, r.started_at or r.usable_at)).total_seconds(), 0.001)
                  for r in rows if r.finished_at and r.usable_at)
    return total / seconds if total > 0 and seconds > 0 else None


def project(sizes: list[int], workers: int, bytes_per_second: float | None,
            busy: Iterable[float] = ()) -> list[float | None]:
    """``simulate``, or unknown for every restore while nothing has been measured."""
    if bytes_per_second is None:
        return [None] * len(sizes)
    return list(simulate(sizes, workers, bytes_per_second, busy))


def size_of(restore: Restore) -> int:
    return restore.bytes_total or restore.backup_point.size_bytes


def waiting_order(restore: Restore) -> tuple[int, datetime, int]:
    """The order queued restores start in: class, then request time (the queues are FIFO per class)."""
    rank = CLASSES.index(restore.priority_class) if restore.priority_class in CLASSES else len(CLASSES)
    return rank, restore.created_at, restore.id


def queue(workers: int = 1, bytes_per_second: float | None = None) -> dict[int, Estimate]:
    """Every active restore's estimate, in one pass over the queue (a disaster queues one per VM at once)."""
    speed = bytes_per_second or throughput()
    active = db.session.scalars(select(Restore).where(Restore.state.in_(ACTIVE_STATES))
                                .options(joinedload(Restore.backup_point))).all()
    running = sorted((r for r in active if r.state == RUNNING), key=lambda r: (r.started_at or clock.now(), r.id))
    queued = sorted((r for r in active if r.state == QUEUED), key=waiting_order)
    left = [max(size_of(r) - r.bytes_done, 0) / speed for r in running] if speed else []
    result = {r.id: Estimate(None, speed, left[n] if speed else None) for n, r in enumerate(running)}
    finishes = project([size_of(r) for r in queued], max(workers, 1), speed, busy=left)
    for index, (restore, finish) in enumerate(zip(queued, finishes, strict=True)):
        result[restore.id] = Estimate(index + 1, speed, finish)
    return result


def estimate(restore: Restore, workers: int = 1) -> Estimate:
    """The restore's position and time left; finished restores have neither."""
    if restore.state not in (QUEUED, RUNNING):
        return Estimate(None, throughput(), None)
    return queue(workers).get(restore.id) or Estimate(None, throughput(), None)


def finished_in(restore: Restore) -> float | None:
    if restore.started_at and restore.finished_at:
        return (restore.finished_at - restore.started_at).total_seconds()
    if restore.started_at:
        return (clock.now() - restore.started_at).total_seconds()
    return None


@dataclass(frozen=True)
class Hydration:
    bytes_per_second: float
    seconds_left: float | None


def hydration_of(restore: Restore) -> Hydration | None:
    """Throughput and time left of an instant restore's hydration, measured since the image became usable."""
    if restore.kind != "instant" or restore.usable_at is None or restore.state != RUNNING or not restore.bytes_done:
        return None
    since = max(restore.usable_at, restore.started_at or restore.usable_at)  # a queued hydration: its own start
    seconds = max((clock.now() - since).total_seconds(), 0.001)
    rate = restore.bytes_done / seconds
    left = max(restore.bytes_total - restore.bytes_done, 0) / rate if rate > 0 else None
    return Hydration(rate, left)
