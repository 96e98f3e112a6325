"""The small value types the public API returns: Stat, StatFS, Extent.

They are immutable named tuples so they compare, print and unpack like the
``os`` results they mirror.
"""

from __future__ import annotations

import stat as _stat
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["Stat", "StatFS", "Extent", "PinInfo", "Owner", "DirEntry"]


class Stat(tuple):  # type: ignore[type-arg]
    """What ``vol.stat`` returns: shaped like ``os.stat_result``, so code written for ``os.stat``
    runs unchanged.

    As a sequence it is the ten fields ``os.stat_result`` has, in the same order
    (``st_mode, st_ino, st_dev, st_nlink, st_uid, st_gid, st_size`` and the three times
    as whole seconds); as attributes it has those and ``st_atime``/``st_mtime``/
    ``st_ctime`` as floats, the ``_ns`` times, ``st_blocks`` (512-byte units),
    ``st_blksize`` and ``st_rdev``.  ``fields()`` and ``Stat.from_fields`` carry all of
    them (the arbiter sends a stat that way).
    """

    _EXTRA = ("st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blocks", "st_blksize", "st_rdev")
    n_sequence_fields = 10

    def __new__(cls, st_mode: int, st_ino: int, st_dev: int, st_nlink: int, st_uid: int, st_gid: int,
                st_size: int, st_atime_ns: int, st_mtime_ns: int, st_ctime_ns: int, st_blocks: int,
                st_blksize: int = 4096, st_rdev: int = 0) -> "Stat":
        self = tuple.__new__(cls, (st_mode, st_ino, st_dev, st_nlink, st_uid, st_gid, st_size,
                                   st_atime_ns // 1_000_000_000, st_mtime_ns // 1_000_000_000,
                                   st_ctime_ns // 1_000_000_000))
        # the fields beyond the sequence, in one attribute (stat is on hot paths)
        self._extra = (st_atime_ns, st_mtime_ns, st_ctime_ns, st_blocks, st_blksize, st_rdev)
        return self

    _extra: tuple[int, int, int, int, int, int]
    st_atime_ns = property(lambda self: self._extra[0])
    st_mtime_ns = property(lambda self: self._extra[1])
    st_ctime_ns = property(lambda self: self._extra[2])
    st_blocks = property(lambda self: self._extra[3])
    st_blksize = property(lambda self: self._extra[4])
    st_rdev = property(lambda self: self._extra[5])

    st_mode = property(lambda self: self[0])
    st_ino = property(lambda self: self[1])
    st_dev = property(lambda self: self[2])
    st_nlink = property(lambda self: self[3])
    st_uid = property(lambda self: self[4])
    st_gid = property(lambda self: self[5])
    st_size = property(lambda self: self[6])

    @property
    def st_atime(self) -> float:
        return self._extra[0] / 1e9

    @property
    def st_mtime(self) -> float:
        return self._extra[1] / 1e9

    @property
    def st_ctime(self) -> float:
        return self._extra[2] / 1e9

    def fields(self) -> list[int]:
        """Every field, in ``Stat(...)``'s argument order."""
        return [*self[:7], *self._extra]

    @classmethod
    def from_fields(cls, fields: Sequence[int]) -> "Stat":
        return cls(*fields)

    def _replace(self, **changes: int) -> "Stat":
        names = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size", *self._EXTRA)
        values = dict(zip(names, self.fields()))
        unknown = set(changes) - set(names)
        if unknown:
            raise ValueError(f"Stat has no field {sorted(unknown)[0]!r}")
        values.update(changes)
        return Stat(*(values[name] for name in names))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Stat, tuple(self.fields()))

    def __repr__(self) -> str:
        return ("daxfs.Stat(st_mode=%o, st_ino=%d, st_dev=%d, st_nlink=%d, st_uid=%d, st_gid=%d, st_size=%d, "
                "st_atime=%d, st_mtime=%d, st_ctime=%d)" % tuple(self))

    def is_dir(self) -> bool:
        return _stat.S_ISDIR(self[0])

    def is_file(self) -> bool:
        return _stat.S_ISREG(self[0])

    def is_symlink(self) -> bool:
        return _stat.S_ISLNK(self[0])


class DirEntry:
    """One entry of ``vol.scandir``, as ``os.DirEntry``: ``name``, ``path``, ``inode()``,
    ``is_dir()``, ``is_file()``, ``is_symlink()``, ``stat()`` from the listing itself (a
    symbolic link is followed, with one more lookup, only when asked to)."""

    __slots__ = ("name", "path", "_stat", "_follow")

    def __init__(self, name: str, path: str, stat: Stat, follow: Any = None) -> None:
        self.name = name
        self.path = path
        self._stat = stat       # the entry itself (lstat)
        self._follow = follow   # stat(path), following links

    def inode(self) -> int:
        return self._stat.st_ino

    def is_symlink(self) -> bool:
        return self._stat.is_symlink()

    def stat(self, *, follow_symlinks: bool = True) -> Stat:
        if follow_symlinks and self._stat.is_symlink() and self._follow is not None:
            return self._follow(self.path)
        return self._stat

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._test(_stat.S_ISDIR, follow_symlinks)

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._test(_stat.S_ISREG, follow_symlinks)

    def _test(self, test: Any, follow_symlinks: bool) -> bool:
        try:
            return bool(test(self.stat(follow_symlinks=follow_symlinks).st_mode))
        except FileNotFoundError:       # a dangling link: neither, as os.DirEntry says
            return False

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"


class StatFS(NamedTuple):
    """What ``vol.statfs`` returns.  Byte counts; ``free + used + busy + bad == size``."""

    size: int               # bytes of data area (what files can use)
    block_size: int
    free: int
    used: int
    busy: int               # detached from files but still referenced (pins, mappings)
    bad: int                # quarantined after memory_failure
    files: int              # inodes in use, directories included
    metadata_size: int = 0  # bytes reserved for superblocks, log and checkpoints
    sync_mode: str = "msync"  # how persist reaches the medium: "map_sync", "msync" or "memory"
    shared: int = 0         # bytes in blocks owned by two files or more (counted once in used)
    resident: int = 0       # bytes of the whole pool (metadata too) the medium holds in memory now

    # The names of ``os.statvfs``'s result, for code written against it (units of f_frsize).
    @property
    def f_bsize(self) -> int:
        return self.block_size

    @property
    def f_frsize(self) -> int:
        return self.block_size

    @property
    def f_blocks(self) -> int:
        return self.size // self.block_size

    @property
    def f_bfree(self) -> int:
        return self.free // self.block_size

    @property
    def f_bavail(self) -> int:
        return self.free // self.block_size

    @property
    def f_files(self) -> int:
        return self.files + self.f_ffree

    @property
    def f_ffree(self) -> int:
        # Inodes are not preallocated: as many more as there are free blocks, roughly.
        return self.free // self.block_size

    @property
    def f_favail(self) -> int:
        return self.f_ffree

    @property
    def f_flag(self) -> int:
        return 0

    @property
    def f_namemax(self) -> int:
        return 255


class Extent(NamedTuple):
    """One run of a file's blocks, as ``File.extents`` lists them."""

    file_offset: int
    length: int
    pool_offset: int
    flags: frozenset[str] = frozenset()   # "unwritten", "shared", "poisoned"


class PinInfo(NamedTuple):
    """One reference to a file range, as ``vol.pins()`` lists it."""

    holder: str             # the holder's name
    ino: int
    path: str | None        # a current name of the file; None once it has none (an orphan)
    offset: int             # file range, bytes
    length: int
    kind: str               # "pin", "mapping" or "lease"
    since: float            # time.time() when it was taken
    pid: int | None = None  # the holder's process (for a client of the arbiter, the client's)
    uid: int | None = None  # and its user


class Owner(NamedTuple):
    """One owner of pool bytes, as ``vol.owners()`` lists it (the reverse map)."""

    ino: int
    path: str | None        # a current name; None for an orphan
    file_offset: int
    length: int
    pool_offset: int = 0    # where these bytes are in the pool
