"""Operations rows: disaster runs (many restores started together) and fire drills (scratch restores that
prove a backup point can come back).

A disaster run does not own its restores: each is an ordinary ``Restore`` row, linked to the run through
``disaster_restores`` so the restore model stays the same for every kind of restore. A fire drill is a
job-backed row like a restore (state, phase, progress committed first, the job second).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .. import clock
from ..extensions import db
from .backups import BackupPoint
from .inventory import VM
from .runs import JobRow

SCOPES = ("all", "organisation", "pool")
PASSED, FAILED_CHECK = "passed", "failed"


class DisasterRun(db.Model):  # type: ignore[name-defined,misc]
    """One start of disaster mode: a scope, a point in time, and the plan it was started with."""

    __tablename__ = "disaster_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # all | organisation | pool
    scope_value: Mapped[str] = mapped_column(String(200), default="")  # organisation id or pool name
    scope_label: Mapped[str] = mapped_column(String(300), default="")
    point_in_time: Mapped[datetime] = mapped_column(DateTime)
    workers: Mapped[int] = mapped_column(Integer, default=1)
    bytes_per_second: Mapped[float] = mapped_column(Float, default=0.0)  # the throughput the plan assumed
    #: the plan as started: VMs without a usable point, VMs skipped because a restore was already running
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    started_by: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=clock.now, index=True)


class DisasterRestore(db.Model):  # type: ignore[name-defined,misc]
    """Links a restore to the disaster run that requested it (a restore belongs to at most one run)."""

    __tablename__ = "disaster_restores"

    run_id: Mapped[int] = mapped_column(ForeignKey("disaster_runs.id"), primary_key=True)
    restore_id: Mapped[int] = mapped_column(ForeignKey("restores.id"), primary_key=True, unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # place in the plan's order, 1-based


class FireDrill(JobRow, db.Model):  # type: ignore[name-defined,misc]
    """A restore of a recent backup point into scratch space, checked, measured and thrown away.

    ``result`` is the verdict of the checks (``passed``/``failed``), separate from the job's ``state``: a
    drill whose job ran to the end but found damage is ``done`` and ``failed``. ``backup_point_id`` is
    cleared when the point is purged (the drill keeps its result; the page says the point is deleted), and
    the VM's drills go with the VM.
    """

    __tablename__ = "fire_drills"

    id: Mapped[int] = mapped_column(primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id"), index=True)
    backup_point_id: Mapped[int | None] = mapped_column(ForeignKey("backup_points.id"), index=True)
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")  # schedule | operator
    requested_by: Mapped[str] = mapped_column(String(254), default="")
    result: Mapped[str] = mapped_column(String(16), default="")  # "" until checked, then passed | failed
    checks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    bytes_per_second: Mapped[float] = mapped_column(Float, default=0.0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    scratch_path: Mapped[str] = mapped_column(String(500), default="")

    vm: Mapped[VM] = relationship()
    backup_point: Mapped[BackupPoint | None] = relationship()
