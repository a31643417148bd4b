"""Instant restores, the web side: the web app is the HTTP source Ceph hydrates the new image from.

Any web instance can serve any instant restore: the source is found by the secret in its URL (a column of the
restore), so a worker that dies never strands a running VM, and nothing but the database says what to serve.
The URL answers only while the restore is queued or running; afterwards it is a 404, like any wrong secret.
Damaged chunks are served as zeros (a hydration must run to its end) and recorded in Redis, where the job
picks them up for the restore's report.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from storage.manifest import Range, merge_ranges
from storage.repository import Repository
from storage.serve.answer import Answer, answer
from storage.serve.disk import ServedDisk

from ..extensions import db
from ..models import Restore
from ..models.runs import ACTIVE_STATES
from . import queue

#: served disks kept open per process (each holds a revision's manifest and a few decoded chunks)
CACHED_DISKS = 8
DAMAGE_KEY = "lifeboat:instant:{}:damaged"
SECRET_LENGTH = 43  # secrets.token_urlsafe(32)

_disks: OrderedDict[str, ServedDisk] = OrderedDict()
_lock = threading.Lock()


def source_url(config: Any, restore: Restore, disk: str = "") -> str:
    """Where hypervisors and workers read the backup point of an instant restore from: ``disk.raw`` for a
    point of one disk, ``disks/<name>.raw`` for each disk of a point of several."""
    base = f"{str(config['INSTANT_SOURCE_URL']).rstrip('/')}/instant/{restore.source_secret}"
    return f"{base}/disks/{quote(disk, safe='')}.raw" if disk else f"{base}/disk.raw"


def active_restore(secret: str) -> Restore | None:
    """The queued or running instant restore whose source has this secret; None for any other."""
    if len(secret) != SECRET_LENGTH:
        return None
    return db.session.scalar(select(Restore).where(Restore.source_secret == secret, Restore.kind == "instant",
                                                   Restore.state.in_(ACTIVE_STATES)))


def served_disk(config: Any, restore: Restore, name: str = "") -> ServedDisk | None:
    """The restore's backup point (its disk ``name`` for a point of several) as a served disk (damage as zeros),
    reused across requests; None when the point has no such disk (or several and no name was given)."""
    key = f"{restore.source_secret}/{name}"
    with _lock:
        disk = _disks.get(key)
        if disk is not None:
            _disks.move_to_end(key)
            return disk
    repo = Repository.open(str(config["STORAGE_ROOT"]), restore.vm.repository_name)
    revision = repo.resolve(restore.backup_point.revision)
    if name not in (revision.disk_names if len(revision.disks) > 1 else [""]):
        return None
    disk = ServedDisk(repo, revision.only(name or None), zero_damaged=True)
    with _lock:
        _disks[key] = disk
        while len(_disks) > CACHED_DISKS:
            _disks.popitem(last=False)
    return disk


def serve(config: Any, restore: Restore, method: str, range_header: str | None, name: str = "") -> Answer | None:
    """The answer to one request for the restore's source (None: no such disk); damage it meets is recorded in
    Redis afterwards."""
    disk = served_disk(config, restore, name)
    if disk is None:
        return None
    before = disk.damaged
    reply = answer(disk, method, range_header)
    reply.body = _reporting_damage(config, _damage_key(restore.id, name), disk, before, reply.body)
    return reply


def _damage_key(restore_id: int, disk: str) -> str:
    return DAMAGE_KEY.format(f"{restore_id}:{disk}" if disk else restore_id)


def _reporting_damage(config: Any, key: str, disk: ServedDisk, before: list[Range],
                      body: Iterator[bytes | memoryview]) -> Iterator[bytes]:
    """Pass ``body`` on (as bytes: WSGI servers take nothing else); then record in Redis any damage the disk
    met, so the job can report it."""
    try:
        for piece in body:
            yield bytes(piece)
    finally:
        after = disk.damaged
        if after != before:
            connection = queue.connection(config)
            connection.sadd(key, *(json.dumps(list(r)) for r in after))
            connection.expire(key, 30 * 24 * 3600)


def damage_of(config: Any, restore_id: int, disk: str = "") -> list[Range]:
    """The byte ranges the web app served as zeros for this restore (its disk ``disk``), merged."""
    members = queue.connection(config).smembers(_damage_key(restore_id, disk))
    ranges = [json.loads(m) for m in members]
    return merge_ranges([(int(s), int(e)) for s, e in ranges])
