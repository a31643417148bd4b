"""The fire-drill job: restore a backup point into scratch space, check it, measure it, delete it.

Checks, each recorded in ``FireDrill.checks``:

- ``chunks``: the engine re-hashes every chunk while restoring; the damaged byte ranges must be empty.
- ``filesystems``: the restored image (not the backup) is opened with ``storage.files``: every partition
  holding a filesystem Lifeboat reads must list its root. An image with no readable filesystem (LVM, a
  raw data disk) is a warning, not a failure: the chunk check still proves the bytes.
- ``files``: a sample of regular files (``DRILL_SAMPLE_FILES``, default 20, picked reproducibly from the
  drill id) is read to the end.

Every disk of the point is drilled, one after the other: restored, checked, its scratch image removed. For a
point of several disks each check holds every disk (paths as ``/<disk>/p1/...``, damaged ranges as
``[disk, start, end]``) and a ``disks`` check lists each disk with the checks it failed; a drill fails naming
the disk (a disk whose restore raises fails the drill with ``disk NAME: ...``).

The scratch image goes to ``RESTORE_ROOT/drills/drill-<id>.img`` (``drill-<id>-<disk>.img`` for a point of
several disks) without the final flush (it is deleted right after) and is removed whatever happens, partial
output and resume state included. A drill retried after
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
from storage.repository import Repository
from storage.restore import restore

from .context import DiskProgress, ProgressWriter, app_context, mark_finished, mark_started, vm_lock

WALK_LIMIT = 5000  # entries looked at per filesystem when picking the sample
READ_LIMIT = 64 * 1024 * 1024  # bytes read per sampled file at most


def run_drill(drill_id: int) -> str:
    with app_context() as flask_app:
        drill = db.session.get(FireDrill, drill_id)
        if drill is None or drill.state not in ("queued", "running"):
            return "skipped"
        mark_started(drill)
        config = flask_app.config
        scratches = [os.path.join(_scratch_root(config), f"drill-{drill.id}.img")]
        drill.scratch_path = scratches[0]
        db.session.commit()
        try:
            def waiting() -> None:
                drill.phase = "waiting for the VM"
                db.session.commit()

            point = drill.backup_point
            if point is None:
                raise RuntimeError("the backup point was deleted before the drill ran")
            root = str(config["STORAGE_ROOT"])
            with vm_lock(drill.vm_id, on_wait=waiting):
                revision = Repository.open(root, drill.vm.repository_name).resolve(point.revision)
                several = len(revision.disks) > 1
                if several:
                    scratches = [os.path.join(_scratch_root(config), f"drill-{drill.id}-{d.name}.img")
                                 for d in revision.disks]
                progress = DiskProgress(ProgressWriter(drill), [d.size for d in revision.disks])
                results, total, seconds = [], 0, 0.0
                for disk, scratch in zip(revision.disks, scratches, strict=True):
                    drill.scratch_path = scratch
                    db.session.commit()
                    _remove_complete(scratch)
                    started = time.monotonic()
                    try:
                        result = restore(root, drill.vm.repository_name, revision.id, scratch, sync=False,
                                         progress=progress.next_disk(disk.name), disk=disk.name)
                    except Exception as exc:
                        if not several:
                            raise
                        raise RuntimeError(f"disk {disk.name}: {exc}") from exc
                    seconds += time.monotonic() - started
                    total += result.bytes
                    checks = {"chunks": {"ok": not result.damaged, "damaged": [list(r) for r in result.damaged]}}
                    checks.update(check_image(scratch, int(config.get("DRILL_SAMPLE_FILES", 20)), seed=drill.id))
                    results.append((disk.name, checks))
                    _remove(scratch)  # before the next disk: scratch space for one disk at a time
            seconds = max(seconds, 0.001)
            drill.bytes_total = drill.bytes_done = total
            drill.seconds = round(seconds, 3)
            drill.bytes_per_second = total / seconds
            drill.phase = "checking"
            db.session.commit()
            drill.checks = results[0][1] if not several else merge_checks(results)
            drill.result = PASSED if all(c["ok"] for c in drill.checks.values()) else FAILED_CHECK
            mark_finished(drill, "done")
            if drill.result != PASSED:
                notify.event("drill.failed", drill.vm.organisation, vm=drill.vm, drill=drill.id,
                             error="failed checks: " + failed_checks(results))
            return drill.result
        except Exception as exc:
            db.session.rollback()
            drill.result = FAILED_CHECK
            mark_finished(drill, "failed", str(exc))
            notify.event("drill.failed", drill.vm.organisation, vm=drill.vm, drill=drill.id, error=str(exc))
            raise
        finally:
            for scratch in scratches:
                _remove(scratch)


def merge_checks(results: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The checks of every disk as one set: each check ok when it is on every disk, paths and damaged ranges
    named by disk, and ``disks``: each disk with the checks it failed."""
    def prefixed(name: str, items: list[Any]) -> list[Any]:
        return [{**i, "path": f"/{name}{i['path']}"} if isinstance(i, dict) else f"/{name}{i}" for i in items]

    chunks = {"ok": all(c["chunks"]["ok"] for _, c in results),
              "damaged": [[name, *r] for name, c in results for r in c["chunks"]["damaged"]]}
    filesystems = {"ok": all(c["filesystems"]["ok"] for _, c in results),
                   "opened": [p for name, c in results for p in prefixed(name, c["filesystems"]["opened"])],
                   "failed": [p for name, c in results for p in prefixed(name, c["filesystems"]["failed"])],
                   "warning": "; ".join(f"disk {name}: {c['filesystems']['warning']}" for name, c in results
                                        if c["filesystems"].get("warning")),
                   "error": "; ".join(f"disk {name}: {c['filesystems']['error']}" for name, c in results
                                      if c["filesystems"].get("error"))}
    files = {"ok": all(c["files"]["ok"] for _, c in results),
             "read": [p for name, c in results for p in prefixed(name, c["files"]["read"])],
             "failed": [p for name, c in results for p in prefixed(name, c["files"].get("failed", []))],
             "bytes": sum(c["files"]["bytes"] for _, c in results)}
    disks = [{"disk": name, "ok": all(v["ok"] for v in c.values()),
              "failed": [k for k, v in c.items() if not v["ok"]]} for name, c in results]
    return {"chunks": chunks, "filesystems": filesystems, "files": files,
            "disks": {"ok": all(d["ok"] for d in disks), "items": disks}}


def failed_checks(results: list[tuple[str, dict[str, Any]]]) -> str:
    """``chunks, files`` for one disk; ``disk data: chunks; disk root: files`` for several."""
    if len(results) == 1:
        return ", ".join(k for k, c in results[0][1].items() if not c["ok"])
    return "; ".join(f"disk {name}: " + ", ".join(k for k, v in c.items() if not v["ok"])
                     for name, c in results if not all(v["ok"] for v in c.values()))


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
