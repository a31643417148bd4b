"""``POST /api/v1/export/{repository}/chunks``: many chunks as stored in one streamed answer, over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from portal.api import export
from storage.repository import Repository
from storage.wire import MISSING, RECORD_HEADER, BadRecord, parse_record_header, record_header
from tests.storage.diskdata import chunk_files

from .conftest import Portal

NOWHERE = "0" * 64


def records(body: bytes, hashes: list[str]) -> list[tuple[str, bytes | None]]:
    """Parse a batch answer the way the client does; it must hold exactly one record per hash, in order."""
    found: list[tuple[str, bytes | None]] = []
    offset = 0
    for chunk in hashes:
        length = parse_record_header(body[offset:offset + RECORD_HEADER], chunk)
        offset += RECORD_HEADER
        if length == MISSING:
            found.append((chunk, None))
            continue
        found.append((chunk, body[offset:offset + length]))
        offset += length
    assert offset == len(body)
    return found


def post(portal: Portal, repository: str, doc: Any, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{portal.url}/api/v1/export/{repository}/chunks", json=doc, headers=headers, timeout=30)


def test_chunks_as_stored_in_the_order_asked_with_missing_ones_marked(primary: Portal) -> None:
    web = primary.repository("web-1")
    files = {p.name: p for p in chunk_files(primary.root / web)}
    hashes = [*list(files)[:3], NOWHERE, list(files)[0]]
    answer = post(primary, web, {"hashes": hashes}, primary.token())
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/vnd.lifeboat.chunks"
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    assert "no-store" in answer.headers["Cache-Control"]
    got = records(answer.content, hashes)
    assert got == [(h, files[h].read_bytes() if h in files else None) for h in hashes]


def test_a_quarantined_chunk_is_marked_missing(primary: Portal) -> None:
    web = primary.repository("web-1")
    chunk = chunk_files(primary.root / web)[0].name
    Repository.open(str(primary.root), web).quarantine(chunk)
    answer = post(primary, web, {"hashes": [chunk]}, primary.token())
    assert answer.status_code == 200
    assert answer.content == f"{chunk} -000000000000001\n".encode()
    assert requests.get(f"{primary.url}/api/v1/export/{web}/chunks/{chunk}", timeout=30,
                        headers={"Authorization": f"Bearer {primary.token()}"}).status_code == 404


BAD = [
    {"hashes": []},
    {"hashes": ["0" * 63]},
    {"hashes": ["0" * 65]},
    {"hashes": ["A" * 64]},
    {"hashes": ["../" + "0" * 61]},
    {"hashes": [NOWHERE] * (export.MAX_BATCH + 1)},
    {"hashes": NOWHERE},
    {"hashes": [NOWHERE], "other": 1},
    {},
    [NOWHERE],
    "not json at all",
]


def test_bad_input_is_a_json_4xx(primary: Portal) -> None:
    token = primary.token()
    for doc in BAD:  # one portal for all (a loop, not parameters: the fixture makes three backups)
        answer = post(primary, primary.repository("web-1"), doc, token)
        assert answer.status_code == 422, (doc, answer.text)
        assert {"error", "message"} <= set(answer.json())
    answer = requests.post(f"{primary.url}/api/v1/export/{primary.repository('web-1')}/chunks", data=b"\xff{",
                           headers={"Authorization": f"Bearer {primary.token()}",
                                    "Content-Type": "application/json"}, timeout=30)
    assert 400 <= answer.status_code < 500 and {"error", "message"} <= set(answer.json()), answer.text


def test_more_bytes_than_a_batch_may_carry_is_413(primary: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    web = primary.repository("web-1")
    files = chunk_files(primary.root / web)
    monkeypatch.setattr(export, "MAX_BATCH_BYTES", files[0].stat().st_size + RECORD_HEADER)  # one chunk's worth
    answer = post(primary, web, {"hashes": [files[0].name, files[1].name]}, primary.token())
    assert answer.status_code == 413 and answer.json()["error"] == "too_large"
    assert post(primary, web, {"hashes": [files[0].name]}, primary.token()).status_code == 200


def test_tokens_scopes_tenancy_and_the_vm_restriction(primary: Portal) -> None:
    web, other = primary.repository("web-1"), primary.repository("db-1")
    doc = {"hashes": [chunk_files(primary.root / web)[0].name]}
    assert post(primary, web, doc, None).status_code == 401
    assert post(primary, web, doc, "lbt_nonsense").status_code == 401
    refused = post(primary, web, doc, primary.token(["backups:read"]))
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    only_db = primary.token(vm_ids=[primary.vms["db-1"].id])
    assert post(primary, web, doc, only_db).status_code == 404
    assert post(primary, other, {"hashes": [NOWHERE]}, only_db).status_code == 200
    for repository in ("vm-99999", "etc", "vm-0"):
        answer = post(primary, repository, doc, primary.token())
        assert answer.status_code == 404 and {"error", "message"} <= set(answer.json())

    # another organisation's admin: acme's repositories do not exist for them
    with primary.app.app_context():
        from sqlalchemy import select

        from portal.extensions import db
        from portal.models import User
        from portal.services.tokens import create_token

        globex = db.session.scalars(select(User).where(User.email == "admin@globex.example")).one()
        _, foreign = create_token(globex, ["export:read"])
    answer = post(primary, web, doc, foreign)
    assert answer.status_code == 404 and b"web-1" not in answer.content


def test_the_openapi_document_describes_it(app) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    operation = doc["paths"]["/api/v1/export/{repository}/chunks"]["post"]
    assert operation["x-scopes"] == ["export:read"]
    assert "application/vnd.lifeboat.chunks" in operation["responses"]["200"]["content"]
    assert "requestBody" in operation


@pytest.mark.parametrize("header", [
    b"",  # nothing
    record_header("b" * 64, 5),  # another chunk's record: out of order
    record_header("a" * 64, 5)[:-1] + b" ",  # no newline
    ("a" * 64 + " " + "-000000000000002\n").encode(),  # below MISSING
    ("a" * 64 + " " + "00000000000000x5\n").encode(),  # not a number
    ("a" * 64 + " " + "0000000000000005\n\n").encode(),  # too long
])
def test_the_wire_refuses_malformed_record_headers(header: bytes) -> None:
    with pytest.raises(BadRecord):
        parse_record_header(header, "a" * 64)


def test_record_headers_round_trip() -> None:
    for length in (MISSING, 0, 4 << 20):
        header = record_header("c" * 64, length)
        assert len(header) == RECORD_HEADER and parse_record_header(header, "c" * 64) == length
