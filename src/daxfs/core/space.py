"""FreeSpace: the data area's free extents, and the allocator's policy.

Free space is derived (at mount, from every file's extent map), never logged:
the log records which blocks a file gained or lost, and ``take``/``release``
replay that.  ``plan`` is a pure query — it picks blocks without taking them —
so the volume can fail with ENOSPC before anything is written.

Policy: a request continues a file's previous run when the blocks after it are
free (appends stay contiguous); requests of ``align_threshold`` blocks or more
start on a huge-page boundary when space allows; smaller requests take the
best fit, so small files do not eat into large aligned runs.  When no single
extent is big enough the request is split over the largest extents first.
"""

from __future__ import annotations

import errno

from sortedcontainers import SortedDict, SortedList

from daxfs.errors import CorruptVolumeError, fs_error


class FreeSpace:
    """Free block runs, indexed by start and by length."""

    __slots__ = ("_by_start", "_by_size", "total", "free", "align", "align_threshold")

    def __init__(self, total: int, *, align: int = 1, align_threshold: int | None = None) -> None:
        self._by_start: SortedDict = SortedDict()
        self._by_size: SortedList = SortedList()
        self.total = total
        self.free = 0
        self.align = max(1, align)
        self.align_threshold = align_threshold if align_threshold is not None else max(1, self.align // 2)

    @classmethod
    def from_used(cls, total: int, used: list[tuple[int, int]], **kw: int) -> "FreeSpace":
        """Free space is the complement of the used runs (which must not overlap)."""
        space = cls(total, **kw)
        pos = 0
        for start, n in sorted(used):
            if start < pos:
                raise CorruptVolumeError(f"data block {start} is owned twice")
            if start > pos:
                space._add(pos, start - pos)
            pos = start + n
        if pos > total:
            raise CorruptVolumeError(f"extent ends at block {pos}, past the data area ({total} blocks)")
        if pos < total:
            space._add(pos, total - pos)
        return space

    def runs(self) -> list[tuple[int, int]]:
        return list(self._by_start.items())

    def _add(self, start: int, n: int) -> None:
        self._by_start[start] = n
        self._by_size.add((n, start))
        self.free += n

    def _remove(self, start: int, n: int) -> None:
        del self._by_start[start]
        self._by_size.remove((n, start))
        self.free -= n

    def is_free(self, start: int, n: int) -> bool:
        i = self._by_start.bisect_right(start) - 1
        if i < 0:
            return False
        s, length = self._by_start.peekitem(i)
        return s <= start and start + n <= s + length

    def take(self, start: int, n: int) -> None:
        """Mark ``[start, start+n)`` used; it must be free."""
        i = self._by_start.bisect_right(start) - 1
        if i >= 0:
            s, length = self._by_start.peekitem(i)
            if s <= start and start + n <= s + length:
                self._remove(s, length)
                if start > s:
                    self._add(s, start - s)
                if start + n < s + length:
                    self._add(start + n, s + length - start - n)
                return
        raise CorruptVolumeError(f"blocks {start}..{start + n} taken but not free")

    def release(self, start: int, n: int) -> None:
        """Mark ``[start, start+n)`` free, merging with free neighbours."""
        if start < 0 or start + n > self.total:
            raise CorruptVolumeError(f"blocks {start}..{start + n} released outside the data area")
        by_start = self._by_start
        i = by_start.bisect_right(start)
        if i > 0:
            s, length = by_start.peekitem(i - 1)
            if s + length > start:
                raise CorruptVolumeError(f"blocks {start}..{start + n} released twice")
            if s + length == start:
                self._remove(s, length)
                start, n = s, length + n
                i -= 1
        if i < len(by_start):
            s, length = by_start.peekitem(i)
            if s < start + n:
                raise CorruptVolumeError(f"blocks {start}..{start + n} released twice")
            if s == start + n:
                self._remove(s, length)
                n += length
        self._add(start, n)

    def plan(self, n: int, goal: int | None = None) -> list[tuple[int, int]]:
        """Choose ``n`` free blocks as runs ``(start, count)``, taking nothing.

        Raises ``OSError(ENOSPC)`` when fewer than ``n`` blocks are free.
        """
        if n <= 0:
            return []
        if n > self.free:
            raise fs_error(errno.ENOSPC, message=f"no space left on device: need {n} blocks, {self.free} free")
        out: list[tuple[int, int]] = []
        used_start: int | None = None
        if goal is not None:
            i = self._by_start.bisect_right(goal) - 1
            if i >= 0:
                s, length = self._by_start.peekitem(i)
                if s <= goal < s + length:
                    got = min(n, s + length - goal)
                    out.append((goal, got))
                    n -= got
                    used_start = s
                    if n == 0:
                        return out
        by_size = self._by_size
        if n >= self.align_threshold and self.align > 1:
            a = self.align
            first = by_size.bisect_left((n, -1))
            # Any run of n + a - 1 blocks holds an aligned start; shorter ones
            # only by luck, so look at a few of those and then jump.
            sure = by_size.bisect_left((n + a - 1, -1))
            candidates = list(range(first, min(sure, first + 16))) + ([sure] if sure < len(by_size) else [])
            for k in candidates:
                length, s = by_size[k]
                if s == used_start:
                    continue
                aligned = -(-s // a) * a
                if aligned + n <= s + length:
                    out.append((aligned, n))
                    return out
        for k in range(by_size.bisect_left((n, -1)), len(by_size)):
            length, s = by_size[k]
            if s != used_start:
                out.append((s, n))
                return out
        # No single run holds the rest: spread it over the largest runs.
        for k in range(len(by_size) - 1, -1, -1):
            length, s = by_size[k]
            if s == used_start:
                continue
            got = min(n, length)
            out.append((s, got))
            n -= got
            if n == 0:
                return out
        raise fs_error(errno.ENOSPC, message="no space left on device")
