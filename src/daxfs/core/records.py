"""The log records: every metadata change daxfs makes is one of these.

A record carries every decision (inode numbers, blocks chosen, timestamps),
so applying it is deterministic: a live operation and a replay at mount go
through the same ``Core.apply`` and cannot diverge.  One operation is one
record, so each is all-or-nothing.  ``CODE`` numbers are part of the on-pool
format: never reuse one.

A record refuses to be built with a field of the wrong type (``TypeError``
naming the field): a bug in the volume that passes a float, a bool, None or a
tuple fails before the record reaches the log, not at the next mount.
``validate()`` checks every field's value as well (``ValueError``): ranges,
names that can be directory entries, modes, known flag bits.  The log decoder
runs it on every record it reads (``checked``), and the volume may call it
where a value comes from outside.  What a field may hold depends on nothing
but the record itself; whether it fits the state (an inode that exists, free
blocks) is ``Core.apply``'s to check.

Why the split: records are built on the hot path (every create and write
builds two), and each comparison there costs.  Measured in the create + 4 KiB
write + close loop of ``bench_foundation`` (about 31 µs an operation before
any check), the full checks at construction cost about 3 µs, the type checks
alone well under 1.  Types are what a slip in the volume gets wrong; values
are what damage gets wrong, and the decoder checks them all.  Each check is
one boolean expression of ``type(x) is int`` and comparisons, and only when it
fails are the fields looked at one by one for the message.  Big block maps
are checked with C-level passes (``map``, ``min``, ``max`` over slices), not a
Python loop per run.
"""

from __future__ import annotations

import stat as _st
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

# The limits are fields.py's (importers of records still find the ones records uses).
from daxfs.core.fields import (ID_MAX, INO_MAX, MAP_FLAGS, MAX_BLOCKS, MAX_FILE_SIZE, NAME_MAX, NOT_PERM, PAGE,
                               PERM_BITS, RDEV_MAX, TARGET_MAX, TIME_MAX, TIME_MIN, all_ints, is_int_in, valid_map,
                               valid_mode, valid_name, valid_node_mode, valid_target, valid_unmap)

_S_IFREG = _st.S_IFREG
_S_IFDIR = _st.S_IFDIR
_new = tuple.__new__

# ---- field kinds: what each field may hold, used to say which field is wrong and why

_Check = Callable[[object], bool]
_KINDS: dict[str, tuple[_Check, str]] = {
    "ino": (lambda x: is_int_in(x, 1, INO_MAX), f"an inode number (an int from 1 to {INO_MAX})"),
    "name": (valid_name, "a directory entry name (a non-empty str without '/' or NUL, not '.' or '..', "
                         f"at most {NAME_MAX} bytes of UTF-8)"),
    "mode": (valid_mode, "a mode (S_IFREG or S_IFDIR plus permission bits 0o7777)"),
    "nodemode": (valid_node_mode, "a mode (S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK plus permission "
                                  "bits 0o7777)"),
    "rdev": (lambda x: is_int_in(x, 0, RDEV_MAX), f"a device number (an int from 0 to {RDEV_MAX})"),
    "target": (lambda x: type(x) is str and (x == "" or valid_target(x)),
               f"a symlink target (a str without NUL, at most {TARGET_MAX} bytes of UTF-8; '' for no link)"),
    "perm?": (lambda x: x is None or is_int_in(x, 0, PERM_BITS), "None or permission bits (an int 0..0o7777)"),
    "id": (lambda x: is_int_in(x, 0, ID_MAX), f"a uid/gid (an int from 0 to {ID_MAX})"),
    "id?": (lambda x: x is None or is_int_in(x, 0, ID_MAX), f"None or a uid/gid (an int from 0 to {ID_MAX})"),
    "time": (lambda x: is_int_in(x, TIME_MIN, TIME_MAX), "a time in ns (a signed 64-bit int)"),
    "time?": (lambda x: x is None or is_int_in(x, TIME_MIN, TIME_MAX), "None or a time in ns (a signed 64-bit int)"),
    "size?": (lambda x: x is None or is_int_in(x, 0, MAX_FILE_SIZE), f"None or a size (an int from 0 to {MAX_FILE_SIZE})"),
    "bool": (lambda x: type(x) is bool, "a bool"),
    "unmap": (valid_unmap, "a flat list [fblk, nblk, ...] of ints, fblk >= 0, nblk >= 0 or -1"),
    "map": (valid_map, "a flat list [fblk, nblk, pblk, flags, ...] of ints >= 0, nblk > 0, "
                       f"flags within {MAP_FLAGS:#b}"),
    "items": (lambda x: _batch_items_error(x) is None, "a non-empty list of [CODE, *fields] records (no Batch)"),
    "blk": (lambda x: is_int_in(x, 0, MAX_BLOCKS), f"a data block number (an int from 0 to {MAX_BLOCKS})"),
    "count": (lambda x: is_int_in(x, 1, MAX_BLOCKS), f"a block count (an int from 1 to {MAX_BLOCKS})"),
    "page": (lambda x: is_int_in(x, 0, MAX_FILE_SIZE) and not x % PAGE,  # type: ignore[operator]
             f"a pool byte offset (an int from 0 to {MAX_FILE_SIZE}, a multiple of {PAGE})"),
    "pages": (lambda x: is_int_in(x, PAGE, MAX_FILE_SIZE) and not x % PAGE,  # type: ignore[operator]
              f"a byte length (an int from {PAGE} to {MAX_FILE_SIZE}, a multiple of {PAGE})"),
}


