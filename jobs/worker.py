"""Workers: each listens to every queue in strict priority order (restores before backups before
maintenance). Run as many as the storage can feed; nothing serialises them but the per-VM lock."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from typing import Any

from portal.services.queue import QUEUES, connection
from portal.supervisor import die_with_parent

from .context import app


def work(burst: bool = False) -> None:
    from rq import Queue, Worker

    redis = connection(app().config)
    queues = [Queue(name, connection=redis) for name in QUEUES]
    Worker(queues, connection=redis).work(burst=burst, with_scheduler=False)


def _child(burst: bool, parent: int) -> None:
    """One of ``run``'s processes: it stops with its parent, however the parent ends (even SIGKILL)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited through fork
    die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl: nobody would stop us
        return
    work(burst)


def run(count: int, burst: bool = False) -> int:
    """Start ``count`` worker processes and wait; Ctrl-C or SIGTERM stops them all.

    The SIGTERM handler is in place before the first process starts and no process starts once it has run:
    a signal that arrives while they start (a supervisor stopping at once) must not leave one behind."""
    if count == 1:
        work(burst)
        return 0
    stopping = False
    processes: list[multiprocessing.Process] = []

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        for n in range(count):
            if stopping:
                break
            process = multiprocessing.Process(target=_child, args=(burst, os.getpid()),
                                              name=f"lifeboat-worker-{n}")
            process.start()
            processes.append(process)
            if stopping:  # the signal came during start(): this one was not yet in the list
                process.terminate()
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        stop()
        for process in processes:
            process.join()
    return 0 if all(p.exitcode == 0 for p in processes) else 1


if __name__ == "__main__":
    sys.exit(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
