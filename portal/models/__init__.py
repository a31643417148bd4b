"""The portal's database models, one module per area."""

from .accounts import ROLES, Organisation, SlaTier, User
from .audit import AuditEntry
from .backups import BackupPoint
from .inventory import ENVIRONMENTS, VM, Disk, InventorySync, Policy, ResourceGroup
from .notices import Notice
from .runs import BackupRun, Restore

__all__ = [
    "ENVIRONMENTS",
    "ROLES",
    "VM",
    "AuditEntry",
    "BackupPoint",
    "BackupRun",
    "Disk",
    "InventorySync",
    "Notice",
    "Organisation",
    "Policy",
    "ResourceGroup",
    "Restore",
    "SlaTier",
    "User",
]
