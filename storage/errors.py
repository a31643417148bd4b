"""Errors of the storage engine.

Each class's docstring is its message template (as in borg); ``exit_code`` is what the CLI exits with.
Every error the engine raises on bad input is a ``StorageError``: the CLI prints ``str(error)`` as one
line on stderr and exits with the code, never a traceback.
"""

from __future__ import annotations


class StorageError(Exception):
    """{}"""

    exit_code = 2

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.args_ = args

    def __str__(self) -> str:
        doc = (type(self).__doc__ or "{}").strip().splitlines()[0]
        try:
            return doc.format(*self.args_)
        except (IndexError, KeyError):  # pragma: no cover - a template/argument mismatch is a bug
            return doc + ": " + " ".join(map(str, self.args_))


class NotARepository(StorageError):
    """{} is not a Lifeboat repository root (no repository of VM {!r} there)"""


class UnknownVM(StorageError):
    """no repository for VM {!r} under {}"""


class BadName(StorageError):
    """invalid {} name {!r}: use letters, digits, '.', '_' and '-' (at most 128, not starting with '.')"""


class UnsupportedFormat(StorageError):
    """repository {} has format version {} but this Lifeboat reads versions up to {}; upgrade Lifeboat"""


class CorruptRepository(StorageError):
    """repository file {} is unreadable: {}"""


class UnknownRevision(StorageError):
    """no revision {!r} in the repository of VM {!r}"""


class NoRevisions(StorageError):
    """the repository of VM {!r} has no revisions yet"""


class RevisionProtected(StorageError):
    """revision {!r} is protected; unprotect it first"""


class SourceError(StorageError):
    """cannot read source {}: {}"""


class BadSource(StorageError):
    """invalid source {!r}: expected file:PATH or rbd:POOL/IMAGE"""


class BadTarget(StorageError):
    """invalid restore target {!r}: {}"""


class TargetExists(StorageError):
    """target {} exists; pass --force to overwrite it"""


class Locked(StorageError):
    """the repository of VM {!r} is busy ({}); try again later or pass --wait SECONDS"""


class HookFailed(StorageError):
    """{} hook failed: {}"""
