"""The page vocabulary (portal/web/presentation.py) and the backup points chart's geometry (portal/web/charts.py).

The chart is checked on its SVG as a browser would read it: every mark (bar, dot, line vertex) inside the plot
frame, the y axis starting at zero, the x axis labelled with dates in time order. The browser sweep
(tests/browser/test_layout.py) checks the same on rendered bounding boxes."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from portal.web.charts import HEIGHT, WIDTH, date_label, nice_ceiling, size_chart
from portal.web.presentation import duration, human_size, relative, state_tone, when_markup

NOW = datetime(2026, 12, 4, 18, 0)
SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class P:
    created_at: datetime
    size_bytes: int
    new_bytes: int


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (838890, "819.2 KiB"), (4 * 2**20, "4.0 MiB"),
                                     (int(1.5 * 2**30), "1.5 GiB"), (2**40, "1.0 TiB"), (None, "—")])
def test_sizes_are_always_human(n: int | None, text: str) -> None:
    assert human_size(n) == text


@pytest.mark.parametrize("delta, text", [
    (timedelta(seconds=10), "just now"), (timedelta(minutes=5), "5 min ago"), (timedelta(hours=3), "3 h ago"),
    (timedelta(days=3), "3 days ago"), (-timedelta(hours=2), "in 2 h"), (-timedelta(days=7), "in 7 days"),
    (timedelta(days=400), "2025-10-30"),
])
def test_times_read_relative(delta: timedelta, text: str) -> None:
    assert relative(NOW - delta, NOW) == text


def test_a_time_element_carries_the_absolute_utc_time() -> None:
    html = str(when_markup(datetime(2026, 12, 4, 17, 55), now=NOW))
    assert html == '<time datetime="2026-12-04T17:55:00Z" title="2026-12-04 17:55 UTC">5 min ago</time>'
    aware = datetime(2026, 12, 4, 18, 55, tzinfo=UTC)  # an aware time is the same moment
    assert "in 55 min" in str(when_markup(aware, now=NOW))
    assert str(when_markup(None)) == '<span class="never">never</span>'


def test_durations_and_tones() -> None:
    assert [duration(s) for s in (0.42, 42, 185, 7800)] == ["0.4 s", "42 s", "3 min 5 s", "2 h 10 min"]
    assert [state_tone(s) for s in ("ok", "verified", "late", "damaged", "running", "queued", "done", "failed",
                                    "cancelled")] == ["good", "good", "warn", "bad", "busy", "busy", "good", "bad",
                                                      "idle"]


def test_axis_tops_are_round() -> None:
    assert nice_ceiling(48 * 2**20) == 50 * 2**20
    assert nice_ceiling(3 * 2**30 + 1) == 5 * 2**30
    assert nice_ceiling(0) == 1


def _parse(points: list[P]) -> ET.Element:
    markup = str(size_chart(points))
    assert markup.startswith('<figure class="chart">')
    svg = re.search(r"<svg.*</svg>", markup, re.S)
    assert svg is not None
    return ET.fromstring(svg.group(0).replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))


def _frame(root: ET.Element) -> tuple[float, float, float, float]:
    frame = root.find(f"{SVG}rect[@class='frame']")
    assert frame is not None
    x, y = float(frame.get("x", "")), float(frame.get("y", ""))
    right, bottom = x + float(frame.get("width", "")), y + float(frame.get("height", ""))
    assert 0 <= x < right <= WIDTH and 0 <= y < bottom <= HEIGHT
    return x, y, right, bottom


def _marks_inside(root: ET.Element) -> int:
    left, top, right, bottom = _frame(root)
    eps = 0.05  # the coordinates are written with one decimal
    count = 0
    for rect in root.iter(f"{SVG}rect"):
        if "mark" not in rect.get("class", ""):
            continue
        x, y, w, h = (float(rect.get(k, "")) for k in ("x", "y", "width", "height"))
        assert w > 0 and h >= 0
        assert left - eps <= x and x + w <= right + eps and top - eps <= y and y + h <= bottom + eps, rect.attrib
        count += 1
    for dot in root.iter(f"{SVG}circle"):
        cx, cy = float(dot.get("cx", "")), float(dot.get("cy", ""))
        assert left - eps <= cx <= right + eps and top - eps <= cy <= bottom + eps, dot.attrib
        count += 1
    line = root.find(f"{SVG}polyline")
    assert line is not None
    for pair in line.get("points", "").split():
        px, py = (float(v) for v in pair.split(","))
        assert left - eps <= px <= right + eps and top - eps <= py <= bottom + eps, pair
    return count


@pytest.mark.parametrize("points", [
    # daily backups of a growing disk, one large first backup (all data new)
    [P(NOW - timedelta(days=d), (40 + d) * 2**20, (40 if d == 9 else 2) * 2**20) for d in range(10)],
    # two points a few seconds apart (the demo), and many points (bars get thin, never outside)
    [P(NOW, 48 * 2**20, 48 * 2**20), P(NOW + timedelta(seconds=3), 48 * 2**20, 1)],
    [P(NOW - timedelta(hours=h), 2**30, 2**20 * (h % 7)) for h in range(60)],
    # every point at the same moment: spread by order
    [P(NOW, 10, 10), P(NOW, 20, 5), P(NOW, 30, 0)],
])
def test_every_mark_lies_inside_the_frame(points: list[P]) -> None:
    root = _parse(points)
    assert _marks_inside(root) == 2 * len(points)  # a bar and a dot per point


def test_axes_are_labelled_with_dates_and_sizes_from_zero() -> None:
    points = [P(NOW - timedelta(days=d), (40 + d) * 2**20, 2**20) for d in range(10)]
    root = _parse(points)
    xs = [t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == "x-label"]
    assert len(xs) >= 3
    dates = [datetime.strptime(x, "%Y-%m-%d") for x in xs]  # every label is a date, in order
    assert dates == sorted(dates) and dates[0].date() == (NOW - timedelta(days=9)).date()
    assert dates[-1].date() == NOW.date()
    ys = [t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == "y-label"]
    assert ys[0] == "0 B" and ys[-1] == "50.0 MiB"
    label_x = [float(t.get("x", "")) for t in root.iter(f"{SVG}text") if t.get("class") == "x-label"]
    assert label_x == sorted(label_x)
    # the oldest point is at the left edge of the plot, the newest at the right
    dots = [float(c.get("cx", "")) for c in root.iter(f"{SVG}circle")]
    assert dots == sorted(dots)


def test_within_two_days_the_labels_carry_the_time() -> None:
    assert date_label(NOW, 3 * 3600) == "12-04 18:00"
    assert date_label(NOW, 60) == "12-04 18:00:00"  # backups seconds apart (the demo) still read apart
    assert date_label(NOW, 3 * 86400) == "2026-12-04"


def test_fewer_than_two_points_draw_nothing() -> None:
    assert str(size_chart([])) == "" and str(size_chart([P(NOW, 1, 1)])) == ""


def test_titles_are_escaped_numbers_only() -> None:
    markup = str(size_chart([P(NOW, 1, 1), P(NOW + timedelta(days=1), 2, 1)]))
    assert "<script" not in markup and "UTC: 1 B new" in markup


def test_audit_entries_read_as_sentences() -> None:
    from portal.web.audit_text import audit_sentence, changes

    said = audit_sentence("policy.update", "vm", "web-1", "admin@acme.example",
                          {"rpo_minutes": 30, "keep_daily": 7}, {"rpo_minutes": 60, "keep_daily": 7})
    assert said == "admin@acme.example changed the backup policy — vm web-1: RPO 30 → 60 min"
    assert changes({"business_critical": False}, {"business_critical": True}) == ["business-critical no → yes"]
    assert changes(None, {"scopes": ["vms:read"]}) == ["scopes: 1 item(s)"]
    assert audit_sentence("something.new", "", "", "", None, None) == "the system something.new"
