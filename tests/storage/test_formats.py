"""Manifest versions: a repository the old engine wrote (version 1, one implicit disk) keeps working unchanged,
and version 2 manifests (a list of disks) are checked as strictly as version 1 ones were.

The old repository is ``fixtures/v1-repository``, made by main's engine before multi-disk revisions (see its
README), never by this code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from storage.errors import CorruptRepository
from storage.manifest import Revision
from storage.repository import Repository

from .test_hostile_files import json_with, one_line, store

FIXTURE = Path(__file__).parent / "fixtures" / "v1-repository"
FIRST, SECOND = "20261204T020642Z-a01a64", "20261204T020642Z-da7876"


@pytest.fixture
def old_root(tmp_path: Path) -> Path:
    """A copy of the repository root the old engine wrote."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURE / "root", root)
    return root


def manifest(root: Path, revision: str) -> Path:
    return root / "oldvm" / "revisions" / f"{revision}.json"


def test_the_fixture_is_a_version_1_repository() -> None:
    """Guard against regenerating the fixture with the new engine: it must keep the old shape."""
    for revision in (FIRST, SECOND):
        doc = json.loads(manifest(FIXTURE / "root", revision).read_text())
        assert doc["version"] == 1 and "disks" not in doc and isinstance(doc["chunks"], list)


def test_a_version_1_manifest_is_one_disk_called_root_and_is_written_back_unchanged() -> None:
    data = manifest(FIXTURE / "root", SECOND).read_bytes()
    revision = Revision.parse(data, "fixture", SECOND, 4096)
    assert revision.version == 1 and revision.disk_names == ["root"]
    assert revision.size == len((FIXTURE / "second.img").read_bytes()) and len(revision.chunks) == 4
    assert revision.to_json() == json.loads(data)  # main's exact shape, key for key


def test_an_old_repository_lists_verifies_and_restores(tmp_path: Path, old_root: Path) -> None:
    listed = store("list", str(old_root), "oldvm", "--json")
    assert listed.code == 0, listed.stderr
    revisions = {r["id"]: r for r in listed.json["revisions"]}
    assert set(revisions) == {FIRST, SECOND} and listed.json["unreadable"] == {}
    assert revisions[FIRST]["protected"] is True and revisions[FIRST]["tags"] == ["v1"]
    assert [d["name"] for d in revisions[SECOND]["disks"]] == ["root"]
    for revision, image in ((FIRST, "first.img"), (SECOND, "second.img")):
        out = tmp_path / f"{revision}.img"
        restored = store("restore", str(old_root), "oldvm", revision, str(out), "--json")
        assert restored.code == 0, restored.stderr
        assert out.read_bytes() == (FIXTURE / image).read_bytes()
    verified = store("verify", str(old_root), "oldvm", "--json")
    assert verified.code == 0 and sorted(verified.json["revisions_checked"]) == [FIRST, SECOND]
    # verify rewrote the trust: still version 1, so the old engine can still read what it wrote
    doc = json.loads(manifest(old_root, SECOND).read_text())
    assert doc["version"] == 1 and doc["trust"] == "verified" and "disks" not in doc


@pytest.mark.slow
def test_an_old_repository_receives_new_backups_that_dedup_against_it(tmp_path: Path, old_root: Path) -> None:
    image = tmp_path / "disk.img"
    data = bytearray((FIXTURE / "second.img").read_bytes())
    data[-10:] = b"0123456789"  # only the last chunk changes
    image.write_bytes(bytes(data))
    before = {r: manifest(old_root, r).read_bytes() for r in (FIRST, SECOND)}
    done = store("backup", str(old_root), "oldvm", f"file:{image}", "--json")
    assert done.code == 0, done.stderr
    assert done.json["parent"] == SECOND and done.json["chunks_new"] == 1 and done.json["chunks_reused"] == 3
    new = done.json["revision"]
    doc = json.loads(manifest(old_root, new).read_text())
    assert doc["version"] == 2 and [d["name"] for d in doc["disks"]] == ["root"]
    assert {r: manifest(old_root, r).read_bytes() for r in (FIRST, SECOND)} == before
    # gc keeps every chunk of old and new manifests; all three points restore
    assert store("gc", str(old_root), "oldvm", "--grace", "0").code == 0
    for revision, expected in ((FIRST, (FIXTURE / "first.img").read_bytes()),
                               (SECOND, (FIXTURE / "second.img").read_bytes()), (new, bytes(data))):
        out = tmp_path / f"{revision}.out"
        assert store("restore", str(old_root), "oldvm", revision, str(out)).code == 0
        assert out.read_bytes() == expected
    assert store("verify", str(old_root), "oldvm").code == 0
    assert store("forget", str(old_root), "oldvm", SECOND).code == 0
    assert store("forget", str(old_root), "oldvm", FIRST).code == 2  # still protected, as it was written


def _v2_doc(root: Path, revision: str) -> dict[str, object]:
    repository = Repository.open(str(root), "oldvm")
    current = repository.load_revision(revision)
    current.version = 2
    return current.to_json()


@pytest.mark.parametrize(("key", "value"), [
    ("disks", []), ("disks", "root"), ("disks", [5]), ("disks", [{"name": "root"}]),
    ("disks", [{"name": "../etc", "size": 0, "chunks": []}]),
    ("disks", [{"name": "a", "size": 0, "chunks": []}, {"name": "a", "size": 0, "chunks": []}]),
    ("disks", [{"name": "a", "size": "12", "chunks": []}]),
    ("disks", [{"name": "a", "size": 4097, "chunks": [None]}]),
    ("disks", [{"name": "a", "size": 1, "chunks": ["../../x"]}]),
    ("disks", [{"name": "a", "size": 1, "chunks": [None], "stats": []}]),
    ("chunks", [None, None, None, None]), ("size", 1),
])
def test_bad_disks_in_a_version_2_manifest_make_it_unreadable(old_root: Path, key: str, value: object) -> None:
    path = manifest(old_root, SECOND)
    path.write_text(json_with(_v2_doc(old_root, SECOND), key, value))
    repository = Repository.open(str(old_root), "oldvm")
    with pytest.raises(CorruptRepository, match=SECOND):
        repository.load_revision(SECOND)
    assert [r.id for r in repository.revisions()] == [FIRST] and SECOND in repository.unreadable


def test_a_bad_disk_is_one_line_from_the_command_line(tmp_path: Path, old_root: Path) -> None:
    path = manifest(old_root, SECOND)
    path.write_text(json_with(_v2_doc(old_root, SECOND), "disks", [{"name": "a/b", "size": 0, "chunks": []}]))
    result = store("restore", str(old_root), "oldvm", SECOND, str(tmp_path / "out.img"))
    assert result.code == 2 and SECOND in one_line(result) and "disk name" in one_line(result)


def test_a_version_2_manifest_round_trips_and_a_version_1_one_may_not_carry_disks(old_root: Path) -> None:
    doc = _v2_doc(old_root, SECOND)
    data = json.dumps(doc).encode()
    assert Revision.parse(data, "x", SECOND, 4096).to_json() == doc
    v1 = json.loads(manifest(old_root, SECOND).read_text())
    with pytest.raises(CorruptRepository, match="no disks list"):
        Revision.from_json({**v1, "disks": doc["disks"]}, "x")
    with pytest.raises(CorruptRepository, match="newer than this Lifeboat"):
        Revision.from_json({**doc, "version": 3}, "x")
