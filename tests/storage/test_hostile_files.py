"""Hostile files inside a repository: FIFOs, symlinks to /dev/zero or elsewhere, oversized files, unreadable
manifests, missing folders and bad values in repository.json or a manifest.

Every command must end (no blocking open, no unbounded read), answer with one line instead of a traceback, and
keep working for the rest of the repository. The commands run as real ``lifeboat store`` processes with a memory
cap and a timeout, so a regression fails the test instead of hanging it or exhausting the machine.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

import pytest

from storage.backup import backup
from storage.repository import Repository, stored_limit
from storage.retention import gc

from ..conftest import LIFEBOAT, Run
from .diskdata import CHUNK, block, write_image

#: a JSON number with more digits than Python converts by default (4300): ``int()`` of it raises ValueError
HUGE = "<a 5000-digit number>"
MEMORY_CAP = 1 << 30  # address space of each command: far more than a 4 MiB chunk needs, far less than /dev/zero
TIMEOUT = 60


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def store(*args: str) -> Run:
    """``lifeboat store ARGS`` with the memory cap; a command that hangs fails the test with TimeoutExpired."""
    done = subprocess.run([LIFEBOAT, "store", *args], capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=_capped)
    return Run(done.returncode, done.stdout, done.stderr)


def json_with(document: dict[str, object], key: str, value: object) -> str:
    """``document`` with ``key`` set to ``value`` as JSON (``HUGE`` becomes a 5000-digit number)."""
    document = {**document, key: value}
    return json.dumps(document).replace(json.dumps(HUGE), "1" + "0" * 5000)


def one_line(result: Run) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def repo(tmp_path: Path, root: Path) -> tuple[Path, list[str]]:
    """Two revisions of a three-chunk image (chunks 0 and 2 shared, chunk 1 differs)."""
    image = tmp_path / "disk.img"
    write_image(image, [block("text", 1), block("random", 2), block("text", 3)])
    first = backup(str(root), "vm1", f"file:{image}").id
    write_image(image, [block("text", 1), block("random", 4), block("text", 3)])
    second = backup(str(root), "vm1", f"file:{image}").id
    return image, [first, second]


def manifest_path(root: Path, revision: str) -> Path:
    return root / "vm1" / "revisions" / f"{revision}.json"


def chunk_file(root: Path, revision: str, index: int) -> Path:
    repository = Repository.open(str(root), "vm1")
    chunk = repository.load_revision(revision).chunks[index]
    assert chunk is not None
    return Path(repository.chunk_path(chunk))


def replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def replace_with_symlink(path: Path, target: str) -> None:
    path.unlink()
    path.symlink_to(target)


# -- 3. chunks and manifests that are not regular files ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "elsewhere"])
def test_a_chunk_that_is_not_a_regular_file_is_damage_not_a_hang(tmp_path: Path, root: Path, repo, kind: str) -> None:
    _, (first, second) = repo
    path = chunk_file(root, second, 1)
    if kind == "fifo":
        replace_with_fifo(path)
    else:
        outside = tmp_path / "outside"
        outside.write_bytes(path.read_bytes())  # the right bytes, but not the repository's file
        replace_with_symlink(path, "/dev/zero" if kind == "dev-zero" else str(outside))

    restored = store("restore", str(root), "vm1", second, str(tmp_path / "out.img"), "--json")
    assert restored.code == 1, restored.stderr
    assert restored.json["damaged"] == [[CHUNK, 2 * CHUNK]]
    verified = store("verify", str(root), "vm1", "--json")
    assert verified.code == 1 and verified.json["damaged_chunks"] == [path.name]
    assert verified.json["distrusted_revisions"] == [second]
    assert not os.path.lexists(path)  # quarantined (moved aside, not followed)
    assert os.path.lexists(root / "vm1" / "quarantine" / next(iter(os.listdir(root / "vm1" / "quarantine"))))


def test_a_chunk_file_larger_than_a_chunk_can_be_is_damage(tmp_path: Path, root: Path, repo) -> None:
    _, (_, second) = repo
    path = chunk_file(root, second, 1)
    path.chmod(0o644)
    with open(path, "ab") as handle:
        handle.truncate(stored_limit(CHUNK) + 1)  # sparse: cheap to make, costly to read whole
    restored = store("restore", str(root), "vm1", second, str(tmp_path / "out.img"), "--json")
    assert restored.code == 1 and restored.json["damaged"] == [[CHUNK, 2 * CHUNK]]


def test_a_chunk_declaring_a_huge_content_size_is_damage_without_allocating_it(tmp_path: Path, root: Path,
                                                                               repo) -> None:
    import zstandard

    _, (_, second) = repo
    path = chunk_file(root, second, 1)
    path.chmod(0o644)
    # a valid frame header that declares 512 GiB of content, followed by one raw block
    header = (0xFD2FB528).to_bytes(4, "little") + bytes([0xE0]) + (512 << 30).to_bytes(8, "little")
    path.write_bytes(header + (1 | (5 << 3)).to_bytes(3, "little") + b"hello")
    assert zstandard.frame_content_size(path.read_bytes()) == 512 << 30
    restored = store("restore", str(root), "vm1", second, str(tmp_path / "out.img"), "--json")
    assert restored.code == 1 and restored.json["damaged"] == [[CHUNK, 2 * CHUNK]]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_manifest_that_is_not_a_regular_file_is_skipped_with_a_warning(tmp_path: Path, root: Path, repo,
                                                                        kind: str) -> None:
    image, (first, second) = repo
    path = manifest_path(root, first)
    replace_with_fifo(path) if kind == "fifo" else replace_with_symlink(path, "/dev/zero")

    listed = store("list", str(root), "vm1", "--json")
    assert listed.code == 0, listed.stderr
    assert [r["id"] for r in listed.json["revisions"]] == [second]
    assert first in listed.json["unreadable"]
    assert first in one_line(listed) and "not a regular file" in one_line(listed)
    direct = store("restore", str(root), "vm1", first, str(tmp_path / "out.img"))
    assert direct.code == 2 and "not a regular file" in one_line(direct)
    latest = store("restore", str(root), "vm1", "latest", str(tmp_path / "latest.img"))
    assert latest.code == 0, latest.stderr
    assert (tmp_path / "latest.img").read_bytes() == image.read_bytes()


def test_a_manifest_larger_than_the_cap_is_refused_unread(tmp_path: Path, root: Path, repo) -> None:
    from storage.manifest import MAX_MANIFEST_BYTES

    _, (first, second) = repo
    path = manifest_path(root, first)
    with open(path, "ab") as handle:
        handle.truncate(MAX_MANIFEST_BYTES + 1)
    listed = store("list", str(root), "vm1", "--json")
    assert listed.code == 0 and [r["id"] for r in listed.json["revisions"]] == [second]
    assert "larger than" in listed.json["unreadable"][first]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge"])
def test_a_repository_description_that_is_not_a_small_regular_file_is_refused(root: Path, repo, kind: str) -> None:
    path = root / "vm1" / "repository.json"
    if kind == "fifo":
        replace_with_fifo(path)
        # a FIFO is not a file to os.path.isfile: the VM's repository is not there at all
        assert store("list", str(root), "vm1").code == 2
        return
    if kind == "dev-zero":
        replace_with_symlink(path, "/dev/zero")
    else:
        with open(path, "ab") as handle:
            handle.truncate(64 << 20)
    result = store("list", str(root), "vm1")
    assert result.code == 2 and "repository.json" in one_line(result)


# -- 4. one unreadable manifest does not block the VM; missing folders are recreated -----------------------------

@pytest.mark.slow
def test_an_unreadable_manifest_blocks_neither_list_nor_backup_nor_forget(tmp_path: Path, root: Path, repo) -> None:
    image, (first, second) = repo
    manifest_path(root, first).write_text("{ not json")

    listed = store("list", str(root), "vm1", "--json")
    assert listed.code == 0 and [r["id"] for r in listed.json["revisions"]] == [second]
    assert first in one_line(listed)
    backed_up = store("backup", str(root), "vm1", f"file:{image}", "--json")
    assert backed_up.code == 0, backed_up.stderr
    third = backed_up.json["revision"]
    assert backed_up.json["parent"] == second
    assert any(first in w for w in backed_up.json["warnings"])
    assert store("forget", str(root), "vm1", second).code == 0
    verified = store("verify", str(root), "vm1", "--json")
    assert verified.json["revisions_checked"] == [third] and verified.json["unreadable_revisions"] == [first]
    assert verified.code == 1  # a manifest that cannot be read is damage
    assert [r["id"] for r in store("list", str(root), "vm1", "--json").json["revisions"]] == [third]


def test_gc_deletes_no_chunk_while_a_manifest_cannot_be_read(tmp_path: Path, root: Path, repo) -> None:
    """The unreadable manifest may name any chunk: gc keeps everything and says why."""
    _, (first, second) = repo
    only_first = chunk_file(root, first, 1)  # the chunk no other revision uses
    manifest_path(root, first).write_bytes(b"\x00" * 100)
    done = store("gc", str(root), "vm1", "--grace", "0", "--json")
    assert done.code == 0, done.stderr
    assert done.json["chunks_removed"] == 0 and done.json["unreadable_revisions"] == [first]
    assert first in one_line(done)
    assert only_first.exists()
    # once the manifest is dealt with (here: removed on purpose), gc collects as before
    manifest_path(root, first).unlink()
    assert gc(str(root), "vm1", grace=0).chunks_removed == 1
    assert not only_first.exists()


def test_a_missing_chunk_folder_is_recreated_by_the_next_backup(tmp_path: Path, root: Path) -> None:
    image = tmp_path / "disk.img"
    data = write_image(image, [block("random", 7)])
    first = backup(str(root), "vm1", f"file:{image}")
    chunk = first.chunks[0]
    assert chunk is not None
    folder = root / "vm1" / "chunks" / chunk[:2]
    (folder / chunk).chmod(0o644)
    (folder / chunk).unlink()
    folder.rmdir()  # e.g. an operator's cleanup, or a restore of the repository that lost empty folders
    result = store("backup", str(root), "vm1", f"file:{image}", "--json")
    assert result.code == 0, result.stderr
    assert (folder / chunk).exists()
    out = tmp_path / "out.img"
    assert store("restore", str(root), "vm1", "latest", str(out)).code == 0
    assert out.read_bytes() == data


@pytest.mark.slow
def test_missing_revisions_and_chunks_folders_are_recreated(tmp_path: Path, root: Path) -> None:
    image = tmp_path / "disk.img"
    write_image(image, [block("text", 1)])
    backup(str(root), "vm1", f"file:{image}")
    for name in ("revisions", "chunks", "quarantine"):
        for path in sorted((root / "vm1" / name).rglob("*"), reverse=True):
            path.chmod(0o755) if path.is_dir() else path.chmod(0o644)
            path.rmdir() if path.is_dir() else path.unlink()
        (root / "vm1" / name).rmdir()
    listed = store("list", str(root), "vm1", "--json")
    assert listed.code == 0 and listed.json["revisions"] == []
    result = store("backup", str(root), "vm1", f"file:{image}", "--json")
    assert result.code == 0, result.stderr
    assert store("verify", str(root), "vm1").code == 0


# -- 7. bad values in repository.json and manifests ------------------------------------------------------------

@pytest.mark.parametrize(("key", "value"), [
    ("chunk_size", "4194304"), ("chunk_size", -4096), ("chunk_size", 0), ("chunk_size", 1 << 40),
    ("chunk_size", HUGE), ("chunk_size", 4.5), ("chunk_size", True), ("chunk_size", None),
    ("zstd_level", "fast"), ("zstd_level", 99), ("zstd_level", -(10**9)), ("zstd_level", [1]),
    ("version", "one"), ("version", 0), ("version", {"v": 1}), ("hash", 5), ("format", ["lifeboat-repository"]),
])
@pytest.mark.slow
def test_bad_values_in_repository_json_are_one_line_not_a_traceback(tmp_path: Path, root: Path, repo, key: str,
                                                                     value: object) -> None:
    image, (first, _) = repo
    path = root / "vm1" / "repository.json"
    path.write_text(json_with(json.loads(path.read_text()), key, value))
    for args in (["list", str(root), "vm1"], ["backup", str(root), "vm1", f"file:{image}"],
                 ["restore", str(root), "vm1", first, str(tmp_path / "out.img")], ["verify", str(root), "vm1"],
                 ["gc", str(root), "vm1"]):
        result = store(*args)
        assert result.code == 2, (args, result.stderr)
        assert "repository.json" in one_line(result), result.stderr
    assert not (tmp_path / "out.img").exists()


def test_a_deeply_nested_repository_json_is_refused(root: Path, repo) -> None:
    path = root / "vm1" / "repository.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = store("list", str(root), "vm1")
    assert result.code == 2 and "repository.json" in one_line(result)


def test_a_manifest_whose_id_differs_from_its_file_name_is_refused_as_corrupt(tmp_path: Path, root: Path,
                                                                              repo) -> None:
    """A copy of the second manifest under the first one's name must not restore the second revision."""
    _, (first, second) = repo
    manifest_path(root, first).write_bytes(manifest_path(root, second).read_bytes())
    result = store("restore", str(root), "vm1", first, str(tmp_path / "out.img"))
    assert result.code == 2 and "does not match its file name" in one_line(result)
    assert not (tmp_path / "out.img").exists()
    listed = store("list", str(root), "vm1", "--json")
    assert [r["id"] for r in listed.json["revisions"]] == [second] and first in listed.json["unreadable"]


