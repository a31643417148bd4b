"""``make run`` for real: the demo script on a free port with its own var folder, and what it started.

A demo is started in a session of its own (so the test sees every process it started, by session id in
/proc) with a chosen SIGINT disposition: a terminal's Ctrl-C reaches a process whose SIGINT is the default,
and ``make run &`` from a script (no job control) starts it with SIGINT ignored. Every process the demo
started also carries ``LIFEBOAT_VAR=<its var folder>`` in its environment, which finds daemons that left the
session, as does the embedded Redis's socket path on its command line (a daemon may rewrite its environment).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parents[1]
START_TIMEOUT = 300.0  # the first start builds the demo images and backs them up
CEPH_UP = "loopback Ceph cluster up"  # what portal.demo_run prints once the cluster runs
CEPH_PARTS = ("ceph-mon", "ceph-osd", "lifeboat instant-source")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a person's terminal: no LIFEBOAT_* settings (not even the tests' instance path)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFEBOAT_")}
    env.update(extra)
    return env


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _marked(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return marker in handle.read().split(b"\0")
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    var: Path
    port: int
    log: Path
    seen: dict[int, str] = field(default_factory=dict)
    redis_socket: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def processes(self) -> dict[int, str]:
        """Every live process of this demo: in its session, or carrying its LIFEBOAT_VAR."""
        marker = f"LIFEBOAT_VAR={self.var}".encode()
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            pid = int(entry)
            fields = _stat(pid)
            if fields is None or fields[0] in ("Z", "X"):
                continue
            command = _cmdline(pid)
            if (int(fields[3]) == self.process.pid or _marked(pid, marker)
                    or (self.redis_socket and self.redis_socket in command)):
                found[pid] = command
        return found

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the demo exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:  # noqa: S310 - loopback
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"the demo did not answer within {START_TIMEOUT:.0f} s:\n{self.tail()}")
        # The workers, scheduler and Redis start before the web app; wait until they are all there.
        for _ in range(100):
            pointer = self.var / "redis.url"
            if pointer.exists():
                self.redis_socket = pointer.read_text(encoding="utf-8").strip().removeprefix("unix://")
            self.seen = self.processes()
            names = " ".join(self.seen.values())
            # With Ceph installed the demo also runs its loopback cluster and the instant-restore source.
            parts = ("redis-server", "lifeboat worker", "lifeboat scheduler",
                     *(CEPH_PARTS if self.has_ceph() else ()))
            if all(word in names for word in parts):
                return
            time.sleep(0.1)
        pytest.fail(f"the demo lacks a process: {self.seen}\n{self.tail()}")

    def has_ceph(self) -> bool:
        """Whether this demo said it started its loopback Ceph cluster."""
        return CEPH_UP in self.tail(full=True)

    def wait_until_gone(self, timeout: float) -> dict[int, str]:
        """The processes seen at start (and any new one of this demo) still alive after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is None:
                left = {pid: cmd for pid, cmd in self.seen.items() if alive(pid)}
            else:
                left = {pid: cmd for pid, cmd in self.seen.items() if alive(pid)}
                left.update(self.processes())
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def tail(self, full: bool = False) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text if full else text[-3000:]

    def kill_all(self) -> None:
        """Clean-up after a failed test: SIGKILL whatever of this demo still runs."""
        for pid in {**self.seen, **self.processes()}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.process.wait(timeout=30)


def start_demo(var: Path, port: int, *, via_make: bool = False, sigint: str = "default",
               env: dict[str, str] | None = None) -> Demo:
    """Start ``scripts/run-demo.sh`` (or ``make run``) in a session of its own, like a terminal would."""
    disposition = signal.SIG_IGN if sigint == "ignored" else signal.SIG_DFL

    def as_in_a_terminal() -> None:
        signal.signal(signal.SIGINT, disposition)
        signal.signal(signal.SIGQUIT, disposition)

    if via_make:
        # -o: never reinstall or install system packages from inside a test (make test did both).
        argv = ["make", "-s", "-C", str(REPO), "-o", f"{VENV}/.installed", "-o", "sysdeps", "run",
                f"PORT={port}", f"VENV={VENV}"]
    else:
        argv = ["bash", str(REPO / "scripts" / "run-demo.sh")]
    log = var.parent / f"demo-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own script
            argv, cwd=REPO, env=clean_env(LIFEBOAT_VAR=str(var), PORT=str(port), BIN=str(VENV / "bin"), **(env or {})),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=as_in_a_terminal,  # noqa: PLW1509 - a single-threaded moment of the test
        )
    return Demo(process, var, port, log)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder standing in for the project folder: ``.venv`` (a link to this venv) and ``var``."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    home = tmp_path_factory.mktemp("demo")
    (home / ".venv").symlink_to(VENV)
    yield home


@pytest.fixture
def demo(demo_home: Path) -> Iterator[Demo]:
    """A running demo on a free port (its var folder is shared by the module's tests: seeded once)."""
    running = start_demo(demo_home / "var", free_port())
    try:
        running.wait_until_up()
        yield running
    finally:
        if running.process.poll() is None or running.processes():
            running.kill_all()
