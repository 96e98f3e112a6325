"""The common copy-on-write, done in one pass: the first write into a clone.

A write inside a file into one written run whose blocks are all shared (the clone and
its source still share them) gets fresh blocks holding the write and, of the old
blocks, only the bytes around it; the fresh blocks are persisted whole — whatever the
durability, since the record shows them next — and one record swaps them in, so the
write is all-or-nothing and the other owners never see it.  Everything else (a write
that grows the file, spans runs, holes, unwritten or private blocks, poison) is left to
``DataPath.unshare`` and the general write path.
"""

from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING

from daxfs.core import UNWRITTEN, Inode
from daxfs.core.records import SetExtents
from daxfs.errors import fs_error
from daxfs.volume.prepared import GROW_RUN

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


__all__ = ["cow_in_run"]
