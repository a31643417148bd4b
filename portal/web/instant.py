"""``/instant/<secret>/disk.raw``: the HTTP source of an instant restore, for Ceph's live migration.

No login: Ceph and QEMU send no credentials, so the URL's secret (256 random bits, one per restore) is the
authorisation, and it answers only while its restore is queued or running (``portal.services.instant``).
GET and HEAD with one byte range per request, from verified chunks (``storage.serve.answer``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from flask import Blueprint, Response, current_app, request

from storage.serve.answer import plain

from ..services import instant

bp = Blueprint("instant", __name__)


@bp.route("/instant/<secret>/disk.raw", methods=["GET", "HEAD"])
@bp.route("/instant/<secret>/disks/<name>.raw", methods=["GET", "HEAD"])
def source(secret: str, name: str = "") -> Response:
    """One disk of the point: ``disk.raw`` for a point of one disk, ``disks/<name>.raw`` for each of several."""
    restore = instant.active_restore(secret)
    reply = instant.serve(current_app.config, restore, request.method, request.headers.get("Range"), name) \
        if restore is not None and len(name) <= 128 else None
    if reply is None:
        reply = plain(404, "not found")
        return Response(_bytes(reply.body), status=reply.status, headers=reply.headers)
    return Response(_bytes(reply.body), status=reply.status, headers=reply.headers, direct_passthrough=True)


def _bytes(body: object) -> Iterable[bytes]:
    """The answer's pieces as they are: memoryviews of chunk data go to the WSGI server uncopied (it writes any
    bytes-like object)."""
    return cast(Iterable[bytes], body)
