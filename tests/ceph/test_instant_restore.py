"""Instant restore into RBD against the real loopback cluster: usable at once, identical when committed.

The backup is of a real GPT/ext4 image; Lifeboat serves it over HTTP and Ceph's import-only live migration
reads from it. The ``rbd`` CLI (another process, another librbd client) is the oracle for what the image holds.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from storage.instant import instant_restore
from storage.repository import Repository
from storage.serve import Address
from storage.targets.migration import InstantRestoreFailed
from tests import images
from tests.conftest import LIFEBOAT
from tests.serving import SourceProxy, backed_up_disk, chunk_file, data_chunks, free_port, wait_until

if TYPE_CHECKING:
    from conftest import Ceph

OBJ = 4 << 20  # RBD's object size and the engine's chunk size

pytestmark = pytest.mark.skipif(not images.have("sfdisk", "mkfs.ext4"), reason="needs sfdisk and mkfs.ext4")

LOOPBACK = Address("127.0.0.1", 0)


@pytest.fixture
def disk(tmp_path: Path, root: Path) -> tuple[Path, str]:
    return backed_up_disk(tmp_path / "work", root)


def migration_state(ceph: Ceph, name: str) -> str | None:
    doc = json.loads(ceph.rbd("status", "--format", "json", f"{ceph.pool}/{name}"))
    return doc.get("migration", {}).get("state")


def read_ranges(ceph: Ceph, name: str, ranges: list[tuple[int, int]]) -> list[bytes]:
    rados, rbd = ceph.bindings()
    cluster = rados.Rados(conffile=str(ceph.conf))
    cluster.connect()
    try:
        with cluster.open_ioctx(ceph.pool) as ioctx, rbd.Image(ioctx, name, read_only=True) as image:
            return [bytes(image.read(offset, length)) for offset, length in ranges]
    finally:
        cluster.shutdown()


def source_status(url: str) -> int:
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - a test's own URL
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except OSError:
        return -1  # nothing answers any more


def stop_cleanly(process: subprocess.Popen[str], url: str, proxy: SourceProxy) -> None:
    """SIGTERM, wait until the source refuses (503), then let the held reads reach it so librbd stops.

    A SIGTERM before hydration began ends the process at once: then there is nothing to wait for.
    """
    process.send_signal(signal.SIGTERM)
    wait_until(lambda: process.poll() is not None or source_status(url) == 503)
    proxy.release()


def state_files(root: Path) -> list[Path]:
    return sorted((root / "vm1" / "restore-state").glob("instant-*"))


def test_the_image_reads_right_before_hydration_and_is_identical_after_commit(
        ceph: Ceph, image_name: str, root: Path, disk: tuple[Path, str]) -> None:
    image, revision = disk
    original = image.read_bytes()
    rng = random.Random(12)
    ranges = [(rng.randrange(0, len(original) - 70000), rng.randrange(1, 70000)) for _ in range(40)]
    ranges += [(OBJ - 100, 200), (len(original) - 512, 512), (0, OBJ * 3 + 17)]  # edges and a long read
    marker = (data_chunks(root, "vm1", revision)[1] * OBJ + 4096, b"written while unhydrated" * 100)
    seen: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "ready":
            seen["state"] = migration_state(ceph, image_name)
            seen["export"] = ceph.export(image_name)  # the whole image, through the source
            seen["ranges"] = read_ranges(ceph, image_name, ranges)
            ceph.write(image_name, [marker])
        seen.setdefault("events", []).append(event["event"])

    result = instant_restore(str(root), "vm1", revision, f"rbd:{ceph.pool}/{image_name}", listen=LOOPBACK,
                             events=on_event)

    assert seen["state"] == "prepared"  # read before any hydration ran
    assert seen["export"] == original
    assert seen["ranges"] == [original[o : o + n] for o, n in ranges]
    assert seen["events"][0] == "ready" and seen["events"][-1] == "committed" and "progress" in seen["events"]
    assert migration_state(ceph, image_name) is None  # committed: the source is no longer needed
    expected = bytearray(original)
    expected[marker[0] : marker[0] + len(marker[1])] = marker[1]
    assert ceph.export(image_name) == bytes(expected)
    assert result.revision == revision and result.damaged == [] and not result.resumed
    assert 0 < result.ready_seconds <= result.seconds
    data = sum(1 for c in Repository.open(str(root), "vm1").load_revision(revision).chunks if c) * OBJ
    assert result.hydrated_bytes == data
    assert ceph.used_bytes(image_name) <= data  # zero chunks were never copied and stay unallocated
    assert state_files(root) == []


def test_cli_prints_ready_then_progress_then_the_result(ceph: Ceph, image_name: str, root: Path,
                                                        disk: tuple[Path, str], lifeboat) -> None:
    image, revision = disk
    done = lifeboat("store", "instant-restore", str(root), "vm1", "latest", f"rbd:{ceph.pool}/{image_name}",
                    "--listen", "127.0.0.1:0", "--json")
    assert done.code == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["event"] == "ready" and lines[0]["image"] == f"rbd:{ceph.pool}/{image_name}"
    assert lines[0]["url"].startswith("http://127.0.0.1:") and lines[0]["seconds"] > 0
    percents = [line["percent"] for line in lines if line.get("event") == "progress"]
    assert percents == sorted(percents) and percents[-1] == 100
    result = lines[-1]
    assert {"ready_seconds", "hydrated_bytes", "seconds", "damaged"} <= result.keys()
    assert result["revision"] == revision and result["damaged"] == []
    assert ceph.export(image_name) == image.read_bytes()


def test_a_failure_during_hydration_aborts_and_leaves_no_image(ceph: Ceph, image_name: str, root: Path,
                                                               disk: tuple[Path, str], lifeboat) -> None:
    """The network to the source breaks after the image was announced: abort, remove, say so."""
    _, revision = disk
    port = free_port()
    proxy = SourceProxy(f"http://127.0.0.1:{port}")
    seen: list[str | None] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "ready":
            seen.append(migration_state(ceph, image_name))
            proxy.broken = True

    try:
        with pytest.raises(InstantRestoreFailed) as failed:
            instant_restore(str(root), "vm1", revision, f"rbd:{ceph.pool}/{image_name}",
                            listen=Address("127.0.0.1", port), url_base=proxy.url, events=on_event)
    finally:
        proxy.close()
    assert seen == ["prepared"]
    assert "aborted" in str(failed.value) and failed.value.exit_code == 1
    assert image_name not in ceph.images()
    assert state_files(root) == []
    assert lifeboat("store", "verify", str(root), "vm1").code == 0


def test_an_interrupted_restore_resumes_to_an_identical_image(ceph: Ceph, image_name: str, root: Path,
                                                              disk: tuple[Path, str]) -> None:
    """SIGTERM mid-hydration (held at the second range by a proxy): exit 130, then the same command finishes."""
    image, revision = disk
    port = free_port()
    proxy = SourceProxy(f"http://127.0.0.1:{port}", hold_after=1)
    command = [LIFEBOAT, "store", "instant-restore", str(root), "vm1", revision, f"rbd:{ceph.pool}/{image_name}",
               "--listen", f"127.0.0.1:{port}", "--url-base", proxy.url, "--json"]
    try:
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert first.stdout is not None
        ready = json.loads(first.stdout.readline())
        assert ready["event"] == "ready" and ready["url"].startswith(proxy.url)
        wait_until(lambda: proxy.gets > 1)  # hydration has started and is held
        stop_cleanly(first, ready["url"], proxy)
        _, stderr = first.communicate(timeout=120)
        assert first.returncode == 130, stderr
        assert "run the same command again" in stderr
        assert len(state_files(root)) == 1
        assert image_name in ceph.images()

        again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    finally:
        proxy.close()
    assert again.returncode == 0, again.stderr
    lines = [json.loads(line) for line in again.stdout.splitlines()]
    assert lines[0]["event"] == "ready" and lines[0]["resumed"] is True
    assert lines[-1]["resumed"] is True and lines[-1]["damaged"] == []
    assert ceph.export(image_name) == image.read_bytes()
    assert state_files(root) == []


def test_a_damaged_chunk_is_zero_filled_and_named(ceph: Ceph, image_name: str, root: Path,
                                                  disk: tuple[Path, str], lifeboat) -> None:
    image, revision = disk
    index = data_chunks(root, "vm1", revision)[1]
    path = chunk_file(root, "vm1", revision, index)
    path.chmod(0o644)
    path.write_bytes(b"rot")
    done = lifeboat("store", "instant-restore", str(root), "vm1", revision, f"rbd:{ceph.pool}/{image_name}",
                    "--listen", ":0", "--json")
    assert done.code == 1, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["damaged"] == [[index * OBJ, (index + 1) * OBJ]]
    expected = bytearray(image.read_bytes())
    expected[index * OBJ : (index + 1) * OBJ] = bytes(OBJ)
    assert ceph.export(image_name) == bytes(expected)


def test_abort_removes_an_unfinished_restore_and_nothing_else(ceph: Ceph, image_name: str, root: Path,
                                                             disk: tuple[Path, str], lifeboat) -> None:
    _, revision = disk
    target = f"rbd:{ceph.pool}/{image_name}"
    ceph.rbd("create", "--size", "4M", f"{ceph.pool}/{image_name}")
    refused = lifeboat("store", "instant-restore", str(root), "vm1", revision, target, "--listen", ":0")
    assert refused.code == 2 and "exists" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    refused = lifeboat("store", "instant-restore", str(root), "vm1", revision, target, "--abort")
    assert refused.code == 2 and "nothing removed" in refused.stderr
    assert image_name in ceph.images()
    ceph.rbd("rm", "--no-progress", f"{ceph.pool}/{image_name}")

    port = free_port()
    proxy = SourceProxy(f"http://127.0.0.1:{port}", hold_after=1)
    command = [LIFEBOAT, "store", "instant-restore", str(root), "vm1", revision, target,
               "--listen", f"127.0.0.1:{port}", "--url-base", proxy.url, "--json"]
    try:
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert first.stdout is not None
        ready = json.loads(first.stdout.readline())
        assert ready["event"] == "ready"
        stop_cleanly(first, ready["url"], proxy)
        first.communicate(timeout=120)
    finally:
        proxy.close()
    assert first.returncode == 130
    aborted = lifeboat("store", "instant-restore", str(root), "vm1", revision, target, "--abort", "--json")
    assert aborted.code == 0, aborted.stderr
    assert aborted.json["aborted"] is True
    assert image_name not in ceph.images() and state_files(root) == []


def test_bad_input_is_one_line(ceph: Ceph, image_name: str, root: Path, disk: tuple[Path, str], lifeboat) -> None:
    for args, words in (
        ([f"rbd:{ceph.pool}/{image_name}"], "--listen"),
        (["rbd:nopool/x", "--listen", ":0"], "does not exist"),
        (["file:/tmp/x", "--listen", ":0"], "rbd:POOL/IMAGE"),
        ([f"rbd:{ceph.pool}/{image_name}", "--listen", "nonsense"], "invalid address"),
    ):
        done = lifeboat("store", "instant-restore", str(root), "vm1", disk[1], *args)
        assert done.code == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and words in done.stderr, done.stderr
