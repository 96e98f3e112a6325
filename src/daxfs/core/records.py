"""The log records: every metadata change daxfs makes is one of these.

A record carries every decision (inode numbers, blocks chosen, timestamps),
so applying it is deterministic: a live operation and a replay at mount go
through the same ``Core.apply`` and cannot diverge.  One operation is one
record, so each is all-or-nothing.  ``CODE`` numbers are part of the on-pool
format: never reuse one.
"""

from __future__ import annotations

from typing import NamedTuple


class Create(NamedTuple):
    """A new inode (file or directory, by ``mode``) linked as ``parent/name``."""

    CODE = 1
    ino: int
    parent: int
    name: str
    mode: int
    uid: int
    gid: int
    time_ns: int


class Link(NamedTuple):
    """Another name ``parent/name`` for the file ``ino``."""

    CODE = 2
    ino: int
    parent: int
    name: str
    time_ns: int


class Unlink(NamedTuple):
    """Remove ``parent/name``.  A file left with no names becomes an orphan,
    or is freed at once when ``reclaim`` is set (nobody has it open)."""

    CODE = 3
    parent: int
    name: str
    time_ns: int
    reclaim: bool


class Rename(NamedTuple):
    """Move ``src_parent/src_name`` to ``dst_parent/dst_name``, replacing what
    is there (handled like ``Unlink`` of the target, with ``reclaim``)."""

    CODE = 4
    src_parent: int
    src_name: str
    dst_parent: int
    dst_name: str
    time_ns: int
    reclaim: bool


class SetAttr(NamedTuple):
    """Change inode attributes; None leaves one as it is."""

    CODE = 5
    ino: int
    mode: int | None
    uid: int | None
    gid: int | None
    atime_ns: int | None
    mtime_ns: int | None
    ctime_ns: int | None


class SetExtents(NamedTuple):
    """Change a file's block map and size in one step.

    ``unmap`` is flat ``[fblk, nblk, ...]`` (``nblk == -1``: to the end);
    ``map`` is flat ``[fblk, nblk, pblk, flags, ...]`` applied after it,
    each replacing whatever was mapped there.  Blocks a file loses are
    freed; blocks it gains are taken from free space.  ``size`` and
    ``time_ns`` (mtime and ctime) are set when not None.
    """

    CODE = 6
    ino: int
    unmap: list[int]
    map: list[int]
    size: int | None
    time_ns: int | None


class Reclaim(NamedTuple):
    """Free an orphan (an inode with no names) and all its blocks."""

    CODE = 7
    ino: int


class Batch(NamedTuple):
    """Several records applied in order as one: ``items`` are ``[CODE, *fields]`` lists.

    For operations that are more than one change but must be all-or-nothing
    (``clone_file`` to a new name: create it and share the blocks)."""

    CODE = 8
    items: list[list[object]]

    @classmethod
    def of(cls, *records: "Record") -> "Batch":
        return cls([[type(r).CODE, *r] for r in records])  # type: ignore[attr-defined]

    def records(self) -> list["Record"]:
        out = []
        for item in self.items:
            cls = RECORD_TYPES[item[0]]  # type: ignore[index]
            if cls is Batch:
                raise ValueError("a batch may not nest")
            out.append(cls(*item[1:]))
        return out


Record = Create | Link | Unlink | Rename | SetAttr | SetExtents | Reclaim | Batch

RECORD_TYPES: dict[int, type] = {cls.CODE: cls for cls in (Create, Link, Unlink, Rename, SetAttr, SetExtents,
                                                            Reclaim, Batch)}