@pytest.mark.parametrize(("key", "value"), [
    ("chunks", ["../../../../etc/passwd", None, None]), ("chunks", "abc"), ("size", "12"), ("size", -1),
    ("size", HUGE), ("chunk_size", 4096), ("trust", "maybe"), ("created", 17), ("created", "yesterday"),
    ("tags", "abc"), ("stats", []), ("protected", "no"), ("parent", 5), ("version", 99),
])
@pytest.mark.slow
def test_bad_values_in_a_manifest_make_it_unreadable_not_a_traceback(tmp_path: Path, root: Path, repo, key: str,
                                                                     value: object) -> None:
    _, (first, second) = repo
    path = manifest_path(root, first)
    path.write_text(json_with(json.loads(path.read_text()), key, value))
    result = store("restore", str(root), "vm1", first, str(tmp_path / "out.img"))
    assert result.code == 2, result.stderr
    assert first in one_line(result)
    listed = store("list", str(root), "vm1", "--json")
    assert listed.code == 0 and [r["id"] for r in listed.json["revisions"]] == [second]


def test_a_fifo_as_a_restores_resume_state_starts_the_restore_over(tmp_path: Path, root: Path, repo) -> None:
    image, (_, second) = repo
    out = tmp_path / "out.img"
    Path(f"{out}.lifeboat-partial").write_bytes(b"left by an interrupted restore")
    os.mkfifo(f"{out}.lifeboat-partial.json")
    result = store("restore", str(root), "vm1", second, str(out), "--json")
    assert result.code == 0, result.stderr
    assert result.json["resumed"] is False and out.read_bytes() == image.read_bytes()
