"""The catalog of backup points: rebuilt from the repositories at any time (the database is not the map)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .inventory import VM
from .mixins import Deletable

STATES = ("ok", "verified", "damaged", "distrusted")


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

    vm: Mapped[VM] = relationship()
