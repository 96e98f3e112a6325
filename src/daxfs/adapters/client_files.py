"""A client's open files: the embedded ``File`` API, over the arbiter.

A ``ClientFile`` caches its file's extents, size and stat with the change
counter they were read at.  A read copies straight from the pool and then
checks the counter: unchanged means every byte came from a block the file
still owned (the arbiter bumps it before applying a change), changed means
ask again.  ``stat`` and ``fstat``-like calls answer from the same cache.
Writes up to ``wire.INLINE_WRITE`` travel in the request; larger ones go
straight into blocks the arbiter prepared, persisted here, then committed in
one record.  Mappings and pins are client_refs.py's.
"""

from __future__ import annotations

import errno
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from daxfs._types import Extent, Stat
from daxfs.access.filebase import FileBase
from daxfs.adapters import wire
from daxfs.core.extents import UNWRITTEN, ExtentMap
from daxfs.errors import PoisonError, fs_error
from daxfs.adapters.client_refs import ClientMapping, ClientPin
from daxfs.volume import arguments
from daxfs.volume.arguments import OpenFlags

# The Client this module serves: not imported, as client.py imports this module.
Client = Any


_PAGE = os.sysconf("SC_PAGE_SIZE")


class _Layout:
    __slots__ = ("counter", "stat", "extents", "poisoned", "data_offset")

    def __init__(self, reply: dict[str, Any]) -> None:
        self.counter = reply["counter"]
        self.stat = Stat.from_fields(reply["stat"])
        self.extents = ExtentMap.from_flat(reply["extents"]) if reply["extents"] else ExtentMap()
        #: ``(fblk, n, pblk)`` written blocks on failed memory: reads touching them are EIO
        self.poisoned: list[tuple[int, int, int]] = [tuple(run) for run in reply.get("poisoned", ())]  # type: ignore[misc]
        self.data_offset = reply.get("data_offset", 0)

    def poison_error(self, path: str, offset: int, count: int, bs: int) -> PoisonError | None:
        """The PoisonError for reading ``[offset, +count)`` when it touches poisoned blocks."""
        first, last = offset // bs, (offset + count - 1) // bs
        hit = [(f, n, p) for f, n, p in self.poisoned if f <= last and first < f + n]
        if not hit:
            return None
        f, n, p = hit[0]
        ranges = ", ".join(f"[{rf * bs}, +{rn * bs})" for rf, rn, _rp in hit[:4]) + (" ..." if len(hit) > 4 else "")
        return PoisonError(f"read: bytes {ranges} of {path} are poisoned (the memory behind them failed, pool "
                           f"offset {self.data_offset + p * bs:#x}); write them whole, zero_range, punch or "
                           f"truncate them to replace them", pool_offset=self.data_offset + p * bs,
                           length=n * bs, filename=path, file_offset=f * bs)


class _Handle:
    """What says a client's file is open (FileBase reads ``closed``)."""

    __slots__ = ("closed", "wrapper")

    def __init__(self) -> None:
        self.closed = False
        self.wrapper: Any = None

    def mark_closed(self) -> None:
        """As ``OpenFile.mark_closed``: the wrapper's ``closed`` is told too."""
        self.closed = True
        wrapper = self.wrapper() if self.wrapper is not None else None
        if wrapper is not None:
            wrapper.closed = True


