"""Protecting backup points from deletion and retention, in the engine and in the catalog together.

The engine's flag is what really keeps a revision (``storage.retention.forget`` refuses it); the catalog row
mirrors it for the portal. A point whose repository is not on this portal's storage (a catalog-only row) is
protected in the catalog alone, which the purge job honours as well.
"""

from __future__ import annotations

from flask import current_app

from storage import retention
from storage.errors import StorageError, UnknownRevision
from storage.repository import repository_exists

from ..errors import DomainError
from ..extensions import db
from ..models import BackupPoint, User
from . import audit


class ProtectionError(DomainError):
    """A protect or unprotect that cannot happen; ``status`` is the HTTP answer, the message is for people."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def may_protect(actor: User) -> bool:
    """Who may keep or release data: the same people who may delete it (not customer members)."""
    return actor.is_admin


def set_protected(actor: User, point: BackupPoint, protected: bool) -> BackupPoint:
    """Protect or unprotect ``point`` (engine first, then the catalog); audited. Asking twice changes nothing."""
    if not may_protect(actor):
        raise ProtectionError("Only your organisation's administrators can protect or unprotect backups.", 403)
    if protected and point.pending_deletion:
        raise ProtectionError("This backup point is scheduled for deletion; undo the deletion first.")
    if point.protected == protected:
        return point
    root = current_app.config["STORAGE_ROOT"]
    if repository_exists(root, point.vm.repository_name):
        try:
            retention.set_protected(root, point.vm.repository_name, point.revision, protected)
        except UnknownRevision:
            if not protected:  # releasing a revision the engine no longer has only updates the catalog
                pass
            else:
                raise ProtectionError("The backup's revision is no longer in its repository.") from None
        except StorageError as exc:
            raise ProtectionError(f"The repository could not be changed: {exc}") from None
    before = {"protected": point.protected}
    point.protected = protected
    audit.record(actor, "backup.protect" if protected else "backup.unprotect", point, before=before,
                 after={"protected": protected, "revision": point.revision},
                 organisation_id=point.vm.organisation_id, label=f"{point.vm.name} {point.revision}")
    db.session.commit()
    return point
