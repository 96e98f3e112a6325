"""The abstract pool: what every medium gives the volume.

Invariants every implementation keeps:
- ``write``/``zero`` change exactly the bytes named; they are visible to
  ``read``/``view`` at once but durable only after a ``persist`` covering them.
- ``persist`` is the ordering point: stores issued before it that it covers
  are durable when it returns.  Crash tests enumerate these points.
- A read-only pool refuses every mutation with ``PermissionError``.
- ``discard`` gives memory back to the system: the range reads as zeros after it.
  Only the volume knows which ranges no one can see (free blocks, never busy or
  bad ones, never metadata); the pool trusts it.
"""

from __future__ import annotations

import abc
import errno
from typing import Union

#: anything exposing the buffer protocol as bytes (collections.abc.Buffer is 3.12+)
Buffer = Union[bytes, bytearray, memoryview]


class Pool(abc.ABC):
    """A byte-addressable, persistable memory range."""

    size: int
    readonly: bool
    #: how ``persist`` reaches the medium: "map_sync" (synchronous DAX mapping),
    #: "msync" (page-cache backed; msync is the persist primitive), or "memory"
    #: (tmpfs/hugetlbfs: the mapping is the only copy, nothing to write back).
    sync_mode: str
    #: a name for messages: the path, or a description of the memory
    name: str
    #: bytes a discard works in (a whole page, a whole huge page on hugetlbfs); 0 where the
    #: medium cannot give memory back (device-dax, a block device, a read-only pool)
    discard_granularity: int = 0
    #: whether a discard is durable when it returns (memory: the punched page cache is the
    #: only copy); else ``sync_discards`` makes it so
    discards_durable: bool = True
    #: whether the volume discards by default (memory-backed pools, where free blocks are RAM)
    discard_default: bool = False
    #: whether discards may run on a thread of their own (a recording pool's events must
    #: come from the test's thread alone, in order)
    discard_in_background: bool = True
    #: bytes from which ``write_fresh`` beats ``write`` (0: it never does)
    fresh_write_min: int = 0

    @abc.abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """A copy of ``length`` bytes at ``offset``."""

    @abc.abstractmethod
    def view(self, offset: int, length: int) -> memoryview:
        """A zero-copy view of the bytes (read-only unless the pool is writable)."""

    @abc.abstractmethod
    def write(self, offset: int, data: Buffer) -> None:
        """Store ``data`` at ``offset`` (not yet durable)."""

    def write_fresh(self, offset: int, data: Buffer) -> None:
        """``write`` into memory known to be untouched zeros (a hole, a fallocate'd page): the
        medium may store it more cheaply (on tmpfs, a write through the file fills the pages
        without zero-filling them first, as a store through the mapping makes the fault do)."""
        self.write(offset, data)

    @abc.abstractmethod
    def zero(self, offset: int, length: int) -> None:
        """Store zeros over the range (not yet durable)."""

    @abc.abstractmethod
    def persist(self, offset: int, length: int) -> None:
        """Make every earlier store inside the range durable."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the memory; further use is an error."""

    def persist_mapped(self, offset: int, length: int) -> None:
        """Make stores made through a mapping of the range durable (the mapping msyncs them;
        this is the pool's own persist of the same range, for pools that track stores)."""
        self.persist(offset, length)

    def prefault(self, offset: int, length: int) -> None:
        """Hint: the range is about to be written; map it in now if the medium can."""
        return None

    def discard(self, offset: int, length: int) -> None:
        """Give the memory of ``[offset, +length)`` back; it reads as zeros from now on.

        The range is whole units of ``discard_granularity``.  EOPNOTSUPP where the
        medium cannot (granularity 0)."""
        raise OSError(errno.EOPNOTSUPP, "this pool cannot give memory back (discard)", self.name)

    def sync_discards(self) -> None:
        """Make every discard so far durable (a no-op where they are on return)."""
        return None

    def reserve(self, offset: int, length: int) -> None:
        """Make sure memory stands behind ``[offset, +length)`` before anything stores there:
        OSError(ENOSPC) now rather than a SIGBUS on first touch (a sparse or discarded pool
        on a full tmpfs).  A no-op where the memory always exists."""
        return None

    def backing(self, offset: int, length: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(zeros, unbacked)``: byte ranges inside ``[offset, +length)`` that read as zeros
        (holes), and ranges that may have no memory behind them (to reserve before use).
        Both err on the safe side: a range not listed as zeros may hold anything, and every
        range that might lack memory is listed as unbacked."""
        return [], []

    def resident(self) -> int | None:
        """Bytes of the pool the medium holds in memory now, or None when it cannot say."""
        return None

    def check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"pool range {offset:#x}+{length:#x} outside pool of {self.size:#x} bytes")

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
