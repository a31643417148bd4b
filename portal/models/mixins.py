"""Columns shared by models: creation time, and deletion with a grace period (the recycle bin)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer
from sqlalchemy.orm import Mapped, mapped_column

from .. import clock


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(DateTime, default=clock.now)


class Deletable:
    """Deletion is a state, not an act: a due time, who asked, and undo until then.

    Rows with ``deletion_due_at`` set sit in the recycle bin; only the purge job removes them, and only
    after the due time. Nothing in the web or API layer deletes rows of deletable data directly.
    """

    deletion_requested_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    deletion_due_at: Mapped[datetime | None] = mapped_column(DateTime, default=None, index=True)
    # No foreign key: users are deletable themselves, and the audit log keeps who asked by email anyway.
    deletion_requested_by_id: Mapped[int | None] = mapped_column(Integer, default=None)

    @property
    def pending_deletion(self) -> bool:
        return self.deletion_due_at is not None
