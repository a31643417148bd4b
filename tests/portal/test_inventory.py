"""Inventory sync: the feed adds and updates; absence is 'not seen since', never deletion.

The incident this guards against: a storage server that moved into one customer's scope got only that
customer's pools from the inventory, read every other pool as deleted, and removed them.
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
from portal.models import VM, AuditEntry, InventorySync
from portal.services import inventory


def feed(*orgs: tuple[str, list[tuple[str, str]]]) -> dict[str, Any]:
    return {"organisations": [
        {"slug": slug, "name": slug.title(), "resource_groups": [{"name": "default", "vms": [
            {"name": name, "environment": env, "disks": [{"name": "root", "source": f"rbd:pool-{slug}/{name}",
                                                          "size": 1 << 30}]}
            for name, env in vms]}]}
        for slug, vms in orgs]}


def fleet(n: int, prefix: str = "vm") -> list[tuple[str, str]]:
    return [(f"{prefix}-{i:02d}", "production") for i in range(n)]


def test_sync_adds_and_updates(app) -> None:
    result = inventory.sync(feed(("acme", fleet(3))), "all", actor="test")
    assert len(result.added) == 3 and VM.query.count() == 3
    changed = feed(("acme", [("vm-00", "staging"), ("vm-01", "production"), ("vm-02", "production")]))
    again = inventory.sync(changed, "all", actor="test")
    assert again.added == [] and again.updated == ["acme/vm-00"]
    assert VM.query.filter_by(name="vm-00").one().environment == "staging"


def test_absent_vm_is_marked_not_seen_never_deleted(app) -> None:
    inventory.sync(feed(("acme", fleet(20))), "all", actor="test")
    result = inventory.sync(feed(("acme", fleet(20)[:19])), "all", actor="test")  # 5% missing: allowed
    assert result.missing == ["acme/vm-19"]
    vm = VM.query.filter_by(name="vm-19").one()  # still there, with its disks
    assert vm.missing_since is not None and vm.disks
    back = inventory.sync(feed(("acme", fleet(20))), "all", actor="test")
    assert back.returned == ["acme/vm-19"] and VM.query.filter_by(name="vm-19").one().missing_since is None


def test_mass_drop_is_refused_and_changes_nothing(app) -> None:
    inventory.sync(feed(("acme", fleet(10))), "all", actor="test")
    before = [(v.name, v.missing_since, v.last_seen_at) for v in VM.query.order_by(VM.name)]
    with pytest.raises(inventory.SyncRefused, match="2 of 10"):
        inventory.sync(feed(("acme", fleet(8))), "all", actor="test")
    db.session.expire_all()
    assert [(v.name, v.missing_since, v.last_seen_at) for v in VM.query.order_by(VM.name)] == before
    refused = InventorySync.query.filter_by(status="refused").one()
    assert len(refused.summary["would_mark_missing"]) == 2
    assert AuditEntry.query.filter_by(action="inventory.sync_refused").count() == 1


def test_the_incident_a_narrowed_scope_never_touches_other_customers(app) -> None:
    """A feed scoped to one customer holds only that customer's VMs: everyone else's are untouched."""
    inventory.sync(feed(("acme", fleet(5, "a")), ("globex", fleet(30, "g")), ("initech", fleet(20, "i"))), "all",
                   actor="test")
    result = inventory.sync(feed(("acme", fleet(5, "a"))), "acme", actor="storage-7")
    assert result.missing == []
    others = VM.query.filter(VM.name.notlike("a-%")).all()
    assert len(others) == 50 and all(v.missing_since is None for v in others)


def test_the_incident_a_narrowed_feed_read_with_the_wrong_scope_is_refused(app) -> None:
    """The same narrowed feed applied as if it were the whole fleet would drop 50 of 55 VMs: refused."""
    inventory.sync(feed(("acme", fleet(5, "a")), ("globex", fleet(30, "g")), ("initech", fleet(20, "i"))), "all",
                   actor="test")
    with pytest.raises(inventory.SyncRefused, match="50 of 55"):
        inventory.sync(feed(("acme", fleet(5, "a"))), "all", actor="storage-7")
    assert VM.query.filter(VM.missing_since.isnot(None)).count() == 0


def test_a_feed_naming_another_organisation_than_its_scope_is_bad_input(app) -> None:
    inventory.sync(feed(("acme", fleet(2)), ("globex", fleet(2, "g"))), "all", actor="test")
    with pytest.raises(inventory.FeedError, match="outside this feed's scope"):
        inventory.sync(feed(("acme", fleet(2)), ("globex", [])), "acme", actor="test")


@pytest.mark.parametrize("bad", [
    [], {"organisations": "x"}, {"organisations": [{"slug": "Not Valid"}]},
    {"organisations": [{"slug": "a", "resource_groups": [{"name": "g", "vms": [
        {"name": "v", "environment": "prod"}]}]}]},
    {"organisations": [{"slug": "a", "resource_groups": [{"name": "g", "vms": [
        {"name": "v", "disks": [{"name": "d", "source": "nfs:/x"}]}]}]}]},
])
def test_malformed_feeds_are_refused_before_anything_changes(app, bad: Any) -> None:
    with pytest.raises(inventory.FeedError):
        inventory.sync(bad, "all", actor="test")
    assert VM.query.count() == 0


def test_export_is_a_feed_that_sync_accepts(app) -> None:
    inventory.sync(feed(("acme", fleet(3)), ("globex", fleet(2, "g"))), "all", actor="test")
    exported = inventory.export()
    result = inventory.sync(exported, "all", actor="test")
    assert result.added == [] and result.updated == [] and result.missing == []
    assert [o["slug"] for o in inventory.export("globex")["organisations"]] == ["globex"]


@pytest.mark.slow
def test_cli_exit_codes(app, tmp_path: Path, database_url: str) -> None:
    env = {**os.environ, "LIFEBOAT_DATABASE_URL": database_url, "LIFEBOAT_SECRET_KEY": "s" * 32}
    lifeboat = str(Path(sys.executable).with_name("lifeboat"))

    def run(document: Any, scope: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "feed.json"
        path.write_text(document if isinstance(document, str) else json.dumps(document))
        return subprocess.run([lifeboat, "inventory", "sync", str(path), "--scope", scope], capture_output=True,
                              text=True, env=env)

    applied = run(feed(("acme", fleet(10))), "all")
    assert applied.returncode == 0, applied.stderr
    assert len(json.loads(applied.stdout)["added"]) == 10
    refused = run(feed(("acme", fleet(5))), "all")
    assert refused.returncode == 1 and "refused" in refused.stderr
    bad = run("{not json", "all")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    exported = subprocess.run([lifeboat, "inventory", "export", "--scope", "acme"], capture_output=True, text=True,
                              env=env)
    assert exported.returncode == 0 and len(json.loads(exported.stdout)["organisations"][0]["resource_groups"][0]
                                            ["vms"]) == 10


def test_a_disk_missing_from_the_feed_is_marked_never_dropped(app) -> None:
    two = feed(("acme", fleet(1)))
    two["organisations"][0]["resource_groups"][0]["vms"][0]["disks"].append(
        {"name": "data", "source": "rbd:pool-acme/vm-00-data", "size": 2 << 30})
    inventory.sync(two, "all", actor="test")
    inventory.sync(feed(("acme", fleet(1))), "all", actor="test")  # the data disk is no longer listed
    vm = VM.query.one()
    assert [(d.name, d.missing_since is not None) for d in vm.disks] == [("data", True), ("root", False)]
    assert AuditEntry.query.filter_by(action="inventory.disk_missing").count() == 1
    inventory.sync(two, "all", actor="test")  # listed again: the mark goes
    db.session.expire_all()
    assert [d.missing_since for d in VM.query.one().disks] == [None, None]
    assert AuditEntry.query.filter_by(action="inventory.disk_returned").count() == 1
