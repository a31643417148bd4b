"""What only an S3 root has: conditional puts the endpoint must honour, a lock object with an expiry, pagination.

The engine's round-trip, damage, crash, retention, copy and browse tests run on S3 too (``store_root``'s ``s3``
parameter: radosgw on the backup cluster, tests/fixtures/store.py); these check the S3-specific guarantees against
that real endpoint, with plain boto3 as the oracle of what is in the bucket.
"""

from __future__ import annotations

import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import storage.s3_store as s3_store
from storage.backend import open_store
from storage.repository import Repository

from ..fixtures.store import BUCKET, S3Endpoint
from .diskdata import block, write_image
from .test_processes import finish, held_backup, wait_for

pytestmark = pytest.mark.ceph


@pytest.fixture
def root(backup_cluster: object, s3_endpoint: S3Endpoint) -> str:
    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:10]}"


def _objects(endpoint: S3Endpoint, prefix: str) -> dict[str, bytes]:
    client: Any = endpoint.client()
    found: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", ()):
            found[item["Key"]] = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
    return found


def test_put_if_absent_and_compare_and_swap_are_honoured_by_the_endpoint(root: str, s3_endpoint: S3Endpoint) -> None:
    store = s3_store.open_s3(root)
    assert store.put("vm1/x", b"first", exclusive=True) is True
    assert store.put("vm1/x", b"second", exclusive=True) is False  # If-None-Match: * refused it
    prefix = root.removeprefix("s3://" + BUCKET + "/")
    assert _objects(s3_endpoint, prefix + "/") == {prefix + "/vm1/x": b"first"}
    _, etag = store.get_tagged("vm1/x", 100)
    assert store.put_conditional("vm1/x", b"swapped", etag) is True
    assert store.put_conditional("vm1/x", b"stale", etag) is False  # the ETag changed: If-Match refused it
    assert store.get("vm1/x", 100) == b"swapped"


def test_of_racing_conditional_puts_exactly_one_wins(root: str) -> None:
    """What the lock rests on: the endpoint's check and write are one step, not a read then a write."""
    store = s3_store.open_s3(root)
    for attempt in range(5):
        key = f"race/{attempt}"

        def create(n: int, key: str = key) -> bool:
            return store.put(key, b"%d" % n, exclusive=True)

        with ThreadPoolExecutor(8) as pool:
            created = list(pool.map(create, range(8)))
        assert created.count(True) == 1
        _, etag = store.get_tagged(key, 100)

        def swap(n: int, key: str = key, etag: str = etag) -> bool:
            return store.put_conditional(key, b"s%d" % n, etag)

        with ThreadPoolExecutor(8) as pool:
            swapped = list(pool.map(swap, range(8)))
        assert swapped.count(True) == 1
        assert store.get(key, 100) == b"s%d" % swapped.index(True)


