"""Protect and release a backup point from the VM page (issue 15): admins only, audited, the engine's flag too."""

from __future__ import annotations

from portal.extensions import db
from portal.models import AuditEntry, BackupPoint


def _protected(point_id: int) -> bool:
    db.session.expire_all()
    point = db.session.get(BackupPoint, point_id)
    assert point is not None
    return point.protected


def test_an_admin_protects_and_releases_a_point_from_the_vm_page(client, auth, world) -> None:
    vm, point = world["acme_vm"], world["acme_point"]
    auth.login(world["acme_admin"])
    page = client.get(f"/vms/{vm.id}").get_data(as_text=True)
    assert f'action="/vms/{vm.id}/backups/{point.id}/protect"' in page and ">Protect</button>" in page
    answer = client.post(f"/vms/{vm.id}/backups/{point.id}/protect", data={"protected": "on"})
    assert answer.status_code == 302 and _protected(point.id)
    page = client.get(f"/vms/{vm.id}").get_data(as_text=True)
    assert "is protected: retention and deletion leave it alone" in page and ">Release</button>" in page
    assert client.post(f"/vms/{vm.id}/backups/{point.id}/protect", data={"protected": "off"}).status_code == 302
    assert not _protected(point.id)
    actions = [e.action for e in db.session.query(AuditEntry).filter(AuditEntry.object_id == point.id)]
    assert "backup.protect" in actions and "backup.unprotect" in actions


def test_a_member_sees_the_state_but_no_button_and_is_refused(client, auth, world) -> None:
    vm, point = world["acme_vm"], world["acme_point"]
    auth.login(world["acme_member"])
    page = client.get(f"/vms/{vm.id}").get_data(as_text=True)
    assert "/protect" not in page
    refused = client.post(f"/vms/{vm.id}/backups/{point.id}/protect", data={"protected": "on"})
    assert refused.status_code == 403 and b"administrators" in refused.data
    assert not _protected(point.id)
