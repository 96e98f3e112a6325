"""MediaSpace: giving the memory of free blocks back, and taking it again before use.

A pool in /dev/shm or on hugetlbfs is RAM.  Three jobs keep it from holding more
than the files need:

- **Discard** (online, and ``trim``): free blocks are punched out of the pool file
  (``Pool.discard``), in coalesced runs, by a thread of the volume's own.
- **Known zero**: a discarded block, or one that was never written, reads as zeros,
  so a fresh write need not zero it (``FreeSpace.zero``).
- **Reserve**: a block that may have no memory behind it (``FreeSpace.unbacked``: a
  hole of a sparse or discarded pool) is reserved (``posix_fallocate``) before it is
  handed out, so a full tmpfs gives a clean ENOSPC — never a SIGBUS on first touch.

The rule that makes discarding safe: only a *free* block is ever discarded, and only
while the volume lock is held, checked in the same hold.  A free block is one the
durable log says is free: every run reaches free space by ``Core.apply`` of a record
that ``Journal.commit`` persisted first, by the last hold on a busy block dropping
(the record that detached it was persisted when it was applied), or at mount from
the log itself, which mount makes durable before anything is discarded.  A busy
block (pinned, mapped, held by a client of the arbiter or by a prepared write) is
not free, nor is a quarantined bad block, nor metadata (it is outside the data
area).  And no operation lets go of the lock between planning blocks — which are
still free until its record takes them — and that record: so the discarder, which
takes the lock, cannot punch blocks an operation is filling.  A discard is not
logged: after a crash a freed block is simply free, and not known to be zero.

The worker holds the lock for one chunk at a time (``CHUNK`` bytes of punching,
well under a millisecond on tmpfs); the volume's callers only queue runs.
"""

from __future__ import annotations

import errno
import threading
from typing import TYPE_CHECKING

from daxfs.core.badblocks import BlockRuns
from daxfs.errors import fs_error

if TYPE_CHECKING:
    from daxfs.media import Pool
    from daxfs.volume.journal import Journal

CHUNK = 4 << 20          # bytes punched per hold of the volume lock
BATCH_DELAY_S = 0.01     # the worker looks for queued runs this often while frees keep coming,
IDLE_POLL_S = 0.25       # ... backing off to this when idle (as the badblock watcher polls)
RESERVE_AHEAD = 256 << 10    # bytes of free, unbacked blocks reserved past a plan's end


