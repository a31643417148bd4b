"""Incidents and maintenance windows: who sees the banner and when, the status page's restore queue per
tenant, and the operators' pages (with a fixed clock where time matters)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from portal import clock
from portal.extensions import db
from portal.models import AuditEntry, Incident, Restore
from portal.services import eta, incidents
from portal.services.incidents import IncidentError
from tests.fixtures.portal import make_point, make_vm

START = datetime(2026, 12, 1, 12, 0)


@pytest.fixture
def fixed_clock() -> Iterator[None]:
    clock.set_now(START)
    yield
    clock.set_now(None)


def text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def banner(client) -> str:
    page = client.get("/").get_data(as_text=True)
    found = re.search(r'<section class="flash \w+ incident-banner".*?</section>', page, re.S)
    return found.group(0) if found else ""


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="outage", title="x"), "kind must be one of"),
    (dict(kind="disaster", title=" "), "a title"),
    (dict(kind="maintenance", title="Disks"), "needs an end"),
    (dict(kind="maintenance", title="Disks", starts_at=START, ends_at=START), "end must be after the start"),
    (dict(kind="disaster", title="Fire", organisation_ids=[999999]), "no organisation with id 999999"),
    (dict(kind="disaster", title="Fire", organisation_ids=[]), "at least one organisation"),
    (dict(kind="disaster", title="Fire", pool="rbd; rm -rf"), "a pool name"),
])
def test_bad_requests_are_refused_with_the_reason(world, kwargs, message) -> None:
    if kwargs.get("organisation_ids") == [] or "pool" in kwargs:
        kwargs.setdefault("organisation_ids", None)
    with pytest.raises(IncidentError, match=message):
        incidents.open_incident(actor=world["operator"], **kwargs)
    db.session.rollback()
    assert Incident.query.count() == 0


def test_a_maintenance_window_shows_from_its_announcement_until_it_ends(world, auth, fixed_clock) -> None:
    auth.login(world["acme_member"])
    assert banner(auth.client) == ""  # nothing announced yet
    window = incidents.open_incident("maintenance", "Storage node sn-3 firmware", world["operator"],
                                     organisation_ids=[world["acme"].id], starts_at=START + timedelta(days=2),
                                     ends_at=START + timedelta(days=2, hours=2), message="Backups pause 2 h.")
    shown = banner(auth.client)
    said = text(shown)  # what people read: the times are <time> elements
    assert "Maintenance:" in said and "Storage node sn-3 firmware" in said and "planned 2026-12-03 12:00" in said
    assert 'href="/status"' in shown
    clock.set_now(START + timedelta(days=2, hours=1))  # during the window
    assert "since 2026-12-03 12:00 UTC, until 2026-12-03 14:00 UTC" in text(banner(auth.client))
    clock.set_now(window.ends_at)  # over: gone without anybody resolving it
    assert banner(auth.client) == ""
    page = auth.client.get("/status").get_data(as_text=True)
    assert "Recently closed" in page and "Storage node sn-3 firmware" in page and "Backups pause 2 h." in page

    auth.logout()
    clock.set_now(START + timedelta(days=2, hours=1))
    auth.login(world["globex_admin"])  # another organisation: never affected
    assert banner(auth.client) == ""
    assert "sn-3" not in auth.client.get("/status").get_data(as_text=True)


def test_resolving_early_removes_the_banner_and_the_status_page_says_so(world, auth, fixed_clock) -> None:
    fire = incidents.open_incident("disaster", "Ceph cluster A lost", "system:disaster")  # as disaster mode calls it
    auth.login(world["globex_admin"])
    shown = banner(auth.client)
    assert 'class="flash error incident-banner"' in shown and "Incident:" in shown  # a disaster is red
    incidents.post_update(fire, world["operator"], "Restores of all VMs are queued by priority.")
    page = auth.client.get("/status").get_data(as_text=True)
    assert "Restores of all VMs are queued by priority." in page and "all your VMs" in page
    incidents.resolve(fire, world["operator"], "All VMs restored.")
    assert banner(auth.client) == ""
    assert "All VMs restored." in auth.client.get("/status").get_data(as_text=True)
    with pytest.raises(IncidentError, match="already resolved"):
        incidents.resolve(fire, world["operator"])
    actions = [e.action for e in AuditEntry.query.filter_by(object_type="incident").order_by(AuditEntry.id)]
    assert actions == ["incident.open", "incident.update", "incident.resolve"]


def test_a_pool_scope_touches_only_customers_with_disks_there(world, auth, fixed_clock) -> None:
    acme_disk = world["acme_vm"].disks[0]
    acme_disk.source = "rbd:ssd/acme-web-1"  # acme's web-1 on the ssd pool; globex stays on "pool"
    db.session.commit()
    window = incidents.open_incident("maintenance", "ssd pool rebalance", world["operator"], pool="ssd",
                                     ends_at=START + timedelta(hours=3))
    assert incidents.affected_organisation_ids(window) == {world["acme"].id}
    lookalike = incidents.open_incident("maintenance", "s_d", world["operator"], pool="s_d",
                                        ends_at=START + timedelta(hours=3))
    assert incidents.affected_organisation_ids(lookalike) == set()  # "_" is not a wildcard
    auth.login(world["acme_admin"])
    page = auth.client.get("/status").get_data(as_text=True)
    assert "ssd pool rebalance" in page and "Affected: web-1 (pool ssd)" in page
    auth.logout()
    auth.login(world["globex_admin"])
    assert "ssd pool rebalance" not in auth.client.get("/status").get_data(as_text=True)


def _restore(vm, point, klass: str, **values) -> Restore:
    row = Restore(vm_id=vm.id, backup_point_id=point.id, kind="full", priority_class=klass,
                  job_id=f"restore-{vm.name}", bytes_total=values.pop("bytes_total", 0), **values)
    db.session.add(row)
    db.session.commit()
    return row


def positions(page: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-vm="([^"]+)" data-position="([^"]*)">', page))


def test_the_status_page_shows_each_tenants_own_queue_positions(world, auth) -> None:
    """A disaster's queue: running first, then by class, then by request time; positions count everyone."""
    incidents.open_incident("disaster", "Ceph cluster A lost", "system:disaster")
    shop2 = make_vm(world["globex"], "shop-2")
    _restore(shop2, make_point(shop2), "normal", state="running", started_at=clock.now(), bytes_total=4 << 30,
             bytes_done=1 << 30)
    shop1 = _restore(world["globex_vm"], world["globex_point"], "normal")
    staging = _restore(world["acme_staging"], make_point(world["acme_staging"]), "low")
    web1 = world["acme_restore"]  # critical, requested first

    auth.login(world["acme_admin"])
    page = auth.client.get("/status").get_data(as_text=True)
    assert positions(page) == {"web-1": "1", "staging-api": "3"}
    assert "shop-1" not in page and "shop-2" not in page
    auth.logout()
    auth.login(world["globex_admin"])
    page = auth.client.get("/status").get_data(as_text=True)
    assert positions(page) == {"shop-2": "", "shop-1": "2"}  # running, then behind acme's critical restore
    assert "web-1" not in page and "staging-api" not in page

    # The same answers as each restore's own page (portal.services.eta), one query instead of one per restore.
    for entry in incidents.queue_for(world["operator"]):
        single = eta.estimate(entry.restore)
        assert entry.position == single.position
        assert entry.seconds_left == single.seconds_left is None  # nothing measured yet: unknown, not guessed
    assert [e.restore.id for e in incidents.queue_for(world["operator"])][1:] == [web1.id, shop1.id, staging.id]

    partial = auth.client.get("/status?part=queue", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert partial.startswith('<section id="queue"') and 'hx-trigger="every 15s"' in partial


def test_operators_open_update_and_resolve_from_the_pages(world, auth, fixed_clock) -> None:
    auth.login(world["operator"])
    refused = auth.client.post("/manage/incidents", data={"kind": "maintenance", "title": "Pool work",
                                                          "scope": "pool", "pool": "pool"})
    assert refused.status_code == 422 and "needs an end" in refused.get_data(as_text=True)
    created = auth.client.post("/manage/incidents", data={
        "kind": "maintenance", "title": "Pool work", "scope": "organisations",
        "organisation_ids": [str(world["globex"].id)], "starts_at": "2026-12-02T22:00", "ends_at": "2026-12-03T02:00",
        "message": "Expect slower backups."})
    assert created.status_code == 303
    window = Incident.query.one()
    assert (window.starts_at, window.ends_at, window.organisation_ids) == (
        datetime(2026, 12, 2, 22, 0), datetime(2026, 12, 3, 2, 0), [world["globex"].id])
    detail = auth.client.get(created.headers["Location"]).get_data(as_text=True)
    assert "Globex" in detail and "Expect slower backups." in detail and "upcoming" in detail
    assert auth.client.post(f"/manage/incidents/{window.id}/updates", data={"message": ""}).status_code == 422
    assert auth.client.post(f"/manage/incidents/{window.id}/updates",
                            data={"message": "Moved to 23:00."}).status_code == 303
    auth.logout()

    auth.login(world["globex_admin"])
    assert "Pool work" in banner(auth.client)
    page = auth.client.get("/status").get_data(as_text=True)
    assert page.index("Moved to 23:00.") < page.index("Expect slower backups.")  # newest first
    auth.logout()

    auth.login(world["operator"])
    assert auth.client.post(f"/manage/incidents/{window.id}/resolve", data={"message": "Cancelled."}).status_code == 303
    assert auth.client.post(f"/manage/incidents/{window.id}/resolve").status_code == 409
    assert "Pool work" in auth.client.get("/manage/incidents").get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Incident, window.id).state == "resolved"
    assert {e.action for e in AuditEntry.query.all()} >= {"maintenance.announce", "incident.update",
                                                           "incident.resolve"}
