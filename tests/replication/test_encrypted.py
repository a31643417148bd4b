"""Replication and repair of encrypted repositories (issue 17): ciphertext travels as stored. A replica without
the organisation key stores, verifies (outer hashes) and serves for repair, but cannot restore; with the key it
restores byte for byte."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from storage import keys
from storage.backup import backup
from storage.keys import KeyFile, KeyRequired, KeyRing
from storage.repository import Repository
from storage.restore import restore
from storage.verify import verify
from tests.storage.diskdata import chunk_files, flip_bit

from .conftest import Portal, _portal
from .test_replicate import cli, pull


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "acme.key"
    KeyFile.create("acme").save(str(path))
    return path


@pytest.fixture
def ring(keyfile: Path) -> KeyRing:
    return KeyRing.from_file(str(keyfile))


@pytest.fixture
def encrypted_primary(app: Flask, ring: KeyRing, image_v1: tuple[Path, bytes],
                      image_v2: tuple[Path, bytes]) -> Iterator[Portal]:
    """The primary portal with two encrypted backups of web-1 (v1, then v2). Its server has no key: it serves
    ciphertext as stored, as any portal does."""
    root = Path(app.config["STORAGE_ROOT"])
    portal = _portal(app, root)
    web = portal.repository("web-1")
    backup(str(root), web, f"file:{image_v1[0]}", keys=ring)
    backup(str(root), web, f"file:{image_v2[0]}", keys=ring)
    yield portal
    portal.server.stop()


def test_a_replica_without_the_key_holds_verifies_and_cannot_restore(encrypted_primary: Portal, replica: Portal,
                                                                     ring: KeyRing, keyfile: Path, tmp_path: Path,
                                                                     image_v1: tuple[Path, bytes],
                                                                     image_v2: tuple[Path, bytes]) -> None:
    web = encrypted_primary.repository("web-1")
    answer = pull(encrypted_primary, encrypted_primary.token(), replica.root)
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout)["chunks_fetched"] == 9 + 2
    primary_files = {p.name: p.read_bytes() for p in chunk_files(encrypted_primary.root / web)}
    assert {p.name: p.read_bytes() for p in chunk_files(replica.root / web)} == primary_files  # as stored
    checked = verify(str(replica.root), web, without_key=True)
    assert checked.clean and not checked.contents_checked and checked.chunks_checked == 11
    with pytest.raises(KeyRequired):
        restore(str(replica.root), web, "latest", str(tmp_path / "nope.img"))
    refused = cli("store", "restore", str(replica.root), web, "latest", str(tmp_path / "nope.img"))
    assert refused.exit_code == 2 and "encrypted" in refused.output
    assert not (tmp_path / "nope.img").exists()
    # with the key exported to it, the replica restores byte for byte
    revisions = [r.id for r in Repository.open(str(replica.root), web, keys=ring).revisions()]
    for revision, (_, expected) in zip(revisions, (image_v1, image_v2), strict=True):
        out = tmp_path / f"{revision}.img"
        done = cli("store", "restore", str(replica.root), web, revision, str(out), "--key-file", str(keyfile))
        assert done.exit_code == 0, done.output
        assert out.read_bytes() == expected
    with keys.using(ring):
        full = verify(str(replica.root), web)
    assert full.clean and full.contents_checked


def test_bit_rot_at_a_keyless_replica_is_found_and_the_primary_is_repaired_from_it(
        encrypted_primary: Portal, replica: Portal, ring: KeyRing, tmp_path: Path,
        image_v2: tuple[Path, bytes]) -> None:
    web = encrypted_primary.repository("web-1")
    assert pull(encrypted_primary, encrypted_primary.token(), replica.root).exit_code == 0
    # the replica's own verify, without the key, finds its rotten chunk and distrusts the revisions needing it
    rotten = chunk_files(replica.root / web)[0]
    flip_bit(rotten)
    found = verify(str(replica.root), web, without_key=True)
    assert found.damaged_chunks == [rotten.name] and found.distrusted_revisions
    # the primary loses two chunks; the keyless replica serves good ciphertext for them
    victims = [p for p in chunk_files(encrypted_primary.root / web) if p.name != rotten.name][:2]
    for victim in victims:
        flip_bit(victim)
    with keys.using(ring):
        damaged = verify(str(encrypted_primary.root), web)
    assert sorted(damaged.quarantined) == sorted(v.name for v in victims)
    answer = cli("store", "repair", str(encrypted_primary.root), web, "--from", replica.url, "--token",
                 replica.token(), "--json")
    assert answer.exit_code == 0, answer.output
    assert sorted(json.loads(answer.stdout)["chunks_repaired"]) == sorted(v.name for v in victims)
    with keys.using(ring):
        assert verify(str(encrypted_primary.root), web).clean
        out = tmp_path / "latest.img"
        result = restore(str(encrypted_primary.root), web, "latest", str(out), sync=False)
    assert result.damaged == [] and out.read_bytes() == image_v2[1]
