"""Counts of the engine's costly operations: fsyncs, cluster connections, snapshot operations, librbd calls.

Why: "an incremental backup costs what it reads" is a claim about structure (how many fsyncs, snapshot
operations and reads a backup issues, and that none of them grows with the image rather than with the change),
which tests can check without timing anything, and benchmarks report beside their seconds. Counting is a dict
update under a lock, always on; ``counting()`` gives the operations of one stretch of code, and ``events``
their order (e.g. that a snapshot removal was issued before the snapshot create it shares a monitor round with).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_lock = threading.Lock()
_totals: Counter[str] = Counter()
_events: list[str] = []
_recording = 0
MAX_EVENTS = 10_000  # a runaway loop must not fill memory through the event log


@dataclass
class Counted:
    """What ran inside one ``counting()`` block: ``counts[name]`` and the ordered ``events``."""

    counts: Counter[str] = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> int:
        return self.counts[name]


def count(name: str, amount: int = 1) -> None:
    """Record ``amount`` operations called ``name`` (e.g. ``fsync``, ``rbd.snap_create``)."""
    with _lock:
        _totals[name] += amount


def event(name: str) -> None:
    """Record that ``name`` happened now, in order (only while someone is ``counting()``)."""
    with _lock:
        if _recording and len(_events) < MAX_EVENTS:
            _events.append(name)


@contextmanager
def counting() -> Iterator[Counted]:
    """Collect the operations of the ``with`` block (of every thread of this process) into the result."""
    global _recording
    result = Counted()
    with _lock:
        before = Counter(_totals)
        first_event = len(_events)
        _recording += 1
    try:
        yield result
    finally:
        with _lock:
            _recording -= 1
            result.counts = Counter({k: v - before[k] for k, v in _totals.items() if v - before[k]})
            result.events = _events[first_event:]
            if not _recording:
                _events.clear()
