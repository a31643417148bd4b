"""Issue 14, portal side: every disk of a VM in one backup point, through real jobs on real disk images."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import current_app

from portal import clock
from portal.demo import make_image
from portal.extensions import db
from portal.models import BackupPoint, BackupRun, Disk, Restore
from portal.services import runs, tokens
from storage.restore import restore
from tests.fixtures.jobs import run_jobs

from .test_jobs import backed_up

MiB = 1024 * 1024


@pytest.fixture
def two_disk_vm(file_vm: Any, tmp_path: Path) -> Any:
    """web-1 with its root disk and a data disk, both real images with different content and sizes."""
    data = tmp_path / "web-1-data.img"
    make_image(str(data), 16 * MiB, seed=2)
    file_vm.disks.append(Disk(name="data", source=f"file:{data}", size_bytes=16 * MiB))
    db.session.commit()
    return file_vm


def disk_bytes(disk: Disk) -> bytes:
    return Path(disk.source[len("file:"):]).read_bytes()


def restored(vm: Any, point: BackupPoint, disk: str, tmp_path: Path) -> bytes:
    target = tmp_path / f"{point.revision}-{disk}.img"
    restore(current_app.config["STORAGE_ROOT"], vm.repository_name, point.revision, str(target), disk=disk)
    return target.read_bytes()


def scribble(disk: Disk, offset: int, data: bytes) -> None:
    with open(disk.source[len("file:"):], "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def test_a_backup_job_takes_every_disk_into_one_point(two_disk_vm, queues, world, tmp_path) -> None:
    root, data = sorted(two_disk_vm.disks, key=lambda d: d.name != "root")
    first_bytes = {d.name: disk_bytes(d) for d in (root, data)}
    first = backed_up(two_disk_vm, queues, world)
    scribble(root, 5 * MiB, b"changed root" * 100)
    scribble(data, 9 * MiB, b"changed data" * 100)
    second = backed_up(two_disk_vm, queues, world)
    assert sorted(first.disks or [], key=lambda d: str(d["name"])) == [
        {"name": "data", "size": 16 * MiB}, {"name": "root", "size": 24 * MiB}]
    assert first.size_bytes == 40 * MiB and first.covers(["root", "data"])
    for disk in (root, data):  # each disk of each point restores byte for byte
        assert restored(two_disk_vm, first, disk.name, tmp_path) == first_bytes[disk.name]
        assert restored(two_disk_vm, second, disk.name, tmp_path) == disk_bytes(disk) != first_bytes[disk.name]


def test_a_disk_missing_from_the_inventory_fails_the_backup(two_disk_vm, queues, world) -> None:
    data = next(d for d in two_disk_vm.disks if d.name == "data")
    data.missing_since = clock.now()
    db.session.commit()
    points = BackupPoint.query.filter_by(vm_id=two_disk_vm.id).count()
    run = runs.request_backup(two_disk_vm, world["operator"])
    run_jobs(queues)
    db.session.expire_all()
    run = db.session.get(BackupRun, run.id)
    assert run.state == "failed" and "disk data" in run.error and "missing from the inventory" in run.error
    assert not run.revision  # no point of the root disk alone
    assert BackupPoint.query.filter_by(vm_id=two_disk_vm.id).count() == points
    assert not (Path(current_app.config["STORAGE_ROOT"]) / two_disk_vm.repository_name).exists()


def test_the_vm_page_and_the_api_list_each_points_disks(two_disk_vm, queues, world, client, auth) -> None:
    point = backed_up(two_disk_vm, queues, world)
    auth.login(world["acme_admin"])
    page = client.get(f"/vms/{two_disk_vm.id}").get_data(as_text=True)
    shown = re.findall(r'<span class="point-disk">([^<]*)</span>', page)
    assert [s.split()[0] for s in shown] == [str(d["name"]) for d in point.disks or []]
    assert sorted(s.split()[0] for s in shown) == ["data", "root"] and all(len(s.split()) > 1 for s in shown)
    secret = tokens.create_token(world["acme_admin"], ["backups:read"], name="t")[1]
    answer = client.get(f"/api/v1/vms/{two_disk_vm.id}/backups/{point.id}",
                        headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert sorted((d["name"], d["size_bytes"]) for d in answer.get_json()["disks"]) == [
        ("data", 16 * MiB), ("root", 24 * MiB)]


def finished(restore_id: int) -> Restore:
    db.session.expire_all()
    restore = db.session.get(Restore, restore_id)
    assert restore.state == "done", restore.error
    return restore


def test_a_full_restore_writes_every_disk_of_the_point(two_disk_vm, queues, world) -> None:
    point = backed_up(two_disk_vm, queues, world)
    requested = runs.request_restore(world["acme_admin"], two_disk_vm, point, "full")
    run_jobs(queues)
    restore = finished(requested.id)
    outputs = {d["disk"]: d["target"] for d in restore.report["disks"]}
    assert sorted(outputs) == ["data", "root"] and len(set(outputs.values())) == 2
    for disk in two_disk_vm.disks:
        assert Path(outputs[disk.name]).read_bytes() == disk_bytes(disk)
    assert restore.report["bytes"] == 40 * MiB and restore.report["damaged"] == []
    assert restore.progress == 1.0 and restore.bytes_total == 40 * MiB


def test_a_full_restore_of_one_named_disk(two_disk_vm, queues, world, client) -> None:
    point = backed_up(two_disk_vm, queues, world)
    headers = {"Authorization": "Bearer " + tokens.create_token(world["acme_admin"], ["restores:write"], name="t")[1]}
    answer = client.post(f"/api/v1/vms/{two_disk_vm.id}/restores", headers=headers,
                         json={"backup": point.id, "kind": "full", "disk": "nope"})
    assert answer.status_code == 422 and "no disk 'nope'" in answer.get_json()["message"]
    answer = client.post(f"/api/v1/vms/{two_disk_vm.id}/restores", headers=headers,
                         json={"backup": point.id, "kind": "full", "disk": "data"})
    assert answer.status_code == 202 and answer.get_json()["disk"] == "data"
    run_jobs(queues)
    restore = finished(answer.get_json()["id"])
    data = next(d for d in two_disk_vm.disks if d.name == "data")
    assert [d["disk"] for d in restore.report["disks"]] == ["data"] and restore.report["disk"] == "data"
    assert Path(restore.output_path).read_bytes() == disk_bytes(data)


def test_the_restore_form_offers_each_disk_and_the_browser_starts_at_the_disks(two_disk_vm, queues, world,
                                                                               client, auth) -> None:
    point = backed_up(two_disk_vm, queues, world)
    auth.login(world["acme_admin"])
    page = client.get(f"/vms/{two_disk_vm.id}").get_data(as_text=True)
    assert re.findall(r'<option value="([^"]*)">', page)[-3:] == ["", "data", "root"]
    answer = client.post(f"/vms/{two_disk_vm.id}/backups/{point.id}/restore", data={"kind": "full", "disk": "root"})
    assert answer.status_code == 302 and Restore.query.one().disk == "root"
    browse = client.get(f"/vms/{two_disk_vm.id}/backups/{point.id}/files").get_data(as_text=True)
    assert re.findall(r'type="checkbox" name="path" value="([^"]*)"', browse) == ["/data", "/root"]


def test_a_fire_drill_of_a_two_disk_point_restores_and_checks_every_disk(two_disk_vm, queues, world, app,
                                                                          tmp_path) -> None:
    from portal.models import FireDrill
    from portal.services import drills

    app.config["RESTORE_ROOT"] = str(tmp_path / "restores")
    backed_up(two_disk_vm, queues, world)
    drill = drills.request_drill(two_disk_vm, world["operator"])
    run_jobs(queues)
    db.session.expire_all()
    drill = db.session.get(FireDrill, drill.id)
    assert (drill.state, drill.result) == ("done", "passed"), drill.error
    assert drill.bytes_total == 40 * MiB
    assert [(d["disk"], d["ok"]) for d in drill.checks["disks"]["items"]] == [("data", True), ("root", True)]
    assert drill.checks["filesystems"]["opened"] == ["/data/p1", "/root/p1"]
    read = {r["path"] for r in drill.checks["files"]["read"]}
    assert {"/data/p1/srv/data.bin", "/root/p1/srv/data.bin"} <= read
    assert not list((tmp_path / "restores" / "drills").iterdir())  # every scratch image removed


def test_a_fire_drill_fails_naming_the_disk_that_failed(two_disk_vm, queues, world, app, tmp_path) -> None:
    from portal.models import FireDrill
    from portal.services import drills
    from storage.repository import Repository

    app.config["RESTORE_ROOT"] = str(tmp_path / "restores")
    point = backed_up(two_disk_vm, queues, world)
    repo = Repository.open(app.config["STORAGE_ROOT"], two_disk_vm.repository_name)
    revision = repo.load_revision(point.revision)
    chunk = next(c for c in revision.disk("data").chunks if c and c not in revision.disk("root").chunks)
    Path(repo.chunk_path(chunk)).chmod(0o644)
    Path(repo.chunk_path(chunk)).write_bytes(b"not the chunk")  # damage on the data disk only
    drill = drills.request_drill(two_disk_vm, world["operator"])
    run_jobs(queues)
    db.session.expire_all()
    drill = db.session.get(FireDrill, drill.id)
    assert drill.result == "failed", drill.error
    items = {d["disk"]: d for d in drill.checks["disks"]["items"]}
    assert items["root"]["ok"] and not items["data"]["ok"] and "chunks" in items["data"]["failed"]
    assert drill.checks["chunks"]["damaged"] and all(r[0] == "data" for r in drill.checks["chunks"]["damaged"])
