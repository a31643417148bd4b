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
    from tests.fixtures.portal import make_vm

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


# -- the form offers only what the tier allows (issue 11: 12) ----------------------------------------------

def test_the_form_offers_only_the_rpos_the_tier_allows_and_no_refused_checkbox(client, auth, world) -> None:
    import re

    from tests.fixtures.portal import make_vm

    dev_box = make_vm(world["globex"], "dev-box", "development", rpo_minutes=1440)
    auth.login(world["globex_admin"])
    page = client.get(f"/vms/{dev_box.id}").get_data(as_text=True)
    assert re.findall(r'<option value="(\d+)"', page.split('name="rpo_minutes"', 1)[1].split("</select>")[0]) == [
        "1440"]  # Basic: 24 h is the only RPO, a choice of one, not a free field reading "1440–1440"
    assert 'name="business_critical"' not in page  # Basic does not include the marking: no box to refuse
    assert "Keep hourly: none" in page and 'name="keep_hourly" value="0"' in page  # Basic keeps no hourly
    assert 'name="excluded"' in page  # what the tier does allow for a development VM stays

    # Saving the form as shown works; a crafted business-critical is still refused.
    shown = {"rpo_minutes": "1440", "keep_hourly": "0", "keep_daily": "7", "keep_weekly": "4", "keep_monthly": "1",
             "pre_hook": "", "post_hook": ""}
    assert client.post(f"/vms/{dev_box.id}/policy", data=shown).status_code == 200
    assert client.post(f"/vms/{dev_box.id}/policy", data={**shown, "business_critical": "on"}).status_code == 422
    auth.logout()

    auth.login(world["acme_admin"])  # Premium: 15 min and up, and the box for a staging VM
    page = client.get(f"/vms/{world['acme_staging'].id}").get_data(as_text=True)
    options = re.findall(r'<option value="(\d+)"', page.split('name="rpo_minutes"', 1)[1].split("</select>")[0])
    assert options[0] == "15" and options[-1] == "1440" and "120" in options  # its current RPO selected
    assert '<option value="120" selected>2 h</option>' in page
    assert 'name="business_critical"' in page


def test_a_flag_the_tier_no_longer_offers_is_kept_when_the_form_is_saved(client, auth, world) -> None:
    """No checkbox is shown; an absent box is not an unticked one, so saving other fields keeps the flag."""
    from tests.fixtures.portal import make_vm

    dev_box = make_vm(world["globex"], "dev-box", "development", rpo_minutes=1440, business_critical=True)
    auth.login(world["globex_admin"])
    shown = {"rpo_minutes": "1440", "keep_hourly": "0", "keep_daily": "5", "keep_weekly": "4", "keep_monthly": "1",
             "pre_hook": "", "post_hook": ""}
    assert client.post(f"/vms/{dev_box.id}/policy", data=shown).status_code == 200
    db.session.expire_all()
    policy = db.session.get(Policy, dev_box.id)
    assert (policy.keep_daily, policy.business_critical) == (5, True)


# -- saving refreshes the priority line (issue 11: 5) ------------------------------------------------------

def test_saving_the_policy_by_htmx_also_swaps_the_priority_line(client, auth, world) -> None:
    staging = world["acme_staging"]
    auth.login(world["acme_admin"])
    headers = {"HX-Request": "true", "HX-Target": "policy"}
    marked = client.post(f"/vms/{staging.id}/policy", data={**VALID, "business_critical": "on"}, headers=headers)
    body = marked.get_data(as_text=True)
    assert marked.status_code == 200 and body.lstrip().startswith('<section id="policy">')
    assert ('<span id="priority" hx-swap-oob="true">Restore priority: <strong>critical</strong> — staging VM marked '
            "business-critical: the Premium tier&#39;s class is critical.</span>") in body
    unmarked = client.post(f"/vms/{staging.id}/policy", data=VALID, headers=headers).get_data(as_text=True)
    assert '<span id="priority" hx-swap-oob="true">Restore priority: <strong>high</strong>' in unmarked
