"""Serve one revision over HTTP and/or NBD for as long as a ``with`` block (or a CLI command) runs.

The repository's operation lock is held shared for the whole time, as a restore holds it: gc cannot remove
a chunk the disk still needs while a VM runs from it, and other restores and serves go on beside it.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ..errors import StorageError
from ..repository import Repository
from .disk import ServedDisk
from .http import DiskHTTPServer
from .nbd import NbdExport

DEFAULT_HOST = "127.0.0.1"
_ADDRESS = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]*)):(?P<port>\d{1,5})")


class BadAddress(StorageError):
    """invalid address {!r}: expected HOST:PORT, e.g. 127.0.0.1:8765, [::1]:0 or :0 (port 0: any free port)"""


@dataclass(frozen=True)
class Address:
    host: str
    port: int


def parse_address(text: str) -> Address:
    """``HOST:PORT`` (``[V6]:PORT``; an empty host is loopback) as an Address, or BadAddress."""
    match = _ADDRESS.fullmatch(text.strip())
    if match is None or int(match["port"]) > 65535:
        raise BadAddress(text)
    host = match["v6"] or match["host"] or DEFAULT_HOST
    return Address(host, int(match["port"]))


class Serving:
    """The servers of one revision; enter to start them, exit to stop them."""

    def __init__(self, root: str, vm: str, revision_id: str, *, http: Address | None = None,
                 nbd: Address | None = None, writable: bool = False, zero_damaged: bool = False,
                 secret: str | None = None, url_base: str | None = None, wait: float | None = None) -> None:
        self.root, self.vm, self.revision_id = root, vm, revision_id
        self.http_address, self.nbd_address = http, nbd
        self.writable, self.zero_damaged = writable, zero_damaged
        self.secret, self.url_base, self.wait = secret, url_base, wait
        self.disk: ServedDisk | None = None
        self.http: DiskHTTPServer | None = None
        self.nbd: NbdExport | None = None
        self._stack = ExitStack()

    def __enter__(self) -> Serving:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _start(self) -> None:
        repo = Repository.open(self.root, self.vm)
        self._stack.enter_context(repo.lock(exclusive=False, wait=self.wait, purpose="serve"))
        revision = repo.resolve(self.revision_id)
        self.revision_id = revision.id
        self.disk = ServedDisk(repo, revision, zero_damaged=self.zero_damaged)
        if self.http_address is not None:
            try:
                self.http = DiskHTTPServer(self.http_address.host, self.http_address.port, self.disk,
                                           secret=self.secret)
            except OSError as exc:
                raise BadAddress(f"{self.http_address.host}:{self.http_address.port} ({exc.strerror})") from None
            self.http.start()
            self._stack.callback(self.http.stop)
        if self.nbd_address is not None:
            self.nbd = NbdExport(self.root, self.vm, revision.id, self.nbd_address.host, self.nbd_address.port,
                                 writable=self.writable, zero_damaged=self.zero_damaged, secret=self.secret)
            self._stack.callback(self.nbd.stop)
            self.nbd.start()

    @property
    def urls(self) -> dict[str, str]:
        urls: dict[str, str] = {}
        if self.http is not None:
            urls["http"] = self.http.url(self.url_base)
        if self.nbd is not None:
            urls["nbd"] = self.nbd.url
        return urls

    def report(self) -> dict[str, Any]:
        """What was served: bytes, requests and the damaged byte ranges met (HTTP and NBD together)."""
        from ..manifest import merge_ranges

        damaged = list(self.disk.damaged) if self.disk else []
        if self.nbd is not None:
            damaged += self.nbd.damaged
        return {
            "revision": self.revision_id,
            "size": self.disk.size if self.disk else 0,
            "bytes_served": self.disk.bytes_served if self.disk else 0,
            "requests": self.http.requests if self.http else 0,
            "damaged": [list(r) for r in merge_ranges(damaged)],
        }

    def close(self) -> None:
        self._stack.close()
