"""What the deletable things are: the kinds of data a deletion request can name, their labels and owners.

Apart from ``deletions`` (which requests, undoes and purges) because the notifications that announce a
deletion need these facts too, and ``deletions`` itself sends notifications.
"""

from __future__ import annotations

from typing import Any

from ..models import VM, BackupPoint, Disk, Organisation, User

#: in purge order: a disk's removal and a VM's points before the VM, VMs before their organisation
KINDS: dict[str, type[Any]] = {"disk": Disk, "backup": BackupPoint, "vm": VM, "user": User,
                               "organisation": Organisation}


def kind_of(obj: Any) -> str:
    for kind, model in KINDS.items():
        if isinstance(obj, model):
            return kind
    raise TypeError(f"{type(obj).__name__} is not deletable here")


def label_of(obj: Any) -> str:
    kind = kind_of(obj)
    if kind == "backup":
        return f"backup of {obj.vm.name} from {obj.created_at:%Y-%m-%d %H:%M} UTC"[:300]
    if kind == "vm":
        return f"VM {obj.name}"[:300]
    if kind == "disk":
        return f"disk {obj.name} of VM {obj.vm.name} (its backups stay)"[:300]
    if kind == "user":
        return f"user {obj.email}"[:300]
    return f"organisation {obj.name}"[:300]


def vm_of(obj: Any) -> VM | None:
    """The VM a deletable object belongs to (itself for a VM); None for users and organisations."""
    kind = kind_of(obj)
    return obj.vm if kind in ("backup", "disk") else (obj if kind == "vm" else None)


def organisation_id_of(obj: Any) -> int | None:
    kind = kind_of(obj)
    if kind in ("backup", "disk"):
        return int(obj.vm.organisation_id)
    if kind == "organisation":
        return int(obj.id)
    return int(obj.organisation_id) if obj.organisation_id is not None else None
