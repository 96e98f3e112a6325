"""What a log record's fields may hold: the format's limits and one check per kind of field.

Each check is a plain boolean function of the value alone (no state): ``records`` builds
its type checks and ``validate()`` from them, and the volume and the checkpoint loader
use the same limits, so a value the log would refuse is refused before it is recorded.
"""

from __future__ import annotations

import stat as _st
from typing import Any

#: Largest file size, in bytes (also the bound the volume enforces on writes).
MAX_FILE_SIZE = 1 << 62
#: Largest block number or block count in a record (MAX_FILE_SIZE in the smallest blocks).
MAX_BLOCKS = MAX_FILE_SIZE // 4096
#: Inode numbers are 1 .. INO_MAX (ROOT_INO is 1; 0 means none).
INO_MAX = (1 << 63) - 1
#: uid and gid are 32-bit, as on Linux.
ID_MAX = (1 << 32) - 1
#: Timestamps are signed 64-bit nanoseconds.
TIME_MIN = -(1 << 63)
TIME_MAX = (1 << 63) - 1
#: Every flag bit a record's map may carry (extents.UNWRITTEN | extents.SHARE).
MAP_FLAGS = 0b11
#: Bad metadata is recorded in whole pages of this many bytes.
PAGE = 4096
#: A name is at most this many bytes of UTF-8 (as Linux's NAME_MAX).
NAME_MAX = 255
#: The file types an inode may have, and the bits of ``mode`` beyond them.
FILE_TYPES = frozenset({_st.S_IFREG, _st.S_IFDIR})
#: The types a ``CreateNode`` makes: symbolic links and special files (no blocks, no entries).
NODE_TYPES = frozenset({_st.S_IFLNK, _st.S_IFIFO, _st.S_IFSOCK, _st.S_IFCHR, _st.S_IFBLK})
PERM_BITS = 0o7777
#: A symlink's target is at most this many bytes of UTF-8 (Linux's PATH_MAX less its NUL).
TARGET_MAX = 4095
#: A device number is a 64-bit unsigned int (``st_rdev``).
RDEV_MAX = (1 << 64) - 1

#: The bits of a mode that are not permission bits (the file type).
NOT_PERM = ~PERM_BITS


def valid_name(name: object) -> bool:
    """Whether ``name`` can be a directory entry: a non-empty str, no ``/`` or NUL, not
    ``.`` or ``..``, at most 255 bytes of UTF-8 (undecodable bytes as surrogate escapes)."""
    if type(name) is not str or "/" in name or "\0" in name or name == "." or name == "..":
        return False
    if 0 < len(name) <= NAME_MAX // 4:     # 63 characters cannot exceed 255 bytes: skip the encode
        return True
    try:
        return 0 < len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX
    except UnicodeEncodeError:          # a lone surrogate the pool could never store
        return False


def valid_names(names: list[object]) -> bool:
    """Whether every one of ``names`` is ``valid_name``: a directory's at once (mount checks
    a million), by whole-list string operations; a name longer than 63 characters goes
    through ``valid_name`` (its UTF-8 length)."""
    if not names:
        return True
    if not set(map(type, names)) <= {str}:
        return False
    joined = "/".join(names)            # (all str) a "/" inside a name adds one
    if "\0" in joined or joined.count("/") != len(names) - 1:
        return False
    # No name holds "/": between two, "//" is an empty one, "/./" and "/../" the dot names.
    framed = f"/{joined}/"
    if "//" in framed or "/./" in framed or "/../" in framed:
        return False
    return max(map(len, names)) <= NAME_MAX // 4 or \
        all(valid_name(n) for n in names if len(n) > NAME_MAX // 4)  # type: ignore[arg-type]


def valid_mode(mode: object) -> bool:
    """Whether ``mode`` is an inode's mode: a regular file or a directory, plus permission bits."""
    return type(mode) is int and (mode & ~PERM_BITS) in FILE_TYPES


def valid_node_mode(mode: object) -> bool:
    """Whether ``mode`` is a ``CreateNode``'s: a symlink or special file plus permission bits."""
    return type(mode) is int and (mode & ~PERM_BITS) in NODE_TYPES


def target_size(target: str) -> int:
    """A symlink target's length in bytes, as ``st_size`` and ``readlink`` count it."""
    return len(target.encode("utf-8", "surrogateescape"))


def valid_target(target: object) -> bool:
    """Whether ``target`` can be a symlink's: a non-empty str without NUL, at most 4095 bytes."""
    if type(target) is not str or not target or "\0" in target:
        return False
    try:
        return target_size(target) <= TARGET_MAX
    except UnicodeEncodeError:          # a lone surrogate the pool could never store
        return False


def is_int_in(x: object, low: int, high: int) -> bool:
    return type(x) is int and low <= x <= high       # type: ignore[operator]


def all_ints(values: list[Any]) -> bool:
    return set(map(type, values)) <= {int}


def valid_unmap(unmap: object) -> bool:
    """Flat ``[fblk, nblk, ...]``: ``fblk >= 0``; ``nblk >= 0``, or -1 for "to the end".

    ``nblk == 0`` is an empty range (a clone of an empty file logs one); it changes nothing.
    """
    if type(unmap) is not list:
        return False
    n = len(unmap)
    if n == 0:
        return True
    if n & 1:
        return False
    if n == 2:
        f, k = unmap
        return type(f) is int and type(k) is int and 0 <= f <= MAX_BLOCKS and -1 <= k <= MAX_BLOCKS
    return (all_ints(unmap) and min(unmap[0::2]) >= 0 and min(unmap[1::2]) >= -1
            and max(unmap) <= MAX_BLOCKS)


def valid_map(runs: object) -> bool:
    """Flat ``[fblk, nblk, pblk, flags, ...]``: block numbers >= 0, ``nblk > 0``, known flag bits."""
    if type(runs) is not list:
        return False
    n = len(runs)
    if n == 0:
        return True
    if n & 3:
        return False
    if n == 4:
        f, k, p, fl = runs
        return (type(f) is int and type(k) is int and type(p) is int and type(fl) is int
                and 0 <= f <= MAX_BLOCKS and 0 < k <= MAX_BLOCKS and 0 <= p <= MAX_BLOCKS
                and 0 <= fl <= MAP_FLAGS)
    return (all_ints(runs) and min(runs) >= 0 and max(runs) <= MAX_BLOCKS
            and min(runs[1::4]) > 0 and max(runs[3::4]) <= MAP_FLAGS)


__all__ = ["MAX_FILE_SIZE", "MAX_BLOCKS", "INO_MAX", "ID_MAX", "TIME_MIN", "TIME_MAX", "MAP_FLAGS",
           "PAGE", "NAME_MAX", "FILE_TYPES", "NODE_TYPES", "PERM_BITS", "TARGET_MAX", "RDEV_MAX",
           "NOT_PERM", "valid_name", "valid_names", "valid_mode", "valid_node_mode", "target_size",
           "valid_target", "is_int_in", "all_ints", "valid_unmap", "valid_map"]
