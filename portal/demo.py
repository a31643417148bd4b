"""Demo data for ``make run``: two organisations on different tiers, the fixed demo logins, and VMs whose
disks are small real images (GPT + ext4 with files) backed up by the real engine."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from storage.backup import backup
from storage.repository import repository_exists

from . import clock
from .config import var_folder
from .extensions import db
from .models import VM, ApiToken, Incident, Organisation, SlaTier, User
from .services import catalog, incidents, inventory, policies, tokens

PASSWORD = "demo"  # noqa: S105 - the documented demo password, only ever seeded in demo mode
MiB = 1024 * 1024

TIERS = [
    dict(name="Premium", min_rpo_minutes=15, max_keep_hourly=48, max_keep_daily=30, max_keep_weekly=12,
         max_keep_monthly=12, restore_priority="critical", rto_minutes=60, business_critical_included=True),
    dict(name="Business", min_rpo_minutes=60, max_keep_hourly=24, max_keep_daily=14, max_keep_weekly=8,
         max_keep_monthly=6, restore_priority="high", rto_minutes=240, business_critical_included=True),
    dict(name="Basic", min_rpo_minutes=1440, max_keep_hourly=0, max_keep_daily=7, max_keep_weekly=4,
         max_keep_monthly=1, restore_priority="normal", rto_minutes=0, business_critical_included=False),
]
ORGS = {
    "acme": ("Acme Corporation", "Premium", [("web", [("web-1", "production"), ("db-1", "production")]),
                                              ("staging", [("staging-api", "staging")])]),
    "globex": ("Globex Inc.", "Basic", [("shop", [("shop-1", "production"), ("dev-box", "development")])]),
}
USERS = [
    ("admin@acme.example", "customer_admin", "acme"),
    ("dev@acme.example", "customer_member", "acme"),
    ("admin@globex.example", "customer_admin", "globex"),
    ("manager@lifeboat.example", "account_manager", None),
    ("operator@lifeboat.example", "operator", None),
]


def seed() -> Iterator[str]:
    tiers = {t["name"]: _tier(t) for t in TIERS}
    images = os.path.join(var_folder(current_app.config), "demo-images")
    os.makedirs(images, exist_ok=True)
    feed = {"organisations": [
        {"slug": slug, "name": name, "resource_groups": [
            {"name": group, "vms": [
                {"name": vm, "environment": env, "disks": [
                    {"name": "root", "source": f"file:{os.path.join(images, f'{slug}-{vm}.img')}",
                     "size": 48 * MiB}]}
                for vm, env in vms]}
            for group, vms in groups]}
        for slug, (name, _, groups) in ORGS.items()]}
    rbd_image = current_app.config.get("DEMO_RBD", "") or _earlier_rbd_image()
    if rbd_image:  # the loopback cluster of `make run` is up (portal.demo_ceph), or was: one VM on RBD
        feed["organisations"][0]["resource_groups"][0]["vms"].append(  # type: ignore[index]
            {"name": "app-rbd", "environment": "production",
             "disks": [{"name": "root", "source": f"rbd:{rbd_image}", "size": 48 * MiB}]})
    allowed = current_app.config["INVENTORY_FILE_DIRS"]  # the demo's disks are files in its own folder
    allowed = allowed.split(",") if isinstance(allowed, str) else list(allowed)
    current_app.config["INVENTORY_FILE_DIRS"] = allowed if images in allowed else [*allowed, images]
    inventory.sync(feed, "all", actor="demo:seed")
    manager = _user("manager@lifeboat.example", "account_manager", None)
    for slug, (_, tier_name, _) in ORGS.items():
        org = db.session.scalars(select(Organisation).where(Organisation.slug == slug)).one()
        org.tier = tiers[tier_name]
        org.account_manager_id = manager.id
    for email, role, org_slug in USERS:
        _user(email, role, org_slug)
    db.session.commit()
    for vm in db.session.scalars(select(VM).order_by(VM.id)):
        policies.policy_of(vm)
        if vm.name == "staging-api":
            vm.policy.business_critical = True  # type: ignore[union-attr]
        if catalog.refresh(vm) or _has_points(vm):
            continue
        yield from _backups(vm, images)
    db.session.commit()
    yield from _maintenance_window()
    yield from _api_token()
    yield "demo logins (password 'demo'): " + ", ".join(email for email, _, _ in USERS)


def _earlier_rbd_image() -> str:
    """The RBD image of acme/app-rbd when an earlier run (with Ceph) made it: a run without the cluster keeps
    the VM as it is (its page then says why instant restores are refused) rather than marking it missing."""
    vm = db.session.scalars(select(VM).join(Organisation).where(Organisation.slug == "acme",
                                                                VM.name == "app-rbd")).first()
    source = vm.disks[0].source if vm is not None and vm.disks else ""
    return source.removeprefix("rbd:") if source.startswith("rbd:") else ""


def _maintenance_window() -> Iterator[str]:
    """A maintenance window announced ahead, so the customers' banner and status page have something to show."""
    if db.session.scalars(select(Incident)).first() is not None:
        return
    start = clock.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    incidents.open_incident("maintenance", "Storage node maintenance (pool 'file')", "demo:seed", pool="file",
                            starts_at=start, ends_at=start + timedelta(hours=2),
                            message="A storage node of the pool is updated; backups pause and resume afterwards.")
    yield f"announced a maintenance window for {start:%Y-%m-%d %H:%M} UTC"


