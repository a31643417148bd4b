"""Re-ranking queued restores (issue 11: 1, 2): changing a tier's class, an organisation's tier or a VM's
business-critical flag moves the waiting jobs to their new class's queue, in the order the queue positions
say; a real worker then starts them in exactly that order (real Redis, real restores)."""

from __future__ import annotations

from typing import Any

from rq import Queue

from portal.extensions import db
from portal.models import AuditEntry, Restore
from portal.services import eta, policies, runs, tiers
from portal.services.queue import QUEUES
from tests.fixtures.jobs import run_jobs
from tests.fixtures.portal import make_org, make_tier, make_vm

from .helpers import make_point_for
from .test_jobs import backed_up


def _positions() -> dict[str, int | None]:
    return {db.session.get(Restore, rid).vm.name: est.position for rid, est in eta.queue().items()}


def _waiting(connection: Any) -> dict[str, list[str]]:
    return {name: Queue(name, connection=connection).get_job_ids() for name in QUEUES if name.startswith("restore")}


def _tier_form(tier: Any, **changes: Any) -> dict[str, Any]:
    return {**{field: str(value) for field, value in tiers.snapshot(tier).items()}, **changes}


def test_tier_and_flag_changes_rerank_waiting_restores_and_workers_follow(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)  # acme web-1: production on Premium (critical)
    business = make_tier(name="Business", restore_priority="high", rto_minutes=240)
    initech = make_org("initech", business)
    app_vm = make_vm(initech, "app-1")  # production on Business: high
    staging, shop = world["acme_staging"], world["globex_vm"]  # staging on Premium: high; Basic: normal
    for vm in (staging, shop, app_vm):  # file disks restore into RESTORE_ROOT (rbd ones would need Ceph)
        vm.disks[0].source = f"file:/nonexistent/{vm.name}.img"
    db.session.commit()
    manager, operator = world["manager"], world["operator"]
    requested = {vm.name: runs.request_restore(operator, vm, make_point_for(vm, point) if vm is not file_vm else
                                               point, "full")
                 for vm in (shop, staging, app_vm, file_vm)}  # in this order of request
    assert _positions() == {"web-1": 1, "staging-api": 2, "app-1": 3, "shop-1": 4}

    # The account manager sets Business to low: app-1 leaves restore-high for restore-low.
    tiers.update(manager, business, tiers.parse_form(_tier_form(business, restore_priority="low")))
    assert _positions() == {"web-1": 1, "staging-api": 2, "shop-1": 3, "app-1": 4}
    assert _waiting(queues)["restore-low"] == [requested["app-1"].job_id]
    assert requested["app-1"].job_id not in _waiting(queues)["restore-high"]

    # Globex moves to Premium: shop-1 becomes critical and, requested first, goes ahead of web-1.
    tiers.assign(manager, world["globex"], world["premium"])
    assert _positions() == {"shop-1": 1, "web-1": 2, "staging-api": 3, "app-1": 4}
    assert _waiting(queues)["restore-critical"] == [requested["shop-1"].job_id, requested["web-1"].job_id]

    # The customer marks staging business-critical (Premium includes it): Premium's class, by request time.
    policies.update(world["acme_admin"], staging, {"business_critical": True})
    assert _positions() == {"shop-1": 1, "staging-api": 2, "web-1": 3, "app-1": 4}
    assert _waiting(queues)["restore-critical"] == [requested[n].job_id for n in ("shop-1", "staging-api", "web-1")]
    assert _waiting(queues)["restore-high"] == []
    staging_row = db.session.get(Restore, requested["staging-api"].id)
    assert (staging_row.priority_class, staging_row.priority_reason) == (
        "critical", "staging VM marked business-critical: the Premium tier's class is critical")
    reranks = AuditEntry.query.filter_by(action="restore.rerank").order_by(AuditEntry.id).all()
    assert [(e.object_label, e.before["class"], e.after["class"]) for e in reranks] == [
        ("app-1", "high", "low"), ("shop-1", "normal", "critical"), ("staging-api", "high", "critical")]

    expected = sorted(_positions(), key=lambda name: _positions()[name] or 0)
    run_jobs(queues)  # one real worker, taking the queues in priority order
    db.session.expire_all()
    rows = [db.session.get(Restore, r.id) for r in requested.values()]
    assert all(r.state == "done" for r in rows), [(r.vm.name, r.error) for r in rows]
    assert [r.vm.name for r in sorted(rows, key=lambda r: r.started_at)] == expected


def test_a_restore_a_worker_already_took_is_not_queued_again(file_vm, queues, world) -> None:
    point = backed_up(file_vm, queues, world)
    staging = world["acme_staging"]
    staging.disks[0].source = "file:/nonexistent/staging.img"
    restore = runs.request_restore(world["acme_admin"], staging, make_point_for(staging, point), "full")
    Queue("restore-high", connection=queues).remove(restore.job_id)  # as a worker's pop leaves it
    policies.update(world["acme_admin"], staging, {"business_critical": True})
    assert db.session.get(Restore, restore.id).priority_class == "critical"  # the row says what it is now
    assert all(restore.job_id not in ids for ids in _waiting(queues).values())  # and nothing runs it twice
