# ruff: noqa: F811 - the fleet fixtures of test_disaster are imported and used by name
"""Disaster mode's instant strategy: the plan (usable first, then hydration; copies where instant cannot work),
its projection (fixed speeds, exact times), starting it onto the queues (real Redis), the board, the customers'
status page and the fleet RTO with both strategies. The restores themselves run on real Ceph:
tests/ceph/test_instant_disaster.py."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from rq import Queue

from portal.extensions import db
from portal.models import DisasterRestore, Restore
from portal.services import disaster, queue, runs, schedule
from portal.services.disaster import DisasterError, Scope, Speeds

from .test_disaster import MiB, T, fixed_clock, fleet  # noqa: F401 - fixtures used by name

SOURCE = "http://127.0.0.1:9/lifeboat"  # never contacted: no job runs here


def test_instant_plan_makes_every_vm_usable_first_then_hydrates_in_order(fleet) -> None:
    measured = Speeds(copy=100 * MiB, hydration=50 * MiB, usable=1.0)
    plan = disaster.plan(Scope("all"), T, workers=2, strategy="instant", measured=measured)
    assert [e.vm.name for e in plan.entries] == ["app-1", "db-1", "web-1", "staging-api", "shop-1"]
    methods = {e.vm.name: (e.method, e.fallback) for e in plan.entries}
    assert methods["app-1"][0] == "copy" and "RBD image" in methods["app-1"][1]  # its disk is a file
    assert {name for name, (method, _) in methods.items() if method == "instant"} == {
        "db-1", "web-1", "staging-api", "shop-1"}
    # Usable steps first, 1 s each on 2 workers: db-1, web-1 at 1 s; staging-api, shop-1 at 2 s. Then in plan
    # order as workers come free at 2 s: app-1 copied (600 MiB at 100 MiB/s: 2-8 s), db-1 hydrated (200 MiB at
    # 50 MiB/s: 2-6 s), web-1 (300 MiB: 6-12 s), staging-api (100 MiB: 8-10 s), shop-1 (100 MiB: 10-12 s).
    assert [e.usable_seconds for e in plan.entries] == [8.0, 1.0, 1.0, 2.0, 2.0]
    assert [e.finish_seconds for e in plan.entries] == [8.0, 6.0, 12.0, 10.0, 12.0]
    groups = [(g.klass, g.tier, g.usable_seconds, g.finish_seconds, g.meets_rto) for g in plan.groups]
    assert groups == [("critical", "Gold", 8.0, 8.0, True), ("critical", "Premium", 2.0, 12.0, True),
                      ("normal", "Basic", 2.0, 12.0, None)]
    assert plan.usable_total_seconds == 8.0 and plan.total_seconds == 12.0
    assert [e.vm.name for e in plan.copies] == ["app-1"]
    # The copy strategy of the same fleet: the existing projection, usable only when copied.
    copy = disaster.plan(Scope("all"), T, workers=2, measured=measured)
    assert [e.method for e in copy.entries] == ["copy"] * 5 and not copy.copies
    assert [e.usable_seconds for e in copy.entries] == [e.finish_seconds for e in copy.entries] == \
        [6.0, 2.0, 5.0, 6.0, 7.0]


def test_instant_times_are_unknown_until_measured(fleet) -> None:
    plan = disaster.plan(Scope("all"), T, workers=2, strategy="instant",
                         measured=Speeds(copy=100 * MiB, hydration=None, usable=None))
    assert all(e.usable_seconds is None and e.finish_seconds is None for e in plan.entries)
    half = disaster.plan(Scope("all"), T, workers=2, strategy="instant",
                         measured=Speeds(copy=100 * MiB, hydration=None, usable=0.5))
    assert [e.usable_seconds for e in half.entries][1:] == [0.5, 0.5, 1.0, 1.0]  # usable: known
    assert all(e.finish_seconds is None for e in half.entries)  # hydration: not measured
    with pytest.raises(DisasterError, match="strategy"):
        disaster.plan(Scope("all"), T, workers=2, strategy="teleport")


def _measured_instant(fleet: dict[str, Any]) -> None:
    """One finished instant restore: usable after 0.5 s, 100 MiB hydrated in 2 s; one full restore, 100 MiB/s."""
    point = fleet["points"]["web_newer"]
    db.session.add_all([
        Restore(vm_id=fleet["acme_web"].id, backup_point_id=point.id, kind="instant", state="done",
                started_at=T - timedelta(seconds=10), usable_at=T - timedelta(seconds=9.5),
                finished_at=T - timedelta(seconds=7.5), bytes_total=100 * MiB, report={"usable_seconds": 0.5}),
        Restore(vm_id=fleet["acme_web"].id, backup_point_id=point.id, kind="full", state="done",
                started_at=T - timedelta(seconds=10), finished_at=T, bytes_total=1000 * MiB)])
    db.session.commit()


def test_speeds_are_measured_on_recent_restores(fleet) -> None:
    assert disaster.speeds() == Speeds(None, None, None)
    _measured_instant(fleet)
    assert disaster.speeds() == Speeds(100 * MiB, 50 * MiB, 0.5)


def test_planner_page_offers_instant_and_says_per_vm_how(fleet, client, auth, app) -> None:
    auth.login(fleet["operator"])
    page = client.get("/operations/disaster").data.decode()
    assert '<option value="instant"' in page
    page = client.get("/operations/disaster?scope=all&at=2026-11-20T12:00&workers=2&strategy=instant").data.decode()
    assert 'data-strategy="instant"' in page and 'name="strategy" value="instant"' in page
    row = re.search(r'<tr data-vm="app-1">.*?</tr>', page, re.S)
    assert row and 'data-method="copy"' in row.group(0) and "RBD image" in row.group(0)
    assert "a time that cannot be known yet (no instant restore measured here yet)" in page
    assert "cannot start" in page  # INSTANT_SOURCE_URL is not set
    refused = client.post("/operations/disaster", data={"scope": "all", "at": "2026-11-20T12:00", "workers": "2",
                                                        "strategy": "instant"})
    assert refused.status_code == 422 and b"INSTANT_SOURCE_URL" in refused.data
    _measured_instant(fleet)
    app.config["INSTANT_SOURCE_URL"] = SOURCE
    page = client.get("/operations/disaster?scope=all&at=2026-11-20T12:00&workers=2&strategy=instant").data.decode()
    assert "cannot start" not in page and "(0.5 s per VM)" in page and "50.0 MiB/s per worker" in page
    usable = re.search(r'<tr data-class="critical"><td>critical</td><td>Premium</td>.*?</tr>', page, re.S)
    assert usable and '<td data-usable>1.0 s</td>' in usable.group(0)  # 0.5 s each, 2 workers: 4 VMs by 1 s
    bad = client.get("/operations/disaster?scope=all&workers=2&strategy=teleport")
    assert bad.status_code == 400 and b"strategy" in bad.data


def test_an_instant_run_queues_every_usable_step_before_any_copy_or_hydration(fleet, queues, app) -> None:
    app.config["INSTANT_SOURCE_URL"] = SOURCE
    run = disaster.start(fleet["operator"], Scope("all"), T, workers=2, strategy="instant")
    assert run.summary["strategy"] == "instant"
    assert [(c["name"], "RBD image" in c["reason"]) for c in run.summary["copies"]] == [("app-1", True)]
    links = db.session.query(DisasterRestore).filter_by(run_id=run.id).order_by(DisasterRestore.position).all()
    restores = [db.session.get(Restore, link.restore_id) for link in links]
    assert [(r.vm.name, r.kind) for r in restores] == [("app-1", "full"), ("db-1", "instant"), ("web-1", "instant"),
                                                       ("staging-api", "instant"), ("shop-1", "instant")]
    instant = [r for r in restores if r.kind == "instant"]
    assert all(r.target == {"type": "new", "usable_first": True} and r.state == "queued" for r in instant)
    # restore-usable is the first queue workers take: every usable step, in plan order, before anything else
    assert queue.QUEUES[0] == "restore-usable"
    assert Queue("restore-usable", connection=queues).get_job_ids() == [r.job_id for r in instant]
    assert Queue("restore-critical", connection=queues).get_job_ids() == [restores[0].job_id]
    assert Queue("restore-normal", connection=queues).get_job_ids() == []
    # Lost from Redis, a usable step goes back onto restore-usable (the reconciler asks the row where).
    Queue("restore-usable", connection=queues).empty()
    result = schedule.TickResult()
    schedule.reconcile(result)
    assert Queue("restore-usable", connection=queues).get_job_ids() == [r.job_id for r in instant]
    # Once usable, the row waits for its hydration job on its class's queue; it can no longer be cancelled
    # (a VM may run from the image); a restore not usable yet can.
    shop = instant[-1]
    shop.usable_at, shop.job_id = T, f"restore-{shop.id}-hydrate"
    db.session.commit()
    assert queue.queue_of(shop) == "restore-normal"
    assert not runs.cancel_restore(fleet["operator"], shop)
    assert runs.cancel_restore(fleet["operator"], instant[0])


def test_board_status_page_and_fleet_rto_show_usable_and_hydrated(fleet, queues, app, client, auth) -> None:
    _measured_instant(fleet)
    app.config["INSTANT_SOURCE_URL"] = SOURCE
    run = disaster.start(fleet["operator"], Scope("all"), T, workers=2, strategy="instant")
    restores = {r.vm.name: r for _, r in disaster.restores_of(run)}
    # db-1 and web-1 (acme, critical) are usable, hydration queued; staging-api (acme) is not usable yet.
    for name, seconds in (("db-1", 1), ("web-1", 2)):
        restores[name].usable_at = T + timedelta(seconds=seconds)
        restores[name].phase = "usable; hydration queued"
    db.session.commit()
    auth.login(fleet["operator"])
    board = re.sub(r">\s+<", "><", client.get(f"/operations/disaster/{run.id}").data.decode())
    assert "instant strategy" in board and "data-copies" in board and "app-1: copy restore" in board
    critical = re.findall(r'<tr data-class="critical">.*?</tr>', board)[0]
    # critical: app-1 (copy, queued), db-1, web-1, staging-api: 2 of 4 usable, the rest projected
    assert 'data-usable="2">2 of 4, all by' in critical and "Hydrated at" in board
    assert "usable; hydration queued" in board

    auth.login(fleet["acme_admin"])
    status = re.sub(r">\s+<", "><", client.get("/status").data.decode())
    table = re.search(r'<table class="disaster-classes">.*?</table>', status).group(0)
    assert '<tr data-class="critical"><td>critical</td><td>3</td><td data-usable="2">2 of 3, all expected by' in table
    assert "normal" not in table  # globex's shop-1 is not theirs
    restores["staging-api"].usable_at = T + timedelta(seconds=3)
    db.session.commit()
    status = re.sub(r">\s+<", "><", client.get("/status").data.decode())
    table = re.search(r"<table class=\"disaster-classes\">.*?</table>", status).group(0)
    assert 'data-usable="3">3 of 3, since 12:00:03 UTC' in table, table
    auth.login(fleet["globex_admin"])
    theirs = re.sub(r">\s+<", "><", client.get("/status").data.decode())
    table = re.search(r'<table class="disaster-classes">.*?</table>', theirs).group(0)
    assert '<tr data-class="normal"><td>normal</td><td>1</td><td data-usable="0">0 of 1' in table
    assert "critical" not in table

    auth.login(fleet["operator"])
    drills = re.sub(r">\s+<", "><", client.get("/operations/drills").data.decode())
    assert "Instant strategy" in drills
    one = re.search(r'<tr data-workers="1">.*?</tr>', drills).group(0)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", one)
    assert cells[0] == "1" and all(c != "unknown" for c in cells)
    speed, projections, _ = disaster.fleet_rto(2)
    first = projections[0]
    assert first.usable_seconds is not None and first.hydrated_seconds is not None
    assert first.usable_seconds < first.total_seconds  # usable before a copy of everything would be back
