"""The portal's database models, one module per area."""

from .accounts import ROLES, Organisation, SlaTier, User
from .audit import AuditEntry
from .backups import BackupPoint
from .inventory import ENVIRONMENTS, VM, Disk, InventorySync, Policy, ResourceGroup

__all__ = [
    "ENVIRONMENTS",
    "ROLES",
    "VM",
    "AuditEntry",
    "BackupPoint",
    "Disk",
    "InventorySync",
    "Organisation",
    "Policy",
    "ResourceGroup",
    "SlaTier",
    "User",
]
