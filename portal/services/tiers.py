"""SLA tiers: defining them, assigning them to organisations, and what that means for existing VMs.

A tier is a product the provider sells, shared by every organisation on it. Tightening a tier (or moving an
organisation to a smaller one) must never leave policies that promise more than the tier pays for, so both
paths clamp the affected VMs' policies, audit each change with its before/after values, and leave the
organisation a notice that says what was clamped: the customer learns it in the portal, not from a missed
restore. Both re-rank the organisations' queued restores (``ranking.rerank``): the tier's class decides theirs.

Also here: the account managers' read-only views over tiers, compliance (VMs beyond their RPO) and coverage
(VMs without a valid policy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import joinedload

from .. import clock
from ..errors import DomainError
from ..extensions import db
from ..models import VM, Notification, Organisation, Policy, SlaTier, User
from ..models.accounts import PRIORITY_CLASSES
from ..security import one_line
from . import access, audit, notify, policies, ranking
from .status import BackupStatus, statuses

#: What a tier form may set, in display order.
FIELDS = ("name", "min_rpo_minutes", "max_keep_hourly", "max_keep_daily", "max_keep_weekly", "max_keep_monthly",
          "restore_priority", "rto_minutes", "business_critical_included")
KEEP_LIMITS = ("max_keep_hourly", "max_keep_daily", "max_keep_weekly", "max_keep_monthly")
MAX_KEEP = 10_000  # far beyond any real retention; bounds the input, not the product
MAX_RTO_MINUTES = 60 * 24 * 365
NOTICE_VM_LIMIT = 50  # a notice names this many clamped VMs, then counts the rest


class TierError(DomainError, ValueError):
    """A tier form with values the rules refuse; ``errors`` maps each field to a message for the form."""

    code = "invalid_tier"

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors: dict[str, str] = errors


# -- defining tiers --------------------------------------------------------------------------------------

def snapshot(tier: SlaTier) -> dict[str, Any]:
    """The tier's values as the audit log stores them."""
    return {field: getattr(tier, field) for field in FIELDS}


def parse_form(form: Mapping[str, str]) -> dict[str, Any]:
    """Turn submitted text into checked tier values, or raise TierError naming every bad field.

    Takes text (a form) rather than typed values so the page and any API share one set of messages.
    """
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    name = str(form.get("name", "")).strip()
    if not name:
        errors["name"] = "give the tier a name"
    elif len(name) > 80:
        errors["name"] = "at most 80 characters"
    elif not one_line(name):
        errors["name"] = "one line, without control characters"
    values["name"] = name
    numbers = {"min_rpo_minutes": (policies.MIN_RPO_MINUTES, policies.MAX_RPO_MINUTES),
               "rto_minutes": (0, MAX_RTO_MINUTES), **dict.fromkeys(KEEP_LIMITS, (0, MAX_KEEP))}
    for field, (low, high) in numbers.items():
        raw = str(form.get(field, "")).strip()
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 7:
            errors[field] = "must be a whole number"
        elif not low <= int(raw) <= high:
            errors[field] = f"must be between {low} and {high}"
        else:
            values[field] = int(raw)
    priority = form.get("restore_priority", "")
    if priority not in PRIORITY_CLASSES:
        errors["restore_priority"] = f"choose one of: {', '.join(PRIORITY_CLASSES)}"
    values["restore_priority"] = priority
    values["business_critical_included"] = form.get("business_critical_included") in ("on", "true", "1")
    if errors:
        raise TierError(errors)
    return values


def _check_unique_name(name: str, tier_id: int | None) -> None:
    clash = db.session.scalar(select(SlaTier.id).where(func.lower(SlaTier.name) == name.lower()))
    if clash is not None and clash != tier_id:
        raise TierError({"name": "another tier already has this name"})


def create(actor: User, values: dict[str, Any]) -> SlaTier:
    """Add a tier (values from ``parse_form``); audited, committed."""
    _check_unique_name(values["name"], None)
    tier = SlaTier(**values)
    db.session.add(tier)
    db.session.flush()
    audit.record(actor, "tier.create", tier, after=snapshot(tier))
    db.session.commit()
    return tier


