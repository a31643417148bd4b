"""Restore targets by spec: a path (file or block device) or ``rbd:POOL/IMAGE``."""

from __future__ import annotations

from .base import Target
from .file import make_local_target

__all__ = ["Target", "open_target"]


def open_target(spec: str, *, force: bool, state_dir: str) -> Target:
    """``state_dir`` keeps resume state for targets that have no folder of their own (devices, rbd)."""
    if spec.startswith("rbd:"):
        from .rbd import make_rbd_target  # only targets that need Ceph import it

        return make_rbd_target(spec, force, state_dir)
    return make_local_target(spec, force, state_dir)
