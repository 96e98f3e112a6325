"""daxfs's exceptions.

Every failure is an ``OSError`` with ``errno`` set, so callers can catch the
built-in classes they already know (``FileNotFoundError``, ...).  daxfs adds
three of its own, each carrying structured fields instead of only a message.
``fs_error`` builds the built-in subclass that matches an errno, exactly as
``os`` would raise it.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Sequence

__all__ = [
    "BusyError",
    "CorruptVolumeError",
    "DamagedVolumeWarning",
    "PoisonError",
    "MediaErrorWarning",
    "InvalidPathError",
    "fs_error",
    "describe_bytes",
]


class BusyError(OSError):
    """EBUSY: something holds what the call needs (a pin, a mapping, another process).

    ``holders`` names who holds it: pids for a pool opened elsewhere, holder
    names for pins and mappings.
    """

    def __init__(self, message: str, *, holders: Sequence[object] = (), filename: str | None = None) -> None:
        if filename is None:
            super().__init__(_errno.EBUSY, message)
        else:
            super().__init__(_errno.EBUSY, message, filename)
        self.holders = list(holders)


class CorruptVolumeError(OSError):
    """EUCLEAN: the pool's bytes do not make a valid volume.

    ``what`` says which structure failed to decode, ``where`` is its byte
    offset in the pool (or None when it has no single place).
    """

    def __init__(self, what: str, *, where: int | None = None, path: str | None = None) -> None:
        where_text = "" if where is None else f" at pool offset {where:#x}"
        message = f"corrupt volume: {what}{where_text}"
        if path is None:
            super().__init__(_errno.EUCLEAN, message)
        else:
            super().__init__(_errno.EUCLEAN, message, path)
        self.what = what
        self.where = where


class DamagedVolumeWarning(UserWarning):
    """A volume mounted read-only because a log record does not apply (see ``Volume.damaged``).

    Everything before the record is there; ``daxfs fsck --repair`` makes the volume
    writable again, discarding the record and those after it.
    """


class PoisonError(OSError):
    """EIO: the range read lies on memory reported bad (``memory_failure``).

    ``file_offset`` and ``length`` say which bytes of the file (``filename``, None for
    a file with no name left) are poisoned, ``pool_offset`` where they were in the pool.
    """

    def __init__(self, message: str, *, pool_offset: int | None = None, length: int | None = None,
                 filename: str | None = None, file_offset: int | None = None) -> None:
        if filename is None:
            super().__init__(_errno.EIO, message)
        else:
            super().__init__(_errno.EIO, message, filename)
        self.pool_offset = pool_offset
        self.length = length
        self.file_offset = file_offset


class MediaErrorWarning(UserWarning):
    """Something about bad memory the caller should know but that is not an error: a reported
    range rounded out to whole blocks, a badblocks list entry that could not be acted on."""


class InvalidPathError(OSError, ValueError):
    """EINVAL for a path that cannot name anything (a NUL byte, a non-string).

    It is also a ``ValueError`` because that is what ``os`` raises for an
    embedded NUL byte, so habits carry over.
    """


def fs_error(code: int, path: str | None = None, message: str | None = None) -> OSError:
    """The exception ``os`` would raise for ``code`` (FileNotFoundError for ENOENT, ...)."""
    text = message or os.strerror(code)
    if path is None:
        return OSError(code, text)
    return OSError(code, text, path)


def describe_bytes(n: int) -> str:
    """A byte count as space errors say it: ``1048576 bytes (1.0 MiB)``."""
    return f"{n} bytes ({n / (1 << 20):.1f} MiB)"
