"""One HTTP answer for a ranged request of a served disk, independent of the web server that sends it.

Both servers of a disk use it: the standard library's (``storage.serve.http``, for ``lifeboat store serve``)
and the portal's (its web app serves instant restores). The first ``PREVERIFY_BYTES`` of a body are read and
verified before the status is chosen, so damage there is a clean ``500`` naming the byte range; damage further
into a long body raises ``DamagedRange`` from the body iterator, and the server must then end the connection
early: the client sees a short read, never wrong bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..stream import DamagedRange
from .byteranges import RangeNotSatisfiable, content_range, parse_range, unsatisfied_range
from .disk import ServedDisk

#: how much of an answer is verified before its headers are sent (Ceph and QEMU ask for at most 4 MiB)
PREVERIFY_BYTES = 16 << 20


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Iterator[bytes | memoryview] = field(default_factory=lambda: iter(()))


def plain(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    data = (message + "\n").encode()
    return Answer(status, {**(headers or {}), "Content-Type": "text/plain; charset=utf-8",
                           "Content-Length": str(len(data))}, iter([data]))


def answer(disk: ServedDisk, method: str, range_header: str | None) -> Answer:
    """The answer to ``GET`` or ``HEAD`` with an optional Range header (any other method: 405)."""
    if method not in ("GET", "HEAD"):
        return plain(405, "only GET and HEAD are answered", {"Allow": "GET, HEAD"})
    try:
        span = parse_range(range_header, disk.size)
    except RangeNotSatisfiable as exc:
        return plain(416, str(exc), {"Content-Range": unsatisfied_range(disk.size)})
    start, end = span if span is not None else (0, disk.size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Length": str(end - start),
        "ETag": f'"{disk.revision.id}"',  # a revision never changes
        "Cache-Control": "no-store",
    }
    if span is not None:
        headers["Content-Range"] = content_range(span, disk.size)
    status = 206 if span is not None else 200
    if method == "HEAD":
        return Answer(status, headers)
    pieces = disk.pieces(start, end)
    ready: list[memoryview] = []
    try:
        verified = 0
        for piece in pieces:
            ready.append(piece)
            verified += len(piece)
            if verified >= PREVERIFY_BYTES:
                break
    except DamagedRange as exc:
        return plain(500, str(exc))

    def body() -> Iterator[bytes | memoryview]:
        yield from ready
        yield from pieces  # raises DamagedRange at damage past the verified start

    return Answer(status, headers, body())
