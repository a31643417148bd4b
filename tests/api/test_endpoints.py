"""Each endpoint's behaviour: VMs, policies within the tier, backup points (pages, protect, deletion with grace
and undo), files inside a backup, restores (create, follow, cancel, download), audit, tiers, inventory, and
JSON errors everywhere under /api/v1."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest
from flask import current_app

from portal.extensions import db
from portal.models import VM, AuditEntry, BackupPoint, Policy, Restore
from portal.services import tokens
from storage.repository import Repository
from tests.fixtures.jobs import run_jobs
from tests.fixtures.portal import make_point, make_vm
from tests.jobs import images_available
from tests.jobs.test_jobs import backed_up

from .conftest import make_token

needs_images = pytest.mark.skipif(not images_available(), reason="needs sfdisk and mkfs.ext4 (fdisk, e2fsprogs)")


def H(user, scopes=tokens.SCOPES, **options) -> dict[str, str]:  # noqa: N802 - reads like a header
    return {"Authorization": f"Bearer {make_token(user, scopes, **options)}"}


# -- VMs and policies -------------------------------------------------------------------------------------

def test_vm_details_have_environment_policy_and_priority(client, world) -> None:
    vm = world["acme_staging"]
    body = client.get(f"/api/v1/vms/{vm.id}", headers=H(world["acme_member"])).json
    assert body["environment"] == "staging" and body["organisation"] == "acme" and body["tier"] == "Premium"
    assert body["policy"]["rpo_minutes"] == 120 and body["priority_class"] == "high"
    assert body["bounds"]["min_rpo_minutes"] == 15 and body["backup_status"] == "none"


def test_vm_list_pages_with_a_cursor_and_a_capped_size(client, world) -> None:
    acme = world["acme"]
    db.session.add_all([VM(organisation_id=acme.id, name=f"bulk-{n:03d}", environment="development")
                        for n in range(205)])
    db.session.commit()
    headers = H(world["acme_admin"], ["backups:read"])
    seen, cursor, pages = [], None, 0
    while True:
        answer = client.get("/api/v1/vms", query_string={"limit": 90, **({"cursor": cursor} if cursor else {})},
                            headers=headers).json
        seen += [item["id"] for item in answer["items"]]
        pages += 1
        cursor = answer["next"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 207 and seen == sorted(seen)
    capped = client.get("/api/v1/vms?limit=100000", headers=headers).json
    assert len(capped["items"]) == 200 and capped["next"]
    assert client.get("/api/v1/vms?cursor=!!", headers=headers).json["error"] == "bad_cursor"
    staging = client.get("/api/v1/vms?environment=staging", headers=headers).json["items"]
    assert [v["name"] for v in staging] == ["staging-api"]


def test_policy_update_within_the_tier_is_saved_and_audited(client, world) -> None:
    vm = world["acme_vm"]
    answer = client.patch(f"/api/v1/vms/{vm.id}/policy", json={"rpo_minutes": 30, "keep_hourly": 48},
                          headers=H(world["acme_admin"]))
    assert answer.status_code == 200 and answer.json["rpo_minutes"] == 30 and answer.json["keep_hourly"] == 48
    entry = AuditEntry.query.filter_by(action="policy.update").one()
    assert entry.before["rpo_minutes"] == 120 and entry.after["rpo_minutes"] == 30
    assert client.get(f"/api/v1/vms/{vm.id}/policy", headers=H(world["acme_member"])).json["keep_hourly"] == 48


@pytest.mark.parametrize("values, field", [
    ({"rpo_minutes": 10}, "rpo_minutes"),
    ({"rpo_minutes": 60, "keep_hourly": 49}, "keep_hourly"),
    ({"excluded": True}, "excluded"),
])
def test_policy_outside_the_tier_is_422_and_nothing_is_saved(client, world, values, field) -> None:
    vm = world["acme_vm"]
    answer = client.patch(f"/api/v1/vms/{vm.id}/policy", json=values, headers=H(world["acme_admin"]))
    assert answer.status_code == 422 and answer.json["error"] == "policy_outside_tier"
    assert field in answer.json["errors"] and field in answer.json["message"]
    db.session.expire_all()
    policy = db.session.get(Policy, vm.id)
    assert policy.rpo_minutes == 120 and policy.keep_hourly == 0 and not policy.excluded
    assert AuditEntry.query.filter_by(action="policy.update").count() == 0


def test_policy_rejects_wrong_types_and_unknown_fields(client, world) -> None:
    url = f"/api/v1/vms/{world['acme_vm'].id}/policy"
    for body in ({"rpo_minutes": "60"}, {"business_critical": "yes"}, {"colour": "red"}):
        answer = client.patch(url, json=body, headers=H(world["acme_admin"]))
        assert answer.status_code == 422 and answer.json["error"] == "unprocessable", body
    broken = client.patch(url, data="{", content_type="application/json", headers=H(world["acme_admin"]))
    assert broken.status_code in (400, 422) and broken.json["message"]


# -- backup points ----------------------------------------------------------------------------------------

def test_backups_newest_first_in_pages(client, world) -> None:
    vm = world["acme_vm"]
    for day in range(25, 29):
        make_point(vm, revision=f"202611{day}T000000Z-000000",
                   created_at=world["acme_point"].created_at.replace(day=day - 20))
    headers = H(world["acme_member"], ["backups:read"])
    first = client.get(f"/api/v1/vms/{vm.id}/backups?limit=3", headers=headers).json
    second = client.get(f"/api/v1/vms/{vm.id}/backups?limit=3&cursor={first['next']}", headers=headers).json
    dates = [p["created_at"] for p in first["items"] + second["items"]]
    assert len(dates) == 5 and dates == sorted(dates, reverse=True) and second["next"] is None


def test_deletion_with_grace_and_undo(client, world) -> None:
    point = world["acme_point"]
    url = f"/api/v1/vms/{point.vm_id}/backups/{point.id}"
    assert client.delete(url, headers=H(world["acme_member"])).status_code == 403
    asked = client.delete(url, headers=H(world["acme_admin"]))
    assert asked.status_code == 202 and asked.json["deletion_due_at"] and "unless undone" in asked.json["message"]
    listed = client.get(url, headers=H(world["acme_member"])).json
    assert listed["deletion_due_at"] == asked.json["deletion_due_at"]
    undone = client.post(url + "/undelete", headers=H(world["acme_admin"]))
    assert undone.status_code == 200 and undone.json["deletion_due_at"] is None
    again = client.post(url + "/undelete", headers=H(world["acme_admin"]))
    assert again.status_code == 409 and again.json["error"] == "deletion_refused"
    actions = [e.action for e in AuditEntry.query.order_by(AuditEntry.id)]
    assert actions.count("deletion.request") == 1 and actions.count("deletion.undo") == 1


def test_a_point_scheduled_for_deletion_is_not_browsed_downloaded_or_restored(client, world, queues) -> None:
    point = world["acme_point"]
    base = f"/api/v1/vms/{point.vm_id}/backups/{point.id}"
    admin = H(world["acme_admin"])
    assert client.delete(base, headers=admin).status_code == 202
    restores = Restore.query.count()
    answers = [client.get(base + "/files", headers=admin), client.get(base + "/download?path=/p1", headers=admin),
               client.post(f"/api/v1/vms/{point.vm_id}/restores", json={"backup": point.id, "kind": "full"},
                           headers=admin)]
    for answer in answers:
        assert answer.status_code == 409 and answer.json["error"] == "deletion_pending", answer.json
        assert "scheduled for deletion on" in answer.json["message"] and "undo" in answer.json["message"]
    assert Restore.query.count() == restores  # nothing queued
    assert client.post(base + "/undelete", headers=admin).status_code == 200
    again = client.post(f"/api/v1/vms/{point.vm_id}/restores", json={"backup": point.id, "kind": "full"},
                        headers=admin)
    assert again.status_code == 202


@needs_images
def test_protect_reaches_the_engine_and_blocks_deletion(file_vm, queues, client, world) -> None:
    point = backed_up(file_vm, queues, world)
    url = f"/api/v1/vms/{file_vm.id}/backups/{point.id}"
    admin = H(world["acme_admin"])
    assert client.post(url + "/protect", headers=H(world["acme_member"])).status_code == 403
    protected = client.post(url + "/protect", headers=admin)
    assert protected.status_code == 200 and protected.json["protected"] is True
    repo = Repository.open(current_app.config["STORAGE_ROOT"], file_vm.repository_name)
    assert repo.resolve(point.revision).protected
    refused = client.delete(url, headers=admin)
    assert refused.status_code == 409 and "protected" in refused.json["message"]
    assert client.post(url + "/unprotect", headers=admin).json["protected"] is False
    assert not Repository.open(current_app.config["STORAGE_ROOT"], file_vm.repository_name).resolve(
        point.revision).protected
    assert client.delete(url, headers=admin).status_code == 202


# -- files ------------------------------------------------------------------------------------------------

@needs_images
def test_browse_and_download_files_of_a_backup(file_vm, queues, client, world) -> None:
    point = backed_up(file_vm, queues, world)
    base = f"/api/v1/vms/{file_vm.id}/backups/{point.id}"
    headers = H(world["acme_member"], ["backups:read"])
    top = client.get(base + "/files", headers=headers).json
    assert [e["path"] for e in top["items"]] == ["/root"]  # the disks first, then their partitions
    assert [e["path"] for e in client.get(base + "/files?path=/root", headers=headers).json["items"]] == ["/root/p1"]
    assert "/root/p1/etc/hostname" in [e["path"] for e in client.get(base + "/files?path=/root/p1/etc",
                                                                     headers=headers).json["items"]]
    etc = client.get(base + "/files?path=/p1/etc", headers=headers).json  # without the disk: deprecated
    hostname = next(e for e in etc["items"] if e["name"] == "hostname")
    assert hostname["type"] == "file" and hostname["size"] == 5 and etc["next"] is None
    found = client.get(base + "/files?path=/p1&q=app.log", headers=headers).json
    assert [e["path"] for e in found["items"]] == ["/p1/var/log/app.log"]
    missing = client.get(base + "/files?path=/p1/nope", headers=headers)
    assert missing.status_code == 422 and missing.json["error"] == "storage_error"
    assert client.get(base + "/files?path=etc", headers=headers).status_code == 400
    archive = client.get(base + "/download?path=/p1/etc&path=/p1/srv/data.bin", headers=headers)
    assert archive.status_code == 200 and archive.mimetype == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive.data))) as tar:
        assert tar.extractfile("etc/hostname").read() == b"demo\n"  # type: ignore[union-attr]
        assert len(tar.extractfile("data.bin").read()) == 4 << 20  # type: ignore[union-attr]


@needs_images
def test_the_files_list_has_the_shape_of_every_list(file_vm, queues, client, world) -> None:
    point = backed_up(file_vm, queues, world)
    base = f"/api/v1/vms/{file_vm.id}/backups/{point.id}/files"
    headers = H(world["acme_member"], ["backups:read"])
    for query in ("?path=/p1", "?path=/p1&q=*"):  # a directory (sorted by name) and a search (tree order)
        whole = client.get(base + query, headers=headers).json
        assert set(whole) == {"items", "next", "path", "entries", "truncated"} and whole["next"] is None
        assert whole["entries"] == whole["items"] and whole["truncated"] is False  # the deprecated aliases
        assert len(whole["items"]) >= 3
        paged, cursor = [], None
        while True:  # two at a time, following `next` as with every other list
            page = client.get(base + query + "&limit=2" + (f"&cursor={cursor}" if cursor else ""),
                              headers=headers).json
            assert len(page["items"]) <= 2 and page["entries"] == page["items"]
            assert page["truncated"] is (page["next"] is not None)
            paged += page["items"]
            cursor = page["next"]
            if cursor is None:
                break
        assert paged == whole["items"]
    bad = client.get(base + "?path=/p1&cursor=not-a-cursor", headers=headers)
    assert bad.status_code == 400 and bad.json["error"] == "bad_cursor"

    document = client.get("/api/v1/openapi.json").json
    answer = document["paths"]["/api/v1/vms/{vm}/backups/{backup}/files"]["get"]["responses"]["200"]
    ref = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    properties = document["components"]["schemas"][ref]["properties"]
    assert {"items", "next"} <= set(properties) and properties["entries"]["deprecated"] is True
    parameters = {p["name"] for p in document["paths"]["/api/v1/vms/{vm}/backups/{backup}/files"]["get"]["parameters"]}
    assert {"cursor", "limit"} <= parameters


# -- restores ---------------------------------------------------------------------------------------------

@needs_images
def test_restores_create_follow_cancel_and_download(file_vm, queues, client, world) -> None:
    point = backed_up(file_vm, queues, world)
    headers = H(world["acme_member"], ["restores:read", "restores:write"])
    url = f"/api/v1/vms/{file_vm.id}/restores"
    files = client.post(url, json={"backup": point.id, "kind": "files", "paths": ["/p1/etc/hostname"]},
                        headers=headers)
    assert files.status_code == 202 and files.json["state"] == "queued" and files.json["position"] == 1
    assert files.json["priority_class"] == "critical" and files.json["download"] is None
    full = client.post(url, json={"backup": point.id, "kind": "full", "target": {"type": "new"}}, headers=headers)
    assert full.status_code == 202 and full.json["position"] == 2
    cancelled = client.post(f"/api/v1/restores/{full.json['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json["state"] == "cancelled"
    again = client.post(f"/api/v1/restores/{full.json['id']}/cancel", headers=headers)
    assert again.status_code == 409 and again.json["error"] == "not_cancellable"
    early = client.get(f"/api/v1/restores/{files.json['id']}/download", headers=headers)
    assert early.status_code == 409 and early.json["error"] == "not_ready"
    run_jobs(queues)
    db.session.expire_all()
    done = client.get(f"/api/v1/restores/{files.json['id']}", headers=headers).json
    assert done["state"] == "done" and done["progress"] == 1.0 and done["position"] is None
    assert isinstance(done["report"], dict) and done["download"].endswith("/download")
    archive = client.get(done["download"], headers=headers)
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive.data))) as tar:
        assert tar.extractfile("hostname").read() == b"demo\n"  # type: ignore[union-attr]
    archive.close()
    listed = client.get("/api/v1/restores?state=cancelled", headers=headers).json["items"]
    assert [r["id"] for r in listed] == [full.json["id"]]


def test_a_restore_into_the_vm_s_disk_has_no_download(client, world, tmp_path) -> None:
    """Its ``output_path`` is the VM's own disk image: neither a link nor a download (as on the page)."""
    disk = tmp_path / "web-1.img"
    disk.write_bytes(b"the VM's live disk")
    archive = tmp_path / "files.tar.gz"
    archive.write_bytes(gzip.compress(b""))
    vm, point, admin = world["acme_vm"], world["acme_point"], world["acme_admin"]
    restores = {}
    for name, target, output in (("into_disk", {"type": "in_vm", "path": None}, disk), ("archive", {}, archive)):
        restores[name] = Restore(vm_id=vm.id, backup_point_id=point.id, kind="files", paths=["/p1/etc/hosts"],
                                 target=target, state="done", output_path=str(output), priority_class="critical",
                                 requested_by_id=admin.id, job_id=f"restore-{name}")
        db.session.add(restores[name])
    db.session.commit()
    headers = H(world["acme_member"], ["restores:read"])
    into_disk = restores["into_disk"].id
    assert client.get(f"/api/v1/restores/{into_disk}", headers=headers).json["download"] is None
    listed = {r["id"]: r for r in client.get("/api/v1/restores", headers=headers).json["items"]}
    assert listed[into_disk]["download"] is None and listed[restores["archive"].id]["download"]
    refused = client.get(f"/api/v1/restores/{into_disk}/download", headers=headers)
    assert refused.status_code == 404 and b"live disk" not in refused.data
    archived = client.get(client.get(f"/api/v1/restores/{restores['archive'].id}", headers=headers).json["download"],
                          headers=headers)
    assert archived.status_code == 200
    archived.close()


