"""ChangeTable: per-inode change counters in shared memory, for readers in other processes.

A client of the arbiter reads file data straight from the pool using the
extents it was last given, and answers ``fstat`` from what it was last told,
without a round trip.  That is safe because the arbiter bumps the counter of
every inode a change touches *before* applying it (so before any block the
change frees can be handed to another file): a reader that copies bytes, then
finds its inode's counter unchanged, copied bytes the file still owned.  If it
changed, the reader asks again.  Counters are hashed (``ino % SLOTS``), so an
unrelated change may cost a needless refresh, never a wrong answer.
"""

from __future__ import annotations

import mmap
import os

SLOTS = 1 << 16
_MASK = SLOTS - 1


class ChangeTable:
    """Counters in a memfd: the arbiter bumps them, clients map the same memory and read."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            fd = os.memfd_create("daxfs-changes", os.MFD_CLOEXEC)
            os.ftruncate(fd, SLOTS * 8)
        self.fd = fd
        self._mm = mmap.mmap(fd, SLOTS * 8, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self._counts = memoryview(self._mm).cast("Q")

    def bump(self, ino: int) -> None:
        slot = ino & _MASK
        self._counts[slot] = (self._counts[slot] + 1) & 0xFFFF_FFFF_FFFF_FFFF

    def get(self, ino: int) -> int:
        return self._counts[ino & _MASK]

    def close(self) -> None:
        try:
            self._counts.release()
            self._mm.close()
        except BufferError:
            return
        os.close(self.fd)
        self.fd = -1
