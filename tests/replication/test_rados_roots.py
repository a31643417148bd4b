"""Replication with repositories in RADOS: a portal whose LIFEBOAT_STORAGE_ROOT is a pool exports them, and a
pull writes into a folder or into another pool (the backup cluster of tests/fixtures/store.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from storage.backup import backup
from storage.repository import Repository
from storage.restore import restore
from storage.verify import verify

from ..fixtures.store import BackupCluster
from .conftest import Portal, _portal
from .test_replicate import pull

pytestmark = pytest.mark.ceph


@pytest.fixture
def rados_primary(app: Flask, backup_cluster: BackupCluster, image_v1: tuple[Path, bytes],
                  image_v2: tuple[Path, bytes]) -> Iterator[Portal]:
    """The primary portal with its repositories in a pool: two backups of web-1, one of db-1."""
    root = f"rados:{backup_cluster.pool}/primary-{uuid.uuid4().hex[:8]}"
    app.config["STORAGE_ROOT"] = root
    portal = _portal(app, root)  # type: ignore[arg-type]
    web, other = portal.repository("web-1"), portal.repository("db-1")
    backup(root, web, f"file:{image_v1[0]}")
    backup(root, web, f"file:{image_v2[0]}")
    backup(root, other, f"file:{image_v1[0]}")
    portal.rebuild_catalog()
    yield portal
    portal.server.stop()


@pytest.mark.parametrize("into", ["folder", "pool"])
def test_a_pool_exports_and_a_pull_lands_in_a_folder_or_a_pool(rados_primary: Portal, backup_cluster: BackupCluster,
                                                               tmp_path: Path, image_v2: tuple[Path, bytes],
                                                               into: str) -> None:
    root = str(tmp_path / "replica") if into == "folder" else f"rados:{backup_cluster.pool}/rep-{uuid.uuid4().hex[:8]}"
    token = rados_primary.token()
    answer = pull(rados_primary, token, root)  # type: ignore[arg-type]
    assert answer.exit_code == 0, answer.output
    first = json.loads(answer.stdout)
    assert len(first["revisions_pulled"]) == 3 and first["chunks_fetched"] == 9 + 2 + 9
    web = rados_primary.repository("web-1")
    source = Repository.open(str(rados_primary.root), web)
    assert [r.id for r in Repository.open(root, web).revisions()] == [r.id for r in source.revisions()]
    assert [source.read_manifest(r.id) for r in source.revisions()] == \
        [Repository.open(root, web).read_manifest(r.id) for r in source.revisions()]  # bytes as stored
    assert verify(root, web).clean
    out = tmp_path / "web.img"
    restore(root, web, "latest", str(out))
    assert out.read_bytes() == image_v2[1]
    again = json.loads(pull(rados_primary, token, root).stdout)  # type: ignore[arg-type]
    assert again["chunks_fetched"] == 0 and again["revisions_pulled"] == []
