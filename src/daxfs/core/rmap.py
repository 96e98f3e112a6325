"""OwnerMap: the reverse map, from data blocks to every (file, offset) that owns them.

Reflink lets several file ranges own one block; instead of an owner stored per
block (the struct-page association seed 001 wants gone), this map answers
"who owns blocks p..p+n" from the extent maps.  It is derived: built from
every file's runs at mount and kept in step by ``Core.apply``, never logged.
A block's reference count is its number of owners.

Storage: disjoint runs over data blocks, ``start -> (end, owners)``, where an
owner is ``(ino, delta)`` with ``file block = data block + delta`` — a delta
survives splitting a run, so splits never rewrite owners.  Neighbouring runs
with the same owners merge, so a file written sequentially is one run.  The
``start -> run`` table becomes a ``ChunkedTable`` from ``CHUNKED_FROM`` runs on
(``_growing``): a write into a volume of a million files never waits for a
million-entry dict to resize.  At the same time the sorted list of starts becomes a
``ChunkedList`` (an insert into a list of 400,000 moved 1.6 MB), and the two bisect
functions the methods call through (``_bisect_left``, ``_bisect_right``) become its
methods; below ``CHUNKED_FROM`` they are ``bisect``'s, on a plain list, at C speed.

Invariant: ``_starts`` is the keys of ``_runs`` in ascending order, and runs are
disjoint and non-empty (``start < end <= next start``); ``_starts`` is a
``ChunkedList``, and the bisect functions its methods, exactly when ``_runs`` is a
``ChunkedTable``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from itertools import compress, repeat
from operator import add, itemgetter, sub
from typing import Any

from daxfs.core import chunked
from daxfs.core.chunked import ChunkedList, ChunkedTable
from daxfs.errors import CorruptVolumeError

Owner = tuple[int, int]     # (ino, file block - data block)
Run = tuple[int, tuple[Owner, ...]]     # (end, owners)


class OwnerMap:
    """Owners of every owned data block, as disjoint runs."""

    __slots__ = ("_starts", "_runs", "_bisect_left", "_bisect_right", "shared_blocks")

    def __init__(self) -> None:
        self._starts: list[int] | ChunkedList = []
        self._runs: dict[int, Run] | ChunkedTable[Run] = {}
        self._bisect_left: Callable[[Any, int], int] = bisect_left
        self._bisect_right: Callable[[Any, int], int] = bisect_right
        #: blocks with two owners or more (counted once each)
        self.shared_blocks = 0

    @classmethod
    def build(cls, owned: list[tuple[int, int, int, int]]) -> "OwnerMap":
        """From ``(pblk, n, ino, fblk)`` runs of every file (any order).

        Sorted, runs that share no block (no reflinks: the usual volume) are laid
        down in one pass, merged as ``add`` merges them; the first shared block
        sends the whole build through ``add``."""
        rmap = cls()
        ordered = sorted(owned)
        starts, runs = rmap._starts, rmap._runs
        prev_start = prev_end = -1
        for pblk, n, ino, fblk in ordered:
            if pblk < prev_end:
                rmap = cls()
                for run in ordered:
                    rmap.add(*run)
                return rmap
            owner = (ino, fblk - pblk)
            if pblk == prev_end and runs[prev_start][1] == (owner,):
                runs[prev_start] = (pblk + n, (owner,))
            else:
                starts.append(pblk)
                runs[pblk] = (pblk + n, (owner,))
                prev_start = pblk
            prev_end = pblk + n
        rmap._growing()
        return rmap

    def _growing(self) -> None:
        """Before a change that may add runs: a large map is made a chunked one."""
        if len(self._runs) >= chunked.CHUNKED_FROM and type(self._runs) is dict:
            self._runs = ChunkedTable.adopt(self._runs)
            self._starts = ChunkedList(self._starts)
            self._bisect_left, self._bisect_right = ChunkedList.bisect_left, ChunkedList.bisect_right

    def __len__(self) -> int:
        return len(self._starts)

    def runs(self) -> list[tuple[int, int, tuple[Owner, ...]]]:
        """``(start, end, owners)`` in block order."""
        return [(s, *self._runs[s]) for s in self._starts]

    def covered(self) -> list[tuple[int, int]]:
        """Owned block runs ``(start, length)``, merged, in order (free space is the rest)."""
        out: list[tuple[int, int]] = []
        for s in self._starts:
            end = self._runs[s][0]
            if out and out[-1][0] + out[-1][1] == s:
                out[-1] = (out[-1][0], end - out[-1][0])
            else:
                out.append((s, end - s))
        return out

    # ---- queries

    def _first_at(self, start: int) -> int:
        i = self._bisect_right(self._starts, start) - 1
        if i >= 0 and self._runs[self._starts[i]][0] > start:
            return i
        return i + 1

    def owners(self, start: int, n: int) -> list[tuple[int, int, int, int]]:
        """``(ino, fblk, pblk, length)`` for every owner of blocks in ``[start, start+n)``."""
        end = start + n
        out = []
        starts = self._starts
        i = self._first_at(start)
        while i < len(starts) and starts[i] < end:
            s = starts[i]
            e, owners = self._runs[s]
            lo, hi = max(s, start), min(e, end)
            for ino, delta in owners:
                out.append((ino, lo + delta, lo, hi - lo))
            i += 1
        return out

    def shared_parts(self, start: int, n: int) -> list[tuple[int, int]]:
        """The runs of ``[start, start+n)`` with two owners or more."""
        if not self.shared_blocks:
            return []
        end = start + n
        out = []
        starts = self._starts
        i = self._first_at(start)
        while i < len(starts) and starts[i] < end:
            s = starts[i]
            e, owners = self._runs[s]
            if len(owners) > 1:
                out.append((max(s, start), min(e, end) - max(s, start)))
            i += 1
        return out

    def is_owned(self, start: int, n: int) -> bool:
        """Whether every block of ``[start, start+n)`` has an owner."""
        pos = start
        starts = self._starts
        i = self._first_at(start)
        if i < len(starts) and starts[i] <= start and self._runs[starts[i]][0] >= start + n:
            return True
        while pos < start + n:
            if i >= len(starts) or starts[i] > pos:
                return False
            pos = self._runs[starts[i]][0]
            i += 1
        return True

    # ---- changes

    def _split(self, at: int) -> None:
        i = self._bisect_right(self._starts, at) - 1
        if i < 0:
            return
        s = self._starts[i]
        end, owners = self._runs[s]
        if s < at < end:
            self._runs[s] = (at, owners)
            self._runs[at] = (end, owners)
            self._starts.insert(i + 1, at)

    def _merge_around(self, i: int) -> None:
        """Merge run ``i`` with equal neighbours."""
        starts, runs = self._starts, self._runs
        if i + 1 < len(starts):
            s, nxt = starts[i], starts[i + 1]
            end, owners = runs[s]
            if end == nxt and runs[nxt][1] == owners:
                runs[s] = (runs[nxt][0], owners)
                del runs[nxt]
                del starts[i + 1]
        if i > 0:
            prev, s = starts[i - 1], starts[i]
            pend, powners = runs[prev]
            if pend == s and runs[s][1] == powners:
                runs[prev] = (runs[s][0], powners)
                del runs[s]
                del starts[i]

    def _count_shared(self, n: int, before: int, after: int) -> None:
        if (before > 1) != (after > 1):
            self.shared_blocks += n if after > 1 else -n

    def add(self, start: int, n: int, ino: int, fblk: int) -> None:
        """File ``ino``'s blocks ``fblk..`` now live in data blocks ``start..start+n``."""
        self._growing()
        owner = (ino, fblk - start)
        end = start + n
        starts, runs, bisect = self._starts, self._runs, self._bisect_right     # (a local: faster to call)
        i = bisect(starts, start)
        if (i == 0 or runs[starts[i - 1]][0] <= start) and (i == len(starts) or starts[i] >= end):
            starts.insert(i, start)             # the usual case: blocks nobody owned
            runs[start] = (end, (owner,))
            self._merge_around(i)
            return
        if i > 0 and starts[i - 1] == start and runs[start][0] == end and owner not in runs[start][1]:
            owners = runs[start][1]             # a clone of exactly one run: one more owner
            runs[start] = (end, owners + (owner,))
            self._count_shared(n, len(owners), len(owners) + 1)
            return
        self._split(start)
        self._split(end)
        pos = start
        i = self._bisect_left(starts, start)
        touched: list[int] = []
        while pos < end:
            s = starts[i] if i < len(starts) else end
            if s > pos:
                gap_end = min(s, end)
                starts.insert(i, pos)
                runs[pos] = (gap_end, (owner,))
                touched.append(pos)
                i += 1
                pos = gap_end
                continue
            e, owners = runs[s]
            if owner in owners:
                raise CorruptVolumeError(f"inode {ino} maps data blocks {s}..{e} twice at the same place")
            runs[s] = (e, owners + (owner,))
            self._count_shared(e - s, len(owners), len(owners) + 1)
            touched.append(s)
            i += 1
            pos = e
        for s in reversed(touched):
            j = self._bisect_left(starts, s)
            if j < len(starts) and starts[j] == s:
                self._merge_around(j)

    def share_whole_runs(self, ino: int, fblks: list[int], nblks: list[int], pblks: list[int]) -> bool:
        """Add owner ``ino`` to blocks ``pblks[i]..+nblks[i]`` (file blocks ``fblks[i]..``) in
        bulk — what ``add`` does for each — when each is exactly one owned run and no run is
        named twice (a clone of whole extents).  The caller's file maps nothing yet, so ``ino``
        owns none of them (this map is derived from the extent maps): no owner is added twice.
        False, with nothing changed, when that does not hold."""
        runs = self._runs
        found = list(map(runs.get, pblks))
        if None in found or len(set(pblks)) != len(pblks):
            return False
        ends = list(map(itemgetter(0), found))
        if ends != list(map(add, pblks, nblks)):
            return False        # not exactly one run each
        # Each run's owners and one more, (ino, delta): tuples built by zip and joined by
        # add, with no Python step per run.
        owners = list(map(itemgetter(1), found))
        more = zip(zip(repeat(ino), map(sub, fblks, pblks)))
        runs.update(zip(pblks, zip(ends, map(add, owners, more))))
        self.shared_blocks += sum(compress(nblks, map((1).__eq__, map(len, owners))))
        return True

    def remove(self, start: int, n: int, ino: int, fblk: int) -> list[tuple[int, int]]:
        """File ``ino`` no longer owns ``start..start+n``; return the blocks nobody owns now."""
        self._growing()
        owner = (ino, fblk - start)
        end = start + n
        starts, runs, bisect = self._starts, self._runs, self._bisect_right
        i = bisect(starts, start) - 1
        if i >= 0 and starts[i] == start and runs[start] == (end, (owner,)):
            del starts[i]                       # the usual case: one run, one owner
            del runs[start]
            return [(start, n)]
        if i >= 0:
            s = starts[i]
            e, owners = runs[s]
            if start < end <= e and len(owners) > 1 and owner in owners:
                # Inside one shared run (a copy-on-write gives up one block of a clone): the
                # run is cut in up to three, the middle one without the owner; only that one
                # can merge, and only where it reaches the run's ends.
                k = owners.index(owner)
                rest = owners[:k] + owners[k + 1:]
                if s < start:
                    runs[s] = (start, owners)
                    i += 1
                    starts.insert(i, start)
                runs[start] = (end, rest)
                if end < e:
                    runs[end] = (e, owners)
                    starts.insert(i + 1, end)
                self._count_shared(n, len(owners), len(rest))
                if s == start or end == e:
                    self._merge_around(i)
                return []
        self._split(start)
        self._split(end)
        freed: list[tuple[int, int]] = []
        pos = start
        i = self._bisect_left(starts, start)
        touched: list[int] = []
        while pos < end:
            if i >= len(starts) or starts[i] != pos:
                raise CorruptVolumeError(f"inode {ino} gives up data block {pos} it does not own")
            s = pos
            e, owners = runs[s]
            if owner not in owners:
                raise CorruptVolumeError(f"inode {ino} gives up data blocks {s}..{e} it does not own")
            rest = tuple(o for o in owners if o != owner)
            self._count_shared(e - s, len(owners), len(rest))
            if rest:
                runs[s] = (e, rest)
                touched.append(s)
                i += 1
            else:
                del runs[s]
                del starts[i]
                if freed and freed[-1][0] + freed[-1][1] == s:
                    freed[-1] = (freed[-1][0], e - freed[-1][0])
                else:
                    freed.append((s, e - s))
            pos = e
        for s in reversed(touched):
            j = self._bisect_left(starts, s)
            if j < len(starts) and starts[j] == s:
                self._merge_around(j)
        return freed
