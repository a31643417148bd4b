"""The portal's database models, one module per area."""

from .accounts import ROLES, Organisation, SlaTier, User
from .audit import AuditEntry
from .backups import BackupPoint
from .inventory import ENVIRONMENTS, VM, Disk, InventorySync, Policy, ResourceGroup
from .notices import Notice

__all__ = [
    "ENVIRONMENTS",
    "ROLES",
    "VM",
    "AuditEntry",
    "BackupPoint",
    "Disk",
    "InventorySync",
    "Notice",
    "Organisation",
    "Policy",
    "ResourceGroup",
    "SlaTier",
    "User",
]
