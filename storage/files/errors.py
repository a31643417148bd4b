"""Errors of file-level access; every one is a ``StorageError`` (one line on stderr, exit code 2)."""

from __future__ import annotations

from storage.errors import StorageError


class FileAccessError(StorageError):
    """cannot read files: {}"""


class NoSuchPath(FileAccessError):
    """no such file or directory: {}"""


class NotADirectory(FileAccessError):
    """not a directory: {}"""


class NotAFile(FileAccessError):
    """not a regular file: {} (it is a {})"""


class IsASymlink(FileAccessError):
    """{} is a symbolic link (to {!r}); ask to follow symlinks to read through it"""


class PathEscapes(FileAccessError):
    """path {} leaves its filesystem ('..' above the filesystem root)"""


class SymlinkEscapes(FileAccessError):
    """symbolic link {} -> {!r} points outside its filesystem; it is not followed"""


class SymlinkLoop(FileAccessError):
    """too many levels of symbolic links resolving {} (a loop?)"""


class NoFilesystem(FileAccessError):
    """no readable partition table or filesystem on this disk ({})"""


class UnknownFilesystem(FileAccessError):
    """partition {} holds no filesystem Lifeboat can read ({})"""


class CorruptFilesystem(FileAccessError):
    """the filesystem on partition {} is damaged or unreadable at {}: {}"""


class DamagedFile(FileAccessError):
    """{} lies on damaged backup data (byte ranges {} of the file); ask for it with damage allowed to get it with those ranges zero-filled"""  # noqa: E501
