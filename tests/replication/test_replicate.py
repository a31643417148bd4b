"""Replication between two portals on loopback: pull, resume, distrust kept, heal, tokens and VM restriction."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from portal.cli import main
from portal.models import BackupPoint
from storage.replicate import RECORD_HEADER
from storage.repository import Repository
from storage.restore import restore
from storage.verify import verify
from tests.storage.diskdata import chunk_files, flip_bit, temp_files

from .conftest import Portal

LIFEBOAT = str(Path(sys.executable).with_name("lifeboat"))


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def pull(source: Portal, token: str, root: Path, *extra: str) -> Any:
    return cli("replicate", "pull", source.url, "--token", token, str(root), "--json", *extra)


def manifests(root: Path, repository: str) -> dict[str, bytes]:
    folder = root / repository / "revisions"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}


def restored(root: Path, repository: str, revision: str, tmp_path: Path) -> tuple[bytes, list[Any]]:
    target = tmp_path / f"restored-{repository}-{revision}.img"
    if target.exists():
        target.unlink()
    result = restore(str(root), repository, revision, str(target), sync=False)
    return target.read_bytes(), result.damaged


def test_pull_replicates_everything_and_a_second_pull_moves_nothing(primary: Portal, replica: Portal, tmp_path,
                                                                    image_v1, image_v2) -> None:
    token = primary.token()
    answer = pull(primary, token, replica.root)
    assert answer.exit_code == 0, answer.output
    first = json.loads(answer.stdout)
    web, other = primary.repository("web-1"), primary.repository("db-1")
    assert sorted(first["repositories"]) == sorted([web, other])
    assert len(first["revisions_pulled"]) == 3
    # shared chunks are fetched once per repository: v1 has 9 data chunks (one of each seed), v2 two new
    assert first["chunks_fetched"] == 9 + 2 + 9
    for repository in (web, other):
        assert manifests(replica.root, repository) == manifests(primary.root, repository)  # bytes as stored
        assert verify(str(replica.root), repository).clean
    revisions = [r.id for r in Repository.open(str(replica.root), web).revisions()]
    assert restored(replica.root, web, revisions[0], tmp_path) == (image_v1[1], [])
    assert restored(replica.root, web, revisions[1], tmp_path) == (image_v2[1], [])
    assert not temp_files(replica.root / web)

    again = pull(primary, token, replica.root)
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert second["chunks_fetched"] == 0 and second["bytes_fetched"] == 0 and second["revisions_pulled"] == []

    # the replica's portal sees the same backup points once its catalog is rebuilt from its root
    assert replica.rebuild_catalog() == 3
    with replica.app.app_context():
        from portal.extensions import db

        points = db.session.scalars(select(BackupPoint.revision).where(
            BackupPoint.vm_id == replica.vms["web-1"].id).order_by(BackupPoint.revision)).all()
    assert points == sorted(revisions)


def test_pull_only_what_is_new_after_another_backup(primary: Portal, replica: Portal, tmp_path) -> None:
    from storage.backup import backup

    token = primary.token()
    assert pull(primary, token, replica.root, "--vm", "web-1").exit_code == 0
    changed = tmp_path / "disk-v3.img"
    data = bytearray((tmp_path / "disk-v2.img").read_bytes())
    data[5 * 4 * 2**20 : 5 * 4 * 2**20 + 4096] = os.urandom(4096)  # one block changed
    changed.write_bytes(bytes(data))
    web = primary.repository("web-1")
    revision = backup(str(primary.root), web, f"file:{changed}")
    answer = pull(primary, token, replica.root, "--vm", web)
    assert answer.exit_code == 0, answer.output
    doc = json.loads(answer.stdout)
    assert doc["revisions_pulled"] == [f"{web}/{revision.id}"] and doc["chunks_fetched"] == 1
    assert restored(replica.root, web, revision.id, tmp_path) == (bytes(data), [])


def records_end(body: bytes, count: int) -> int:
    """The offset after the first ``count`` records of a batch answer (portal/api/export.py's format)."""
    offset = 0
    for _ in range(count):
        length = int(body[offset + 65:offset + 81])
        offset += RECORD_HEADER + max(length, 0)
    return offset


def count_records(body: bytes) -> int:
    count = offset = 0
    while offset < len(body):
        offset = records_end(body, count + 1)
        count += 1
    return count


def is_batch(environ: dict[str, Any]) -> bool:
    return environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith("/chunks")


def refuse(start_response: Callable[..., Any], status: str, body: bytes = b"gone") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class FailAfter:
    """A source going away: lets ``allowed`` chunks through, then cuts the answer carrying the next one
    mid-way (the client sees the connection end early) and answers 500 to every chunk request after that.

    ``batches=False`` plays a portal without the batch endpoint (404 to ``POST .../chunks``): the client
    asks one chunk per GET, and those are cut off after ``allowed``.
    """

    def __init__(self, allowed: int, *, batches: bool = True) -> None:
        self.allowed = allowed
        self.batches = batches
        self.served = 0
        self.lock = threading.Lock()

    def __call__(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if is_batch(environ):
                if not self.batches:
                    return refuse(start_response, "404 NOT FOUND")
                with self.lock:
                    left = self.allowed - self.served
                if left <= 0:
                    return refuse(start_response, "500 INTERNAL SERVER ERROR")
                answer = app(environ, start_response)  # passes the real headers: Content-Length of the whole
                try:
                    body = b"".join(answer)
                finally:
                    answer.close()
                records = count_records(body)
                with self.lock:
                    self.served += min(left, records)
                if records <= left:
                    return [body]
                return [body[:records_end(body, left) + 1000]]  # the next record cut short, then the end
            if "/chunks/" in environ["PATH_INFO"]:
                with self.lock:
                    self.served += 1
                    if self.served > self.allowed:
                        return refuse(start_response, "500 INTERNAL SERVER ERROR")
            return app(environ, start_response)

        return wrapped


class Count:
    """A middleware that counts batch requests and single chunk GETs."""

    def __init__(self) -> None:
        self.batches = self.singles = 0
        self.lock = threading.Lock()

    def __call__(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            with self.lock:
                self.batches += is_batch(environ)
                self.singles += "/chunks/" in environ["PATH_INFO"]
            return app(environ, start_response)

        return wrapped


def test_a_pull_asks_for_chunks_in_batches(primary: Portal, replica: Portal, tmp_path, image_v2) -> None:
    count = Count()
    primary.server.middleware = count
    web = primary.repository("web-1")
    answer = pull(primary, primary.token(), replica.root, "--vm", "web-1", "--threads", "2")
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout)["chunks_fetched"] == 11
    assert count.singles == 0 and count.batches == 2  # 11 chunks for 2 connections: two batches
    assert manifests(replica.root, web) == manifests(primary.root, web)
    assert verify(str(replica.root), web).clean
    latest = Repository.open(str(replica.root), web).revisions()[-1].id
    assert restored(replica.root, web, latest, tmp_path) == (image_v2[1], [])


@pytest.mark.parametrize("batches", [True, False], ids=["batches", "one-per-get"])
def test_an_interrupted_pull_writes_no_manifest_and_the_rerun_continues(primary: Portal, replica: Portal,
                                                                         tmp_path, image_v2, batches: bool) -> None:
    token = primary.token()
    web = primary.repository("web-1")
    primary.server.middleware = FailAfter(5, batches=batches)
    broken = pull(primary, token, replica.root, "--vm", "web-1", "--threads", "1")
    assert broken.exit_code == 1
    assert "chunks could not be fetched" in broken.stderr and "run the same command again" in broken.stderr
    assert len(broken.stderr.strip().splitlines()[-1].split("\n")) == 1
    assert manifests(replica.root, web) == {}  # nothing shown that cannot be restored
    stored = chunk_files(replica.root / web)
    assert len(stored) == 5  # the chunks before the cut, whole; the one cut mid-way is not stored
    assert not temp_files(replica.root / web)
    repo = Repository.open(str(replica.root), web)
    for path in stored:
        repo.read_chunk(path.name)  # every chunk file there is whole and checked

    count = Count()
    primary.server.middleware = (lambda app: count(FailAfter(99, batches=batches)(app)))
    resumed = pull(primary, token, replica.root, "--vm", "web-1")
    assert resumed.exit_code == 0, resumed.output
    doc = json.loads(resumed.stdout)
    assert doc["chunks_fetched"] == 11 - 5 and doc["chunks_present"] == 5
    assert (count.singles == 0) == batches  # a portal without batches is asked one chunk per GET
    assert manifests(replica.root, web) == manifests(primary.root, web)
    assert verify(str(replica.root), web).clean
    latest = Repository.open(str(replica.root), web).revisions()[-1].id
    assert restored(replica.root, web, latest, tmp_path) == (image_v2[1], [])


class Stall:
    """A middleware that lets ``allowed`` chunks through (records of batch answers), then holds the answer."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.served = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def __call__(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if not is_batch(environ):
                return app(environ, start_response)
            answer = app(environ, start_response)
            try:
                body = b"".join(answer)
            finally:
                answer.close()
            records = count_records(body)
            with self.lock:
                take = max(0, min(records, self.allowed - self.served))
                self.served += take
            return self._held(body, take, records)

        return wrapped

    def _held(self, body: bytes, take: int, records: int) -> Iterator[bytes]:
        yield body[:records_end(body, take)]
        if take < records:
            self.release.wait(60)  # then end short: the client sees a broken answer


def test_a_pull_killed_mid_way_resumes(primary: Portal, replica: Portal, tmp_path, image_v2) -> None:
    token = primary.token()
    web = primary.repository("web-1")
    stall = Stall(4)
    primary.server.middleware = stall
    process = subprocess.Popen([LIFEBOAT, "replicate", "pull", primary.url, "--vm", "web-1", "--threads", "2",
                                str(replica.root)], env={**os.environ, "LIFEBOAT_TOKEN": token},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        # chunks become visible in batches, after their fsync: count what has been written, temp files too
        while len(list((replica.root / web).glob("chunks/*/*"))) < 4:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the pull never stored its first chunks"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.communicate()
    finally:
        stall.release.set()
        if process.poll() is None:
            process.kill()
    assert manifests(replica.root, web) == {}
    repo = Repository.open(str(replica.root), web)
    for path in chunk_files(replica.root / web):  # whatever the killed pull had named is whole
        repo.read_chunk(path.name)
    primary.server.middleware = None
    resumed = pull(primary, token, replica.root, "--vm", "web-1")
    assert resumed.exit_code == 0, resumed.output
    assert not temp_files(replica.root / web)
    assert verify(str(replica.root), web).clean
    latest = Repository.open(str(replica.root), web).revisions()[-1].id
    assert restored(replica.root, web, latest, tmp_path) == (image_v2[1], [])


def _chunk_only_in_latest(root: Path, repository: str) -> str:
    first, second = Repository.open(str(root), repository).revisions()
    return next(c for c in second.chunks if c is not None and c not in first.chunks)


def test_points_distrusted_at_the_source_stay_distrusted(primary: Portal, replica: Portal, tmp_path,
                                                          image_v1) -> None:
    web = primary.repository("web-1")
    bad = _chunk_only_in_latest(primary.root, web)
    flip_bit(primary.root / web / "chunks" / bad[:2] / bad)
    found = verify(str(primary.root), web)
    first, second = [r.id for r in Repository.open(str(primary.root), web).revisions()]
    assert found.distrusted_revisions == [second]

    answer = pull(primary, primary.token(), replica.root, "--vm", "web-1")
    assert answer.exit_code == 0, answer.output
    doc = json.loads(answer.stdout)
    assert list(doc["chunks_unavailable"]) == [bad]
    trust = {r.id: r.trust for r in Repository.open(str(replica.root), web).revisions()}
    assert trust == {first: "verified", second: "distrusted"}
    checked = verify(str(replica.root), web)
    assert checked.distrusted_revisions == [second] and checked.damaged_chunks == [bad]
    assert restored(replica.root, web, first, tmp_path) == (image_v1[1], [])
    _, damaged = restored(replica.root, web, second, tmp_path)
    assert damaged == found.damaged_ranges[second]


def test_repair_heals_the_primary_from_the_replica(primary: Portal, replica: Portal, tmp_path, image_v2) -> None:
    web = primary.repository("web-1")
    assert pull(primary, primary.token(), replica.root).exit_code == 0
    # bit rot on the primary: a chunk both revisions share, and one only the latest has
    revisions = Repository.open(str(primary.root), web).revisions()
    shared = next(c for c in revisions[0].chunks if c is not None and c in revisions[1].chunks)
    only_latest = _chunk_only_in_latest(primary.root, web)
    for chunk in (shared, only_latest):
        flip_bit(primary.root / web / "chunks" / chunk[:2] / chunk)
    found = verify(str(primary.root), web)
    assert sorted(found.quarantined) == sorted([shared, only_latest])
    assert sorted(found.distrusted_revisions) == sorted(r.id for r in revisions)
    primary.rebuild_catalog()

    answer = cli("store", "repair", str(primary.root), web, "--from", replica.url, "--token", replica.token(),
                 "--json")
    assert answer.exit_code == 0, answer.output
    doc = json.loads(answer.stdout)
    assert sorted(doc["chunks_repaired"]) == sorted([shared, only_latest])
    assert sorted(doc["revisions_trusted"]) == sorted(r.id for r in revisions)
    assert doc["chunks_unavailable"] == {} and doc["revisions_distrusted"] == []
    assert {r.trust for r in Repository.open(str(primary.root), web).revisions()} == {"verified"}
    assert verify(str(primary.root), web).clean
    assert restored(primary.root, web, revisions[1].id, tmp_path) == (image_v2[1], [])
    quarantine = list((primary.root / web / "quarantine").iterdir())
    assert len(quarantine) == 2  # the damaged copies are kept, never deleted
    primary.rebuild_catalog()
    with primary.app.app_context():
        from portal.extensions import db

        states = set(db.session.scalars(select(BackupPoint.state).where(
            BackupPoint.vm_id == primary.vms["web-1"].id)))
    assert states == {"verified"}


def test_repair_from_a_copy_that_lacks_the_chunk_keeps_the_revision_distrusted(primary: Portal, replica: Portal
                                                                               ) -> None:
    web = primary.repository("web-1")
    bad = _chunk_only_in_latest(primary.root, web)
    flip_bit(primary.root / web / "chunks" / bad[:2] / bad)
    verify(str(primary.root), web)
    # the replica's repository of web-1 is empty (nothing pulled): nothing to heal from
    answer = cli("store", "repair", str(primary.root), web, "--from", replica.url, "--token", replica.token(),
                 "--json")
    assert answer.exit_code == 1
    doc = json.loads(answer.stdout)
    assert list(doc["chunks_unavailable"]) == [bad]
    second = Repository.open(str(primary.root), web).revisions()[1].id
    assert doc["revisions_distrusted"] == [second]


def test_tokens_without_export_read_are_refused(primary: Portal, replica: Portal) -> None:
    import requests

    token = primary.token(["backups:read"])
    answer = requests.get(f"{primary.url}/api/v1/export", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 403 and answer.json()["error"] == "insufficient_scope"
    web = primary.repository("web-1")
    some = next(p.name for p in chunk_files(primary.root / web))
    for path in ("", f"/{web}/repository.json", f"/{web}/revisions", f"/{web}/chunks/{some}"):
        assert requests.get(f"{primary.url}/api/v1/export{path}", headers={"Authorization": f"Bearer {token}"},
                            timeout=30).status_code == 403
        assert requests.get(f"{primary.url}/api/v1/export{path}", timeout=30).status_code == 401
    refused = pull(primary, token, replica.root)
    assert refused.exit_code == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "403" in lines[0] and "export:read" in lines[0]
    bad_token = pull(primary, "lbt_nonsense", replica.root)
    assert bad_token.exit_code == 2 and "401" in bad_token.stderr
    assert not (replica.root / web).exists()


def test_the_vm_restriction_and_tenancy_are_honoured(primary: Portal, replica: Portal) -> None:
    import requests

    web, other = primary.repository("web-1"), primary.repository("db-1")
    token = primary.token(vm_ids=[primary.vms["web-1"].id])
    headers = {"Authorization": f"Bearer {token}"}
    listing = requests.get(f"{primary.url}/api/v1/export", headers=headers, timeout=30).json()
    assert listing == {"items": [{"repository": web, "vm": primary.vms["web-1"].id, "name": "web-1"}],
                       "next": None}
    some = next(p.name for p in chunk_files(primary.root / other))
    for path in (f"/{other}/repository.json", f"/{other}/revisions", f"/{other}/chunks/{some}", "/vm-999/revisions",
                 "/etc/revisions", f"/{web}/chunks/{'0' * 64}", f"/{web}/revisions/nope"):
        answer = requests.get(f"{primary.url}/api/v1/export{path}", headers=headers, timeout=30)
        assert answer.status_code == 404, path
        assert set(answer.json()) >= {"error", "message"}
    assert requests.get(f"{primary.url}/api/v1/export/{web}/chunks/{chunk_files(primary.root / web)[0].name}",
                        headers=headers, timeout=30).status_code == 200

    refused = pull(primary, token, replica.root, "--vm", "db-1")
    assert refused.exit_code == 2 and "exports no VM 'db-1'" in refused.stderr
    answer = pull(primary, token, replica.root)
    assert answer.exit_code == 0 and json.loads(answer.stdout)["repositories"] == [web]
    assert not (replica.root / other).exists()

    # another organisation's admin sees none of acme's repositories
    with primary.app.app_context():
        from portal.extensions import db
        from portal.models import User
        from portal.services.tokens import create_token

        globex = db.session.scalars(select(User).where(User.email == "admin@globex.example")).one()
        _, foreign = create_token(globex, ["export:read"])
    headers = {"Authorization": f"Bearer {foreign}"}
    assert requests.get(f"{primary.url}/api/v1/export", headers=headers, timeout=30).json()["items"] == []
    assert requests.get(f"{primary.url}/api/v1/export/{web}/revisions", headers=headers,
                        timeout=30).status_code == 404


def test_chunks_are_immutable_and_conditional(primary: Portal) -> None:
    import requests

    web = primary.repository("web-1")
    path = chunk_files(primary.root / web)[0]
    url = f"{primary.url}/api/v1/export/{web}/chunks/{path.name}"
    headers = {"Authorization": f"Bearer {primary.token()}"}
    answer = requests.get(url, headers=headers, timeout=30)
    assert answer.status_code == 200 and answer.content == path.read_bytes()
    assert answer.headers["ETag"] == f'"{path.name}"'
    assert "immutable" in answer.headers["Cache-Control"]
    again = requests.get(url, headers={**headers, "If-None-Match": f'"{path.name}"'}, timeout=30)
    assert again.status_code == 304 and again.content == b""
    revision = Repository.open(str(primary.root), web).revisions()[0].id
    manifest = requests.get(f"{primary.url}/api/v1/export/{web}/revisions/{revision}", headers=headers, timeout=30)
    assert manifest.content == (primary.root / web / "revisions" / f"{revision}.json").read_bytes()
    assert requests.get(f"{primary.url}/api/v1/export/{web}/revisions/{revision}", timeout=30,
                        headers={**headers, "If-None-Match": manifest.headers["ETag"]}).status_code == 304
    listing = requests.get(f"{primary.url}/api/v1/export/{web}/revisions", headers=headers,
                           params={"limit": 1}, timeout=30).json()
    assert len(listing["items"]) == 1 and listing["next"]
    rest = requests.get(f"{primary.url}/api/v1/export/{web}/revisions", headers=headers,
                        params={"cursor": listing["next"]}, timeout=30).json()
    assert [i["id"] for i in listing["items"] + rest["items"]] == sorted(
        r.id for r in Repository.open(str(primary.root), web).revisions())
    assert rest["next"] is None and set(rest["items"][0]) == {"id", "created", "trust", "size", "disks"}


def test_bad_input_is_one_line_and_exit_2(tmp_path) -> None:
    for args in (["replicate", "pull", "ftp://x", "--token", "t", str(tmp_path)],
                 ["replicate", "pull", "http://127.0.0.1:9", "--token", "t", str(tmp_path)],
                 ["store", "repair", str(tmp_path), "vm-1", "--from", "http://127.0.0.1:9", "--token", "t"]):
        answer = cli(*args)
        assert answer.exit_code in (1, 2), answer.output
        assert len(answer.stderr.strip().splitlines()) == 1 and answer.stderr.startswith("lifeboat: error:")
    assert cli("replicate", "pull", "ftp://x", "--token", "t", str(tmp_path)).exit_code == 2
