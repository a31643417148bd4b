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


def test_the_restore_form_offers_each_disk_and_the_browser_says_which_it_shows(two_disk_vm, queues, world,
                                                                                client, auth) -> None:
    point = backed_up(two_disk_vm, queues, world)
    auth.login(world["acme_admin"])
    page = client.get(f"/vms/{two_disk_vm.id}").get_data(as_text=True)
    assert re.findall(r'<option value="([^"]*)">', page)[-3:] == ["", "data", "root"]
    answer = client.post(f"/vms/{two_disk_vm.id}/backups/{point.id}/restore", data={"kind": "full", "disk": "root"})
    assert answer.status_code == 302 and Restore.query.one().disk == "root"
    browse = client.get(f"/vms/{two_disk_vm.id}/backups/{point.id}/files").get_data(as_text=True)
    assert "files shown are those of disk <strong>root</strong>" in browse


def test_a_fire_drill_of_a_two_disk_point_restores_its_root_disk_and_passes(two_disk_vm, queues, world, app,
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
    assert drill.checks["chunks"]["disk"] == "root" and drill.bytes_total == 24 * MiB


def test_an_in_place_restore_of_a_two_disk_vm_is_refused_before_any_row(two_disk_vm, queues, world) -> None:
    point = backed_up(two_disk_vm, queues, world)
    restores = Restore.query.count()
    with pytest.raises(runs.RestoreError, match="several disks"):
        runs.request_restore(world["operator"], two_disk_vm, point, "full", target={"type": "in_place"})
    assert Restore.query.count() == restores


def test_files_are_not_put_back_into_a_two_disk_vm(two_disk_vm, queues, world) -> None:
    point = backed_up(two_disk_vm, queues, world)
    with pytest.raises(runs.RestoreError, match="several disks"):
        runs.request_restore(world["operator"], two_disk_vm, point, "files", paths=["/p1/etc"],
                             target={"type": "in_vm", "path": "/p1/restored"})
