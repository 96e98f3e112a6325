"""File: an open handle on a daxfs file, an ``io.RawIOBase``.

A handle holds its inode: while any handle is open, unlinking the last name
leaves the inode as an orphan whose data the handle can still read and write;
the last close frees it.  Errors follow ``os`` on Linux: EBADF for reading a
write-only handle or writing a read-only one, EINVAL for ftruncate of a
read-only handle, ValueError for I/O on a closed one.
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

if TYPE_CHECKING:
    from daxfs.volume.volume import Volume

_MODES = {
    # mode: (readable, writable, create, exclusive, truncate, append)
    "rb": (True, False, False, False, False, False),
    "r+b": (True, True, False, False, False, False),
    "wb": (False, True, True, False, True, False),
    "w+b": (True, True, True, False, True, False),
    "xb": (False, True, True, True, False, False),
    "x+b": (True, True, True, True, False, False),
    "ab": (False, True, True, False, False, True),
    "a+b": (True, True, True, False, False, True),
}


def parse_mode(mode: str) -> tuple[bool, bool, bool, bool, bool, bool]:
    """``(readable, writable, create, exclusive, truncate, append)`` for a binary open mode."""
    known = _MODES.get(mode)
    if known is not None:
        return known
    if not isinstance(mode, str):
        raise TypeError(f"mode must be str, not {type(mode).__name__}")
    if "b" not in mode:
        raise ValueError(f"invalid mode {mode!r}: daxfs files are binary only (add 'b')")
    # the same letters in any order mean the same mode, as with open(): "rb+" == "r+b"
    canonical = "".join(c for c in "rwxa+b" if c in mode)
    if canonical not in _MODES or len(mode) != len(canonical):
        raise ValueError(f"invalid mode {mode!r}")
    return _MODES[canonical]


def _bytes_view(data: Any) -> memoryview:
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    return view


def _check_range(offset: int, length: int) -> None:
    if offset < 0 or length <= 0:
        raise fs_error(errno.EINVAL, message="offset must be >= 0 and length > 0")


class File(io.RawIOBase):
    """An open daxfs file (see ``Volume.open``)."""

    def __init__(self, volume: "Volume", ino: int, path: str, mode: str, *, readable: bool,
                 writable: bool, append: bool) -> None:
        super().__init__()
        self._vol = volume
        self._ino = ino
        self._path = path
        self._mode = mode
        self._readable = readable
        self._writable = writable
        self._append = append
        self._pos = 0
        self._holder: object = volume     # who owns what is mapped or pinned through it

    # ---- identity

    @property
    def name(self) -> str:
        return self._path

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def ino(self) -> int:
        return self._ino

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<daxfs.File {self._path!r} mode={self._mode!r}{state}>"

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
        self._check_read()
        return self._vol._pread_into(self._ino, None, n, offset)  # type: ignore[return-value]

    def preadinto(self, buf: Any, offset: int) -> int:
        self._check_read()
        view = _bytes_view(buf)
        if view.readonly:
            raise TypeError("preadinto needs a writable buffer")
        return self._vol._pread_into(self._ino, view, view.nbytes, offset)  # type: ignore[return-value]

    def pwrite(self, data: Any, offset: int) -> int:
        self._check_write()
        # Linux appends on O_APPEND whatever offset pwrite is given; so do we.
        return self._vol._pwrite(self._ino, _bytes_view(data), None if self._append else offset)

    # ---- stream I/O

    def read(self, n: int | None = -1) -> bytes:
        self._check_read()
        if n is None or n < 0:
            return self.readall()
        data: bytes = self._vol._pread_into(self._ino, None, n, self._pos)  # type: ignore[assignment]
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        self._check_read()
        size = self._vol._fstat(self._ino).st_size
        data: bytes = self._vol._pread_into(self._ino, None, max(0, size - self._pos), self._pos)  # type: ignore[assignment]
        self._pos += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        self._check_read()
        view = _bytes_view(buf)
        got: int = self._vol._pread_into(self._ino, view, view.nbytes, self._pos)  # type: ignore[assignment]
        self._pos += got
        return got

    def write(self, data: Any) -> int:
        self._check_write()
        view = _bytes_view(data)
        if self._append and view.nbytes:
            with self._vol._lock:
                n = self._vol._pwrite(self._ino, view, None)
                self._pos = self._vol._node(self._ino).size
            return n
        n = self._vol._pwrite(self._ino, view, self._pos)
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check_open()
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._vol._fstat(self._ino).st_size + offset
        elif whence in (os.SEEK_DATA, os.SEEK_HOLE):
            pos = self._vol._seek_data(self._ino, offset, whence == os.SEEK_HOLE)
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise fs_error(errno.EINVAL, self._path, "negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        self._check_open()
        return self._pos

    # ---- size and space

    def truncate(self, size: int | None = None, *, policy: str | None = None,
                 timeout: float | None = None) -> int:
        from daxfs.volume.volume import check_policy

        self._check_open()
        check_policy(policy)
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0")
        if not self._writable:
            raise fs_error(errno.EINVAL, self._path, "file not open for writing")
        new_size = self._pos if size is None else size
        self._vol._ftruncate(self._ino, new_size, policy, timeout)
        return new_size

    def fallocate(self, offset: int, length: int, *, keep_size: bool = False) -> None:
        _check_range(offset, length)        # Linux checks the range before the handle's mode
        self._check_write()
        self._vol._fallocate(self._ino, offset, length, keep_size)

    def punch_hole(self, offset: int, length: int, *, policy: str | None = None,
                   timeout: float | None = None) -> None:
        from daxfs.volume.volume import check_policy

        check_policy(policy)
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0")
        _check_range(offset, length)
        self._check_write()
        self._vol._punch(self._ino, offset, length, policy, timeout)

    def zero_range(self, offset: int, length: int, *, keep_size: bool = False) -> None:
        _check_range(offset, length)
        self._check_write()
        self._vol._zero_range(self._ino, offset, length, keep_size)

    def map(self, offset: int = 0, length: int | None = None, *, write: bool = False, lease: bool = False,
            on_break: Callable[[Mapping], Any] | None = None) -> Mapping:
        """A zero-copy view of ``[offset, offset+length)`` (None: to EOF); see ``daxfs.Mapping``.

        ``write=True`` populates the range first (allocated, zeroed, private to
        this file, size grown to cover it, durable) so stores through the view
        never need the file system again.
        """
        self._check_open()
        if not self._readable or (write and not self._writable):
            raise PermissionError(errno.EACCES, "mapping needs the file open for reading"
                                  + (" and writing" if write else ""), self._path)
        return self._vol._map(self._ino, self._path, offset, length, write=write, lease=lease,
                              on_break=on_break, holder=self._holder)

    def pin(self, offset: int, length: int, *, write: bool = False) -> Pin:
        """A DMA-safe reference to ``[offset, offset+length)``; see ``daxfs.Pin``.

        ``write=True`` populates the range first, like a write mapping.  The
        range must lie inside the file.
        """
        self._check_open()
        if not self._readable and not write:
            raise PermissionError(errno.EACCES, "a read pin needs the file open for reading", self._path)
        if write and not self._writable:
            raise PermissionError(errno.EACCES, "a write pin needs the file open for writing", self._path)
        return self._vol._pin(self._ino, self._path, offset, length, write=write, holder=self._holder)

    def fsync(self) -> None:
        self._check_open()
        self._vol._fsync(self._ino)

    def flush(self) -> None:
        # RawIOBase buffers nothing; data is in the pool already.
        if self.closed:
            return

    def stat(self) -> Stat:
        self._check_open()
        return self._vol._fstat(self._ino)

    def extents(self) -> list[Extent]:
        self._check_open()
        return self._vol._extents(self._ino)

    # ---- lifetime

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._vol._release_file(self)
        finally:
            super().close()

    def _detach(self) -> None:
        """The volume is closing: this handle dies with it."""
        super().close()
