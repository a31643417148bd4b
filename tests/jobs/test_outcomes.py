"""Finished jobs show their outcome, not their last step (issue 11: 4): real restores run by a worker end as
"finished", "finished with N damaged chunk(s)", "failed: reason" or "cancelled" on the restore page, the
restore list and in the API, never "done (restore)" or "done (archiving)"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flask import current_app
from markupsafe import escape

from portal.extensions import db
from portal.models import Restore
from portal.services import runs, tokens
from tests.fixtures.jobs import run_jobs

from . import images_available
from .test_jobs import backed_up

STATE = '<strong class="badge tone-{tone}" data-state="{state}">{text}</strong>'  # the restore page's state badge
TONE = {"done": "good", "failed": "bad", "cancelled": "idle"}


def _finished(restore: Restore) -> Restore:
    db.session.expire_all()
    row = db.session.get(Restore, restore.id)
    assert row is not None
    return row


def _api_outcome(client, user, restore: Restore) -> str:
    _, secret = tokens.create_token(user, ["restores:read"], name=f"t{restore.id}")
    return client.get(f"/api/v1/restores/{restore.id}", headers={"Authorization": f"Bearer {secret}"}).json["outcome"]


@pytest.mark.skipif(not images_available(), reason="needs sfdisk and mkfs.ext4 (fdisk, e2fsprogs)")
def test_finished_full_and_file_restores_say_finished(file_vm, queues, world, client, auth) -> None:
    point = backed_up(file_vm, queues, world)
    admin = world["acme_admin"]
    full = runs.request_restore(admin, file_vm, point, "full")
    files = runs.request_restore(admin, file_vm, point, "files", paths=["/p1/etc"])
    run_jobs(queues)
    auth.login(admin)
    for restore, last_step in ((_finished(full), "restore"), (_finished(files), "archiving")):
        assert (restore.state, restore.phase) == ("done", last_step)  # the row keeps its last step, for the record
        page = client.get(f"/restores/{restore.id}").get_data(as_text=True)
        assert STATE.format(state="done", tone="good", text="finished") in page and f"({last_step})" not in page
        assert _api_outcome(client, admin, restore) == "finished"
    listing = client.get("/restores").get_data(as_text=True)
    assert listing.count('<td data-state="done"><span class="badge tone-good">finished</span></td>') == 2
    assert "(archiving)" not in listing


def test_damage_failure_and_cancellation_are_the_outcome(file_vm, queues, world, client, auth) -> None:
    point = backed_up(file_vm, queues, world)
    admin = world["acme_admin"]
    repository = Path(current_app.config["STORAGE_ROOT"]) / file_vm.repository_name
    victim = sorted(p for p in (repository / "chunks").rglob("*") if p.is_file())[0]
    victim.chmod(0o644)
    victim.write_bytes(b"not the chunk you stored")
    damaged = runs.request_restore(admin, file_vm, point, "full")
    cancelled = runs.request_restore(admin, file_vm, point, "full")
    assert runs.cancel_restore(admin, cancelled)
    run_jobs(queues)
    shutil.rmtree(repository)  # the repository is gone: the next restore fails, with the engine's reason
    failed = runs.request_restore(admin, file_vm, point, "full")
    run_jobs(queues)
    auth.login(admin)

    damaged, cancelled, failed = _finished(damaged), _finished(cancelled), _finished(failed)
    assert damaged.state == "done" and len(damaged.report["damaged_chunks"]) == 1
    assert failed.state == "failed" and failed.error
    expected = {damaged: ("done", "finished with 1 damaged chunk(s)"), cancelled: ("cancelled", "cancelled"),
                failed: ("failed", f"failed: {failed.error}")}
    for restore, (state, text) in expected.items():
        page = client.get(f"/restores/{restore.id}").get_data(as_text=True)
        assert STATE.format(state=state, tone=TONE[state], text=escape(text)) in page
        assert _api_outcome(client, admin, restore) == text
