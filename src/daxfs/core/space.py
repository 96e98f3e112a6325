"""FreeSpace: the data area's free extents, and the allocator's policy.

Free space is derived (at mount, from every file's extent map), never logged:
the log records which blocks a file gained or lost, and ``take``/``release``
replay that.  ``plan`` is a pure query — it picks blocks without taking them —
so the volume can fail with ENOSPC before anything is written.

Policy: a request continues a file's previous run when the blocks after it are
free (appends stay contiguous); requests of ``align_threshold`` blocks or more
start on a huge-page boundary when space allows; smaller requests take a run
from the smallest size class that fits, so small files do not eat into large
aligned runs.  When no single run is big enough the request is split over the
largest runs first.

Beside free space, two things the medium knows about free blocks are kept here
(derived at mount and kept in memory, never logged): ``zero`` — free blocks known
to read as zeros (discarded, or never written), which a fresh write need not zero
— and ``unbacked`` — free blocks that may have no memory behind them (holes of a
sparse or discarded pool file), which must be reserved before they are handed
out.  Both only ever hold free blocks: ``take`` drops what it takes from them, so
a block that was handed out and freed again is neither until the volume learns
so anew.  Planning blocks for a write moves their zero marks to ``claimed``
(``claim``): that write may skip zeroing them, but if it fails after storing into
them (they stay free) nothing else will — a block is known zero for one plan
only.  ``on_free`` is told of every run that becomes free (the volume queues it
for discarding).

Structure: a sorted list of run starts (bisect; taking from the front of a
run, the common case, rewrites one slot in place), a dict start -> length,
and size classes (sets of starts by ``length.bit_length()``) for the fits.
From ``CHUNKED_FROM`` runs on (a fragmented volume) the list of starts is a
``ChunkedList``, as ``OwnerMap``'s is, and the bisect functions the methods call
through (``_bisect_left``, ``_bisect_right``) its methods: an insert into the
middle of a plain list of 400,000 moves 1.6 MB.  Either way ``_starts`` is the
keys of ``_length`` in ascending order.
"""

from __future__ import annotations

import errno

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from typing import Any

from daxfs.core import chunked
from daxfs.core.badblocks import BlockRuns
from daxfs.core.chunked import ChunkedList
from daxfs.errors import CorruptVolumeError, fs_error


