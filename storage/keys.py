"""Keys: organisation key files, the installation's master key, wrapping, and the keyring the engine reads.

The hierarchy (docs/FORMAT.md, "Encryption"):

- a **data key** per repository (random, 32 bytes) encrypts its chunks and manifests; a **name key** per
  repository (random, 32 bytes, never rotated so deduplication holds) names chunks by a keyed BLAKE3. Both live
  in ``repository.json`` only wrapped (AES-256-GCM) by
- the **organisation key** (32 bytes, one per customer organisation): the key file ``--key-file`` names. In the
  portal it is stored wrapped by
- the installation's **master key** (``LIFEBOAT_MASTER_KEY_FILE``, a key file, or ``LIFEBOAT_MASTER_KEY``,
  base64 of 32 bytes).

Rotating a data key adds one (old ones stay to read old chunks); changing the organisation key rewraps the
entries of ``repository.json`` without touching a chunk. Losing the organisation key (and its master-wrapped
copy) loses every encrypted backup of the organisation: there is no back door.

This module imports nothing of the engine: keys are bytes and small JSON documents.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import StorageError

KEY_FORMAT = "lifeboat-key"
KEY_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
#: the most bytes of a key file read (a few hundred per key)
MAX_KEY_FILE_BYTES = 1 << 20
#: the environment variables the engine and the portal read
KEY_FILE_ENV = "LIFEBOAT_KEY_FILE"
MASTER_KEY_FILE_ENV = "LIFEBOAT_MASTER_KEY_FILE"
MASTER_KEY_ENV = "LIFEBOAT_MASTER_KEY"
_WRAP_CONTEXT = b"lifeboat-wrap\0"


class BadKeyFile(StorageError):
    """cannot use key file {}: {}"""


class KeyRequired(StorageError):
    """the repository of VM {!r} is encrypted: give its organisation key (--key-file PATH or LIFEBOAT_KEY_FILE)"""


class WrongKey(StorageError):
    """the key given cannot open the repository of VM {!r}: {}"""


class NoMasterKey(StorageError):
    """no master key: set LIFEBOAT_MASTER_KEY_FILE (a key file) or LIFEBOAT_MASTER_KEY (base64 of 32 bytes)"""


def new_key_id() -> str:
    return "k-" + secrets.token_hex(8)


def new_secret() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"{what} is not valid base64") from None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Key:
    """A named 32-byte secret: an organisation key or the master key."""

    id: str
    secret: bytes = field(repr=False)
    created: str = ""

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "key": b64(self.secret), "created": self.created}


# -- wrapping --------------------------------------------------------------------------------------------


def wrap(by: Key, secret: bytes, purpose: str) -> dict[str, str]:
    """``secret`` encrypted under ``by``; ``purpose`` (the entry's id) is bound in, so entries cannot swap."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(by.secret).encrypt(nonce, secret, _WRAP_CONTEXT + purpose.encode())
    return {"by": by.id, "nonce": b64(nonce), "data": b64(sealed)}


def unwrap(by: Key, wrapped: dict[str, Any], purpose: str) -> bytes:
    """The secret inside ``wrapped``; InvalidTag when ``by`` is not the key it was wrapped with (or it changed)."""
    nonce = unb64(wrapped.get("nonce"), "nonce")
    data = unb64(wrapped.get("data"), "wrapped key")
    return AESGCM(by.secret).decrypt(nonce, data, _WRAP_CONTEXT + purpose.encode())


def check_wrapped(value: object, what: str) -> dict[str, Any]:
    """A wrapped key entry as found in a file (types only: whether it opens is for the key to say)."""
    if not isinstance(value, dict) or not isinstance(value.get("by"), str):
        raise ValueError(f"{what} must be a wrapped key ({{by, nonce, data}})")
    if len(unb64(value.get("nonce"), "nonce")) != NONCE_BYTES:
        raise ValueError(f"{what}: the nonce must be {NONCE_BYTES} bytes")
    if len(unb64(value.get("data"), "wrapped key")) != KEY_BYTES + 16:
        raise ValueError(f"{what}: a wrapped key is {KEY_BYTES + 16} bytes")
    return value


# -- key files -------------------------------------------------------------------------------------------


@dataclass
class KeyFile:
    """An organisation's keys: ``keys[0]`` wraps new data keys; older ones still open what they wrapped."""

    keys: list[Key]
    organisation: str = ""

    @property
    def current(self) -> Key:
        return self.keys[0]

    def to_json(self) -> dict[str, Any]:
        return {"format": KEY_FORMAT, "version": KEY_VERSION, "organisation": self.organisation,
                "keys": [k.to_json() for k in self.keys]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def create(cls, organisation: str = "") -> KeyFile:
        return cls([Key(new_key_id(), new_secret(), _now())], organisation)

    def rotated(self) -> KeyFile:
        """A new current key in front of the old ones (which keep opening what they wrapped)."""
        return KeyFile([Key(new_key_id(), new_secret(), _now()), *self.keys], self.organisation)

    @classmethod
    def parse(cls, data: bytes, where: str) -> KeyFile:
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != KEY_FORMAT:
                raise ValueError("not a Lifeboat key file")
            if doc.get("version") != KEY_VERSION:
                raise ValueError(f"key file version {doc.get('version')!r} is not {KEY_VERSION}")
            items = doc.get("keys")
            if not isinstance(items, list) or not items:
                raise ValueError("it holds no keys")
            keys = []
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
                    raise ValueError("each key needs an id")
                secret = unb64(item.get("key"), "key")
                if len(secret) != KEY_BYTES:
                    raise ValueError(f"key {item['id']} is not {KEY_BYTES} bytes")
                keys.append(Key(item["id"], secret, str(item.get("created", ""))))
            organisation = doc.get("organisation", "")
            if not isinstance(organisation, str):
                raise ValueError("organisation must be a string")
        except (ValueError, RecursionError) as exc:
            raise BadKeyFile(where, str(exc)[:200]) from None
        return cls(keys, organisation)

    @classmethod
    def load(cls, path: str) -> KeyFile:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as exc:
            raise BadKeyFile(path, exc.strerror or exc) from None
        if len(data) > MAX_KEY_FILE_BYTES:
            raise BadKeyFile(path, "too large for a key file")
        return cls.parse(data, path)

    def save(self, path: str, *, overwrite: bool = False) -> None:
        """Write the key file readable by its owner only; never over an existing file unless asked."""
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise BadKeyFile(path, "the file exists; choose another name") from None
        except OSError as exc:
            raise BadKeyFile(path, exc.strerror or exc) from None
        with os.fdopen(fd, "w") as handle:
            handle.write(self.dumps())
            handle.flush()
            os.fsync(handle.fileno())


def master_key(environ: dict[str, str] | None = None) -> Key:
    """The installation's master key, from LIFEBOAT_MASTER_KEY_FILE or LIFEBOAT_MASTER_KEY; NoMasterKey else."""
    env = os.environ if environ is None else environ
    path = env.get(MASTER_KEY_FILE_ENV)
    if path:
        return KeyFile.load(path).current
    value = env.get(MASTER_KEY_ENV)
    if not value:
        raise NoMasterKey()
    try:
        secret = unb64(value.strip(), MASTER_KEY_ENV)
    except ValueError as exc:
        raise BadKeyFile(MASTER_KEY_ENV, exc) from None
    if len(secret) != KEY_BYTES:
        raise BadKeyFile(MASTER_KEY_ENV, f"the master key must be {KEY_BYTES} bytes")
    return Key("master-" + secret_fingerprint(secret), secret)


def secret_fingerprint(secret: bytes) -> str:
    """A short public name of a secret (never the secret): the first 8 bytes of its SHA-256, hex."""
    import hashlib

    return hashlib.sha256(b"lifeboat-fingerprint\0" + secret).hexdigest()[:16]


# -- the keyring the engine reads ------------------------------------------------------------------------

#: find(organisation key id) -> the key, or None when it is not known here
KeyLookup = Callable[[str], "Key | None"]


@dataclass
class KeyRing:
    """The organisation keys a process may use: what it looks keys up in, and the one new repositories get."""

    lookup: KeyLookup
    #: wraps the data keys of repositories created with this keyring (None: new repositories are plain)
    current: Key | None = None
    #: where the keys came from, for messages ("key file /x.key")
    origin: str = ""

    @classmethod
    def of(cls, keyfile: KeyFile, origin: str = "") -> KeyRing:
        by_id = {k.id: k for k in keyfile.keys}
        return cls(by_id.get, keyfile.current, origin)

    @classmethod
    def from_file(cls, path: str) -> KeyRing:
        return cls.of(KeyFile.load(path), f"key file {path}")


_lock = threading.Lock()
_default: list[KeyRing | None] = [None]
_env_cache: dict[str, KeyRing] = {}


def default_keyring() -> KeyRing | None:
    """The keyring set by ``set_default_keyring`` (the CLI's --key-file, the portal's resolver), else the key
    file LIFEBOAT_KEY_FILE names (so nbdkit's plugin process, started with our environment, finds it)."""
    with _lock:
        ring = _default[0]
        if ring is not None:
            return ring
        path = os.environ.get(KEY_FILE_ENV)
        if not path:
            return None
        if path not in _env_cache:
            _env_cache[path] = KeyRing.from_file(path)
        return _env_cache[path]


def set_default_keyring(ring: KeyRing | None) -> None:
    with _lock:
        _default[0] = ring


@contextmanager
def using(ring: KeyRing | None) -> Iterator[None]:
    """Make ``ring`` the default keyring for the block (tests, one-off scripts), then restore the previous."""
    with _lock:
        before = _default[0]
        _default[0] = ring
    try:
        yield
    finally:
        with _lock:
            _default[0] = before


__all__ = ["InvalidTag", "Key", "KeyFile", "KeyRing", "BadKeyFile", "KeyRequired", "WrongKey", "NoMasterKey"]
