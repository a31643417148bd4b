"""Deletion safety: a request with a grace period, undo until due, purge after, through the real engine.

Time is moved with ``portal.clock.set_now`` (reset after every test by the autouse fixture).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from portal import clock
from portal.extensions import db
from portal.models import VM, AuditEntry, BackupPoint, BackupRun, Organisation, Restore, User
from portal.services import catalog, deletions
from portal.services.deletions import DeletionError, DeletionForbidden, DeletionNotFound
from storage import backup as engine_backup
from storage import retention
from storage.repository import Repository
from tests.fixtures.portal import make_user, notices

T0 = datetime(2030, 1, 6, 12, 0, tzinfo=UTC)
NAIVE_T0 = T0.replace(tzinfo=None)


@pytest.fixture(autouse=True)
def fixed_clock() -> Iterator[None]:
    clock.set_now(T0)
    yield
    clock.set_now(None)


def later(**delta: float) -> datetime:
    """A moment after T0; also moves the portal's clock there."""
    moment = T0 + timedelta(**delta)
    clock.set_now(moment)
    return moment


def fresh(obj: Any) -> Any:
    db.session.expire_all()
    return db.session.get(type(obj), obj.id)


def make_point(vm: VM, revision: str = "r1", **values: Any) -> BackupPoint:
    point = BackupPoint(vm_id=vm.id, revision=revision, created_at=NAIVE_T0 - timedelta(hours=1), **values)
    db.session.add(point)
    db.session.commit()
    return point


def backed_up(app: Flask, vm: VM, tmp_path: Path, count: int = 2) -> list[BackupPoint]:
    """Real revisions made by the engine from a small image, then catalogued."""
    image = tmp_path / f"{vm.repository_name}.img"
    for n in range(count):
        image.write_bytes(os.urandom(96 * 1024) + bytes([n]) * (32 * 1024))
        engine_backup.backup(app.config["STORAGE_ROOT"], vm.repository_name, f"file:{image}", chunk_size=64 * 1024)
    catalog.refresh(vm)
    db.session.commit()
    on_disk = revisions_on_disk(app, vm)
    points = BackupPoint.query.filter_by(vm_id=vm.id).order_by(BackupPoint.created_at).all()
    return [p for p in points if p.revision in on_disk]  # the world's catalog-only points stay out


def revisions_on_disk(app: Flask, vm: VM) -> list[str]:
    return Repository.open(app.config["STORAGE_ROOT"], vm.repository_name).revision_ids()


# -- request, due dates, undo ------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "kind", "days"), [("point", "backup", 14), ("acme_staging", "vm", 14),
                                                   ("acme_member", "user", 14), ("acme", "organisation", 30)])
def test_request_puts_it_in_the_bin_with_the_grace_of_its_kind(world, key: str, kind: str, days: int) -> None:
    obj = make_point(world["acme_vm"]) if key == "point" else world[key]
    deletions.request_deletion(world["operator"], obj)
    obj = fresh(obj)
    assert obj.deletion_requested_at == NAIVE_T0
    assert obj.deletion_due_at == NAIVE_T0 + timedelta(days=days)
    assert obj.deletion_requested_by_id == world["operator"].id
    entry = AuditEntry.query.filter_by(action="deletion.request").one()
    assert entry.actor == "operator@lifeboat.example" and entry.object_id == obj.id
    assert entry.organisation_id == world["acme"].id
    assert entry.before["deletion_due_at"] is None and entry.after["kind"] == kind
    assert entry.after["deletion_due_at"] == (NAIVE_T0 + timedelta(days=days)).isoformat()
    notice = notices().one()
    assert notice.organisation_id == world["acme"].id
    assert (notice.kind, notice.dedup_key) == ("deletion.scheduled", f"{kind}:{obj.id}")
    assert notice.expires_at == obj.deletion_due_at and "undo in the recycle bin" in notice.message
    assert (NAIVE_T0 + timedelta(days=days)).strftime("%Y-%m-%d") in notice.message
    assert [e.obj.id for e in deletions.pending_for(world["acme_admin"])] == [obj.id]


def test_grace_comes_from_the_configuration(app, world) -> None:
    app.config["DELETION_GRACE_DAYS"] = {**app.config["DELETION_GRACE_DAYS"], "vm": 3}
    deletions.request_deletion(world["manager"], world["acme_vm"])
    assert fresh(world["acme_vm"]).deletion_due_at == NAIVE_T0 + timedelta(days=3)


