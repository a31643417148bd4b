"""The API restores in place and undoes, as the pages do: the VM's name typed out, administrators only, a
protected safety backup first, on a real disk image with real jobs."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from portal.extensions import db
from portal.models import Restore
from tests.fixtures.jobs import run_jobs
from tests.jobs.test_jobs import backed_up

MiB = 1024 * 1024


def _disk(vm: Any) -> Path:
    return Path(vm.disks[0].source[len("file:"):])


def _finished(restore_id: int) -> Restore:
    db.session.expire_all()
    row = db.session.get(Restore, restore_id)
    assert row is not None and row.state == "done", row and row.error
    return row


def test_in_place_and_undo_through_the_api(file_vm, queues, world, client, bearer) -> None:
    point = backed_up(file_vm, queues, world)
    original = _disk(file_vm).read_bytes()
    with open(_disk(file_vm), "r+b") as handle:  # the customer's broken update
        handle.seek(10 * MiB)
        handle.write(random.Random(3).randbytes(MiB))  # noqa: S311 - test data
    changed = _disk(file_vm).read_bytes()
    url = f"/api/v1/vms/{file_vm.id}/restores"
    admin = bearer(world["acme_admin"])

    def ask(headers: dict[str, str], confirm: str) -> Any:
        return client.post(url, headers=headers, json={"backup": point.id, "kind": "full",
                                                        "target": {"type": "in_place", "confirm": confirm}})

    untyped = ask(admin, "")
    assert untyped.status_code == 422 and "type the VM's name" in untyped.get_json()["message"]
    assert ask(bearer(world["acme_member"]), "web-1").status_code == 403  # members may not overwrite disks
    assert ask(bearer(world["globex_admin"]), "web-1").status_code == 404  # nor may another tenant see it
    assert Restore.query.count() == 0 and _disk(file_vm).read_bytes() == changed  # nothing queued, nothing touched

    answer = ask(admin, "web-1")
    assert answer.status_code == 202, answer.get_json()
    run_jobs(queues)
    restore = _finished(answer.get_json()["id"])
    assert _disk(file_vm).read_bytes() == original and restore.safety_point is not None

    undo_url = f"/api/v1/restores/{restore.id}/undo"
    assert client.post(undo_url, headers=admin, json={"confirm": "web"}).status_code == 422
    assert client.post(undo_url, headers=bearer(world["globex_admin"]), json={"confirm": "web-1"}).status_code == 404
    undo = client.post(undo_url, headers=admin, json={"confirm": "web-1"})
    assert undo.status_code == 202, undo.get_json()
    run_jobs(queues)
    _finished(undo.get_json()["id"])
    assert _disk(file_vm).read_bytes() == changed  # the state from before the restore is back
