"""Fixtures shared by every test: a CLI runner that runs the real ``lifeboat`` command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ("tests.fixtures.portal", "tests.fixtures.jobs", "tests.fixtures.store")

LIFEBOAT = str(Path(sys.executable).with_name("lifeboat"))
# Tests never read the instance config that `make run` leaves in ./var (tests of it set their own path).
os.environ["LIFEBOAT_INSTANCE_PATH"] = "/nonexistent/lifeboat-tests-instance"

# Password hashes at a low scrypt cost: the suite makes thousands of users, and each hash at the production
# cost takes ~80 ms. Same code path and algorithm; tests/portal/test_app.py checks the production default.
os.environ.setdefault("LIFEBOAT_PASSWORD_HASH_METHOD", "scrypt:1024:8:1")


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def run_lifeboat(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
    done = subprocess.run(
        [LIFEBOAT, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def lifeboat():
    """Run ``lifeboat ARGS...`` and return its exit code, stdout and stderr."""
    return run_lifeboat


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"
