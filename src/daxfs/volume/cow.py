"""Copy on write: a file's shared blocks get private copies before anything writes them.

``cow_in_run`` is the common case, done in one pass: a write inside a file into one
written run whose blocks are all shared (the first write into a clone) gets fresh blocks
holding the write and, of the old blocks, only the bytes around it; the fresh blocks are
persisted whole — whatever the durability, since the record shows them next — and one
record swaps them in, so the write is all-or-nothing and the other owners never see it.
Everything else (a write that grows the file, spans runs, holes, unwritten or private
blocks, poison) goes through ``unshare`` (``DataPath.unshare``) and the general write path:
copies of the shared written blocks of a range (and of the last block before the size
grows over it), swapped in by a record of their own or by the caller's.  A block is
shared when another file owns it too or a reference to another file still holds it.
"""

from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING

from daxfs.core import UNWRITTEN, Inode
from daxfs.core.badblocks import merge_runs
from daxfs.core.records import SetExtents
from daxfs.errors import fs_error
from daxfs.volume.prepared import GROW_RUN, Piece
from daxfs.volume.waits import LookAgain

if TYPE_CHECKING:
    from daxfs.volume.datapath import DataPath


def cow_in_run(datapath: "DataPath", node: Inode, data: memoryview, offset: int, end: int) -> bool | None:
    """The common copy-on-write: a write inside the file into one written run whose blocks
    are all shared (the first writes into a clone).  Fresh blocks get the write, and of
    the old blocks only the bytes around it; they are persisted whole, then one record
    swaps them in.  False, with nothing changed, for anything else (``unshare`` does it);
    None, with nothing changed, when it waited for a reference to go (the lock was let go
    meanwhile, so the file's size and blocks may have changed: the caller starts over)."""
    journal = datapath.journal
    core = journal.core
    bs = datapath.bs
    f0, f1 = offset // bs, (end - 1) // bs + 1
    run = node.extents.lookup(f0)  # type: ignore[union-attr]
    if run is None or run[3] & UNWRITTEN or run[0] + run[1] < f1 or core.bad:
        return False
    nblk = f1 - f0
    old = run[2] + f0 - run[0]
    if core.rmap.shared_parts(old, nblk) != [(old, nblk)]:
        return False
    if datapath.references.settle(node.ino, f0, f1, None, "copy on write"):
        return None         # waited (the lock was let go): the caller looks at the file again
    if core.checkpoint_bound + 3 * GROW_RUN > journal.layout.checkpoint_size - 64:
        raise fs_error(errno.ENOSPC, message="no space left for metadata")
    plan = journal.plan_blocks(nblk)
    pool = datapath.pool
    base = datapath.data_offset
    pieces = datapath.assign([(f0, nblk)], plan, 0)
    for f, k, p, _fl in pieces:
        first, last = f * bs, (f + k) * bs
        lo, hi = max(first, offset), min(last, end)
        dst, src = base + p * bs, base + (old + f - f0) * bs
        if lo > first:
            pool.write(dst, pool.view(src, lo - first))
        pool.write(dst + lo - first, data[lo - offset:hi - offset])
        if hi < last:
            pool.write(dst + hi - first, pool.view(src + hi - first, last - hi))
        pool.persist(dst, k * bs)   # whole, whatever the durability: the record shows them next
    journal.deferred.pop(node.ino, None)
    journal.commit(SetExtents(node.ino, [], [x for piece in pieces for x in piece], None, time.time_ns()))
    datapath.references.show_filled(node.ino, pieces)
    return True


def unshare(datapath: "DataPath", node: Inode, first: int, end: int, grows_to: int | None = None, *,
            commit: bool = True, zero_past_eof: bool = False) -> list[Piece]:
    """Give the file private copies of the shared written blocks in ``[first, end)`` (and of
    its last block if the size is about to grow over it), before anything writes them;
    blocks a reference to another file still holds count as shared.

    With ``commit`` the swap is a record of its own (it changes no byte the file shows);
    without, the copies are made and persisted and their map entries returned for the
    caller's own record, so a write into them lands all-or-nothing with the swap.

    When the pin policy waits for a reference to the blocks to go, the lock is let go
    meanwhile and the file may change — or go, its last handle closed by another thread:
    nothing is done and ``LookAgain`` tells the caller to start over (every caller does,
    with ``start_over`` or a loop of its own).
    """
    journal = datapath.journal
    bs = datapath.bs
    victims = shared_victims(datapath, node, first, end, grows_to)
    if not victims:
        return []
    if datapath.references.settle(node.ino, min(v[0] for v in victims),
                                  max(v[0] + v[1] for v in victims), None, "copy on write"):
        raise LookAgain
    plan = journal.plan_blocks(sum(k for _f, k, _p in victims))
    pool = datapath.pool
    stores: list[tuple[int, int]] = []
    mapping: list[Piece] = []
    targets = datapath.assign([(f, k) for f, k, _p in victims], plan, 0)
    sources = {f: p for f, _k, p in victims}
    for f, k, newp, _fl in targets:
        # which victim does this piece come from (pieces may split a victim)
        vf = max(v for v in sources if v <= f)
        oldp = sources[vf] + (f - vf)
        src = datapath.data_offset + oldp * bs
        dst = datapath.data_offset + newp * bs
        pool.write(dst, pool.view(src, k * bs))
        stores.append((dst, k * bs))
        eof = node.size
        if zero_past_eof and f * bs < eof < (f + k) * bs:
            # the size is about to grow over the stale bytes past EOF: zero them in the copy
            # (never in the shared original, whose other owners may show them)
            pool.zero(dst + eof - f * bs, (f + k) * bs - eof)
        run = node.extents.lookup(f)  # type: ignore[union-attr]
        mapping.append((f, k, newp, run[3] & UNWRITTEN if run else 0))
    datapath.prefault(plan)
    datapath.persist(stores)
    if commit:
        journal.commit(SetExtents(node.ino, [], [x for m in mapping for x in m], None, None),
                       GROW_RUN * (len(targets) + 1))
    return mapping

def shared_victims(datapath: "DataPath", node: Inode, first: int, end: int, grows_to: int | None
                    ) -> list[tuple[int, int, int]]:
    """``unshare``'s blocks to copy, ``(fblk, n, old pblk)``: the shared written ones in
    ``[first, end)`` and in the last block if the size grows over it."""
    journal = datapath.journal
    rmap = journal.core.rmap
    holds = journal.core.busy.holds     # (blocks a reference holds: maybe one to another file)
    if not rmap.shared_blocks and not holds:
        return []
    bs = datapath.bs
    ranges = [(first, end)] if end > first else []
    if grows_to is not None and node.size % bs and grows_to > node.size:
        ranges.append((node.size // bs, node.size // bs + 1))
    victims: list[tuple[int, int, int]] = []       # (fblk, n, old pblk)
    for lo, hi in ranges:
        for f, k, p, _fl in node.extents.slice(lo, hi - lo):  # type: ignore[union-attr]
            parts = rmap.shared_parts(p, k)
            if holds and holds.overlapping(p, k):
                parts = merge_runs(parts, datapath.references.held_by_others(node.ino, p, k))
            for sp, sk in parts:
                # a bad block is never copied: it stays shared, and poisoned, until replaced whole
                for bp, bk in journal.core.bad.outside(sp, sk) if journal.core.bad else [(sp, sk)]:
                    if not any(v[0] == f + bp - p for v in victims):
                        victims.append((f + bp - p, bk, bp))
    return victims


__all__ = ["cow_in_run", "unshare", "shared_victims"]
