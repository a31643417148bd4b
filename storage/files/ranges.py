"""Byte-range arithmetic on sorted lists of [start, end) pairs."""

from __future__ import annotations

from storage.files.entry import Range


def merge(ranges: list[Range]) -> list[Range]:
    """Sort, drop empty ranges and join overlapping or touching ones."""
    merged: list[Range] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def intersect(a: list[Range], b: list[Range]) -> list[Range]:
    """The parts of ``a`` that also lie in ``b`` (both merged first)."""
    out: list[Range] = []
    a, b = merge(a), merge(b)
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def shift(ranges: list[Range], by: int) -> list[Range]:
    return [(s + by, e + by) for s, e in ranges]
