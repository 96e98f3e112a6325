"""PreparedWrites: writes another process makes itself, straight into the pool.

A client of the arbiter copies a large write's bytes into fresh blocks the
volume reserved for it (``prepare_write``), then has them swapped in with one
record (``commit_write``), so the write is all-or-nothing like any allocating
write; or gives them back (``abort_write``).  A mixin of ``DataPath``, whose
blocks, COW and persist helpers it uses.
"""

from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING

from daxfs.core import Inode
from daxfs.core.records import SetExtents
from daxfs.errors import PoisonError, fs_error
from daxfs.volume import poison
from daxfs.volume.waits import start_over

if TYPE_CHECKING:
    from daxfs.volume.datapath import DataPath as _Base
else:
    _Base = object

# Upper bound of how much one more extent run can grow the checkpoint (see Core.checkpoint_bound).
GROW_RUN = 80
Piece = tuple[int, int, int, int]       # (fblk, n, pblk or -1 for a hole, flags)


class PreparedWrites(_Base):
    """prepare_write, abort_write, commit_write (see the module docstring)."""

    def prepare_write(self, ino: int, offset: int, length: int) -> list[Piece]:
        """Fresh blocks for a write of ``[offset, +length)`` that another process makes itself
        (a client of the arbiter copies its data straight into the pool).

        They are reserved — held and busy, so nothing else allocates them — and are
        the file's only once ``commit_write`` swaps them in with one record, so the
        write is all-or-nothing like any allocating write.  ENOSPC before anything.
        """
        journal = self.journal
        with self.lock:
            journal.check_writable()
            journal.node(ino)
            bs = self.bs
            f0, f1 = offset // bs, -(-(offset + length) // bs)
            core = journal.core
            plan = journal.plan_blocks(f1 - f0)
            if core.checkpoint_bound + GROW_RUN * (len(plan) + 2) > journal.layout.checkpoint_size - 64:
                raise fs_error(errno.ENOSPC, message="no space left for metadata")
            self.prefault(plan)
            for p, k in plan:
                core.adopt_hold(p, k)
            return self.assign([(f0, f1 - f0)], plan, 0)

    def abort_write(self, pieces: list[Piece]) -> None:
        """A prepared write will not be committed: its blocks go back to free space."""
        with self.lock:
            if not self.journal.closed:
                for _f, k, p, _fl in pieces:
                    self.journal.core.unhold(p, k)
            pieces.clear()      # let go of once: a second abort (a caller's, after ours) is a no-op

    def commit_write(self, ino: int, offset: int, length: int, pieces: list[Piece]) -> int:
        """Swap in the blocks of a prepared write whose bytes ``[offset, +length)`` are written
        and persisted; the rest of its edge blocks is filled from the file now (so a write
        made meanwhile to the same blocks is kept).  Returns ``length``."""
        # copying the old last block may wait: the size may be another after it
        return start_over(self._commit_write, ino, offset, length, pieces)

    def _commit_write(self, ino: int, offset: int, length: int, pieces: list[Piece]) -> int:
        journal = self.journal
        bs = self.bs
        end = offset + length
        with self.lock:
            journal.check_writable()
            node = journal.node(ino)
            f0, f1 = offset // bs, -(-end // bs)
            core = journal.core
            if core.bad:
                # Before anything: the prepared blocks may have gone bad meanwhile, and the
                # file's poisoned blocks must be covered whole.  (The caller aborts the write.)
                gone = [(f, k, b) for f, k, p, _fl in pieces for b, k in core.bad.parts(p, k)]
                if gone:
                    raise PoisonError(f"the memory of a prepared write failed (pool offset "
                                      f"{self.data_offset + gone[0][2] * bs:#x}): write again",
                                      pool_offset=self.data_offset + gone[0][2] * bs, length=gone[0][1] * bs)
                poison.writable_pieces(core, node, node.extents.pieces(f0, f1 - f0), offset, end,  # type: ignore[union-attr]
                                       self.data_offset)
            if self.references.sealed(ino, f0, f1 - f0):
                # A mapping shows the blocks there: write in place (as pwrite does), from
                # the prepared blocks, which stay held until the bytes are copied out.
                data = bytearray(length)
                pos = 0
                for f, k, p, _fl in pieces:
                    lo, hi = max(f * bs, offset), min((f + k) * bs, end)
                    data[pos:pos + hi - lo] = self.pool.view(self.data_offset + p * bs + lo - f * bs, hi - lo)
                    pos += hi - lo
                self.abort_write(pieces)
                return self.pwrite(ino, memoryview(data), offset)
            stores: list[tuple[int, int]] = []
            grows = end > node.size
            tail = node.size // bs if grows and node.size % bs else -1
            if tail >= 0 and not f0 <= tail < f1:
                self.unshare(node, 0, 0, grows_to=end)    # the old last block, before its tail
                self.zero_tail_for_growth(node, end, stores)
            for f, k, p, _fl in pieces:
                for fb in sorted({f, f + k - 1}):
                    lo, hi = max(fb * bs, offset), min((fb + 1) * bs, end)
                    if lo == fb * bs and hi == (fb + 1) * bs:
                        continue        # the writer filled the whole block
                    self._fill_edge(node, fb, p + fb - f, lo - fb * bs, hi - fb * bs, stores)
            self.persist(stores)
            core = journal.core
            runs = [x for piece in pieces for x in piece]
            for _f, k, p, _fl in pieces:
                core.unhold(p, k)       # busy -> free: the record below takes them
            pieces.clear()              # (so an abort after a failed commit lets go of nothing twice)
            journal.deferred.pop(ino, None)
            journal.commit(SetExtents(ino, [], runs, end if grows else None, time.time_ns()))
            return length

    def _fill_edge(self, node: Inode, fblk: int, pblk: int, lo: int, hi: int,
                   stores: list[tuple[int, int]]) -> None:
        """Fill data block ``pblk`` (about to be file block ``fblk``) outside the written bytes
        ``[lo, hi)``: the file's current bytes there, zeros in a hole or past EOF."""
        bs = self.bs
        base = self.data_offset + pblk * bs
        old = self.written_pblk(node, fblk)
        eof = max(0, min(bs, node.size - fblk * bs))        # the file's bytes in this block
        pool = self.pool
        for a, b in ((0, lo), (hi, bs)):
            if a >= b:
                continue
            keep = min(b, eof) if old is not None else a
            if keep > a:
                pool.write(base + a, pool.view(self.data_offset + old * bs + a, keep - a))  # type: ignore[operator]
            if b > max(a, keep):
                pool.zero(base + max(a, keep), b - max(a, keep))
            stores.append((base + a, b - a))



__all__ = ["PreparedWrites", "GROW_RUN", "Piece"]