class FreeSpace:
    """Free block runs, indexed by start and by size class."""

    __slots__ = ("_starts", "_length", "_classes", "_bisect_left", "_bisect_right", "total", "free", "align",
                 "align_threshold", "zero", "claimed", "unbacked", "on_free")

    _SCAN = 64      # runs looked at in a size class that may not fit, before moving up

    def __init__(self, total: int, *, align: int = 1, align_threshold: int | None = None) -> None:
        self._starts: list[int] | ChunkedList = []
        self._bisect_left: Callable[[Any, int], int] = bisect_left
        self._bisect_right: Callable[[Any, int], int] = bisect_right
        self._length: dict[int, int] = {}
        self._classes: list[set[int]] = [set() for _ in range(65)]
        self.total = total
        self.free = 0
        self.align = max(1, align)
        self.align_threshold = align_threshold if align_threshold is not None else max(1, self.align // 2)
        self.zero = BlockRuns()         # free blocks known to read as zeros
        self.claimed = BlockRuns()      # ... and planned since, by the write that may rely on it
        self.unbacked = BlockRuns()     # free blocks that may have no memory behind them
        self.on_free: Callable[[int, int], None] | None = None

    def __deepcopy__(self, memo: dict) -> "FreeSpace":
        """A copy of the state; not of ``on_free``, which belongs to the volume that listens."""
        from copy import deepcopy

        out = FreeSpace.__new__(FreeSpace)
        for name in self.__slots__:
            setattr(out, name, None if name == "on_free" else deepcopy(getattr(self, name), memo))
        return out

    @classmethod
    def from_used(cls, total: int, used: list[tuple[int, int]], **kw: int) -> "FreeSpace":
        """Free space is the complement of the used runs (which must not overlap)."""
        space = cls(total, **kw)
        starts = space._starts
        length = space._length
        classes = space._classes
        pos = 0
        free = 0
        for start, n in sorted(used):
            if start < pos:
                raise CorruptVolumeError(f"data block {start} is owned twice")
            if start > pos:
                starts.append(pos)
                length[pos] = start - pos
                classes[(start - pos).bit_length()].add(pos)
                free += start - pos
            pos = start + n
        if pos > total:
            raise CorruptVolumeError(f"extent ends at block {pos}, past the data area ({total} blocks)")
        if pos < total:
            starts.append(pos)
            length[pos] = total - pos
            classes[(total - pos).bit_length()].add(pos)
            free += total - pos
        space.free = free
        if len(starts) >= chunked.CHUNKED_FROM:
            space._chunk_starts()
        return space

    def _chunk_starts(self) -> None:
        """The list of starts, at ``CHUNKED_FROM`` runs, becomes a ``ChunkedList`` (never back)."""
        self._starts = ChunkedList(self._starts)
        self._bisect_left, self._bisect_right = ChunkedList.bisect_left, ChunkedList.bisect_right

    def runs(self) -> list[tuple[int, int]]:
        return [(s, self._length[s]) for s in self._starts]

    def _add(self, start: int, n: int) -> None:
        starts = self._starts
        if type(starts) is list and len(starts) < chunked.CHUNKED_FROM:
            insort(starts, start)
        else:
            if type(starts) is list:
                self._chunk_starts()
                starts = self._starts
            starts.insert(starts.bisect_left(start), start)     # type: ignore[union-attr]
        self._length[start] = n
        self._classes[n.bit_length()].add(start)
        self.free += n

    def _remove(self, start: int) -> int:
        del self._starts[self._bisect_left(self._starts, start)]
        n = self._length.pop(start)
        self._classes[n.bit_length()].discard(start)
        self.free -= n
        return n

    def _set_length(self, start: int, old: int, new: int) -> None:
        self._length[start] = new
        if old.bit_length() != new.bit_length():
            self._classes[old.bit_length()].discard(start)
            self._classes[new.bit_length()].add(start)
        self.free += new - old

    def _move_start(self, index: int, old: int, new: int, old_len: int, new_len: int) -> None:
        """The run at ``old`` now starts at ``new`` (same place in the order)."""
        self._starts[index] = new
        del self._length[old]
        self._length[new] = new_len
        self._classes[old_len.bit_length()].discard(old)
        self._classes[new_len.bit_length()].add(new)
        self.free += new_len - old_len

    def _containing(self, start: int) -> tuple[int, int, int] | None:
        """``(index, run start, run length)`` of the free run holding ``start``."""
        bisect = self._bisect_right     # (a local: faster to call)
        i = bisect(self._starts, start) - 1
        if i < 0:
            return None
        s = self._starts[i]
        n = self._length[s]
        return (i, s, n) if start < s + n else None

    def overlaps(self, start: int, n: int) -> bool:
        """Whether any block of ``[start, start+n)`` is free."""
        i = self._bisect_right(self._starts, start + n - 1) - 1
        return i >= 0 and self._starts[i] + self._length[self._starts[i]] > start

    def free_parts(self, start: int, n: int) -> list[tuple[int, int]]:
        """The free runs inside ``[start, start+n)``, clipped to it."""
        end = start + n
        out = []
        i = max(0, self._bisect_right(self._starts, start) - 1)
        starts = self._starts
        while i < len(starts) and starts[i] < end:
            s = starts[i]
            e = s + self._length[s]
            if e > start:
                out.append((max(s, start), min(e, end) - max(s, start)))
            i += 1
        return out

    def next_run(self, pos: int) -> tuple[int, int] | None:
        """The free run holding block ``pos`` (from ``pos`` on), else the first one after it."""
        i = self._bisect_right(self._starts, pos) - 1
        if i >= 0 and self._starts[i] + self._length[self._starts[i]] > pos:
            return pos, self._starts[i] + self._length[self._starts[i]] - pos
        if i + 1 < len(self._starts):
            s = self._starts[i + 1]
            return s, self._length[s]
        return None

    def is_free(self, start: int, n: int) -> bool:
        found = self._containing(start)
        return found is not None and start + n <= found[1] + found[2]

    def take(self, start: int, n: int) -> None:
        """Mark ``[start, start+n)`` used; it must be free."""
        found = self._containing(start)
        if found is None or start + n > found[1] + found[2] or n <= 0:
            raise CorruptVolumeError(f"blocks {start}..{start + n} taken but not free")
        i, s, length = found
        end = s + length
        # (one truth test each on the hot path when the medium tells nothing)
        if self.zero:
            self.zero.remove(start, n)
        if self.claimed:
            self.claimed.remove(start, n)
        if self.unbacked:
            self.unbacked.remove(start, n)
        if start == s:
            if n == length:
                self._remove(s)
            else:
                self._move_start(i, s, s + n, length, length - n)
            return
        self._set_length(s, length, start - s)
        if start + n < end:
            self._add(start + n, end - start - n)

    def release(self, start: int, n: int) -> None:
        """Mark ``[start, start+n)`` free, merging with free neighbours."""
        if start < 0 or n <= 0 or start + n > self.total:
            raise CorruptVolumeError(f"blocks {start}..{start + n} released outside the data area")
        starts = self._starts
        length = self._length
        bisect = self._bisect_right
        i = bisect(starts, start)
        left = starts[i - 1] if i > 0 else None
        right = starts[i] if i < len(starts) else None
        if left is not None and left + length[left] > start or right is not None and right < start + n:
            raise CorruptVolumeError(f"blocks {start}..{start + n} released twice")
        if self.on_free is not None:
            self.on_free(start, n)
        merge_left = left is not None and left + length[left] == start
        merge_right = right is not None and right == start + n
        if merge_left and merge_right:
            right_len = self._remove(right)  # type: ignore[arg-type]
            self._set_length(left, length[left], length[left] + n + right_len)  # type: ignore[index, arg-type]
        elif merge_left:
            self._set_length(left, length[left], length[left] + n)  # type: ignore[index, arg-type]
        elif merge_right:
            old = length[right]  # type: ignore[index]
            self._move_start(i, right, start, old, old + n)  # type: ignore[arg-type]
        else:
            self._add(start, n)

    def plan_excluding(self, n: int, goal: int | None, exclude: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """``plan``, as if the runs of ``exclude`` (already promised) were not free; it changes
        nothing, not even what is known of the excluded runs."""
        marks = [(runs, runs.parts(s, k)) for runs in (self.zero, self.claimed, self.unbacked) if runs
                 for s, k in exclude]
        hook, self.on_free = self.on_free, None
        taken = []
        try:
            for start, k in exclude:
                self.take(start, k)
                taken.append((start, k))
            return self.plan(n, goal)
        finally:
            for start, k in taken:
                self.release(start, k)
            self.on_free = hook
            for runs, parts in marks:
                for s, k in parts:
                    runs.add(s, k)

    def claim(self, plan: list[tuple[int, int]]) -> None:
        """Blocks of ``plan`` are about to be written: what of them is known zero is so for
        this plan alone (``claimed``), no longer for any later one."""
        zero, claimed = self.zero, self.claimed
        for start, n in plan:
            if claimed:
                claimed.remove(start, n)
            if zero:
                parts = zero.parts(start, n)
                if parts:
                    for s, k in parts:
                        claimed.add(s, k)
                    zero.remove(start, n)

    def plan(self, n: int, goal: int | None = None) -> list[tuple[int, int]]:
        """Choose ``n`` free blocks as runs ``(start, count)``, taking nothing.

        Raises ``OSError(ENOSPC)`` when fewer than ``n`` blocks are free.
        """
        if n <= 0:
            return []
        if n > self.free:
            raise fs_error(errno.ENOSPC, message=f"no space left on device: need {n} blocks, {self.free} free")
        out: list[tuple[int, int]] = []
        skip = -1
        length = self._length
        if goal is not None:
            # The block before the goal is the file's own, so a free goal starts a run.
            got = length.get(goal)
            if got:
                got = min(n, got)
                out.append((goal, got))
                n -= got
                skip = goal
                if n == 0:
                    return out
        classes = self._classes
        if n >= self.align_threshold and self.align > 1:
            a = self.align
            for k in range((n + a - 1).bit_length() - 1, 65):
                if not classes[k]:
                    continue
                for scanned, s in enumerate(classes[k]):
                    if s == skip:
                        continue
                    aligned = -(-s // a) * a
                    if aligned + n <= s + length[s]:
                        out.append((aligned, n))
                        return out
                    if scanned >= self._SCAN:
                        break
        for k in range(n.bit_length(), 65):
            if not classes[k]:
                continue
            for scanned, s in enumerate(classes[k]):
                if s == skip:
                    continue
                if length[s] >= n:
                    out.append((s, n))
                    return out
                if scanned >= self._SCAN:
                    break
        # No single run holds the rest: spread it over the largest runs.
        for k in range(64, 0, -1):
            for s in classes[k]:
                if s == skip:
                    continue
                got = min(n, length[s])
                out.append((s, got))
                n -= got
                if n == 0:
                    return out
        raise fs_error(errno.ENOSPC, message="no space left on device")
