"""Defects found in review: export paging cost, repair hiding failures, and unbounded reads in the pull."""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

import storage.replicate
from portal.cli import main
from storage.backup import backup
from storage.errors import CorruptRepository
from storage.repair import repair
from storage.repository import Repository
from storage.verify import verify
from tests.storage.diskdata import flip_bit

from .conftest import Portal

EXPORT = "/api/v1/export"


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def pull(source: Portal, token: str, root: Path) -> Any:
    return cli("replicate", "pull", source.url, "--token", token, str(root), "--json")


def error_line(answer: Any) -> str:
    lines = answer.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lifeboat: error: "), answer.output
    assert "Traceback" not in answer.output
    return lines[0]


# -- 1. the export pages over revision ids and parses only the page's manifests ---------------------------


def test_revision_pages_parse_only_their_own_manifests(primary: Portal) -> None:
    web = primary.repository("web-1")
    revisions = Path(primary.root, web, "revisions")
    real = sorted(p.stem for p in revisions.glob("*.json"))
    # a damaged manifest that sorts after every real one: only the page holding it may fail
    (revisions / "99991231T000000Z-ffffff.json").write_bytes(b"{not json")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {primary.token()}"
    url = f"{primary.url}{EXPORT}/{web}/revisions"
    seen: list[str] = []
    cursor: str | None = None
    for _ in real:
        answer = session.get(url, params={"limit": "1", **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        seen += [item["id"] for item in doc["items"]]
        assert all(item["trust"] and item["size"] > 0 for item in doc["items"])
        cursor = doc["next"]
        assert cursor  # the damaged one is still to come
    assert seen == real  # oldest first, one each, in id order
    last = session.get(url, params={"limit": "1", "cursor": cursor})
    assert last.status_code == 409 and last.json()["error"] == "repository_unreadable"
    everything = session.get(url, params={"limit": "10"})
    assert everything.status_code == 409


def test_one_page_lists_every_revision_oldest_first(primary: Portal) -> None:
    web = primary.repository("web-1")
    revisions = Path(primary.root, web, "revisions")
    real = sorted(p.stem for p in revisions.glob("*.json"))
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {primary.token()}"
    doc = session.get(f"{primary.url}{EXPORT}/{web}/revisions").json()
    assert [item["id"] for item in doc["items"]] == real and doc["next"] is None


# -- 2. repair reports failures to record trust instead of claiming it -----------------------------------


def _damaged_copy(tmp_path: Path, image: Path, name: str = "vm-1") -> tuple[str, str, str]:
    """A repository at ``primary`` with one quarantined chunk (its revision distrusted), and a good ``spare``."""
    primary, spare = str(tmp_path / "damaged"), str(tmp_path / "spare")
    revision = backup(primary, name, f"file:{image}")
    backup(spare, name, f"file:{image}")
    chunk = next(c for c in revision.chunks if c is not None)
    flip_bit(Path(primary, name, "chunks", chunk[:2], chunk))
    assert not verify(primary, name).clean
    return primary, spare, revision.id


def test_repair_does_not_hide_a_manifest_it_cannot_update(tmp_path: Path, image_v1: tuple[Path, bytes]) -> None:
    primary, spare, revision_id = _damaged_copy(tmp_path, image_v1[0])
    source = Repository.open(spare, "vm-1")
    manifest = Path(primary, "vm-1", "revisions", f"{revision_id}.json")

    def fetch(chunk: str) -> bytes | None:
        if manifest.is_file():  # the manifest becomes unreadable while repair runs
            manifest.unlink()
            manifest.mkdir()
        return source.read_stored(chunk)

    with pytest.raises(CorruptRepository):
        repair(primary, "vm-1", fetch)


def test_repair_still_skips_a_revision_forgotten_meanwhile(tmp_path: Path, image_v1: tuple[Path, bytes]) -> None:
    primary, spare, revision_id = _damaged_copy(tmp_path, image_v1[0])
    source = Repository.open(spare, "vm-1")
    manifest = Path(primary, "vm-1", "revisions", f"{revision_id}.json")

    def fetch(chunk: str) -> bytes | None:
        manifest.unlink(missing_ok=True)  # forgotten (retention) while repair runs
        return source.read_stored(chunk)

    result = repair(primary, "vm-1", fetch)
    assert result.clean and not manifest.exists()


def test_repair_cli_reports_a_full_disk_as_one_line(primary: Portal, tmp_path: Path, image_v1: tuple[Path, bytes],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    web = primary.repository("web-1")
    root, _, revision_id = _damaged_copy(tmp_path, image_v1[0], web)

    def disk_full(self: Repository, revision: Any) -> None:  # a full disk cannot be had for real in a test
        raise OSError(errno.ENOSPC, "No space left on device", f"{self.path}/revisions/{revision.id}.json")

    monkeypatch.setattr(Repository, "write_revision", disk_full)
    answer = cli("store", "repair", root, web, "--from", primary.url, "--token", primary.token(), "--json")
    assert answer.exit_code == 2
    assert "No space left on device" in error_line(answer)
    assert Repository.open(root, web).load_revision(revision_id).trust == "distrusted"


# -- 3. the pull bounds what it reads -------------------------------------------------------------------


class Rewrite:
    """A middleware answering GETs of one path with ``answer(environ, start_response)``; counts them."""

    def __init__(self, path: str, answer: Callable[[dict[str, Any], Callable[..., Any]], Any]) -> None:
        self.path, self.answer, self.hits = path, answer, 0
        self.lock = threading.Lock()

    def __call__(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"] == self.path:
                with self.lock:
                    self.hits += 1
                    if self.hits > 20:  # without a bound the client would go on forever: stop it here
                        start_response("500 INTERNAL SERVER ERROR", [("Content-Length", "0")])
                        return [b""]
                return self.answer(environ, start_response)
            return app(environ, start_response)

        return wrapped


def json_answer(doc: dict[str, Any]) -> Callable[[dict[str, Any], Callable[..., Any]], Any]:
    def answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = json.dumps(doc).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return answer


def endless(size: int, *, declared: bool) -> Callable[[dict[str, Any], Callable[..., Any]], Any]:
    """An answer of ``size`` bytes, with or without a Content-Length (then streamed in 64 KiB pieces)."""

    def answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        headers = [("Content-Type", "application/json")]
        if declared:
            headers.append(("Content-Length", str(size)))
        start_response("200 OK", headers)
        piece = b" " * (64 << 10)
        return iter([piece] * (size // len(piece)))

    return answer


@pytest.mark.parametrize("which", ["repositories", "revisions"])
def test_a_repeated_cursor_stops_the_pull(primary: Portal, replica: Portal, which: str) -> None:
    web = primary.repository("web-1")
    path = EXPORT if which == "repositories" else f"{EXPORT}/{web}/revisions"
    items = [{"repository": web, "vm": primary.vms["web-1"].id, "name": "web-1"}] if which == "repositories" else []
    rewrite = Rewrite(path, json_answer({"items": items, "next": "same-again"}))
    primary.server.middleware = rewrite
    answer = pull(primary, primary.token(), replica.root)
    assert answer.exit_code == 1
    assert "repeats a page cursor" in error_line(answer)
    assert rewrite.hits == 2


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
@pytest.mark.parametrize("which", ["repositories", "repository.json", "manifest"])
def test_oversized_answers_are_refused(primary: Portal, replica: Portal, monkeypatch: pytest.MonkeyPatch,
                                       which: str, declared: bool) -> None:
    web = primary.repository("web-1")
    monkeypatch.setattr(storage.replicate, "MAX_MANIFEST", 2 << 20)  # the real bound is 256 MiB
    if which == "repositories":
        path, size = EXPORT, 4 << 20
    elif which == "repository.json":
        path, size = f"{EXPORT}/{web}/repository.json", 4 << 20
    else:
        first = sorted(p.stem for p in Path(primary.root, web, "revisions").glob("*.json"))[0]
        path, size = f"{EXPORT}/{web}/revisions/{first}", 8 << 20
    primary.server.middleware = Rewrite(path, endless(size, declared=declared))
    answer = pull(primary, primary.token(), replica.root)
    assert answer.exit_code == 1
    assert "is larger than" in error_line(answer)
    assert not list(Path(replica.root).glob("*/revisions/*.json"))


def test_a_normal_pull_still_works_within_the_bounds(primary: Portal, replica: Portal) -> None:
    answer = pull(primary, primary.token(), replica.root)
    assert answer.exit_code == 0, answer.output
    web = primary.repository("web-1")
    assert sorted(p.name for p in Path(replica.root, web, "revisions").glob("*.json")) == \
        sorted(p.name for p in Path(primary.root, web, "revisions").glob("*.json"))
