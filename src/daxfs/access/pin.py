"""Pin: a long-term, DMA-safe reference to a file range.

A pin is what an RDMA NIC, a GPU or a capture device needs: the data blocks
of the range stay where they are, and are never freed or handed to another
file, for as long as the pin lives — whatever happens to the file meanwhile
(truncate, punch, unlink: the policy decides whether that waits, fails, or
goes ahead with the pinned blocks parked on the busy list).  A pin is never
revoked.  Taking one is all-or-nothing: it holds the whole range or nothing.

``segments`` is the scatter-gather list a DMA engine programs:
``(file_offset, length, pool_offset)``, with ``pool_offset`` None over a hole
of a read pin (which reads as zeros).  ``buffer`` is a CPU view of the same
memory, made on first use (a pin by itself costs no address space).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from daxfs.media import PoolView

if TYPE_CHECKING:
    from daxfs.volume.volume import Volume


class Pin:
    """A pinned file range (see ``File.pin``)."""

    kind = "pin"
    lease = False
    revoked = False

    def __init__(self, volume: "Volume", ino: int, path: str, *, offset: int, length: int,
                 first_block: int, writable: bool, holder: object) -> None:
        self._vol = volume
        self.ino = ino
        self.path = path
        self.offset = offset
        self.length = length
        self.first_block = first_block
        self.writable = writable
        self.holder = holder
        self.held: list[tuple[int, int]] = []
        self.pieces: list[tuple[int, int, int]] = []
        self.zero_blocks: list[tuple[int, int]] = []
        self._view: PoolView | None = None
        self._buffer: memoryview | None = None
        self.released = False
        self.since = 0.0

    def __repr__(self) -> str:
        state = "released" if self.released else "live"
        return f"<daxfs.Pin {self.path!r} [{self.offset}, +{self.length}) {state}>"

    def _check(self) -> None:
        if self.released:
            raise ValueError("pin is released")

    @property
    def buffer(self) -> memoryview:
        """A CPU view of the pinned memory (writable for a write pin)."""
        self._check()
        if self._buffer is None:
            self._buffer = self._vol._pin_buffer(self)
        return self._buffer

    @property
    def segments(self) -> list[tuple[int, int, int | None]]:
        """``(file_offset, length, pool_offset)`` runs covering the range, in file order."""
        self._check()
        return self._vol._pin_segments(self)

    @property
    def pool_offset(self) -> int | None:
        """Pool offset of the first pinned byte (None if it lies in a hole)."""
        return self.segments[0][2]

    def release(self) -> None:
        """Let go.  Releasing twice is a ValueError."""
        with self._vol._lock:       # see Mapping.close: no hole fill may race the unmap
            self._check()
            self.released = True
            self._buffer = None
            view, self._view = self._view, None
            if view is None or view.release():
                self._vol._release_ref(self, unmapped=True)
                return
            # The CPU view still has exports: the blocks stay held until the last goes.
            self._vol._release_ref(self, unmapped=False)
            weakref.finalize(view.reservation, self._vol._release_ref_blocks, self)

    def __enter__(self) -> "Pin":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.released:
            self.release()

    def block_range(self) -> tuple[int, int]:
        bs = self._vol.block_size
        return self.first_block, -(-(self.offset + self.length) // bs)