def test_asking_twice_changes_nothing(world) -> None:
    deletions.request_deletion(world["acme_admin"], world["acme_staging"])
    later(days=2)
    deletions.request_deletion(world["acme_admin"], world["acme_staging"])
    assert fresh(world["acme_staging"]).deletion_due_at == NAIVE_T0 + timedelta(days=14)
    assert AuditEntry.query.filter_by(action="deletion.request").count() == 1


def test_undo_restores_and_is_audited(world) -> None:
    vm = world["acme_staging"]
    deletions.request_deletion(world["acme_admin"], vm)
    later(days=3)
    deletions.undo(world["acme_admin"], vm)
    vm = fresh(vm)
    assert vm.deletion_due_at is None and vm.deletion_requested_at is None and vm.deletion_requested_by_id is None
    entry = AuditEntry.query.filter_by(action="deletion.undo").one()
    assert entry.before["deletion_due_at"] == (NAIVE_T0 + timedelta(days=14)).isoformat()
    assert entry.after["deletion_due_at"] is None
    assert notices().one().dismissed_at == NAIVE_T0 + timedelta(days=3)
    assert deletions.pending_for(world["acme_admin"]) == []
    later(days=30)
    assert deletions.purge_due().purged == []
    assert fresh(vm) is not None


def test_undo_of_something_not_in_the_bin_is_refused(world) -> None:
    with pytest.raises(DeletionError, match="not scheduled"):
        deletions.undo(world["acme_admin"], world["acme_staging"])


# -- purge ------------------------------------------------------------------------------------------------

def test_purge_before_due_does_nothing_after_due_forgets_the_revision(app, world, tmp_path) -> None:
    vm = world["acme_vm"]
    first, second = backed_up(app, vm, tmp_path)
    deletions.request_deletion(world["acme_admin"], first)
    assert deletions.purge_due(NAIVE_T0 + timedelta(days=14) - timedelta(seconds=1)).purged == []
    assert deletions.due(NAIVE_T0 + timedelta(days=13)) == []
    assert first.revision in revisions_on_disk(app, vm)
    report = deletions.purge_due(later(days=14, seconds=1).replace(tzinfo=None))
    assert len(report.purged) == 1 and not report.failed and not report.blocked
    assert revisions_on_disk(app, vm) == [second.revision]
    assert db.session.get(BackupPoint, first.id) is None and fresh(second) is not None
    entry = AuditEntry.query.filter_by(action="deletion.purge").one()
    assert entry.actor == "system:purge" and entry.before["revision"] == first.revision
    assert entry.after == {"storage": "forgotten"} and entry.organisation_id == world["acme"].id
    assert notices().one().dismissed_at is not None


def test_a_revision_protected_in_the_engine_is_kept(app, world, tmp_path) -> None:
    vm = world["acme_vm"]
    first, _ = backed_up(app, vm, tmp_path)
    deletions.request_deletion(world["acme_admin"], first)
    retention.set_protected(app.config["STORAGE_ROOT"], vm.repository_name, first.revision, True)
    report = deletions.purge_due(later(days=15).replace(tzinfo=None))
    assert report.purged == [] and len(report.blocked) == 1
    assert first.revision in revisions_on_disk(app, vm)
    kept = fresh(first)
    assert kept is not None and kept.protected and kept.deletion_due_at is None
    entry = AuditEntry.query.filter_by(action="deletion.blocked").one()
    assert "protected" in entry.after["reason"]
    assert notices(kind="deletion.blocked").one().organisation_id == world["acme"].id
    assert deletions.purge_due(later(days=30).replace(tzinfo=None)).blocked == []  # asked once, answered once


def test_a_protected_point_cannot_even_be_requested(world) -> None:
    point = make_point(world["acme_vm"], protected=True)
    with pytest.raises(DeletionError, match="protected"):
        deletions.request_deletion(world["acme_admin"], point)
    with pytest.raises(DeletionError, match="protected"):
        deletions.request_deletion(world["manager"], world["acme_vm"])
    assert fresh(point).deletion_due_at is None and AuditEntry.query.count() == 0


def test_a_vm_purge_forgets_all_its_revisions_after_the_vms_own_grace(app, world, tmp_path) -> None:
    vm = world["acme_staging"]
    points = backed_up(app, vm, tmp_path)
    deletions.request_deletion(world["acme_admin"], vm)
    assert deletions.purge_due(later(days=13).replace(tzinfo=None)).purged == []
    assert len(revisions_on_disk(app, vm)) == 2
    report = deletions.purge_due(later(days=14).replace(tzinfo=None))
    assert report.purged == ["VM staging-api"]
    assert revisions_on_disk(app, vm) == []
    db.session.expire_all()
    assert db.session.get(VM, vm.id) is None
    assert all(db.session.get(BackupPoint, p.id) is None for p in points)
    assert fresh(world["acme_vm"]) is not None  # the neighbour is untouched
    entry = AuditEntry.query.filter_by(action="deletion.purge").one()
    assert entry.before["backup_points"] == 2 and entry.before["revisions"] == 2


