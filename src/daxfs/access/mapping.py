"""Mapping: a zero-copy CPU view of a file range, straight into the pool.

``buffer`` is a memoryview of the pool's own memory (read-only unless the
mapping was made with ``write=True``); ``array`` is a NumPy array on it.
While the mapping lives it *holds* its data blocks and its inode: a
truncate, punch or unlink under it changes the file now, and the blocks it
shows stay busy (never reused) until it lets go.  Its view of what changed is
then detached from the file: same bytes, no longer the file's.

Lifetime: ``close()`` drops the file reference at once.  If arrays or
memoryviews still point into the view, it is not unmapped under them (that
would crash them): like Arrow, the memory is unmapped, and its blocks let go,
when the last of those exports is garbage-collected.  ``revoke("migrate")``
copies the contents to private memory at the same addresses, so every array
stays valid and simply stops being the file; ``revoke("invalidate")`` makes
the range inaccessible — touching it afterwards is a segmentation fault, by
design, for holders that must not read stale data.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from daxfs.errors import BusyError
from daxfs.media import PoolView

if TYPE_CHECKING:
    from daxfs.volume.volume import Volume

REVOKE_MODES = ("migrate", "invalidate")


class Mapping:
    """A view of ``length`` bytes of a file from ``offset`` (see ``File.map``)."""

    kind = "mapping"

    def __init__(self, volume: "Volume", ino: int, path: str, view: PoolView, *, offset: int, length: int,
                 first_block: int, writable: bool, lease: bool,
                 on_break: Callable[["Mapping"], Any] | None, holder: object) -> None:
        self._vol = volume
        self.ino = ino
        self.path = path
        self._view = view
        self.offset = offset
        self.length = length
        self.writable = writable
        self.lease = lease
        self.on_break = on_break
        self.holder = holder
        self.first_block = first_block          # file block at view offset 0
        self._skip = offset - first_block * volume.block_size
        #: data runs ``(pblk, n)`` this mapping holds, and which view blocks show them
        self.held: list[tuple[int, int]] = []
        #: file blocks ``(fblk, n)`` shown as zeros (holes, unwritten) that a write may fill
        self.zero_blocks: list[tuple[int, int]] = []
        #: view pieces ``(fblk, n, pool_offset)`` for persist
        self.pieces: list[tuple[int, int, int]] = []
        self._buffer: memoryview | None = view.buffer(self._skip, length)
        self.revoked = False
        self.closed = False
        self.breaking = False       # a lease told to let go
        self.since = 0.0

    def __repr__(self) -> str:
        state = "revoked" if self.revoked else ("closed" if self.closed else "live")
        kind = "write" if self.writable else "read"
        return f"<daxfs.Mapping {self.path!r} [{self.offset}, +{self.length}) {kind} {state}>"

    @property
    def buffer(self) -> memoryview:
        """The file range, zero-copy: a memoryview into the pool."""
        if self._buffer is None:
            raise ValueError("mapping is closed")
        return self._buffer

    def array(self, dtype: Any = "u1", shape: int | tuple[int, ...] | None = None, offset: int = 0) -> np.ndarray:
        """A NumPy array on the mapping from byte ``offset``, zero-copy (writable iff the mapping is)."""
        buf = self.buffer
        dt = np.dtype(dtype)
        if offset < 0 or offset > len(buf):
            raise ValueError(f"offset {offset} outside the mapping of {len(buf)} bytes")
        if shape is None:
            count = (len(buf) - offset) // dt.itemsize
            return np.frombuffer(buf, dtype=dt, count=count, offset=offset)
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(dims, dtype=np.int64)) if dims else 1
        if offset + count * dt.itemsize > len(buf):
            raise ValueError(f"array of {count} x {dt} at offset {offset} does not fit the mapping "
                             f"of {len(buf)} bytes")
        return np.frombuffer(buf, dtype=dt, count=count, offset=offset).reshape(dims)

    def persist(self, offset: int = 0, length: int | None = None) -> None:
        """Make stores made through the mapping in ``[offset, offset+length)`` durable."""
        if self.closed:
            raise ValueError("mapping is closed")
        if self.revoked:
            raise BusyError("mapping was revoked: its memory is no longer the file", filename=self.path)
        if length is None:
            length = self.length - offset
        if offset < 0 or length < 0 or offset + length > self.length:
            raise ValueError(f"persist range {offset}+{length} outside the mapping of {self.length} bytes")
        self._vol._persist_mapping(self, self._skip + offset, length)

    def revoke(self, mode: str = "migrate") -> None:
        """Detach from the file: ``"migrate"`` keeps the bytes in private memory, same
        addresses; ``"invalidate"`` makes the range inaccessible."""
        if mode not in REVOKE_MODES:
            raise ValueError(f"unknown revoke mode {mode!r}; expected 'migrate' or 'invalidate'")
        if self.closed:
            raise ValueError("mapping is closed")
        self._vol._revoke_mapping(self, mode)

    def close(self) -> None:
        # Under the volume's lock: a write filling a hole may be laying blocks into
        # this view right now, and must not map into addresses already given back.
        with self._vol._lock:
            if self.closed:
                return
            self.closed = True
            self._buffer = None
            if self._view.release():
                self._vol._release_ref(self, unmapped=True)
                return
            # Exports live: unmap, and let go of the blocks, when the last one goes.
            # Drop our own reference to the memory, or it would outlive them.
            reservation = self._view.reservation
            self._view = None  # type: ignore[assignment]
            self._vol._release_ref(self, unmapped=False)
            weakref.finalize(reservation, self._vol._release_ref_blocks, self)

    def __enter__(self) -> "Mapping":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the volume's side

    @property
    def view(self) -> PoolView:
        if self._view is None:
            raise ValueError("mapping is closed")
        return self._view

    def block_range(self) -> tuple[int, int]:
        """File blocks ``[first, end)`` the view covers."""
        bs = self._vol.block_size
        return self.first_block, -(-(self.offset + self.length) // bs)


__all__ = ["Mapping", "REVOKE_MODES"]
