"""Buffered and text files, as ``open()`` gives them, over a daxfs raw file.

``open(path, "rb")`` in Python returns an ``io.BufferedReader``; ``vol.open`` does the
same: ``buffering=-1`` (the default) wraps the raw ``File`` in a ``BufferedReader``,
``BufferedWriter`` or ``BufferedRandom``, text modes add an ``io.TextIOWrapper``, and
``buffering=0`` gives the raw ``File``.  The buffered objects keep daxfs's own methods
(``map``, ``pin``, ``extents``, ``pread``, ``pwrite``, ``punch_hole``, ``zero_range``,
``fallocate``, ``truncate`` with a policy, ``fsync``, ``stat``): each flushes the buffer
first, and those that change the file drop what was read ahead, so what the file object
reads next is what the file holds.  ``.raw`` is the ``File``.

Data a buffered write has not flushed yet is not in the volume: it is durable at
``flush``/``close`` (and ``fsync``), as with ``open()``.  ``buffering=0`` writes through.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

from daxfs.volume import arguments
from daxfs.volume.arguments import OpenFlags

#: default buffer: larger than io's 8 KiB, as each flush is a call into the volume
BUFFER_SIZE = 128 * 1024


class _DaxfsMethods:
    """daxfs's file methods on a buffered file (mixed into the io.Buffered* classes)."""

    # flush, tell, seek and raw are the io class's (this comes first in the bases)
    raw: Any
    flush: Callable[[], None]
    tell: Callable[[], int]
    seek: Callable[..., int]

    def _drop_read_ahead(self) -> None:
        # A seek to the end always goes to the raw file and empties the buffer (a seek
        # inside the buffer would keep what it read ahead, now stale).
        if self.raw.readable():
            pos = self.tell()
            self.seek(0, os.SEEK_END)
            self.seek(pos)

    @property
    def ino(self) -> int:
        return self.raw.ino

    def close(self) -> None:
        raw = self.raw
        owned = getattr(raw.holder, "owned", None)
        try:
            if not raw.closed:
                raw.closing(True)       # (a client's file: the flush's write closes it)
            super().close()  # type: ignore[misc]
        finally:
            raw.closing(False)          # a close that raised before its flush leaves no write closing
            if owned is not None:
                owned.discard(self)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        self.flush()
        return self.raw.map(*args, **kwargs)

    def pin(self, *args: Any, **kwargs: Any) -> Any:
        self.flush()
        return self.raw.pin(*args, **kwargs)

    def extents(self) -> Any:
        self.flush()
        return self.raw.extents()

    def stat(self) -> Any:
        self.flush()
        return self.raw.stat()

    def fsync(self) -> None:
        self.flush()
        self.raw.fsync()

    def pread(self, n: int, offset: int) -> bytes:
        self.flush()
        return self.raw.pread(n, offset)

    def preadinto(self, buf: Any, offset: int) -> int:
        self.flush()
        return self.raw.preadinto(buf, offset)

    def _changing(self, action: Callable[[], Any]) -> Any:
        self.flush()
        try:
            return action()
        finally:
            self._drop_read_ahead()

    def pwrite(self, data: Any, offset: int) -> int:
        return self._changing(lambda: self.raw.pwrite(data, offset))

    def punch_hole(self, offset: int, length: int, **kwargs: Any) -> None:
        self._changing(lambda: self.raw.punch_hole(offset, length, **kwargs))

    def zero_range(self, offset: int, length: int, **kwargs: Any) -> None:
        self._changing(lambda: self.raw.zero_range(offset, length, **kwargs))

    def fallocate(self, offset: int, length: int, **kwargs: Any) -> None:
        self._changing(lambda: self.raw.fallocate(offset, length, **kwargs))

    def truncate(self, size: int | None = None, *, policy: str | None = None,
                 timeout: float | None = None) -> int:
        self.flush()
        new_size = self.tell() if size is None else size
        try:
            return self.raw.truncate(new_size, policy=policy, timeout=timeout)
        finally:
            self._drop_read_ahead()


class BufferedReader(_DaxfsMethods, io.BufferedReader):
    """A daxfs file opened for reading, buffered (``vol.open(path, "rb")``)."""


class BufferedWriter(_DaxfsMethods, io.BufferedWriter):
    """A daxfs file opened for writing only, buffered (``"wb"``, ``"ab"``, ``"xb"``)."""


class BufferedRandom(_DaxfsMethods, io.BufferedRandom):
    """A daxfs file opened for reading and writing, buffered (``"r+b"``, ``"w+b"``, ...)."""


def check_options(text: bool, buffering: object, encoding: object, errors: object,
                  newline: object) -> int:
    """``open()``'s checks on its options; returns ``buffering`` as an int."""
    size = arguments.integer(buffering)
    for name, value in (("encoding", encoding), ("errors", errors), ("newline", newline)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"open() argument '{name}' must be str or None, not {type(value).__name__}")
        if value is not None and not text:
            raise ValueError(f"binary mode doesn't take an {name} argument")
    if text and size == 0:
        raise ValueError("can't have unbuffered text I/O")
    if newline not in (None, "", "\n", "\r", "\r\n"):
        raise ValueError(f"illegal newline value: {newline!r}")
    return size


def wrap(raw: Any, flags: OpenFlags, text: bool, mode: str, buffering: int, encoding: str | None,
         errors: str | None, newline: str | None) -> Any:
    """What ``open()`` returns for ``raw`` opened with ``mode`` and these options."""
    if buffering == 0:
        return raw
    size = BUFFER_SIZE if buffering in (-1, 1) else buffering
    if flags.readable and flags.writable:
        buffered: Any = BufferedRandom(raw, size)
    elif flags.writable:
        buffered = BufferedWriter(raw, size)
    else:
        buffered = BufferedReader(raw, size)
    result = buffered
    if text:
        result = io.TextIOWrapper(buffered, io.text_encoding(encoding), errors, newline,
                                  line_buffering=buffering == 1)
        result.mode = mode
    # what a holder releases at close is the outermost object, so its buffer is flushed
    owned = getattr(raw.holder, "owned", None)
    if owned is not None and raw in owned:
        owned.discard(raw)
        owned.add(result)
    return result
