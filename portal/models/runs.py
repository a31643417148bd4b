"""Rows for work done by jobs: a backup run, a restore, a verification. The row is written and committed
first, the job is queued second and only ever receives the row's id; the job reports its phase and progress
back to the row, so a lost queue or a dead worker never makes a request disappear (the reconciler finds it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .. import clock
from ..extensions import db
from .backups import BackupPoint
from .inventory import VM

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE_STATES = (QUEUED, RUNNING)


class JobRow:
    """Columns every job-backed row has."""

    state: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    phase: Mapped[str] = mapped_column(String(32), default="")
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=clock.now, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(default=0)

    @property
    def progress(self) -> float:
        return round(self.bytes_done / self.bytes_total, 4) if self.bytes_total else (1.0 if self.state == DONE
                                                                                      else 0.0)


class BackupRun(JobRow, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "backup_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id"), index=True)
    revision: Mapped[str] = mapped_column(String(64), default="")
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    vm: Mapped[VM] = relationship()


class Restore(JobRow, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "restores"
    __table_args__ = (Index("ix_restores_state_class", "state", "priority_class"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id"), index=True)
    backup_point_id: Mapped[int] = mapped_column(ForeignKey("backup_points.id"))
    kind: Mapped[str] = mapped_column(String(8))  # full | files | instant
    paths: Mapped[list[str]] = mapped_column(JSON, default=list)
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    priority_class: Mapped[str] = mapped_column(String(16), default="normal")
    priority_reason: Mapped[str] = mapped_column(String(300), default="")
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output_path: Mapped[str] = mapped_column(String(500), default="")

    # In-place restores: the engine revision of the safety backup taken just before the disk was overwritten,
    # and its catalog row (what "Undo" restores). SET NULL: purging that point must not need this row gone.
    safety_revision: Mapped[str] = mapped_column(String(64), default="")
    safety_point_id: Mapped[int | None] = mapped_column(ForeignKey("backup_points.id", ondelete="SET NULL"))
    disk: Mapped[str] = mapped_column(String(128), default="")  # one disk of the point; empty: every disk

    # Instant restores into RBD: when the new image could first be opened (a VM could start from it), and the
    # secret in the URL of the HTTP source the web app serves it from until it is hydrated (never shown).
    usable_at: Mapped[datetime | None] = mapped_column(DateTime)
    source_secret: Mapped[str] = mapped_column(String(64), default="", index=True)

    vm: Mapped[VM] = relationship()
    backup_point: Mapped[BackupPoint] = relationship(foreign_keys=[backup_point_id])
    safety_point: Mapped[BackupPoint | None] = relationship(foreign_keys=[safety_point_id])

    @property
    def in_place(self) -> bool:
        return (self.target or {}).get("type") == "in_place"

    @property
    def into_disk(self) -> bool:
        """A file restore that puts the files back into the VM's own disk (else: a downloadable archive)."""
        return (self.target or {}).get("type") == "in_vm"


class Verification(JobRow, db.Model):  # type: ignore[name-defined,misc]
    """Re-reading and re-hashing one revision (``revision``) or all of a VM's revisions (empty).

    ``result`` holds the engine's report: ``damaged_chunks``, ``distrusted_revisions``, ``damaged_ranges``,
    counts and seconds. The VM's rows go with the VM when it is purged (CASCADE); a purged backup point only
    clears ``backup_point_id`` (the revision name stays for the record).
    """

    __tablename__ = "verifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), index=True)
    backup_point_id: Mapped[int | None] = mapped_column(ForeignKey("backup_points.id", ondelete="SET NULL"))
    revision: Mapped[str] = mapped_column(String(64), default="")
    requested_by: Mapped[str] = mapped_column(String(254), default="")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    vm: Mapped[VM] = relationship()
    backup_point: Mapped[BackupPoint | None] = relationship()
