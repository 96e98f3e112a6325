"""ExtentMap: one file's block map.

A run is ``(fblk, nblk, pblk, flags)``: file blocks ``fblk..fblk+nblk`` live
in data blocks ``pblk..pblk+nblk``.  Invariants: runs are sorted by ``fblk``,
never overlap, have ``nblk > 0``, and two runs adjacent both in the file and
in the pool with equal flags are merged (so a sequentially written file is a
single run).  Two parallel lists and ``bisect`` beat a tree here: most files
have a handful of runs and appends touch only the tail.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from itertools import repeat
from operator import add, and_, eq

UNWRITTEN = 1   # blocks allocated but never written: they read as zeros
SHARE = 2       # in a record's map only: the blocks are owned already; add an owner (reflink)

Run = tuple[int, int, int, int]

_EMPTY: tuple[()] = ()


class ExtentMap:
    """The sorted, merged runs of one file."""

    __slots__ = ("_starts", "_runs")

    def __init__(self, runs: list[Run] | None = None) -> None:
        # An empty map (every new or emptied-at-birth file) shares one empty tuple instead
        # of two lists of its own: 112 bytes a file; ``insert`` makes the lists.
        self._runs: list[Run] = _EMPTY      # type: ignore[assignment]
        self._starts: list[int] = _EMPTY    # type: ignore[assignment]
        if runs:
            for run in runs:
                self.insert(*run)

    @classmethod
    def from_flat(cls, flat: list[int]) -> "ExtentMap":
        """Build from ``[fblk, nblk, pblk, flags, ...]`` already sorted and merged (a checkpoint)."""
        emap = cls.__new__(cls)
        if len(flat) == 4:      # most files: one run
            emap._runs = [(flat[0], flat[1], flat[2], flat[3])]
            emap._starts = [flat[0]]
            return emap
        runs = [(flat[i], flat[i + 1], flat[i + 2], flat[i + 3]) for i in range(0, len(flat), 4)]
        emap._runs = runs
        emap._starts = [r[0] for r in runs]
        return emap

    def to_flat(self) -> list[int]:
        return [x for run in self._runs for x in run]

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(self._runs)

    def __bool__(self) -> bool:
        return bool(self._runs)

    @property
    def blocks(self) -> int:
        """Blocks mapped (written or not)."""
        return sum(r[1] for r in self._runs)

    @property
    def end(self) -> int:
        """One past the last mapped file block (0 when empty)."""
        if not self._runs:
            return 0
        last = self._runs[-1]
        return last[0] + last[1]

    def lookup(self, fblk: int) -> Run | None:
        """The run covering ``fblk``, or None for a hole."""
        i = bisect_right(self._starts, fblk) - 1
        if i >= 0:
            run = self._runs[i]
            if fblk < run[0] + run[1]:
                return run
        return None

    def is_hole(self, fblk: int, nblk: int) -> bool:
        """Whether nothing is mapped in ``[fblk, fblk+nblk)``."""
        i = bisect_right(self._starts, fblk)
        if i > 0:
            prev = self._runs[i - 1]
            if prev[0] + prev[1] > fblk:
                return False
        return i == len(self._starts) or self._starts[i] >= fblk + nblk

    def pblk_of(self, fblk: int) -> int | None:
        run = self.lookup(fblk)
        return None if run is None else run[2] + fblk - run[0]

    def slice(self, fblk: int, nblk: int) -> list[Run]:
        """The runs inside ``[fblk, fblk+nblk)``, clipped to it (holes omitted)."""
        end = fblk + nblk
        runs = self._runs
        if runs and fblk <= runs[0][0] and end >= runs[-1][0] + runs[-1][1]:
            return runs[:]          # all of it (a whole-file clone): nothing to clip
        i = max(0, bisect_right(self._starts, fblk) - 1)
        out: list[Run] = []
        while i < len(runs):
            f, n, p, fl = runs[i]
            if f >= end:
                break
            lo = f if f > fblk else fblk
            hi = f + n if f + n < end else end
            if lo < hi:
                out.append((lo, hi - lo, p + lo - f, fl))
            i += 1
        return out

    def pieces(self, fblk: int, nblk: int) -> list[Run]:
        """Cover ``[fblk, fblk+nblk)`` exactly: mapped runs, and holes as ``(f, n, -1, 0)``."""
        out: list[Run] = []
        pos = fblk
        for run in self.slice(fblk, nblk):
            if run[0] > pos:
                out.append((pos, run[0] - pos, -1, 0))
            out.append(run)
            pos = run[0] + run[1]
        if pos < fblk + nblk:
            out.append((pos, fblk + nblk - pos, -1, 0))
        return out

    def remove(self, fblk: int, nblk: int) -> list[Run]:
        """Unmap ``[fblk, fblk+nblk)``; return the removed runs, clipped."""
        end = fblk + nblk
        runs = self._runs
        i = max(0, bisect_right(self._starts, fblk) - 1)
        j = i
        keep: list[Run] = []
        removed: list[Run] = []
        while j < len(runs):
            f, n, p, fl = runs[j]
            if f >= end:
                break
            if f + n <= fblk:
                keep.append(runs[j])
                j += 1
                continue
            if f < fblk:
                keep.append((f, fblk - f, p, fl))
            lo = max(f, fblk)
            hi = min(f + n, end)
            removed.append((lo, hi - lo, p + lo - f, fl))
            if f + n > end:
                keep.append((end, f + n - end, p + end - f, fl))
            j += 1
        if removed:
            runs[i:j] = keep
            self._starts[i:j] = [r[0] for r in keep]
        return removed

    def insert(self, fblk: int, nblk: int, pblk: int, flags: int) -> None:
        """Map a range that is currently a hole, merging with neighbours."""
        runs = self._runs
        if runs is _EMPTY:
            runs = self._runs = []
            self._starts = []
        starts = self._starts
        i = bisect_right(starts, fblk)
        # merge with the left neighbour
        if i > 0:
            f, n, p, fl = runs[i - 1]
            if f + n == fblk and p + n == pblk and fl == flags:
                fblk, nblk, pblk = f, n + nblk, p
                i -= 1
                del runs[i]
                del starts[i]
        # merge with the right neighbour
        if i < len(runs):
            f, n, p, fl = runs[i]
            if fblk + nblk == f and pblk + nblk == p and fl == flags:
                nblk += n
                del runs[i]
                del starts[i]
        runs.insert(i, (fblk, nblk, pblk, flags))
        starts.insert(i, fblk)

    def fill_sorted(self, fblks: list[int], nblks: list[int], pblks: list[int]) -> None:
        """Map runs ``(fblks[i], nblks[i], pblks[i])`` (written) into this empty map: in file
        order, none overlapping (the caller checked); runs that continue each other in the
        file and in the pool are merged."""
        ends = list(map(add, fblks, nblks))
        if any(map(and_, map(eq, ends[:-1], fblks[1:]), map(eq, map(add, pblks[:-1], nblks[:-1]), pblks[1:]))):
            for f, n, p in zip(fblks, nblks, pblks):       # (seldom: a clone of unmerged runs)
                self.insert(f, n, p, 0)
            return
        self._runs = list(zip(fblks, nblks, pblks, repeat(0)))
        self._starts = list(fblks)

    def last_written_end(self) -> int:
        """One past the last file block holding written (not unwritten) data."""
        for f, n, _p, fl in reversed(self._runs):
            if not fl & UNWRITTEN:
                return f + n
        return 0


class _NoExtents(ExtentMap):
    """The empty map that every regular file without blocks shares (a million empty files
    at mount are a million maps fewer: 48 bytes and 0.1 µs each).  It never changes:
    ``Core._setextents``, the one place block maps change, gives a file a map of its own
    first.  Copies and pickles of it are itself."""

    __slots__ = ()

    def _changed(self, *args: object) -> None:
        raise TypeError("NO_EXTENTS is shared by every file without blocks and never changes")

    insert = remove = fill_sorted = _changed    # type: ignore[assignment]

    def __copy__(self) -> "_NoExtents":
        return self

    def __deepcopy__(self, memo: object) -> "_NoExtents":
        return self

    def __reduce__(self) -> str:
        return "NO_EXTENTS"


NO_EXTENTS: ExtentMap = _NoExtents()