def test_restore_requests_are_checked(client, world) -> None:
    vm, point = world["acme_vm"], world["acme_point"]
    headers = H(world["acme_admin"])
    url = f"/api/v1/vms/{vm.id}/restores"
    relative = client.post(url, json={"backup": point.id, "kind": "files", "paths": ["etc"]}, headers=headers)
    assert relative.status_code == 422 and "absolute paths" in relative.json["message"]
    wrong_kind = client.post(url, json={"backup": point.id, "kind": "everything"}, headers=headers)
    assert wrong_kind.status_code == 422 and "kind" in wrong_kind.json["errors"]
    foreign = client.post(url, json={"backup": world["globex_point"].id, "kind": "full"}, headers=headers)
    assert foreign.status_code == 404
    assert Restore.query.count() == 1  # the world's own


# -- audit, tiers, inventory ------------------------------------------------------------------------------

def test_audit_entries_are_scoped_and_paged(client, world) -> None:
    client.patch(f"/api/v1/vms/{world['acme_vm'].id}/policy", json={"rpo_minutes": 60},
                 headers=H(world["acme_admin"]))
    client.patch(f"/api/v1/vms/{world['globex_vm'].id}/policy", json={"keep_daily": 3},
                 headers=H(world["globex_admin"]))
    acme = client.get("/api/v1/audit?action=policy.update", headers=H(world["acme_member"], ["audit:read"])).json
    assert len(acme["items"]) == 1
    entry = acme["items"][0]
    assert entry["actor"] == "admin@acme.example" and entry["action"] == "policy.update"
    assert entry["object"] == {"type": "vm", "id": world["acme_vm"].id, "label": "web-1"}
    assert entry["before"]["rpo_minutes"] == 120 and entry["after"]["rpo_minutes"] == 60 and entry["at"]
    operator = H(world["operator"], ["audit:read"])
    first = client.get("/api/v1/audit?limit=1", headers=operator).json
    second = client.get(f"/api/v1/audit?limit=1&cursor={first['next']}", headers=operator).json
    assert first["items"][0]["id"] > second["items"][0]["id"]


