"""Holds and the busy list: data blocks referenced from outside the metadata.

A mapping or a pin *holds* the data blocks it points at.  A held block that
its file gives up (truncate, punch, unlink) is *busy*: not free, never
allocated, counted by statfs, and freed when its last hold drops (the seeds'
"busy extents" with delayed free).  Nothing here is logged: after a crash
nothing holds anything, and the log already records those blocks as free.

``RunCounts`` keeps counts over disjoint block runs (start -> end, count), so
holding a 1 GiB mapping costs one run, not 262,144 block counters.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from daxfs.errors import CorruptVolumeError


class RunCounts:
    """Non-negative counts over blocks, stored as disjoint runs with a count > 0."""

    __slots__ = ("_starts", "_runs")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._runs: dict[int, tuple[int, int]] = {}      # start -> (end, count)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __len__(self) -> int:
        return len(self._starts)

    def runs(self) -> list[tuple[int, int, int]]:
        """``(start, end, count)`` in block order."""
        return [(s, *self._runs[s]) for s in self._starts]

    def _split(self, at: int) -> None:
        """Make ``at`` a run boundary if it falls inside a run."""
        i = bisect_right(self._starts, at) - 1
        if i < 0:
            return
        s = self._starts[i]
        end, count = self._runs[s]
        if s < at < end:
            self._runs[s] = (at, count)
            self._runs[at] = (end, count)
            self._starts.insert(i + 1, at)

    def overlapping(self, start: int, n: int) -> list[tuple[int, int, int]]:
        """The counted parts of ``[start, start+n)``: ``(start, end, count)``, clipped."""
        end = start + n
        out = []
        i = max(0, bisect_right(self._starts, start) - 1)
        starts = self._starts
        while i < len(starts) and starts[i] < end:
            s = starts[i]
            e, count = self._runs[s]
            if e > start:
                out.append((max(s, start), min(e, end), count))
            i += 1
        return out

    def add(self, start: int, n: int, delta: int) -> list[tuple[int, int]]:
        """Add ``delta`` over ``[start, start+n)``; return the runs whose count fell to zero."""
        end = start + n
        starts = self._starts
        runs = self._runs
        # Fast paths: a range no run touches yet, or exactly one run with count 1 going.
        i = bisect_right(starts, start)
        if delta > 0 and (i == 0 or runs[starts[i - 1]][0] <= start) and \
                (i == len(starts) or starts[i] >= end):
            starts.insert(i, start)
            runs[start] = (end, delta)
            return []
        if delta == -1 and i > 0 and starts[i - 1] == start and runs[start] == (end, 1):
            del starts[i - 1]
            del runs[start]
            return [(start, n)]
        self._split(start)
        self._split(end)
        zeroed: list[tuple[int, int]] = []
        pos = start
        i = bisect_left(self._starts, start)
        starts = self._starts
        runs = self._runs
        while pos < end:
            s = starts[i] if i < len(starts) else end
            if s > pos:             # a gap with no count yet
                gap_end = min(s, end)
                if delta < 0:
                    raise CorruptVolumeError(f"blocks {pos}..{gap_end} released more often than held")
                runs[pos] = (gap_end, delta)
                starts.insert(i, pos)
                i += 1
                pos = gap_end
                continue
            e, count = runs[s]
            count += delta
            if count < 0:
                raise CorruptVolumeError(f"blocks {s}..{e} released more often than held")
            if count == 0:
                del runs[s]
                del starts[i]
                zeroed.append((s, e - s))
            else:
                runs[s] = (e, count)
                i += 1
            pos = e
        return zeroed


class BusyList:
    """Held block runs, and the blocks files gave up while they were held."""

    __slots__ = ("holds", "_busy", "blocks")

    def __init__(self) -> None:
        self.holds = RunCounts()
        self._busy: dict[int, int] = {}      # start -> length, disjoint
        self.blocks = 0                      # busy block count

    def runs(self) -> list[tuple[int, int]]:
        """Busy runs ``(start, length)`` in block order."""
        return sorted(self._busy.items())

    def hold(self, start: int, n: int) -> None:
        self.holds.add(start, n, 1)

    def unhold(self, start: int, n: int) -> list[tuple[int, int]]:
        """Drop one hold; return the busy runs that no one holds any more (now to be freed)."""
        freed: list[tuple[int, int]] = []
        for s, k in self.holds.add(start, n, -1):
            freed.extend(self.take_busy(s, k))
        return freed

    def park(self, start: int, n: int) -> list[tuple[int, int]]:
        """Blocks ``[start, start+n)`` leave their file: the held parts become busy.

        Returns the parts nobody holds, which the caller frees.
        """
        if not self.holds:
            return [(start, n)]
        free: list[tuple[int, int]] = []
        pos = start
        for s, e, _count in self.holds.overlapping(start, n):
            if s > pos:
                free.append((pos, s - pos))
            self._busy[s] = e - s
            self.blocks += e - s
            pos = e
        if pos < start + n:
            free.append((pos, start + n - pos))
        return free

    def take_busy(self, start: int, n: int) -> list[tuple[int, int]]:
        """Remove the busy parts of ``[start, start+n)`` from the list and return them."""
        if not self._busy:
            return []
        out = []
        end = start + n
        for s in [s for s, k in self._busy.items() if s < end and s + k > start]:
            k = self._busy.pop(s)
            lo, hi = max(s, start), min(s + k, end)
            if s < lo:
                self._busy[s] = lo - s
            if hi < s + k:
                self._busy[hi] = s + k - hi
            self.blocks -= hi - lo
            out.append((lo, hi - lo))
        return out
