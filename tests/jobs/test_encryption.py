"""The portal's organisation keys (issue 17): with a master key configured, a VM's first backup job creates an
encrypted repository under its organisation's key (kept wrapped by the master key), restores read it, the key is
exported once for escrow (audited), rotation rewraps without re-encrypting, and another organisation's key never
opens it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEntry, OrganisationKey, Restore
from portal.services import keys, runs
from storage import keys as engine_keys
from storage.keys import KeyFile, KeyRing, WrongKey
from storage.repository import Repository
from tests.storage.diskdata import chunk_files

from ..fixtures.jobs import run_jobs
from .test_jobs import backed_up


@pytest.fixture
def master(app: Any, tmp_path: Path) -> Iterator[KeyFile]:
    path = tmp_path / "master.key"
    master = KeyFile.create("installation")
    master.save(str(path))
    app.config["MASTER_KEY_FILE"] = str(path)
    keys.install(app)
    yield master
    engine_keys.set_default_keyring(None)


def test_new_repositories_are_encrypted_under_the_organisation_key(app: Any, master: KeyFile, file_vm: Any,
                                                                  queues: Any, world: dict[str, Any]) -> None:
    point = backed_up(file_vm, queues, world)
    root = app.config["STORAGE_ROOT"]
    config = json.loads((Path(root) / file_vm.repository_name / "repository.json").read_text())
    (row,) = db.session.scalars(select(OrganisationKey)).all()
    assert row.organisation_id == file_vm.organisation_id and row.wrapped["by"] == master.current.id
    assert config["version"] == 2 and config["encryption"]["name_key"]["by"] == row.key_id
    assert point.size_bytes == 24 * 1024 * 1024  # the catalog reads the sealed manifest through the portal's keys
    with pytest.raises(Exception, match="encrypted"):
        with engine_keys.using(None):
            Repository.open(root, file_vm.repository_name)
    # a full restore job reads it through the portal's keyring
    restore = runs.request_restore(world["acme_admin"], file_vm, point, "full")
    run_jobs(queues)
    db.session.expire_all()
    restore = db.session.get(Restore, restore.id)
    assert restore.state == "done", restore.error
    assert Path(restore.output_path).read_bytes() == Path(file_vm.disks[0].source[len("file:"):]).read_bytes()
    # another organisation's keys never open it
    other = keys.keyring_for(world["globex_vm"].organisation_id)
    assert other is not None
    with pytest.raises(WrongKey):
        Repository.open(root, file_vm.repository_name, keys=other)


def test_the_key_is_exported_once_audited_and_rotation_rewraps(app: Any, master: KeyFile, file_vm: Any,
                                                              queues: Any, world: dict[str, Any],
                                                              tmp_path: Path) -> None:
    backed_up(file_vm, queues, world)
    root = app.config["STORAGE_ROOT"]
    organisation = file_vm.organisation
    exported = KeyFile.parse(keys.export(organisation, world["acme_admin"]).encode(), "export")
    with pytest.raises(keys.KeyRefused, match="shown once"):
        keys.export(organisation, world["acme_admin"])
    actions = db.session.scalars(select(AuditEntry.action).where(AuditEntry.organisation_id == organisation.id))
    assert "organisation_key.export" in set(actions)
    # the exported file alone opens the repository (the customer's own site, without the portal)
    assert Repository.open(root, file_vm.repository_name, keys=KeyRing.of(exported)).can_read
    before = {p.name: p.read_bytes() for p in chunk_files(Path(root) / file_vm.repository_name)}
    done = keys.rotate(organisation, world["acme_admin"])
    assert done["rewrapped"] == [file_vm.repository_name] and done["failed"] == {}
    assert {p.name: p.read_bytes() for p in chunk_files(Path(root) / file_vm.repository_name)} == before
    config = json.loads((Path(root) / file_vm.repository_name / "repository.json").read_text())
    assert config["encryption"]["name_key"]["by"] == done["key"]
    with pytest.raises(WrongKey):
        Repository.open(root, file_vm.repository_name, keys=KeyRing.of(exported))  # the old key alone: no more
    assert Repository.open(root, file_vm.repository_name).can_read  # the portal's keyring: the new key
    second = KeyFile.parse(keys.export(organisation, world["acme_admin"]).encode(), "export")
    assert second.current.id == done["key"]


def test_an_admin_downloads_the_key_once_from_the_users_page(app: Any, master: KeyFile, file_vm: Any, queues: Any,
                                                             world: dict[str, Any], auth: Any) -> None:
    backed_up(file_vm, queues, world)
    assert auth.login(world["acme_member"]).status_code == 302
    assert auth.client.post("/organisation/key").status_code == 403
    auth.logout()
    assert auth.login(world["acme_admin"]).status_code == 302
    page = auth.client.get("/users")
    assert b"Download the organisation key" in page.data
    first = auth.client.post("/organisation/key")
    assert first.status_code == 200 and "attachment" in first.headers["Content-Disposition"]
    assert first.headers["Cache-Control"] == "no-store"
    keyfile = KeyFile.parse(first.data, "download")
    assert Repository.open(app.config["STORAGE_ROOT"], file_vm.repository_name, keys=KeyRing.of(keyfile)).can_read
    again = auth.client.post("/organisation/key")
    assert again.status_code == 409 and b"shown once" in again.data
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "organisation_key.export")).one()
    assert entry.actor == world["acme_admin"].email
