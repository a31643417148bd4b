"""What the bytes of an encrypted repository are: chunk names, sealed chunks and sealed manifests.

The repository (``storage.repository``) asks its codec to name a block, seal and open a chunk, and seal and
open a manifest; the plain codec there writes exactly what Lifeboat always wrote, this one:

- names a block by BLAKE3 keyed with the repository's name key (so a name reveals nothing of the block, and
  equal blocks still get one name: deduplication within the repository holds);
- stores a chunk as ``"LBE1" | data key id (8) | nonce (12) | AES-256-GCM(zstd frame, aad=name) | BLAKE3 of
  everything before (32)``: the associated data binds a chunk to its name (no swapping files), and the outer
  hash lets a holder without the key (a replica) find bit rot (``verify --without-key``);
- stores a manifest as a version 3 envelope: outside, what a holder without the key needs and may know (id,
  created, chunk size, trust, protection, the set of chunk names); inside, sealed, the whole version 2
  manifest (disks, sources, sizes, chunk lists, tags, stats). The outside fields a verify changes (trust,
  verified_at, protected) are the envelope's, so a replica without the key can record what it verified; the
  others are bound to the sealed part as its associated data.

Data keys rotate (the newest writes; a chunk names its key); the name key never does (docs/FORMAT.md).
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import CorruptRepository
from .keys import KEY_BYTES, NONCE_BYTES, Key, KeyRing, WrongKey, b64, check_wrapped, new_secret, unb64, unwrap, wrap
from .manifest import MANIFEST_FORMAT, TRUST_STATES, Revision

CIPHER = "aes-256-gcm"
NAMES = "blake3-keyed"
CHUNK_MAGIC = b"LBE1"
KEY_ID_BYTES = 8
HEADER_BYTES = len(CHUNK_MAGIC) + KEY_ID_BYTES + NONCE_BYTES
TAG_BYTES = 16
OUTER_BYTES = 32
#: bytes a sealed chunk has beyond its zstd frame
OVERHEAD = HEADER_BYTES + TAG_BYTES + OUTER_BYTES
#: the manifest version of an encrypted repository (a sealed version 2 manifest inside an envelope)
SEALED_VERSION = 3
_CHUNK_AAD = b"lifeboat-chunk\0"
_MANIFEST_AAD = b"lifeboat-manifest\0"
_NAME_PURPOSE = "names"


class Broken(Exception):
    """A sealed object that does not open: its reason (the repository turns it into ChunkDamaged)."""


def new_data_key_id() -> str:
    return "d-" + secrets.token_hex(KEY_ID_BYTES)


def new_encryption(by: Key, created: str) -> dict[str, Any]:
    """The ``encryption`` block of a new repository: a name key and a first data key, wrapped by ``by``."""
    data_id = new_data_key_id()
    return {"cipher": CIPHER, "names": NAMES,
            "name_key": wrap(by, new_secret(), _NAME_PURPOSE),
            "data_keys": [{"id": data_id, "created": created, "wrapped": wrap(by, new_secret(), data_id)}]}


def check_encryption(value: object) -> dict[str, Any]:
    """The ``encryption`` block of a repository.json, its types checked (ValueError otherwise)."""
    if not isinstance(value, dict):
        raise ValueError("encryption must be an object")
    if value.get("cipher") != CIPHER or value.get("names") != NAMES:
        raise ValueError(f"unsupported cipher or chunk names (this Lifeboat knows {CIPHER}, {NAMES})")
    check_wrapped(value.get("name_key"), "name_key")
    entries = value.get("data_keys")
    if not isinstance(entries, list) or not entries:
        raise ValueError("data_keys must list at least one key")
    seen = set()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ValueError("each data key needs an id")
        key_id = entry["id"]
        if not key_id.startswith("d-") or len(key_id) != 2 + 2 * KEY_ID_BYTES or key_id in seen:
            raise ValueError(f"data key id {key_id[:40]!r} is invalid or repeated")
        bytes.fromhex(key_id[2:])
        seen.add(key_id)
        check_wrapped(entry.get("wrapped"), f"data key {key_id}")
    return value


def wrapping_keys(encryption: dict[str, Any]) -> list[str]:
    """The organisation key ids that wrap this repository's keys (one, unless a rewrap was interrupted)."""
    ids = [encryption["name_key"]["by"]] + [e["wrapped"]["by"] for e in encryption["data_keys"]]
    return list(dict.fromkeys(ids))