def test_tiers_for_staff(client, world) -> None:
    manager = H(world["manager"])
    assert client.get("/api/v1/tiers", headers=H(world["acme_admin"])).status_code == 403
    names = [t["name"] for t in client.get("/api/v1/tiers", headers=manager).json["items"]]
    assert names == ["Premium", "Basic"]
    new = {"name": "Gold", "min_rpo_minutes": 30, "max_keep_hourly": 24, "max_keep_daily": 7, "max_keep_weekly": 4,
           "max_keep_monthly": 3, "restore_priority": "high", "rto_minutes": 60, "business_critical_included": True}
    created = client.post("/api/v1/tiers", json=new, headers=manager)
    assert created.status_code == 201 and created.json["name"] == "Gold"
    clash = client.post("/api/v1/tiers", json=new, headers=manager)
    assert clash.status_code == 422 and "name" in clash.json["errors"]
    premium = world["premium"]
    changed = client.patch(f"/api/v1/tiers/{premium.id}", json={"min_rpo_minutes": 180}, headers=manager)
    assert changed.status_code == 200 and changed.json["tier"]["min_rpo_minutes"] == 180
    assert changed.json["clamped"][str(world["acme"].id)]  # acme's 120-minute policies were clamped
    db.session.expire_all()
    assert db.session.get(Policy, world["acme_vm"].id).rpo_minutes == 180
    moved = client.put(f"/api/v1/organisations/{world['acme'].id}/tier", json={"tier": created.json["id"]},
                       headers=manager)
    assert moved.status_code == 200 and moved.json["tier"] == "Gold"
    assert client.put(f"/api/v1/organisations/{world['globex'].id}/tier", json={"tier": None},
                      headers=manager).status_code == 404  # not one of the manager's organisations


