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

Memory failure: pages over memory that fails while the mapping lives (or that
had failed before it was made) are *fenced* — replaced by inaccessible memory,
so nothing reads bad bytes as data — and listed in ``poisoned``; a mapping made
with ``on_poison`` is told through it.  Touching a fenced page is a
segmentation fault, as touching a poisoned page is a SIGBUS on Linux; the
fence is announced on stderr and Python's ``faulthandler`` is switched on, so
such a death prints a traceback and says which file ranges were fenced.  The
rest of the mapping keeps working.

The volume sees a mapping as a ``Reference`` (its range, blocks and state);
this object is the holder's side: the memory and the Python API.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daxfs.errors import BusyError
from daxfs.media import PoolView
from daxfs.volume import arguments
from daxfs.volume.references import Reference

if TYPE_CHECKING:
    import numpy as np

    from daxfs.volume import Volume

REVOKE_MODES = ("migrate", "invalidate")


def array_on(buf: memoryview, dtype: Any = "u1", shape: int | tuple[int, ...] | None = None,
             offset: int = 0) -> "np.ndarray":
    """A NumPy array over ``buf`` from byte ``offset``, zero-copy (every mapping's ``array``)."""
    import numpy as np      # only when an array is asked for: importing numpy costs ~50 ms

    dt = np.dtype(dtype)
    offset = arguments.integer(offset)
    if offset < 0 or offset > len(buf):
        raise ValueError(f"offset {offset} outside the mapping of {len(buf)} bytes")
    if shape is None:
        return np.frombuffer(buf, dtype=dt, count=(len(buf) - offset) // dt.itemsize, offset=offset)
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if offset + count * dt.itemsize > len(buf):
        raise ValueError(f"array of {count} x {dt} at offset {offset} does not fit the mapping "
                         f"of {len(buf)} bytes")
    return np.frombuffer(buf, dtype=dt, count=count, offset=offset).reshape(dims)


class ReferenceHandle:
    """What a mapping's or pin's holder can see of its volume-level ``Reference``."""

    _ref: Reference

    @property
    def ino(self) -> int:
        return self._ref.ino

    @property
    def path(self) -> str:
        return self._ref.path

    @property
    def offset(self) -> int:
        return self._ref.offset

    @property
    def length(self) -> int:
        return self._ref.length

    @property
    def writable(self) -> bool:
        return self._ref.writable

    @property
    def holder(self) -> object:
        return self._ref.holder

    @property
    def since(self) -> float:
        return self._ref.since

    @property
    def reference(self) -> Reference:
        return self._ref

    @property
    def poisoned(self) -> list[tuple[int, int]]:
        """File ranges ``(offset, length)`` whose memory failed: fenced in the CPU view (a mapping's, or a
        pin's ``buffer``: touching them is a fault), while a pin itself stays for its device."""
        return list(self._ref.poisoned)


def persist_range(mapping: Any, offset: object, length: object) -> tuple[int, int]:
    """``persist``'s checks, for any mapping (embedded or a client's): the range as ints,
    inside the mapping, which must be live."""
    start = arguments.integer(offset)
    count = None if length is None else arguments.integer(length)
    if mapping.closed:
        raise ValueError("mapping is closed")
    if mapping.revoked:
        raise BusyError("mapping was revoked: its memory is no longer the file", filename=mapping.path)
    if count is None:
        count = mapping.length - start
    if start < 0 or count < 0 or start + count > mapping.length:
        raise ValueError(f"persist range {start}+{count} outside the mapping of {mapping.length} bytes")
    return start, count


class Mapping(ReferenceHandle):
    """A view of ``length`` bytes of a file from ``offset`` (see ``File.map``)."""

    kind = "mapping"

    def __init__(self, volume: "Volume", ref: Reference, on_break: Callable[["Mapping"], Any] | None,
                 on_poison: Callable[["Mapping", int, int], Any] | None = None) -> None:
        self._vol = volume
        self._ref = ref
        self._view: PoolView | None = ref.view  # type: ignore[assignment]
        self._skip = ref.offset - ref.first_block * ref.block_size
        self._buffer: memoryview | None = self._view.buffer(self._skip, ref.length)  # type: ignore[union-attr]
        self.on_break = on_break
        self.closed = False
        if on_break is not None:
            ref.on_break = lambda: on_break(self)
        self.on_poison = on_poison
        if on_poison is not None:
            ref.on_poison = lambda offset, length: on_poison(self, offset, length)

    @property
    def lease(self) -> bool:
        return self._ref.lease

    @property
    def revoked(self) -> bool:
        return self._ref.revoked

    def __repr__(self) -> str:
        state = "revoked" if self.revoked else ("closed" if self.closed else "live")
        kind = "write" if self.writable else "read"
        return f"<daxfs.Mapping {self.path!r} [{self.offset}, +{self.length}) {kind} {state}>"

    # ---- the memory

    @property
    def buffer(self) -> memoryview:
        """The file range, zero-copy: a memoryview into the pool."""
        if self._buffer is None:
            raise ValueError("mapping is closed")
        return self._buffer

    def array(self, dtype: Any = "u1", shape: int | tuple[int, ...] | None = None, offset: int = 0) -> "np.ndarray":
        """A NumPy array on the mapping from byte ``offset``, zero-copy (writable iff the mapping is)."""
        return array_on(self.buffer, dtype, shape, offset)

    def persist(self, offset: int = 0, length: int | None = None) -> None:
        """Make stores made through the mapping in ``[offset, offset+length)`` durable."""
        offset, length = persist_range(self, offset, length)
        self._vol.references.persist(self._ref, self._skip + offset, length)

    def revoke(self, mode: str = "migrate") -> None:
        """Detach from the file: ``"migrate"`` keeps the bytes in private memory, same
        addresses; ``"invalidate"`` makes the range inaccessible."""
        if mode not in REVOKE_MODES:
            raise ValueError(f"unknown revoke mode {mode!r}; expected 'migrate' or 'invalidate'")
        if self.closed:
            raise ValueError("mapping is closed")
        self._vol.references.revoke(self._ref, mode)

    def close(self) -> None:
        # Under the volume's lock: a write filling a hole may be laying blocks into
        # this view right now, and must not map into addresses already given back.
        table = self._vol.references
        with self._vol.lock:
            if self.closed:
                return
            self.closed = True
            self._buffer = None
            view = self._view
            self._view = None
            self._ref.view = None      # or the view would outlive the arrays that keep it mapped
            owner = self._ref.holder
            owned = getattr(owner, "owned", None)
            if owned is not None:
                owned.discard(self)
            if view is None or view.release():
                table.release(self._ref, unmapped=True)
                return
            # Exports live: unmap, and let go of the blocks, when the last one goes.
            self._ref.lingering = weakref.ref(view)     # a memory failure still fences it
            table.release(self._ref, unmapped=False)
            weakref.finalize(view.reservation, table.release_blocks, self._ref)

    def __enter__(self) -> "Mapping":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Mapping", "REVOKE_MODES", "array_on", "persist_range"]