def _find(ring: KeyRing | None, key_id: str) -> Key | None:
    return ring.lookup(key_id) if ring is not None else None


def unwrap_all(vm: str, encryption: dict[str, Any], ring: KeyRing | None) -> tuple[bytes, dict[bytes, bytes]]:
    """The name key and the data keys (id bytes -> key) of a repository; WrongKey when the ring cannot open them.

    Raises KeyError-free WrongKey with the key ids in the message: what an operator needs to find the right file.
    """
    secrets_by_id: dict[bytes, bytes] = {}
    try:
        by = _find(ring, encryption["name_key"]["by"])
        if by is None:
            raise WrongKey(vm, f"its keys are wrapped by organisation key {encryption['name_key']['by']}, "
                               f"which {ring.origin if ring and ring.origin else 'the key given'} does not hold")
        name_key = unwrap(by, encryption["name_key"], _NAME_PURPOSE)
        for entry in encryption["data_keys"]:
            by = _find(ring, entry["wrapped"]["by"])
            if by is None:
                raise WrongKey(vm, f"data key {entry['id']} is wrapped by organisation key "
                                   f"{entry['wrapped']['by']}, which the key given does not hold")
            secrets_by_id[bytes.fromhex(entry["id"][2:])] = unwrap(by, entry["wrapped"], entry["id"])
    except InvalidTag:
        raise WrongKey(vm, "a key of the same id but other bytes, or a damaged repository.json") from None
    if len(name_key) != KEY_BYTES or any(len(k) != KEY_BYTES for k in secrets_by_id.values()):
        raise WrongKey(vm, "an unwrapped key has the wrong length")
    return name_key, secrets_by_id


def rewrapped(encryption: dict[str, Any], old: KeyRing, new: Key, vm: str) -> dict[str, Any]:
    """The same keys wrapped by ``new`` (no chunk is touched: they stay encrypted under the same data keys)."""
    name_key, data_keys = unwrap_all(vm, encryption, old)
    result = dict(encryption)
    result["name_key"] = wrap(new, name_key, _NAME_PURPOSE)
    result["data_keys"] = [{**entry, "wrapped": wrap(new, data_keys[bytes.fromhex(entry["id"][2:])], entry["id"])}
                           for entry in encryption["data_keys"]]
    return result


def with_new_data_key(encryption: dict[str, Any], ring: KeyRing, by: Key, created: str,
                      vm: str) -> dict[str, Any]:
    """A new data key in front (it writes from now on); the old ones stay to read what they wrote."""
    unwrap_all(vm, encryption, ring)  # the ring must open the repository before we add to it
    data_id = new_data_key_id()
    result = dict(encryption)
    result["data_keys"] = [{"id": data_id, "created": created, "wrapped": wrap(by, new_secret(), data_id)},
                           *encryption["data_keys"]]
    return result


def outer_hash(stored: bytes | memoryview) -> bytes:
    return blake3.blake3(stored).digest()


