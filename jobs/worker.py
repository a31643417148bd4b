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

#: how often a worker's command channel (RQ's stop-job / kill-horse / shutdown) looks for a message; also the
#: longest a worker waits for that listener when it stops
COMMAND_POLL_SECONDS = 1.0


def _worker_class() -> type[Any]:
    from rq import Worker

    class LifeboatWorker(Worker):
        """RQ's worker, with its command channel polled every second instead of every 60 s: redis-py 8 waits
        for the listener thread when the worker stops, so a SIGTERM (Ctrl-C on ``make run``, a service manager's
        stop) took up to a minute longer than the job it let finish."""

        def subscribe(self) -> None:
            self.pubsub = self.connection.pubsub()
            self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
            self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # rq declares it None
                sleep_time=COMMAND_POLL_SECONDS, daemon=True, exception_handler=self._pubsub_exception_handler)

    return LifeboatWorker


def work(burst: bool = False) -> None:
    from rq import Queue

    redis = connection(app().config)
    queues = [Queue(name, connection=redis) for name in QUEUES]
    _worker_class()(queues, connection=redis).work(burst=burst, with_scheduler=False)


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
