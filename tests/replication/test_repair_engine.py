"""storage.repair without HTTP: the fetch function is a plain callable over another repository's files."""

from __future__ import annotations

from pathlib import Path

from storage.backup import backup
from storage.repair import repair
from storage.replicate import RemoteError
from storage.repository import Repository
from storage.verify import verify
from tests.storage.diskdata import block, chunk_files, flip_bit, temp_files, write_image


def _two_copies(tmp_path: Path) -> tuple[str, str, list[str]]:
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1), block("text", 2), block("zero"), block("random", 3)])
    primary, spare = str(tmp_path / "primary"), str(tmp_path / "spare")
    revision = backup(primary, "vm-1", f"file:{image}")
    backup(spare, "vm-1", f"file:{image}")
    return primary, spare, [c for c in revision.chunks if c is not None]


def test_repair_reinstates_quarantined_and_missing_chunks(tmp_path: Path) -> None:
    primary, spare, chunks = _two_copies(tmp_path)
    flip_bit(Path(primary, "vm-1", "chunks", chunks[0][:2], chunks[0]))
    Path(primary, "vm-1", "chunks", chunks[1][:2], chunks[1]).unlink()
    assert sorted(verify(primary, "vm-1").damaged_chunks) == sorted(chunks[:2])
    source = Repository.open(spare, "vm-1")
    asked: list[str] = []

    def fetch(chunk: str) -> bytes | None:
        asked.append(chunk)
        return source.read_stored(chunk)

    result = repair(primary, "vm-1", fetch)
    assert sorted(asked) == sorted(chunks[:2])
    assert result.clean and sorted(result.chunks_repaired) == sorted(chunks[:2])
    assert len(result.revisions_trusted) == 1
    assert verify(primary, "vm-1").clean
    assert not temp_files(Path(primary, "vm-1"))
    assert repair(primary, "vm-1", fetch).chunks_repaired == []  # nothing left to do


def test_wrong_bytes_are_never_stored_and_the_revision_stays_distrusted(tmp_path: Path) -> None:
    primary, spare, chunks = _two_copies(tmp_path)
    path = Path(primary, "vm-1", "chunks", chunks[0][:2], chunks[0])
    flip_bit(path)
    verify(primary, "vm-1")
    other = Repository.open(spare, "vm-1").read_stored(chunks[1])
    result = repair(primary, "vm-1", lambda chunk: other)  # a copy that answers the wrong chunk
    assert list(result.chunks_unavailable) == [chunks[0]] and "do not match" in result.chunks_unavailable[chunks[0]]
    assert not path.exists() and len(result.revisions_distrusted) == 1
    assert Repository.open(primary, "vm-1").revisions()[0].trust == "distrusted"
    assert len(chunk_files(Path(primary, "vm-1"))) == len(chunks) - 1


def test_transient_errors_are_retried(tmp_path: Path) -> None:
    primary, spare, chunks = _two_copies(tmp_path)
    Path(primary, "vm-1", "chunks", chunks[2][:2], chunks[2]).unlink()
    verify(primary, "vm-1")
    source = Repository.open(spare, "vm-1")
    failures = [RemoteError("connection reset", exit_code=1)]

    def flaky(chunk: str) -> bytes | None:
        if failures:
            raise failures.pop()
        return source.read_stored(chunk)

    result = repair(primary, "vm-1", flaky)
    assert result.clean and result.chunks_repaired == [chunks[2]]
    assert Repository.open(primary, "vm-1").revisions()[0].trust == "verified"
