"""File: an open handle on a daxfs file, an ``io.RawIOBase``.

A handle holds its inode: while any handle is open, unlinking the last name
leaves the inode as an orphan whose data the handle can still read and write;
the last close frees it.  Arguments are taken as ``os`` takes them (see
``daxfs.volume.arguments``); errors follow ``os`` on Linux: EBADF for reading
a write-only handle or writing a read-only one, EINVAL for ftruncate of a
read-only handle, ValueError for I/O on a closed one.

The handle is thin: the Python file API is ``FileBase``'s (shared with a
client's files); the volume's ``OpenFile`` (``handle``) says which inode it
holds and what it may do, and every primitive is a call to the volume's data
path.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daxfs._types import Extent, Stat
from daxfs.access.filebase import FileBase
from daxfs.access.mapping import Mapping
from daxfs.access.pin import Pin
from daxfs.volume import OpenFile

if TYPE_CHECKING:
    from daxfs.volume import Volume


class File(FileBase):
    """An open daxfs file (see ``Volume.open``)."""

    def __init__(self, volume: "Volume", handle: OpenFile) -> None:
        self.handle = handle
        handle.wrapper = weakref.ref(self)      # so closing the handle marks this closed
        super().__init__()
        self._vol = volume
        self._data = volume.data
        self._ino = handle.ino
        self._path = handle.path
        self._mode = handle.mode
        self._readable = handle.readable
        self._writable = handle.writable
        self._append = handle.append
        self._pos = handle.start
        owned = getattr(handle.holder, "owned", None)
        if owned is not None:
            owned.add(self)

    @property
    def ino(self) -> int:
        return self._ino

    @property
    def holder(self) -> object:
        return self.handle.holder

    # ---- the primitives, on the volume's data path

    def _do_pread(self, dest: memoryview | None, n: int, offset: int) -> bytes | int:
        return self._data.pread(self._ino, dest, n, offset)

    def _do_pwrite(self, view: memoryview, offset: int) -> int:
        return self._data.pwrite(self._ino, view, offset)

    def _do_append(self, view: memoryview) -> tuple[int, int]:
        return self._data.append(self._ino, view)

    def _do_size(self) -> int:
        return self._data.size(self._ino)

    def _do_seek_data(self, offset: int, hole: bool) -> int:
        return self._data.seek_data(self._ino, offset, hole)

    def _do_truncate(self, size: int, policy: str | None, timeout: float | None) -> None:
        self._vol.ranges.truncate(self._ino, size, policy, timeout)

    def _do_fallocate(self, offset: int, length: int, keep_size: bool) -> None:
        self._vol.ranges.fallocate(self._ino, offset, length, keep_size)

    def _do_punch_hole(self, offset: int, length: int, policy: str | None, timeout: float | None) -> None:
        self._vol.ranges.punch_hole(self._ino, offset, length, policy, timeout)

    def _do_zero_range(self, offset: int, length: int, keep_size: bool) -> None:
        self._vol.ranges.zero_range(self._ino, offset, length, keep_size)

    def _do_map(self, offset: int, length: int | None, write: bool, lease: bool,
                on_break: Callable[[Mapping], Any] | None,
                on_poison: Callable[[Mapping, int, int], Any] | None) -> Mapping:
        vol = self._vol
        pool = vol.pool
        holder = self.handle.holder
        with vol.lock:
            ref = self._data.reference(self._ino, self._path, offset, length, kind="mapping", write=write,
                                       lease=lease, holder=holder,
                                       make_view=lambda n: pool.map_view(n, writable=write))  # type: ignore[attr-defined]
            mapping = Mapping(vol, ref, on_break, on_poison)
            owned = getattr(holder, "owned", None)
            if owned is not None:
                owned.add(mapping)
            return mapping

    def _do_pin(self, offset: int, length: int, write: bool,
                on_poison: Callable[[Pin, int, int], Any] | None) -> Pin:
        vol = self._vol
        holder = self.handle.holder
        data = self._data
        with data.lock:
            pin = Pin(vol, data.reference(self._ino, self._path, offset, length, kind="pin", write=write,
                                          holder=holder), on_poison)
            owned = getattr(holder, "owned", None)
            if owned is not None:
                owned.add(pin)
            return pin

    def _do_fsync(self) -> None:
        self._data.fsync(self._ino)

    def _do_stat(self) -> Stat:
        return self._data.stat(self._ino)

    def _do_extents(self) -> list[Extent]:
        return self._data.extents(self._ino)

    # ---- lifetime

    def close(self) -> None:
        if self.closed:
            return
        try:
            owned = getattr(self.handle.holder, "owned", None)
            if owned is not None:
                owned.discard(self)
            self._vol.namespace.close_file(self.handle)
        finally:
            super().close()