def update(actor: User, tier: SlaTier, values: dict[str, Any]) -> dict[int, dict[str, dict[str, tuple[Any, Any]]]]:
    """Change a tier and bring every organisation on it inside the new bounds; return the clamps per org.

    Everything (tier, clamped policies, audit rows, notices) lands in one transaction.
    """
    _check_unique_name(values["name"], tier.id)
    before = snapshot(tier)
    for field, value in values.items():
        setattr(tier, field, value)
    after = snapshot(tier)
    if before == after:
        return {}
    audit.record(actor, "tier.update", tier, before=before, after=after)
    changed = {field: after[field] for field in FIELDS if before[field] != after[field]}
    clamps: dict[int, dict[str, dict[str, tuple[Any, Any]]]] = {}
    orgs = list(db.session.scalars(select(Organisation).where(Organisation.tier_id == tier.id,
                                                              Organisation.deletion_due_at.is_(None))))
    for org in orgs:
        clamped = _clamp_organisation(actor, org)
        clamps[org.id] = clamped
        _notify(org, f"The terms of your SLA tier {tier.name} changed on {_today()} "
                     f"({_describe_tier_change(before, changed)}).", clamped)
    db.session.commit()
    ranking.rerank(actor, organisation_ids=[org.id for org in orgs])  # the class may have changed
    return clamps


def _describe_tier_change(before: dict[str, Any], changed: dict[str, Any]) -> str:
    return ", ".join(f"{field.replace('_', ' ')}: {before[field]} → {value}" for field, value in changed.items())


# -- assigning tiers -------------------------------------------------------------------------------------

def assign(actor: User, org: Organisation, tier: SlaTier | None) -> dict[str, dict[str, tuple[Any, Any]]]:
    """Move ``org`` to ``tier`` and clamp its VMs' policies to it; return the clamps by VM name.

    The audit row carries the old and new tier and the date it took effect; the organisation gets a notice.
    """
    old = org.tier
    if (old.id if old else None) == (tier.id if tier else None):
        return {}
    effective = _today()
    org.tier = tier
    audit.record(actor, "organisation.tier", org,
                 before={"tier_id": old.id if old else None, "tier": old.name if old else None},
                 after={"tier_id": tier.id if tier else None, "tier": tier.name if tier else None,
                        "effective": effective})
    clamped = _clamp_organisation(actor, org)
    old_name = old.name if old else "no tier"
    new_name = tier.name if tier else "no tier"
    _notify(org, f"Your SLA tier changed from {old_name} to {new_name} on {effective}.", clamped)
    db.session.commit()
    ranking.rerank(actor, organisation_ids=[org.id])
    return clamped


def _clamp_organisation(actor: User, org: Organisation) -> dict[str, dict[str, tuple[Any, Any]]]:
    """Clamp every live VM of ``org`` to its current tier, auditing each VM whose policy changed."""
    vms = db.session.scalars(
        select(VM).where(VM.organisation_id == org.id, VM.deletion_due_at.is_(None))
        .options(joinedload(VM.policy)).order_by(VM.name)
    )
    result: dict[str, dict[str, tuple[Any, Any]]] = {}
    for vm in vms:
        changes = policies.clamp_to_tier(vm)
        if changes:
            result[vm.name] = changes
            audit.record(actor, "policy.clamp", vm,
                         before={field: old for field, (old, _) in changes.items()},
                         after={field: new for field, (_, new) in changes.items()})
    return result


def _notify(org: Organisation, headline: str, clamped: dict[str, dict[str, tuple[Any, Any]]]) -> Notification:
    """Tell the organisation what changed, naming each clamped VM (up to a limit, then a count)."""
    if not clamped:
        body = "No VM policy needed changing."
    else:
        lines = [f"{name}: " + ", ".join(f"{_label(field)} {old} → {new}" for field, (old, new) in changes.items())
                 for name, changes in list(clamped.items())[:NOTICE_VM_LIMIT]]
        if len(clamped) > NOTICE_VM_LIMIT:
            lines.append(f"and {len(clamped) - NOTICE_VM_LIMIT} more VMs")
        body = f"{len(clamped)} VM policies were brought within the tier: " + "; ".join(lines) + "."
    return notify.notice(notify.TIER_NOTICE, org.id, f"{headline} {body}", key=f"org:{org.id}")


def _label(field: str) -> str:
    return {"rpo_minutes": "RPO (min)", "business_critical": "business-critical"}.get(field,
                                                                                      field.replace("_", " "))


def _today() -> str:
    return clock.now().date().isoformat()


# -- compliance and coverage -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Miss:
    vm: VM
    status: BackupStatus