def test_inventory_sync_for_operators(client, world) -> None:
    operator = H(world["operator"])
    feed = client.get("/api/v1/inventory?organisation=globex", headers=operator).json
    feed["organisations"][0]["resource_groups"][0]["vms"].append(
        {"name": "shop-2", "environment": "staging", "disks": [{"name": "root", "source": "rbd:p/shop-2", "size": 1}]})
    applied = client.post("/api/v1/inventory/sync?scope=globex", json=feed, headers=operator)
    assert applied.status_code == 200 and applied.json["added"] == ["globex/shop-2"], applied.json
    refused = client.post("/api/v1/inventory/sync?scope=acme", json={"organisations": []}, headers=operator)
    assert refused.status_code == 409 and refused.json["error"] == "sync_refused" and "missing" in refused.json[
        "message"]
    bad = client.post("/api/v1/inventory/sync?scope=acme", json={"organisations": "x"}, headers=operator)
    assert bad.status_code == 422 and bad.json["error"] == "invalid_feed"
    assert client.post("/api/v1/inventory/sync?scope=acme", json=feed,
                       headers=H(world["manager"])).status_code == 403
    assert make_vm  # the factory stays importable for feeds built from rows


def test_a_vm_restricted_token_is_refused_on_organisation_wide_routes(client, world) -> None:
    """The audit log, tier changes and inventory are not about listed VMs: 403, not a view past the VMs."""
    vm = world["acme_vm"]
    client.patch(f"/api/v1/vms/{world['acme_staging'].id}/policy", json={"rpo_minutes": 60},
                 headers=H(world["acme_admin"]))  # an entry about a VM outside the restriction below
    audit = client.get("/api/v1/audit", headers=H(world["acme_admin"], ["audit:read"], vm_ids=[vm.id]))
    assert audit.status_code == 403 and audit.json["error"] == "forbidden"
    assert audit.json["message"].startswith("this token is restricted to some VMs;")
    assert client.get("/api/v1/audit", headers=H(world["acme_admin"], ["audit:read"])).status_code == 200
    manager = H(world["manager"], vm_ids=[vm.id])
    moved = client.put(f"/api/v1/organisations/{world['acme'].id}/tier", json={"tier": None}, headers=manager)
    assert moved.status_code == 403 and moved.json["error"] == "forbidden"
    db.session.expire_all()
    assert world["acme"].tier_id == world["premium"].id
    assert client.patch(f"/api/v1/tiers/{world['premium'].id}", json={"min_rpo_minutes": 180},
                        headers=manager).status_code == 403
    assert client.get("/api/v1/tiers", headers=manager).status_code == 200  # reading the tiers is harmless
    operator = H(world["operator"], vm_ids=[vm.id])
    assert client.get("/api/v1/inventory", headers=operator).status_code == 403
    assert client.post("/api/v1/inventory/sync?scope=acme", json={"organisations": []},
                       headers=operator).status_code == 403
    document = client.get("/api/v1/openapi.json").json
    assert document["paths"]["/api/v1/audit"]["get"]["x-organisation-wide"] is True
    assert "restricted to some VMs" in document["info"]["description"]