class SealedCodec:
    """Chunks and manifests of an encrypted repository. With keys (``name_key``), everything; without (a
    replica), only what needs no key: the outer hash of chunks and the envelope of manifests."""

    encrypted = True

    def __init__(self, vm: str, encryption: dict[str, Any], ring: KeyRing | None, *, require_key: bool) -> None:
        self.vm = vm
        self.encryption = encryption
        self.name_key: bytes | None = None
        self._keys: dict[bytes, AESGCM] = {}
        self._scratch = _Scratch()
        self._current = bytes.fromhex(encryption["data_keys"][0]["id"][2:])
        if ring is None and require_key:
            from .keys import KeyRequired

            raise KeyRequired(vm)
        if ring is None or (not require_key and all(_find(ring, k) is None for k in wrapping_keys(encryption))):
            return  # the keyless view: store, verify the outer hash, serve ciphertext
        self.name_key, data_keys = unwrap_all(vm, encryption, ring)
        self._keys = {key_id: AESGCM(secret) for key_id, secret in data_keys.items()}

    @property
    def can_read(self) -> bool:
        return self.name_key is not None

    def _need_key(self) -> bytes:
        if self.name_key is None:
            from .keys import KeyRequired

            raise KeyRequired(self.vm)
        return self.name_key

    # -- chunks ----------------------------------------------------------------------------------
    def name(self, data: bytes) -> str:
        return blake3.blake3(data, key=self._need_key()).hexdigest()

    def seal_chunk(self, chunk: str, frame: bytes) -> bytes:
        """The sealed chunk, built in one buffer: a 4 MiB allocation per chunk costs page faults (measured: the
        encrypt-then-join version spent 40% more system time on a backup than plain), so there is one, not three."""
        self._need_key()
        nonce = secrets.token_bytes(NONCE_BYTES)
        out = bytearray(HEADER_BYTES + len(frame) + TAG_BYTES + OUTER_BYTES)
        out[:HEADER_BYTES] = CHUNK_MAGIC + self._current + nonce
        view = memoryview(out)
        self._keys[self._current].encrypt_into(nonce, frame, _CHUNK_AAD + chunk.encode(),
                                               view[HEADER_BYTES:-OUTER_BYTES])
        view[-OUTER_BYTES:] = outer_hash(view[:-OUTER_BYTES])
        return out  # type: ignore[return-value]  # a bytearray is bytes to its readers (os.write, len)

    def check_outer(self, stored: bytes) -> None:
        """Bit rot, truncation, a file that is not a sealed chunk: found without the key."""
        if len(stored) < OVERHEAD or stored[:len(CHUNK_MAGIC)] != CHUNK_MAGIC:
            raise Broken("not a sealed chunk")
        view = memoryview(stored)
        if outer_hash(view[:-OUTER_BYTES]) != bytes(view[-OUTER_BYTES:]):
            raise Broken("its outer hash does not match (bit rot or a cut file)")

    def open_chunk(self, chunk: str, stored: bytes) -> bytes:
        """The zstd frame inside; the AEAD tag checks header and body (the outer hash is for ``check_outer``).

        The frame is decrypted into this thread's scratch buffer (no 4 MiB allocation per chunk): it is valid
        until the thread's next ``open_chunk``, which is all ``Repository.decode`` needs (it decompresses it)."""
        self._need_key()
        if len(stored) < OVERHEAD or stored[:len(CHUNK_MAGIC)] != CHUNK_MAGIC:
            raise Broken("not a sealed chunk")
        key_id = bytes(stored[len(CHUNK_MAGIC):len(CHUNK_MAGIC) + KEY_ID_BYTES])
        cipher = self._keys.get(key_id)
        if cipher is None:
            raise Broken(f"sealed with data key d-{key_id.hex()}, which the repository does not list")
        view = memoryview(stored)
        nonce = bytes(view[len(CHUNK_MAGIC) + KEY_ID_BYTES:HEADER_BYTES])
        size = len(stored) - OVERHEAD
        buffer = self._scratch.get(size)
        try:
            cipher.decrypt_into(nonce, view[HEADER_BYTES:-OUTER_BYTES], _CHUNK_AAD + chunk.encode(), buffer)
        except InvalidTag:
            raise Broken("it does not decrypt (damaged, or not this chunk)") from None
        return buffer  # type: ignore[return-value]  # read at once by decode (decompressed), then reused

    # -- manifests -------------------------------------------------------------------------------
    def seal_manifest(self, revision: Revision) -> dict[str, Any]:
        """The envelope of ``revision``; its sealed part is made once (a trust change keeps it as it is)."""
        chunks = sorted(set(revision.all_chunks()))
        outer = {"id": revision.id, "created": revision.created, "chunk_size": revision.chunk_size,
                 "chunks": chunks}
        if revision.sealed is None:
            self._need_key()
            nonce = secrets.token_bytes(NONCE_BYTES)
            inner = json.dumps(revision.to_json(), sort_keys=True, separators=(",", ":")).encode()
            data = self._keys[self._current].encrypt(nonce, inner, _manifest_aad(outer))
            revision.sealed = {"key": "d-" + self._current.hex(), "nonce": b64(nonce), "data": b64(data)}
            revision.sealed_chunks = chunks
        return {"format": MANIFEST_FORMAT, "version": SEALED_VERSION, "vm": revision.vm, **outer,
                "trust": revision.trust, "verified_at": revision.verified_at, "protected": revision.protected,
                "sealed": revision.sealed}

    def open_manifest(self, data: bytes, where: str, revision_id: str, chunk_size: int) -> Revision:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise CorruptRepository(where, f"not valid JSON ({str(exc)[:200]})") from None
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise CorruptRepository(where, "not a revision manifest")
        if doc.get("version") != SEALED_VERSION:
            raise CorruptRepository(where, f"manifest version {doc.get('version')!r} in an encrypted repository "
                                           f"(its manifests are version {SEALED_VERSION})")
        shell = _envelope(doc, where)
        if shell.id != revision_id:
            raise CorruptRepository(where, f"the manifest names revision {shell.id!r}, which does not match its "
                                           f"file name {revision_id!r}")
        if shell.chunk_size != chunk_size:
            raise CorruptRepository(where, f"chunk size {shell.chunk_size} is not the repository's {chunk_size}")
        if not self.can_read:
            return shell
        assert shell.sealed is not None and shell.sealed_chunks is not None
        key_id = shell.sealed["key"]
        cipher = self._keys.get(bytes.fromhex(key_id[2:])) if _data_key_id(key_id) else None
        if cipher is None:
            raise CorruptRepository(where, f"sealed with data key {key_id!r}, which the repository does not list")
        outer = {"id": shell.id, "created": shell.created, "chunk_size": shell.chunk_size,
                 "chunks": shell.sealed_chunks}
        try:
            inner = cipher.decrypt(unb64(shell.sealed["nonce"], "nonce"), unb64(shell.sealed["data"], "data"),
                                   _manifest_aad(outer))
        except (InvalidTag, ValueError):
            raise CorruptRepository(where, "the sealed manifest does not decrypt (damaged or changed)") from None
        revision = Revision.parse(inner, where, revision_id, chunk_size)
        if sorted(set(revision.all_chunks())) != shell.sealed_chunks:
            raise CorruptRepository(where, "the sealed chunk list is not the one outside")  # pragma: no cover
        revision.trust, revision.verified_at, revision.protected = shell.trust, shell.verified_at, shell.protected
        revision.sealed, revision.sealed_chunks = shell.sealed, shell.sealed_chunks
        return revision


