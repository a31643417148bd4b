"""The inventory: resource groups, VMs and their disks, per-VM policies, and the history of syncs."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .accounts import Organisation
from .mixins import Deletable, Timestamped

ENVIRONMENTS = ("production", "staging", "development", "testing")


class ResourceGroup(Timestamped, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "resource_groups"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))


class VM(Timestamped, Deletable, db.Model):  # type: ignore[name-defined,misc]
    """A virtual machine from the inventory. ``name`` is unique within its organisation.

    ``missing_since`` is set when a sync in its scope no longer lists it: never deleted for that.
    """

    __tablename__ = "vms"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    resource_group_id: Mapped[int | None] = mapped_column(ForeignKey("resource_groups.id"))
    name: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(16), default="production")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime)
    missing_since: Mapped[datetime | None] = mapped_column(DateTime)

    organisation: Mapped[Organisation] = relationship()
    resource_group: Mapped[ResourceGroup | None] = relationship()
    disks: Mapped[list[Disk]] = relationship(back_populates="vm", cascade="all, delete-orphan",
                                             order_by="Disk.name")
    policy: Mapped[Policy | None] = relationship(back_populates="vm", uselist=False, cascade="all, delete-orphan")

    @property
    def repository_name(self) -> str:
        """The engine's repository folder for this VM: stable, unique, and a valid engine name."""
        return f"vm-{self.id}"


def engine_disk_name(name: str) -> str:
    """A disk's name in the VM's backup points: the inventory's name with what the engine's names do not allow
    (spaces, say: "Hard disk 1") as ``_``. Two disks of a VM that come out alike fail its backup, by name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:128]


class Disk(Deletable, db.Model):  # type: ignore[name-defined,misc]
    """A disk of a VM from the inventory. ``missing_since`` is set when a sync lists the VM without this disk:
    never deleted for that, and a backup of the VM fails while it is set. Someone with the right role confirms
    that such a disk was removed on purpose: a deletion request (``Deletable``: grace, notice, undo); when it
    takes effect the row goes and the VM's backups no longer include the disk (its data stays in the older
    points until they expire)."""

    __tablename__ = "disks"
    __table_args__ = (UniqueConstraint("vm_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(500))  # file:PATH or rbd:POOL/IMAGE
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    missing_since: Mapped[datetime | None] = mapped_column(DateTime)

    vm: Mapped[VM] = relationship(back_populates="disks")

    @property
    def engine_name(self) -> str:
        return engine_disk_name(self.name)

    @property
    def pool(self) -> str | None:
        if self.source.startswith("rbd:"):
            return self.source[4:].split("/", 1)[0]
        return None


class Policy(db.Model):  # type: ignore[name-defined,misc]
    """A VM's backup policy, chosen by the customer within the bounds of the organisation's tier."""

    __tablename__ = "policies"

    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id"), primary_key=True)
    rpo_minutes: Mapped[int] = mapped_column(Integer, default=24 * 60)
    keep_hourly: Mapped[int] = mapped_column(Integer, default=0)
    keep_daily: Mapped[int] = mapped_column(Integer, default=7)
    keep_weekly: Mapped[int] = mapped_column(Integer, default=4)
    keep_monthly: Mapped[int] = mapped_column(Integer, default=0)
    business_critical: Mapped[bool] = mapped_column(Boolean, default=False)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    exclusion_reason: Mapped[str] = mapped_column(Text, default="")
    pre_hook: Mapped[str] = mapped_column(String(100), default="")
    post_hook: Mapped[str] = mapped_column(String(100), default="")

    vm: Mapped[VM] = relationship(back_populates="policy")


class InventorySync(Timestamped, db.Model):  # type: ignore[name-defined,misc]
    """One sync attempt: applied or refused, with what it would have done."""

    __tablename__ = "inventory_syncs"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # applied | refused
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(254), default="")
    summary: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