# -- errors -----------------------------------------------------------------------------------------------

def test_errors_are_json_everywhere_under_the_api(app, client, world, monkeypatch) -> None:
    headers = H(world["acme_admin"])
    for method, url, code in (("GET", "/api/v1/nothing", 404), ("DELETE", "/api/v1/vms", 405),
                              ("GET", "/api/v1/vms/999999", 404), ("GET", "/api/v1/vms/x", 404)):
        answer = client.open(url, method=method, headers=headers)
        assert answer.status_code == code and answer.is_json, url
        assert set(answer.json) >= {"error", "message"}, answer.json
    assert client.get("/nothing").mimetype == "text/html"  # the pages keep their HTML errors

    from portal.api import audit

    def broken(entry: AuditEntry) -> dict:
        raise RuntimeError("boom")

    AuditEntry.query.delete()
    db.session.add(AuditEntry(actor="x", action="a", object_type="vm", organisation_id=world["acme"].id))
    db.session.commit()
    monkeypatch.setattr(audit, "entry_json", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    answer = client.get("/api/v1/audit", headers=headers)
    assert answer.status_code == 500 and answer.json["error"] == "internal_error" and "boom" not in answer.text


def test_openapi_document_covers_the_fixed_interface(client) -> None:
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path, method in (("/api/v1/vms", "get"), ("/api/v1/vms/{vm}", "get"), ("/api/v1/vms/{vm}/policy", "patch"),
                         ("/api/v1/audit", "get"), ("/api/v1/vms/{vm}/backups", "get"),
                         ("/api/v1/vms/{vm}/backups/{backup}/files", "get"), ("/api/v1/vms/{vm}/restores", "post"),
                         ("/api/v1/restores/{id}", "get"), ("/api/v1/restores/{id}/download", "get"),
                         ("/api/v1/oauth/token", "post")):
        assert method in paths[path], path
    assert paths["/api/v1/vms/{vm}/policy"]["patch"]["x-scopes"] == ["policies:write"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert not [p for p in paths if not p.startswith("/api/v1/")]  # pages are not in the document
    assert BackupPoint  # noqa: B018
