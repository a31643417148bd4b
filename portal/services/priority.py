"""Restore priority: which class a VM's restore runs in, and why (shown to the customer).

The one rule (README, "Restore priority"): the class is a function of the organisation's tier's class
(``SlaTier.restore_priority``, set by the account manager), the VM's environment and the customer's
business-critical flag:

- production VM on a tier: the tier's class;
- non-production VM marked business-critical, where the tier includes that marking: the tier's class;
- any other non-production VM on a tier: the class below the tier's (``low`` stays ``low``);
- no tier: ``normal`` for production, ``low`` for the rest.

Within a class, a disaster plan orders by the tier's RTO target, then smaller VMs first (``sort_key``);
single restores start in the order they were requested (``portal.services.eta``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models import VM, SlaTier

CLASSES = ("critical", "high", "normal", "low")


@dataclass(frozen=True)
class Priority:
    klass: str
    reason: str

    @property
    def rank(self) -> int:
        return CLASSES.index(self.klass)


def tier_class(tier: SlaTier) -> str:
    """The tier's class; an unknown value (the form refuses them) counts as ``normal``."""
    return tier.restore_priority if tier.restore_priority in CLASSES else "normal"


def below(klass: str) -> str:
    return CLASSES[min(CLASSES.index(klass) + 1, len(CLASSES) - 1)]


def classify(tier: SlaTier | None, environment: str, business_critical: bool) -> Priority:
    """The class and its reason for a VM in ``environment`` on ``tier`` (see the module docstring)."""
    production = environment == "production"
    if tier is None:
        if production:
            return Priority("normal", "production VM without an SLA tier")
        return Priority("low", f"{environment} VM without an SLA tier")
    klass = tier_class(tier)
    on_tier = f"the {tier.name} tier's class is {klass}"
    if production:
        return Priority(klass, f"production VM: {on_tier}")
    if business_critical and tier.business_critical_included:
        return Priority(klass, f"{environment} VM marked business-critical: {on_tier}")
    lower = below(klass)
    refused = " (the tier does not include business-critical marking)" if business_critical else ""
    if lower == klass:
        return Priority(lower, f"{environment} VM{refused}: {on_tier}, the lowest")
    return Priority(lower, f"{environment} VM{refused}: one class below the {tier.name} tier's {klass}")


def priority_of(vm: VM) -> Priority:
    policy = vm.policy
    return classify(vm.organisation.tier, vm.environment, bool(policy is not None and policy.business_critical))


def sort_key(vm: VM) -> tuple[int, int, int]:
    """Order of restores in a disaster: class, then the tier's RTO target, then size (small first)."""
    tier = vm.organisation.tier
    rto = tier.rto_minutes if tier is not None and tier.rto_minutes else 10**9
    return priority_of(vm).rank, rto, vm.size_bytes