def test_listing_pages_through_every_key(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(root)
    keys = [f"vm1/revisions/{n:02d}.json" for n in range(7)] + ["vm1/repository.json", "vm2/repository.json"]
    for key in keys:
        store.put(key, b"{}")
    monkeypatch.setattr(s3_store, "LIST_PAGE", 2)
    assert list(store.list("")) == sorted(keys)
    assert list(store.list("vm1/revisions/0")) == sorted(keys[:7])
    assert list(store.list("", recursive=False)) == ["vm1", "vm2"]
    assert list(store.list("vm1/", recursive=False)) == ["vm1/repository.json", "vm1/revisions"]


def test_shared_holders_share_and_an_exclusive_one_waits(root: str) -> None:
    from storage.errors import Locked

    store = open_store(root)
    with store.lock("vm1/lock", exclusive=False, wait=0, vm="vm1", purpose="restore"), \
            store.lock("vm1/lock", exclusive=False, wait=0, vm="vm1", purpose="verify"):
        with pytest.raises(Locked, match="restore by pid|verify by pid"), \
                store.lock("vm1/lock", exclusive=True, wait=0.5, vm="vm1", purpose="backup"):
            pass
    with store.lock("vm1/lock", exclusive=True, wait=0, vm="vm1", purpose="backup") as held:
        held.check()
        with pytest.raises(Locked, match="S3 lock"), \
                store.lock("vm1/lock", exclusive=False, wait=0.5, vm="vm1", purpose="restore"):
            pass


def test_a_killed_holder_blocks_its_vm_only_until_the_lock_expires(tmp_path: Path, root: str, lifeboat) -> None:
    image = tmp_path / "disk.img"
    expected = write_image(image, [block("random", 1), block("text", 1)])
    marker = tmp_path / "holding"
    holder = held_backup(root, "vm1", image, marker)  # holds the lock in its pre-hook
    wait_for(marker.exists)
    holder.send_signal(signal.SIGKILL)  # a host that dies: nobody unlocks
    finish(holder)
    marker.unlink()

    busy = lifeboat("store", "backup", root, "vm1", f"file:{image}")
    assert busy.code == 2 and "busy" in busy.stderr and "S3 lock" in busy.stderr, busy.stderr
    assert len(busy.stderr.strip().splitlines()) == 1
    taken_over = lifeboat("store", "backup", root, "vm1", f"file:{image}", "--wait", "60", "--json")
    assert taken_over.code == 0, taken_over.stderr  # the expiry (5 s here) freed the VM
    out = tmp_path / "out.img"
    assert lifeboat("store", "restore", root, "vm1", "latest", str(out)).code == 0
    assert out.read_bytes() == expected


def test_a_backup_whose_lock_lapsed_publishes_nothing(tmp_path: Path, root: str, lifeboat) -> None:
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1)])
    assert lifeboat("store", "backup", root, "vm1", f"file:{image}").code == 0
    write_image(image, [block("random", 2), block("text", 2)])
    marker = tmp_path / "holding"
    paused = held_backup(root, "vm1", image, marker)
    wait_for(marker.exists)
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        other_host = lifeboat("store", "gc", root, "vm1", "--wait", "60", "--json")  # after the 5 s expiry
        assert other_host.code == 0, other_host.stderr
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    marker.unlink()
    done = finish(paused)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "lapsed" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert len(Repository.open(root, "vm1").revisions()) == 1
    assert lifeboat("store", "verify", root, "vm1").code == 0


def test_a_backup_is_objects_under_the_prefix(tmp_path: Path, root: str, s3_endpoint: S3Endpoint, lifeboat) -> None:
    image = tmp_path / "disk.img"
    write_image(image, [block("random", 1)])
    assert lifeboat("store", "backup", root, "vm1", f"file:{image}").code == 0
    prefix = root.removeprefix("s3://" + BUCKET + "/") + "/vm1/"
    names = [name.removeprefix(prefix) for name in _objects(s3_endpoint, prefix)]
    assert "repository.json" in names and "lock" in names
    assert any(name.startswith("chunks/") for name in names) and any(n.startswith("revisions/") for n in names)
    assert lifeboat("store", "list", root, "--json").code == 0


def test_unknown_bucket_unreachable_endpoint_and_bad_roots_are_one_line_exit_2(lifeboat) -> None:
    unknown = lifeboat("store", "list", "s3://nosuchbucket")
    assert unknown.code == 2 and "no bucket 'nosuchbucket'" in unknown.stderr, unknown.stderr
    down = lifeboat("store", "list", f"s3://{BUCKET}", env={"LIFEBOAT_STORE_S3_ENDPOINT": "http://127.0.0.1:1",
                                                           "LIFEBOAT_STORE_S3_TIMEOUT": "2"})
    assert down.code == 2 and "unavailable" in down.stderr, down.stderr
    wrong_key = lifeboat("store", "list", f"s3://{BUCKET}", env={"LIFEBOAT_STORE_S3_SECRET_KEY": "wrong"})
    assert wrong_key.code == 2 and "unavailable" in wrong_key.stderr, wrong_key.stderr
    for bad in ("s3://", "s3://AB", "s3://Bad_Bucket", f"s3://{BUCKET}/na me"):
        done = lifeboat("store", "list", bad)
        assert done.code == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    for done in (unknown, down, wrong_key):
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_portals_storage_check_reads_a_bucket(root: str) -> None:
    from portal.check import Thresholds, check_storage, probe_storage

    assert probe_storage({"STORAGE_ROOT": root}) is None
    assert check_storage({"STORAGE_ROOT": root}, Thresholds()).status == 0
    assert "no bucket" in (probe_storage({"STORAGE_ROOT": "s3://nosuchbucket"}) or "")
