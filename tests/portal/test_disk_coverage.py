"""Coverage (issue 14): a VM is protected only by a good point that holds every disk the inventory lists."""

from __future__ import annotations

from datetime import timedelta

from portal import clock
from portal.extensions import db
from portal.models import Disk
from portal.services.status import statuses
from tests.fixtures.portal import make_point, make_vm

GiB = 1 << 30


def two_disk_vm(world):
    vm = make_vm(world["acme"], "db-1")
    vm.disks.append(Disk(name="data", source="rbd:pool/acme-db-1-data", size_bytes=GiB))
    db.session.commit()
    return vm


def disks(*names: str) -> list[dict[str, object]]:
    return [{"name": name, "size": GiB} for name in names]


def test_a_point_without_the_data_disk_does_not_protect_the_vm(app, world) -> None:
    vm = two_disk_vm(world)
    make_point(vm, "20261124T000000Z-000001", disks=disks("root"))
    status = statuses([vm])[vm.id]
    assert status.last_good is None and status.state == "none" and status.uncovered == ("data",)


def test_the_newest_point_with_every_disk_is_the_protection(app, world) -> None:
    vm = two_disk_vm(world)
    whole = clock.now() - timedelta(minutes=90)
    make_point(vm, "20261124T000000Z-000001", created_at=whole, disks=disks("root", "data"))
    make_point(vm, "20261124T000000Z-000002", created_at=clock.now() - timedelta(minutes=5), disks=disks("root"))
    make_point(vm, "20261124T000000Z-000003", created_at=clock.now() - timedelta(minutes=1), disks=disks("root"),
               state="damaged")  # not good: neither protects nor hides the uncovered disk
    status = statuses([vm])[vm.id]
    assert status.last_good == whole and status.uncovered == ("data",)
    assert status.state == "ok"  # 90 minutes old against the RPO of 120
    latest = clock.now()
    make_point(vm, "20261124T000000Z-000004", created_at=latest, disks=disks("data", "root"))
    status = statuses([vm])[vm.id]
    assert status.last_good == latest and status.uncovered == ()


def test_points_of_the_one_disk_portal_still_protect_a_one_disk_vm(app, world) -> None:
    one = make_vm(world["acme"], "app-1")  # its only disk is "root"
    make_point(one, "20261124T000000Z-000001")  # disks not read yet (made before points recorded them)
    two = two_disk_vm(world)
    make_point(two, "20261124T000000Z-000001")
    found = statuses([one, two])
    assert found[one.id].last_good is not None and found[one.id].uncovered == ()
    assert found[two.id].last_good is None


def test_the_dashboard_names_the_disks_not_backed_up(app, world, client, auth) -> None:
    vm = two_disk_vm(world)
    make_point(vm, "20261124T000000Z-000001", disks=disks("root"))
    auth.login(world["acme_admin"])
    page = client.get("/").get_data(as_text=True)
    assert "not backed up: data" in page
