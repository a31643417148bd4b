"""RbdTarget against a real cluster: new sparse images, --force in place, resume, abort, refusals."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from storage.errors import BadTarget, TargetExists
from storage.targets import open_target
from storage.targets.rbd import PARTIAL_SUFFIX, RbdTarget, make_rbd_target

if TYPE_CHECKING:
    from conftest import Ceph

pytestmark = pytest.mark.ceph
OBJ = 4 << 20
SIZE = 16 * OBJ


def sample() -> bytes:
    """64 MiB with data in objects 2, 3 and 12 and zeros elsewhere."""
    data = bytearray(SIZE)
    for i in (2, 3, 12):
        data[i * OBJ : (i + 1) * OBJ] = os.urandom(OBJ)
    return bytes(data)


def restore(target: RbdTarget, data: bytes, resuming: bool = False, skip: set[int] = frozenset()) -> None:
    """Drive the target as storage.restore does: begin, parallel writes, zero only when not free, commit."""
    target.begin(len(data), resuming)

    def one(offset: int) -> None:
        chunk = data[offset : offset + OBJ]
        if chunk.count(0) == len(chunk):
            if not target.zero_is_free:
                target.zero(offset, len(chunk))
        else:
            target.write(offset, chunk)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, [o for o in range(0, len(data), OBJ) if o // OBJ not in skip]))
    target.flush()
    target.commit()
    target.close()


def test_factory_and_state_path(ceph: Ceph, image_name: str, tmp_path: object) -> None:
    target = open_target(f"rbd:rbd/{image_name}", force=False, state_dir=str(tmp_path))
    assert isinstance(target, RbdTarget)
    assert target.state_path == os.path.join(str(tmp_path), f"rbd-rbd@{image_name}.restore.json")
    assert target.zero_is_free and target.can_read_back


def test_restore_to_new_image_is_exact_and_sparse(ceph: Ceph, image_name: str, tmp_path: object) -> None:
    data = sample()
    target = make_rbd_target(f"rbd:rbd/{image_name}", False, str(tmp_path))
    restore(target, data)
    assert ceph.export(image_name) == data
    assert ceph.used_bytes(image_name) == 3 * OBJ  # zero chunks were never written
    assert f"{image_name}{PARTIAL_SUFFIX}" not in ceph.images()


def test_final_name_appears_only_at_commit(ceph: Ceph, image_name: str, tmp_path: object) -> None:
    target = make_rbd_target(f"rbd:rbd/{image_name}", False, str(tmp_path))
    target.begin(SIZE, False)
    target.write(0, b"x" * OBJ)
    assert image_name not in ceph.images()
    assert f"{image_name}{PARTIAL_SUFFIX}" in ceph.images()
    target.commit()
    target.close()
    assert image_name in ceph.images()


def test_existing_image_needs_force(ceph: Ceph, image_name: str, tmp_path: object) -> None:
    ceph.rbd("create", "--size", "8M", f"rbd/{image_name}")
    with pytest.raises(TargetExists, match="pass --force"):
        make_rbd_target(f"rbd:rbd/{image_name}", False, str(tmp_path))


def test_force_restores_in_place_keeping_snapshots(ceph: Ceph, image_name: str, tmp_path: object) -> None:
    ceph.rbd("create", "--size", "32M", f"rbd/{image_name}")
    ceph.write(image_name, [(i * OBJ, os.urandom(OBJ)) for i in range(8)])  # every object holds junk
    ceph.rbd("snap", "create", f"rbd/{image_name}@keep-me")
    data = sample()
    target = make_rbd_target(f"rbd:rbd/{image_name}", True, str(tmp_path))
    assert not target.zero_is_free  # the old junk must be zeroed explicitly
    restore(target, data)
    assert ceph.export(image_name) == data  # grown from 32 MiB and every old object overwritten or zeroed
    assert ceph.snaps(image_name) == ["keep-me"]


def test_force_refuses_an_image_in_use(ceph: Ceph, image_name: str, tmp_path: object) -> None:
    ceph.rbd("create", "--size", "8M", f"rbd/{image_name}")
    rados, rbd = ceph.bindings()
    cluster = rados.Rados(conffile=str(ceph.conf))
    cluster.connect()
    try:
        with cluster.open_ioctx("rbd") as ioctx, rbd.Image(ioctx, image_name):  # like a running VM
            with pytest.raises(BadTarget, match="in use"):
                make_rbd_target(f"rbd:rbd/{image_name}", True, str(tmp_path))
    finally:
        cluster.shutdown()


def test_interrupted_restore_resumes_from_the_partial_image(ceph: Ceph, image_name: str, tmp_path: object) -> None:
    data = sample()
    first = make_rbd_target(f"rbd:rbd/{image_name}", False, str(tmp_path))
    first.begin(SIZE, False)
    first.write(2 * OBJ, data[2 * OBJ : 3 * OBJ])
    first.close()  # interrupted: nothing published, the partial image stays
    assert image_name not in ceph.images()

    second = make_rbd_target(f"rbd:rbd/{image_name}", False, str(tmp_path))
    assert second.can_resume()
    second.begin(SIZE, True)
    assert second.read_back(2 * OBJ, OBJ) == data[2 * OBJ : 3 * OBJ]
    second.close()
    restore(make_rbd_target(f"rbd:rbd/{image_name}", False, str(tmp_path)), data, resuming=True, skip={2})
    assert ceph.export(image_name) == data


def test_resume_without_partial_image_is_refused(ceph: Ceph, image_name: str, tmp_path: object) -> None:
    target = make_rbd_target(f"rbd:rbd/{image_name}", False, str(tmp_path))
    assert not target.can_resume()
    with pytest.raises(BadTarget, match="cannot resume"):
        target.begin(SIZE, True)


def test_fresh_begin_replaces_a_stale_partial(ceph: Ceph, image_name: str, tmp_path: object) -> None:
    ceph.rbd("create", "--size", "8M", f"rbd/{image_name}{PARTIAL_SUFFIX}")
    ceph.write(f"{image_name}{PARTIAL_SUFFIX}", [(0, b"stale")])
    data = sample()
    restore(make_rbd_target(f"rbd:rbd/{image_name}", False, str(tmp_path)), data)
    assert ceph.export(image_name) == data


def test_abort_removes_the_partial_image(ceph: Ceph, image_name: str, tmp_path: object) -> None:
    target = make_rbd_target(f"rbd:rbd/{image_name}", False, str(tmp_path))
    target.begin(SIZE, False)
    target.write(0, b"y" * 4096)
    target.abort()
    assert not [n for n in ceph.images() if n.startswith(image_name)]


@pytest.mark.parametrize("spec", ["rbd:", "rbd:rbd", "rbd:rbd/", "rbd:rbd/a@b", "rbd:-x/y", "rbd:r b/x"])
def test_bad_target_names(spec: str, tmp_path: object) -> None:
    with pytest.raises(BadTarget) as caught:
        make_rbd_target(spec, False, str(tmp_path))
    assert "\n" not in str(caught.value)


def test_missing_pool_is_bad_target(ceph: Ceph, tmp_path: object) -> None:
    with pytest.raises(BadTarget, match="pool 'nosuchpool' does not exist"):
        make_rbd_target("rbd:nosuchpool/img", False, str(tmp_path))
