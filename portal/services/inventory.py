"""Inventory sync: the feed adds and updates, and never deletes.

This module exists because a provider once lost a quarter of its disks: a server whose scope had narrowed
to one customer received only that customer's pools, read every other pool's absence as deletion, and
removed them. Here absence only ever sets ``missing_since`` ("not seen since"), and an operator decides.
A feed that would leave more than ``MASS_DROP_THRESHOLD`` of its scope's known VMs missing (those already
missing count too, so small steps do not get around it) is refused as a whole (nothing changes), recorded and
audited. A feed for one organisation can only touch that organisation: naming another is bad input.

Disk sources are what the workers will read and overwrite, so a feed may only name sources inside its scope
(anything else is bad input, nothing changes; see ``check_sources``):

- ``file:PATH`` only below a folder the operator lists in ``INVENTORY_FILE_DIRS`` (none by default: no file
  disks), as a normalised absolute path that does not leave that folder through a symlink;
- ``rbd:POOL/IMAGE`` in the organisation's pools when ``INVENTORY_RBD_POOLS`` lists them, and never in a pool it
  lists only for other organisations;
- and no source that another VM already has (of any organisation), or that two VMs of the feed share.

Every disk added or changed is an audit row with its before and after.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select

from .. import clock
from ..errors import DomainError
from ..extensions import db
from ..models import ENVIRONMENTS, VM, Disk, InventorySync, Organisation, ResourceGroup, User
from . import audit, deletions, notify

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,199}")
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
SOURCE = re.compile(r"(file:/[^\x00-\x1f\x7f]{1,400}|rbd:[A-Za-z0-9._-]{1,100}/[A-Za-z0-9._-]{1,200})")


class FeedError(DomainError, ValueError):
    """The feed itself is malformed or outside its scope (exit code 2, nothing changed)."""

    code = "invalid_feed"


class SyncRefused(DomainError, RuntimeError):
    """The feed is well-formed but applying it would be dangerous (exit code 1, nothing changed)."""

    status = 409
    code = "sync_refused"

    def __init__(self, message: str, sync: InventorySync) -> None:
        super().__init__(message)
        self.sync = sync

    def extra(self) -> dict[str, Any]:
        return {"sync": self.sync.id}


@dataclass
class SyncResult:
    sync: InventorySync
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FeedVM:
    org: str
    group: str
    name: str
    environment: str
    disks: tuple[tuple[str, str, int], ...]

    @property
    def size(self) -> int:
        return sum(size for _, _, size in self.disks)


def parse_feed(document: Any, scope: str) -> tuple[dict[str, str], list[FeedVM]]:
    """Check the whole feed before anything is touched; return organisations (slug: name) and VMs."""
    if not isinstance(document, dict) or not isinstance(document.get("organisations"), list):
        raise FeedError('the feed must be a JSON object with an "organisations" list')
    orgs: dict[str, str] = {}
    vms: list[FeedVM] = []
    seen: set[tuple[str, str]] = set()
    for org in document["organisations"]:
        slug = _text(org, "slug", SLUG, "organisation")
        if scope != "all" and slug != scope:
            raise FeedError(f"organisation {slug!r} is outside this feed's scope {scope!r}")
        orgs[slug] = _text(org, "name", NAME, f"organisation {slug}") if "name" in org else slug
        for group in _list(org, "resource_groups", f"organisation {slug}"):
            group_name = _text(group, "name", NAME, f"a resource group of {slug}")
            for vm in _list(group, "vms", f"resource group {group_name}"):
                name = _text(vm, "name", NAME, f"a VM in {slug}/{group_name}")
                if (slug, name) in seen:
                    raise FeedError(f"VM {name!r} appears twice in organisation {slug!r}")
                seen.add((slug, name))
                environment = vm.get("environment", "production")
                if environment not in ENVIRONMENTS:
                    raise FeedError(f"VM {name!r}: environment must be one of {', '.join(ENVIRONMENTS)}")
                disks = tuple(_disk(d, name) for d in _list(vm, "disks", f"VM {name}"))
                vms.append(FeedVM(slug, group_name, name, environment, disks))
    return orgs, vms


def sync(document: Any, scope: str, actor: User | str) -> SyncResult:
    """Apply a feed for ``scope`` (an organisation slug or ``all``); see the module docstring."""
    orgs, feed_vms = parse_feed(document, scope)
    if scope != "all" and scope not in orgs:
        existing = db.session.scalar(select(Organisation).where(Organisation.slug == scope))
        if existing is None:
            raise FeedError(f"unknown organisation {scope!r}")
    check_sources(feed_vms, scope, current_app.config)
    known = _known_vms(scope)
    listed = {(vm.org, vm.name) for vm in feed_vms}
    missing_after = [vm for key, vm in known.items() if key not in listed]
    newly_missing = [vm for vm in missing_after if vm.missing_since is None]
    actor_label = actor.email if isinstance(actor, User) else actor
    threshold = float(current_app.config["MASS_DROP_THRESHOLD"])
    # Those already missing count: a drop in steps of a few VMs each must meet the guard too. A feed that marks
    # nothing new passes, so VMs that stay missing do not block every later sync.
    if newly_missing and len(missing_after) / len(known) > threshold:
        already = len(missing_after) - len(newly_missing)
        record = InventorySync(scope=scope, status="refused", actor=actor_label, reason=(
            f"the feed would mark {len(missing_after)} of {len(known)} known VMs in scope {scope!r} as missing "
            + (f"({already} of them missing already) " if already else "")
            + f"(more than {threshold:.0%}); refused, nothing changed"),
            summary={"would_mark_missing": sorted(f"{vm.organisation.slug}/{vm.name}" for vm in newly_missing),
                     "already_missing": sorted(f"{vm.organisation.slug}/{vm.name}" for vm in missing_after
                                               if vm.missing_since is not None)})
        db.session.add(record)
        audit.record(actor, "inventory.sync_refused", None, after={"scope": scope, "reason": record.reason},
                     label=scope)
        db.session.commit()
        notify.event("inventory.sync_refused", notify.organisation_by_slug(scope), sync=record.id, scope=scope,
                     reason=record.reason)
        raise SyncRefused(record.reason, record)
    result = _apply(orgs, feed_vms, known, scope, actor)
    result.sync.actor = actor_label
    audit.record(actor, "inventory.sync", None, label=scope, after={
        "scope": scope, "added": len(result.added), "updated": len(result.updated),
        "missing": len(result.missing), "returned": len(result.returned)})
    db.session.commit()
    return result


def _apply(orgs: dict[str, str], feed_vms: list[FeedVM], known: dict[tuple[str, str], VM],
           scope: str, actor: User | str) -> SyncResult:
    now = clock.now()
    record = InventorySync(scope=scope, status="applied")
    db.session.add(record)
    result = SyncResult(record)
    disk_changes: list[tuple[VM, str, str, dict[str, Any] | None, dict[str, Any]]] = []
    org_rows = {o.slug: o for o in db.session.scalars(select(Organisation).where(Organisation.slug.in_(orgs)))}
    for slug, name in orgs.items():
        if slug not in org_rows:
            org_rows[slug] = Organisation(slug=slug, name=name)
            db.session.add(org_rows[slug])
    db.session.flush()
    groups = {(g.organisation_id, g.name): g for g in db.session.scalars(
        select(ResourceGroup).where(ResourceGroup.organisation_id.in_([o.id for o in org_rows.values()])))}
    for item in feed_vms:
        org = org_rows[item.org]
        group = groups.get((org.id, item.group))
        if group is None:
            group = groups[(org.id, item.group)] = ResourceGroup(organisation_id=org.id, name=item.group)
            db.session.add(group)
            db.session.flush()
        vm = known.get((item.org, item.name))
        if vm is None:
            vm = VM(organisation_id=org.id, name=item.name)
            db.session.add(vm)
            result.added.append(f"{item.org}/{item.name}")
        elif (vm.environment, vm.resource_group_id, vm.size_bytes) != (item.environment, group.id, item.size):
            result.updated.append(f"{item.org}/{item.name}")
        if vm.missing_since is not None:
            result.returned.append(f"{item.org}/{item.name}")
            vm.missing_since = None
        vm.environment, vm.resource_group_id, vm.size_bytes = item.environment, group.id, item.size
        vm.last_seen_at = now
        disk_changes += [(vm, f"{item.org}/{item.name}", *change) for change in _update_disks(vm, item, now)]
    listed = {(vm.org, vm.name) for vm in feed_vms}
    for key, vm in known.items():
        if key not in listed and vm.missing_since is None:
            vm.missing_since = now  # absence is a state, never a deletion
            result.missing.append(f"{key[0]}/{key[1]}")
    record.summary = {"added": result.added, "updated": result.updated, "missing": result.missing,
                      "returned": result.returned}
    db.session.flush()  # new VMs get their ids for the audit rows
    for vm, label, action, before, after in disk_changes:
        audit.record(actor, action, vm, before=before, after=after, label=label)
    return result


def _update_disks(vm: VM, item: FeedVM, now: datetime) -> list[tuple[str, dict[str, Any] | None, dict[str, Any]]]:
    """Add and update the VM's disks from the feed; return (audit action, before, after) of each disk changed.

    A disk the feed no longer lists stays, marked ``missing_since`` (the VM's backups fail until it is back or
    an operator removes it: a point silently without it would look complete); one listed again is unmarked.
    """
    changes: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = []
    by_name = {d.name: d for d in vm.disks}
    for name, source, size in item.disks:
        disk = by_name.get(name)
        after = {"disk": name, "source": source, "size": size}
        if disk is None:
            vm.disks.append(Disk(name=name, source=source, size_bytes=size))
            changes.append(("inventory.disk_add", None, after))
            continue
        if disk.missing_since is not None:
            if deletions.cancel_returned(disk, "system:inventory", now):
                after = {**after, "removal_cancelled": True}
            changes.append(("inventory.disk_returned", {"disk": name, "missing_since": disk.missing_since.isoformat()},
                            after))
            disk.missing_since = None
        if (disk.source, disk.size_bytes) != (source, size):
            changes.append(("inventory.disk_change", {"disk": name, "source": disk.source, "size": disk.size_bytes},
                            after))
            disk.source, disk.size_bytes = source, size
    listed = {name for name, _, _ in item.disks}
    for disk in vm.disks:
        if disk.name not in listed and disk.missing_since is None:
            disk.missing_since = now  # absence is a state, never a deletion
            changes.append(("inventory.disk_missing", {"disk": disk.name, "source": disk.source},
                            {"disk": disk.name, "missing_since": now.isoformat()}))
    return changes


def check_sources(feed_vms: list[FeedVM], scope: str, config: Any) -> None:
    """Refuse (FeedError) a disk source outside the feed's scope or taken by another VM; see the module docstring.

    Only sources a VM does not have yet are checked against other VMs, so a feed that repeats what is already
    there (even an old overlap) still applies. Another organisation's VM is not named to a scoped feed.
    """
    file_dirs = _file_dirs(config.get("INVENTORY_FILE_DIRS"))
    pools = _pools(config.get("INVENTORY_RBD_POOLS"))
    owners: dict[str, set[tuple[str, str]]] = {}
    for source, org, vm in db.session.execute(select(Disk.source, Organisation.slug, VM.name)
                                              .join(VM, Disk.vm_id == VM.id).join(Organisation)):
        owners.setdefault(_canonical(source), set()).add((org, vm))
    in_feed: dict[str, tuple[str, str, str]] = {}
    for item in feed_vms:
        for name, source, _ in item.disks:
            where = f"disk {name!r} of VM {item.org}/{item.name}"
            if source.startswith("file:"):
                _check_file(source[len("file:"):], file_dirs, where)
            else:
                _check_pool(source[len("rbd:"):].split("/", 1)[0], item.org, pools, where)
            key = _canonical(source)
            first = in_feed.setdefault(key, (item.org, item.name, name))
            if first != (item.org, item.name, name):
                raise FeedError(f"{where}: {source} is also disk {first[2]!r} of VM {first[0]}/{first[1]} in this feed")
            holders = owners.get(key, set())
            if (item.org, item.name) in holders or not holders:
                continue
            if scope != "all" and any(org != scope for org, _ in holders):
                raise FeedError(f"{where}: {source} is the disk of another organisation's VM")
            names = ", ".join(f"{org}/{vm}" for org, vm in sorted(holders))
            raise FeedError(f"{where}: {source} is already the disk of VM {names}; a disk belongs to one VM")


def _canonical(source: str) -> str:
    """One spelling per disk: a file path with its symlinks resolved (two names of one image are one disk)."""
    return "file:" + os.path.realpath(source[len("file:"):]) if source.startswith("file:") else source


def _inside(path: str, folder: str) -> bool:
    return path != folder and os.path.commonpath([path, folder]) == folder


def _check_file(path: str, dirs: list[tuple[str, str]], where: str) -> None:
    if not os.path.isabs(path) or os.path.normpath(path) != path:
        raise FeedError(f"{where}: {path!r} must be a normalised absolute path (no '.', '..' or '//')")
    if not dirs:
        raise FeedError(f"{where}: file disks are not allowed here (the operator lists the folders that hold disk "
                        "images in LIFEBOAT_INVENTORY_FILE_DIRS)")
    real = os.path.realpath(path)
    if not any((_inside(path, given) or _inside(path, resolved)) and _inside(real, resolved)
               for given, resolved in dirs):
        raise FeedError(f"{where}: {path} is not inside a folder listed in LIFEBOAT_INVENTORY_FILE_DIRS")


def _check_pool(pool: str, org: str, pools: dict[str, list[str]], where: str) -> None:
    own = pools.get(org)
    if own is not None and pool not in own:
        raise FeedError(f"{where}: pool {pool!r} is not one of organisation {org}'s pools ({', '.join(own)})")
    if own is None and any(pool in listed for other, listed in pools.items() if other != org):
        raise FeedError(f"{where}: pool {pool!r} belongs to another organisation")


def _file_dirs(value: Any) -> list[tuple[str, str]]:
    """INVENTORY_FILE_DIRS as (normalised, symlink-resolved) folders; a JSON list or comma-separated."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(d, str) and os.path.isabs(d.strip()) for d in value):
        raise FeedError("LIFEBOAT_INVENTORY_FILE_DIRS must be a list of absolute folders")
    return [(os.path.normpath(d.strip()), os.path.realpath(d.strip())) for d in value]


