"""Key changes on a repository: a new data key (rotation) and a new organisation key (rewrap).

Neither re-encrypts a chunk. Rotation puts a new data key in front of ``encryption.data_keys`` in
``repository.json``: from then on chunks and manifests are sealed with it, and the old keys stay to open what
they sealed (a chunk names its data key in its header). Rewrapping wraps the same name and data keys by another
organisation key (after the organisation's key changed, or when a repository moves to another organisation):
a few hundred bytes rewritten, however large the repository. Both run under the exclusive lock and write
``repository.json`` atomically: interrupted, the repository has the old description or the new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import clock, crypto
from .errors import StorageError
from .keys import Key, KeyRing
from .repository import Repository


class NotEncrypted(StorageError):
    """the repository of VM {!r} is not encrypted: there are no keys to change (convert it with a copy)"""


@dataclass
class KeyChange:
    vm: str
    data_keys: list[str] = field(default_factory=list)  # newest (writing) first
    wrapped_by: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def describe(repo: Repository) -> KeyChange:
    encryption = repo.config.get("encryption")
    if encryption is None:
        raise NotEncrypted(repo.vm)
    return KeyChange(repo.vm, [e["id"] for e in encryption["data_keys"]], crypto.wrapping_keys(encryption))


def rotate(root: str, vm: str, ring: KeyRing, *, new_key: Key | None = None, wait: float | None = 0.0) -> KeyChange:
    """A new data key for ``vm``, wrapped by ``new_key`` (default: the ring's current key); with ``new_key``,
    every older key is rewrapped by it too, so the repository then needs only the new organisation key."""
    repo = Repository.open(root, vm, keys=ring)
    if not repo.encrypted:
        raise NotEncrypted(vm)
    with repo.lock(exclusive=True, wait=wait, purpose="key rotation"):
        repo = Repository.open(root, vm, keys=ring)  # the description as it is now, under the lock
        encryption = dict(repo.config["encryption"])
        by = new_key or ring.current
        if by is None:  # pragma: no cover - a ring from a key file always has a current key
            raise NotEncrypted(vm)
        if new_key is not None:
            encryption = crypto.rewrapped(encryption, ring, new_key, vm)
            ring = KeyRing(lambda key_id: new_key if key_id == new_key.id else None, new_key)
        encryption = crypto.with_new_data_key(encryption, ring, by, clock.isoformat(clock.now()), vm)
        repo.replace_encryption(encryption)
    return describe(repo)


def rewrap(root: str, vm: str, ring: KeyRing, new_key: Key, *, wait: float | None = 0.0) -> KeyChange:
    """Wrap ``vm``'s keys by ``new_key`` instead (no data key changes, no chunk is touched)."""
    repo = Repository.open(root, vm, keys=ring)
    if not repo.encrypted:
        raise NotEncrypted(vm)
    with repo.lock(exclusive=True, wait=wait, purpose="key rewrap"):
        repo = Repository.open(root, vm, keys=ring)  # the description as it is now, under the lock
        repo.replace_encryption(crypto.rewrapped(repo.config["encryption"], ring, new_key, vm))
    return describe(repo)
