"""The portal's database models, one module per area."""

from .accounts import ROLES, Organisation, SlaTier, User
from .audit import AuditEntry
from .backups import BackupPoint
from .incidents import Heartbeat, Incident, IncidentUpdate
from .inventory import ENVIRONMENTS, VM, Disk, InventorySync, Policy, ResourceGroup
from .keys import OrganisationKey
from .notifications import Notification, NotificationPreference, Webhook
from .operations import DisasterRestore, DisasterRun, FireDrill
from .runs import BackupRun, Restore, Verification
from .tokens import ApiToken, OAuthClient

__all__ = [
    "ENVIRONMENTS",
    "ROLES",
    "VM",
    "ApiToken",
    "AuditEntry",
    "BackupPoint",
    "BackupRun",
    "DisasterRestore",
    "DisasterRun",
    "Disk",
    "FireDrill",
    "Heartbeat",
    "Incident",
    "IncidentUpdate",
    "InventorySync",
    "OrganisationKey",
    "Notification",
    "NotificationPreference",
    "OAuthClient",
    "Organisation",
    "Policy",
    "ResourceGroup",
    "Restore",
    "SlaTier",
    "User",
    "Verification",
    "Webhook",
]