def test_a_vm_with_a_protected_revision_keeps_all_its_storage(app, world, tmp_path) -> None:
    vm = world["acme_staging"]
    first, _ = backed_up(app, vm, tmp_path)
    deletions.request_deletion(world["acme_admin"], vm)
    retention.set_protected(app.config["STORAGE_ROOT"], vm.repository_name, first.revision, True)
    report = deletions.purge_due(later(days=15).replace(tzinfo=None))
    assert len(report.blocked) == 1 and report.purged == []
    assert len(revisions_on_disk(app, vm)) == 2
    vm = fresh(vm)
    assert vm is not None and vm.deletion_due_at is None
    assert AuditEntry.query.filter_by(action="deletion.blocked").count() == 1


def test_missing_storage_is_never_read_as_already_deleted(app, world) -> None:
    vm = world["acme_staging"]
    point = make_point(vm, "r-not-on-disk")  # the catalog knows a point, but the repository is not there
    deletions.request_deletion(world["acme_admin"], vm)
    report = deletions.purge_due(later(days=15).replace(tzinfo=None))
    assert len(report.failed) == 1 and report.purged == []
    assert fresh(vm).deletion_due_at is not None and fresh(point) is not None
    assert AuditEntry.query.filter_by(action="deletion.failed").count() == 1


def test_work_in_progress_defers_the_purge_and_finished_history_goes_with_the_data(app, world, tmp_path) -> None:
    point, restore = world["acme_point"], world["acme_restore"]  # a queued restore from this point
    backed_up(app, world["acme_vm"], tmp_path, count=1)  # a real repository, without the world point's revision
    deletions.request_deletion(world["acme_admin"], point)
    report = deletions.purge_due(later(days=15).replace(tzinfo=None))
    assert report.purged == [] and len(report.deferred) == 1 and "restore" in report.deferred[0]
    assert fresh(point).deletion_due_at is not None
    assert AuditEntry.query.filter_by(action="deletion.deferred").count() == 1
    restore = fresh(restore)
    restore.state = "done"
    db.session.commit()
    restore_id = restore.id
    report = deletions.purge_due(later(days=16).replace(tzinfo=None))
    assert len(report.purged) == 1
    assert AuditEntry.query.filter_by(action="deletion.purge").one().after == {
        "storage": "already absent from the repository"}
    db.session.expire_all()
    assert db.session.get(BackupPoint, point.id) is None and db.session.get(Restore, restore_id) is None


def test_a_running_backup_defers_a_vm_purge(world) -> None:
    vm = world["acme_staging"]
    db.session.add(BackupRun(vm_id=vm.id, state="running"))
    db.session.commit()
    deletions.request_deletion(world["acme_admin"], vm)
    report = deletions.purge_due(later(days=15).replace(tzinfo=None))
    assert len(report.deferred) == 1 and "backup of staging-api" in report.deferred[0]
    assert fresh(vm) is not None
    BackupRun.query.filter_by(vm_id=vm.id).one().state = "done"
    db.session.commit()
    assert deletions.purge_due(later(days=16).replace(tzinfo=None)).purged == ["VM staging-api"]
    assert BackupRun.query.count() == 0


def test_a_vm_without_backups_is_removed_with_its_disks_and_policy(world) -> None:
    vm = world["acme_staging"]
    deletions.request_deletion(world["manager"], vm)
    assert deletions.purge_due(later(days=14).replace(tzinfo=None)).purged == ["VM staging-api"]
    db.session.expire_all()
    assert db.session.get(VM, vm.id) is None


def test_a_user_is_locked_out_at_once_and_anonymised_after_the_grace(client, auth, world) -> None:
    member = world["acme_member"]
    deletions.request_deletion(world["acme_admin"], member)
    assert auth.login(member).status_code == 401  # the credential is gone at once
    deletions.undo(world["acme_admin"], member)
    assert auth.login(member).status_code == 302
    auth.logout()
    deletions.request_deletion(world["acme_admin"], member)
    deletions.purge_due(later(days=14).replace(tzinfo=None))
    member = fresh(member)
    assert member.email == f"deleted-user-{member.id}@deleted.invalid" and not member.active
    assert member.password_hash == "" and deletions.is_purged(member)
    entry = AuditEntry.query.filter_by(action="deletion.purge").one()
    assert entry.before["email"] == "dev@acme.example"
    assert auth.login("dev@acme.example").status_code == 401
    with pytest.raises(DeletionError, match="already deleted"):
        deletions.request_deletion(world["acme_admin"], member)


