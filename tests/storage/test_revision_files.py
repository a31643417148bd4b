"""Every disk of a revision as one namespace (storage.browse.RevisionFiles): `/` lists the disks, `/<disk>/p1/...`
reads inside one, `/p1/...` (the one-disk namespace) reads disk root; on real ext4 images."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.backup import backup
from storage.browse import open_revision_files, split_path
from storage.files.errors import NoSuchPath
from tests import images

pytestmark = pytest.mark.skipif(not images.have("sfdisk", "mkfs.ext4"), reason="needs sfdisk and mkfs.ext4")


def test_split_path_names_the_disk_and_keeps_the_old_paths() -> None:
    names = ["data", "root"]
    assert split_path("/", names) is None
    where = split_path("/data/p1/etc", names)
    assert where is not None and (where.disk, where.path, where.legacy) == ("data", "/p1/etc", False)
    legacy = split_path("/p1/etc", names)
    assert legacy is not None and (legacy.disk, legacy.path, legacy.legacy) == ("root", "/p1/etc", True)
    assert split_path("/p2", ["sda", "sdb"]).disk == "sda"  # type: ignore[union-attr] - no root: the first
    with pytest.raises(NoSuchPath):
        split_path("/nope/p1", names)
    with pytest.raises(NoSuchPath):
        split_path("/etc", names)  # neither a disk nor a partition


def test_the_files_of_two_disks_in_one_namespace(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    images.make_tree(tree, symlinks=False, big_size=64 * 1024)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "only-on-data.txt").write_bytes(b"data disk\n")
    root = images.gpt_ext4(tmp_path / "root.img", tree, size=16 * images.MIB)
    data = images.gpt_ext4(tmp_path / "data.img", tmp_path / "other", size=8 * images.MIB)
    store = tmp_path / "store"
    revision = backup(str(store), "vm", [("root", f"file:{root}"), ("data", f"file:{data}")])

    with open_revision_files(str(store), "vm", revision.id) as files:
        assert [(e.name, e.path, e.type, e.size) for e in files.list_dir("/")] == [
            ("root", "/root", "dir", 16 * images.MIB), ("data", "/data", "dir", 8 * images.MIB)]
        assert [e.path for e in files.list_dir("/data")] == ["/data/p1"]
        assert "/data/p1/only-on-data.txt" in [e.path for e in files.list_dir("/data/p1")]
        assert files.stat("/data").type == "dir" and files.stat("/root/p1/etc/hosts").size == 20
        assert [e.path for e in files.search("/", "only-on")] == ["/data/p1/only-on-data.txt"]
        assert "/p1/etc/hosts" in [e.path for e in files.list_dir("/p1/etc")]  # the old namespace: disk root
        with files.disk("data").open_file("/p1/only-on-data.txt") as reader:
            assert reader.read() == b"data disk\n"
        with pytest.raises(NoSuchPath):
            files.list_dir("/data/p1/etc")  # not on that disk
