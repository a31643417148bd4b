"""Management pages: SLA tiers, customers' tiers (clamping, audit, notice), compliance, coverage, organisations,
inventory sync history, and the audit export's scoping."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from portal import clock
from portal.extensions import db
from portal.models import VM, AuditEntry, BackupPoint, InventorySync, Organisation, Policy, SlaTier
from portal.services import audit, tiers
from tests.fixtures.portal import make_org, make_tier, make_vm, notices

TIER = {"name": "Gold", "min_rpo_minutes": "30", "max_keep_hourly": "12", "max_keep_daily": "14",
        "max_keep_weekly": "8", "max_keep_monthly": "6", "restore_priority": "high", "rto_minutes": "120",
        "business_critical_included": "on"}
NOW = datetime(2024, 6, 1, 12, 0)


@pytest.fixture
def fixed_clock():
    clock.set_now(NOW)
    yield NOW
    clock.set_now(None)


# -- tiers -----------------------------------------------------------------------------------------------

def test_manager_creates_a_tier(client, auth, world) -> None:
    auth.login(world["manager"])
    done = client.post("/manage/tiers", data=TIER)
    assert done.status_code == 303
    tier = db.session.scalar(select(SlaTier).where(SlaTier.name == "Gold"))
    assert (tier.min_rpo_minutes, tier.max_keep_hourly) == (30, 12)
    assert (tier.restore_priority, tier.rto_minutes) == ("high", 120)
    assert tier.business_critical_included is True
    entry = AuditEntry.query.filter_by(action="tier.create").one()
    assert entry.actor == "manager@lifeboat.example" and entry.after["name"] == "Gold"
    page = client.get("/manage/tiers")
    assert b"Tier Gold created" in page.data and b"Gold" in page.data


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "", b"give the tier a name"),
    ("name", "x" * 81, b"at most 80 characters"),
    ("name", "Premium", b"another tier already has this name"),
    ("name", "premium", b"another tier already has this name"),
    ("min_rpo_minutes", "14", b"must be between 15 and 1440"),
    ("min_rpo_minutes", "1441", b"must be between 15 and 1440"),
    ("min_rpo_minutes", "fifteen", b"must be a whole number"),
    ("max_keep_daily", "-1", b"must be a whole number"),
    ("max_keep_weekly", "", b"must be a whole number"),
    ("rto_minutes", "1.5", b"must be a whole number"),
    ("restore_priority", "urgent", b"choose one of: critical, high, normal, low"),
])
def test_bad_tier_input_is_refused_and_nothing_saved(client, auth, world, field, value, message) -> None:
    auth.login(world["operator"])
    before = SlaTier.query.count()
    done = client.post("/manage/tiers", data={**TIER, field: value})
    assert done.status_code == 422
    assert message in done.data and b"Nothing was saved" in done.data
    assert SlaTier.query.count() == before and AuditEntry.query.count() == 0


def test_customers_cannot_manage_tiers(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    assert client.get("/manage/tiers").status_code == 403
    assert client.post("/manage/tiers", data=TIER).status_code == 403
    assert SlaTier.query.filter_by(name="Gold").count() == 0


def test_tier_names_render_inert(client, auth, world) -> None:
    auth.login(world["manager"])
    assert client.post("/manage/tiers", data={**TIER, "name": "<script>alert(1)</script>"}).status_code == 303
    page = client.get("/manage/tiers")
    assert b"<script>alert(1)</script>" not in page.data and b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.data


def test_editing_a_tier_clamps_every_organisation_on_it(client, auth, world, fixed_clock) -> None:
    vm = world["acme_vm"]
    policy = db.session.get(Policy, vm.id)
    policy.rpo_minutes, policy.keep_hourly = 15, 48
    db.session.commit()
    auth.login(world["manager"])
    done = client.post(f"/manage/tiers/{world['premium'].id}",
                       data={**TIER, "name": "Premium", "min_rpo_minutes": "60", "max_keep_hourly": "24"})
    assert done.status_code == 303
    db.session.expire_all()
    assert (policy.rpo_minutes, policy.keep_hourly) == (60, 24)
    update = AuditEntry.query.filter_by(action="tier.update").one()
    assert update.before["min_rpo_minutes"] == 15 and update.after["min_rpo_minutes"] == 60
    clamp = AuditEntry.query.filter_by(action="policy.clamp").one()
    assert clamp.object_id == vm.id and clamp.before == {"rpo_minutes": 15, "keep_hourly": 48}
    assert clamp.after == {"rpo_minutes": 60, "keep_hourly": 24}
    notice = notices(organisation_id=world["acme"].id).one()
    assert "2024-06-01" in notice.message and "web-1" in notice.message and "15 → 60" in notice.message
    assert notices(organisation_id=world["globex"].id).count() == 0  # not on this tier


def test_bad_tier_edit_changes_nothing(client, auth, world) -> None:
    auth.login(world["operator"])
    done = client.post(f"/manage/tiers/{world['premium'].id}", data={**TIER, "name": "Basic"})
    assert done.status_code == 422 and b"another tier already has this name" in done.data
    db.session.expire_all()
    assert db.session.get(SlaTier, world["premium"].id).name == "Premium"
    assert AuditEntry.query.count() == 0 and notices().count() == 0


# -- customers and tier changes --------------------------------------------------------------------------

def test_changing_a_customers_tier_clamps_audits_and_notifies(client, auth, world, fixed_clock) -> None:
    acme, basic = world["acme"], world["basic"]
    staging = db.session.get(Policy, world["acme_staging"].id)
    staging.business_critical, staging.keep_hourly = True, 10
    db.session.commit()
    auth.login(world["manager"])
    done = client.post(f"/manage/customers/{acme.id}/tier", data={"tier_id": str(basic.id)})
    assert done.status_code == 303
    db.session.expire_all()
    assert db.session.get(Organisation, acme.id).tier_id == basic.id
    web = db.session.get(Policy, world["acme_vm"].id)
    assert web.rpo_minutes == 1440 and web.keep_hourly == 0
    assert staging.business_critical is False and staging.rpo_minutes == 1440 and staging.keep_hourly == 0
    change = AuditEntry.query.filter_by(action="organisation.tier").one()
    assert change.before == {"tier_id": world["premium"].id, "tier": "Premium"}
    assert change.after == {"tier_id": basic.id, "tier": "Basic", "effective": "2024-06-01"}
    assert change.at == NOW and change.organisation_id == acme.id and change.actor == "manager@lifeboat.example"
    clamps = {e.object_label: e for e in AuditEntry.query.filter_by(action="policy.clamp")}
    assert set(clamps) == {"web-1", "staging-api"}
    assert clamps["staging-api"].before["business_critical"] is True
    assert clamps["staging-api"].after["business_critical"] is False
    notice = notices(organisation_id=acme.id, kind="tier.changed").one()
    assert "from Premium to Basic on 2024-06-01" in notice.message
    assert "staging-api" in notice.message and "business-critical True → False" in notice.message
    page = client.get("/manage/customers")
    assert b"is now on the Basic tier; 2 VM policies clamped" in page.data


def test_tier_change_that_clamps_nothing_still_tells_the_customer(client, auth, world) -> None:
    generous = make_tier(name="Unlimited", min_rpo_minutes=15, max_keep_hourly=100, max_keep_daily=100,
                         max_keep_weekly=100, max_keep_monthly=100)
    auth.login(world["operator"])
    assert client.post(f"/manage/customers/{world['acme'].id}/tier",
                       data={"tier_id": str(generous.id)}).status_code == 303
    assert AuditEntry.query.filter_by(action="policy.clamp").count() == 0
    assert "No VM policy needed changing" in notices().one().message


def test_tier_change_by_htmx_answers_the_row(client, auth, world) -> None:
    auth.login(world["manager"])
    done = client.post(f"/manage/customers/{world['acme'].id}/tier", data={"tier_id": str(world["basic"].id)},
                       headers={"HX-Request": "true"})
    assert done.status_code == 200
    assert f'id="org-{world["acme"].id}"'.encode() in done.data and b"now on the Basic tier" in done.data


@pytest.mark.parametrize("value", ["", "abc", "999999", "-1"])
def test_tier_change_to_an_unknown_tier_is_refused(client, auth, world, value) -> None:
    auth.login(world["manager"])
    done = client.post(f"/manage/customers/{world['acme'].id}/tier", data={"tier_id": value})
    assert done.status_code == 422 and b"Choose one of the tiers" in done.data
    db.session.expire_all()
    assert db.session.get(Organisation, world["acme"].id).tier_id == world["premium"].id
    assert AuditEntry.query.count() == 0 and notices().count() == 0


def test_manager_cannot_change_another_managers_customer(client, auth, world) -> None:
    auth.login(world["manager"])
    done = client.post(f"/manage/customers/{world['globex'].id}/tier", data={"tier_id": str(world["premium"].id)})
    assert done.status_code == 404
    db.session.expire_all()
    assert db.session.get(Organisation, world["globex"].id).tier_id == world["basic"].id


def test_customers_page_lists_the_managers_organisations_only(client, auth, world) -> None:
    auth.login(world["manager"])
    page = client.get("/manage/customers")
    assert b"Acme" in page.data and b"Globex" not in page.data
    auth.login(world["operator"])
    page = client.get("/manage/customers")
    assert b"Acme" in page.data and b"Globex" in page.data


def test_organisation_names_render_inert(client, auth, world) -> None:
    make_org("evil", name='<img src=x onerror="alert(1)">')
    auth.login(world["operator"])
    for url in ("/manage/customers", "/manage/organisations", "/manage/compliance"):
        page = client.get(url)
        assert b"<img src=x" not in page.data and b"&lt;img src=x" in page.data, url


# -- compliance ------------------------------------------------------------------------------------------

def _backup(vm: VM, minutes_ago: int, state: str = "ok") -> None:
    db.session.add(BackupPoint(vm_id=vm.id, revision=f"r{minutes_ago}-{state}",
                               created_at=clock.now() - timedelta(minutes=minutes_ago), state=state))
    db.session.commit()


def test_compliance_lists_vms_beyond_their_rpo(client, auth, world, fixed_clock) -> None:
    db.session.execute(update(BackupPoint).values(created_at=NOW - timedelta(days=10)))  # whatever world made
    _backup(world["acme_vm"], 30)  # RPO 120: fine
    _backup(world["acme_staging"], 300)  # RPO 120: missed
    _backup(world["acme_staging"], 10, state="damaged")  # a damaged backup does not count
    _backup(world["globex_vm"], 3000)
    quiet = make_vm(world["acme"], "never-backed-up", "development")
    excluded = make_vm(world["acme"], "scratch", "testing", excluded=True, exclusion_reason="scratch space")
    auth.login(world["manager"])
    page = client.get("/manage/compliance")
    assert page.status_code == 200
    text = page.data.decode()
    assert "staging-api" in text and quiet.name in text
    assert ">web-1<" not in text and excluded.name not in text
    assert "shop-1" not in text and "Globex" not in text
    misses = tiers.compliance(world["operator"])
    assert [m.vm.name for m in misses[world["globex"]]] == ["shop-1"]
    assert {m.vm.name: m.status.state for m in misses[world["acme"]]} == {"never-backed-up": "none",
                                                                          "staging-api": "missed"}


def test_compliance_runs_a_fixed_number_of_queries(app, world, fixed_clock) -> None:
    from sqlalchemy import event

    for n in range(30):
        vm = make_vm(world["acme"], f"bulk-{n}")
        db.session.add(BackupPoint(vm_id=vm.id, revision="r", created_at=NOW - timedelta(days=2)))
    db.session.commit()
    db.session.expire_all()
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        misses = tiers.compliance(world["operator"])
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert sum(len(m) for m in misses.values()) >= 30
    assert len(statements) <= 5, statements  # fixed for any number of VMs (one of them: the disks, for coverage)


def test_staff_pages_show_empty_states(client, auth, world) -> None:
    auth.login(world["operator"])
    assert b"No syncs yet" in client.get("/manage/syncs").data
    db.session.query(Policy).delete()
    db.session.commit()
    assert b"Every VM is within its RPO" in client.get("/manage/compliance").data


# -- coverage --------------------------------------------------------------------------------------------

def test_coverage_lists_vms_without_a_valid_policy(client, auth, world) -> None:
    acme = world["acme"]
    no_policy = VM(organisation=acme, name="no-policy", environment="production")
    db.session.add(no_policy)
    db.session.commit()
    make_vm(acme, "excluded-no-reason", "testing", excluded=True, exclusion_reason="  ")
    make_vm(acme, "excluded-with-reason", "testing", excluded=True, exclusion_reason="throw-away")
    make_vm(acme, "excluded-prod", "production", excluded=True, exclusion_reason="because")
    make_vm(acme, "too-many-keeps", keep_hourly=49)  # Premium allows 48
    make_vm(world["globex"], "globex-too-often", rpo_minutes=60)  # Basic: 1440 at best
    make_vm(world["globex"], "globex-critical", "staging", rpo_minutes=1440, business_critical=True)
    bare = make_org("bare")  # no tier: Bounds.of(None)
    make_vm(bare, "tierless", rpo_minutes=1440, keep_hourly=0, keep_weekly=0, keep_monthly=0)
    make_vm(bare, "tierless-hourly", rpo_minutes=1440, keep_hourly=1, keep_weekly=0, keep_monthly=0)

    auth.login(world["operator"])
    page = client.get("/manage/coverage")
    text = page.data.decode()
    for name, why in [("no-policy", "no backup policy"), ("excluded-no-reason", "excluded without a reason"),
                      ("excluded-prod", "production VM excluded"), ("too-many-keeps", "keep hourly 49 above"),
                      ("globex-too-often", "RPO 60 min outside 1440"),
                      ("globex-critical", "business-critical, which the tier does not include"),
                      ("tierless-hourly", "keep hourly 1 above the tier&#39;s 0")]:
        assert name in text and why in text, name
    for valid in ("excluded-with-reason", ">web-1<", "staging-api", ">shop-1<", ">tierless<"):
        assert valid not in text, valid
    auth.login(world["manager"])
    text = client.get("/manage/coverage").data.decode()
    assert "too-many-keeps" in text and "globex" not in text


def test_coverage_sql_agrees_with_the_python_rules(app, world) -> None:
    """The SQL filter (for pagination) and ``problems`` (for the reasons) must name the same VMs."""
    make_vm(world["acme"], "a", keep_weekly=9)
    make_vm(world["globex"], "b", rpo_minutes=14)
    make_vm(world["globex"], "c", rpo_minutes=1441)
    make_vm(world["acme"], "d", "development", rpo_minutes=15, business_critical=True)  # Premium allows it
    found = {vm.name for vm in db.session.scalars(tiers.coverage_query(world["operator"]))}
    every = db.session.scalars(select(VM)).all()
    assert found == {vm.name for vm in every if tiers.problems(vm)}
    assert found == {"a", "b", "c"}


def test_clamping_leaves_no_coverage_problem(app, world) -> None:
    make_vm(world["acme"], "greedy", rpo_minutes=15, keep_hourly=48, keep_monthly=6)
    tiers.assign(world["operator"], world["acme"], world["basic"])
    assert list(db.session.scalars(tiers.coverage_query(world["operator"]))) == []


# -- operators' pages ------------------------------------------------------------------------------------

def test_organisations_page_counts(client, auth, world) -> None:
    gone = make_vm(world["acme"], "gone")
    gone.missing_since = datetime(2024, 1, 1)
    db.session.commit()
    auth.login(world["operator"])
    page = client.get("/manage/organisations")
    assert page.status_code == 200
    row = "".join(page.data.decode().split("<td>Acme")[1].split("</tr>")[0].split())
    # slug, tier, manager, 3 VMs, 1 not seen, 2 active users
    assert "<td>acme</td><td>Premium</td><td>manager@lifeboat.example</td>" in row
    assert "<td>3</td><td>1</td><td>2</td>" in row, row
    auth.login(world["manager"])
    assert client.get("/manage/organisations").status_code == 403


def test_sync_history_shows_applied_and_refused(client, auth, world) -> None:
    db.session.add_all([
        InventorySync(scope="acme", status="applied", actor="cli", created_at=NOW,
                      summary={"added": ["acme/new-1"], "updated": [], "missing": ["acme/old-1"], "returned": []}),
        InventorySync(scope="all", status="refused", actor="cli", created_at=NOW + timedelta(minutes=1),
                      reason="the feed would mark 9 of 10 known VMs in scope 'all' as missing",
                      summary={"would_mark_missing": ["acme/<b>x</b>"]}),
    ])
    db.session.commit()
    auth.login(world["operator"])
    text = client.get("/manage/syncs").data.decode()
    assert "applied" in text and "refused" in text and "acme/new-1" in text and "acme/old-1" in text
    assert "would mark 9 of 10 known VMs" in text and "&lt;b&gt;x&lt;/b&gt;" in text
    assert text.index("refused") < text.index("acme/new-1")  # newest first
    only = client.get("/manage/syncs?status=refused").data.decode()
    assert "acme/new-1" not in only and "would mark" in only
    assert client.get("/manage/syncs?status=nonsense").status_code == 400
    assert client.get("/manage/syncs?page=0").status_code == 400


# -- audit export ----------------------------------------------------------------------------------------

@pytest.fixture
def audited(world):
    audit.record(world["acme_admin"], "policy.update", world["acme_vm"], before={"rpo_minutes": 120},
                 after={"rpo_minutes": 60})
    audit.record(world["globex_admin"], "policy.update", world["globex_vm"])
    audit.record(world["operator"], "tier.create", world["basic"])  # provider-wide: no organisation
    audit.record(world["acme_admin"], "user.create", world["acme_member"], label="=HYPERLINK(\"http://x\")")
    db.session.commit()
    return world


def _csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


@pytest.mark.parametrize(("role", "labels"), [
    ("acme_member", {"web-1", "'=HYPERLINK(\"http://x\")"}),
    ("acme_admin", {"web-1", "'=HYPERLINK(\"http://x\")"}),
    ("globex_admin", {"shop-1"}),
    ("manager", {"web-1", "'=HYPERLINK(\"http://x\")"}),
    ("operator", {"web-1", "shop-1", "Basic", "'=HYPERLINK(\"http://x\")"}),
])
def test_audit_csv_is_scoped_like_the_audit_page(client, auth, audited, role, labels) -> None:
    auth.login(audited[role])
    done = client.get("/audit.csv")
    assert done.status_code == 200 and done.mimetype == "text/csv"
    assert "attachment" in done.headers["Content-Disposition"]
    assert {row["object"] for row in _csv(done.data)} == labels


def test_audit_csv_values(client, auth, audited) -> None:
    auth.login(audited["acme_admin"])
    rows = _csv(client.get("/audit.csv?action=policy.update").data)
    assert len(rows) == 1
    assert rows[0]["actor"] == "admin@acme.example" and rows[0]["before"] == '{"rpo_minutes": 120}'
    assert rows[0]["after"] == '{"rpo_minutes": 60}' and rows[0]["at"].endswith("Z")


def test_audit_json_is_scoped_and_filtered(client, auth, audited) -> None:
    auth.login(audited["globex_admin"])
    body = client.get("/audit.json").get_json()
    assert [item["object"]["label"] for item in body["items"]] == ["shop-1"] and body["next"] is None
    auth.login(audited["operator"])
    body = client.get("/audit.json?action=policy.update").get_json()
    assert {item["object"]["label"] for item in body["items"]} == {"web-1", "shop-1"}
    item = next(i for i in body["items"] if i["object"]["label"] == "web-1")
    assert set(item) >= {"actor", "action", "object", "before", "after", "at"}
    assert item["before"] == {"rpo_minutes": 120} and item["object"]["type"] == "vm"
    body = client.get(f"/audit.json?organisation={audited['globex'].id}").get_json()
    assert [item["object"]["label"] for item in body["items"]] == ["shop-1"]


def test_audit_export_filters_by_date_and_refuses_nonsense(client, auth, audited) -> None:
    auth.login(audited["operator"])
    today = clock.now().date()
    assert len(client.get(f"/audit.json?since={today}&until={today}").get_json()["items"]) == 4
    assert client.get(f"/audit.json?since={today + timedelta(days=1)}").get_json()["items"] == []
    for query in ("since=yesterday", "until=2024-13-01", "organisation=abc", "since=2024-1-1"):
        assert client.get(f"/audit.csv?{query}").status_code == 400, query
    assert client.get("/audit.json?since=yesterday").status_code == 400
    auth.login(audited["acme_admin"])
    assert client.get(f"/audit.csv?organisation={audited['globex'].id}").status_code == 404
    assert client.get("/audit.json?organisation=999999").status_code == 404
