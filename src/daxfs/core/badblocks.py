"""BlockRuns: a set of blocks kept as disjoint runs — the quarantine of bad memory.

``Core.bad`` holds the data blocks reported bad (``Quarantine`` records): a bad
block is never free and never busy; it may still be owned by the files whose
data it held (their ranges read as poisoned) until they let go of it, and it
stays quarantined after that until an admin clears it (``ClearQuarantine``).
``Core.bad_metadata`` holds bad pool byte ranges outside the data area
(superblocks, log, checkpoint slots), which the volume works around.

It is a ``dict`` (start -> length) so that the hot paths' "is anything bad?"
is a C-level truth test of an empty dict: reads and mappings of a volume with
no bad memory pay nothing else.  The sorted ``starts`` list answers overlap
queries in O(log n).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import TYPE_CHECKING

from daxfs.errors import CorruptVolumeError

if TYPE_CHECKING:
    from daxfs.core.state import Core


class BlockRuns(dict[int, int]):
    """Disjoint, non-adjacent runs ``start -> length`` of blocks (or bytes)."""

    __slots__ = ("starts", "total")

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[int] = []
        self.total = 0                  # blocks in all runs

    @classmethod
    def of(cls, runs: list[tuple[int, int]]) -> "BlockRuns":
        out = cls()
        for start, n in runs:
            out.add(start, n)
        return out

    def runs(self) -> list[tuple[int, int]]:
        """``(start, length)`` in order."""
        return [(s, self[s]) for s in self.starts]

    def to_flat(self) -> list[int]:
        return [x for s in self.starts for x in (s, self[s])]

    def overlaps(self, start: int, n: int) -> bool:
        """Whether any of ``[start, start+n)`` is in the set."""
        i = bisect_right(self.starts, start + n - 1) - 1
        return i >= 0 and self.starts[i] + self[self.starts[i]] > start

    def parts(self, start: int, n: int) -> list[tuple[int, int]]:
        """The runs inside ``[start, start+n)``, clipped to it, in order."""
        end = start + n
        starts = self.starts
        out = []
        i = bisect_right(starts, start) - 1
        if i >= 0 and starts[i] + self[starts[i]] >= end:
            return [(start, n)] if n > 0 else []     # (the common case: inside one run)
        i = max(0, i)
        while i < len(starts) and starts[i] < end:
            s = starts[i]
            e = s + self[s]
            if e > start:
                out.append((max(s, start), min(e, end) - max(s, start)))
            i += 1
        return out

    def outside(self, start: int, n: int) -> list[tuple[int, int]]:
        """The parts of ``[start, start+n)`` not in the set, in order."""
        out = []
        pos = start
        for s, k in self.parts(start, n):
            if s > pos:
                out.append((pos, s - pos))
            pos = s + k
        if pos < start + n:
            out.append((pos, start + n - pos))
        return out

    def add(self, start: int, n: int) -> list[tuple[int, int]]:
        """Add ``[start, start+n)``; returns the parts that were not in the set before."""
        starts = self.starts
        i = bisect_left(starts, start)
        if n > 0 and (i == 0 or starts[i - 1] + self[starts[i - 1]] < start) and \
                (i == len(starts) or starts[i] > start + n):
            starts.insert(i, start)     # (the common case: touching no run)
            self[start] = n
            self.total += n
            return [(start, n)]
        new = self.outside(start, n)
        if not new:
            return []
        lo, hi = start, start + n
        starts = self.starts
        # swallow every run that overlaps or touches the new one
        i = max(0, bisect_left(starts, lo) - 1)
        while i < len(starts) and starts[i] <= hi:
            s = starts[i]
            e = s + self[s]
            if e < lo:
                i += 1
                continue
            lo, hi = min(lo, s), max(hi, e)
            del starts[i]
            self.total -= self.pop(s)
        insort(starts, lo)
        self[lo] = hi - lo
        self.total += hi - lo
        return new

    def remove(self, start: int, n: int) -> None:
        """Take ``[start, start+n)`` out of the set (parts not in it are ignored)."""
        starts = self.starts
        i = bisect_right(starts, start) - 1
        if i >= 0 and n > 0:
            s = starts[i]
            e = s + self[s]
            if e >= start + n:
                # The common case, taken from a run (allocations come from the front of one):
                # cut it in place.
                if s == start:
                    del self[s]
                    if e > start + n:
                        starts[i] = start + n
                        self[start + n] = e - start - n
                    else:
                        del starts[i]
                else:
                    self[s] = start - s
                    if e > start + n:
                        starts.insert(i + 1, start + n)
                        self[start + n] = e - start - n
                self.total -= n
                return
            if e <= start and (i + 1 == len(starts) or starts[i + 1] >= start + n):
                return      # nothing of it is in the set
        elif n > 0 and (not starts or starts[0] >= start + n):
            return
        for s, k in self.parts(start, n):
            run_start = self.starts[bisect_right(self.starts, s) - 1]
            run_end = run_start + self[run_start]
            del self.starts[bisect_left(self.starts, run_start)]
            self.total -= self.pop(run_start)
            for a, b in ((run_start, s), (s + k, run_end)):
                if b > a:
                    insort(self.starts, a)
                    self[a] = b - a
                    self.total += b - a


def merge_runs(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of two lists of runs, as sorted disjoint runs."""
    out: list[tuple[int, int]] = []
    for start, n in sorted(a + b):
        if out and start <= out[-1][0] + out[-1][1]:
            last_start, last_n = out[-1]
            out[-1] = (last_start, max(last_start + last_n, start + n) - last_start)
        else:
            out.append((start, n))
    return out


