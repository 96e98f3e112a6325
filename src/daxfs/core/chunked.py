"""ChunkedTable, ChunkedSet and ChunkedList: a dict, a set and a sorted list of ints
(inode or block numbers), in chunks.

A dict or set of a million entries rebuilds its whole hash table in one go each time
it fills: measured on the 1,000,000-file create benchmark, one create in 699,051 took
25 ms (the inode dict growing from 2**20 to 2**21 slots) and one in 314,573 took 10 ms
(the set of inodes changed since the last checkpoint); with 4 KiB in each file, the
reverse map's dict of runs did the same (11.4 ms at 349,525 files).  Here each chunk
holds the numbers ``k << CHUNK_BITS`` up to the next chunk's in a dict (a set) of its
own, so one insert rebuilds at most one chunk: 65,536 entries, about 2 ms.  Chunks are
kept by number in a dict, not a list: a record may name any number up to its maximum,
and one far above the rest costs one chunk, not all below it.

A lookup here is a Python call, about 80 ns more than a bare dict's (a stat looks up
four or five inodes), so the big tables (``Core.inodes``, ``OwnerMap``'s runs) are
plain dicts until they hold ``CHUNKED_FROM`` entries (a resize then costs at most a few
ms) and ``ChunkedTable``s from then on (``ChunkedTable.adopt``; never back).  Both
answer the same calls (``[]``, ``get``, ``in``, ``len``, iteration, ``items``,
``values``, ``del``, ``pop``, ``update``, ``clear``), so code that reads one does not
care which it has, as long as it does not keep the object across a change that adds a key.

Invariants: ``_chunks[k]`` holds exactly the numbers ``n`` with ``n >> CHUNK_BITS == k``;
a ``ChunkedTable``'s chunks are never empty and ``_len`` is the sum of their sizes.
Iteration runs chunk by chunk, in ascending chunk order and each chunk in insertion
order; inode numbers are handed out ascending and never reused, so ``Core.inodes``
iterates in inode order either way (checkpoints rely on it).  Keys are ints; anything
else is never found, and storing it is a TypeError.

A sorted list has the same problem in another place: an insert or delete in its middle
moves the part after it, 1.6 MB on average for the 400,000 run starts of a volume of
400,000 files of 4 KiB (107 µs of a 145 µs file replace, measured).  ``ChunkedList``
answers the list calls ``OwnerMap`` and ``FreeSpace`` make (positions, ``insert``, ``del``, bisection)
with sorted chunks of about ``LIST_CHUNK`` to ``2 * LIST_CHUNK`` numbers (split above,
joined to a neighbour below half): a change moves one chunk's part and re-adds the chunk
sizes after it, both at C speed (n / LIST_CHUNK additions: 250 at a million numbers).
Invariants: the chunks concatenated are the list, ascending, no number twice; no chunk
is empty and none holds more than ``2 * LIST_CHUNK``; ``_firsts[k]`` is chunk k's first
number, and ``_offsets[k]`` the position of that number for every ``k < _valid``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from itertools import accumulate, chain, islice
from typing import Generic, TypeVar

CHUNK_BITS = 16
CHUNKED_FROM = 1 << 16      # entries from which the big tables are ChunkedTables
LIST_CHUNK = 1 << 12        # a ChunkedList's chunks hold up to twice this (a move of 64 KiB)

V = TypeVar("V")
_MISSING = object()


class ChunkedTable(Generic[V]):
    """``int -> value`` as a dict would hold it, without a dict's stalls at a million keys."""

    __slots__ = ("_chunks", "_len")

    def __init__(self, items: Iterable[tuple[int, V]] = ()) -> None:
        self._chunks: dict[int, dict[int, V]] = {}
        self._len = 0
        self.update(items)

    @classmethod
    def adopt(cls, table: "dict[int, V] | ChunkedTable[V]") -> "ChunkedTable[V]":
        """``table``'s entries in chunks, in key order (``table`` itself if it is chunked).

        It runs inside the change that makes a table reach CHUNKED_FROM, so it is
        built at C speed: the keys (sorted, as ``Core.inodes`` has them already) are cut
        by bisection; a chunk holding most of them is a copy of the whole dict (a copy of
        its hash table, no inserts) less the others, the rest are built from their keys.
        65,536 entries take about 2 ms."""
        if isinstance(table, ChunkedTable):
            return table
        out: ChunkedTable[V] = cls()
        keys = list(table)
        in_order = keys == sorted(keys)         # (TypeError for keys that do not compare)
        if not in_order:
            keys.sort()
        chunks = out._chunks
        # A dict whose keys are in order hands its items out chunk after chunk: each chunk
        # is the next slice of one pass over them, at C speed (a million keys: 25 ms, not 70).
        items = iter(table.items()) if in_order and type(table) is dict else None
        lo = 0
        while lo < len(keys):
            k = keys[lo] >> CHUNK_BITS          # (TypeError for a key that is not an int)
            hi = bisect_left(keys, (k + 1) << CHUNK_BITS, lo)
            if items is None:
                chunk = {ino: table[ino] for ino in keys[lo:hi]}
            elif 2 * (hi - lo) > len(keys):
                chunk = table.copy()
                for other in keys[:lo]:
                    del chunk[other]
                for other in keys[hi:]:
                    del chunk[other]
                next(islice(items, hi - lo - 1, None), None)     # (past this chunk's items)
            else:
                chunk = dict(islice(items, hi - lo))
            chunks[k] = chunk
            lo = hi
        out._len = len(keys)
        return out

    # ---- lookups (a number's chunk is ``ino >> CHUNK_BITS``: a missing chunk, a
    # negative number's or a non-int's, holds nothing)

    def __getitem__(self, ino: int) -> V:
        try:
            return self._chunks[ino >> CHUNK_BITS][ino]
        except (KeyError, TypeError):
            raise KeyError(ino) from None

    def get(self, ino: object, default: V | None = None) -> V | None:
        try:
            return self._chunks[ino >> CHUNK_BITS].get(ino, default)     # type: ignore[operator]
        except (KeyError, TypeError):
            return default

    def __contains__(self, ino: object) -> bool:
        try:
            return ino in self._chunks[ino >> CHUNK_BITS]       # type: ignore[operator]
        except (KeyError, TypeError):
            return False

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def _in_order(self) -> list[dict[int, V]]:
        chunks = self._chunks
        return [chunks[k] for k in sorted(chunks)]

    # (chained at C speed: the checkpoint writer lists a million keys under the lock)

    def __iter__(self) -> Iterator[int]:
        return chain.from_iterable(self._in_order())

    def keys(self) -> Iterator[int]:
        return iter(self)

    def values(self) -> Iterator[V]:
        return chain.from_iterable(map(dict.values, self._in_order()))

    def items(self) -> Iterator[tuple[int, V]]:
        return chain.from_iterable(map(dict.items, self._in_order()))

    # ---- changes

    def __setitem__(self, ino: int, value: V) -> None:
        if type(ino) is not int:
            raise TypeError(f"a key is an int, not {ino!r}")
        chunk = self._chunks.get(ino >> CHUNK_BITS)
        if chunk is None:
            chunk = self._chunks[ino >> CHUNK_BITS] = {}
        if ino not in chunk:
            self._len += 1
        chunk[ino] = value

    def __delitem__(self, ino: int) -> None:
        self.pop(ino)

    def pop(self, ino: int, default: object = _MISSING) -> V:
        try:
            chunk = self._chunks[ino >> CHUNK_BITS]
            value = chunk.pop(ino)
        except (KeyError, TypeError):
            if default is _MISSING:
                raise KeyError(ino) from None
            return default      # type: ignore[return-value]
        self._len -= 1
        if not chunk:
            del self._chunks[ino >> CHUNK_BITS]
        return value

    def update(self, items: Iterable[tuple[int, V]]) -> None:
        for ino, value in items:
            self[ino] = value

    def clear(self) -> None:
        self._chunks = {}
        self._len = 0


