"""Per-VM policies: within the tier, audited; outside it, refused with a message and nothing saved."""

from __future__ import annotations

from portal.extensions import db
from portal.models import AuditEntry, Policy

VALID = {"rpo_minutes": "30", "keep_hourly": "24", "keep_daily": "7", "keep_weekly": "4", "keep_monthly": "3",
         "pre_hook": "", "post_hook": ""}


def test_customer_admin_saves_a_policy_within_the_tier(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    vm = world["acme_vm"]
    done = client.post(f"/vms/{vm.id}/policy", data=VALID)
    assert done.status_code == 200 and b"Policy saved" in done.data
    db.session.expire_all()
    assert db.session.get(Policy, vm.id).rpo_minutes == 30
    entry = AuditEntry.query.filter_by(action="policy.update").one()
    assert entry.actor == "admin@acme.example" and entry.before["rpo_minutes"] == 120
    assert entry.after["rpo_minutes"] == 30 and entry.organisation_id == world["acme"].id


def test_values_outside_the_tier_are_refused_and_nothing_is_saved(client, auth, world) -> None:
    auth.login(world["globex_admin"])
    vm = world["globex_vm"]  # Basic tier: RPO 24 h at best, no hourly keeps
    done = client.post(f"/vms/{vm.id}/policy", data={**VALID, "rpo_minutes": "60", "keep_hourly": "5"})
    assert done.status_code == 422
    assert b"your tier&#39;s finest RPO is 1440 minutes" in done.data
    assert b"Nothing was saved" in done.data
    db.session.expire_all()
    assert db.session.get(Policy, vm.id).rpo_minutes == 1440
    assert AuditEntry.query.count() == 0


def test_wrong_types_are_refused(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    done = client.post(f"/vms/{world['acme_vm'].id}/policy", data={**VALID, "rpo_minutes": "ten"})
    assert done.status_code == 422 and b"whole number" in done.data


def test_production_cannot_be_excluded_and_exclusion_needs_a_reason(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    staging = world["acme_staging"]
    no_reason = client.post(f"/vms/{staging.id}/policy", data={**VALID, "excluded": "on"})
    assert no_reason.status_code == 422 and b"say why" in no_reason.data
    ok = client.post(f"/vms/{staging.id}/policy", data={**VALID, "excluded": "on", "exclusion_reason": "scratch"})
    assert ok.status_code == 200
    from portal.services import policies

    try:
        policies.update(world["acme_admin"], world["acme_vm"], {"excluded": True, "exclusion_reason": "x"})
    except policies.PolicyError as exc:
        assert "production VMs cannot be excluded" in str(exc)
    else:
        raise AssertionError("a production VM was excluded")


def test_business_critical_needs_a_tier_that_includes_it(client, auth, world) -> None:
    from .conftest import make_vm

    dev_box = make_vm(world["globex"], "dev-box", "development", rpo_minutes=1440)
    auth.login(world["globex_admin"])
    refused = client.post(f"/vms/{dev_box.id}/policy", data={**VALID, "rpo_minutes": "1440", "keep_hourly": "0",
                                                             "keep_monthly": "1", "business_critical": "on"})
    assert refused.status_code == 422 and b"does not include business-critical" in refused.data
    auth.logout()
    auth.login(world["acme_admin"])
    marked = client.post(f"/vms/{world['acme_staging'].id}/policy", data={**VALID, "business_critical": "on"})
    assert marked.status_code == 200
    page = client.get("/").data.decode()
    # the staging VM now restores in its tier's class (Premium: critical), no longer the class below it
    assert "staging VM marked business-critical: the Premium tier&#39;s class is critical\">critical" in page


def test_members_cannot_edit_policies(client, auth, world) -> None:
    auth.login(world["acme_member"])
    assert client.post(f"/vms/{world['acme_vm'].id}/policy", data=VALID).status_code == 403
