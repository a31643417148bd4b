"""HTTP byte ranges (RFC 9110, section 14) for serving a disk: one range per request, nothing clever.

Only what disk clients send is answered: ``bytes=A-B``, ``bytes=A-`` and ``bytes=-N``, one of them per
request. Ceph's HTTP stream and QEMU's curl driver each ask for one range at a time. Anything else (several
ranges, another unit, junk) is refused with 416 instead of being ignored: ignoring a Range header means
answering with the whole disk, and a client that asked for 4 KiB of a 2 TiB disk does not want that.
"""

from __future__ import annotations

import re

from ..manifest import Range

_SPEC = re.compile(r"\s*bytes\s*=\s*(\d{0,20})\s*-\s*(\d{0,20})\s*")


class RangeNotSatisfiable(Exception):
    """The Range header cannot be answered (416); the message says why."""


def parse_range(header: str | None, size: int) -> Range | None:
    """The ``[start, end)`` a Range header asks for, clipped to ``size``; None without a header.

    Raises RangeNotSatisfiable for a range that starts at or past the end, an empty suffix, several ranges,
    another unit or a malformed header.
    """
    if header is None:
        return None
    match = _SPEC.fullmatch(header)
    if match is None:
        raise RangeNotSatisfiable("only one range of the form bytes=START-END, START- or -LENGTH is served")
    first, last = match.group(1), match.group(2)
    if not first and not last:
        raise RangeNotSatisfiable("a range needs a start or a length")
    if not first:  # bytes=-N: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable("an empty suffix range")
        return max(0, size - length), size
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        raise RangeNotSatisfiable(f"range end {last} is before its start {first}")
    if start >= size:
        raise RangeNotSatisfiable(f"range starts at {start}, at or past the end of the disk ({size} bytes)")
    return start, min(end, size)


def content_range(span: Range, size: int) -> str:
    """The Content-Range value of a 206 answer for ``[start, end)``."""
    return f"bytes {span[0]}-{span[1] - 1}/{size}"


def unsatisfied_range(size: int) -> str:
    """The Content-Range value of a 416 answer."""
    return f"bytes */{size}"