class ChunkedSet:
    """A set of ints in chunks as ``ChunkedTable`` (the inodes a checkpoint must pack again)."""

    __slots__ = ("_chunks",)

    def __init__(self, inos: Iterable[int] = ()) -> None:
        self._chunks: dict[int, set[int]] = {}
        self.update(inos)

    def add(self, ino: int) -> None:
        self.update((ino,))

    def update(self, inos: Iterable[int]) -> None:
        chunks = self._chunks
        for ino in inos:        # (one commit's one to three, most often: no call per number)
            if type(ino) is not int:
                raise TypeError(f"a key is an int, not {ino!r}")
            chunk = chunks.get(ino >> CHUNK_BITS)
            if chunk is None:
                chunk = chunks[ino >> CHUNK_BITS] = set()
            chunk.add(ino)

    def __ior__(self, other: Iterable[int]) -> "ChunkedSet":
        self.update(other)
        return self

    def __contains__(self, ino: object) -> bool:
        try:
            return ino in self._chunks[ino >> CHUNK_BITS]       # type: ignore[operator]
        except (KeyError, TypeError):
            return False

    def isdisjoint(self, inos: list[int]) -> bool:
        """No number of ``inos`` (ascending: a stretch of a checkpoint's keys) is in the set."""
        if not inos:
            return True
        chunks = self._chunks
        first, last = inos[0] >> CHUNK_BITS, inos[-1] >> CHUNK_BITS
        if first == last:
            chunk = chunks.get(first)
            return chunk is None or chunk.isdisjoint(inos)
        return all(chunk.isdisjoint(inos) for k, chunk in chunks.items() if first <= k <= last)

    def __len__(self) -> int:
        return sum(map(len, self._chunks.values()))

    def __iter__(self) -> Iterator[int]:
        for k in sorted(self._chunks):
            yield from self._chunks[k]