def test_credentials_go_at_once(app, world) -> None:
    app.config["DELETION_GRACE_DAYS"] = {**app.config["DELETION_GRACE_DAYS"], "user": 0}
    deletions.request_deletion(world["acme_admin"], world["acme_member"])
    assert deletions.is_purged(fresh(world["acme_member"]))


def test_an_organisation_purge_takes_its_vms_and_users_and_keeps_a_tombstone(app, world, tmp_path) -> None:
    acme = world["acme"]
    backed_up(app, world["acme_vm"], tmp_path, count=1)
    world["acme_restore"].state = "done"
    db.session.commit()
    deletions.request_deletion(world["manager"], acme)
    assert deletions.purge_due(later(days=29).replace(tzinfo=None)).purged == []
    report = deletions.purge_due(later(days=30).replace(tzinfo=None))
    assert report.purged == ["organisation Acme"] and not report.failed
    db.session.expire_all()
    assert VM.query.filter_by(organisation_id=acme.id).count() == 0
    assert revisions_on_disk(app, world["acme_vm"]) == []
    assert all(not u.active and u.email.endswith("@deleted.invalid")
               for u in User.query.filter_by(organisation_id=acme.id))
    assert deletions.is_purged(db.session.get(Organisation, acme.id))
    assert VM.query.filter_by(organisation_id=world["globex"].id).count() == 1  # the other tenant is untouched


def test_an_organisation_with_protected_data_is_not_purged_at_all(app, world, tmp_path) -> None:
    (point,) = backed_up(app, world["acme_staging"], tmp_path, count=1)
    deletions.request_deletion(world["manager"], world["acme"])
    retention.set_protected(app.config["STORAGE_ROOT"], world["acme_staging"].repository_name, point.revision, True)
    report = deletions.purge_due(later(days=31).replace(tzinfo=None))
    assert len(report.blocked) == 1
    assert VM.query.filter_by(organisation_id=world["acme"].id).count() == 2
    assert User.query.filter_by(email="admin@acme.example").one().active


# -- permissions ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("role", "key", "allowed"), [
    ("acme_member", "point", False), ("acme_admin", "point", True), ("manager", "point", True),
    ("acme_admin", "acme_staging", True), ("acme_admin", "acme_vm", False), ("manager", "acme_vm", True),
    ("acme_member", "acme_staging", False), ("acme_admin", "acme_member", True), ("acme_admin", "acme", False),
    ("manager", "acme", True), ("acme_member", "acme_member", False), ("operator", "operator", False),
    ("manager", "operator", False), ("operator", "manager", True),
])
def test_who_may_delete(world, role: str, key: str, allowed: bool) -> None:
    obj = make_point(world["acme_vm"]) if key == "point" else world[key]
    actor = world[role]
    if allowed:
        deletions.request_deletion(actor, obj)
        assert fresh(obj).deletion_due_at is not None
        deletions.undo(actor, obj)
    else:
        with pytest.raises(DeletionError):
            deletions.request_deletion(actor, obj)
        assert fresh(obj).deletion_due_at is None


def test_other_tenants_objects_are_not_found(world) -> None:
    with pytest.raises(DeletionNotFound):
        deletions.request_deletion(world["globex_admin"], world["acme_staging"])
    with pytest.raises(DeletionNotFound):
        deletions.request_deletion(world["acme_admin"], make_point(world["globex_vm"]))
    deletions.request_deletion(world["operator"], world["globex_vm"])
    with pytest.raises(DeletionNotFound):
        deletions.undo(world["manager"], world["globex_vm"])  # manages acme, not globex
    assert [e.label for e in deletions.pending_for(world["acme_admin"])] == []
    assert [e.label for e in deletions.pending_for(world["globex_admin"])] == ["VM shop-1"]


def test_a_customer_admin_may_undo_the_deletion_of_a_production_vm(world) -> None:
    deletions.request_deletion(world["manager"], world["acme_vm"])
    with pytest.raises(DeletionForbidden):
        deletions.undo(world["acme_member"], world["acme_vm"])
    deletions.undo(world["acme_admin"], world["acme_vm"])
    assert fresh(world["acme_vm"]).deletion_due_at is None


