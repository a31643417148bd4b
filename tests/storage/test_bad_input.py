"""Bad input: one line on stderr, exit code 2, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .diskdata import block, write_image


def snapshot_tree(path: Path) -> dict[str, bytes]:
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def repo_with_backup(tmp_path: Path, root: Path, lifeboat) -> Path:
    image = tmp_path / "disk.img"
    write_image(image, [block("text", 1)])
    assert lifeboat("store", "backup", str(root), "vm1", f"file:{image}").code == 0
    return image


def assert_refused(result, *words: str) -> None:
    assert result.code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["backup", "{root}", "vm1", "file:{tmp}/missing.img"], ["no such file"]),
        (["backup", "{root}", "vm1", "ftp:somewhere"], ["invalid source"]),
        (["backup", "{root}", "../escape", "file:{image}"], ["invalid VM name"]),
        (["backup", "{root}", "vm1", "file:{tmp}"], ["is a directory"]),
        (["list", "{root}", "nope"], ["no repository for VM"]),
        (["list", "{tmp}/nowhere", "vm1"], ["not a Lifeboat repository root"]),
        (["restore", "{root}", "vm1", "20990101T000000Z-abcdef", "{tmp}/out.img"], ["no revision"]),
        (["restore", "{root}", "vm1", "../../etc/passwd", "{tmp}/out.img"], ["invalid revision name"]),
        (["restore", "{root}", "vm1", "latest", "{image}"], ["exists", "--force"]),
        (["restore", "{root}", "vm1", "latest", "{tmp}/no/such/dir/out.img"], ["does not exist"]),
        (["verify", "{root}", "vm9"], ["no repository for VM"]),
        (["forget", "{root}", "vm1", "nope"], ["no revision"]),
        (["gc", "{root}", "vm1", "--grace", "-5"], []),
    ],
)
@pytest.mark.slow
def test_bad_input_is_refused_and_changes_nothing(tmp_path: Path, root: Path, repo_with_backup: Path, lifeboat,
                                                  args: list[str], words: list[str]) -> None:
    before = snapshot_tree(tmp_path)
    values = {"root": str(root), "tmp": str(tmp_path), "image": str(repo_with_backup)}
    result = lifeboat("store", *(a.format(**values) for a in args))
    assert result.code == 2, result.stderr
    if words:
        assert_refused(result, *words)
    after = snapshot_tree(tmp_path)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= {"root/vm1/lock", "root/vm1/meta.lock"}, changed


def test_a_root_that_is_not_a_repository_is_never_written(tmp_path: Path, lifeboat) -> None:
    foreign = tmp_path / "foreign"
    (foreign / "vm1").mkdir(parents=True)
    (foreign / "vm1" / "important.txt").write_text("keep me")
    image = tmp_path / "disk.img"
    write_image(image, [block("text", 1)])
    result = lifeboat("store", "backup", str(foreign), "vm1", f"file:{image}")
    assert_refused(result, "not a Lifeboat repository")
    assert sorted(p.name for p in (foreign / "vm1").iterdir()) == ["important.txt"]


def test_a_format_version_from_the_future_is_refused(tmp_path: Path, root: Path, repo_with_backup: Path,
                                                      lifeboat) -> None:
    config_path = root / "vm1" / "repository.json"
    config = json.loads(config_path.read_text())
    config["version"] = 99
    config_path.write_text(json.dumps(config))
    before = snapshot_tree(root)
    for args in (["list", str(root), "vm1"], ["backup", str(root), "vm1", f"file:{repo_with_backup}"],
                 ["restore", str(root), "vm1", "latest", str(tmp_path / "o.img")]):
        assert_refused(lifeboat("store", *args), "format version 99")
    assert snapshot_tree(root) == before
    assert not (tmp_path / "o.img").exists()


def test_force_overwrites_an_existing_target(tmp_path: Path, root: Path, repo_with_backup: Path, lifeboat) -> None:
    target = tmp_path / "target.img"
    target.write_bytes(b"old content")
    result = lifeboat("store", "restore", str(root), "vm1", "latest", str(target), "--force")
    assert result.code == 0, result.stderr
    assert target.read_bytes() == repo_with_backup.read_bytes()
