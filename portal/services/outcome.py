"""What a job-backed row (restore, fire drill, verification, backup run) says to a person.

While it is active: its state and the step it is on ("running (restore)"). Once it has finished, its outcome,
never its last step: "finished", "finished with 2 damaged chunk(s)", "failed: <reason>", "cancelled". The
raw ``state`` stays what the API and ``data-state`` attributes carry; this is the words around it.
"""

from __future__ import annotations

from typing import Any

from ..models.runs import CANCELLED, DONE, FAILED, QUEUED, RUNNING


def damaged_chunks(row: Any) -> int:
    """Damaged chunks a finished row reports (restores: ``report``; verifications: ``result``)."""
    for attr in ("report", "result"):
        found = getattr(row, attr, None)
        if isinstance(found, dict) and isinstance(found.get("damaged_chunks"), list):
            return len(found["damaged_chunks"])
    return 0  # fire drills judge damage in their checks: the page shows their verdict beside this


def describe(row: Any) -> str:
    """The row's state for people (see the module docstring)."""
    state = row.state
    if state == QUEUED:
        # an instant restore usable already, its hydration waiting for a worker (disaster mode's instant strategy)
        return str(row.phase) if getattr(row, "usable_at", None) and row.phase else "queued"
    if state == RUNNING:
        return f"running ({row.phase})" if row.phase else "running"
    if state == DONE:
        damaged = damaged_chunks(row)
        return f"finished with {damaged} damaged chunk(s)" if damaged else "finished"
    if state == FAILED:
        return f"failed: {row.error}" if row.error else "failed"
    if state == CANCELLED:
        return "cancelled"
    return str(state)
