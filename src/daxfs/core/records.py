"""The log records: every metadata change daxfs makes is one of these.

A record carries every decision (inode numbers, blocks chosen, timestamps),
so applying it is deterministic: a live operation and a replay at mount go
through the same ``Core.apply`` and cannot diverge.  One operation is one
record, so each is all-or-nothing.  ``CODE`` numbers are part of the on-pool
format: never reuse one.

A record refuses to be built with a field of the wrong type or out of its
range (``TypeError`` / ``ValueError`` naming the field): a bug in the volume
then fails before the record reaches the log, not at the next mount, and the
log decoder gets the same checks for free.  What a field may hold depends on
nothing but the record itself; whether it fits the state (an inode that
exists, free blocks) is ``Core.apply``'s to check.

The checks are on the hot path (every create and write builds records), so
each constructor tests all its fields in one boolean expression of ``type(x)
is int`` and comparisons, and only when that fails looks field by field for
an error message.  Big block maps are checked with C-level passes (``map``,
``min``, ``max`` over slices) instead of a Python loop per run.
"""

from __future__ import annotations

import stat as _st
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

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
#: A name is at most this many bytes of UTF-8 (as Linux's NAME_MAX).
NAME_MAX = 255
#: The file types an inode may have, and the bits of ``mode`` beyond them.
FILE_TYPES = frozenset({_st.S_IFREG, _st.S_IFDIR})
PERM_BITS = 0o7777

_NOT_PERM = ~PERM_BITS
_S_IFREG = _st.S_IFREG
_S_IFDIR = _st.S_IFDIR
_new = tuple.__new__
_types = map            # the builtin: several records have a field called ``map``


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


def valid_mode(mode: object) -> bool:
    """Whether ``mode`` is an inode's mode: a regular file or a directory, plus permission bits."""
    return type(mode) is int and (mode & ~PERM_BITS) in FILE_TYPES


def _is_int(x: object, low: int, high: int) -> bool:
    return type(x) is int and low <= x <= high       # type: ignore[operator]


