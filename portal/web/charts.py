"""The backup points chart: backup size (line) and new data (bars) over time, as server-side SVG (no JavaScript,
nothing for the Content-Security-Policy to allow).

Why the geometry is computed here and tested (tests/portal/test_charts.py, tests/browser/test_layout.py): the old
chart placed bars by index with their centre on the frame's edge, so the first bar started at x = -52.8. Now:
- x is time (a point's ``created_at``), so gaps in the backups show as gaps; bars are clamped inside the plot.
- y starts at zero and ends at a round size (1, 2 or 5 times a power of 1024 units' tenth) above the largest value.
- Axes carry labels: sizes in binary units on the left, dates (or times, within two days) below.
Every mark (bar, dot, line vertex) lies within the plot frame, ``Chart.frame``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from markupsafe import Markup, escape

from .presentation import absolute, as_utc, human_size

WIDTH, HEIGHT = 640, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 14, 14, 40  # room for the size labels (left) and the date labels (below)
X_TICKS, Y_TICKS = 5, 4
MAX_BAR = 18.0


class Point(Protocol):
    """What the chart needs of a backup point (a ``BackupPoint`` row, or any object in the tests)."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def new_bytes(self) -> int: ...


@dataclass(frozen=True)
class Frame:
    left: float
    top: float
    right: float
    bottom: float


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^k multiple of a binary unit at or above ``value`` (axis top; >= 1)."""
    if value <= 1:
        return 1.0
    unit = float(1024 ** min(int(math.log(value, 1024)), 5))
    scaled = value / unit
    magnitude = 10.0 ** math.floor(math.log10(scaled))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= scaled - 1e-9:
            return step * magnitude * unit
    return 10 * magnitude * unit  # pragma: no cover - the loop's 10 always matches


def date_label(moment: datetime, span_seconds: float) -> str:
    """A tick's label: the date; with the time when the points span less than two days (seconds under 2 h)."""
    moment = as_utc(moment)
    if span_seconds >= 2 * 86400:
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%m-%d %H:%M" if span_seconds >= 2 * 3600 else "%m-%d %H:%M:%S")


def size_chart(points: Sequence[Point]) -> Markup:
    """The chart as a ``<figure>`` (empty markup for fewer than two points: no trend to draw)."""
    ordered = sorted(points, key=lambda p: as_utc(p.created_at))
    if len(ordered) < 2:
        return Markup("")
    frame = Frame(LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)
    plot_w, plot_h = frame.right - frame.left, frame.bottom - frame.top
    first, last = as_utc(ordered[0].created_at), as_utc(ordered[-1].created_at)
    span = (last - first).total_seconds()
    top = nice_ceiling(max(max(p.size_bytes for p in ordered), max(p.new_bytes for p in ordered), 1))
    bar = min(MAX_BAR, max(2.0, plot_w / len(ordered) * 0.6))
    inner_left, inner_right = frame.left + bar / 2, frame.right - bar / 2  # bar centres: bars stay inside

    def x(moment: datetime, index: int) -> float:
        if span <= 0:
            share = index / (len(ordered) - 1)
        else:
            share = (as_utc(moment) - first).total_seconds() / span
        return inner_left + (inner_right - inner_left) * share

    def y(value: float) -> float:
        return frame.bottom - plot_h * min(max(value, 0), top) / top

    parts: list[str] = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title" data-frame="{frame.left:g} {frame.top:g} {frame.right:g} {frame.bottom:g}">',
        '<title id="chart-title">Backup size (line) and new data per backup (bars) over time</title>',
    ]
    for i in range(Y_TICKS + 1):  # horizontal grid lines and size labels
        value = top * i / Y_TICKS
        gy = y(value)
        parts.append(f'<line class="grid" x1="{frame.left:.1f}" x2="{frame.right:.1f}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        parts.append(f'<text class="y-label" x="{frame.left - 6:.1f}" y="{gy + 4:.1f}" text-anchor="end">'
                     f"{escape(human_size(value))}</text>")
    ticks = min(X_TICKS, len(ordered)) if span > 0 else 0
    for i in range(ticks):  # date labels along the bottom, evenly spaced in time
        share = i / (ticks - 1) if ticks > 1 else 0
        moment = datetime.fromtimestamp(first.timestamp() + span * share, first.tzinfo)
        tx = inner_left + (inner_right - inner_left) * share
        anchor = "start" if i == 0 else "end" if i == ticks - 1 else "middle"
        parts.append(f'<line class="tick" x1="{tx:.1f}" x2="{tx:.1f}" y1="{frame.bottom:.1f}" '
                     f'y2="{frame.bottom + 4:.1f}" stroke="#9aa4ae"/>')
        parts.append(f'<text class="x-label" x="{tx:.1f}" y="{frame.bottom + 18:.1f}" text-anchor="{anchor}">'
                     f"{escape(date_label(moment, span))}</text>")
    if span <= 0:  # every point at one moment: label it once
        parts.append(f'<text class="x-label" x="{frame.left:.1f}" y="{frame.bottom + 18:.1f}">'
                     f"{escape(date_label(first, 0))}</text>")
    for i, p in enumerate(ordered):
        cx = x(p.created_at, i)
        by = y(p.new_bytes)
        parts.append(
            f'<rect class="new mark" x="{cx - bar / 2:.1f}" y="{by:.1f}" width="{bar:.1f}" '
            f'height="{frame.bottom - by:.1f}"><title>{escape(absolute(p.created_at))}: '
            f"{escape(human_size(p.new_bytes))} new</title></rect>"
        )
    line = " ".join(f"{x(p.created_at, i):.1f},{y(p.size_bytes):.1f}" for i, p in enumerate(ordered))
    parts.append(f'<polyline class="size mark" points="{line}" fill="none"/>')
    for i, p in enumerate(ordered):
        parts.append(
            f'<circle class="size-dot mark" cx="{x(p.created_at, i):.1f}" cy="{y(p.size_bytes):.1f}" r="3">'
            f"<title>{escape(absolute(p.created_at))}: {escape(human_size(p.size_bytes))}</title></circle>"
        )
    parts.append(f'<rect class="frame" x="{frame.left:g}" y="{frame.top:g}" width="{plot_w:g}" height="{plot_h:g}"/>')
    parts.append("</svg>")
    caption = ('<figcaption><span class="legend-size"></span>backup size <span class="legend-new"></span>'
               f"new data per backup · last {len(ordered)} backups</figcaption>")
    return Markup(f'<figure class="chart">{"".join(parts)}{caption}</figure>')  # noqa: S704 - numbers and escape()d text
