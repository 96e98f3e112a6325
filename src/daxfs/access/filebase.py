"""FileBase: the open-file API every front end shares (embedded ``File``, a client's file).

Arguments are taken as ``os`` and ``io.FileIO`` take them (``arguments``): integers
through ``operator.index``, ranges checked, errors in Linux's order (the range before the
handle's mode for fallocate, EBADF for the wrong direction, ValueError once closed).  A
front end implements the ``_do_*`` primitives on already-checked values; nothing here knows
where the bytes live.

``handle`` is whatever says the file is open (``handle.closed``): the volume's OpenFile,
which the volume marks closed when it unmounts, so a file dies with its volume.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from typing import Any

from daxfs._types import Extent, Stat
from daxfs.errors import fs_error
from daxfs.volume import arguments, check_policy

OFF_MAX = (1 << 63) - 1


class NotOpenFor(io.UnsupportedOperation):
    """Reading a write-only file or writing a read-only one: ``io.UnsupportedOperation`` as
    ``io.FileIO`` raises it, with ``errno`` EBADF as ``os.read`` gives it."""


def bytes_view(data: Any) -> memoryview:
    """Any buffer as a flat memoryview of bytes."""
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    return view


def position(value: object) -> int:
    """A read position: an int >= 0 (EINVAL) that fits off_t (OverflowError); past EOF reads nothing."""
    n = arguments.integer(value)
    if n < 0:
        raise fs_error(errno.EINVAL, message="negative offset")
    if n > OFF_MAX:
        raise OverflowError(f"offset {n} is too large to convert to C off_t")
    return n


class FileBase(io.RawIOBase):
    """An open daxfs file: ``io.RawIOBase`` plus ``pread``/``pwrite``, space operations,
    ``map``/``pin`` and ``extents``.  Subclasses set ``handle``, ``_path``, ``_mode``,
    ``_readable``, ``_writable``, ``_append`` and ``_pos``, and implement ``_do_*``."""

    handle: Any
    _path: str
    _mode: str
    _readable: bool
    _writable: bool
    _append: bool
    _pos: int

    # ---- identity

    @property
    def name(self) -> str:
        return self._path

    @property
    def mode(self) -> str:
        return self._mode

    #: A plain attribute, not a property: io's buffered files read ``raw.closed`` on every
    #: call (each line of a loop), and a property costs more than the line.  The handle sets
    #: it (``mark_closed``) when the file closes or its volume unmounts.
    closed: bool = False  # type: ignore[assignment]

    @property
    def holder(self) -> object:
        """Who owns this file (and what is mapped or pinned through it)."""
        raise NotImplementedError

    def closing(self, on: bool) -> None:
        """The buffered file over this one starts (``on``) or ends its close in this thread.
        Nothing to do here; a client's file sends the flush's write with the close."""

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<daxfs.{type(self).__name__} {self._path!r} mode={self._mode!r}{state}>"

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
        if self.handle.closed:
            raise ValueError("I/O operation on closed file")

    def _check_read(self) -> None:
        self._check_open()
        if not self._readable:
            raise NotOpenFor(errno.EBADF, "File not open for reading", self._path)

    def _check_write(self) -> None:
        self._check_open()
        if not self._writable:
            raise NotOpenFor(errno.EBADF, "File not open for writing", self._path)

    # ---- positional I/O

    def pread(self, n: int, offset: int) -> bytes:
        if type(n) is not int or type(offset) is not int or n < 0 or offset < 0 or n > OFF_MAX or \
                offset > OFF_MAX:
            n = arguments.count(n)
            offset = position(offset)
        if self.handle.closed or not self._readable:
            self._check_read()
        return self._do_pread(None, n, offset)  # type: ignore[return-value]

    def preadinto(self, buf: Any, offset: int) -> int:
        offset = position(offset)
        self._check_read()
        view = bytes_view(buf)
        if view.readonly:
            raise TypeError("preadinto needs a writable buffer")
        return self._do_pread(view, view.nbytes, offset)  # type: ignore[return-value]

    def pwrite(self, data: Any, offset: int) -> int:
        offset = arguments.offset(offset)
        self._check_write()
        view = bytes_view(data)
        if self._append:
            # Linux appends on O_APPEND whatever offset pwrite is given; so do we.
            return self._do_append(view)[0] if view.nbytes else 0
        return self._do_pwrite(view, offset)

    # ---- stream I/O

    def read(self, n: int | None = -1) -> bytes:
        if n is not None:
            n = arguments.integer(n)
            if n > OFF_MAX:
                raise OverflowError(f"read size {n} is too large to convert to C ssize_t")
        self._check_read()
        if n is None or n < 0:
            return self.readall()
        data: bytes = self._do_pread(None, n, self._pos)  # type: ignore[assignment]
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        self._check_read()
        size = self._do_size()
        data: bytes = self._do_pread(None, max(0, size - self._pos), self._pos)  # type: ignore[assignment]
        self._pos += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        self._check_read()
        view = bytes_view(buf)
        got: int = self._do_pread(view, view.nbytes, self._pos)  # type: ignore[assignment]
        self._pos += got
        return got

    def write(self, data: Any) -> int:
        self._check_write()
        view = bytes_view(data)
        if self._append:
            if not view.nbytes:
                return 0
            n, self._pos = self._do_append(view)
            return n
        n = self._do_pwrite(view, self._pos)
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
            pos = self._do_size() + offset
        elif whence in (os.SEEK_DATA, os.SEEK_HOLE):
            pos = self._do_seek_data(position(offset), whence == os.SEEK_HOLE)
        elif -(1 << 31) <= whence < (1 << 31):
            raise fs_error(errno.EINVAL, self._path, f"invalid whence ({whence})")
        else:
            raise OverflowError(f"whence {whence} is too large to convert to C int")
        if pos < 0:
            raise fs_error(errno.EINVAL, self._path, "negative seek position")
        if pos > OFF_MAX:
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
        self._do_truncate(new_size, policy, timeout)
        return new_size

    def fallocate(self, offset: int, length: int, *, keep_size: bool = False) -> None:
        offset, length = arguments.byte_range(offset, length)   # Linux checks the range before the mode
        self._check_write()
        self._do_fallocate(offset, length, bool(keep_size))

    def punch_hole(self, offset: int, length: int, *, policy: str | None = None,
                   timeout: float | None = None) -> None:
        check_policy(policy)
        timeout = arguments.timeout(timeout)
        offset, length = arguments.byte_range(offset, length)
        self._check_write()
        self._do_punch_hole(offset, length, policy, timeout)

    def zero_range(self, offset: int, length: int, *, keep_size: bool = False) -> None:
        offset, length = arguments.byte_range(offset, length)
        self._check_write()
        self._do_zero_range(offset, length, bool(keep_size))

    # ---- direct access

    def map(self, offset: int = 0, length: int | None = None, *, write: bool = False, lease: bool = False,
            on_break: Callable[[Any], Any] | None = None,
            on_poison: Callable[[Any, int, int], Any] | None = None) -> Any:
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
        return self._do_map(offset, length, bool(write), bool(lease), on_break, on_poison)

    def pin(self, offset: int, length: int, *, write: bool = False,
            on_poison: Callable[[Any, int, int], Any] | None = None) -> Any:
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
        return self._do_pin(offset, length, bool(write), on_poison)

    # ---- metadata and durability

    def fsync(self) -> None:
        self._check_open()
        self._do_fsync()

    def flush(self) -> None:
        return None         # nothing is buffered here: the data is in the pool already

    def stat(self) -> Stat:
        self._check_open()
        return self._do_stat()

    def extents(self) -> list[Extent]:
        self._check_open()
        return self._do_extents()

    # ---- what a front end implements (values already checked)

    def _do_pread(self, dest: memoryview | None, n: int, offset: int) -> bytes | int:
        raise NotImplementedError

    def _do_pwrite(self, view: memoryview, offset: int) -> int:
        raise NotImplementedError

    def _do_append(self, view: memoryview) -> tuple[int, int]:
        """Write at EOF atomically; ``(bytes written, the size after)``."""
        raise NotImplementedError

    def _do_size(self) -> int:
        raise NotImplementedError

    def _do_seek_data(self, offset: int, hole: bool) -> int:
        raise NotImplementedError

    def _do_truncate(self, size: int, policy: str | None, timeout: float | None) -> None:
        raise NotImplementedError

    def _do_fallocate(self, offset: int, length: int, keep_size: bool) -> None:
        raise NotImplementedError

    def _do_punch_hole(self, offset: int, length: int, policy: str | None, timeout: float | None) -> None:
        raise NotImplementedError

    def _do_zero_range(self, offset: int, length: int, keep_size: bool) -> None:
        raise NotImplementedError

    def _do_map(self, offset: int, length: int | None, write: bool, lease: bool,
                on_break: Callable[[Any], Any] | None, on_poison: Callable[[Any, int, int], Any] | None) -> Any:
        raise NotImplementedError

    def _do_pin(self, offset: int, length: int, write: bool,
                on_poison: Callable[[Any, int, int], Any] | None) -> Any:
        raise NotImplementedError

    def _do_fsync(self) -> None:
        raise NotImplementedError

    def _do_stat(self) -> Stat:
        raise NotImplementedError

    def _do_extents(self) -> list[Extent]:
        raise NotImplementedError