class ChunkedList:
    """A sorted list of distinct ints, answering ``list``'s positional calls, in chunks.

    Positions are those of the one list it stands for.  ``insert(i, x)`` trusts that ``x``
    belongs at position ``i`` (the caller bisected for it, as for a sorted list), and
    ``bisect_left`` / ``bisect_right`` are methods (``bisect``'s functions would call
    ``__getitem__`` once per step).  The chunk a bisection or a position last found is
    kept with its position (``_ck``, ``_clo``): the calls after it (the neighbours, an
    insert or delete there) need no offsets, and the offsets past it are re-added only
    when a call needs them, as far as it needs them."""

    __slots__ = ("_chunks", "_firsts", "_offsets", "_valid", "_len", "_ck", "_clo")

    def __init__(self, ordered: Iterable[int] = ()) -> None:
        """From ``ordered``, ascending (not checked)."""
        items = list(ordered)
        step = LIST_CHUNK
        self._chunks = [items[i:i + step] for i in range(0, len(items), step)]
        self._firsts = items[::step]
        self._offsets = list(range(0, len(items), step))
        self._valid = len(self._chunks)
        self._len = len(items)
        self._ck = -1       # the chunk last found (-1: none), and its first number's position
        self._clo = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[int]:
        return chain.from_iterable(self._chunks)

    def _fix(self, upto: int) -> None:
        """Make ``_offsets[:upto]`` right: the sizes of the chunks from ``_valid`` on, added up."""
        v, chunks = self._valid, self._chunks
        if v >= upto:
            return
        start = self._offsets[v - 1] + len(chunks[v - 1]) if v else 0
        self._offsets[v:upto] = accumulate(map(len, islice(chunks, v, upto - 1)), initial=start)
        self._valid = upto

    def _place(self, i: int) -> tuple[int, int]:
        """Chunk number and index in it of position ``i`` (``len``: the last chunk's end),
        found through the offsets; the chunk is kept as the one last found."""
        v, offsets = self._valid, self._offsets
        if not v or i >= offsets[v - 1] + len(self._chunks[v - 1]):
            self._fix(len(self._chunks))
            v = self._valid
        k = bisect_right(offsets, i, 0, v) - 1
        self._ck, self._clo = k, offsets[k]
        return k, i - offsets[k]

    def __getitem__(self, i: int) -> int:
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("ChunkedList index out of range")
        if self._ck >= 0:
            chunk = self._chunks[self._ck]
            j = i - self._clo
            if 0 <= j < len(chunk):
                return chunk[j]
        k, j = self._place(i)
        return self._chunks[k][j]

    def __setitem__(self, i: int, x: int) -> None:
        """Position ``i`` holds ``x`` now, which must belong there in the order."""
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("ChunkedList index out of range")
        k, j = self._ck, i - self._clo
        if k < 0 or not 0 <= j < len(self._chunks[k]):
            k, j = self._place(i)
        self._chunks[k][j] = x
        if j == 0:
            self._firsts[k] = x

    def bisect_left(self, x: int) -> int:
        k = bisect_left(self._firsts, x) - 1        # the last chunk starting below x
        if k < 0:
            return 0
        self._fix(k + 1)
        self._ck, self._clo = k, self._offsets[k]
        return self._clo + bisect_left(self._chunks[k], x)

    def bisect_right(self, x: int) -> int:
        k = bisect_right(self._firsts, x) - 1       # the last chunk starting at or below x
        if k < 0:
            return 0
        self._fix(k + 1)
        self._ck, self._clo = k, self._offsets[k]
        return self._clo + bisect_right(self._chunks[k], x)

    def insert(self, i: int, x: int) -> None:
        """``x`` at position ``0 <= i <= len``, where it belongs in the order."""
        if not 0 <= i <= self._len:
            raise IndexError("ChunkedList insert out of range")
        chunks = self._chunks
        self._len += 1
        if not chunks:
            chunks.append([x])
            self._firsts.append(x)
            self._offsets.append(0)
            self._valid = 1
            return
        k, j = self._ck, i - self._clo      # (the end of the chunk last found will do)
        if k < 0 or not 0 <= j <= len(chunks[k]):
            k, j = self._place(i)
        chunk = chunks[k]
        chunk.insert(j, x)
        if j == 0:
            self._firsts[k] = x
        self._valid = min(self._valid, k + 1)
        if len(chunk) > 2 * LIST_CHUNK:
            self._split(k)

    def __delitem__(self, i: int) -> None:
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("ChunkedList index out of range")
        chunks = self._chunks
        k, j = self._ck, i - self._clo
        if k < 0 or not 0 <= j < len(chunks[k]):
            k, j = self._place(i)
        chunk = chunks[k]
        del chunk[j]
        self._len -= 1
        self._valid = min(self._valid, k + 1)
        if not chunk:
            del chunks[k], self._firsts[k], self._offsets[k]
            self._valid = min(self._valid, k)
            self._ck = -1
            return
        if j == 0:
            self._firsts[k] = chunk[0]
        if 2 * len(chunk) < LIST_CHUNK and len(chunks) > 1:    # a small chunk joins a neighbour
            if k + 1 == len(chunks):
                k -= 1
                self._valid = min(self._valid, k + 1)
            chunks[k] += chunks[k + 1]
            del chunks[k + 1], self._firsts[k + 1], self._offsets[k + 1]
            self._ck = -1
            if len(chunks[k]) > 2 * LIST_CHUNK:
                self._split(k)

    def _split(self, k: int) -> None:
        """Chunk ``k`` in two halves (offsets from ``k + 1`` on become stale)."""
        chunk = self._chunks[k]
        half = len(chunk) // 2
        self._chunks.insert(k + 1, chunk[half:])
        del chunk[half:]
        self._firsts.insert(k + 1, self._chunks[k + 1][0])
        self._offsets.insert(k + 1, 0)
        self._valid = min(self._valid, k + 1)
        self._ck = -1


__all__ = ["CHUNK_BITS", "CHUNKED_FROM", "LIST_CHUNK", "ChunkedTable", "ChunkedSet", "ChunkedList"]
