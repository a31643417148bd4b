"""The fire-drill job: restore a backup point into scratch space, check it, measure it, delete it.

Checks, each recorded in ``FireDrill.checks``:

- ``chunks``: the engine re-hashes every chunk while restoring; the damaged byte ranges must be empty.
- ``filesystems``: the restored image (not the backup) is opened with ``storage.files``: every partition
  holding a filesystem Lifeboat reads must list its root. An image with no readable filesystem (LVM, a
  raw data disk) is a warning, not a failure: the chunk check still proves the bytes.
- ``files``: a sample of regular files (``DRILL_SAMPLE_FILES``, default 20, picked reproducibly from the
  drill id) is read to the end.

The scratch image goes to ``RESTORE_ROOT/drills/drill-<id>.img`` without the final flush (it is deleted
right after) and is removed whatever happens, partial output and resume state included. A drill retried after
its worker died (RQ re-runs it) resumes a partial image, but a *complete* one left by a worker that died
while checking is removed first: the engine never overwrites a finished image, and the drill would fail.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from portal.config import var_folder
from portal.extensions import db
from portal.models import FireDrill
from portal.models.operations import FAILED_CHECK, PASSED
from portal.services import notify
from storage.files import open_disk
from storage.restore import restore

from .context import ProgressWriter, app_context, mark_finished, mark_started, vm_lock

WALK_LIMIT = 5000  # entries looked at per filesystem when picking the sample
READ_LIMIT = 64 * 1024 * 1024  # bytes read per sampled file at most


def run_drill(drill_id: int) -> str:
    with app_context() as flask_app:
        drill = db.session.get(FireDrill, drill_id)
        if drill is None or drill.state not in ("queued", "running"):
            return "skipped"
        mark_started(drill)
        config = flask_app.config
        scratch = os.path.join(_scratch_root(config), f"drill-{drill.id}.img")
        drill.scratch_path = scratch
        db.session.commit()
        try:
            def waiting() -> None:
                drill.phase = "waiting for the VM"
                db.session.commit()

            point = drill.backup_point
            if point is None:
                raise RuntimeError("the backup point was deleted before the drill ran")
            with vm_lock(drill.vm_id, on_wait=waiting):
                _remove_complete(scratch)
                started = time.monotonic()
                # one disk of a several-disk point (its root disk, as file browsing): see README, Fire drills
                result = restore(str(config["STORAGE_ROOT"]), drill.vm.repository_name,
                                 point.revision, scratch, sync=False, progress=ProgressWriter(drill),
                                 disk=point.browse_disk)
                seconds = max(time.monotonic() - started, 0.001)
            drill.bytes_total = drill.bytes_done = result.bytes
            drill.seconds = round(seconds, 3)
            drill.bytes_per_second = result.bytes / seconds
            drill.phase = "checking"
            db.session.commit()
            checks: dict[str, dict[str, object]] = {
                "chunks": {"ok": not result.damaged, "damaged": [list(r) for r in result.damaged]}}
            if point.browse_disk is not None:
                checks["chunks"]["disk"] = point.browse_disk
            checks.update(check_image(scratch, int(config.get("DRILL_SAMPLE_FILES", 20)), seed=drill.id))
            drill.checks = checks
            drill.result = PASSED if all(c["ok"] for c in checks.values()) else FAILED_CHECK
            mark_finished(drill, "done")
            if drill.result != PASSED:
                notify.event("drill.failed", drill.vm.organisation, vm=drill.vm, drill=drill.id,
                             error="failed checks: " + ", ".join(k for k, c in checks.items() if not c["ok"]))
            return drill.result
        except Exception as exc:
            db.session.rollback()
            drill.result = FAILED_CHECK
            mark_finished(drill, "failed", str(exc))
            notify.event("drill.failed", drill.vm.organisation, vm=drill.vm, drill=drill.id, error=str(exc))
            raise
        finally:
            _remove(scratch)


def check_image(path: str, sample: int, seed: int) -> dict[str, Any]:
    """Open the image's filesystems and read a sample of files (see the module doc)."""
    opened, failed, files = [], [], []
    with open(path, "rb") as handle:
        try:
            disk = open_disk(handle)
            partitions = disk.list_dir("/")
        except Exception as exc:  # noqa: BLE001 - anything unreadable is the check's finding, not a crash
            return {"filesystems": {"ok": False, "error": str(exc), "opened": [], "failed": []},
                    "files": {"ok": False, "read": [], "bytes": 0}}
        for part in partitions:
            if part.type != "dir":
                continue  # no filesystem Lifeboat reads in it (swap, LVM, raw data)
            try:
                disk.list_dir(part.path)
                opened.append(part.path)
            except Exception as exc:  # noqa: BLE001
                failed.append({"path": part.path, "error": str(exc)})
                continue
            try:
                for count, (_, entry) in enumerate(disk.walk(part.path)):
                    if count >= WALK_LIMIT:
                        break
                    if entry.type == "file":
                        files.append(entry.path)
            except Exception as exc:  # noqa: BLE001
                failed.append({"path": part.path, "error": f"walking: {exc}"})
        picked = sorted(random.Random(seed).sample(files, min(sample, len(files))))  # noqa: S311 - a sample
        read, errors, total = [], [], 0
        for file_path in picked:
            try:
                with disk.open_file(file_path) as stream:
                    size = 0
                    while size < READ_LIMIT:
                        piece = stream.read(min(1 << 20, READ_LIMIT - size))
                        if not piece:
                            break
                        size += len(piece)
                read.append({"path": file_path, "bytes": size})
                total += size
            except Exception as exc:  # noqa: BLE001
                errors.append({"path": file_path, "error": str(exc)})
    return {
        "filesystems": {"ok": not failed, "opened": opened, "failed": failed,
                        "warning": "" if opened or failed else "no filesystem Lifeboat can read"},
        "files": {"ok": not errors, "read": read, "failed": errors, "bytes": total},
    }


def _scratch_root(config: Any) -> str:
    base = str(config.get("RESTORE_ROOT") or os.path.join(var_folder(config),
                                                          "restores"))
    root = os.path.join(base, "drills")
    os.makedirs(root, exist_ok=True)
    return root


def _remove_complete(scratch: str) -> None:
    """A finished scratch image from an earlier attempt goes; a partial one (and its resume state) stays."""
    try:
        os.unlink(scratch)
    except FileNotFoundError:
        pass


def _remove(scratch: str) -> None:
    for path in (scratch, scratch + ".lifeboat-partial", scratch + ".lifeboat-partial.json"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
