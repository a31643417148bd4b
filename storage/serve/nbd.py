"""Export a revision over NBD through nbdkit and its Python plugin (``nbdkit_plugin.py`` beside this file).

nbdkit is a mature NBD server: it does the protocol, many connections, structured replies and extents;
Lifeboat only answers reads. The export name is the secret (nbdkit's exportname filter refuses any other
name and lists none), the address is loopback unless told otherwise, and the process exits with its parent.
``writable`` adds nbdkit's copy-on-write filter: writes land in a temporary overlay that disappears with the
export, and the repository is opened read-only either way.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from ..backend import open_store
from ..errors import StorageError
from ..manifest import Range
from .http import new_secret, url_host

PLUGIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nbdkit_plugin.py")
#: the folder holding the ``storage`` package (an editable install finds it by an import hook, not sys.path)
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT = 30.0
INSTALL_HINT = "install nbdkit and its Python plugin (Debian: apt-get install nbdkit nbdkit-plugin-python)"


class NbdUnavailable(StorageError):
    """cannot serve NBD: {}"""


def free_port(host: str) -> int:
    """A port free on ``host`` right now (nbdkit cannot be asked to pick one itself)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def nbdkit_path() -> str:
    """The nbdkit executable, or NbdUnavailable saying what to install."""
    found = shutil.which("nbdkit") or shutil.which("nbdkit", path="/usr/sbin:/sbin")
    if not found:
        raise NbdUnavailable(f"nbdkit is not installed; {INSTALL_HINT}")
    return found


class NbdExport:
    """One nbdkit process serving one revision at ``nbd://HOST:PORT/<secret>``."""

    def __init__(self, root: str, vm: str, revision_id: str, host: str = "127.0.0.1", port: int = 0, *,
                 writable: bool = False, zero_damaged: bool = False, secret: str | None = None) -> None:
        self.root, self.vm, self.revision_id = open_store(root).canonical_root(), vm, revision_id
        self.host, self.port = host, port
        self.writable, self.zero_damaged = writable, zero_damaged
        self.secret = secret or new_secret()
        self._workdir = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._damaged_at_stop: list[Range] | None = None

    @property
    def url(self) -> str:
        return f"nbd://{url_host(self.host)}:{self.port}/{self.secret}"

    def start(self) -> None:
        """Start nbdkit and wait until it listens (its pid file appears only then)."""
        command = [nbdkit_path()]
        self._workdir = tempfile.mkdtemp(prefix="lifeboat-nbd-")
        if self.port == 0:
            self.port = free_port(self.host)
        pidfile = os.path.join(self._workdir, "nbdkit.pid")
        log = open(os.path.join(self._workdir, "nbdkit.log"), "wb")  # noqa: SIM115 - handed to the child
        filters = ["--filter=exportname"] + (["--filter=cow"] if self.writable else [])
        command += [
            "--foreground", "--exit-with-parent", "-P", pidfile, "-i", self.host, "-p", str(self.port),
            *([] if self.writable else ["--readonly"]), *filters, "python", PLUGIN,
            "exportname-strict=true", "exportname-list=empty", f"exportname={self.secret}",
            f"syspath={os.pathsep.join([PACKAGE_PARENT, *(p for p in sys.path if p)])}",
            f"root={self.root}", f"vm={self.vm}",
            f"revision={self.revision_id}", f"zero_damaged={int(self.zero_damaged)}",
            f"damage_log={self.damage_log}",
        ]
        # The cow overlay is a temporary file under TMPDIR: keep it in the export's own folder.
        env = dict(os.environ, TMPDIR=self._workdir)
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(pidfile):
            if self._process.poll() is not None or time.monotonic() > deadline:
                said = self._log_tail()
                self.stop()
                raise NbdUnavailable(f"nbdkit did not start: {said or 'no message'}")
            time.sleep(0.02)

    @property
    def damage_log(self) -> str:
        return os.path.join(self._workdir, "damage.jsonl")

    @property
    def damaged(self) -> list[Range]:
        """Byte ranges the plugin found damaged so far (kept when the export stops)."""
        if self._damaged_at_stop is not None:
            return list(self._damaged_at_stop)
        try:
            with open(self.damage_log, encoding="utf-8") as handle:
                return [(int(s), int(e)) for s, e in (json.loads(line) for line in handle if line.strip())]
        except (OSError, ValueError):
            return []

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self._workdir, "nbdkit.log"), "rb") as handle:
                lines = handle.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " ".join(lines[-3:])

    def stop(self) -> None:
        """Stop nbdkit (the overlay of a writable export goes with it) and remove the work folder."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._workdir:
            self._damaged_at_stop = self.damaged
            shutil.rmtree(self._workdir, ignore_errors=True)
