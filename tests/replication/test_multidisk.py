"""Export, replication and repair of a VM whose backup points have several disks: every disk's chunks travel,
both disks restore at the replica, and a damaged chunk of the second disk is healed from the replica."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from storage.backup import backup
from storage.repository import Repository
from storage.restore import restore
from storage.verify import verify
from tests.storage.diskdata import block, flip_bit, write_image

from .conftest import Portal
from .test_replicate import cli, pull


def two_disk_point(primary: Portal, tmp_path: Path) -> tuple[str, str, dict[str, bytes]]:
    """A backup of db-1 with disks root and data (which shares one block with root)."""
    images = {"root": tmp_path / "db-root.img", "data": tmp_path / "db-data.img"}
    expected = {"root": write_image(images["root"], [block("text", 71), block("random", 72)]),
                "data": write_image(images["data"], [block("random", 72), block("random", 73), block("zero")])}
    repository = primary.repository("db-1")
    revision = backup(str(primary.root), repository, {name: f"file:{path}" for name, path in images.items()})
    return repository, revision.id, expected


def test_every_disk_is_exported_pulled_and_restorable_at_the_replica(primary: Portal, replica: Portal,
                                                                     tmp_path: Path) -> None:
    repository, revision, expected = two_disk_point(primary, tmp_path)
    listing = requests.get(f"{primary.url}/api/v1/export/{repository}/revisions", timeout=30,
                           headers={"Authorization": f"Bearer {primary.token()}"})
    assert listing.status_code == 200, listing.text
    item = next(i for i in listing.json()["items"] if i["id"] == revision)
    assert [(d["name"], d["size"]) for d in item["disks"]] == [("root", 8 << 20), ("data", 12 << 20)]
    answer = pull(primary, primary.token(), replica.root, "--vm", repository)
    assert answer.exit_code == 0, answer.output
    assert f"{repository}/{revision}" in json.loads(answer.stdout)["revisions_pulled"]
    for name, data in expected.items():
        out = tmp_path / f"replica-{name}.img"
        restore(str(replica.root), repository, revision, str(out), disk=name, sync=False)
        assert out.read_bytes() == data
    assert verify(str(replica.root), repository).clean


def test_repair_heals_a_chunk_of_the_second_disk_from_the_replica(primary: Portal, replica: Portal,
                                                                  tmp_path: Path) -> None:
    repository, revision, expected = two_disk_point(primary, tmp_path)
    assert pull(primary, primary.token(), replica.root, "--vm", repository).exit_code == 0
    chunk = Repository.open(str(primary.root), repository).load_revision(revision).disk("data").chunks[1]
    assert chunk is not None
    flip_bit(primary.root / repository / "chunks" / chunk[:2] / chunk)
    found = verify(str(primary.root), repository)
    assert found.quarantined == [chunk] and found.damaged_disk_ranges[revision] == {"data": [(4 << 20, 8 << 20)]}
    answer = cli("store", "repair", str(primary.root), repository, "--from", replica.url, "--token",
                 replica.token(), "--json")
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout)["chunks_repaired"] == [chunk]
    out = tmp_path / "healed.img"
    restore(str(primary.root), repository, revision, str(out), disk="data", sync=False)
    assert out.read_bytes() == expected["data"]