def _pools(value: Any) -> dict[str, list[str]]:
    if value in (None, "", {}):
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, list)
                                              and all(isinstance(p, str) for p in v) for k, v in value.items()):
        raise FeedError('LIFEBOAT_INVENTORY_RBD_POOLS must map organisation slugs to lists of pools, '
                        'e.g. {"acme": ["ssd-acme"]}')
    return value


def _known_vms(scope: str) -> dict[tuple[str, str], VM]:
    query = select(VM).join(Organisation).where(VM.deletion_due_at.is_(None))
    if scope != "all":
        query = query.where(Organisation.slug == scope)
    return {(vm.organisation.slug, vm.name): vm for vm in db.session.scalars(query)}


def export(scope: str = "all") -> dict[str, Any]:
    """The inventory as a feed that ``sync`` accepts (VMs pending deletion left out)."""
    query = select(Organisation).order_by(Organisation.slug)
    if scope != "all":
        query = query.where(Organisation.slug == scope)
    organisations = []
    for org in db.session.scalars(query):
        groups: dict[str, list[dict[str, Any]]] = {}
        vms = db.session.scalars(select(VM).where(VM.organisation_id == org.id, VM.deletion_due_at.is_(None))
                                 .order_by(VM.name))
        for vm in vms:
            group = vm.resource_group.name if vm.resource_group else "default"
            groups.setdefault(group, []).append({
                "name": vm.name, "environment": vm.environment,
                "disks": [{"name": d.name, "source": d.source, "size": d.size_bytes} for d in vm.disks],
            })
        organisations.append({"slug": org.slug, "name": org.name, "resource_groups": [
            {"name": name, "vms": items} for name, items in sorted(groups.items())]})
    return {"organisations": organisations}


def _text(obj: Any, key: str, pattern: re.Pattern[str], where: str) -> str:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise FeedError(f"{where}: {key!r} is missing or not a valid name")
    return value


def _list(obj: Any, key: str, where: str) -> list[Any]:
    value = obj.get(key, []) if isinstance(obj, dict) else None
    if not isinstance(value, list):
        raise FeedError(f"{where}: {key!r} must be a list")
    return value


def _disk(disk: Any, vm: str) -> tuple[str, str, int]:
    name = _text(disk, "name", NAME, f"a disk of VM {vm}")
    source = disk.get("source")
    if not isinstance(source, str) or not SOURCE.fullmatch(source):
        raise FeedError(f"disk {name!r} of VM {vm}: source must be file:/PATH or rbd:POOL/IMAGE")
    size = disk.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**63:
        raise FeedError(f"disk {name!r} of VM {vm}: size must be a whole number of bytes")
    return name, source, size
