"""A selection download is capped (DOWNLOAD_MAX_BYTES): a sparse file claiming a terabyte inside a small backup is
refused up front with the numbers, from the pages and from the API, instead of streaming a terabyte of zeros."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portal.extensions import db
from portal.models import BackupPoint
from portal.services import catalog, tokens
from storage.backup import backup
from tests.images import gpt_ext4, have

pytestmark = pytest.mark.skipif(not have("sfdisk", "mkfs.ext4"), reason="needs sfdisk and mkfs.ext4 (e2fsprogs)")

TIB = 1 << 40


@pytest.fixture
def sparse_point(app, world, tmp_path: Path) -> tuple[Any, BackupPoint]:
    """acme's web-1 backed up from a 64 MiB disk whose ext4 holds a 1 TiB sparse file and a small one."""
    tree = tmp_path / "tree"
    (tree / "srv").mkdir(parents=True)
    with open(tree / "srv" / "huge.img", "wb") as handle:
        handle.truncate(TIB)  # all hole: mkfs.ext4 -d keeps it sparse
    (tree / "srv" / "small.txt").write_bytes(b"hello\n" * 1000)
    image = gpt_ext4(tmp_path / "disk.img", tree)
    vm = world["acme_vm"]
    backup(app.config["STORAGE_ROOT"], vm.repository_name, f"file:{image}")
    catalog.refresh(vm)
    db.session.commit()
    catalog_only = world["acme_point"].revision  # the world's point has no repository behind it
    point = BackupPoint.query.filter(BackupPoint.vm_id == vm.id, BackupPoint.revision != catalog_only).one()
    return vm, point


def test_a_huge_sparse_file_is_refused_from_the_page_with_the_limit(client, auth, world, sparse_point) -> None:
    vm, point = sparse_point
    auth.login(world["acme_member"])
    base = f"/vms/{vm.id}/backups/{point.id}"
    listing = client.get(f"{base}/files?path=/p1/srv")
    assert b"huge.img" in listing.data  # browsing it is fine
    refused = client.get(f"{base}/download?path=/p1/srv/huge.img")
    refused.close()
    assert refused.status_code == 422
    text = refused.get_data(as_text=True)
    assert "more than 16.0 GiB of file data" in text and "/p1/srv/huge.img (1.0 TiB)" in text
    assert "restore the selection as a job" in text
    for kind in ("tar.gz", "zip"):
        refused = client.get(f"{base}/download?path=/p1/srv&format={kind}")  # the folder holding it, too
        refused.close()
        assert refused.status_code == 422
    fine = client.get(f"{base}/download?path=/p1/srv/small.txt")
    assert fine.status_code == 200 and len(fine.data) > 0


def test_the_cap_is_configurable_and_applies_to_the_api(app, client, world, sparse_point) -> None:
    vm, point = sparse_point
    headers = {"Authorization": f"Bearer {tokens.create_token(world['acme_member'], ['backups:read'], name='t')[1]}"}
    url = f"/api/v1/vms/{vm.id}/backups/{point.id}/download?path=/p1/srv/small.txt"
    app.config["DOWNLOAD_MAX_BYTES"] = 1000  # smaller than small.txt (6000 bytes)
    refused = client.get(url, headers=headers)
    assert refused.status_code == 422 and "more than 1000 bytes of file data" in refused.json["message"]
    app.config["DOWNLOAD_MAX_BYTES"] = 0  # no limit
    allowed = client.get(url, headers=headers)
    assert allowed.status_code == 200
    allowed.close()
