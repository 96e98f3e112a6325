"""Arguments as ``os`` takes them: converted and range-checked before anything is recorded.

Integers go through ``operator.index`` (numpy integers and ``bool`` are
accepted, floats, strings and None raise TypeError), as ``os.pwrite`` and
``os.ftruncate`` do.  A negative offset or size is EINVAL; a value that does
not fit a C ``off_t`` is OverflowError, as in ``os``; one that fits but lies
beyond the largest file daxfs supports is EFBIG.  Modes, ids, timestamps and
open modes are checked here too, so a record is only ever built from values
``apply`` accepts: one bad argument must never reach the log.
"""

from __future__ import annotations

import errno
import operator
from typing import NamedTuple

from daxfs.errors import fs_error

MAX_FILE_SIZE = 1 << 62         # the largest file size (and offset + length) a volume supports
_OFF_MAX = (1 << 63) - 1        # what fits a C off_t: beyond it os raises OverflowError
_ID_MAX = (1 << 32) - 2         # uid/gid: -1 means "unchanged", 2**32 - 1 is (uid_t)-1 itself
_TIME_MAX = (1 << 63) - 1       # nanoseconds in an int64


def integer(value: object) -> int:
    """``value`` as an int, as ``os`` converts it (TypeError for float, str, None)."""
    if type(value) is int:
        return value
    return operator.index(value)  # type: ignore[arg-type]


def offset(value: object, what: str = "offset") -> int:
    """A byte offset or size: >= 0 (EINVAL), fits off_t (OverflowError), <= MAX_FILE_SIZE (EFBIG)."""
    n = value if type(value) is int else operator.index(value)  # type: ignore[arg-type]
    if 0 <= n <= MAX_FILE_SIZE:
        return n
    if n < 0:
        raise fs_error(errno.EINVAL, message=f"negative {what}")
    if n > _OFF_MAX:
        raise OverflowError(f"{what} {n} is too large to convert to C off_t")
    raise fs_error(errno.EFBIG, message=f"{what} {n} is beyond the largest file size ({MAX_FILE_SIZE})")


def byte_range(off: object, length: object) -> tuple[int, int]:
    """``(offset, length)`` of a range that must hold at least one byte and end inside MAX_FILE_SIZE."""
    o = offset(off)
    n = integer(length)
    if n <= 0:
        raise fs_error(errno.EINVAL, message="offset must be >= 0 and length > 0")
    if n > _OFF_MAX:
        raise OverflowError(f"length {n} is too large to convert to C off_t")
    if o + n > MAX_FILE_SIZE:
        raise fs_error(errno.EFBIG, message="file too large")
    return o, n


def count(value: object, what: str = "count") -> int:
    """A number of bytes to read: >= 0 (EINVAL as os.pread), fits ssize_t (OverflowError)."""
    n = integer(value)
    if n < 0:
        raise fs_error(errno.EINVAL, message=f"negative {what}")
    if n > _OFF_MAX:
        raise OverflowError(f"{what} {n} is too large to convert to C ssize_t")
    return n


def mode_bits(value: object) -> int:
    """Permission bits for chmod/mkdir: an int (TypeError otherwise) that fits a C int.

    Bits outside 0o7777 are ignored, as Linux ignores them (``os.chmod(p, 0o100644)`` works).
    """
    m = integer(value)
    if not -(1 << 31) <= m < (1 << 31):
        raise OverflowError(f"mode {m} is too large to convert to C int")
    return m & 0o7777


def owner_id(value: object, what: str) -> int | None:
    """A uid or gid for chown: -1 means "leave it" (None); other negatives are OverflowError."""
    n = integer(value)
    if n == -1:
        return None
    if not 0 <= n <= _ID_MAX:
        raise OverflowError(f"{what} {n} is out of range")
    return n


def time_ns(value: object) -> int:
    """A timestamp in nanoseconds, clamped to what the volume stores (int64), as Linux clamps
    a timestamp to its file system's range; beyond what a C ``time_t`` holds, OverflowError
    (as ``os.utime`` raises)."""
    t = integer(value)
    if -_TIME_MAX - 1 <= t <= _TIME_MAX:
        return t
    if not -_TIME_MAX - 1 <= t // 1_000_000_000 <= _TIME_MAX:     # seconds as os.utime splits them
        raise OverflowError(f"timestamp {t} ns is out of range for time_t")
    return _TIME_MAX if t > 0 else -_TIME_MAX - 1


def times_ns(ns: object) -> tuple[int, int]:
    """``(atime_ns, mtime_ns)`` as ``os.utime(ns=...)`` takes them."""
    if not isinstance(ns, tuple) or len(ns) != 2:
        raise TypeError("utime: 'ns' must be a tuple of two ints")
    return time_ns(ns[0]), time_ns(ns[1])


def timeout(value: object) -> float | None:
    """A wait in seconds: None (forever) or a non-negative number."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(value).__name__}")
    t = float(value)  # type: ignore[arg-type]
    if not t >= 0:
        raise ValueError("timeout must be >= 0")
    return t


class OpenFlags(NamedTuple):
    readable: bool
    writable: bool
    create: bool
    exclusive: bool
    truncate: bool
    append: bool


_MODES = {
    "rb": OpenFlags(True, False, False, False, False, False),
    "r+b": OpenFlags(True, True, False, False, False, False),
    "wb": OpenFlags(False, True, True, False, True, False),
    "w+b": OpenFlags(True, True, True, False, True, False),
    "xb": OpenFlags(False, True, True, True, False, False),
    "x+b": OpenFlags(True, True, True, True, False, False),
    "ab": OpenFlags(False, True, True, False, False, True),
    "a+b": OpenFlags(True, True, True, False, False, True),
}


def open_flags(mode: object) -> OpenFlags:
    """What a binary open mode asks for (``"rb"``, ``"r+b"``, ``"wb"``, ... in any letter order)."""
    known = _MODES.get(mode)  # type: ignore[call-overload]
    if known is not None:
        return known
    if not isinstance(mode, str):
        raise TypeError(f"mode must be str, not {type(mode).__name__}")
    if "b" not in mode:
        raise ValueError(f"invalid mode {mode!r}: daxfs files are binary only (add 'b')")
    # the same letters in any order mean the same mode, as with open(): "rb+" == "r+b"
    canonical = "".join(c for c in "rwxa+b" if c in mode)
    if canonical not in _MODES or len(mode) != len(canonical):
        raise ValueError(f"invalid mode {mode!r}")
    return _MODES[canonical]


def parse_mode(mode: object) -> tuple[OpenFlags, bool, str]:
    """``(flags, text, binary mode)`` for any ``open()`` mode: ``"r"``, ``"w+"``, ``"ab"``,
    ``"rt"``... (letters in any order; ValueError for an invalid one, as ``open()``)."""
    known = _MODES.get(mode)  # type: ignore[call-overload]
    if known is not None:
        return known, False, mode  # type: ignore[return-value]
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    letters = set(mode)
    if len(letters) != len(mode) or not letters <= set("rwxa+bt") or "b" in letters and "t" in letters \
            or sum(c in letters for c in "rwxa") != 1:
        raise ValueError(f"invalid mode: {mode!r}")
    binary = "".join(c for c in "rwxa+" if c in letters) + "b"
    return _MODES[binary], "b" not in letters, binary
