"""A small SVG chart of backup size and new data over time, rendered on the server (no JavaScript)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from ..models import BackupPoint

WIDTH, HEIGHT, PAD = 560, 140, 24


def size_chart(points: Sequence[BackupPoint]) -> Markup:
    ordered = sorted(points, key=lambda p: p.created_at)
    if len(ordered) < 2:
        return Markup("")
    top = max(max(p.size_bytes for p in ordered), 1)
    step = (WIDTH - 2 * PAD) / (len(ordered) - 1)

    def y(value: int) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top

    line = " ".join(f"{PAD + i * step:.1f},{y(p.size_bytes):.1f}" for i, p in enumerate(ordered))
    bar_width = max(1.0, step * 0.6)
    bars = "".join(
        f'<rect x="{PAD + i * step - bar_width / 2:.1f}" y="{y(p.new_bytes):.1f}" width="{bar_width:.1f}" '
        f'height="{HEIGHT - PAD - y(p.new_bytes):.1f}" class="new"><title>{escape(p.created_at)}: '
        f"{p.new_bytes} new bytes</title></rect>"
        for i, p in enumerate(ordered)
    )
    return Markup(  # noqa: S704 - numbers and escape()d text only
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="size and new data over time">'
        f'{bars}<polyline points="{line}" class="size" fill="none"/>'
        f'<text x="{PAD}" y="14">size (line) and new data (bars), max {top / 2**30:.2f} GiB</text></svg>'
    )
