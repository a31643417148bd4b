"""Restore priority (issue 11: 1): the class is a function of the tier's class, the VM's environment and the
business-critical flag (README, "Restore priority"), shown with its reason wherever the class is shown."""

from __future__ import annotations

from typing import Any

import pytest

from portal import clock
from portal.services import disaster
from portal.services.priority import CLASSES, classify, priority_of
from tests.fixtures.portal import make_org, make_point, make_tier, make_vm


@pytest.mark.parametrize("tier_class", CLASSES)
def test_production_vms_take_the_tiers_class_whatever_its_rto(app, tier_class: str) -> None:
    for rto in (0, 60):
        tier = make_tier(name=f"T-{tier_class}-{rto}", restore_priority=tier_class, rto_minutes=rto)
        assert classify(tier, "production", False).klass == tier_class
        assert classify(tier, "production", True).klass == tier_class  # the flag adds nothing to production


@pytest.mark.parametrize(("tier_class", "below"), [("critical", "high"), ("high", "normal"), ("normal", "low"),
                                                    ("low", "low")])
def test_other_environments_get_the_class_below_unless_marked_where_the_tier_allows(
        app, tier_class: str, below: str) -> None:
    allows = make_tier(name=f"A-{tier_class}", restore_priority=tier_class, business_critical_included=True)
    forbids = make_tier(name=f"F-{tier_class}", restore_priority=tier_class, business_critical_included=False)
    for environment in ("staging", "development"):
        assert classify(allows, environment, False).klass == below
        assert classify(allows, environment, True).klass == tier_class
        assert classify(forbids, environment, False).klass == below
        refused = classify(forbids, environment, True)
        assert refused.klass == below and "does not include business-critical" in refused.reason


def test_without_a_tier_production_is_normal_and_the_rest_low(app) -> None:
    assert classify(None, "production", False).klass == "normal"
    assert classify(None, "staging", True).klass == "low"


def test_a_business_tier_set_to_low_is_not_critical_anywhere(world: dict[str, Any]) -> None:
    """The defect: every production VM on a tier with an RTO was critical, whatever the tier's class."""
    business = make_tier(name="Business", restore_priority="low", rto_minutes=240)
    org = make_org("initech", business)
    app_vm, stage = make_vm(org, "app-1"), make_vm(org, "stage-1", "staging", business_critical=True)
    assert (priority_of(app_vm).klass, priority_of(stage).klass) == ("low", "low")
    assert "Business tier's class is low" in priority_of(app_vm).reason
    make_point(app_vm), make_point(stage)
    plan = disaster.plan(disaster.Scope.parse(f"organisation:{org.id}"), clock.now(), 1)
    assert {e.vm.name: e.priority.klass for e in plan.entries} == {"app-1": "low", "stage-1": "low"}


def test_the_reason_is_shown_on_the_vm_page_and_the_disaster_plan(world: dict[str, Any], auth) -> None:
    staging = world["acme_staging"]
    auth.login(world["acme_admin"])
    page = auth.client.get(f"/vms/{staging.id}").get_data(as_text=True)
    assert "Restore priority: <strong>high</strong> — staging VM: one class below the Premium tier&#39;s critical" \
        in page
    make_point(staging)
    auth.logout()
    auth.login(world["operator"])
    plan = auth.client.get("/operations/disaster?scope=all").get_data(as_text=True)
    assert '<small class="reason">staging VM: one class below the Premium tier&#39;s critical</small>' in plan
    assert '<small class="reason">production VM: the Basic tier&#39;s class is normal</small>' in plan
