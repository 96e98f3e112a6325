"""Pin: a long-term, DMA-safe reference to a file range.

A pin is what an RDMA NIC, a GPU or a capture device needs: the data blocks
of the range stay where they are, and are never freed or handed to another
file, for as long as the pin lives — whatever happens to the file meanwhile
(truncate, punch, unlink: the policy decides whether that waits, fails, or
goes ahead with the pinned blocks parked on the busy list).  A pin is never
revoked.  Taking one is all-or-nothing: it holds the whole range or nothing.

Memory failure under a pin does not end it (a device may be mid-DMA): the
holder is told (``on_poison``, ``poisoned``), the pin stays, and the bad block
is quarantined — never handed out again — when the pin is released.  A pin
over a range already poisoned is refused (PoisonError).

``segments`` is the scatter-gather list a DMA engine programs:
``(file_offset, length, pool_offset)``, with ``pool_offset`` None over a hole
of a read pin (which reads as zeros).  ``buffer`` is a CPU view of the same
memory, made on first use (a pin by itself costs no address space).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daxfs.access.mapping import ReferenceHandle
from daxfs.volume.references import Reference

if TYPE_CHECKING:
    from daxfs.volume import Volume


class Pin(ReferenceHandle):
    """A pinned file range (see ``File.pin``)."""

    kind = "pin"
    lease = False
    revoked = False

    def __init__(self, volume: "Volume", ref: Reference,
                 on_poison: Callable[["Pin", int, int], Any] | None = None) -> None:
        self._vol = volume
        self._ref = ref
        self._buffer: memoryview | None = None
        self.released = False
        self.on_poison = on_poison
        if on_poison is not None:
            ref.on_poison = lambda offset, length: on_poison(self, offset, length)

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
            ref = self._ref
            vol = self._vol
            with vol.lock:
                self._check()
                if ref.view is None:
                    first, end = ref.block_range()
                    view = vol.pool.map_view((end - first) * ref.block_size, writable=ref.writable)  # type: ignore[attr-defined]
                    try:
                        vol.references.show(ref, view)
                    except BaseException:
                        view.release()
                        raise
                skip = ref.offset - ref.first_block * ref.block_size
                self._buffer = ref.view.buffer(skip, ref.length)  # type: ignore[union-attr]
        return self._buffer

    @property
    def segments(self) -> list[tuple[int, int, int | None]]:
        """``(file_offset, length, pool_offset)`` runs covering the range, in file order."""
        self._check()
        return self._vol.references.segments(self._ref)

    @property
    def pool_offset(self) -> int | None:
        """Pool offset of the first pinned byte (None if it lies in a hole)."""
        return self.segments[0][2]

    def release(self) -> None:
        """Let go.  Releasing twice is a ValueError."""
        table = self._vol.references
        with table.lock:           # see Mapping.close: no hole fill may race the unmap
            self._check()
            self.released = True
            self._buffer = None
            ref = self._ref
            view, ref.view = ref.view, None
            owned = getattr(ref.holder, "owned", None)
            if owned is not None:
                owned.discard(self)
            if view is None or view.release():  # type: ignore[attr-defined]
                table.release(ref, unmapped=True)
                return
            # The CPU view still has exports: the blocks stay held until the last goes.
            ref.lingering = weakref.ref(view)       # a memory failure still fences it
            table.release(ref, unmapped=False)
            weakref.finalize(view.reservation, table.release_blocks, ref)  # type: ignore[attr-defined]

    def __enter__(self) -> "Pin":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.released:
            self.release()
