"""`lifeboat store` with several disks per VM, on real GPT + ext4 images made by sfdisk and mkfs.ext4 -d.

A VM of two file: disks is backed up, both disks change, it is backed up again: each disk of each point
restores byte for byte, its files list and copy out with --disk, and a point is all disks or nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .. import images
from .test_hostile_files import one_line, store

MIB = 1024 * 1024


def build(work: Path, name: str, content: bytes) -> Path:
    """A 24 MiB GPT disk with one ext4 partition holding the sample tree plus ``name.txt`` = ``content``."""
    src = work / f"tree-{name}"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    images.make_tree(src, symlinks=False, big_size=2 * MIB)
    (src / f"{name}.txt").write_bytes(content)
    return images.gpt_ext4(work / f"{name}.img", src, size=24 * MIB)


@pytest.fixture(scope="module")
def two_points(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two points of a VM with disks root and data; both disks differ between the points."""
    if not images.have("sfdisk", "mkfs.ext4"):
        pytest.skip("sfdisk and mkfs.ext4 are needed (Debian packages fdisk, e2fsprogs)")
    work = tmp_path_factory.mktemp("multidisk")
    root = work / "repos"
    expected: list[dict[str, bytes]] = []
    points: list[dict[str, object]] = []
    for generation in (1, 2):
        disks = {name: build(work, name, f"{name} generation {generation}\n".encode()) for name in ("root", "data")}
        expected.append({name: path.read_bytes() for name, path in disks.items()})
        done = store("backup", str(root), "vm1", f"file:{disks['root']}", "--disk", f"data=file:{disks['data']}",
                     "--json")
        assert done.code == 0, done.stderr
        points.append(done.json)
    return {"root": root, "work": work, "points": points, "expected": expected}


@pytest.mark.slow
def test_both_disks_of_both_points_restore_byte_for_byte(two_points, tmp_path: Path) -> None:
    root, points, expected = two_points["root"], two_points["points"], two_points["expected"]
    assert [d["name"] for d in points[1]["disks"]] == ["root", "data"]
    assert points[1]["parent"] == points[0]["revision"]
    assert points[1]["size"] == sum(d["size"] for d in points[1]["disks"]) == 48 * MIB
    for point, wanted in zip(points, expected, strict=True):
        for name in ("root", "data"):
            out = tmp_path / f"{point['revision']}-{name}.img"
            restored = store("restore", str(root), "vm1", point["revision"], str(out), "--disk", name, "--json")
            assert restored.code == 0, restored.stderr
            assert restored.json["disk"] == name and out.read_bytes() == wanted[name]


def test_restore_without_disk_asks_which_in_one_line(two_points, tmp_path: Path) -> None:
    out = tmp_path / "which.img"
    result = store("restore", str(two_points["root"]), "vm1", "latest", str(out))
    assert result.code == 2 and "root, data" in one_line(result) and "--disk" in one_line(result)
    assert not out.exists()
    unknown = store("restore", str(two_points["root"]), "vm1", "latest", str(out), "--disk", "swap")
    assert unknown.code == 2 and "no disk 'swap'" in one_line(unknown)


@pytest.mark.slow
def test_ls_and_get_read_the_named_disk(two_points, tmp_path: Path) -> None:
    root = str(two_points["root"])
    first = two_points["points"][0]["revision"]
    listed = store("ls", root, "vm1", "latest", "/p1", "--disk", "data", "--json")
    assert listed.code == 0, listed.stderr
    names = {e["name"] for e in listed.json["entries"]}
    assert "data.txt" in names and "root.txt" not in names
    out = tmp_path / "data.txt"
    got = store("get", root, "vm1", first, "/p1/data.txt", str(out), "--disk", "data")
    assert got.code == 0, got.stderr
    assert out.read_bytes() == b"data generation 1\n"
    ambiguous = store("ls", root, "vm1", "latest", "--json")
    assert ambiguous.code == 2 and "--disk" in one_line(ambiguous)


@pytest.mark.slow
def test_list_verify_and_gc_cover_every_disk(two_points) -> None:
    root = str(two_points["root"])
    listed = store("list", root, "vm1", "--json")
    assert [[d["name"] for d in r["disks"]] for r in listed.json["revisions"]] == [["root", "data"]] * 2
    verified = store("verify", root, "vm1", "--json")
    assert verified.code == 0 and verified.json["clean"] is True
    manifests = [json.loads(p.read_text()) for p in (two_points["root"] / "vm1" / "revisions").glob("*.json")]
    every_chunk = {c for m in manifests for d in m["disks"] for c in d["chunks"] if c}
    assert verified.json["chunks_checked"] == len(every_chunk)
    collected = store("gc", root, "vm1", "--grace", "0", "--json")
    assert collected.code == 0 and collected.json["chunks_removed"] == 0
    assert collected.json["chunks_referenced"] == len(every_chunk)


def test_a_failing_pre_hook_leaves_nothing(two_points, tmp_path: Path) -> None:
    work, root = two_points["work"], tmp_path / "repos"
    result = store("backup", str(root), "vm2", "--disk", f"root=file:{work / 'root.img'}",
                   "--disk", f"data=file:{work / 'data.img'}", "--pre-hook", "echo frozen-fs-busy >&2; exit 4")
    assert result.code == 2 and "pre hook failed" in one_line(result)
    listed = store("list", str(root), "vm2", "--json")
    assert listed.code == 0 and listed.json["revisions"] == []


def test_a_second_disk_that_fails_to_read_leaves_no_point(two_points, tmp_path: Path) -> None:
    work, root = two_points["work"], tmp_path / "repos"
    data = tmp_path / "data.img"
    data.write_bytes((work / "data.img").read_bytes())
    # the post-hook runs after both snapshots: the data disk is gone when it is read, after root was read whole
    result = store("backup", str(root), "vm2", "--disk", f"root=file:{work / 'root.img'}",
                   "--disk", f"data=file:{data}", "--post-hook", f"rm {data}", "--json")
    assert result.code == 2 and "data.img" in one_line(result)
    assert store("list", str(root), "vm2", "--json").json["revisions"] == []


@pytest.mark.parametrize("args", [[], ["--disk", "data"], ["--disk", "=file:/x"], ["--disk", "a=file:/x",
                                                                                     "--disk", "a=file:/y"]])
def test_bad_disk_options_are_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = store("backup", str(tmp_path / "repos"), "vm1", *args)
    assert result.code == 2, result.stderr
    one_line(result)
    assert not (tmp_path / "repos").exists()
