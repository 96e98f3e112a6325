"""The abstract pool: what every medium gives the volume.

Invariants every implementation keeps:
- ``write``/``zero`` change exactly the bytes named; they are visible to
  ``read``/``view`` at once but durable only after a ``persist`` covering them.
- ``persist`` is the ordering point: stores issued before it that it covers
  are durable when it returns.  Crash tests enumerate these points.
- A read-only pool refuses every mutation with ``PermissionError``.
"""

from __future__ import annotations

import abc
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

    @abc.abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """A copy of ``length`` bytes at ``offset``."""

    @abc.abstractmethod
    def view(self, offset: int, length: int) -> memoryview:
        """A zero-copy view of the bytes (read-only unless the pool is writable)."""

    @abc.abstractmethod
    def write(self, offset: int, data: Buffer) -> None:
        """Store ``data`` at ``offset`` (not yet durable)."""

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

    def check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"pool range {offset:#x}+{length:#x} outside pool of {self.size:#x} bytes")

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