# -- pages ------------------------------------------------------------------------------------------------

def test_delete_and_undo_without_javascript(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    vm = world["acme_staging"]
    done = client.post(f"/vms/{vm.id}/delete", data={"next": f"/vms/{vm.id}"})
    assert done.status_code == 303 and done.headers["Location"] == f"/vms/{vm.id}"
    page = client.get("/recycle")
    assert page.status_code == 200
    assert b"will be deleted on 2030-01-20 12:00 UTC" in page.data  # the flash
    assert b"VM staging-api" in page.data and b"admin@acme.example" in page.data and b"Undo" in page.data
    assert b"hx-post=\"/recycle/vm/%d/undo\"" % vm.id in page.data
    undone = client.post(f"/recycle/vm/{vm.id}/undo", data={"next": "https://evil.example/"})
    assert undone.status_code == 303 and undone.headers["Location"] == "/recycle"
    assert b"Restored" in client.get("/recycle").data
    assert fresh(vm).deletion_due_at is None


def test_htmx_gets_the_fragment(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    point = make_point(world["acme_vm"])
    headers = {"HX-Request": "true"}
    done = client.post(f"/backups/{point.id}/delete", headers=headers)
    assert done.status_code == 200 and b"<html" not in done.data
    assert b'class="deletion-controls"' in done.data and b"Undo" in done.data and b"will be deleted" in done.data
    undone = client.post(f"/recycle/backup/{point.id}/undo", headers=headers)
    assert undone.status_code == 200 and b"Restored" in undone.data and b">Delete<" in undone.data
    refused = client.post(f"/vms/{world['acme_vm'].id}/delete", headers=headers)
    assert refused.status_code == 403 and b"account manager" in refused.data and b"<html" not in refused.data


def test_refusals_say_why(client, auth, world) -> None:
    auth.login(world["acme_admin"])
    refused = client.post(f"/vms/{world['acme_vm'].id}/delete")
    assert refused.status_code == 403 and b"Production VMs are deleted by your account manager" in refused.data
    point = make_point(world["acme_vm"], protected=True)
    conflict = client.post(f"/backups/{point.id}/delete")
    assert conflict.status_code == 409 and b"protected" in conflict.data
    assert client.post(f"/recycle/vm/{world['acme_staging'].id}/undo").status_code == 409
    assert client.post("/recycle/vm/abc/undo").status_code == 404
    assert client.post(f"/recycle/point/{point.id}/undo").status_code == 404
    assert client.get(f"/backups/{point.id}/delete").status_code == 405
    assert AuditEntry.query.count() == 0


def test_names_with_markup_render_inert(client, auth, world) -> None:
    vm = world["acme_staging"]
    vm.name = "<script>alert(1)</script>"
    db.session.commit()
    deletions.request_deletion(world["acme_admin"], vm)
    auth.login(world["acme_admin"])
    page = client.get("/recycle")
    assert b"<script>alert(1)</script>" not in page.data and b"&lt;script&gt;" in page.data


def test_csrf_is_required(app, world) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    client.get("/login")
    user = make_user("csrf@acme.example", "customer_admin", world["acme"])
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
    assert client.post(f"/vms/{world['acme_staging'].id}/delete").status_code == 400
    assert fresh(world["acme_staging"]).deletion_due_at is None


def test_the_banner_shows_deletions_due_within_a_day_to_admins(world) -> None:
    deletions.request_deletion(world["acme_admin"], world["acme_staging"])
    assert deletions.upcoming_notices(world["acme_admin"]) == []
    later(days=13, hours=1)
    assert len(deletions.upcoming_notices(world["acme_admin"])) == 1
    assert len(deletions.upcoming_notices(world["operator"])) == 1
    assert len(deletions.upcoming_notices(world["manager"])) == 1
    assert deletions.upcoming_notices(world["acme_member"]) == []
    assert deletions.upcoming_notices(world["globex_admin"]) == []


def test_the_banner_partial_renders(client, auth, world, app) -> None:
    deletions.request_deletion(world["acme_admin"], world["acme_staging"])
    later(days=13, hours=12)
    auth.login(world["acme_admin"])
    with app.test_request_context("/"):
        from flask import render_template_string
        from flask_login import login_user

        login_user(world["acme_admin"])
        html = render_template_string('{% include "_deletion_banner.html" %}')
    assert "Upcoming deletions" in html and "VM staging-api will be deleted on 2030-01-20" in html
