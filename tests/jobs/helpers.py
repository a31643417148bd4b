"""Helpers for job tests: catalog rows for VMs whose repository shares another VM's revision layout."""

from __future__ import annotations

import os
import shutil
from typing import Any

from flask import current_app

from portal.extensions import db
from portal.models import BackupPoint


def make_point_for(vm: Any, template: BackupPoint) -> BackupPoint:
    """Give ``vm`` a copy of ``template``'s repository (a real one) and the matching catalog row."""
    root = current_app.config["STORAGE_ROOT"]
    source = os.path.join(root, template.vm.repository_name)
    target = os.path.join(root, vm.repository_name)
    if not os.path.exists(target):
        shutil.copytree(source, target)
    point = BackupPoint(vm_id=vm.id, revision=template.revision, created_at=template.created_at,
                        size_bytes=template.size_bytes, state="ok")
    db.session.add(point)
    db.session.commit()
    return point


def fresh_row(model: Any, row_id: int) -> Any:
    """The row as the database holds it now (another process, or a job, changed it)."""
    db.session.expire_all()
    return db.session.get(model, row_id)
