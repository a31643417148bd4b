"""Real processes: locks between concurrent commands, and kill -9 in the middle of a backup or restore."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from storage.backend import LocalStore, open_store
from storage.repository import Repository
from storage.restore import restore

from ..conftest import LIFEBOAT
from .diskdata import CHUNK, block, stored_chunks, temp_files, write_image


@pytest.fixture
def root(store_root: str) -> str:
    """Every test here runs on each backend: a folder and a RADOS pool (tests/fixtures/store.py).

    On RADOS a killed holder keeps its lock until the expiry (LIFEBOAT_STORE_LOCK_SECONDS, 5 s in the tests):
    the commands after a kill wait for it (verify waits by default).
    """
    return store_root


def chunk_count(root: str) -> int:
    try:
        return len(stored_chunks(root, "vm1"))
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([LIFEBOAT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def held_backup(root: str, vm: str, image: Path, marker: Path) -> subprocess.Popen[str]:
    """A backup that holds its VM's lock until ``marker`` is removed (its pre-hook waits for that)."""
    hook = f"touch {marker}; while [ -e {marker} ]; do sleep 0.05; done"
    return start("store", "backup", str(root), vm, f"file:{image}", "--pre-hook", hook, "--json")


def test_second_backup_of_a_vm_fails_clearly_while_other_vms_proceed(tmp_path: Path, root: str, lifeboat):
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1)])
    marker = tmp_path / "holding"
    first = held_backup(root, "vm1", image, marker)
    wait_for(marker.exists)

    busy = lifeboat("store", "backup", str(root), "vm1", f"file:{image}")
    assert busy.code == 2
    assert "busy" in busy.stderr and "backup by pid" in busy.stderr
    assert len(busy.stderr.strip().splitlines()) == 1
    gc_busy = lifeboat("store", "gc", str(root), "vm1")
    assert gc_busy.code == 2 and "busy" in gc_busy.stderr

    other = lifeboat("store", "backup", str(root), "vm2", f"file:{image}", "--json")  # no global lock
    assert other.code == 0, other.stderr

    waiting = start("store", "backup", str(root), "vm1", f"file:{image}", "--wait", "60", "--json")
    time.sleep(0.3)
    assert waiting.poll() is None  # it waits for the lock instead of failing
    marker.unlink()
    assert finish(first).returncode == 0
    assert finish(waiting).returncode == 0, waiting.stderr
    assert len(Repository.open(str(root), "vm1").revisions()) == 2


@pytest.mark.slow
def test_concurrent_backups_of_different_vms(tmp_path: Path, root: str) -> None:
    images = []
    for n in range(3):
        image = tmp_path / f"vm{n}.img"
        write_image(image, [block("random", n), block("text", n)])
        images.append(image)
    procs = [start("store", "backup", str(root), f"vm{n}", f"file:{images[n]}", "--json") for n in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    for n in range(3):
        out = tmp_path / f"out{n}.img"
        restore(str(root), f"vm{n}", "latest", str(out))
        assert out.read_bytes() == images[n].read_bytes()


@pytest.mark.slow
def test_kill_9_during_backup_leaves_a_consistent_repository(tmp_path: Path, root: str, lifeboat) -> None:
    image = tmp_path / "disk.img"
    first_bytes = write_image(image, [block("random", 1), block("text", 1)])
    assert lifeboat("store", "backup", str(root), "vm1", f"file:{image}").code == 0
    write_image(image, [block("random", 100 + n) for n in range(40)])
    before = chunk_count(root)

    proc = start("store", "backup", str(root), "vm1", f"file:{image}", "--threads", "1")
    wait_for(lambda: chunk_count(root) >= before + 3 or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert proc.returncode == -signal.SIGKILL, "the backup finished before it could be killed"

    assert len(Repository.open(str(root), "vm1").revisions()) == 1  # no half manifest
    verified = lifeboat("store", "verify", str(root), "vm1", "--json")
    assert verified.code == 0, verified.stdout + verified.stderr
    out = tmp_path / "earlier.img"
    assert lifeboat("store", "restore", str(root), "vm1", "latest", str(out)).code == 0
    assert out.read_bytes() == first_bytes

    again = lifeboat("store", "backup", str(root), "vm1", f"file:{image}", "--json", "--wait", "30")
    assert again.code == 0
    assert again.json["chunks_reused"] >= 3  # chunks written before the kill are kept and reused
    store = open_store(root)
    if isinstance(store, LocalStore):  # RADOS has no temp objects: write_full is atomic
        assert temp_files(Path(store.path("vm1"))) == []  # leftovers cleaned up by the next run
    out2 = tmp_path / "new.img"
    restore(str(root), "vm1", "latest", str(out2))
    assert out2.read_bytes() == image.read_bytes()


@pytest.mark.slow
def test_kill_9_during_restore_then_resume(tmp_path: Path, root: str, lifeboat) -> None:
    image = tmp_path / "disk.img"
    expected = write_image(image, [block("random", n) for n in range(24)] + [block("zero"), block("text", 1)])
    assert lifeboat("store", "backup", str(root), "vm1", f"file:{image}").code == 0
    target = tmp_path / "restored.img"
    partial = Path(str(target) + ".lifeboat-partial")
    state = Path(str(partial) + ".json")
    env = {"LIFEBOAT_RESTORE_STATE_EVERY": "2"}

    proc = start("store", "restore", str(root), "vm1", "latest", str(target), "--threads", "1", env=env)
    wait_for(lambda: (state.exists() and len(json.loads(state.read_text())["done"]) > 0) or proc.poll() is not None)
    wait_for(lambda: sum(e - s for s, e in json.loads(state.read_text())["done"]) >= 6 or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert proc.returncode == -signal.SIGKILL, "the restore finished before it could be killed"
    assert not target.exists() and partial.exists()  # never a half-written target under its name

    # The state may be ahead of the data: damage a chunk the state calls done; resume must notice.
    done_runs = json.loads(state.read_text())["done"]
    with open(partial, "r+b") as handle:
        handle.seek(done_runs[0][0] * CHUNK + 10)
        handle.write(b"garbage")

    resumed = lifeboat("store", "restore", str(root), "vm1", "latest", str(target), "--json", env=env)
    assert resumed.code == 0, resumed.stderr
    assert resumed.json["resumed"] is True and resumed.json["chunks_skipped"] >= 4
    assert target.read_bytes() == expected
    assert not partial.exists() and not state.exists()
