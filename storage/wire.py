"""The export wire format, defined once for both ends: the portal's export API serves it
(``portal/api/export.py``) and ``lifeboat replicate pull`` / ``store repair`` read it (``storage/replicate.py``).

Paths under ``EXPORT_PATH``: ``/<repository>/repository.json``, ``/<repository>/revisions[/<id>]``,
``/<repository>/chunks/<hash>`` (one chunk as stored) and ``POST /<repository>/chunks`` (a batch).

A batch answer is a stream of records, one per requested hash, in the order asked: an 82-byte header (the 64 hex
digits of the hash, a space, the length in bytes as 16 signed decimal digits, a newline), then that many bytes of
the chunk as stored (a zstd frame). Length ``MISSING`` (-1) marks a chunk the source lacks; no bytes follow.
"""

from __future__ import annotations

EXPORT_PATH = "/api/v1/export"
BATCH_MIMETYPE = "application/vnd.lifeboat.chunks"
#: chunks one batch request may ask for, and the most bytes one answer may carry (64 chunks of 4 MiB, zstd's
#: worst case)
MAX_BATCH = 64
MAX_BATCH_BYTES = 260 << 20
RECORD_HEADER = 82
MISSING = -1


class BadRecord(ValueError):
    """A batch record header that is not well-formed, not for the chunk expected, or of a negative length."""


def record_header(chunk: str, length: int) -> bytes:
    """The header of one record (``length`` is ``MISSING`` for a chunk not served)."""
    return f"{chunk} {length:016d}\n".encode("ascii")


def parse_record_header(header: bytes, chunk: str) -> int:
    """The length in a record's header (``MISSING`` or >= 0); BadRecord unless it is a header for ``chunk``."""
    try:
        text = header.decode("ascii")
        if len(text) != RECORD_HEADER or text[64] != " " or text[81] != "\n" or text[:64] != chunk:
            raise ValueError(text[:64])
        length = int(text[65:81])
    except (UnicodeDecodeError, IndexError, ValueError):
        raise BadRecord("not in order or not well-formed") from None
    if length < MISSING:
        raise BadRecord("declares a negative length")
    return length
