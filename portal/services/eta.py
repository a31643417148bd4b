"""Queue position and ETA of a restore, from the measured throughput of recent restores."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from .. import clock
from ..extensions import db
from ..models import Restore
from ..models.runs import DONE, QUEUED, RUNNING
from .priority import CLASSES

DEFAULT_BYTES_PER_SECOND = 200 * 1024 * 1024  # until a restore has been measured here
RECENT = 20


@dataclass(frozen=True)
class Estimate:
    position: int | None  # 1 = next to start in its class order; None once running or finished
    ahead: int
    bytes_per_second: float
    seconds_left: float | None


def throughput() -> float:
    """Mean bytes/second of the most recent finished restores (full restores only: they are I/O bound)."""
    rows = db.session.scalars(
        select(Restore).where(Restore.state == DONE, Restore.kind == "full", Restore.started_at.isnot(None),
                              Restore.finished_at.isnot(None))
        .order_by(Restore.finished_at.desc()).limit(RECENT)
    ).all()
    seconds = sum(max((r.finished_at - r.started_at).total_seconds(), 0.001) for r in rows  # type: ignore[operator]
                  if r.finished_at and r.started_at)
    total = sum(r.bytes_total for r in rows)
    return total / seconds if rows and seconds > 0 and total > 0 else DEFAULT_BYTES_PER_SECOND


def _size(restore: Restore) -> int:
    return restore.bytes_total or restore.backup_point.size_bytes


def estimate(restore: Restore) -> Estimate:
    """Restores ahead are those queued in a higher class, or earlier in the same class, plus running ones."""
    speed = throughput()
    if restore.state == RUNNING:
        left = max(_size(restore) - restore.bytes_done, 0)
        return Estimate(None, 0, speed, left / speed)
    if restore.state != QUEUED:
        return Estimate(None, 0, speed, None)
    rank = CLASSES.index(restore.priority_class)
    waiting = db.session.scalars(select(Restore).where(Restore.state.in_((QUEUED, RUNNING)))).all()
    ahead = [r for r in waiting if r.id != restore.id and (
        r.state == RUNNING or CLASSES.index(r.priority_class) < rank
        or (r.priority_class == restore.priority_class and (r.created_at, r.id) < (restore.created_at, restore.id)))]
    work = sum(max(_size(r) - r.bytes_done, 0) for r in ahead) + _size(restore)
    return Estimate(len([r for r in ahead if r.state == QUEUED]) + 1, len(ahead), speed, work / speed)


def finished_in(restore: Restore) -> float | None:
    if restore.started_at and restore.finished_at:
        return (restore.finished_at - restore.started_at).total_seconds()
    if restore.started_at:
        return (clock.now() - restore.started_at).total_seconds()
    return None
