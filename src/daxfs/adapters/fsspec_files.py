"""The file objects ``daxfs://`` opens: daxfs's own File behind an ``io`` buffer.

fsspec's users (pandas, pyarrow, zarr, csv readers) make many small reads and
writes; a daxfs ``File`` is raw (every call goes to the volume, and every
extending write is a metadata commit), so ``DaxfsFileSystem.open`` wraps it in
``io.BufferedReader``/``BufferedWriter``/``BufferedRandom``.  Large reads and
writes bypass the buffer (CPython hands a request larger than the buffer
straight to the raw file's ``readinto``/``write``), so they are one copy
between the pool and the caller's memory.

The wrapper keeps daxfs's own methods (``map``, ``pin``, ``pread``, ``pwrite``,
``extents``, ``truncate(policy=)``, ...): each first flushes what the buffer
holds, so the raw file it reaches is current, and a call that changes the file
under a read-ahead buffer drops that buffer.

Writes opened inside an fsspec transaction (``autocommit=False``) go to a
hidden file beside the target; ``commit()`` renames it into place (atomic, as
any rename in the volume), ``discard()`` removes it.
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["open_buffered", "READ_BUFFER", "WRITE_BUFFER", "RANDOM_BUFFER"]

# A reader's buffer only serves small reads (a CSV parser's lines, a footer): large ones go
# around it, so it stays small and a random 8-byte read does not drag megabytes with it.
READ_BUFFER = 64 * 1024
# A writer's buffer turns a stream of small writes (a Parquet or CSV writer's pieces) into
# few volume writes: each one that grows the file is a metadata commit.
WRITE_BUFFER = 4 * 1024 * 1024
RANDOM_BUFFER = 1024 * 1024


class _DaxfsMethods:
    """daxfs's File methods on a buffered file: flush first, then the raw file."""

    raw: Any
    fs: Any
    path: str
    autocommit: bool
    _temp: str | None
    _exclusive: bool

    # provided by the io.Buffered* base
    flush: Callable[[], None]
    tell: Callable[[], int]
    seek: Callable[..., int]
    readable: Callable[[], bool]
    writable: Callable[[], bool]
    close: Callable[[], None]
    closed: bool

    def __getattr__(self, name: str) -> Any:
        # What the raw File has and the buffer does not (ino, handle, ...); never private
        # names, which io and pickle probe for while the object is half built.
        if name.startswith("_") or name == "raw":
            raise AttributeError(name)
        return getattr(self.raw, name)

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<daxfs:// file {self.path!r} mode={self.raw.mode!r}{state}>"

    def _settled(self) -> Any:
        """The raw file, holding everything written through the buffer."""
        if self.writable():
            self.flush()
        return self.raw

    def _changed(self) -> None:
        # Bytes read ahead may predate a change made around the buffer: drop them, keeping
        # the position (a seek from the end always empties CPython's buffer).
        if self.readable() and self.writable():
            position = self.tell()
            self.seek(0, os.SEEK_END)
            self.seek(position)

    # ---- reads around the buffer

    @property
    def size(self) -> int:
        return int(self._settled().stat().st_size)

    def pread(self, n: int, offset: int) -> bytes:
        return bytes(self._settled().pread(n, offset))

    def preadinto(self, buf: Any, offset: int) -> int:
        return int(self._settled().preadinto(buf, offset))

    def stat(self) -> Any:
        return self._settled().stat()

    def extents(self) -> Any:
        return self._settled().extents()

    def info(self) -> dict[str, Any]:
        return dict(self.fs.info(self.path))

    def map(self, *args: Any, **kwargs: Any) -> Any:
        return self._settled().map(*args, **kwargs)

    def pin(self, *args: Any, **kwargs: Any) -> Any:
        return self._settled().pin(*args, **kwargs)

    def fsync(self) -> None:
        self._settled().fsync()

    # ---- changes around the buffer

    def pwrite(self, data: Any, offset: int) -> int:
        written = int(self._settled().pwrite(data, offset))
        self._changed()
        return written

    def truncate(self, size: int | None = None, *, policy: str | None = None,
                 timeout: float | None = None) -> int:
        raw = self._settled()
        new_size = int(raw.truncate(self.tell() if size is None else size, policy=policy,
                                    timeout=timeout))
        self._changed()
        return new_size

    def fallocate(self, offset: int, length: int, *, keep_size: bool = False) -> None:
        self._settled().fallocate(offset, length, keep_size=keep_size)
        self._changed()

    def punch_hole(self, offset: int, length: int, *, policy: str | None = None,
                   timeout: float | None = None) -> None:
        self._settled().punch_hole(offset, length, policy=policy, timeout=timeout)
        self._changed()

    def zero_range(self, offset: int, length: int, *, keep_size: bool = False) -> None:
        self._settled().zero_range(offset, length, keep_size=keep_size)
        self._changed()

    # ---- fsspec transactions

    def commit(self) -> None:
        """Move what this transaction wrote into place (a rename: all or nothing)."""
        if not self.closed:
            self.close()
        if self._temp is not None:
            temp, self._temp = self._temp, None
            try:
                # "xb": the target must still not exist; "wb": it is replaced, atomically.
                self.fs.volume.rename(temp, self.path, replace=not self._exclusive)
            except BaseException:
                self.fs.volume.unlink(temp)      # the commit failed: leave nothing behind
                raise

    def discard(self) -> None:
        """Drop what this transaction wrote; the target keeps what it had."""
        if not self.closed:
            self.close()
        if self._temp is not None:
            self.fs.volume.unlink(self._temp)
            self._temp = None


class DaxfsBufferedReader(_DaxfsMethods, io.BufferedReader):
    pass


class DaxfsBufferedWriter(_DaxfsMethods, io.BufferedWriter):
    pass


class DaxfsBufferedRandom(_DaxfsMethods, io.BufferedRandom):
    pass


def _temporary_name(path: str) -> str:
    parent, name = posixpath.split(path)
    return posixpath.join(parent, f".{name}.{uuid.uuid4().hex[:12]}.daxfs-part")


def open_buffered(fs: Any, path: str, mode: str, *, buffer_size: int | None = None,
                  autocommit: bool = True) -> _DaxfsMethods:
    """``path`` in ``fs.volume`` opened with ``mode`` (binary), behind a buffer."""
    volume = fs.volume
    temp = None
    if not autocommit and "r" not in mode:
        if "a" in mode or "+" in mode:
            raise ValueError(f"mode {mode!r} cannot be deferred to a commit; use 'wb' or 'xb'")
        if "x" in mode and volume.exists(path):
            raise FileExistsError(path)
        temp = _temporary_name(path)
        raw = volume.open(temp, "xb", buffering=0)
    else:
        raw = volume.open(path, mode, buffering=0)
    try:
        if "+" in mode:
            kind: type[_DaxfsMethods] = DaxfsBufferedRandom
            size = buffer_size or RANDOM_BUFFER
        elif "r" in mode:
            kind, size = DaxfsBufferedReader, buffer_size or READ_BUFFER
        else:
            kind, size = DaxfsBufferedWriter, buffer_size or WRITE_BUFFER
        wrapped = kind(raw, size)  # type: ignore[call-arg]
    except BaseException:
        raw.close()
        raise
    wrapped.fs = fs
    wrapped.path = path
    wrapped.autocommit = autocommit
    wrapped._temp = temp
    wrapped._exclusive = "x" in mode
    return wrapped
