# ruff: noqa: F811 - the web fixture of test_instant_portal is imported and used by name
"""Disaster mode's instant strategy on the real cluster with a real RQ worker: every VM on RBD is usable before
any hydration or copy starts, in priority order; then each is hydrated and committed, identical to its disk;
a VM on a file disk is restored by copy, and the board says so."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from test_instant_portal import web  # noqa: F401 - fixture used by name

from portal import clock
from portal.demo import make_image
from portal.extensions import db
from portal.models import Restore
from portal.services import disaster, runs
from portal.services.disaster import Scope
from tests import images
from tests.fixtures.jobs import run_jobs
from tests.serving import SourceProxy

if TYPE_CHECKING:
    from conftest import Ceph

pytestmark = pytest.mark.skipif(not images.have("sfdisk", "mkfs.ext4"), reason="needs sfdisk and mkfs.ext4")
MIB = 1024 * 1024


@pytest.fixture
def rbd_fleet(ceph: Ceph, image_name: str, world: dict[str, Any], queues: Any, tmp_path: Path) -> dict[str, Any]:
    """acme's web-1 (critical) and globex's shop-1 (normal) on RBD images, acme's staging-api on a file disk;
    each backed up by the real job. Returns the VMs and the RBD disks' bytes."""
    originals = {}
    vms = {"web": world["acme_vm"], "shop": world["globex_vm"], "staging": world["acme_staging"]}
    for key, suffix in (("web", "a"), ("shop", "b")):
        name = f"{image_name}-{suffix}"
        ceph.rbd("create", "--size", "16M", f"{ceph.pool}/{name}")
        ceph.write(name, [(0, os.urandom(MIB)), (9 * MIB, os.urandom(3 * MIB))])
        originals[key] = ceph.export(name)
        vms[key].disks[0].source = f"rbd:{ceph.pool}/{name}"
    disk = tmp_path / "staging.img"
    make_image(str(disk), 8 * MIB, seed=3)
    vms["staging"].disks[0].source = f"file:{disk}"
    db.session.delete(world["acme_restore"])  # the route matrix's sample row: never queued in Redis
    for point in (world["acme_point"], world["globex_point"]):
        db.session.delete(point)
    db.session.commit()
    for vm in vms.values():
        runs.request_backup(vm)
    run_jobs(queues)
    return {"vms": vms, "originals": originals}


def test_an_instant_disaster_run_makes_every_vm_usable_before_any_hydration(
        app: Any, web: str, ceph: Ceph, rbd_fleet: dict[str, Any], world: dict[str, Any], queues: Any,
        client: Any, auth: Any) -> None:
    proxy = SourceProxy(web)  # librbd speaks to an HTTP/1.1 hop, as to the other portal tests' source
    app.config["INSTANT_SOURCE_URL"] = proxy.url
    vms = rbd_fleet["vms"]
    run = disaster.start(world["operator"], Scope("all"), clock.now(), workers=1, strategy="instant")
    assert [c["vm"] for c in run.summary["copies"]] == [vms["staging"].id]
    try:
        run_jobs(queues)  # one real worker: restore-usable first, then the class queues
    finally:
        proxy.close()

    db.session.expire_all()
    rows = [r for _, r in disaster.restores_of(run)]
    assert all(r.state == "done" for r in rows), [(r.id, r.state, r.error) for r in rows]
    instant = [r for r in rows if r.kind == "instant"]
    copy = [r for r in rows if r.kind == "full"]
    assert [r.vm_id for r in instant] == [vms["web"].id, vms["shop"].id]  # critical before normal
    assert [r.vm_id for r in copy] == [vms["staging"].id]
    last_usable = max(r.usable_at for r in instant)
    # Every image was usable before any hydration started (the hydration jobs' start) and before the copy.
    assert all(r.started_at >= last_usable for r in instant + copy)
    assert instant[0].usable_at <= instant[1].usable_at
    for row in instant:
        assert row.job_id == f"restore-{row.id}-hydrate" and row.report["usable_seconds"] >= 0
        assert row.report["damaged"] == [] and row.bytes_done == row.bytes_total
        image = row.output_path[len(f"rbd:{ceph.pool}/"):]
        assert ceph.rbd("status", "--format", "json", f"{ceph.pool}/{image}").find(b'"migration"') < 0
        key = "web" if row.vm_id == vms["web"].id else "shop"
        assert ceph.export(image) == rbd_fleet["originals"][key]
    assert not disaster.is_active(run)

    auth.login(world["operator"])
    board = re.sub(r">\s+<", "><", client.get(f"/operations/disaster/{run.id}").data.decode())
    assert 'data-state="finished"' in board and "instant strategy" in board and "data-copies" in board
    for row in board.split('<tr data-class="')[1:]:
        if row.startswith(("critical", "normal")):
            assert re.search(r'data-usable="(\d+)">\1 of \1, \d\d:\d\d:\d\d', row), row
    # The measured instant restores now feed the projections: both strategies are known on the fleet RTO.
    _, projections, _ = disaster.fleet_rto(1)
    assert projections[0].usable_seconds is not None and projections[0].hydrated_seconds is not None
    assert db.session.query(Restore).filter_by(kind="instant", state="done").count() == 2
