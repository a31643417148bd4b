"""The verification job: re-read and re-hash a revision (or all of a VM's) through the engine, then refresh
the catalog so the points' state (verified, distrusted) and ``verified_at`` follow what the engine found.

It holds the VM's lock like backups and restores do, so it never reads a repository a backup is writing.
"""

from __future__ import annotations

from portal.extensions import db
from portal.models import Verification
from portal.services import audit, catalog, notify
from storage.verify import verify

from .context import app_context, mark_finished, mark_started, vm_lock

#: what of the engine's report goes into ``Verification.result``
RESULT_KEYS = ("revisions_checked", "chunks_checked", "bytes_checked", "damaged_chunks", "missing_chunks",
               "quarantined", "distrusted_revisions", "damaged_ranges", "clean", "seconds")


def run_verification(verification_id: int) -> str:
    with app_context() as flask_app:
        row = db.session.get(Verification, verification_id)
        if row is None or row.state not in ("queued", "running"):
            return "skipped"
        mark_started(row)
        vm = row.vm
        try:
            def waiting() -> None:
                row.phase = "waiting for the VM"
                db.session.commit()

            with vm_lock(vm.id, on_wait=waiting):
                row.phase = "verifying"
                db.session.commit()
                result = verify(flask_app.config["STORAGE_ROOT"], vm.repository_name, row.revision or None,
                                wait=None)
            doc = result.as_dict()
            row.result = {key: doc[key] for key in RESULT_KEYS}
            row.bytes_done = row.bytes_total = result.bytes_checked
            row.phase = "damage found" if result.damaged_chunks else "clean"
            catalog.refresh(vm)
            if result.damaged_chunks:
                audit.record("system:verify", "verification.damage", vm,
                             after={"verification": row.id, "damaged_chunks": len(result.damaged_chunks),
                                    "distrusted_revisions": result.distrusted_revisions[:50]})
            mark_finished(row, "done")
            if result.damaged_chunks:
                notify.event("verify.damage", vm.organisation, vm=vm, verification=row.id,
                             damaged_chunks=len(result.damaged_chunks), distrusted=result.distrusted_revisions[:20])
            return "damaged" if result.damaged_chunks else "clean"
        except Exception as exc:
            db.session.rollback()
            mark_finished(row, "failed", str(exc))
            raise
