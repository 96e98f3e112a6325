"""File: an open handle on a daxfs file, an ``io.RawIOBase``.

A handle holds its inode: while any handle is open, unlinking the last name
leaves the inode as an orphan whose data the handle can still read and write;
the last close frees it.  Arguments are taken as ``os`` takes them (see
``daxfs.volume.arguments``); errors follow ``os`` on Linux: EBADF for reading
a write-only handle or writing a read-only one, EINVAL for ftruncate of a
read-only handle, ValueError for I/O on a closed one.

The handle is thin: its position and the Python file API live here; the
volume's ``OpenFile`` (``handle``) says which inode it holds and what it may
do, and every operation is a call to the volume's data path.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daxfs._types import Extent, Stat
from daxfs.access.mapping import Mapping
from daxfs.access.pin import Pin
from daxfs.errors import fs_error
from daxfs.volume import OpenFile, arguments, check_policy

if TYPE_CHECKING:
    from daxfs.volume import Volume

_OFF_MAX = (1 << 63) - 1


def _bytes_view(data: Any) -> memoryview:
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    return view


def _position(value: object) -> int:
    """A read position: an int >= 0 (EINVAL) that fits off_t (OverflowError); past EOF reads nothing."""
    n = arguments.integer(value)
    if n < 0:
        raise fs_error(errno.EINVAL, message="negative offset")
    if n > _OFF_MAX:
        raise OverflowError(f"offset {n} is too large to convert to C off_t")
    return n


class File(io.RawIOBase):
    """An open daxfs file (see ``Volume.open``)."""

    def __init__(self, volume: "Volume", handle: OpenFile) -> None:
        self.handle = handle        # first: ``closed`` reads it
        super().__init__()
        self._vol = volume
        self._data = volume.data
        self._ino = handle.ino
        self._path = handle.path
        self._readable = handle.readable
        self._writable = handle.writable
        self._append = handle.append
        self._pos = handle.start
        owned = getattr(handle.holder, "owned", None)
        if owned is not None:
            owned.add(self)

    # ---- identity

    @property
    def name(self) -> str:
        return self._path

    @property
    def mode(self) -> str:
        return self.handle.mode

    @property
    def ino(self) -> int:
        return self._ino

    @property
    def closed(self) -> bool:  # type: ignore[override]
        # The OpenFile is marked closed by close() and when the volume unmounts (the handle
        # dies with it), so it alone says whether this file is closed.
        return self.handle.closed

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<daxfs.File {self._path!r} mode={self.mode!r}{state}>"

    def readable(self) -> bool:
        self._check_open()
        return self._readable

    def writable(self) -> bool:
        self._check_open()
        return self._writable

    def seekable(self) -> bool:
        self._check_open()
        return True

    def fileno(self) -> int:
        raise io.UnsupportedOperation("daxfs files have no OS file descriptor")

    # ---- checks

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _check_read(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if not self._readable:
            raise fs_error(errno.EBADF, self._path, "file not open for reading")

    def _check_write(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if not self._writable:
            raise fs_error(errno.EBADF, self._path, "file not open for writing")

    # ---- positional I/O

    def pread(self, n: int, offset: int) -> bytes:
        if type(n) is not int or type(offset) is not int or n < 0 or offset < 0 or \
                n > _OFF_MAX or offset > _OFF_MAX:
            n = arguments.count(n)
            offset = _position(offset)
        if self.handle.closed or not self._readable:
            self._check_read()
        return self._data.pread(self._ino, None, n, offset)  # type: ignore[return-value]

    def preadinto(self, buf: Any, offset: int) -> int:
        offset = _position(offset)
        self._check_read()
        view = _bytes_view(buf)
        if view.readonly:
            raise TypeError("preadinto needs a writable buffer")
        return self._data.pread(self._ino, view, view.nbytes, offset)  # type: ignore[return-value]

    def pwrite(self, data: Any, offset: int) -> int:
        offset = arguments.offset(offset)
        self._check_write()
        # Linux appends on O_APPEND whatever offset pwrite is given; so do we.
        return self._data.pwrite(self._ino, _bytes_view(data), None if self._append else offset)

    # ---- stream I/O

    def read(self, n: int | None = -1) -> bytes:
        if n is not None:
            n = arguments.integer(n)
            if n > _OFF_MAX:
                raise OverflowError(f"read size {n} is too large to convert to C ssize_t")
        self._check_read()
        if n is None or n < 0:
            return self.readall()
        data: bytes = self._data.pread(self._ino, None, n, self._pos)  # type: ignore[assignment]
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        self._check_read()
        size = self._data.size(self._ino)
        data: bytes = self._data.pread(self._ino, None, max(0, size - self._pos), self._pos)  # type: ignore[assignment]
        self._pos += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        self._check_read()
        view = _bytes_view(buf)
        got: int = self._data.pread(self._ino, view, view.nbytes, self._pos)  # type: ignore[assignment]
        self._pos += got
        return got

    def write(self, data: Any) -> int:
        self._check_write()
        view = _bytes_view(data)
        if self._append and view.nbytes:
            n, self._pos = self._data.append(self._ino, view)
            return n
        n = self._data.pwrite(self._ino, view, self._pos)
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        offset = arguments.integer(offset)
        whence = arguments.integer(whence)
        self._check_open()
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._data.size(self._ino) + offset
        elif whence in (os.SEEK_DATA, os.SEEK_HOLE):
            pos = self._data.seek_data(self._ino, _position(offset), whence == os.SEEK_HOLE)
        elif -(1 << 31) <= whence < (1 << 31):
            raise fs_error(errno.EINVAL, self._path, f"invalid whence ({whence})")
        else:
            raise OverflowError(f"whence {whence} is too large to convert to C int")
        if pos < 0:
            raise fs_error(errno.EINVAL, self._path, "negative seek position")
        if pos > _OFF_MAX:
            raise OverflowError(f"seek position {pos} is too large to convert to C off_t")
        self._pos = pos
        return pos

    def tell(self) -> int:
        self._check_open()
        return self._pos

    # ---- size and space

    def truncate(self, size: int | None = None, *, policy: str | None = None,
                 timeout: float | None = None) -> int:
        if size is not None:
            size = arguments.integer(size)
        self._check_open()
        check_policy(policy)
        timeout = arguments.timeout(timeout)
        if not self._writable:
            raise fs_error(errno.EINVAL, self._path, "file not open for writing")
        new_size = arguments.offset(self._pos if size is None else size, "size")
        self._vol.ranges.truncate(self._ino, new_size, policy, timeout)
        return new_size

    def fallocate(self, offset: int, length: int, *, keep_size: bool = False) -> None:
        offset, length = arguments.byte_range(offset, length)   # Linux checks the range before the mode
        self._check_write()
        self._vol.ranges.fallocate(self._ino, offset, length, bool(keep_size))

    def punch_hole(self, offset: int, length: int, *, policy: str | None = None,
                   timeout: float | None = None) -> None:
        check_policy(policy)
        timeout = arguments.timeout(timeout)
        offset, length = arguments.byte_range(offset, length)
        self._check_write()
        self._vol.ranges.punch_hole(self._ino, offset, length, policy, timeout)

    def zero_range(self, offset: int, length: int, *, keep_size: bool = False) -> None:
        offset, length = arguments.byte_range(offset, length)
        self._check_write()
        self._vol.ranges.zero_range(self._ino, offset, length, bool(keep_size))

    # ---- direct access

    def map(self, offset: int = 0, length: int | None = None, *, write: bool = False, lease: bool = False,
            on_break: Callable[[Mapping], Any] | None = None,
            on_poison: Callable[[Mapping, int, int], Any] | None = None) -> Mapping:
        """A zero-copy view of ``[offset, offset+length)`` (None: to EOF); see ``daxfs.Mapping``.

        ``write=True`` populates the range first (allocated, zeroed, private to
        this file, size grown to cover it, durable) so stores through the view
        never need the file system again.  ``on_poison(mapping, file_offset, length)``
        is called when memory under the mapping fails (its pages there are fenced).
        """
        offset = arguments.integer(offset)
        if length is not None:
            length = arguments.integer(length)
        self._check_open()
        if not self._readable or (write and not self._writable):
            raise PermissionError(errno.EACCES, "mapping needs the file open for reading"
                                  + (" and writing" if write else ""), self._path)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("mmap offset and length must be non-negative")
        vol = self._vol
        pool = vol.pool
        holder = self.handle.holder
        with vol.lock:
            ref = self._data.reference(self._ino, self._path, offset, length, kind="mapping", write=bool(write),
                                       lease=bool(lease), holder=holder,
                                       make_view=lambda n: pool.map_view(n, writable=bool(write)))  # type: ignore[attr-defined]
            mapping = Mapping(vol, ref, on_break, on_poison)
            owned = getattr(holder, "owned", None)
            if owned is not None:
                owned.add(mapping)
            return mapping

    def pin(self, offset: int, length: int, *, write: bool = False,
            on_poison: Callable[[Pin, int, int], Any] | None = None) -> Pin:
        """A DMA-safe reference to ``[offset, offset+length)``; see ``daxfs.Pin``.

        ``write=True`` populates the range first, like a write mapping.  The
        range must lie inside the file.  ``on_poison(pin, file_offset, length)`` is
        called when memory under the pin fails (the pin stays).
        """
        if type(offset) is not int or type(length) is not int:
            offset = arguments.integer(offset)
            length = arguments.integer(length)
        if offset < 0 or length <= 0:
            raise ValueError("pin needs offset >= 0 and length > 0")
        self._check_open()
        if not self._readable and not write:
            raise PermissionError(errno.EACCES, "a read pin needs the file open for reading", self._path)
        if write and not self._writable:
            raise PermissionError(errno.EACCES, "a write pin needs the file open for writing", self._path)
        vol = self._vol
        holder = self.handle.holder
        data = self._data
        with data.lock:
            pin = Pin(vol, data.reference(self._ino, self._path, offset, length, kind="pin", write=bool(write),
                                          holder=holder), on_poison)
            owned = getattr(holder, "owned", None)
            if owned is not None:
                owned.add(pin)
            return pin

    # ---- metadata and durability

    def fsync(self) -> None:
        self._check_open()
        self._data.fsync(self._ino)

    def flush(self) -> None:
        # RawIOBase buffers nothing; data is in the pool already.
        return None

    def stat(self) -> Stat:
        self._check_open()
        return self._data.stat(self._ino)

    def extents(self) -> list[Extent]:
        self._check_open()
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