def _wrong_type(kind: str, value: object) -> bool:
    if kind.endswith("?") and value is None:
        return False
    plain = kind.rstrip("?")
    if plain in ("name", "target"):
        return type(value) is not str
    if plain == "items":
        return False            # _batch_items_error says what is wrong with a batch
    return type(value) is not (bool if plain == "bool" else list if plain in ("unmap", "map") else int)


def _reject(cls: type, values: tuple[object, ...]) -> None:
    """Raise the TypeError (a field of the wrong type, first) or ValueError (out of its
    range) that says which field of ``values`` is wrong."""
    fields = list(zip(cls._fields, cls._KINDS, values))   # type: ignore[attr-defined]
    for field, kind, value in fields:
        ok, want = _KINDS[kind]
        if _wrong_type(kind, value) or (kind in ("unmap", "map") and not _ints(value, 2 if kind == "unmap" else 4)):
            raise TypeError(f"{cls.__name__}.{field} must be {want}, not {_show(value)}")
    for field, kind, value in fields:
        ok, want = _KINDS[kind]
        if ok(value):
            continue
        if kind == "items":
            raise ValueError(f"{cls.__name__}.items: {_batch_items_error(value)}")
        raise ValueError(f"{cls.__name__}.{field} must be {want}, not {_show(value)}")
    raise ValueError(f"{cls.__name__}: invalid fields {_show(values)}")     # (the checks above disagree)


