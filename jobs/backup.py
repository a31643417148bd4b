"""The backup job: back every disk of a VM up into its repository as one point, then refresh the catalog.

The disks are the inventory's Disk rows (named as there, read from their sources), all snapshotted under one
freeze by the engine. A disk the inventory marks missing fails the backup with its name: a point without it
would look like a whole VM and is not (someone confirms on the VM page that the disk was removed on purpose,
and once that takes effect, after its grace period, the disk is no longer the VM's; or the feed lists it
again)."""

from __future__ import annotations

from portal.extensions import db
from portal.models import VM, BackupRun
from portal.services import catalog, keys, notify
from storage.backup import backup
from storage.errors import StorageError
from storage.hooks import Hooks

from . import retention
from .context import ProgressWriter, app_context, mark_finished, mark_started, vm_lock


def run_backup(run_id: int) -> str:
    with app_context() as flask_app:
        run = db.session.get(BackupRun, run_id)
        if run is None or run.state not in ("queued", "running"):
            return "skipped"
        mark_started(run)
        vm = run.vm
        try:
            disks = vm_disks(vm)
            policy = vm.policy
            commands = flask_app.config["HOOK_COMMANDS"]
            hooks = Hooks(pre=_hook(commands, policy.pre_hook if policy else ""),
                          post=_hook(commands, policy.post_hook if policy else ""))

            def waiting() -> None:
                run.phase = "waiting for the VM"
                db.session.commit()

            ring = keys.keyring_for(vm.organisation_id)  # a master key configured: new repositories encrypted
            with vm_lock(vm.id, on_wait=waiting):
                revision = backup(flask_app.config["STORAGE_ROOT"], vm.repository_name, disks, hooks=hooks,
                                  wait=None, progress=ProgressWriter(run), keys=ring)
            run.revision = revision.id
            run.stats = {k: v for k, v in revision.stats.items() if k != "warnings"}
            catalog.refresh(vm)
            mark_finished(run, "done")
            retention.after_backup(vm)  # schedules deletions only (grace, undo); never fails the backup
            notify.event("backup.finished", vm.organisation, vm=vm, run=run.id, revision=revision.id)
            return revision.id
        except Exception as exc:
            db.session.rollback()
            mark_finished(run, "failed", str(exc))
            notify.event("backup.failed", vm.organisation, vm=vm, run=run.id, error=str(exc))
            raise


def vm_disks(vm: VM) -> list[tuple[str, str]]:
    """The (name, source) of every disk of the VM, in the inventory's order; StorageError when one is missing."""
    if not vm.disks:
        raise StorageError("the VM has no disks in the inventory")
    missing = [f"{d.name} (since {d.missing_since:%Y-%m-%d %H:%M} UTC" + (
        f"; its removal takes effect {d.deletion_due_at:%Y-%m-%d %H:%M} UTC)" if d.deletion_due_at else ")")
        for d in vm.disks if d.missing_since]
    if missing:
        raise StorageError(f"disk {', '.join(missing)} of the VM is missing from the inventory feed: not backing "
                           "up the other disks alone (list the disk in the feed again, or confirm on the VM page "
                           "that it was removed)")
    return [(d.engine_name, d.source) for d in vm.disks]


def _hook(commands: dict[str, str], name: str) -> str | None:
    """Customers choose a hook by name from an allowed list; the command behind each name is the operator's
    (``LIFEBOAT_HOOK_COMMANDS``, a JSON object), so no customer input ever reaches a shell."""
    if not name:
        return None
    if name not in commands:
        raise StorageError(f"snapshot hook {name!r} has no command configured (LIFEBOAT_HOOK_COMMANDS)")
    return commands[name]
