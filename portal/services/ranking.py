"""Re-ranking queued restores when what decides their class changes (a tier's terms, an organisation's tier,
a VM's business-critical flag).

A queued restore's class is written on its row when it is requested (the page shows it, the job goes to that
class's queue). When the inputs of ``priority.classify`` change, every restore still waiting gets its class
and reason again: rows first (committed, audited as ``restore.rerank``), then each job moves to its new
class's queue, and the queue is put back in the order ``eta.waiting_order`` gives, so the queue positions
the pages show are the order workers take them in. A job a worker has already taken is left alone (it
runs); a job Redis lost is re-queued by the reconciler on the row's new class.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import VM, Organisation, Restore, User
from ..models.runs import QUEUED
from . import audit, eta, queue
from .priority import priority_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Moved:
    restore_id: int
    before: str
    after: str


def rerank(actor: User | str, *, organisation_ids: Iterable[int] = (), vm_ids: Iterable[int] = ()) -> list[Moved]:
    """Give the queued restores of these organisations' or VMs' VMs their current class; return the moves."""
    orgs, vms = list(organisation_ids), list(vm_ids)
    if not orgs and not vms:
        return []
    query = (select(Restore).join(VM, VM.id == Restore.vm_id).where(Restore.state == QUEUED)
             .options(joinedload(Restore.vm).joinedload(VM.organisation).joinedload(Organisation.tier),
                      joinedload(Restore.vm).joinedload(VM.policy)))
    query = query.where(VM.organisation_id.in_(orgs) | VM.id.in_(vms))
    moved: list[Moved] = []
    for restore in db.session.scalars(query).unique():
        priority = priority_of(restore.vm)
        if (priority.klass, priority.reason) == (restore.priority_class, restore.priority_reason):
            continue
        if priority.klass != restore.priority_class:
            moved.append(Moved(restore.id, restore.priority_class, priority.klass))
            audit.record(actor, "restore.rerank", restore.vm,
                         before={"restore": restore.id, "class": restore.priority_class},
                         after={"restore": restore.id, "class": priority.klass, "reason": priority.reason})
        restore.priority_class, restore.priority_reason = priority.klass, priority.reason
    db.session.commit()
    if moved:
        _requeue(moved)
    return moved


def _requeue(moved: list[Moved]) -> None:
    """Move the jobs (rows are committed), then order every queue that received one.

    Redis unreachable: the rows keep their new class and the reconciler moves the jobs (``heal``) on a
    later tick; the change that caused the re-rank is not refused for it.
    """
    from redis.exceptions import RedisError

    rows = {r.id: r for r in db.session.scalars(select(Restore).where(Restore.id.in_([m.restore_id for m in moved])))}
    try:
        for move in moved:
            row = rows[move.restore_id]
            queue.move(row.job_id, queue.restore_queue(move.before), queue.restore_queue(move.after))
        for klass in sorted({m.after for m in moved}):
            arrange(klass)
    except (RedisError, queue.NoRedis) as exc:
        log.warning("re-ranked %d restore(s); their jobs move on the reconciler's next tick: %s", len(moved), exc)


def arrange(klass: str) -> None:
    """Put the class's queue in the order the queue positions are computed in (``eta.waiting_order``)."""
    waiting = db.session.scalars(select(Restore).where(Restore.state == QUEUED, Restore.priority_class == klass))
    queue.arrange(queue.restore_queue(klass), [r.job_id for r in sorted(waiting, key=eta.waiting_order)])


def heal(row: Restore, origin: str) -> bool:
    """Move a waiting job found on another queue than its row's class (a re-rank Redis missed); True if moved."""
    target = queue.queue_of(row)
    if origin == target or not queue.move(row.job_id, origin, target):
        return False
    arrange(row.priority_class)
    return True
