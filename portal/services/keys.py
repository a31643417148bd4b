"""Organisation keys in the portal: one key per organisation, wrapped by the installation's master key, handed to
the engine as a keyring (storage.keys).

- With a master key configured (MASTER_KEY_FILE or MASTER_KEY), an organisation gets its key on its first
  backup, and the backup job creates new repositories encrypted with it ("encrypted by default"). Without one,
  repositories stay plain, as before.
- The engine opens existing repositories through the process keyring ``install`` sets: it finds an
  organisation key by the id a repository's description names, unwrapping it with the master key.
- ``export`` gives an organisation its keys as a key file for its own escrow, once, audited; ``rotate`` starts a
  new organisation key and rewraps every repository of the organisation under it (no data re-encrypted).

Losing the master key loses every organisation key kept here, and with them every encrypted backup whose
organisation did not keep its exported key file (README, "Encryption").
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import select

from storage.errors import StorageError
from storage.keys import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    Key,
    KeyFile,
    KeyRing,
    NoMasterKey,
    master_key,
    new_key_id,
    new_secret,
    set_default_keyring,
    unwrap,
    wrap,
)
from storage.rekey import rewrap
from storage.repository import Repository, has_repository

from .. import clock
from ..errors import DomainError
from ..extensions import db
from ..models import VM, Organisation, OrganisationKey, User
from . import audit


class KeyRefused(DomainError):
    """A key operation the rules refuse (no master key configured, a key already exported)."""

    status = 409
    code = "key_refused"


def master() -> Key | None:
    """The master key from the app's config, or None when encryption is not configured."""
    config = current_app.config
    environ = {MASTER_KEY_FILE_ENV: str(config.get("MASTER_KEY_FILE") or ""),
               MASTER_KEY_ENV: str(config.get("MASTER_KEY") or "")}
    try:
        return master_key(environ)
    except NoMasterKey:
        return None


def _need_master() -> Key:
    key = master()
    if key is None:
        raise KeyRefused("no master key is configured (MASTER_KEY_FILE or MASTER_KEY): repositories are plain")
    return key


def _open(row: OrganisationKey, by: Key) -> Key:
    try:
        secret = unwrap(by, row.wrapped, row.key_id)
    except Exception as exc:  # InvalidTag, or a damaged row
        raise KeyRefused(f"organisation key {row.key_id} does not open with the master key "
                         f"({type(exc).__name__}): is it the installation's master key?") from None
    return Key(row.key_id, secret, row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ") if row.created_at else "")


def _rows(organisation_id: int) -> list[OrganisationKey]:
    return list(db.session.scalars(select(OrganisationKey).where(
        OrganisationKey.organisation_id == organisation_id).order_by(OrganisationKey.id.desc())))


def _new_row(organisation_id: int, by: Key) -> OrganisationKey:
    key_id = new_key_id()
    row = OrganisationKey(organisation_id=organisation_id, key_id=key_id, wrapped=wrap(by, new_secret(), key_id))
    db.session.add(row)
    db.session.flush()
    return row


def keyring_for(organisation_id: int, *, create: bool = True) -> KeyRing | None:
    """The organisation's keys (the newest wraps new repositories); None when encryption is not configured.

    Only this organisation's keys are in it: a repository of one customer never opens with another's key.
    """
    by = master()
    if by is None:
        return None
    rows = _rows(organisation_id)
    if not rows and create:
        rows = [_new_row(organisation_id, by)]
        db.session.commit()
    if not rows:
        return None
    keys = [_open(row, by) for row in rows]
    by_id = {k.id: k for k in keys}
    return KeyRing(by_id.get, keys[0], f"the keys of organisation {organisation_id}")


def lookup(key_id: str) -> Key | None:
    """Any organisation's key by its id (what the engine asks when it opens an existing repository)."""
    by = master()
    if by is None:
        return None
    row = db.session.scalar(select(OrganisationKey).where(OrganisationKey.key_id == key_id))
    return _open(row, by) if row is not None else None


def install(app: Flask) -> None:
    """Make the engine find organisation keys through this app (when a master key is configured)."""
    if not (app.config.get("MASTER_KEY_FILE") or app.config.get("MASTER_KEY")):
        return

    def find(key_id: str) -> Key | None:
        if has_app_context():
            return lookup(key_id)
        with app.app_context():
            return lookup(key_id)

    set_default_keyring(KeyRing(find, None, "the portal's organisation keys"))


def export(organisation: Organisation, actor: User | str) -> str:
    """The organisation's keys as a key file, for its own escrow: once (a second export is refused), audited."""
    by = _need_master()
    rows = _rows(organisation.id)
    if not rows:
        raise KeyRefused(f"organisation {organisation.slug} has no key yet (it gets one with its first backup)")
    done = [row for row in rows if row.exported_at is not None]
    if done and done[0] is rows[0]:
        raise KeyRefused(f"the key of {organisation.slug} was exported at {done[0].exported_at:%Y-%m-%d %H:%M} "
                         "UTC and is shown once; rotate it for a new one to export")
    keyfile = KeyFile([_open(row, by) for row in rows], organisation.slug)
    moment = clock.now()
    for row in rows:
        row.exported_at = row.exported_at or moment
    audit.record(actor, "organisation_key.export", organisation, after={"keys": [r.key_id for r in rows]})
    db.session.commit()
    return keyfile.dumps()


def rotate(organisation: Organisation, actor: User | str) -> dict[str, Any]:
    """A new organisation key; every repository of the organisation's VMs is rewrapped under it."""
    by = _need_master()
    old = keyring_for(organisation.id)
    assert old is not None
    row = _new_row(organisation.id, by)
    new = _open(row, by)
    root = str(current_app.config["STORAGE_ROOT"])
    rewrapped, failed = [], {}
    for vm in db.session.scalars(select(VM).where(VM.organisation_id == organisation.id)):
        if not has_repository(root, vm.repository_name):
            continue
        try:
            if Repository.open(root, vm.repository_name, require_key=False).encrypted:
                rewrap(root, vm.repository_name, old, new, wait=30.0)
                rewrapped.append(vm.repository_name)
        except StorageError as exc:  # busy or damaged: the old key stays to open it; run rotate again
            failed[vm.repository_name] = str(exc)
    audit.record(actor, "organisation_key.rotate", organisation,
                 after={"key": new.id, "rewrapped": rewrapped, "failed": failed})
    db.session.commit()
    return {"key": new.id, "rewrapped": rewrapped, "failed": failed}
