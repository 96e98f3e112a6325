"""The small value types the public API returns: Stat, StatFS, Extent.

They are immutable named tuples so they compare, print and unpack like the
``os`` results they mirror.
"""

from __future__ import annotations

import stat as _stat
from typing import NamedTuple

__all__ = ["Stat", "StatFS", "Extent", "PinInfo", "Owner"]


class Stat(NamedTuple):
    """What ``vol.stat`` returns; field names follow ``os.stat_result``."""

    st_ino: int
    st_mode: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_blocks: int          # 512-byte units actually allocated to the file
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_blksize: int = 4096

    @property
    def st_atime(self) -> float:
        return self.st_atime_ns / 1e9

    @property
    def st_mtime(self) -> float:
        return self.st_mtime_ns / 1e9

    @property
    def st_ctime(self) -> float:
        return self.st_ctime_ns / 1e9

    def is_dir(self) -> bool:
        return _stat.S_ISDIR(self.st_mode)

    def is_file(self) -> bool:
        return _stat.S_ISREG(self.st_mode)


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