# ---- applying the quarantine records (Core.apply dispatches here)

def apply_quarantine(core: "Core", pblk: int, nblk: int) -> None:
    """``Quarantine``: the blocks are bad.  Free ones leave free space and busy ones the busy
    list at once (a pin on them still holds them; when it goes they stay quarantined);
    owned ones stay with their files, poisoned, until the files let go of them."""
    if pblk + nblk > core.data_blocks:
        raise CorruptVolumeError(f"quarantine of data blocks {pblk}..{pblk + nblk}, past the data area "
                                 f"({core.data_blocks} blocks)")
    space = core.space
    for start, n in core.bad.add(pblk, nblk):
        for s, k in space.free_parts(start, n):
            space.take(s, k)
        core.busy.take_busy(start, n)


def apply_clear(core: "Core", pblk: int, nblk: int) -> None:
    """``ClearQuarantine``: repaired blocks that no file owns go back to free space (or to
    the busy list while something still holds them: never under a live reference)."""
    if pblk + nblk > core.data_blocks or core.bad.outside(pblk, nblk) or core.rmap.owners(pblk, nblk):
        raise CorruptVolumeError(f"clear of data blocks {pblk}..{pblk + nblk}: not all bad, or a file "
                                 f"still owns some")
    core.bad.remove(pblk, nblk)
    core.release_blocks(pblk, nblk)


def apply_bad_metadata(core: "Core", offset: int, length: int, bad: bool) -> None:
    """``BadMetadata``: kept as pool byte runs; the volume knows what lives there."""
    if bad:
        core.bad_metadata.add(offset, length)
    else:
        core.bad_metadata.remove(offset, length)


def load_bad(core: "Core", extra: object) -> None:
    """The checkpoint's third field, ``[bad block runs, bad metadata byte runs]`` (flat lists);
    absent in checkpoints written before memory failures were recorded.  CorruptVolumeError
    unless the runs are ints, sorted, disjoint, non-empty and in range."""
    if type(extra) is not list or len(extra) != 2:
        raise CorruptVolumeError(f"checkpoint: bad memory field is {extra!r:.60}, not [blocks, metadata]")
    for flat, what, limit, unit in ((extra[0], "bad data blocks", core.data_blocks, 1),
                                    (extra[1], "bad metadata", 1 << 62, 4096)):
        if type(flat) is not list or len(flat) & 1 or not all(type(x) is int for x in flat):
            raise CorruptVolumeError(f"checkpoint: {what} are {flat!r:.60}, not a flat [start, length, ...] "
                                     f"list of ints")
        prev = -1
        target = core.bad if unit == 1 else core.bad_metadata
        for i in range(0, len(flat), 2):
            start, n = flat[i], flat[i + 1]
            if not (start > prev and n > 0 and start + n <= limit and not start % unit and not n % unit):
                raise CorruptVolumeError(f"checkpoint: {what} run {start}+{n} is out of order, empty, "
                                         f"unaligned or past the end ({limit})")
            prev = start + n
            target.add(start, n)


__all__ = ["BlockRuns", "merge_runs", "apply_quarantine", "apply_clear", "apply_bad_metadata", "load_bad"]
