"""Per-VM backup policies within the bounds of the organisation's SLA tier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from ..errors import DomainError
from ..extensions import db
from ..models import VM, Policy, SlaTier, User
from . import audit, ranking

MIN_RPO_MINUTES = 15
MAX_RPO_MINUTES = 24 * 60
KEEP_FIELDS = ("keep_hourly", "keep_daily", "keep_weekly", "keep_monthly")
#: The RPOs the policy form offers (minutes), those the tier allows; the API takes any whole number in bounds.
RPO_CHOICES = (15, 30, 60, 120, 240, 360, 720, 1440)
FIELDS = ("rpo_minutes", *KEEP_FIELDS, "business_critical", "excluded", "exclusion_reason", "pre_hook",
          "post_hook")


class PolicyError(DomainError, ValueError):
    """A policy change that the tier or the rules do not allow; the message says why, for the customer."""

    code = "policy_outside_tier"

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors: dict[str, str] = errors


@dataclass(frozen=True)
class Bounds:
    min_rpo: int
    max_keep: dict[str, int]
    business_critical_allowed: bool

    @classmethod
    def of(cls, tier: SlaTier | None) -> Bounds:
        if tier is None:  # no tier assigned: the most conservative bounds
            return cls(MAX_RPO_MINUTES, dict.fromkeys(KEEP_FIELDS, 0) | {"keep_daily": 7}, False)
        return cls(
            max(MIN_RPO_MINUTES, tier.min_rpo_minutes),
            {"keep_hourly": tier.max_keep_hourly, "keep_daily": tier.max_keep_daily,
             "keep_weekly": tier.max_keep_weekly, "keep_monthly": tier.max_keep_monthly},
            tier.business_critical_included,
        )


def rpo_choices(bounds: Bounds, current: int | None = None) -> list[int]:
    """The RPOs to offer: the usual steps the tier allows, its finest RPO, and the current value if allowed."""
    found = {c for c in RPO_CHOICES if bounds.min_rpo <= c <= MAX_RPO_MINUTES} | {bounds.min_rpo}
    if current is not None and bounds.min_rpo <= current <= MAX_RPO_MINUTES:
        found.add(current)
    return sorted(found)


def offers_business_critical(vm: VM) -> bool:
    """Whether the policy form shows the business-critical choice: non-production VMs whose tier includes it."""
    return vm.environment != "production" and Bounds.of(vm.organisation.tier).business_critical_allowed


def policy_of(vm: VM) -> Policy:
    """The VM's policy, created with defaults inside the tier when it has none yet."""
    if vm.policy is None:
        bounds = Bounds.of(vm.organisation.tier)
        vm.policy = Policy(
            rpo_minutes=max(bounds.min_rpo, 60 if bounds.min_rpo <= 60 else MAX_RPO_MINUTES),
            keep_hourly=min(24, bounds.max_keep["keep_hourly"]),
            keep_daily=min(7, bounds.max_keep["keep_daily"]),
            keep_weekly=min(4, bounds.max_keep["keep_weekly"]),
            keep_monthly=min(3, bounds.max_keep["keep_monthly"]),
        )
    return vm.policy


def snapshot(policy: Policy) -> dict[str, Any]:
    return {field: getattr(policy, field) for field in FIELDS}


def validate(vm: VM, values: dict[str, Any]) -> dict[str, Any]:
    """Check a complete or partial set of policy values against the rules; return the cleaned values."""
    bounds = Bounds.of(vm.organisation.tier)
    current = snapshot(policy_of(vm))
    merged = {**current, **values}
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for field in ("rpo_minutes", *KEEP_FIELDS):
        raw = merged[field]
        if isinstance(raw, bool) or not isinstance(raw, int):
            errors[field] = "must be a whole number"
            continue
        clean[field] = raw
    rpo = clean.get("rpo_minutes")
    if rpo is not None and not bounds.min_rpo <= rpo <= MAX_RPO_MINUTES:
        errors["rpo_minutes"] = (f"must be between {bounds.min_rpo} and {MAX_RPO_MINUTES} minutes "
                                 f"(your tier's finest RPO is {bounds.min_rpo} minutes)")
    for field in KEEP_FIELDS:
        value = clean.get(field)
        if value is not None and not 0 <= value <= bounds.max_keep[field]:
            errors[field] = f"must be between 0 and {bounds.max_keep[field]} (your tier's limit)"
    for field in ("business_critical", "excluded"):
        if not isinstance(merged[field], bool):
            errors[field] = "must be true or false"
        clean[field] = bool(merged[field])
    if clean["business_critical"] and vm.environment != "production" and not bounds.business_critical_allowed:
        if not current["business_critical"]:
            errors["business_critical"] = "your tier does not include business-critical marking"
    if clean["excluded"]:
        if vm.environment == "production":
            errors["excluded"] = "production VMs cannot be excluded from backup"
        elif not str(merged["exclusion_reason"] or "").strip():
            errors["exclusion_reason"] = "say why this VM needs no backup"
    clean["exclusion_reason"] = str(merged["exclusion_reason"] or "").strip()[:1000] if clean["excluded"] else ""
    hooks = current_app.config["HOOK_CHOICES"]
    for field in ("pre_hook", "post_hook"):
        if merged[field] not in hooks:
            errors[field] = f"choose one of: {', '.join(h or '(none)' for h in hooks)}"
        clean[field] = merged[field]
    if errors:
        raise PolicyError(errors)
    return clean


def update(actor: User, vm: VM, values: dict[str, Any]) -> Policy:
    """Validate and apply a policy change, audited; nothing is saved when any value is refused."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise PolicyError({name: "unknown field" for name in sorted(unknown)})
    clean = validate(vm, values)
    policy = policy_of(vm)
    before = snapshot(policy)
    for field, value in clean.items():
        setattr(policy, field, value)
    after = snapshot(policy)
    if before != after:
        audit.record(actor, "policy.update", vm, before=before, after=after)
    db.session.commit()
    if before["business_critical"] != after["business_critical"]:
        ranking.rerank(actor, vm_ids=[vm.id])  # the flag is part of the restore class
    return policy


def clamp_to_tier(vm: VM) -> dict[str, tuple[Any, Any]]:
    """Bring an existing policy inside the (new) tier's bounds; return what changed (field: (old, new))."""
    bounds = Bounds.of(vm.organisation.tier)
    policy = policy_of(vm)
    changes: dict[str, tuple[Any, Any]] = {}
    if policy.rpo_minutes < bounds.min_rpo:
        changes["rpo_minutes"] = (policy.rpo_minutes, bounds.min_rpo)
        policy.rpo_minutes = bounds.min_rpo
    for field in KEEP_FIELDS:
        limit = bounds.max_keep[field]
        if getattr(policy, field) > limit:
            changes[field] = (getattr(policy, field), limit)
            setattr(policy, field, limit)
    if policy.business_critical and vm.environment != "production" and not bounds.business_critical_allowed:
        changes["business_critical"] = (True, False)
        policy.business_critical = False
    return changes
