"""Range operations on a file's block map: truncate, fallocate, punch_hole, zero_range.

Each is one record, so all-or-nothing.  Those that take blocks away
(truncate down, punch, zero) first settle the pin policy over the range:
blocks still referenced afterwards are parked on the busy list by ``apply``.
Partial blocks at a punched or zeroed range's edges are copied (COW) with
the zeroed bytes, so the record swaps them in atomically; under a live
mapping, whose view must not move, or with no free block for the copy, they
are zeroed in place.  Fallocate'd blocks are marked unwritten: they read as
zeros without being written.
"""

from __future__ import annotations

import errno
import time

from daxfs.core import UNWRITTEN, Inode
from daxfs.core.records import SetExtents
from daxfs.volume import poison
from daxfs.volume.datapath import GROW_RUN, DataPath, Piece
from daxfs.volume.waits import start_over


class RangeOps:
    """truncate, fallocate, punch_hole and zero_range of one volume (by inode)."""

    def __init__(self, data: DataPath) -> None:
        self.data = data
        self.journal = data.journal
        self.references = data.references
        self.lock = data.lock
        self.bs = data.bs

    def truncate_node(self, node: Inode, size: int) -> None:
        """Set the size (the policy already settled): grow with zeros, or drop the blocks past it.
        ``LookAgain`` (nothing changed) when growing had to wait to copy a shared last block:
        the file may have changed meanwhile."""
        data = self.data
        journal = self.journal
        now = time.time_ns()
        if size > node.size:
            data.unshare(node, 0, 0, grows_to=size)
            stores: list[tuple[int, int]] = []
            data.zero_tail_for_growth(node, size, stores)
            data.persist(stores)
            journal.deferred.pop(node.ino, None)    # (an in-place write's older mtime: superseded)
            journal.commit(SetExtents(node.ino, [], [], size, now))
            return
        keep = -(-size // self.bs)
        unmap = [keep, -1] if node.extents.end > keep else []  # type: ignore[union-attr]
        if unmap or size != node.size:
            journal.deferred.pop(node.ino, None)
            journal.commit(SetExtents(node.ino, unmap, [], size, now))

    def truncate(self, ino: int, size: int, policy: str | None = None, timeout: float | None = None) -> None:
        """ftruncate: ``size`` already checked (arguments.offset)."""
        with self.lock:
            start_over(self._truncate, ino, size, policy, timeout)

    def _truncate(self, ino: int, size: int, policy: str | None, timeout: float | None) -> None:
        journal = self.journal
        journal.check_writable()
        if size < journal.node(ino).size:
            self.references.settle(ino, -(-size // self.bs), None, policy, "truncate", timeout)
        self.truncate_node(journal.node(ino), size)     # (LookAgain: growing waited; start over)

    def fallocate(self, ino: int, offset: int, length: int, keep_size: bool) -> None:
        with self.lock:
            start_over(self._fallocate, ino, offset, length, keep_size)

    def _fallocate(self, ino: int, offset: int, length: int, keep_size: bool) -> None:
        data = self.data
        journal = self.journal
        journal.check_writable()
        node = journal.node(ino)
        bs = self.bs
        core = journal.core
        end = offset + length
        f0 = offset // bs
        f1 = -(-end // bs)
        data.unshare(node, f0, f1, grows_to=None if keep_size else end)
        holes = [(f, k) for f, k, p, _fl in node.extents.pieces(f0, f1 - f0) if p < 0]  # type: ignore[union-attr]
        mapping: list[Piece] = []
        if holes:
            plan = journal.plan_blocks(sum(k for _f, k in holes), core.goal_after(node, holes[0][0]))
            mapping = data.assign(holes, plan, UNWRITTEN)
        new_size = end if not keep_size and end > node.size else None
        if not mapping and new_size is None:
            return
        stores: list[tuple[int, int]] = []
        if new_size is not None:
            data.zero_tail_for_growth(node, new_size, stores)
            data.persist(stores)
        journal.deferred.pop(ino, None)
        journal.commit(SetExtents(ino, [], [x for m in mapping for x in m], new_size, time.time_ns()),
                       GROW_RUN * (len(mapping) + 1))

    def punch_hole(self, ino: int, offset: int, length: int, policy: str | None = None,
                   timeout: float | None = None) -> None:
        with self.lock:
            start_over(self._punch_hole, ino, offset, length, policy, timeout)

    def _punch_hole(self, ino: int, offset: int, length: int, policy: str | None, timeout: float | None) -> None:
        data = self.data
        journal = self.journal
        journal.check_writable()
        bs = self.bs
        end = offset + length
        self.references.settle(ino, offset // bs, -(-end // bs), policy, "punch_hole", timeout)
        node = journal.node(ino)
        if offset % bs:
            data.unshare(node, offset // bs, offset // bs + 1)
        if end % bs:
            data.unshare(node, end // bs, end // bs + 1)
        w0, w1 = -(-offset // bs), end // bs      # whole blocks
        edges = [e for e in self._partial_edges(offset, end) if not (w0 <= e[0] < w1)]
        unmap = [w0, w1 - w0] if w1 > w0 and node.extents.slice(w0, w1 - w0) else []  # type: ignore[union-attr]
        # Under a mapping, blocks must not move: partial blocks are zeroed in place.
        sealed = self.references.sealed(ino, offset // bs, -(-end // bs) - offset // bs)
        _plan, singles = self._edge_plan(node, [] if sealed else edges, 0)
        stores: list[tuple[int, int]] = []
        mapping = [m for blk, lo, hi in edges
                   if (m := self._cow_zeroed(node, blk, lo, hi, singles, stores)) is not None]
        data.persist(stores)
        if unmap or mapping:
            journal.deferred.pop(ino, None)
            journal.commit(SetExtents(ino, unmap, [x for m in mapping for x in m], None, time.time_ns()),
                           GROW_RUN * (len(mapping) + 2))
        elif stores:
            journal.defer_mtime(ino, time.time_ns())

    def zero_range(self, ino: int, offset: int, length: int, keep_size: bool) -> None:
        with self.lock:
            start_over(self._zero_range, ino, offset, length, keep_size)

    def _zero_range(self, ino: int, offset: int, length: int, keep_size: bool) -> None:
        data = self.data
        journal = self.journal
        journal.check_writable()
        bs = self.bs
        end = offset + length
        # whatever the policy leaves referenced is zeroed in place (below)
        self.references.settle(ino, offset // bs, -(-end // bs), None, "zero_range")
        node = journal.node(ino)
        data.unshare(node, offset // bs, -(-end // bs), grows_to=None if keep_size else end)
        emap = node.extents
        w0, w1 = -(-offset // bs), end // bs
        whole = emap.pieces(w0, w1 - w0) if w1 > w0 else []  # type: ignore[union-attr]
        edges = [e for e in self._partial_edges(offset, end) if not (w0 <= e[0] < w1)]
        edge_holes = [(blk, 1) for blk, _lo, _hi in edges if emap.lookup(blk) is None]  # type: ignore[union-attr]
        if journal.core.bad:
            # whole blocks on bad memory get fresh (unwritten) blocks: that clears their poison
            whole = poison.bad_as_holes(journal.core, whole)
        holes = sorted([(f, k) for f, k, p, _fl in whole if p < 0] + edge_holes)
        sealed = self.references.sealed(ino, offset // bs, -(-end // bs) - offset // bs)
        plan, singles = self._edge_plan(node, [] if sealed else edges, sum(k for _f, k in holes))
        mapping = data.assign(holes, plan, UNWRITTEN) if holes else []
        written = [(f, k, p) for f, k, p, fl in whole if p >= 0 and not fl & UNWRITTEN]
        stores: list[tuple[int, int]] = []
        if sealed:
            # a mapping shows these very blocks: zero them where they are
            for _f, k, p in written:
                data.pool.zero(data.data_offset + p * bs, k * bs)
                stores.append((data.data_offset + p * bs, k * bs))
        else:
            # same blocks, marked unwritten: they read as zeros from now on
            mapping += [(f, k, p, UNWRITTEN) for f, k, p in written]
        new_size = end if not keep_size and end > node.size else None
        if new_size is not None:
            # before the edge copies below, so they copy zeros, not the stale tail
            data.zero_tail_for_growth(node, new_size, stores)
        mapping += [m for blk, lo, hi in edges
                    if (m := self._cow_zeroed(node, blk, lo, hi, singles, stores)) is not None]
        data.persist(stores)
        if mapping or new_size is not None:
            journal.deferred.pop(ino, None)
            journal.commit(SetExtents(ino, [], [x for m in sorted(mapping) for x in m], new_size,
                                      time.time_ns()), GROW_RUN * (len(mapping) + 1))
            self.references.show_filled(ino, mapping)
        elif stores:
            journal.defer_mtime(ino, time.time_ns())


    # ---------------------------------------------------------------- partial blocks

    def _cow_zeroed(self, node: Inode, blk: int, lo: int, hi: int, plan: list[tuple[int, int]] | None,
                    stores: list[tuple[int, int]]) -> Piece | None:
        """Zero bytes ``[lo, hi)`` of written file block ``blk``: into a copy when ``plan``
        gives a free block (returned as a mapping piece), else in place."""
        bs = self.bs
        data = self.data
        old_pblk = data.written_pblk(node, blk)
        if old_pblk is None or poison.is_bad(self.journal.core, old_pblk):
            return None     # a poisoned block stays so: zeroing part of it cannot bring the rest back
        old = data.data_offset + old_pblk * bs
        pool = data.pool
        if plan:
            pblk = plan.pop(0)[0]
            new = data.data_offset + pblk * bs
            block = bytearray(pool.view(old, bs))
            block[lo:hi] = bytes(hi - lo)
            pool.write(new, block)
            stores.append((new, bs))
            return (blk, 1, pblk, 0)
        pool.zero(old + lo, hi - lo)
        stores.append((old + lo, hi - lo))
        return None

    def _partial_edges(self, offset: int, end: int) -> list[tuple[int, int, int]]:
        """Blocks that ``[offset, end)`` covers only partly: ``(blk, lo, hi)`` byte ranges within."""
        bs = self.bs
        first, last = offset // bs, (end - 1) // bs
        edges = []
        if offset % bs or (first == last and end % bs):
            edges.append((first, offset % bs, end - first * bs if first == last else bs))
        if last != first and end % bs:
            edges.append((last, 0, end % bs))
        return edges

    def _edge_plan(self, node: Inode, edges: list[tuple[int, int, int]], extra: int
                   ) -> tuple[list[tuple[int, int]], list[tuple[int, int]] | None]:
        """Plan ``extra`` blocks plus one block per written edge (its COW copy).

        When there is no room for the copies, plan only ``extra`` (edges zero in place).
        """
        cow = [e for e in edges if self.data.written_pblk(node, e[0]) is not None]
        try:
            plan = self.journal.plan_blocks(extra + len(cow))
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not cow:
                raise
            return self.journal.plan_blocks(extra), None
        if not cow:
            return plan, None
        # split off single blocks for the copies from the end of the plan
        singles: list[tuple[int, int]] = []
        need = len(cow)
        while need:
            start, k = plan[-1]
            take = min(k, need)
            singles.extend((start + k - 1 - i, 1) for i in range(take))
            plan[-1] = (start, k - take)
            if plan[-1][1] == 0:
                plan.pop()
            need -= take
        return plan, singles


__all__ = ["RangeOps"]