class ClientFile(FileBase):
    """An open file of a client (see ``Client.open``): the ``daxfs.File`` API."""

    def __init__(self, client: "Client", reply: dict[str, Any], path: str, mode: str, flags: OpenFlags,
                 holder: object) -> None:
        self.handle = _Handle()
        self.handle.wrapper = weakref.ref(self)     # so closing the handle marks this closed
        super().__init__()
        self._client = client
        self.h = reply["h"]
        self.ino = reply["ino"]
        self._path = path
        self._mode = mode
        self._readable = flags.readable
        self._writable = flags.writable
        self._append = flags.append
        self._pos = reply["start"]
        self._holder = holder
        self._holder_name = None if holder is None else str(holder)
        self._layout: _Layout | None = _Layout(reply["layout"]) if reply["layout"] is not None else None
        #: the thread closing this file (see ``closing``), and whether the arbiter has
        #: closed it with the last write
        self._closing_in: int | None = None
        self._closed_there = False
        owned = getattr(holder, "owned", None)
        if owned is not None:
            owned.add(self)

    @property
    def holder(self) -> object:
        return self._holder

    # ---- the cache

    def _current(self) -> _Layout:
        layout = self._layout
        if layout is None or self._client.changes.get(self.ino) != layout.counter:
            layout = self._layout = _Layout(self._client.call("layout", self.h))
        return layout

    def _do_stat(self) -> Stat:
        return self._current().stat

    def _do_size(self) -> int:
        return self._current().stat.st_size

    def _do_pread(self, dest: memoryview | None, n: int, offset: int) -> bytes | int:
        client = self._client
        changes = client.changes
        bs = client.block_size
        pool = client.pool
        base = client.data_offset
        layout = self._layout
        if dest is None and layout is not None and not layout.poisoned and changes.get(self.ino) == layout.counter \
                and not client.lost:
            # The common case: one written run holds the whole read (as the embedded fast path).
            size = layout.stat.st_size
            if 0 < n and offset < size:
                count = min(n, size - offset)
                run = layout.extents.lookup(offset // bs)
                if run is not None and not run[3] & UNWRITTEN and (offset + count - 1) // bs < run[0] + run[1]:
                    src = base + (run[2] + offset // bs - run[0]) * bs + offset % bs
                    data = pool[src:src + count].tobytes()
                    if changes.get(self.ino) == layout.counter:
                        return data
        while True:
            layout = self._current()
            size = layout.stat.st_size
            if offset >= size or n <= 0:
                return b"" if dest is None else 0
            count = min(n, size - offset)
            if layout.poisoned:
                error = layout.poison_error(self._path, offset, count, bs)
                if error is not None:
                    raise error
            out = memoryview(bytearray(count)) if dest is None else dest[:count]
            first, last = offset // bs, (offset + count - 1) // bs
            for f, k, p, fl in layout.extents.pieces(first, last - first + 1):
                lo, hi = max(f * bs, offset), min((f + k) * bs, offset + count)
                if p < 0 or fl & UNWRITTEN:
                    out[lo - offset:hi - offset] = bytes(hi - lo)
                else:
                    src = base + p * bs + lo - f * bs
                    out[lo - offset:hi - offset] = pool[src:src + hi - lo]
            if client.lost:
                raise wire.ServerLost(errno.ECONNRESET, "the arbiter went away", client.socket_path)
            # Unchanged counter: the file owned every block copied for the whole copy.
            if changes.get(self.ino) == layout.counter:
                return bytes(out) if dest is None else count

    def _do_append(self, view: memoryview) -> tuple[int, int]:
        n, pos = self._client.call("pwrite", self.h, view.tobytes(), None)
        return n, pos

    def _do_pwrite(self, view: memoryview, offset: int) -> int:
        n = view.nbytes
        if n == 0:
            return 0
        if offset + n > arguments.MAX_FILE_SIZE:
            raise fs_error(errno.EFBIG, message="file too large")
        client = self._client
        if n <= wire.INLINE_WRITE:
            if self._closing_in is not None and self._closing_in == threading.get_ident() \
                    and client.version >= 2:
                # The flush of close(): the arbiter closes the file with this write, failed
                # or not, so the close costs no request of its own.  Counted as closed there
                # once the arbiter answered or is gone; interrupted before that (^C), the
                # close goes alone as well (a second close of a handle is answered by nobody).
                try:
                    n = client.call("pwrite", self.h, view.tobytes(), offset, True)
                except Exception:
                    self._closed_there = True
                    raise
                self._closed_there = True
                return n  # type: ignore[no-any-return]
            return client.call("pwrite", self.h, view.tobytes(), offset)
        # Large: straight into blocks the arbiter prepared, persisted here, then one record.
        token, segments = client.call("prepare", self.h, offset, n)
        try:
            try:
                client.copying(token, [(pool_offset, length) for _f, length, pool_offset in segments])
                pool = client.pool
                for file_offset, length, pool_offset in segments:
                    pool[pool_offset:pool_offset + length] = view[file_offset - offset:file_offset - offset + length]
                if client.sync_mode != "memory":
                    for _f, length, pool_offset in segments:
                        start = pool_offset - pool_offset % _PAGE
                        client._pool_map.flush(start, pool_offset + length - start)
            except BaseException:
                client.send_only("abort", token)
                raise
            # Listed as copying until the commit is answered, so that close() in another
            # thread waits for the whole write, not only for its stores.
            return client.call("commit", token)
        finally:
            client.copying(token, None)

    def _do_seek_data(self, offset: int, hole: bool) -> int:
        return self._client.call("seek_data", self.h, offset, hole)

    def _do_truncate(self, size: int, policy: str | None, timeout: float | None) -> None:
        self._client.call("truncate", self.h, size, policy, timeout)

    def _do_fallocate(self, offset: int, length: int, keep_size: bool) -> None:
        self._client.call("fallocate", self.h, offset, length, keep_size)

    def _do_punch_hole(self, offset: int, length: int, policy: str | None, timeout: float | None) -> None:
        self._client.call("punch_hole", self.h, offset, length, policy, timeout)

    def _do_zero_range(self, offset: int, length: int, keep_size: bool) -> None:
        self._client.call("zero_range", self.h, offset, length, keep_size)

    def _do_fsync(self) -> None:
        self._client.call("fsync", self.h)

    def _do_extents(self) -> list[Extent]:
        return [Extent(o, n, p, frozenset(fl)) for o, n, p, fl in self._client.call("extents", self.h)]

    def _do_map(self, offset: int, length: int | None, write: bool, lease: bool,
                on_break: Callable[["ClientMapping"], Any] | None,
                on_poison: Callable[["ClientMapping", int, int], Any] | None) -> "ClientMapping":
        client = self._client
        reply = client.call("map", self.h, offset, length, write, lease, self._holder_name)
        mapping = _made(client, reply, lambda: ClientMapping(client, self._path, reply, write, lease, on_break,
                                                             self._holder))
        mapping.on_poison = on_poison
        client.register(mapping)
        owned = getattr(self._holder, "owned", None)
        if owned is not None:
            owned.add(mapping)
        return mapping

    def _do_pin(self, offset: int, length: int, write: bool,
                on_poison: Callable[["ClientPin", int, int], Any] | None) -> "ClientPin":
        client = self._client
        reply = client.call("pin", self.h, offset, length, write, self._holder_name)
        pin = _made(client, reply, lambda: ClientPin(client, self._path, reply, write, self._holder))
        pin.on_poison = on_poison
        client.register(pin)
        owned = getattr(self._holder, "owned", None)
        if owned is not None:
            owned.add(pin)
        return pin

    # ---- lifetime

    def closing(self, on: bool) -> None:
        """While the buffered file over this one closes in this thread, the write its flush
        makes, if any, closes the file too (``_do_pwrite``)."""
        self._closing_in = threading.get_ident() if on else None

    def close(self) -> None:
        if self.handle.closed:
            return
        self.handle.mark_closed()
        client = self._client
        with client.lock:
            client.files.discard(self)
        owned = getattr(self._holder, "owned", None)
        if owned is not None:
            owned.discard(self)
        try:
            # Nothing waits on the reply: requests of one connection run in order, so
            # whatever this client asks next sees the file closed.
            if not client.lost and not client.closed and not self._closed_there:
                client.send_only("close", self.h)
        finally:
            super().close()

    def _detach(self) -> None:
        """The client disconnects: this handle dies with it."""
        self.handle.mark_closed()
        super().close()


_Ref = TypeVar("_Ref")


def _made(client: Any, reply: dict[str, Any], make: Callable[[], _Ref]) -> _Ref:
    """The reference the arbiter granted, made here; if making it fails (no memory for its
    view), the arbiter is told at once, or it would keep the blocks until the connection ends."""
    try:
        return make()
    except BaseException:
        client.send_only("release", reply["r"], True)
        raise


__all__ = ["ClientFile"]
