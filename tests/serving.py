"""Helpers for the serve and instant-restore tests: a backed-up real disk and a ``lifeboat store serve`` process.

The disk is a real GPT + ext4 image built by sfdisk and mkfs.ext4 (tests/images.py); it has data chunks,
all-zero chunks in the middle and data again at the end (the backup GPT header), so holes and chunk edges are
exercised. The serve process is the real CLI, stopped with SIGTERM as an operator would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage.backup import backup
from storage.repository import Repository
from tests import images
from tests.conftest import LIFEBOAT

# serve_forever polls for shutdown every 0.5 s by default: each test's server took up to half a second to stop.
QUICK_STOP: dict[str, float] = {"poll_interval": 0.05}

MIB = 1024 * 1024


def backed_up_disk(work: Path, root: Path, vm: str = "vm1", size: int = 64 * MIB) -> tuple[Path, str]:
    """Build a GPT/ext4 disk image under ``work``, back it up as ``vm``; the image path and revision id."""
    src = work / "tree"
    src.mkdir(parents=True, exist_ok=True)
    images.make_tree(src, big_size=5 * MIB)
    image = images.gpt_ext4(work / "disk.img", src, size=size)
    return image, backup(str(root), vm, f"file:{image}").id


def chunk_file(root: Path, vm: str, revision: str, index: int) -> Path:
    """The stored file of the revision's chunk ``index`` (which must not be a zero chunk)."""
    repo = Repository.open(str(root), vm)
    chunk = repo.load_revision(revision).chunks[index]
    assert chunk is not None, f"chunk {index} is a zero chunk"
    return Path(repo.chunk_path(chunk))


def data_chunks(root: Path, vm: str, revision: str) -> list[int]:
    chunks = Repository.open(str(root), vm).load_revision(revision).chunks
    return [i for i, c in enumerate(chunks) if c is not None]


class ServeProcess:
    """``lifeboat store serve ... --json`` running until ``stop``; ``urls`` is its first line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [LIFEBOAT, "store", "serve", *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"serve did not start: {self.process.communicate(timeout=30)[1]}")
        self.urls: dict[str, str] = json.loads(line)
        self.code: int | None = None
        self.report: dict[str, Any] = {}
        self.stderr = ""

    def stop(self) -> dict[str, Any]:
        """SIGTERM, then the final report line (what was served, damage met)."""
        if self.code is None:
            self.process.send_signal(signal.SIGTERM)
            out, self.stderr = self.process.communicate(timeout=60)
            self.code = self.process.returncode
            self.report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        return self.report

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.code is None and self.process.poll() is None:
            self.stop()


def http_image(url: str) -> str:
    """A qemu ``json:`` filename for a raw image read over HTTP by QEMU's curl driver."""
    return "json:" + json.dumps({"driver": "raw", "file": {"driver": "http", "url": url, "timeout": 30}})


def convert_args(source: str) -> list[str]:
    """``qemu-img convert`` options for reading ``source``: one coroutine for HTTP.

    QEMU 7.2's curl driver hangs when qemu-img convert runs several coroutines against it (the reference
    range server hangs the same way; qemu-img compare and -m 1 do not), so HTTP reads go one at a time.
    """
    return ["-m", "1"] if source.startswith("json:") else []


def qemu(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ, LANG="C"))


class SourceProxy:
    """An HTTP hop between Ceph and Lifeboat's source that a test can break or hold, as a network would.

    ``broken``: every request gets 503 (the source is unreachable); ``broken_for``: only requests whose path
    holds it (one disk's URL of several). ``hold_after``: the first N ranged GETs
    pass, later ones wait until ``release()``, so a test can interrupt a hydration at a known point.
    """

    def __init__(self, target: str, hold_after: int | None = None) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        parts = urlsplit(target)
        proxy = self
        self.broken = False
        self.broken_for = ""
        self.hold_after = hold_after
        self.gets = 0
        self.gate = threading.Event()
        self.lock = threading.Lock()

        class Hop(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.forward()

            def do_GET(self) -> None:
                with proxy.lock:
                    proxy.gets += 1
                    held = proxy.hold_after is not None and proxy.gets > proxy.hold_after
                if held:
                    proxy.gate.wait(120)
                self.forward()

            def forward(self) -> None:
                if proxy.broken or (proxy.broken_for and proxy.broken_for in self.path):
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                upstream = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                try:
                    headers = {"Range": self.headers["Range"]} if self.headers["Range"] else {}
                    upstream.request(self.command, self.path, headers=headers)
                    answer = upstream.getresponse()
                    body = answer.read()
                    self.send_response(answer.status)
                    for name in ("Content-Length", "Content-Range", "Accept-Ranges", "Content-Type"):
                        if answer.getheader(name):
                            self.send_header(name, answer.getheader(name))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                finally:
                    upstream.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hop)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs=QUICK_STOP, daemon=True)
        self.thread.start()

    def release(self) -> None:
        self.hold_after = None
        self.gate.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Poll ``condition`` until it holds (a test waiting for another process or thread to get somewhere)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)
