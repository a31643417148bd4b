"""Workers: each listens to every queue in strict priority order (restores before backups before
maintenance). Run as many as the storage can feed; nothing serialises them but the per-VM lock."""

from __future__ import annotations

import multiprocessing
import signal
import sys
from typing import Any

from portal.services.queue import QUEUES, connection

from .context import app


def work(burst: bool = False) -> None:
    from rq import Queue, Worker

    redis = connection(app().config)
    queues = [Queue(name, connection=redis) for name in QUEUES]
    Worker(queues, connection=redis).work(burst=burst, with_scheduler=False)


def run(count: int, burst: bool = False) -> int:
    """Start ``count`` worker processes and wait; Ctrl-C stops them all."""
    if count == 1:
        work(burst)
        return 0
    processes = [multiprocessing.Process(target=work, args=(burst,), name=f"lifeboat-worker-{n}")
                 for n in range(count)]
    for process in processes:
        process.start()

    def stop(*_: Any) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        stop()
        for process in processes:
            process.join()
    return 0 if all(p.exitcode == 0 for p in processes) else 1


if __name__ == "__main__":
    sys.exit(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
