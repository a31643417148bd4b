"""Inventory feeds and disk sources: a feed may only name sources inside its scope, never another VM's disk, and
every disk change is audited; the mass-drop guard counts VMs already missing (small steps do not get around it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from portal.extensions import db
from portal.models import VM, AuditEntry, Disk
from portal.services import inventory


def feed(slug: str, vms: dict[str, list[str]], name: str | None = None) -> dict[str, Any]:
    """One organisation's feed: VM name -> its disk sources (disks d0, d1, ...)."""
    items = [{"name": vm, "disks": [{"name": f"d{i}", "source": source, "size": 1 << 30}
                                    for i, source in enumerate(disks)]} for vm, disks in vms.items()]
    return {"organisations": [{"slug": slug, "name": name or slug.title(),
                               "resource_groups": [{"name": "default", "vms": items}]}]}


def both(acme: dict[str, list[str]], globex: dict[str, list[str]]) -> dict[str, Any]:
    return {"organisations": feed("acme", acme)["organisations"] + feed("globex", globex)["organisations"]}


@pytest.fixture
def tenants(app) -> None:
    inventory.sync(both({"web": ["rbd:pool-acme/web"]}, {"shop": ["rbd:pool-globex/img-7"]}), "all", actor="test")


def disks() -> dict[str, str]:
    db.session.expire_all()
    return {f"{d.vm.organisation.slug}/{d.vm.name}/{d.name}": d.source for d in Disk.query.all()}


# -- 1. sources inside the scope -------------------------------------------------------------------------------

def test_a_scoped_feed_cannot_point_a_vm_at_another_tenants_image(tenants) -> None:
    before = disks()
    for vms in ({"web": ["rbd:pool-globex/img-7"]}, {"web": ["rbd:pool-acme/web", "rbd:pool-globex/img-7"]},
                {"new-vm": ["rbd:pool-globex/img-7"]}):
        with pytest.raises(inventory.FeedError, match="another organisation's VM") as refused:
            inventory.sync(feed("acme", vms), "acme", actor="storage-7")
        assert "shop" not in str(refused.value)  # the other tenant's VM is not named
    assert disks() == before and VM.query.count() == 2


def test_a_disk_belongs_to_one_vm_even_within_an_organisation(tenants) -> None:
    with pytest.raises(inventory.FeedError, match="already the disk of VM acme/web"):
        inventory.sync(feed("acme", {"web-2": ["rbd:pool-acme/web"]}), "all", actor="test")
    with pytest.raises(inventory.FeedError, match="also disk 'd0' of VM acme/a in this feed"):
        inventory.sync(feed("acme", {"web": ["rbd:pool-acme/web"], "a": ["rbd:pool-acme/x"], "b": ["rbd:pool-acme/x"]}),
                       "acme", actor="test")
    assert VM.query.count() == 2


def test_a_feed_repeating_what_is_there_still_applies(tenants) -> None:
    """Only sources new to a VM are checked against others, so an overlap from before never blocks the feed."""
    shop = VM.query.filter_by(name="shop").one()
    shop.disks.append(Disk(name="legacy", source="rbd:pool-acme/web", size_bytes=1))  # an old overlap
    db.session.commit()
    result = inventory.sync(both({"web": ["rbd:pool-acme/web"]}, {"shop": ["rbd:pool-globex/img-7"]}), "all",
                            actor="test")
    assert result.missing == []


@pytest.mark.parametrize("path", ["/etc/shadow", "/dev/sda", "{disks}/../../etc/shadow", "{disks}/./a.img",
                                  "{disks}//a.img", "{disks}", "{disks}-evil/a.img", "{disks}/link-to-shadow"])
def test_file_disks_only_below_the_operators_folders(app, tenants, tmp_path: Path, path: str) -> None:
    folder = tmp_path / "disks"
    folder.mkdir()
    (folder / "link-to-shadow").symlink_to("/etc/shadow")
    app.config["INVENTORY_FILE_DIRS"] = [str(folder)]
    with pytest.raises(inventory.FeedError, match="file:|LIFEBOAT_INVENTORY_FILE_DIRS|normalised"):
        inventory.sync(feed("acme", {"web": ["rbd:pool-acme/web"], "vm-f": ["file:" + path.format(disks=folder)]}),
                       "acme", actor="storage-7")
    assert VM.query.filter_by(name="vm-f").count() == 0


def test_a_file_disk_below_an_allowed_folder_is_accepted_and_none_without_one(app, tenants, tmp_path: Path) -> None:
    folder = tmp_path / "disks"
    (folder / "acme").mkdir(parents=True)
    image = folder / "acme" / "vm-f.img"
    with pytest.raises(inventory.FeedError, match="file disks are not allowed"):  # the default: no folder at all
        inventory.sync(feed("acme", {"web": ["rbd:pool-acme/web"], "vm-f": [f"file:{image}"]}), "acme", actor="t")
    app.config["INVENTORY_FILE_DIRS"] = f"{tmp_path / 'elsewhere'},{folder}"  # as the environment gives it
    inventory.sync(feed("acme", {"web": ["rbd:pool-acme/web"], "vm-f": [f"file:{image}"]}), "acme", actor="t")
    assert disks()["acme/vm-f/d0"] == f"file:{image}"
    os.symlink(image, folder / "alias.img")  # a second name for the same image is the same disk
    with pytest.raises(inventory.FeedError, match="already the disk of VM acme/vm-f"):
        inventory.sync(feed("acme", {"vm-g": [f"file:{folder / 'alias.img'}"]}), "acme", actor="t")


