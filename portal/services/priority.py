"""Restore priority: which class a VM's restore runs in, and why (shown to the customer).

Highest first (ARCHITECTURE, "Restore priority"):
1. ``critical``: production VMs under an SLA tier with an RTO target;
2. ``high``: VMs the customer marked business-critical (staging and development included);
3. ``normal``: other production VMs;
4. ``low``: other non-production VMs.
Within a class the tier's RTO target orders restores, then smaller VMs first.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models import VM

CLASSES = ("critical", "high", "normal", "low")


@dataclass(frozen=True)
class Priority:
    klass: str
    reason: str

    @property
    def rank(self) -> int:
        return CLASSES.index(self.klass)


def priority_of(vm: VM) -> Priority:
    tier = vm.organisation.tier
    policy = vm.policy
    if vm.environment == "production" and tier is not None and tier.rto_minutes:
        return Priority("critical", f"production VM on the {tier.name} tier (RTO {tier.rto_minutes} min)")
    if policy is not None and policy.business_critical:
        return Priority("high", f"{vm.environment} VM marked business-critical")
    if vm.environment == "production":
        return Priority("normal", "production VM without an RTO target")
    return Priority("low", f"{vm.environment} VM")


def sort_key(vm: VM) -> tuple[int, int, int]:
    """Order of restores in a disaster: class, then the tier's RTO target, then size (small first)."""
    tier = vm.organisation.tier
    rto = tier.rto_minutes if tier is not None and tier.rto_minutes else 10**9
    return priority_of(vm).rank, rto, vm.size_bytes