class MediaSpace:
    """Discard, known-zero and reservation for one mounted volume (see the module docstring)."""

    def __init__(self, journal: "Journal", *, discard: bool | None = None) -> None:
        self.journal = journal
        pool = journal.pool
        self.pool = pool
        self.bs = journal.block_size
        self.data_offset = journal.layout.data_offset
        self.data_blocks = journal.layout.data_blocks
        self.granularity = pool.discard_granularity
        #: the medium can give memory back (and may have holes to reserve)
        self.capable = self.granularity > 0 and not journal.readonly
        self._check(discard)
        #: free blocks are discarded as they become free
        self.online = self.capable and (pool.discard_default if discard is None else bool(discard))
        self.background = pool.discard_in_background
        #: freed runs not yet looked at (appended by whoever frees: the cheapest thing to do
        #: on the caller's path), and the coalesced runs the discarder works through
        self.pending: list[tuple[int, int]] = []
        self._queue = BlockRuns()
        self.discarded = 0                  # bytes discarded since mount
        self.error: str | None = None       # why online discard stopped, if it did
        self._wake = threading.Event()      # set by stop() only
        self._stopping = False
        self._thread: threading.Thread | None = None
        if not self.capable:
            return
        self._durable_log(pool)
        self._learn()
        journal.reserve = self.reserve
        if self.online:
            journal.core.space.on_free = self._freed

    def set_online(self, discard: bool | None) -> None:
        """Turn online discard on or off (None: the medium's default) after mount.

        The arbiter mounts with it off and turns it on once it holds again what live
        clients of its predecessor still pin: blocks the mount freed (orphans) must not
        be punched in between."""
        self._check(discard)
        with self.journal.lock:
            want = self.capable and (self.pool.discard_default if discard is None else bool(discard))
            self.online = want
            self.journal.core.space.on_free = self._freed if want else None
            if not want:
                self.pending = []
                self._queue = BlockRuns()

    def _check(self, discard: bool | None) -> None:
        """Asking for discard where the medium cannot is an error (a read-only mount never
        discards, asked or not)."""
        if discard and not self.capable and not self.journal.readonly:
            raise fs_error(errno.EOPNOTSUPP, self.pool.name, "this medium cannot give memory back (discard "
                           "needs a regular file: on tmpfs, hugetlbfs or a file system that punches holes)")

    def _durable_log(self, pool: "Pool") -> None:
        if not pool.discards_durable:
            # The state just loaded may rest on log records a crashed writer left in the page
            # cache of a file on disk: make them durable before any block they free is punched.
            pool.persist(0, self.data_offset)

    # ---------------------------------------------------------------- what the medium holds

    def _learn(self) -> None:
        """At mount: which free blocks read as zeros, and which may lack memory (holes).

        Nothing is known about the pool but what the medium says now: a block freed
        before a crash but never discarded holds its old bytes, and is neither."""
        space = self.journal.core.space
        zeros, unbacked = self.pool.backing(self.data_offset, self.data_blocks * self.bs)
        for off, n in zeros:            # whole blocks inside a hole only read as zeros
            lo, hi = self._blocks_inside(off, n)
            for s, k in space.free_parts(lo, hi - lo) if hi > lo else ():
                space.zero.add(s, k)
        for off, n in unbacked:         # every block such a range touches may lack memory
            lo = (off - self.data_offset) // self.bs
            hi = -(-(off + n - self.data_offset) // self.bs)
            for s, k in space.free_parts(max(0, lo), min(self.data_blocks, hi) - max(0, lo)):
                space.unbacked.add(s, k)

    def _blocks_inside(self, off: int, n: int) -> tuple[int, int]:
        """The whole data blocks inside pool bytes ``[off, +n)``: ``(first, end)``."""
        lo = max(0, -(-(off - self.data_offset) // self.bs))
        hi = min(self.data_blocks, (off + n - self.data_offset) // self.bs)
        return lo, max(lo, hi)

    def reserve(self, plan: list[tuple[int, int]]) -> None:
        """Put memory behind the unbacked blocks of ``plan`` before anything stores there.

        On failure (ENOSPC: the tmpfs is full) what this call reserved is given back and
        the allocation fails whole, before anything was written or logged."""
        space = self.journal.core.space
        done: list[tuple[int, int]] = []
        try:
            for p, k in plan:
                for s, n in space.unbacked.parts(p, k):
                    done.append((s, n))         # (before: a failure may have taken part of it)
                    self.pool.reserve(self.data_offset + s * self.bs, n * self.bs)
                    space.unbacked.remove(s, n)
        except OSError as exc:
            for s, n in done:       # all free (planned, not taken): back to holes
                self._punch(s, n)
            if exc.errno == errno.ENOSPC:
                raise fs_error(errno.ENOSPC, message=f"no space left on device: the pool's medium has no "
                               f"memory left for {sum(k for _p, k in plan) * self.bs} more bytes "
                               f"({self.pool.name} is sparse or discarded, and its file system is full)") from None
            raise
        if done:        # (blocks reserved ahead by an earlier call need nothing)
            self._reserve_ahead(plan[-1][0] + plan[-1][1])

    def _reserve_ahead(self, pos: int) -> None:
        """Reserve a little of the free, unbacked blocks from ``pos`` on, which the allocator
        hands out next: small files then cost one fallocate in many.  Only where memory is
        there to be had: a failure here is no one's."""
        space = self.journal.core.space
        got = space.unbacked.parts(pos, max(1, RESERVE_AHEAD // self.bs))
        if not got or got[0][0] != pos:
            return
        s, n = got[0]
        try:
            self.pool.reserve(self.data_offset + s * self.bs, n * self.bs)
        except OSError:
            return
        space.unbacked.remove(s, n)

    # ---------------------------------------------------------------- discarding

    def _freed(self, start: int, n: int) -> None:
        """Free space got ``[start, +n)`` (under the volume lock): queue it for the worker."""
        if not self.online:
            return
        self.pending.append((start, n))
        if not self.background:
            return
        if self._thread is None:        # (it runs until stop(), or until the medium refuses)
            if self._stopping or self.journal.closed:
                return
            thread = threading.Thread(target=self._work, name=f"daxfs discard {self.pool.name}", daemon=True)
            thread.start()
            self._thread = thread       # (only once started: stop() may join it from another thread)
        # Nothing is signalled: waking a thread would cost the caller tens of µs (the woken
        # thread takes the GIL at once).  The worker looks for queued runs by itself.

    def _work(self) -> None:
        delay = BATCH_DELAY_S
        while not self._stopping:
            # What a burst of frees (rm -r) queues meanwhile is coalesced; stop() sets the
            # event, so a close never waits out the delay.
            if self._wake.wait(delay):
                return
            if not self.queued():
                delay = min(IDLE_POLL_S, delay * 2)
                continue
            delay = BATCH_DELAY_S
            try:
                self._drain(background=True)
            except OSError as exc:
                # The medium refused (an odd file system): stop trying, say why in info().
                # (Not under the lock: whoever closes the volume may hold it while joining us.)
                self.error = f"online discard stopped: {exc}"
                self.online = False
                self.pending = []
                self._queue = BlockRuns()
                return

    def _units(self, start: int, end: int, *, outward: bool) -> tuple[int, int]:
        """Blocks ``[start, end)`` rounded to whole discard units (pages, huge pages), in
        or out: ``(first, end)`` in blocks, empty when no whole unit fits inside."""
        g, d, bs = self.granularity, self.data_offset, self.bs
        a, b = d + start * bs, d + end * bs
        if outward:
            a, b = a // g * g, -(-b // g) * g
        else:
            a, b = -(-a // g) * g, b // g * g
        lo = max(0, -(-(a - d) // bs))
        hi = min(self.data_blocks, (b - d) // bs)
        return lo, max(lo, hi)

    def _punch(self, s: int, n: int) -> int:
        """Discard the whole units inside free blocks ``[s, +n)``; blocks discarded."""
        lo, hi = self._units(s, s + n, outward=False)
        if hi <= lo:
            return 0
        self.pool.discard(self.data_offset + lo * self.bs, (hi - lo) * self.bs)
        space = self.journal.core.space
        space.unbacked.add(lo, hi - lo)
        if self.pool.discards_durable:
            space.zero.add(lo, hi - lo)
        return hi - lo

    def _discard_free(self, start: int, n: int, undurable: list[tuple[int, int]], *,
                      holes_too: bool = False) -> int:
        """Under the lock: discard what is free of ``[start, +n)``; bytes discarded.

        Widened to whole units first: a huge page whose other blocks were freed earlier
        is whole now.  Checked against free space in this very hold of the lock.  Parts
        that may already be holes are passed over unless ``holes_too`` (trim: a page
        fallocate'd at mkfs looks like a hole but holds memory)."""
        space = self.journal.core.space
        lo, hi = self._units(start, start + n, outward=True)
        got = 0
        for fs, fk in space.free_parts(lo, hi - lo):
            a, b = self._units(fs, fs + fk, outward=False)
            if b <= a or not holes_too and not space.unbacked.outside(a, b - a):
                continue        # no whole unit, or a hole already
            got += self._punch(a, b - a) * self.bs
            if not self.pool.discards_durable:
                undurable.append((a, b - a))
        return got

    def _drain(self, *, background: bool = False) -> int:
        """Discard the queued runs, a chunk per hold of the lock; bytes discarded."""
        journal = self.journal
        chunk = max(1, CHUNK // self.bs)
        undurable: list[tuple[int, int]] = []
        total = 0
        while not (background and self._stopping):
            if not self._acquire(background):
                break
            try:
                if journal.closed or journal.readonly:
                    break
                queue = self._queue
                if self.pending:
                    freed, self.pending = self.pending, []
                    for start, n in _coalesce(freed):
                        queue.add(start, n)
                if not queue:
                    break
                start = queue.starts[0]
                n = min(chunk, queue[start])
                queue.remove(start, n)
                total += self._discard_free(start, n, undurable)
            finally:
                journal.lock.release()
        self._settle(undurable, background)
        self.discarded += total
        return total

    def queued(self) -> bool:
        """Whether freed runs wait to be discarded."""
        return bool(self.pending or self._queue)

    def _acquire(self, background: bool) -> bool:
        """Take the volume lock; the worker gives up when the volume is closing (whoever
        closes may hold the lock while it waits for the worker)."""
        if not background:
            self.journal.lock.acquire()
            return True
        while not self.journal.lock.acquire(timeout=0.05):
            if self._stopping:
                return False
        return True

    def _settle(self, undurable: list[tuple[int, int]], background: bool = False) -> None:
        """Discards on a medium where they are not durable at once (a file on disk): sync
        them, then count as zeros the blocks still holes (nothing took them meanwhile —
        ``take`` drops a block from ``unbacked``)."""
        if not undurable:
            return
        self.pool.sync_discards()
        if not self._acquire(background):
            return      # closing: the blocks are simply not known to be zero
        try:
            if self.journal.closed:
                return
            space = self.journal.core.space
            for s, n in undurable:
                for hs, hk in space.unbacked.parts(s, n):
                    space.zero.add(hs, hk)
        finally:
            self.journal.lock.release()

    def flush(self) -> int:
        """Do the queued discards now, in this thread; bytes discarded."""
        if not self.capable:
            return 0
        return self._drain()

    def trim(self) -> int:
        """Discard every free block (fstrim); returns how much memory that gave back: the
        drop in what the medium holds (``resident``), or the bytes discarded where it
        cannot say."""
        journal = self.journal
        if not self.capable:
            why = "on a read-only mount" if journal.readonly else \
                f"here: this medium ({self.pool.name}) cannot give memory back"
            raise fs_error(errno.EOPNOTSUPP, message=f"cannot trim {why}")
        before = self.pool.resident()
        chunk = max(1, CHUNK // self.bs)
        undurable: list[tuple[int, int]] = []
        total = 0
        pos = 0
        while True:
            with journal.lock:
                journal.check_writable()
                run = journal.core.space.next_run(pos)
                if run is None:
                    break
                start, n = run[0], min(chunk, run[1])
                total += self._discard_free(start, n, undurable, holes_too=True)
                pos = start + n
        self._settle(undurable)
        self.discarded += total
        after = self.pool.resident()
        return total if before is None or after is None else max(0, before - after)

    def stop(self) -> None:
        """The volume is closing: end the worker (the close does what is still queued,
        under its own hold of the lock, with ``flush``)."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None

    def resume(self) -> None:
        """The close was refused (BusyError): the volume stays open, so does discarding."""
        self._stopping = False
        self._wake.clear()

    # ---------------------------------------------------------------- questions

    def mode(self) -> str:
        """``online``, ``off`` (trim only) or ``unsupported``, for info()."""
        if not self.capable:
            return "unsupported"
        return "online" if self.online else "off"

    def resident(self) -> int:
        """Bytes of the pool the medium holds (the whole pool where it cannot say)."""
        got = self.pool.resident()
        return self.pool.size if got is None else got


def _coalesce(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Block runs sorted, and merged where they touch (an rm -r frees neighbours)."""
    runs.sort()
    out: list[tuple[int, int]] = []
    for start, n in runs:
        if out and out[-1][0] + out[-1][1] >= start:
            last, k = out[-1]
            out[-1] = (last, max(k, start + n - last))
        else:
            out.append((start, n))
    return out


__all__ = ["MediaSpace", "CHUNK", "RESERVE_AHEAD"]