def compliance(user: User) -> dict[Organisation, list[Miss]]:
    """VMs in the user's scope whose last good backup is older than their RPO (or that have none), by org.

    Excluded VMs and VMs without a policy are left to the coverage view. Two grouped queries for the backup
    ages, whatever the number of VMs (services/status.py).
    """
    query = access.scope_to_user(select(VM), VM.organisation_id, user).join(Policy).where(
        VM.deletion_due_at.is_(None), Policy.excluded.is_(False))
    vms = list(db.session.scalars(query.options(
        joinedload(VM.organisation).joinedload(Organisation.tier), joinedload(VM.policy))).unique())
    found = statuses(vms)
    result: dict[Organisation, list[Miss]] = {}
    for vm in sorted(vms, key=lambda v: (v.organisation.name, v.name)):
        status = found[vm.id]
        if status.state in ("late", "missed", "none"):
            result.setdefault(vm.organisation, []).append(Miss(vm, status))
    return result


def problems(vm: VM) -> list[str]:
    """Why this VM's policy is not valid under its organisation's tier (empty: it is valid)."""
    policy = vm.policy
    if policy is None:
        return ["no backup policy"]
    bounds = policies.Bounds.of(vm.organisation.tier)
    found: list[str] = []
    if not bounds.min_rpo <= policy.rpo_minutes <= policies.MAX_RPO_MINUTES:
        found.append(f"RPO {policy.rpo_minutes} min outside {bounds.min_rpo}–{policies.MAX_RPO_MINUTES}")
    for field in policies.KEEP_FIELDS:
        if getattr(policy, field) > bounds.max_keep[field]:
            found.append(f"{field.replace('_', ' ')} {getattr(policy, field)} above the tier's "
                         f"{bounds.max_keep[field]}")
    if policy.business_critical and vm.environment != "production" and not bounds.business_critical_allowed:
        found.append("business-critical, which the tier does not include")
    if policy.excluded and vm.environment == "production":
        found.append("production VM excluded from backup")
    elif policy.excluded and not policy.exclusion_reason.strip():
        found.append("excluded without a reason")
    return found


def _invalid_policy_clause() -> Any:
    """The SQL twin of ``problems``: lets the database find the invalid VMs so the page can paginate.

    Kept next to ``problems`` on purpose; a test checks that every row it finds has a problem and that every
    VM with a problem is found. An organisation without a tier gets ``Bounds.of(None)``'s values.
    """
    fallback = policies.Bounds.of(None)
    keep_limits = {"keep_hourly": SlaTier.max_keep_hourly, "keep_daily": SlaTier.max_keep_daily,
                   "keep_weekly": SlaTier.max_keep_weekly, "keep_monthly": SlaTier.max_keep_monthly}
    min_rpo = func.coalesce(SlaTier.min_rpo_minutes, fallback.min_rpo)
    return or_(
        Policy.vm_id.is_(None),
        Policy.rpo_minutes < min_rpo,
        Policy.rpo_minutes < policies.MIN_RPO_MINUTES,
        Policy.rpo_minutes > policies.MAX_RPO_MINUTES,
        *(getattr(Policy, field) > func.coalesce(limit, fallback.max_keep[field])
          for field, limit in keep_limits.items()),
        and_(Policy.business_critical.is_(True), VM.environment != "production",
             func.coalesce(SlaTier.business_critical_included, fallback.business_critical_allowed).is_(False)),
        and_(Policy.excluded.is_(True),
             or_(VM.environment == "production", func.trim(func.coalesce(Policy.exclusion_reason, "")) == "")),
    )


def coverage_query(user: User) -> Select[Any]:
    """Live VMs in the user's scope without a valid policy, ordered by organisation and name."""
    query = (
        select(VM).join(Organisation, VM.organisation_id == Organisation.id)
        .outerjoin(SlaTier, Organisation.tier_id == SlaTier.id)
        .outerjoin(Policy, Policy.vm_id == VM.id)
        .where(VM.deletion_due_at.is_(None), _invalid_policy_clause())
        .order_by(Organisation.name, VM.name)
    )
    return access.scope_to_user(query, VM.organisation_id, user)


def coverage(user: User, *, limit: int, offset: int = 0) -> tuple[list[tuple[VM, list[str]]], int]:
    """One page of VMs without a valid policy, each with its problems, and the total count."""
    query = coverage_query(user)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    vms = db.session.scalars(query.options(
        joinedload(VM.organisation).joinedload(Organisation.tier), joinedload(VM.policy)
    ).limit(limit).offset(offset)).unique()
    return [(vm, problems(vm)) for vm in vms], total
