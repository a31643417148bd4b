"""Run the demo's processes as one: start them in order; on SIGINT, SIGTERM or SIGHUP, or when one of them
exits, stop them all, last started first.

Why not the shell script it replaces: a shell started with SIGINT ignored (``make run &`` from a script, a
CI runner) cannot trap SIGINT, and the children it starts in the background ignore it too, so Ctrl-C left the
embedded Redis, the scheduler and the web server running; and ``make`` passed SIGTERM only to the ``sh -c``
of its recipe. Python sets its handlers whatever it inherited. Each child gets a process group of its own (so
a terminal's Ctrl-C reaches the supervisor alone, and each child gets one SIGTERM, which the RQ worker reads
as "finish the current job"), no stdin, and SIGTERM should the supervisor die (``PR_SET_PDEATHSIG``). What a
child's group still holds after the grace period is killed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

PR_SET_PDEATHSIG = 1
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(Exception):  # noqa: N818 - a request, not an error
    """A signal asked the supervisor to stop everything."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class ChildFailed(Exception):
    """{name} exited with {code}."""

    def __init__(self, name: str, code: int) -> None:
        super().__init__(f"{name} exited with {code}")
        self.name, self.code = name, code


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def die_with_parent() -> None:
    """In a child between fork and exec: the kernel sends it SIGTERM when its parent dies (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_setup(parent: int) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        die_with_parent()
        if os.getppid() != parent:  # the supervisor died before prctl: nobody would stop us
            os._exit(1)

    return setup


class Supervisor:
    def __init__(self, env: dict[str, str], grace: float = 15.0, say: Callable[[str], None] = print) -> None:
        self.env = env
        self.grace = grace
        self.say = say
        self.children: list[Child] = []
        self._signals = 0

    def __enter__(self) -> Supervisor:
        for signum in SIGNALS:
            signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            raise Stopped(signum)
        # A second Ctrl-C while stopping: stop waiting for the children, kill what is left at once.
        self.grace = 0

    def _spawn(self, argv: Sequence[str], output: str | None = None) -> subprocess.Popen[bytes]:
        """``output``: a log file to append the child's stdout and stderr to (else the supervisor's own)."""
        out = open(output, "ab") if output else None  # noqa: SIM115 - the child holds it; ours closes below
        try:
            return subprocess.Popen(  # noqa: S603 - our own programs
                list(argv), env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, process_group=0,
                preexec_fn=_child_setup(os.getpid()),  # noqa: PLW1509 - the supervisor has no threads
            )
        finally:
            if out:
                out.close()

    def step(self, name: str, argv: Sequence[str], output: str | None = None) -> None:
        """Run a setup step to its end (stopped with the rest on a signal); a failure raises ChildFailed."""
        child = self.start(name, argv, output)
        code = child.process.wait()
        self.children.remove(child)
        if code:
            raise ChildFailed(name, code)

    def start(self, name: str, argv: Sequence[str], output: str | None = None) -> Child:
        child = Child(name, self._spawn(argv, output))
        self.children.append(child)
        return child

    def wait_for(self, ready: Callable[[], bool], child: Child, timeout: float) -> bool:
        """Wait until ``ready()`` (False after ``timeout`` s); ChildFailed when ``child`` exits meanwhile."""
        deadline = time.monotonic() + timeout
        while not ready():
            code = child.process.poll()
            if code is not None:
                raise ChildFailed(child.name, code)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def wait(self) -> None:
        """Until a child exits (ChildFailed) or a signal arrives (Stopped)."""
        while True:
            for child in self.children:
                code = child.process.poll()
                if code is not None:
                    raise ChildFailed(child.name, code)
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM each child, last started first, waiting up to the grace period; then kill its group."""
        self._signals = max(self._signals, 1)  # a signal from now on only cuts the grace period short
        self.stop_newest(len(self.children))

    def stop_newest(self, count: int) -> None:
        """Stop the ``count`` children started last (newest first), as ``stop`` does: a part that failed to
        start, while the rest runs on."""
        for _ in range(min(count, len(self.children))):
            child = self.children.pop()
            process = child.process
            if process.poll() is None:
                try:
                    process.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + self.grace
                while process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                if process.poll() is None:
                    self.say(f"lifeboat demo: {child.name} did not stop within {self.grace:.0f} s; killing it")
            _kill_group(process.pid)
            process.wait()


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left in a child's process group (a stray grandchild; the child if it did not stop)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def exit_code(exc: BaseException) -> int:
    """The shell's convention: 128 + the signal's number; 1 for a child that failed."""
    if isinstance(exc, Stopped):
        return 128 + exc.signum
    return 1
