"""The engine's multi-disk revisions through its Python API: one revision per VM, one chunk list per disk,
chunks shared between the disks of one repository, and no half-made revision when a disk fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.backup import DuplicateDisk, backup
from storage.errors import BadName, HookFailed, SourceError
from storage.hooks import Hooks
from storage.manifest import AmbiguousDisk, UnknownDisk
from storage.repository import Repository
from storage.restore import restore
from storage.retention import gc
from storage.verify import verify

from .diskdata import CHUNK, block, chunk_files, flip_bit, write_image


def two_disks(tmp_path: Path) -> tuple[Path, Path]:
    root_disk, data_disk = tmp_path / "root.img", tmp_path / "data.img"
    write_image(root_disk, [block("text", 1), block("random", 7), block("zero")])
    write_image(data_disk, [block("random", 7), block("random", 8)])  # its first block is also on root
    return root_disk, data_disk


def test_every_disk_is_one_revision_and_chunks_are_shared_between_disks(tmp_path: Path, root: Path) -> None:
    root_disk, data_disk = two_disks(tmp_path)
    revision = backup(str(root), "vm1", [("root", f"file:{root_disk}"), ("data", f"file:{data_disk}")])
    assert revision.disk_names == ["root", "data"] and revision.size == 5 * CHUNK
    assert revision.disk("data").source == f"file:{data_disk}"
    assert revision.disk("data").chunks[0] == revision.disk("root").chunks[1]
    assert len(chunk_files(root / "vm1")) == 3  # text, random 7 (once for both disks), random 8
    assert revision.disk("root").stats["chunks_zero"] == 1 and revision.disk("data").stats["chunks_reused"] == 1
    assert revision.stats["chunks_new"] == 3 and revision.stats["bytes_read"] == 4 * CHUNK
    for name, image in (("root", root_disk), ("data", data_disk)):
        out = tmp_path / f"{name}.out"
        result = restore(str(root), "vm1", "latest", str(out), disk=name)
        assert out.read_bytes() == image.read_bytes() and result.disk == name
    with pytest.raises(AmbiguousDisk, match="root, data"):
        restore(str(root), "vm1", revision.id, str(tmp_path / "which.out"))
    with pytest.raises(UnknownDisk):
        restore(str(root), "vm1", revision.id, str(tmp_path / "which.out"), disk="swap")
    assert not (tmp_path / "which.out").exists()


def test_each_disk_reads_from_its_own_parent_and_a_new_disk_has_none(tmp_path: Path, root: Path) -> None:
    root_disk, data_disk = two_disks(tmp_path)
    first = backup(str(root), "vm1", {"root": f"file:{root_disk}"})
    second = backup(str(root), "vm1", {"root": f"file:{root_disk}", "data": f"file:{data_disk}"})
    assert second.parent == first.id and second.disk("root").chunks == first.disk("root").chunks
    assert second.disk("data").stats["chunks_reused"] == 1  # its block shared with root was not stored again
    third = backup(str(root), "vm1", {"data": f"file:{data_disk}"})  # root was removed from the VM
    assert third.disk_names == ["data"]
    out = tmp_path / "root.out"
    restore(str(root), "vm1", second.id, str(out), disk="root")  # the removed disk stays in the old points
    assert out.read_bytes() == root_disk.read_bytes()


def test_a_disk_that_fails_to_read_leaves_no_revision(tmp_path: Path, root: Path) -> None:
    root_disk, data_disk = two_disks(tmp_path)
    first = backup(str(root), "vm1", {"root": f"file:{root_disk}"})
    saved = data_disk.read_bytes()
    disks = {"root": f"file:{root_disk}", "data": f"file:{data_disk}"}
    # The data disk vanishes after the snapshots (the post-hook removes it): root is read in full, data fails.
    with pytest.raises(SourceError, match="data.img"):
        backup(str(root), "vm1", disks, hooks=Hooks(post=f"rm {data_disk}"))
    repository = Repository.open(str(root), "vm1")
    assert [r.id for r in repository.revisions()] == [first.id]
    data_disk.write_bytes(saved)
    again = backup(str(root), "vm1", disks)
    assert again.parent == first.id and [r.id for r in repository.revisions()] == [first.id, again.id]


def test_a_failing_pre_hook_takes_no_snapshot_and_writes_nothing(tmp_path: Path, root: Path) -> None:
    root_disk, data_disk = two_disks(tmp_path)
    marker = tmp_path / "post-ran"
    with pytest.raises(HookFailed):
        backup(str(root), "vm1", {"root": f"file:{root_disk}", "data": f"file:{data_disk}"},
               hooks=Hooks(pre="exit 3", post=f"touch {marker}"))
    assert marker.exists()  # a guest is never left frozen
    assert Repository.open(str(root), "vm1").revisions() == []


@pytest.mark.parametrize(("disks", "error"), [
    ([("root", "file:/a"), ("root", "file:/b")], DuplicateDisk),
    ([("root", "file:/a"), ("data", "file:/a")], DuplicateDisk),
    ([("../x", "file:/a")], BadName),
])
def test_repeated_or_bad_disk_names_are_refused_before_anything_is_created(root: Path, disks, error) -> None:
    with pytest.raises(error):
        backup(str(root), "vm1", disks)
    assert not root.exists()


def test_verify_and_gc_cover_every_disk(tmp_path: Path, root: Path) -> None:
    root_disk, data_disk = two_disks(tmp_path)
    revision = backup(str(root), "vm1", {"root": f"file:{root_disk}", "data": f"file:{data_disk}"})
    assert gc(str(root), "vm1", grace=0).chunks_removed == 0  # no disk's chunks look unreferenced
    only_data = revision.disk("data").chunks[1]
    assert only_data is not None
    flip_bit(Path(Repository.open(str(root), "vm1").chunk_path(only_data)))
    result = verify(str(root), "vm1")
    assert result.damaged_chunks == [only_data] and result.distrusted_revisions == [revision.id]
    assert result.damaged_disk_ranges == {revision.id: {"data": [(CHUNK, 2 * CHUNK)]}}
    assert revision.id not in result.damaged_ranges  # that map is for one-disk revisions