def test_the_pools_an_operator_gives_an_organisation(app, tenants) -> None:
    app.config["INVENTORY_RBD_POOLS"] = {"globex": ["pool-globex"]}
    with pytest.raises(inventory.FeedError, match="pool 'pool-globex' belongs to another organisation"):
        inventory.sync(feed("acme", {"web": ["rbd:pool-acme/web"], "new": ["rbd:pool-globex/not-yet-known"]}),
                       "acme", actor="storage-7")
    app.config["INVENTORY_RBD_POOLS"] = {"acme": ["pool-acme"], "globex": ["pool-globex"]}
    with pytest.raises(inventory.FeedError, match="not one of organisation acme's pools"):
        inventory.sync(feed("acme", {"web": ["rbd:pool-acme/web"], "new": ["rbd:shared/x"]}), "acme", actor="t")
    inventory.sync(feed("acme", {"web": ["rbd:pool-acme/web"], "new": ["rbd:pool-acme/new"]}), "acme", actor="t")
    assert disks()["acme/new/d0"] == "rbd:pool-acme/new"


def test_every_disk_added_or_changed_is_audited_with_before_and_after(tenants) -> None:
    added = AuditEntry.query.filter_by(action="inventory.disk_add").order_by(AuditEntry.id).all()
    assert [(e.object_label, e.before, e.after["source"]) for e in added] == [
        ("acme/web", None, "rbd:pool-acme/web"), ("globex/shop", None, "rbd:pool-globex/img-7")]
    web = VM.query.filter_by(name="web").one()
    assert (added[0].object_type, added[0].object_id, added[0].organisation_id) == ("vm", web.id, web.organisation_id)
    inventory.sync(feed("acme", {"web": ["rbd:pool-acme/web-moved"]}), "acme", actor="storage-7")
    [changed] = AuditEntry.query.filter_by(action="inventory.disk_change").all()
    assert changed.actor == "storage-7"
    assert changed.before == {"disk": "d0", "source": "rbd:pool-acme/web", "size": 1 << 30}
    assert changed.after == {"disk": "d0", "source": "rbd:pool-acme/web-moved", "size": 1 << 30}
    inventory.sync(feed("acme", {"web": ["rbd:pool-acme/web-moved"]}), "acme", actor="storage-7")
    assert AuditEntry.query.filter_by(action="inventory.disk_change").count() == 1  # nothing changed: no row


@pytest.mark.slow
def test_the_cli_refuses_another_tenants_image_with_exit_2(app, tenants, tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "feed.json"
    path.write_text(json.dumps(feed("acme", {"web": ["rbd:pool-globex/img-7"]})))
    done = subprocess.run([str(Path(sys.executable).with_name("lifeboat")), "inventory", "sync", str(path), "--scope",
                           "acme"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LIFEBOAT_DATABASE_URL": database_url, "LIFEBOAT_SECRET_KEY": "s" * 32})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "another organisation's VM" in done.stderr and "Traceback" not in done.stderr


# -- 2. the mass-drop guard counts VMs already missing ---------------------------------------------------------

def fleet(count: int, skip: int = 0) -> dict[str, list[str]]:
    return {f"vm-{i:02d}": [f"rbd:pool-acme/vm-{i:02d}"] for i in range(skip, count)}


def test_small_steps_do_not_get_around_the_mass_drop_guard(app) -> None:
    inventory.sync(feed("acme", fleet(20)), "acme", actor="test")
    assert inventory.sync(feed("acme", fleet(20, skip=1)), "acme", actor="storage-7").missing == ["acme/vm-00"]
    assert inventory.sync(feed("acme", fleet(20, skip=2)), "acme", actor="storage-7").missing == ["acme/vm-01"]
    with pytest.raises(inventory.SyncRefused, match=r"3 of 20 known VMs .*\(2 of them missing already\)"):
        inventory.sync(feed("acme", fleet(20, skip=3)), "acme", actor="storage-7")  # 15% in all: refused
    assert VM.query.filter(VM.missing_since.isnot(None)).count() == 2


def test_vms_that_stay_missing_do_not_block_later_feeds(app) -> None:
    inventory.sync(feed("acme", fleet(10)), "acme", actor="test")
    for vm in VM.query.filter(VM.name.in_(["vm-00", "vm-01", "vm-02"])):
        vm.missing_since = vm.last_seen_at  # gone for a while; an operator has not decided yet
    db.session.commit()
    again = inventory.sync(feed("acme", fleet(10, skip=3)), "acme", actor="storage-7")  # marks nothing new
    assert again.missing == [] and again.added == []


def test_a_missing_vm_stays_on_the_dashboard_with_its_rpo_state(client, auth, world) -> None:
    world["acme_vm"].missing_since = world["acme_vm"].created_at
    db.session.commit()
    auth.login(world["acme_admin"])
    page = client.get("/").get_data(as_text=True)
    row = page[page.index(">web-1<"):][:2000]
    assert "not seen since" in row and 'data-state="' in page
