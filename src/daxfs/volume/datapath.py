"""DataPath: reading and writing file data, copy-on-write, and taking references to it.

Rules that keep every write all-or-nothing (the journal logs the record):
- Blocks a file gains are fully written or zeroed, and persisted, before the
  record that gives them to the file; fallocate'd blocks are marked unwritten
  and read as zeros instead.
- Bytes past EOF inside the last block may hold stale data; whenever the size
  grows over them they are zeroed first (before the record).
- A shared (reflinked) block is never written in place: ``unshare`` gives the
  writing file a private copy first, swapped in by a record of its own or by
  the write's own record, so the other owners never see the write (a write
  inside one shared run does it in one pass: ``cow.cow_in_run``).
- Overwrites of private blocks a file already owns go in place and are not
  atomic per byte, as on any DAX file system.  With ``durability="lazy"`` they
  are persisted at fsync/close instead of at once.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterable

from daxfs._types import Extent, Stat
from daxfs.core import UNWRITTEN, Inode
from daxfs.core.records import SetExtents
from daxfs.errors import fs_error
from daxfs.format.layout import HUGE_PAGE
from daxfs.volume.arguments import MAX_FILE_SIZE
from daxfs.volume import poison
from daxfs.volume.cow import cow_in_run, unshare
from daxfs.volume.journal import Journal
from daxfs.volume.prepared import GROW_RUN, Piece, PreparedWrites
from daxfs.volume.references import Reference, ReferenceTable, View
from daxfs.volume.waits import LookAgain, start_over

_PREFAULT_MIN = 64 * 1024      # smaller runs are cheaper to fault on first touch than to populate


class DataPath(PreparedWrites):
    """File data of one volume: reads, writes, COW, prefault, lazy durability, references
    (and writes another process makes itself: ``PreparedWrites``)."""

    def __init__(self, journal: Journal, references: ReferenceTable, *, durability: str) -> None:
        self.journal = journal
        self.references = references
        self.durability = durability
        self.lock = journal.lock
        self.pool = journal.pool
        self.bs = journal.block_size
        self.data_offset = journal.layout.data_offset
        self.dirty: dict[int, list[tuple[int, int]]] = {}  # lazy durability: unpersisted data
        self._faulted: set[int] = set()                     # data chunks prefaulted this mount
        self._chunk_shift = max(0, (HUGE_PAGE // self.bs).bit_length() - 1)

    # ---------------------------------------------------------------- reading

    def pread(self, ino: int, dest: memoryview | None, n: int, offset: int) -> bytes | int:
        """Read up to ``n`` bytes at ``offset``: into ``dest`` (returns a count) or as bytes."""
        journal = self.journal
        with self.lock:
            if not journal.follow and not journal.closed:
                return self.read_locked(ino, dest, n, offset)
            if journal.follow and not journal.closed:
                # A follower reads first and checks once after: if the writer has changed
                # nothing since we caught up, the read used today's state and no block it
                # copied can have been reused (that needs a record first).  Else, as below.
                try:
                    got = self.read_locked(ino, dest, n, offset)
                except OSError:
                    if journal.quiet():
                        raise
                else:
                    if journal.quiet():
                        return got
            while True:
                journal.check_open()
                got = self.read_locked(ino, dest, n, offset)
                # A follower copied bytes the writer may have freed and reused
                # meanwhile: only a record appended during the copy can say so.
                if not journal.follow or not journal.log_moved():
                    return got

    def read_locked(self, ino: int, dest: memoryview | None, n: int, offset: int) -> bytes | int:
        """The read itself, under the lock."""
        core = self.journal.core
        node = core.inodes.get(ino) or self.journal.node(ino)
        size = node.size
        if offset >= size or n <= 0:
            return b"" if dest is None else 0
        if n > size - offset:
            n = size - offset
        bs = self.bs
        fblk = offset // bs
        emap = node.extents
        run = emap.lookup(fblk)  # type: ignore[union-attr]
        if run is not None and not run[3] & UNWRITTEN and (offset + n - 1) // bs < run[0] + run[1]:
            # Fast path: one written run covers the whole read.
            if core.bad and core.bad.overlaps(run[2] + fblk - run[0], (offset + n - 1) // bs - fblk + 1):
                poison.check_read(core, node, offset, n, self.data_offset)     # raises: names the range
            src = self.data_offset + (run[2] + fblk - run[0]) * bs + offset % bs
            if dest is None:
                return self.pool.read(src, n)
            dest[:n] = self.pool.view(src, n)
            return n
        if core.bad:        # (the fast path above pays one truth test when nothing is bad)
            poison.check_read(core, node, offset, n, self.data_offset)
        out = memoryview(bytearray(n)) if dest is None else dest[:n]
        last = (offset + n - 1) // bs
        for f, k, p, fl in emap.pieces(fblk, last - fblk + 1):  # type: ignore[union-attr]
            lo = max(f * bs, offset)
            hi = min((f + k) * bs, offset + n)
            if p < 0 or fl & UNWRITTEN:
                out[lo - offset:hi - offset] = bytes(hi - lo)
            else:
                out[lo - offset:hi - offset] = self.pool.view(self.data_offset + p * bs + lo - f * bs, hi - lo)
        return bytes(out) if dest is None else n

    def stat(self, ino: int) -> Stat:
        with self.lock:
            self.journal.check_open()
            return self.journal.stat_of(self.journal.node(ino))

    def size(self, ino: int) -> int:
        with self.lock:
            self.journal.check_open()
            return self.journal.node(ino).size

    def extents(self, ino: int) -> list[Extent]:
        with self.lock:
            self.journal.check_open()
            node = self.journal.node(ino)
            bs = self.bs
            out = []
            rmap = self.journal.core.rmap
            for f, k, p, fl in node.extents:  # type: ignore[union-attr]
                base = {"unwritten"} if fl & UNWRITTEN else set()
                pos = p
                for sp, sk in rmap.shared_parts(p, k) + [(p + k, 0)]:
                    if sp > pos:
                        out.append(Extent((f + pos - p) * bs, (sp - pos) * bs, self.data_offset + pos * bs,
                                          frozenset(base)))
                    if sk:
                        out.append(Extent((f + sp - p) * bs, sk * bs, self.data_offset + sp * bs,
                                          frozenset(base | {"shared"})))
                    pos = sp + sk
            if self.journal.core.bad:
                out = poison.flag_extents(self.journal.core, out, self.data_offset)
            return out

    def seek_data(self, ino: int, offset: int, hole: bool) -> int:
        """SEEK_DATA / SEEK_HOLE: unwritten blocks count as holes, like tmpfs."""
        with self.lock:
            self.journal.check_open()
            node = self.journal.node(ino)
            size = node.size
            if offset < 0 or offset >= size:
                raise fs_error(errno.ENXIO, message="offset is past the end of the file")
            bs = self.bs
            f0 = offset // bs
            nblk = -(-size // bs) - f0
            for f, k, p, fl in node.extents.pieces(f0, nblk):  # type: ignore[union-attr]
                is_data = p >= 0 and not fl & UNWRITTEN
                if is_data != hole:
                    return min(size, max(offset, f * bs))
            if hole:
                return size
            raise fs_error(errno.ENXIO, message="no data past the offset")

    # ---------------------------------------------------------------- writing

    def pwrite(self, ino: int, data: memoryview, offset: int | None) -> int:
        """Write ``data`` at ``offset`` (None: at EOF, for O_APPEND)."""
        with self.lock:
            while True:
                try:
                    return self._pwrite_locked(ino, data, offset)
                except LookAgain:
                    continue        # it waited for a reference (the lock was let go): start over

    def _pwrite_locked(self, ino: int, data: memoryview, offset: int | None) -> int:
        """``pwrite`` under the lock.  ``LookAgain`` when a copy on write waited for a
        reference to go: the lock was let go meanwhile, so the size (EOF for an append), the
        file's blocks and what they share may have changed; nothing was written."""
        n = data.nbytes
        journal = self.journal
        if journal.closed or journal.readonly:
            journal.check_writable()
        node = journal.node(ino)
        if offset is None:
            offset = node.size
        if n == 0:
            return 0
        end = offset + n
        if end > MAX_FILE_SIZE:
            raise fs_error(errno.EFBIG, message="file too large")
        bs = self.bs
        f0 = offset // bs
        f1 = (end - 1) // bs + 1
        grows = end > node.size
        tail = node.size // bs if grows and node.size % bs else -1
        if tail >= 0 and not f0 <= tail < f1:
            self.unshare(node, 0, 0, grows_to=end)    # the old last block, before its tail
        if not grows and journal.core.rmap.shared_blocks:
            done = cow_in_run(self, node, data, offset, end)
            if done:
                return n
            if done is None:
                raise LookAgain
        # Shared blocks the write covers are copied, and the write goes into the copies,
        # which the write's own record swaps in: all-or-nothing.
        cow = self.unshare(node, f0, f1, commit=False, zero_past_eof=grows)
        emap = node.extents
        run = emap.lookup(f0)  # type: ignore[union-attr]
        if cow:
            pieces = _substitute(emap.pieces(f0, f1 - f0), cow)  # type: ignore[union-attr]
        elif run is not None and not run[3] & UNWRITTEN and run[0] + run[1] >= f1:
            pieces = [(f0, f1 - f0, run[2] + f0 - run[0], 0)]     # all in place: the common rewrite
        elif run is None and emap.is_hole(f0, f1 - f0):  # type: ignore[union-attr]
            if self._append_into_hole(node, data, offset, end, f0, f1 - f0):
                return n
            pieces = [(f0, f1 - f0, -1, 0)]
        else:
            pieces = emap.pieces(f0, f1 - f0)  # type: ignore[union-attr]
        if journal.core.bad:
            # poisoned blocks the write covers whole go to fresh blocks (a PoisonError if in part)
            pieces = poison.writable_pieces(journal.core, node, pieces, offset, end, self.data_offset)
        fills = self.fill_plan(node, pieces, cow)
        mapping = fills + cow           # the copies get the data like any written block, below
        # Nothing has changed so far; from here on the write cannot fail.
        stores: list[tuple[int, int]] = []
        if grows and not any(f <= tail < f + k for f, k, _p, _fl in cow):
            self.zero_tail_for_growth(node, end, stores)
        for f, k, p, _fl in fills:
            self.store_new_blocks(f, k, p, data, offset, end, stores)
        for f, k, p, fl in pieces:
            if p < 0 or fl & UNWRITTEN:
                continue
            lo = f * bs if f * bs > offset else offset
            hi = (f + k) * bs if (f + k) * bs < end else end
            dst = self.data_offset + p * bs + lo - f * bs
            self.pool.write(dst, data[lo - offset:hi - offset])
            if self.durability == "sync":
                stores.append((dst, hi - lo))
            else:
                self.dirty.setdefault(ino, []).append((dst, hi - lo))
        self.persist(stores)
        now = time.time_ns()
        if mapping or grows:
            journal.deferred.pop(ino, None)
            flat = [x for piece in mapping for x in piece]
            journal.commit(SetExtents(ino, [], flat, end if grows else None, now))
            self.references.show_filled(ino, mapping)
        else:
            journal.defer_mtime(ino, now)
        return n

    def append(self, ino: int, data: memoryview) -> tuple[int, int]:
        """O_APPEND write: ``(bytes written, the size after it)``, atomically."""
        with self.lock:
            n = self.pwrite(ino, data, None)
            return n, self.journal.node(ino).size

    def _append_into_hole(self, node: Inode, data: memoryview, offset: int, end: int, f0: int,
                          nblk: int) -> bool:
        """The common case of a write into a hole that one free run can fill (appends, new files).

        Does the whole write and returns True; False (nothing done) when the
        blocks would be split over several runs.
        """
        journal = self.journal
        core = journal.core
        plan = self.journal.plan_blocks(nblk, core.goal_after(node, f0))
        if len(plan) != 1:
            return False
        if core.checkpoint_bound + 2 * GROW_RUN > journal.layout.checkpoint_size - 64:
            raise fs_error(errno.ENOSPC, message="no space left for metadata")
        self.prefault(plan)
        stores: list[tuple[int, int]] = []
        grows = end > node.size
        if grows and node.size % self.bs:
            self.zero_tail_for_growth(node, end, stores)
        pblk = plan[0][0]
        self.store_new_blocks(f0, nblk, pblk, data, offset, end, stores)
        self.persist(stores)
        journal.deferred.pop(node.ino, None)
        journal.commit(SetExtents(node.ino, [], [f0, nblk, pblk, 0], end if grows else None, time.time_ns()))
        self.references.show_filled(node.ino, [(f0, nblk, pblk, 0)])
        return True

    # ---------------------------------------------------------------- blocks for writes

    def prefault(self, plan: list[tuple[int, int]]) -> None:
        """Map in the huge-page chunks new blocks fall in, once per mount (cheaper than a
        page fault per block on first touch).  Where free blocks may be holes (a pool that
        discards, or a sparse one), only the new blocks themselves: populating a whole
        chunk would take memory for free blocks around them, unreserved ones included."""
        if self.journal.reserve is not None:
            claimed = self.journal.core.space.claimed
            for pblk, k in plan:
                if k * self.bs < _PREFAULT_MIN:
                    continue
                # known-zero blocks are written through the file (write_fresh): faulting them
                # in now would zero-fill them for nothing
                for s, n in claimed.outside(pblk, k) if claimed else [(pblk, k)]:
                    if n * self.bs >= _PREFAULT_MIN:
                        self.pool.prefault(self.data_offset + s * self.bs, n * self.bs)
            return
        shift = self._chunk_shift
        faulted = self._faulted
        for pblk, k in plan:
            for chunk in range(pblk >> shift, ((pblk + k - 1) >> shift) + 1):
                if chunk not in faulted:
                    faulted.add(chunk)
                    self.pool.prefault(self.data_offset + (chunk << shift) * self.bs, (1 << shift) * self.bs)

    @staticmethod
    def assign(holes: list[tuple[int, int]], plan: list[tuple[int, int]], flags: int) -> list[Piece]:
        """Lay planned data runs over file holes in order: ``(fblk, n, pblk, flags)`` pieces."""
        out: list[Piece] = []
        pi = 0
        pstart, pleft = plan[0] if plan else (0, 0)
        for f, k in holes:
            while k:
                if pleft == 0:
                    pi += 1
                    pstart, pleft = plan[pi]
                take = min(k, pleft)
                out.append((f, take, pstart, flags))
                f += take
                k -= take
                pstart += take
                pleft -= take
        return out

    def fill_plan(self, node: Inode, pieces: list[Piece], promised: list[Piece] = ()  # type: ignore[assignment]
                  ) -> list[Piece]:
        """Blocks to write ``pieces`` into: fresh ones for holes, the same ones for unwritten
        runs (now written).  ``promised``: pieces already planned for this write (copies).
        ENOSPC, for data or metadata, before anything changes."""
        core = self.journal.core
        if core.bad:
            pieces = poison.bad_unwritten_as_holes(core, pieces)
        holes = [(f, k) for f, k, p, _fl in pieces if p < 0]
        fresh: list[Piece] = []
        if holes:
            plan = self.journal.plan_blocks(sum(k for _f, k in holes), core.goal_after(node, holes[0][0]),
                                    [(p, k) for _f, k, p, _fl in promised])
            fresh = self.assign(holes, plan, 0)
            self.prefault(plan)
        mapping = fresh + [(f, k, p, 0) for f, k, p, fl in pieces if p >= 0 and fl & UNWRITTEN]
        if mapping and core.checkpoint_bound + GROW_RUN * (len(mapping) + 1) > \
                self.journal.layout.checkpoint_size - 64:
            raise fs_error(errno.ENOSPC, message="no space left for metadata")
        return mapping

    def store_new_blocks(self, f: int, k: int, p: int, data: memoryview | bytes, offset: int, end: int,
                         stores: list[tuple[int, int]]) -> None:
        """Fill blocks a file is about to gain: its data where the write covers them, zeros elsewhere."""
        bs = self.bs
        pool = self.pool
        base = self.data_offset + p * bs
        first, last = f * bs, (f + k) * bs
        lo = first if first > offset else offset
        hi = last if last < end else end
        if lo > first:
            self.zero_fresh(base, lo - first)
        if hi > lo:
            claimed = self.journal.core.space.claimed
            fresh = pool.fresh_write_min and hi - lo >= pool.fresh_write_min and bool(claimed) and \
                claimed.parts(p, k) == [(p, k)]         # (all of it known zero)
            (pool.write_fresh if fresh else pool.write)(base + lo - first, data[lo - offset:hi - offset])
        if hi < last:
            self.zero_fresh(base + max(hi, lo) - first, last - max(hi, lo))
        stores.append((base, k * bs))

    def zero_fresh(self, offset: int, length: int) -> None:
        """Zero pool bytes ``[offset, +length)`` of blocks this operation planned, but for those
        known to read as zeros already (discarded, or never written: ``FreeSpace.claimed``)."""
        zero = self.journal.core.space.claimed
        if not zero:
            self.pool.zero(offset, length)
            return
        bs, base = self.bs, self.data_offset
        first, end = (offset - base) // bs, -(-(offset + length - base) // bs)
        for s, k in zero.outside(first, end - first):
            lo, hi = max(offset, base + s * bs), min(offset + length, base + (s + k) * bs)
            self.pool.zero(lo, hi - lo)

    def zero_tail_for_growth(self, node: Inode, new_end: int, stores: list[tuple[int, int]]) -> None:
        """Zero the stale bytes past EOF in the last block before the size grows over them."""
        size = node.size
        bs = self.bs
        if new_end <= size or size % bs == 0:
            return
        run = node.extents.lookup(size // bs)  # type: ignore[union-attr]
        if run is None or run[3] & UNWRITTEN:
            return
        blk = size // bs
        if poison.is_bad(self.journal.core, run[2] + blk - run[0]):
            return      # a poisoned last block reads as EIO whole: nothing past EOF can show
        start = self.data_offset + (run[2] + blk - run[0]) * bs + size % bs
        length = min(new_end, (blk + 1) * bs) - size
        self.pool.zero(start, length)
        stores.append((start, length))

    def persist(self, ranges: Iterable[tuple[int, int]]) -> None:
        for off, n in ranges:
            self.pool.persist(off, n)

    def written_pblk(self, node: Inode, fblk: int) -> int | None:
        """The data block holding written file block ``fblk`` (None: a hole or unwritten)."""
        run = node.extents.lookup(fblk)  # type: ignore[union-attr]
        if run is None or run[3] & UNWRITTEN:
            return None
        return run[2] + fblk - run[0]

    # ---------------------------------------------------------------- copy on write

    unshare = unshare     # (cow.py; called as ``self.unshare(node, first, end, ...)``)

    def populate(self, node: Inode, offset: int, end: int) -> None:
        """Make ``[offset, end)`` of a file written blocks of its own, zeroed where new, and
        durable (a write mapping's MAP_SYNC|MAP_POPULATE); the size grows to ``end``."""
        bs = self.bs
        f0 = offset // bs
        f1 = -(-end // bs)
        self.unshare(node, f0, f1, grows_to=end)
        mapping = self.fill_plan(node, node.extents.pieces(f0, f1 - f0))  # type: ignore[union-attr]
        grows = end > node.size
        if not mapping and not grows:
            return
        stores: list[tuple[int, int]] = []
        if grows:
            self.zero_tail_for_growth(node, end, stores)
        for _f, k, p, _fl in mapping:
            base = self.data_offset + p * bs
            self.zero_fresh(base, k * bs)
            stores.append((base, k * bs))
        self.persist(stores)
        self.journal.deferred.pop(node.ino, None)       # (an in-place write's older mtime: superseded)
        self.journal.commit(SetExtents(node.ino, [], [x for m in mapping for x in m], end if grows else None,
                                       time.time_ns()))
        self.references.show_filled(node.ino, mapping)

    # ---------------------------------------------------------------- references

    def reference(self, ino: int, path: str, offset: int, length: int | None, *, kind: str, write: bool,
                  lease: bool = False, holder: object = None,
                  make_view: Callable[[int], View] | None = None) -> Reference:
        """Take a mapping or pin on ``[offset, offset+length)`` of file ``ino``.

        A write reference populates its range first (allocated, zeroed, private to
        the file, the size grown to cover it, durable), so stores through it never
        need the file system again.  A mapping may not reach past EOF unless it
        writes; a pin must lie inside the file.  ``make_view(nbytes)`` makes the
        memory the blocks are laid into, under the lock (None: no CPU view yet).
        """
        with self.lock:
            # populating copies shared blocks first, which may wait (the lock let go): then
            # the file is looked at again — it may have changed, or gone with its last handle
            return start_over(self._reference_locked, ino, path, offset, length, kind, write, lease,
                              holder, make_view)

    def _reference_locked(self, ino: int, path: str, offset: int, length: int | None, kind: str,
                          write: bool, lease: bool, holder: object,
                          make_view: Callable[[int], View] | None) -> Reference:
        journal = self.journal
        table = self.references
        if write or journal.closed or journal.follow:
            if write:
                journal.check_writable(path)
            else:
                journal.check_open()
        node = journal.core.inodes.get(ino) or journal.node(ino)
        size = node.size
        if kind == "pin":
            if offset + length > size:  # type: ignore[operator]
                raise ValueError(f"pin [{offset}, {offset + length}) reaches past the end of the file "  # type: ignore[operator]
                                 f"({size} bytes)")
        else:
            if length is None:
                if offset >= size:
                    raise ValueError("cannot mmap an empty file" if size == 0 else
                                     "mmap offset is at or past the end of the file (give a length)")
                length = size - offset
            if length == 0:
                raise ValueError("cannot mmap an empty range")
            if offset + length > MAX_FILE_SIZE:
                raise fs_error(errno.EINVAL, path, "mapping range overflows the largest file size")
            if not write and offset + length > size:
                raise ValueError("mmap length is greater than file size")
        assert length is not None
        ref = Reference(ino, path, offset, length, self.bs, write, lease,
                        table.process_holder if holder is None else holder, kind)
        f0, f1 = ref.first_block, ref.end_block
        table.admit(ino, f0, f1, path)
        core = journal.core
        poisoned = poison.poisoned_runs(core, node, f0, f1 - f0) if core.bad else None
        if poisoned and (write or kind == "pin"):
            raise poison.poison_error(core, node, poisoned, self.data_offset,
                                      "a pin" if kind == "pin" else "a write mapping", path)
        if write:
            self.populate(node, offset, offset + length)
        if make_view is not None:
            ref.view = make_view((f1 - f0) * self.bs)
            ref.forks = getattr(ref.view, "forks", ())
        try:
            table.lay_out(ref, node.extents.pieces(f0, f1 - f0))  # type: ignore[union-attr]
            if poisoned:
                # a read mapping shows what is left; poisoned pages are fenced, and listed
                poison.fence_reference(ref, [(f, n) for f, n, _p in poisoned], tell=False)
        except BaseException:
            if ref.view is not None:
                ref.view.release()  # type: ignore[attr-defined]
            raise
        table.register(ref)
        return ref

    # ---------------------------------------------------------------- durability

    def flush(self, ino: int | None) -> None:
        """Persist lazily written data and log deferred timestamps (one inode's, or all)."""
        inos = list(self.dirty) if ino is None else [ino]
        for i in inos:
            for off, n in self.dirty.pop(i, ()):
                self.pool.persist(off, n)
        self.journal.flush_deferred(ino)

    def fsync(self, ino: int) -> None:
        with self.lock:
            self.journal.check_open()
            if not self.journal.readonly:
                self.flush(ino)

    def forget(self, ino: int) -> None:
        """The inode is being freed: drop what is pending for it."""
        self.journal.deferred.pop(ino, None)
        self.dirty.pop(ino, None)


def _substitute(pieces: list[Piece], copies: list[Piece]) -> list[Piece]:
    """``pieces`` of a file with the blocks in ``copies`` (fblk, n, new pblk, flags) swapped in."""
    out: list[Piece] = []
    for f, k, p, fl in pieces:
        pos = f
        for cf, ck, cp, _cfl in sorted(copies):
            lo, hi = max(pos, cf), min(f + k, cf + ck)
            if lo >= hi:
                continue
            if lo > pos:
                out.append((pos, lo - pos, p + pos - f if p >= 0 else -1, fl))
            out.append((lo, hi - lo, cp + lo - cf, fl))
            pos = hi
        if pos < f + k:
            out.append((pos, f + k - pos, p + pos - f if p >= 0 else -1, fl))
    return out