def _api_token() -> Iterator[str]:
    """A personal access token for acme's admin, made once and printed then (only its hash is stored)."""
    admin = db.session.scalars(select(User).where(User.email == "admin@acme.example")).one()
    if db.session.scalars(select(ApiToken).where(ApiToken.user_id == admin.id, ApiToken.name == "demo")).first():
        return
    _, secret = tokens.create_token(admin, ["backups:read", "restores:read", "restores:write", "policies:read",
                                            "policies:write", "audit:read", "export:read"], name="demo",
                                    actor="demo:seed")
    yield f"API token of admin@acme.example (shown once; see README, REST API): {secret}"


def _has_points(vm: VM) -> bool:
    return repository_exists(current_app.config["STORAGE_ROOT"], vm.repository_name)


def _backups(vm: VM, images: str) -> Iterator[str]:
    disk = vm.disks[0]
    root = current_app.config["STORAGE_ROOT"]
    if disk.source.startswith("rbd:"):  # the image was seeded from its file by portal.demo_ceph: one point
        revision = backup(root, vm.repository_name, disk.source)
        yield f"{vm.organisation.slug}/{vm.name}: backup {revision.id} of {disk.source}"
        catalog.refresh(vm)
        return
    path = disk.source[len("file:"):]
    if not os.path.exists(path):
        make_image(path, 48 * MiB, seed=vm.id)
    for round_ in range(3):
        if round_:
            _change(path, seed=vm.id * 10 + round_)
        revision = backup(root, vm.repository_name, disk.source)
        yield f"{vm.organisation.slug}/{vm.name}: backup {revision.id} ({revision.stats['bytes_written']} bytes new)"
    catalog.refresh(vm)


def _tier(values: dict[str, object]) -> SlaTier:
    tier = db.session.scalars(select(SlaTier).where(SlaTier.name == values["name"])).first()
    if tier is None:
        tier = SlaTier(**values)
        db.session.add(tier)
    return tier


def _user(email: str, role: str, org_slug: str | None) -> User:
    user = db.session.scalars(select(User).where(User.email == email)).first()
    if user is None:
        org = (db.session.scalars(select(Organisation).where(Organisation.slug == org_slug)).one()
               if org_slug else None)
        user = User(email=email, name=email.split("@")[0], role=role, organisation=org)
        user.set_password(PASSWORD)
        db.session.add(user)
        db.session.flush()
    return user


def make_image(path: str, size: int, seed: int) -> None:
    """A GPT disk with one ext4 partition holding a few files (random data without sfdisk/mkfs.ext4)."""
    rng = random.Random(seed)  # noqa: S311 - demo content, not secrets
    with tempfile.TemporaryDirectory() as folder:
        for rel, data in (("etc/hostname", b"demo\n"), ("etc/motd", b"Backed up by Lifeboat\n"),
                          ("var/log/app.log", b"".join(b"request %d ok\n" % n for n in range(50_000))),
                          ("srv/data.bin", rng.randbytes(4 * MiB))):
            os.makedirs(os.path.join(folder, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(folder, rel), "wb") as handle:
                handle.write(data)
        with open(path, "wb") as handle:
            handle.truncate(size)
        sfdisk, mkfs = _tool("sfdisk"), _tool("mkfs.ext4")
        if sfdisk and mkfs:
            layout = "label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
            subprocess.run([sfdisk, "-q", path], input=layout, text=True, check=True, capture_output=True)
            subprocess.run([mkfs, "-q", "-F", "-b", "4096", "-d", folder, "-E", "offset=1048576", path,
                            str((size - 2 * MiB) // 4096)], check=True, capture_output=True)
        else:
            with open(path, "r+b") as handle:
                handle.write(rng.randbytes(8 * MiB))


def _change(path: str, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - demo content, not secrets
    with open(path, "r+b") as handle:
        handle.seek(rng.randrange(20, 40) * MiB)
        handle.write(rng.randbytes(MiB))


def _tool(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)),
                                      None)