def _all_ints(values: list[Any]) -> bool:
    return set(_types(type, values)) <= {int}


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
    return (_all_ints(unmap) and min(unmap[0::2]) >= 0 and min(unmap[1::2]) >= -1
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
    return (_all_ints(runs) and min(runs) >= 0 and max(runs) <= MAX_BLOCKS
            and min(runs[1::4]) > 0 and max(runs[3::4]) <= MAP_FLAGS)


# ---- field kinds: what each field may hold, used to say which field is wrong and why

_Check = Callable[[object], bool]
_KINDS: dict[str, tuple[_Check, str]] = {
    "ino": (lambda x: _is_int(x, 1, INO_MAX), f"an inode number (an int from 1 to {INO_MAX})"),
    "name": (valid_name, "a directory entry name (a non-empty str without '/' or NUL, not '.' or '..', "
                         f"at most {NAME_MAX} bytes of UTF-8)"),
    "mode": (valid_mode, "a mode (S_IFREG or S_IFDIR plus permission bits 0o7777)"),
    "perm?": (lambda x: x is None or _is_int(x, 0, PERM_BITS), "None or permission bits (an int 0..0o7777)"),
    "id": (lambda x: _is_int(x, 0, ID_MAX), f"a uid/gid (an int from 0 to {ID_MAX})"),
    "id?": (lambda x: x is None or _is_int(x, 0, ID_MAX), f"None or a uid/gid (an int from 0 to {ID_MAX})"),
    "time": (lambda x: _is_int(x, TIME_MIN, TIME_MAX), "a time in ns (a signed 64-bit int)"),
    "time?": (lambda x: x is None or _is_int(x, TIME_MIN, TIME_MAX), "None or a time in ns (a signed 64-bit int)"),
    "size?": (lambda x: x is None or _is_int(x, 0, MAX_FILE_SIZE), f"None or a size (an int from 0 to {MAX_FILE_SIZE})"),
    "bool": (lambda x: type(x) is bool, "a bool"),
    "unmap": (valid_unmap, "a flat list [fblk, nblk, ...] of ints, fblk >= 0, nblk >= 0 or -1"),
    "map": (valid_map, "a flat list [fblk, nblk, pblk, flags, ...] of ints >= 0, nblk > 0, "
                       f"flags within {MAP_FLAGS:#b}"),
    "items": (lambda x: _batch_items_error(x) is None, "a non-empty list of [CODE, *fields] records (no Batch)"),
}


def _reject(cls: type, values: tuple[object, ...]) -> None:
    """Raise the TypeError or ValueError that says which field of ``values`` is wrong."""
    for field, kind, value in zip(cls._fields, cls._KINDS, values):   # type: ignore[attr-defined]
        ok, want = _KINDS[kind]
        if ok(value):
            continue
        if kind == "items":
            raise ValueError(f"{cls.__name__}.items: {_batch_items_error(value)}")
        plain = kind.rstrip("?")
        wrong_type = not (value is None and kind.endswith("?")) and type(value) is not (
            str if plain == "name" else bool if plain == "bool" else list if plain in ("unmap", "map") else int)
        error = TypeError if wrong_type else ValueError
        raise error(f"{cls.__name__}.{field} must be {want}, not {_show(value)}")
    raise ValueError(f"{cls.__name__}: invalid fields {_show(values)}")     # the fast check is stricter


def _show(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


class _Checked(tuple):  # type: ignore[type-arg]
    """What every record shares: ``_make``/``_replace`` go through the checks too."""

    __slots__ = ()
    _KINDS: tuple[str, ...] = ()

    @classmethod
    def _make(cls, iterable: Iterable[object]) -> Any:
        return cls(*iterable)


# Each record is a NamedTuple holding the fields (so it packs as a plain list and keeps
# NamedTuple's conveniences) under a subclass whose __new__ checks them.

class _Create(NamedTuple):
    ino: int
    parent: int
    name: str
    mode: int
    uid: int
    gid: int
    time_ns: int


class Create(_Checked, _Create):  # type: ignore[misc]
    """A new inode (file or directory, by ``mode``) linked as ``parent/name``."""

    __slots__ = ()
    CODE = 1
    _KINDS = ("ino", "ino", "name", "mode", "id", "id", "time")

    def __new__(cls, ino: int, parent: int, name: str, mode: int, uid: int, gid: int, time_ns: int) -> "Create":
        if not (ino.__class__ is int and parent.__class__ is int and mode.__class__ is int and uid.__class__ is int
                and gid.__class__ is int and time_ns.__class__ is int and 0 < ino <= INO_MAX and 0 < parent <= INO_MAX
                and (mode & _NOT_PERM == _S_IFREG or mode & _NOT_PERM == _S_IFDIR) and valid_name(name)
                and 0 <= uid <= ID_MAX and 0 <= gid <= ID_MAX and TIME_MIN <= time_ns <= TIME_MAX):
            _reject(cls, (ino, parent, name, mode, uid, gid, time_ns))
        return _new(cls, (ino, parent, name, mode, uid, gid, time_ns))


class _Link(NamedTuple):
    ino: int
    parent: int
    name: str
    time_ns: int


class Link(_Checked, _Link):  # type: ignore[misc]
    """Another name ``parent/name`` for the file ``ino``."""

    __slots__ = ()
    CODE = 2
    _KINDS = ("ino", "ino", "name", "time")

    def __new__(cls, ino: int, parent: int, name: str, time_ns: int) -> "Link":
        if not (ino.__class__ is int and 0 < ino <= INO_MAX and parent.__class__ is int and 0 < parent <= INO_MAX
                and valid_name(name) and time_ns.__class__ is int and TIME_MIN <= time_ns <= TIME_MAX):
            _reject(cls, (ino, parent, name, time_ns))
        return _new(cls, (ino, parent, name, time_ns))


class _Unlink(NamedTuple):
    parent: int
    name: str
    time_ns: int
    reclaim: bool


class Unlink(_Checked, _Unlink):  # type: ignore[misc]
    """Remove ``parent/name``.  A file left with no names becomes an orphan,
    or is freed at once when ``reclaim`` is set (nobody has it open)."""

    __slots__ = ()
    CODE = 3
    _KINDS = ("ino", "name", "time", "bool")

    def __new__(cls, parent: int, name: str, time_ns: int, reclaim: bool) -> "Unlink":
        if not (parent.__class__ is int and 0 < parent <= INO_MAX and valid_name(name)
                and time_ns.__class__ is int and TIME_MIN <= time_ns <= TIME_MAX and reclaim.__class__ is bool):
            _reject(cls, (parent, name, time_ns, reclaim))
        return _new(cls, (parent, name, time_ns, reclaim))


class _Rename(NamedTuple):
    src_parent: int
    src_name: str
    dst_parent: int
    dst_name: str
    time_ns: int
    reclaim: bool


class Rename(_Checked, _Rename):  # type: ignore[misc]
    """Move ``src_parent/src_name`` to ``dst_parent/dst_name``, replacing what
    is there (handled like ``Unlink`` of the target, with ``reclaim``)."""

    __slots__ = ()
    CODE = 4
    _KINDS = ("ino", "name", "ino", "name", "time", "bool")

    def __new__(cls, src_parent: int, src_name: str, dst_parent: int, dst_name: str, time_ns: int,
                reclaim: bool) -> "Rename":
        if not (src_parent.__class__ is int and 0 < src_parent <= INO_MAX and valid_name(src_name)
                and dst_parent.__class__ is int and 0 < dst_parent <= INO_MAX and valid_name(dst_name)
                and time_ns.__class__ is int and TIME_MIN <= time_ns <= TIME_MAX and reclaim.__class__ is bool):
            _reject(cls, (src_parent, src_name, dst_parent, dst_name, time_ns, reclaim))
        return _new(cls, (src_parent, src_name, dst_parent, dst_name, time_ns, reclaim))


class _SetAttr(NamedTuple):
    ino: int
    mode: int | None
    uid: int | None
    gid: int | None
    atime_ns: int | None
    mtime_ns: int | None
    ctime_ns: int | None


class SetAttr(_Checked, _SetAttr):  # type: ignore[misc]
    """Change inode attributes; None leaves one as it is.  ``mode`` is permission bits only."""

    __slots__ = ()
    CODE = 5
    _KINDS = ("ino", "perm?", "id?", "id?", "time?", "time?", "time?")

    def __new__(cls, ino: int, mode: int | None, uid: int | None, gid: int | None, atime_ns: int | None,
                mtime_ns: int | None, ctime_ns: int | None) -> "SetAttr":
        if not (ino.__class__ is int and 0 < ino <= INO_MAX
                and (mode is None or mode.__class__ is int and 0 <= mode <= PERM_BITS)
                and (uid is None or uid.__class__ is int and 0 <= uid <= ID_MAX)
                and (gid is None or gid.__class__ is int and 0 <= gid <= ID_MAX)
                and (atime_ns is None or atime_ns.__class__ is int and TIME_MIN <= atime_ns <= TIME_MAX)
                and (mtime_ns is None or mtime_ns.__class__ is int and TIME_MIN <= mtime_ns <= TIME_MAX)
                and (ctime_ns is None or ctime_ns.__class__ is int and TIME_MIN <= ctime_ns <= TIME_MAX)):
            _reject(cls, (ino, mode, uid, gid, atime_ns, mtime_ns, ctime_ns))
        return _new(cls, (ino, mode, uid, gid, atime_ns, mtime_ns, ctime_ns))


class _SetExtents(NamedTuple):
    ino: int
    unmap: list[int]
    map: list[int]
    size: int | None
    time_ns: int | None


class SetExtents(_Checked, _SetExtents):  # type: ignore[misc]
    """Change a file's block map and size in one step.

    ``unmap`` is flat ``[fblk, nblk, ...]`` (``nblk == -1``: to the end);
    ``map`` is flat ``[fblk, nblk, pblk, flags, ...]`` applied after it,
    each replacing whatever was mapped there.  Blocks a file loses are
    freed; blocks it gains are taken from free space.  ``size`` and
    ``time_ns`` (mtime and ctime) are set when not None.
    """

    __slots__ = ()
    CODE = 6
    _KINDS = ("ino", "unmap", "map", "size?", "time?")

    def __new__(cls, ino: int, unmap: list[int], map: list[int], size: int | None,
                time_ns: int | None) -> "SetExtents":
        if map.__class__ is list and len(map) == 4:    # most writes: one run, checked inline
            f, k, p, fl = map
            map_ok = (f.__class__ is int and k.__class__ is int and p.__class__ is int and fl.__class__ is int
                      and 0 <= f <= MAX_BLOCKS and 0 < k <= MAX_BLOCKS and 0 <= p <= MAX_BLOCKS
                      and 0 <= fl <= MAP_FLAGS)
        else:
            map_ok = valid_map(map)
        if not (map_ok and ino.__class__ is int and 0 < ino <= INO_MAX
                and (size is None or size.__class__ is int and 0 <= size <= MAX_FILE_SIZE)
                and (time_ns is None or time_ns.__class__ is int and TIME_MIN <= time_ns <= TIME_MAX)
                and (unmap.__class__ is list and not unmap or valid_unmap(unmap))):
            _reject(cls, (ino, unmap, map, size, time_ns))
        return _new(cls, (ino, unmap, map, size, time_ns))


class _Reclaim(NamedTuple):
    ino: int


class Reclaim(_Checked, _Reclaim):  # type: ignore[misc]
    """Free an orphan (an inode with no names) and all its blocks."""

    __slots__ = ()
    CODE = 7
    _KINDS = ("ino",)

    def __new__(cls, ino: int) -> "Reclaim":
        if not (ino.__class__ is int and 0 < ino <= INO_MAX):
            _reject(cls, (ino,))
        return _new(cls, (ino,))


class _Batch(NamedTuple):
    items: list[list[object]]


class Batch(_Checked, _Batch):  # type: ignore[misc]
    """Several records applied in order as one: ``items`` are ``[CODE, *fields]`` lists.

    For operations that are more than one change but must be all-or-nothing
    (``clone_file`` to a new name: create it and share the blocks).  Every item
    must be a valid record of another type: a batch may not nest."""

    __slots__ = ()
    CODE = 8
    _KINDS = ("items",)

    def __new__(cls, items: list[list[object]]) -> "Batch":
        if _batch_items_error(items) is not None:
            _reject(cls, (items,))
        return _new(cls, (items,))

    @classmethod
    def of(cls, *records: "Record") -> "Batch":
        return cls([[type(r).CODE, *r] for r in records])  # type: ignore[attr-defined]

    def records(self) -> list["Record"]:
        return [RECORD_TYPES[item[0]](*item[1:]) for item in self.items]  # type: ignore[index]


def _batch_items_error(items: object) -> str | None:
    """Why ``items`` is not a list of non-batch records, or None when it is."""
    if type(items) is not list or not items:
        return f"must be a non-empty list, not {_show(items)}"
    for i, item in enumerate(items):
        if type(item) is not list or not item:
            return f"item {i} must be a non-empty list [CODE, *fields], not {_show(item)}"
        code = item[0]
        cls = RECORD_TYPES.get(code) if code.__class__ is int else None
        if cls is None:
            return f"item {i} has unknown record type {_show(code)}"
        if cls is Batch:
            return f"item {i} is a Batch: a batch may not nest"
        try:
            cls(*item[1:])
        except (TypeError, ValueError) as exc:
            return f"item {i}: {exc}"
    return None


Record = Create | Link | Unlink | Rename | SetAttr | SetExtents | Reclaim | Batch

RECORD_TYPES: dict[int, type] = {cls.CODE: cls for cls in (Create, Link, Unlink, Rename, SetAttr, SetExtents,
                                                            Reclaim, Batch)}
