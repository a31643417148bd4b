"""Pre/post snapshot hooks (e.g. fsfreeze inside the guest), run with a timeout.

A failing pre-hook aborts the backup before any snapshot exists; the post-hook runs whenever the pre-hook
was attempted, because a guest left frozen is worse than a missed backup.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from .errors import HookFailed

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Hooks:
    pre: str | None = None
    post: str | None = None
    timeout: float = DEFAULT_TIMEOUT


def run_hook(which: str, command: str, timeout: float) -> None:
    """Run ``command`` through the shell; raise HookFailed on a non-zero exit or timeout."""
    try:
        done = subprocess.run(  # noqa: S602 - hooks are operator-configured shell commands
            command, shell=True, timeout=timeout, capture_output=True, text=True, check=False
        )
    except subprocess.TimeoutExpired:
        raise HookFailed(which, f"timed out after {timeout:g} s") from None
    except OSError as exc:
        raise HookFailed(which, exc) from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        tail = f": {detail[-1]}" if detail else ""
        raise HookFailed(which, f"exit code {done.returncode}{tail}")