class _Scratch(threading.local):
    """One reusable buffer per thread for decrypted frames."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def get(self, size: int) -> memoryview:
        if len(self.buffer) < size:
            self.buffer = bytearray(size)
        return memoryview(self.buffer)[:size]


def _manifest_aad(outer: dict[str, Any]) -> bytes:
    return _MANIFEST_AAD + json.dumps(outer, sort_keys=True, separators=(",", ":")).encode()


def _data_key_id(value: object) -> bool:
    if not isinstance(value, str) or not value.startswith("d-") or len(value) != 2 + 2 * KEY_ID_BYTES:
        return False
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        return False
    return True


def _envelope(doc: dict[str, Any], where: str) -> Revision:
    """The outside of a version 3 manifest as a revision without disks (what a holder without the key sees)."""
    shell = Revision.from_json({**{k: v for k, v in doc.items() if k not in ("chunks", "sealed")},
                                "version": 2, "disks": [{"name": "sealed", "size": 0, "chunks": []}]}, where)
    chunks = doc.get("chunks")
    sealed = doc.get("sealed")
    if not isinstance(chunks, list) or not all(isinstance(c, str) and len(c) == 64 for c in chunks):
        raise CorruptRepository(where, "chunks must be a list of chunk names")
    try:
        if any(c != c.lower() or bytes.fromhex(c) is None for c in chunks) or chunks != sorted(set(chunks)):
            raise ValueError
    except ValueError:
        raise CorruptRepository(where, "chunks must be sorted unique chunk names") from None
    if not isinstance(sealed, dict) or not _data_key_id(sealed.get("key")) or not all(
            isinstance(sealed.get(k), str) for k in ("nonce", "data")):
        raise CorruptRepository(where, "sealed must hold a data key id, a nonce and data")
    if shell.trust not in TRUST_STATES:
        raise CorruptRepository(where, "unknown trust")  # pragma: no cover - from_json checks it
    shell.disks = []
    shell.sealed, shell.sealed_chunks = sealed, chunks
    return shell
