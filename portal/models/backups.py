"""The catalog of backup points: rebuilt from the repositories at any time (the database is not the map)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    and_,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.manifest import ROOT_DISK, Trust

from ..extensions import db
from .inventory import VM
from .mixins import Deletable


class PointState(StrEnum):
    """A backup point's state in the catalog (the engine's trust of its revision, plus what the catalog saw)."""

    OK = "ok"  # written by a backup, not verified since (the engine's "trusted")
    VERIFIED = "verified"  # read back against every chunk hash
    DAMAGED = "damaged"  # its manifest cannot be read: the point cannot be restored
    DISTRUSTED = "distrusted"  # a verify found damaged chunks: restores run and report what was lost


STATES: tuple[str, ...] = tuple(state.value for state in PointState)
#: a good point: one a restore, a drill, the RPO or retention may count on
GOOD_STATES: tuple[str, ...] = (PointState.OK.value, PointState.VERIFIED.value)
BAD_STATES: tuple[str, ...] = (PointState.DAMAGED.value, PointState.DISTRUSTED.value)
#: the engine's trust of a revision -> the catalog's state of its point (the one mapping between the two words)
STATE_OF_TRUST: dict[str, str] = {Trust.TRUSTED.value: PointState.OK.value, Trust.VERIFIED.value:
                                  PointState.VERIFIED.value, Trust.DISTRUSTED.value: PointState.DISTRUSTED.value}


class BackupPoint(Deletable, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "backup_points"
    __table_args__ = (
        UniqueConstraint("vm_id", "revision"),
        Index("ix_backup_points_vm_created", "vm_id", "created_at"),
        # The dashboard's "last good backup per VM": without it SQLite scans via the deletion_due_at index.
        Index("ix_backup_points_vm_state_due_created", "vm_id", "state", "deletion_due_at", "created_at"),
        Index("ix_backup_points_vm_verified", "vm_id", "verified_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id"))
    revision: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    new_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16), default="ok")
    verified_at: Mapped[datetime | None] = mapped_column(DateTime)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the point's disks as the revision records them, ``[{"name": ..., "size": ...}]`` in backup order (None:
    #: not read from the repository yet)
    disks: Mapped[list[dict[str, object]] | None] = mapped_column(JSON)

    vm: Mapped[VM] = relationship()

    @property
    def is_good(self) -> bool:
        """A good point: readable and trusted or verified, and not waiting for its deletion."""
        return self.state in GOOD_STATES and self.deletion_due_at is None

    @property
    def disk_names(self) -> list[str]:
        return [str(d["name"]) for d in self.disks or []]

    @property
    def browse_disk(self) -> str | None:
        """The disk that paths without a disk (``/p1/...``, deprecated) and file restores without one read:
        ``root`` when the point has it, else its first disk; None for a point of one disk (or not read yet),
        which the engine opens as its only disk. Browsing itself starts at the disks (``/<disk>/p1/...``)."""
        names = self.disk_names
        if len(names) <= 1:
            return None
        return ROOT_DISK if ROOT_DISK in names else names[0]

    def covers(self, disks: list[str]) -> bool:
        """Whether the point holds every one of ``disks`` (the engine names of the disks the inventory lists).

        A point whose disks the catalog has not read (``None``: made before points recorded disks) or whose only
        disk is the engine's default ``root`` was taken by the one-disk portal: it covers a VM of one disk.
        """
        if self.disks is None or self.disk_names == [ROOT_DISK]:
            return len(disks) <= 1 or set(disks) <= {ROOT_DISK}
        return set(disks) <= set(self.disk_names)

    @classmethod
    def good(cls) -> ColumnElement[bool]:
        """``is_good`` as a query condition."""
        return and_(cls.state.in_(GOOD_STATES), cls.deletion_due_at.is_(None))
