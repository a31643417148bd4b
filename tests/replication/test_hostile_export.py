"""The export API never blocks on a FIFO or serves a symlink's target: the files it serves are regular files of a
bounded size, like everything the engine reads (storage.fsutil.read_regular)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.storage.diskdata import chunk_files

from .conftest import Portal

TIMEOUT = 20  # seconds: a request that waits on a FIFO fails the test instead of hanging it


@pytest.fixture
def fifos() -> Iterator[list[Path]]:
    """FIFOs the test makes; afterwards each is opened for writing once, which frees a reader blocked on it."""
    made: list[Path] = []
    yield made
    for path in made:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # nobody is waiting on it: the fixed code never opened it that way


def get(portal: Portal, path: str, **options: object) -> requests.Response:
    return requests.request(str(options.pop("method", "GET")), f"{portal.url}/api/v1/export/{path}",
                            headers={"Authorization": f"Bearer {portal.token()}"}, timeout=TIMEOUT,
                            **options)  # type: ignore[arg-type]


def test_a_fifo_or_symlink_as_chunk_is_not_served(primary: Portal, fifos: list[Path], tmp_path: Path) -> None:
    web = primary.repository("web-1")
    first, second, third = chunk_files(primary.root / web)[:3]
    first.unlink()
    os.mkfifo(first)
    fifos.append(first)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not part of any backup")
    second.unlink()
    second.symlink_to(secret)
    for chunk in (first, second):
        assert get(primary, f"{web}/chunks/{chunk.name}").status_code == 404
    answer = get(primary, f"{web}/chunks", method="POST", json={"hashes": [first.name, second.name, third.name]})
    assert answer.status_code == 200
    assert answer.content.startswith(f"{first.name} -000000000000001\n{second.name} -000000000000001\n".encode())
    assert b"not part of any backup" not in answer.content
    assert answer.content.endswith(third.read_bytes())


def test_a_fifo_as_manifest_or_description_is_a_409(primary: Portal, fifos: list[Path]) -> None:
    web = primary.repository("web-1")
    manifest = sorted((primary.root / web / "revisions").glob("*.json"))[0]
    manifest.unlink()
    os.mkfifo(manifest)
    fifos.append(manifest)
    answer = get(primary, f"{web}/revisions/{manifest.stem}")
    assert answer.status_code == 409 and "not a regular file" in answer.json()["message"]
    description = primary.root / web / "repository.json"
    description.unlink()
    description.symlink_to("/dev/zero")
    answer = get(primary, f"{web}/repository.json")
    assert answer.status_code in (404, 409) and answer.headers["Content-Type"].startswith("application/json")
