"""Issue 11, item 9: Ctrl-C (SIGINT to the process group) and SIGTERM to make stop every process ``make run``
started: the web server, the workers, the scheduler and the embedded Redis (and, where Ceph is installed, the
loopback cluster's ceph-mon and ceph-osd and the instant-restore source). The bound below is generous (the
workers finish a running job first); the assertion is that nothing is left, not how fast."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import CEPH_PARTS, Demo, free_port, port_is_free, start_demo

STOP_BOUND = 60.0


@pytest.fixture
def started(demo_home: Path, request: pytest.FixtureRequest) -> Iterator[Demo]:
    via_make, sigint = request.param
    demo = start_demo(demo_home / "var", free_port(), via_make=via_make, sigint=sigint)
    try:
        demo.wait_until_up()
        yield demo
    finally:
        demo.kill_all()


def assert_nothing_left(demo: Demo) -> None:
    left = demo.wait_until_gone(STOP_BOUND)
    assert not left, f"still running {STOP_BOUND:.0f} s after the signal: {left}\n{demo.tail()}"
    demo.process.wait(timeout=10)
    assert port_is_free(demo.port)


def assert_all_stopped(demo: Demo) -> None:
    assert_nothing_left(demo)
    assert not (demo.var / "redis.url").exists()  # the embedded Redis removed its pointer as it stopped


@pytest.mark.parametrize("started", [(True, "default"), (True, "ignored"), (False, "ignored")], indirect=True,
                         ids=["make-ctrl-c", "make-started-with-sigint-ignored", "script-started-with-sigint-ignored"])
def test_ctrl_c_to_the_process_group_stops_everything(started: Demo) -> None:
    names = " ".join(started.seen.values())
    for part in ("redis-server", "lifeboat redis", "lifeboat worker", "lifeboat scheduler", "flask",
                 *(CEPH_PARTS if started.has_ceph() else ())):
        assert part in names
    os.killpg(started.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert_all_stopped(started)


@pytest.mark.parametrize("started", [(True, "default"), (False, "default")], indirect=True, ids=["make", "script"])
def test_sigterm_to_make_or_the_script_alone_stops_everything(started: Demo) -> None:
    os.kill(started.process.pid, signal.SIGTERM)  # the process only, not its group: a service manager's stop
    assert_all_stopped(started)


@pytest.mark.parametrize("started", [(False, "default")], indirect=True, ids=["script"])
def test_a_killed_supervisor_takes_its_children_along(started: Demo) -> None:
    os.kill(started.process.pid, signal.SIGKILL)  # the script exec'd `lifeboat demo run`: this is it
    assert_nothing_left(started)