def _show(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


def _ints(values: object, arity: int) -> bool:
    """Whether ``values`` is a flat list of ints (not bools) whose length is a multiple of ``arity``."""
    return type(values) is list and not len(values) % arity and (not values or all_ints(values))


class _Checked(tuple):  # type: ignore[type-arg]
    """What every record shares: ``_make``/``_replace`` go through the checks too."""

    __slots__ = ()
    _KINDS: tuple[str, ...] = ()

    @classmethod
    def _make(cls, iterable: Iterable[object]) -> Any:
        return cls(*iterable)

    @classmethod
    def checked(cls, *fields: object) -> Any:
        """The record, built and ``validate``d: what the log decoder uses."""
        return cls(*fields).validate()

    def validate(self) -> Any:
        """Every field in its range too (construction checks types); returns the record."""
        raise NotImplementedError


# Each record is a NamedTuple holding the fields (so it packs as a plain list and keeps
# NamedTuple's conveniences) under a subclass whose __new__ checks their types and
# whose validate() checks their ranges.

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
        if not (type(ino) is int and type(parent) is int and type(mode) is int and type(uid) is int
                and type(gid) is int and type(time_ns) is int and type(name) is str):
            _reject(cls, (ino, parent, name, mode, uid, gid, time_ns))
        return _new(cls, (ino, parent, name, mode, uid, gid, time_ns))

    def validate(self) -> "Create":
        ino, parent, name, mode, uid, gid, time_ns = self
        if not (0 < ino <= INO_MAX and 0 < parent <= INO_MAX and valid_name(name)
                and (mode & NOT_PERM == _S_IFREG or mode & NOT_PERM == _S_IFDIR)
                and 0 <= uid <= ID_MAX and 0 <= gid <= ID_MAX and TIME_MIN <= time_ns <= TIME_MAX):
            _reject(type(self), self)
        return self


class _CreateNode(NamedTuple):
    ino: int
    parent: int
    name: str
    mode: int
    uid: int
    gid: int
    time_ns: int
    rdev: int
    target: str


class CreateNode(_Checked, _CreateNode):  # type: ignore[misc]
    """A new symbolic link (``target``, never empty) or special file (FIFO, socket, character or
    block device ``rdev``; ``target`` empty) linked as ``parent/name``.  Neither has blocks or
    entries: a record of its own rather than a wider ``Create``, so pools written before it
    still decode and its fields are checked for what each type needs."""

    __slots__ = ()
    CODE = 12
    _KINDS = ("ino", "ino", "name", "nodemode", "id", "id", "time", "rdev", "target")

    def __new__(cls, ino: int, parent: int, name: str, mode: int, uid: int, gid: int, time_ns: int,
                rdev: int, target: str) -> "CreateNode":
        if not (type(ino) is int and type(parent) is int and type(mode) is int and type(uid) is int
                and type(gid) is int and type(time_ns) is int and type(rdev) is int and type(name) is str
                and type(target) is str):
            _reject(cls, (ino, parent, name, mode, uid, gid, time_ns, rdev, target))
        return _new(cls, (ino, parent, name, mode, uid, gid, time_ns, rdev, target))

    def validate(self) -> "CreateNode":
        ino, parent, name, mode, uid, gid, time_ns, rdev, target = self
        link = mode & NOT_PERM == _st.S_IFLNK
        if not (0 < ino <= INO_MAX and 0 < parent <= INO_MAX and valid_name(name) and valid_node_mode(mode)
                and 0 <= uid <= ID_MAX and 0 <= gid <= ID_MAX and TIME_MIN <= time_ns <= TIME_MAX
                and 0 <= rdev <= RDEV_MAX and (valid_target(target) and rdev == 0 if link else target == "")):
            if valid_node_mode(mode) and link != (target != ""):
                raise ValueError(f"CreateNode.target must be {'a symlink target' if link else 'empty'} for "
                                 f"mode {mode:#o}, not {_show(target)}")
            if link and rdev:
                raise ValueError(f"CreateNode.rdev must be 0 for a symlink, not {rdev}")
            _reject(type(self), self)
        return self


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
        if not (type(ino) is int and type(parent) is int and type(time_ns) is int and type(name) is str):
            _reject(cls, (ino, parent, name, time_ns))
        return _new(cls, (ino, parent, name, time_ns))

    def validate(self) -> "Link":
        ino, parent, name, time_ns = self
        if not (0 < ino <= INO_MAX and 0 < parent <= INO_MAX and valid_name(name) and TIME_MIN <= time_ns <= TIME_MAX):
            _reject(type(self), self)
        return self


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
        if not (type(parent) is int and type(time_ns) is int and type(reclaim) is bool and type(name) is str):
            _reject(cls, (parent, name, time_ns, reclaim))
        return _new(cls, (parent, name, time_ns, reclaim))

    def validate(self) -> "Unlink":
        parent, name, time_ns, _reclaim = self
        if not (0 < parent <= INO_MAX and valid_name(name) and TIME_MIN <= time_ns <= TIME_MAX):
            _reject(type(self), self)
        return self


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
        if not (type(src_parent) is int and type(dst_parent) is int and type(time_ns) is int
                and type(reclaim) is bool and type(src_name) is str and type(dst_name) is str):
            _reject(cls, (src_parent, src_name, dst_parent, dst_name, time_ns, reclaim))
        return _new(cls, (src_parent, src_name, dst_parent, dst_name, time_ns, reclaim))

    def validate(self) -> "Rename":
        src_parent, src_name, dst_parent, dst_name, time_ns, _reclaim = self
        if not (0 < src_parent <= INO_MAX and 0 < dst_parent <= INO_MAX and valid_name(src_name)
                and valid_name(dst_name) and TIME_MIN <= time_ns <= TIME_MAX):
            _reject(type(self), self)
        return self


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
        if not (type(ino) is int and (mode is None or type(mode) is int) and (uid is None or type(uid) is int)
                and (gid is None or type(gid) is int) and (atime_ns is None or type(atime_ns) is int)
                and (mtime_ns is None or type(mtime_ns) is int) and (ctime_ns is None or type(ctime_ns) is int)):
            _reject(cls, (ino, mode, uid, gid, atime_ns, mtime_ns, ctime_ns))
        return _new(cls, (ino, mode, uid, gid, atime_ns, mtime_ns, ctime_ns))

    def validate(self) -> "SetAttr":
        ino, mode, uid, gid, atime_ns, mtime_ns, ctime_ns = self
        if not (0 < ino <= INO_MAX and (mode is None or 0 <= mode <= PERM_BITS)
                and (uid is None or 0 <= uid <= ID_MAX) and (gid is None or 0 <= gid <= ID_MAX)
                and (atime_ns is None or TIME_MIN <= atime_ns <= TIME_MAX)
                and (mtime_ns is None or TIME_MIN <= mtime_ns <= TIME_MAX)
                and (ctime_ns is None or TIME_MIN <= ctime_ns <= TIME_MAX)):
            _reject(type(self), self)
        return self


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
        if type(map) is list and len(map) == 4:    # most writes: one run, checked inline
            f, k, p, fl = map
            map_ok = type(f) is int and type(k) is int and type(p) is int and type(fl) is int
        else:
            map_ok = _ints(map, 4)
        if not (map_ok and type(ino) is int and (size is None or type(size) is int)
                and (time_ns is None or type(time_ns) is int)
                and (type(unmap) is list and not unmap or _ints(unmap, 2))):
            _reject(cls, (ino, unmap, map, size, time_ns))
        return _new(cls, (ino, unmap, map, size, time_ns))

    def validate(self) -> "SetExtents":
        ino, unmap, map, size, time_ns = self
        if not (0 < ino <= INO_MAX and (size is None or 0 <= size <= MAX_FILE_SIZE)
                and (time_ns is None or TIME_MIN <= time_ns <= TIME_MAX)
                and valid_unmap(unmap) and valid_map(map)):
            _reject(type(self), self)
        return self


class _Reclaim(NamedTuple):
    ino: int


class Reclaim(_Checked, _Reclaim):  # type: ignore[misc]
    """Free an orphan (an inode with no names) and all its blocks."""

    __slots__ = ()
    CODE = 7
    _KINDS = ("ino",)

    def __new__(cls, ino: int) -> "Reclaim":
        if type(ino) is not int:
            _reject(cls, (ino,))
        return _new(cls, (ino,))

    def validate(self) -> "Reclaim":
        if not 0 < self[0] <= INO_MAX:
            _reject(type(self), self)
        return self


class _Batch(NamedTuple):
    items: list[list[object]]


class Batch(_Checked, _Batch):  # type: ignore[misc]
    """Several records applied in order as one: ``items`` are ``[CODE, *fields]`` lists.

    For operations that are more than one change but must be all-or-nothing
    (``clone_file`` to a new name: create it and share the blocks).  Every item
    must be a record of another type: a batch may not nest, nor be empty."""

    __slots__ = ()
    CODE = 8
    _KINDS = ("items",)

    def __new__(cls, items: list[list[object]]) -> "Batch":
        if _batch_items_error(items, full=False) is not None:
            _reject(cls, (items,))
        return _new(cls, (items,))

    def validate(self) -> "Batch":
        error = _batch_items_error(self.items, full=True)
        if error is not None:
            raise ValueError(f"Batch.items: {error}")
        return self

    @classmethod
    def of(cls, *records: "Record") -> "Batch":
        items = [[getattr(type(r), "CODE", None), *r] for r in records]
        if records and all(RECORD_TYPES.get(item[0]) is type(r) and type(r) is not Batch
                           for item, r in zip(items, records)):
            # Records made already (each checked its fields' types then): their items need
            # no second check (a clone's block map of 65,536 ints took 0.7 ms a check).
            return _new(cls, (items,))
        return cls(items)       # (refuses, saying why)

    def records(self) -> list["Record"]:
        """The records of the batch."""
        return batch_records(self.items)


def batch_records(items: list[list[object]]) -> list["Record"]:
    """The records a Batch's ``items`` stand for.  Their fields' types were checked when
    the batch was made (by ``Batch()`` or ``Batch.of``), so they are not checked again."""
    return [_new(RECORD_TYPES[item[0]], item[1:]) for item in items]  # type: ignore[index]


def _batch_items_error(items: object, *, full: bool = True) -> str | None:
    """Why ``items`` is not a non-empty list of non-batch records (``full``: validated too), or None."""
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
            record = cls(*item[1:])
            if full:
                record.validate()
        except (TypeError, ValueError) as exc:
            return f"item {i}: {exc}"
    return None


class _BlockRange(NamedTuple):
    pblk: int
    nblk: int


class _BlockRangeRecord(_Checked, _BlockRange):  # type: ignore[misc]
    __slots__ = ()
    _KINDS = ("blk", "count")

    def __new__(cls, pblk: int, nblk: int) -> Any:
        if not (type(pblk) is int and type(nblk) is int):
            _reject(cls, (pblk, nblk))
        return _new(cls, (pblk, nblk))

    def validate(self) -> Any:
        pblk, nblk = self
        if not (0 <= pblk <= MAX_BLOCKS and 0 < nblk <= MAX_BLOCKS):
            _reject(type(self), self)
        return self


class Quarantine(_BlockRangeRecord):
    """Data blocks ``[pblk, pblk+nblk)`` are bad memory (``memory_failure``): never free or
    busy again; the files that own them read them as poisoned.  Parts already bad: no change."""

    __slots__ = ()
    CODE = 9


class ClearQuarantine(_BlockRangeRecord):
    """Bad data blocks that nobody owns are repaired (``clear_badblocks``): back to free space.
    The volume zeroed them before logging this."""

    __slots__ = ()
    CODE = 10


class _BadMetadata(NamedTuple):
    offset: int
    length: int
    bad: bool


class BadMetadata(_Checked, _BadMetadata):  # type: ignore[misc]
    """Pool bytes ``[offset, offset+length)`` outside the data area (superblocks, log,
    checkpoint slots) are bad memory (``bad``), or repaired (not ``bad``); whole pages.
    Which region that is, and what the volume does about it, is the volume's business."""

    __slots__ = ()
    CODE = 11
    _KINDS = ("page", "pages", "bool")

    def __new__(cls, offset: int, length: int, bad: bool) -> "BadMetadata":
        if not (type(offset) is int and type(length) is int and type(bad) is bool):
            _reject(cls, (offset, length, bad))
        return _new(cls, (offset, length, bad))

    def validate(self) -> "BadMetadata":
        offset, length, _bad = self
        if not (0 <= offset <= MAX_FILE_SIZE and PAGE <= length <= MAX_FILE_SIZE
                and not offset % PAGE and not length % PAGE):
            _reject(type(self), self)
        return self


Record = Create | Link | Unlink | Rename | SetAttr | SetExtents | Reclaim | Batch | Quarantine | ClearQuarantine | \
    BadMetadata | CreateNode

RECORD_TYPES: dict[int, type] = {cls.CODE: cls for cls in (Create, Link, Unlink, Rename, SetAttr, SetExtents,
                                                            Reclaim, Batch, Quarantine, ClearQuarantine,
                                                            BadMetadata, CreateNode)}
