"""A client's mappings and pins: the embedded ``Mapping`` and ``Pin`` API, laid out here.

The arbiter registers a reference (sealing its range, populating a write mapping) and
returns its pieces; the client lays them into a ``PoolView`` in this process's address
space, so the data path never crosses the socket.  Letting go tells the arbiter how much
may go now: everything (the view is unmapped), or nothing yet — buffers exported from the
view still live, or a child forked while it was mapped still shows it — and then the
blocks go once the last of those is gone (``release_blocks``).  Until then they count as
exported, and the client's holder slot keeps them if the arbiter is lost or the client
closes.  Revocations (a lease that ran out, a forced close, a lost arbiter) migrate the
view to private memory, same addresses, same bytes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daxfs.access.mapping import array_on, persist_range
from daxfs.media import PoolView, shown_in_children, when_unshown

if TYPE_CHECKING:
    import numpy as np

# The Client this module serves: not imported, as client.py imports this module.
Client = Any


class _ClientRef:
    """What mappings and pins share on the client side."""

    kind = "mapping"
    #: forks made while its view was mapped (the view's list): their children show the
    #: blocks, which the arbiter keeps until they are gone
    _forks: Any = ()

    def shown_in_children(self) -> bool:
        return shown_in_children(self._forks)

    def _held_for_children(self) -> bool:
        """This process no longer shows the blocks (revoked): if a child forked while they
        were mapped still does, the arbiter is told they may go only once no such child is
        left, and until then they count as exported (the slot keeps them, even after a
        close).  False when there is no such child: the caller lets them go now."""
        if not self.shown_in_children():
            return False
        client = self._client
        client.export_pending(1)
        if not when_unshown(self._forks, lambda: _exports_gone(client, self.r, self)):
            _exports_gone(client, self.r, self)
        return True

    def __init__(self, client: "Client", path: str, reply: dict[str, Any], writable: bool, holder: object) -> None:
        self._client = client
        self.r: int = reply["r"]
        self.path = path
        self.offset: int = reply["offset"]
        self.length: int = reply["length"]
        self.first_block: int = reply["first_block"]
        self.end_block: int = reply["end_block"]
        self.writable = writable
        self.holder = holder
        self.pieces: list[tuple[int, int, int]] = [tuple(p) for p in reply["pieces"]]  # type: ignore[misc]
        self.zero_blocks: list[tuple[int, int]] = [tuple(z) for z in reply["zero"]]  # type: ignore[misc]
        self._view: PoolView | None = None
        #: file ranges ``(offset, length)`` whose memory failed: fenced in this process's view
        self.poisoned: list[tuple[int, int]] = [tuple(run) for run in reply.get("poisoned", ())]  # type: ignore[misc]
        self.on_poison: Callable[[Any, int, int], Any] | None = None

    def _show(self) -> PoolView:
        """A new view of the reference's blocks, laid out, kept as ``_view`` (and its forks)."""
        client = self._client
        view = PoolView(client.pool_fd, (self.end_block - self.first_block) * client.block_size,
                        writable=self.writable)
        try:
            self._lay_out(view)
        except BaseException:
            view.release()
            raise
        self._view = view
        self._forks = view.forks
        return view

    def _lay_out(self, view: PoolView) -> None:
        bs = self._client.block_size
        base = self.first_block
        for f, k in self.zero_blocks:
            view.map_zero((f - base) * bs, k * bs)
        for f, k, pool_offset in self.pieces:
            view.map_pool((f - base) * bs, k * bs, pool_offset, populate=self.writable)
        for lo, n in self.poisoned:
            self._fence(view, lo, n)

    def _fence(self, view: PoolView, file_offset: int, length: int) -> None:
        """Make the pages of file bytes ``[file_offset, +length)`` inaccessible in ``view``."""
        bs = self._client.block_size
        first = file_offset // bs
        end = -(-(file_offset + length) // bs)
        view.fence((first - self.first_block) * bs, (end - first) * bs)

    def _poison(self, file_offset: int, length: int) -> None:
        """The arbiter says memory under this reference failed: fence it here, tell the holder."""
        with self._client.view_lock:
            if self._view is not None:
                self._fence(self._view, file_offset, length)
            self.poisoned.append((file_offset, length))
        if self.on_poison is not None:
            self.on_poison(self, file_offset, length)

    def _fill(self, fblk: int, nblk: int, pool_offset: int) -> None:
        """The arbiter says: file blocks that showed zeros now live at ``pool_offset``."""
        bs = self._client.block_size
        with self._client.view_lock:
            self.pieces.append((fblk, nblk, pool_offset))
            still: list[tuple[int, int]] = []
            for zf, zk in self.zero_blocks:
                if fblk + nblk <= zf or zf + zk <= fblk:
                    still.append((zf, zk))
                    continue
                if zf < fblk:
                    still.append((zf, fblk - zf))
                if zf + zk > fblk + nblk:
                    still.append((fblk + nblk, zf + zk - fblk - nblk))
            self.zero_blocks = still
            # (a revoked view is private memory now, its blocks given back: never the pool again)
            if self._view is not None and not self.revoked:
                self._view.map_pool((fblk - self.first_block) * bs, nblk * bs, pool_offset, populate=self.writable)

    def pool_runs(self) -> list[tuple[int, int, int]]:
        bs = self._client.block_size
        return [(f * bs, k * bs, p) for f, k, p in self.pieces]

    def _let_go(self, view: PoolView | None) -> None:
        """Unmap ``view`` now, or when its last export dies; the arbiter hears of either,
        and of when no child forked while it was mapped is left."""
        client = self._client
        unmapped = view is None or view.release()
        children = self.shown_in_children()
        if unmapped and not children:
            if not client.lost:
                client.call("release", self.r, True)
            client.ref_done(self)  # type: ignore[arg-type]
            return
        if not client.lost:
            client.call("release", self.r, False)
        client.export_pending(1)
        gone = _Countdown(int(not unmapped) + int(children), lambda: _exports_gone(client, self.r, self))
        if not unmapped:
            weakref.finalize(view.reservation, gone.one)  # type: ignore[union-attr]
        if children and not when_unshown(self._forks, gone.one):
            gone.one()

    def segments(self) -> list[tuple[int, int, int | None]]:
        bs = self._client.block_size
        runs: list[tuple[int, int, Any]] = [*self.pieces, *((f, k, None) for f, k in self.zero_blocks)]
        out: list[tuple[int, int, int | None]] = []
        start, end = self.offset, self.offset + self.length
        for f, k, pool_offset in sorted(runs, key=lambda r: r[0]):
            lo, hi = max(f * bs, start), min((f + k) * bs, end)
            if lo < hi:
                out.append((lo, hi - lo, None if pool_offset is None else pool_offset + lo - f * bs))
        return out


class _Countdown:
    """Runs ``then`` when ``one`` has been called ``n`` times (from any threads)."""

    def __init__(self, n: int, then: Callable[[], Any]) -> None:
        self._left = n
        self._then = then
        self._lock = threading.Lock()

    def one(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._then()


def _exports_gone(client: "Client", r: int, ref: _ClientRef) -> None:
    client.send_only("release_blocks", r)
    client.export_pending(-1)
    client.ref_done(ref)  # type: ignore[arg-type]


class ClientMapping(_ClientRef):
    """A client's zero-copy view of a file range: the ``daxfs.Mapping`` API."""

    kind = "mapping"

    def __init__(self, client: "Client", path: str, reply: dict[str, Any], writable: bool, lease: bool,
                 on_break: Callable[["ClientMapping"], Any] | None, holder: object) -> None:
        super().__init__(client, path, reply, writable, holder)
        self.lease = lease
        self.on_break = on_break
        self.closed = False
        self.revoked = False
        view = self._show()
        self._skip = self.offset - self.first_block * client.block_size
        self._buffer: memoryview | None = view.buffer(self._skip, self.length)

    @property
    def live(self) -> bool:
        return not self.closed and not self.revoked

    def _drop_unregistered(self) -> None:
        """The client refused this mapping (it is closing): unmap it, tell no one."""
        self.closed = True
        self._buffer = None
        view, self._view = self._view, None
        if view is not None:
            view.release()

    def __repr__(self) -> str:
        state = "revoked" if self.revoked else ("closed" if self.closed else "live")
        return f"<daxfs.ClientMapping {self.path!r} [{self.offset}, +{self.length}) {state}>"

    @property
    def buffer(self) -> memoryview:
        if self._buffer is None:
            raise ValueError("mapping is closed")
        return self._buffer

    def array(self, dtype: Any = "u1", shape: int | tuple[int, ...] | None = None, offset: int = 0) -> "np.ndarray":
        return array_on(self.buffer, dtype, shape, offset)

    def persist(self, offset: int = 0, length: int | None = None) -> None:
        offset, length = persist_range(self, offset, length)
        if self._client.sync_mode != "memory" and self._view is not None:
            self._view.persist(self._skip + offset, length)

    def revoke(self, mode: str = "migrate") -> None:
        if mode not in ("migrate", "invalidate"):
            raise ValueError(f"unknown revoke mode {mode!r}; expected 'migrate' or 'invalidate'")
        client = self._client
        with client.view_lock:
            if self.closed:
                raise ValueError("mapping is closed")
            if self.revoked:
                return
            self._detach(mode)
        if self._held_for_children():
            if not client.lost:
                client.call("release", self.r, False)
        elif not client.lost:
            client.call("release", self.r, True)

    def _detach(self, mode: str) -> None:
        if self._view is not None:
            if mode == "migrate":
                self._view.migrate()
            else:
                self._view.invalidate()
        self.revoked = True

    def _revoked_by_server(self, mode: str) -> None:
        """A lease ran out (or the arbiter stops): detach, then say the blocks are free to go."""
        client = self._client
        with client.view_lock:
            if self.revoked or self.closed:
                return
            self._detach(mode)
        if not self._held_for_children():
            client.send_only("release_blocks", self.r)

    def _detach_lost(self) -> None:
        if not self.revoked and not self.closed:
            self._detach("migrate")
            # its slot lists it while a child forked meanwhile shows it (_publish_pins)
            when_unshown(self._forks, self._client.republish)

    def _notify_break(self) -> None:
        if self.on_break is not None:
            self.on_break(self)

    def close(self) -> None:
        client = self._client
        with client.view_lock:         # no fill may be laid into a view being given back
            if self.closed:
                return
            self.closed = True
            self._buffer = None
            view, self._view = self._view, None
            revoked = self.revoked
        owned = getattr(self.holder, "owned", None)
        if owned is not None:
            owned.discard(self)
        if revoked:
            if view is not None:
                view.release()
            if not when_unshown(self._forks, lambda: client.ref_done(self)):
                client.ref_done(self)
            return
        self._let_go(view)

    def __enter__(self) -> "ClientMapping":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ClientPin(_ClientRef):
    """A client's pin: the ``daxfs.Pin`` API (never revoked, even if the arbiter goes)."""

    kind = "pin"
    lease = False
    revoked = False

    def __init__(self, client: "Client", path: str, reply: dict[str, Any], writable: bool, holder: object) -> None:
        super().__init__(client, path, reply, writable, holder)
        self.released = False
        self._buffer: memoryview | None = None

    @property
    def live(self) -> bool:
        return not self.released

    def _drop_unregistered(self) -> None:
        """The client refused this pin (it is closing): no view was made yet."""
        self.released = True

    def __repr__(self) -> str:
        return f"<daxfs.ClientPin {self.path!r} [{self.offset}, +{self.length}) " \
               f"{'released' if self.released else 'live'}>"

    def _check(self) -> None:
        if self.released:
            raise ValueError("pin is released")

    @property
    def buffer(self) -> memoryview:
        self._check()
        client = self._client
        with client.view_lock:
            self._check()
            if self._buffer is None:
                view = self._show()
                self._buffer = view.buffer(self.offset - self.first_block * client.block_size, self.length)
            return self._buffer

    @property
    def segments(self) -> list[tuple[int, int, int | None]]:  # type: ignore[override]
        self._check()
        with self._client.view_lock:
            return _ClientRef.segments(self)

    @property
    def pool_offset(self) -> int | None:
        return self.segments[0][2]

    def release(self) -> None:
        client = self._client
        with client.view_lock:
            self._check()
            self.released = True
            self._buffer = None
            view, self._view = self._view, None
        owned = getattr(self.holder, "owned", None)
        if owned is not None:
            owned.discard(self)
        self._let_go(view)

    def __enter__(self) -> "ClientPin":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.released:
            self.release()
