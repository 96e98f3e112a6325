"""InodeTable and InoSet: a volume's inodes, and sets of inode numbers, in chunks.

A dict or set of a million entries rebuilds its whole hash table in one go each time
it fills: measured on the 1,000,000-file create benchmark, one create in 699,051 took
25 ms (the inode dict growing from 2**20 to 2**21 slots) and one in 314,573 took 10 ms
(the set of inodes changed since the last checkpoint).  Here each chunk holds the
numbers ``k << CHUNK_BITS`` up to the next chunk's in a dict (a set) of its own, so
one insert rebuilds at most one chunk: 65,536 entries, about 2 ms.  Chunks are kept by
number in a dict, not a list: a record may name any inode number up to INO_MAX, and one
far above the rest costs one chunk, not all below it.

A lookup here is a Python call, about 80 ns more than a bare dict's, and a stat looks
up four or five inodes: so ``Core.inodes`` is a plain dict until it holds
``CHUNKED_FROM`` inodes (a resize then costs at most a few ms) and an ``InodeTable``
from then on (``chunked``; never back).  Both answer the same calls (``[]``, ``get``,
``in``, ``len``, iteration, ``items``, ``values``, ``del``, ``pop``, ``update``,
``clear``), so code that reads ``core.inodes`` does not care which it has, as long as
it does not keep the object across a change that creates an inode.

Invariants: ``_chunks[k]`` holds exactly the numbers ``n`` with ``n >> CHUNK_BITS == k``;
an ``InodeTable``'s chunks are never empty and ``_len`` is the sum of their sizes.
Iteration runs chunk by chunk, in ascending chunk order and each chunk in insertion
order; inode numbers are handed out ascending and never reused, so an ``InodeTable``
iterates in inode order, as ``Core.inodes`` always has (checkpoints rely on it).  Keys
are ints (inode numbers); anything else is never found, and storing it is a TypeError.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Generic, TypeVar

CHUNK_BITS = 16
CHUNKED_FROM = 1 << 16      # inodes from which Core.inodes is an InodeTable

V = TypeVar("V")
_MISSING = object()


class InodeTable(Generic[V]):
    """``ino -> value`` as a dict would hold it, without a dict's stalls at a million keys."""

    __slots__ = ("_chunks", "_len")

    def __init__(self, items: Iterable[tuple[int, V]] = ()) -> None:
        self._chunks: dict[int, dict[int, V]] = {}
        self._len = 0
        self.update(items)

    @classmethod
    def adopt(cls, table: "dict[int, V] | InodeTable[V]") -> "InodeTable[V]":
        """``table``'s entries in chunks, in inode order (``table`` itself if it is chunked).

        It runs inside the create that makes ``Core.inodes`` reach CHUNKED_FROM, so it is
        built at C speed: the keys (sorted, as ``Core.inodes`` has them already) are cut
        by bisection; a chunk holding most of them is a copy of the whole dict (a copy of
        its hash table, no inserts) less the others, the rest are built from their keys.
        65,536 inodes take about 2 ms."""
        if isinstance(table, InodeTable):
            return table
        out: InodeTable[V] = cls()
        keys = list(table)
        in_order = keys == sorted(keys)         # (TypeError for keys that do not compare)
        if not in_order:
            keys.sort()
        chunks = out._chunks
        lo = 0
        while lo < len(keys):
            k = keys[lo] >> CHUNK_BITS          # (TypeError for a key that is not an int)
            hi = bisect_left(keys, (k + 1) << CHUNK_BITS, lo)
            if in_order and type(table) is dict and 2 * (hi - lo) > len(keys):
                chunk = table.copy()
                for other in keys[:lo]:
                    del chunk[other]
                for other in keys[hi:]:
                    del chunk[other]
            else:
                chunk = {ino: table[ino] for ino in keys[lo:hi]}
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
            raise TypeError(f"an inode number is an int, not {ino!r}")
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


class InoSet:
    """A set of inode numbers, in chunks as ``InodeTable`` (the ones a checkpoint must pack again)."""

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
                raise TypeError(f"an inode number is an int, not {ino!r}")
            chunk = chunks.get(ino >> CHUNK_BITS)
            if chunk is None:
                chunk = chunks[ino >> CHUNK_BITS] = set()
            chunk.add(ino)

    def __ior__(self, other: Iterable[int]) -> "InoSet":
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


__all__ = ["CHUNK_BITS", "CHUNKED_FROM", "InodeTable", "InoSet"]
