"""Property tests of the chunk map: any layout of blocks round-trips and maps to chunks as it should."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.backup import backup
from storage.manifest import merge_ranges
from storage.restore import restore

SMALL_CHUNK = 4096

# A block is zero, one of a few distinct patterns (so repeats happen), or a random one.
block_kinds = st.one_of(
    st.just(("zero", 0)),
    st.tuples(st.just("pattern"), st.integers(0, 3)),
    st.tuples(st.just("random"), st.integers(0, 2**32)),
)


def make_block(kind: tuple[str, int]) -> bytes:
    name, seed = kind
    if name == "zero":
        return bytes(SMALL_CHUNK)
    if name == "pattern":
        return bytes([seed + 1]) * SMALL_CHUNK
    return seed.to_bytes(8, "little") * (SMALL_CHUNK // 8)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(block_kinds, max_size=12), tail=st.integers(0, SMALL_CHUNK - 1))
def test_chunk_map_matches_the_image(kinds: list[tuple[str, int]], tail: int) -> None:
    blocks = [make_block(k) for k in kinds]
    if tail and blocks:
        blocks[-1] = blocks[-1][:tail]
    data = b"".join(blocks)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        image = work / "disk.img"
        image.write_bytes(data)
        revision = backup(str(work / "root"), "vm", f"file:{image}", chunk_size=SMALL_CHUNK)
        assert len(revision.chunks) == len(blocks)
        for block, chunk in zip(blocks, revision.chunks, strict=True):
            assert (chunk is None) == (not any(block))
        by_content: dict[bytes, set[str | None]] = {}
        for block, chunk in zip(blocks, revision.chunks, strict=True):
            by_content.setdefault(block, set()).add(chunk)
        assert all(len(names) == 1 for names in by_content.values())  # same bytes, same chunk
        assert len({c for c in revision.chunks if c}) == len({b for b in blocks if any(b)})
        out = work / "out.img"
        restore(str(work / "root"), "vm", revision.id, str(out))
        assert out.read_bytes() == data


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 100)).map(lambda t: (t[0], t[0] + t[1]))))
def test_merge_ranges_covers_the_same_bytes(ranges: list[tuple[int, int]]) -> None:
    merged = merge_ranges(ranges)
    covered = {i for s, e in ranges for i in range(s, e)}
    assert {i for s, e in merged for i in range(s, e)} == covered
    assert all(a[1] < b[0] for a, b in zip(merged, merged[1:], strict=False))
