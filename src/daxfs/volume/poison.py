"""Poisoned file ranges: what the data path does about bad memory under a file.

A file range is *poisoned* when written file blocks lie on data blocks in the
core's quarantine (``Core.bad``): their bytes are lost.  Nothing about a file
is stored for that; it follows from the block map and the quarantine, so every
reflink sharer of a bad block — orphans included — is poisoned by the same
one record, and a file that stops owning the block (a whole-block write, a
zero_range, a punch, a truncate) is clean again.  Poison is per block.

The rules (each a check the hot paths make only when ``core.bad`` is not
empty — one truth test of an empty dict otherwise):

- reads that touch a poisoned block raise PoisonError (EIO) naming the file
  range; reads elsewhere in the file are unaffected;
- a write must cover a poisoned block whole (up to the end of file) and then
  goes into a fresh block; a write that covers it in part is a PoisonError
  (the rest of the block is lost, and must not come back as zeros);
- nothing ever copies, compares or shares a bad block: copy-on-write,
  dedupe, clone and copy_file_range skip or refuse it;
- unwritten blocks on bad memory hold no data: they read as zeros and a
  write into them takes fresh blocks;
- a pin, or a write mapping, over a poisoned range is a PoisonError; a read
  mapping shows it fenced (inaccessible pages, listed in ``poisoned``).
"""

from __future__ import annotations

import faulthandler
import sys
from typing import TYPE_CHECKING, Any

from daxfs._types import Extent
from daxfs.core import UNWRITTEN, Inode
from daxfs.core.inode_paths import paths_of
from daxfs.errors import PoisonError

if TYPE_CHECKING:
    from daxfs.core import Core
    from daxfs.volume.references import Reference

Piece = tuple[int, int, int, int]       # (fblk, n, pblk or -1 for a hole, flags)


def poisoned_runs(core: "Core", node: Inode, f0: int, nblk: int) -> list[tuple[int, int, int]]:
    """``(fblk, n, pblk)``: written file blocks in ``[f0, f0+nblk)`` that lie on bad memory."""
    bad = core.bad
    out = []
    for f, k, p, fl in node.extents.slice(f0, nblk):  # type: ignore[union-attr]
        if fl & UNWRITTEN:
            continue
        for s, n in bad.parts(p, k):
            out.append((f + s - p, n, s))
    return out


def poison_error(core: "Core", node: Inode, runs: list[tuple[int, int, int]], data_offset: int,
                 what: str = "read", path: str | None = None) -> PoisonError:
    """The PoisonError for ``what`` touching poisoned ``runs`` of ``node``, naming the file range."""
    bs = core.block_size
    f, n, p = runs[0]
    if path is None:
        path = paths_of(core, {node.ino})[node.ino]
    ranges = ", ".join(f"[{rf * bs}, +{rn * bs})" for rf, rn, _rp in runs[:4]) + (" ..." if len(runs) > 4 else "")
    name = path if path is not None else f"(unlinked inode {node.ino})"
    message = (f"{what}: bytes {ranges} of {name} are poisoned (the memory behind them failed, pool offset "
               f"{data_offset + p * bs:#x}); write them whole, zero_range, punch or truncate them to replace them")
    return PoisonError(message, pool_offset=data_offset + p * bs, length=n * bs, filename=path, file_offset=f * bs)


def check_read(core: "Core", node: Inode, offset: int, n: int, data_offset: int) -> None:
    """PoisonError if bytes ``[offset, offset+n)`` of ``node`` touch a poisoned block."""
    bs = core.block_size
    f0 = offset // bs
    runs = poisoned_runs(core, node, f0, (offset + n - 1) // bs + 1 - f0)
    if runs:
        raise poison_error(core, node, runs, data_offset)


def writable_pieces(core: "Core", node: Inode, pieces: list[Piece], offset: int, end: int,
                    data_offset: int) -> list[Piece]:
    """``pieces`` of a write of ``[offset, end)`` with bad blocks turned into holes, so the
    write fills fresh blocks there; PoisonError if it covers a poisoned block only in part.

    A written bad block is covered when the write spans it up to the end of the block
    or of the file, whichever comes first: bytes past EOF are no data.  An unwritten
    bad block holds no data at all: any write into it takes a fresh block.
    """
    bad = core.bad
    bs = core.block_size
    limit = max(node.size, end)
    out: list[Piece] = []
    partial: list[tuple[int, int, int]] = []
    for f, k, p, fl in pieces:
        if p < 0 or not bad.overlaps(p, k):
            out.append((f, k, p, fl))
            continue
        pos = f
        for s, n in bad.parts(p, k):
            bf = f + s - p
            if bf > pos:
                out.append((pos, bf - pos, p + pos - f, fl))
            if not fl & UNWRITTEN:
                first, last = bf, bf + n - 1
                if offset > first * bs:
                    partial.append((first, 1, s))
                if end < min((last + 1) * bs, limit) and (last > first or offset <= first * bs):
                    partial.append((last, 1, s + n - 1))
            out.append((bf, n, -1, 0))
            pos = bf + n
        if pos < f + k:
            out.append((pos, f + k - pos, p + pos - f, fl))
    if partial:
        raise poison_error(core, node, partial, data_offset, "a write covering them in part")
    return out


def bad_unwritten_as_holes(core: "Core", pieces: list[Piece]) -> list[Piece]:
    """``pieces`` with unwritten blocks on bad memory turned into holes: they hold no data,
    and a write (or a write mapping's populate) takes fresh blocks there instead."""
    return bad_as_holes(core, pieces, unwritten_only=True)


def bad_as_holes(core: "Core", pieces: list[Piece], *, unwritten_only: bool = False) -> list[Piece]:
    """``pieces`` with every block on bad memory (``unwritten_only``: every unwritten one)
    turned into a hole, for the caller to give fresh blocks."""
    bad = core.bad
    out: list[Piece] = []
    for f, k, p, fl in pieces:
        if p < 0 or (unwritten_only and not fl & UNWRITTEN) or not bad.overlaps(p, k):
            out.append((f, k, p, fl))
            continue
        pos = p
        for s, n in bad.parts(p, k) + [(p + k, 0)]:
            if s > pos:
                out.append((f + pos - p, s - pos, pos, fl))
            if n:
                out.append((f + s - p, n, -1, 0))
            pos = s + n
    return out


def flag_extents(core: "Core", extents: list[Extent], data_offset: int) -> list[Extent]:
    """``extents`` split where written data lies on bad memory, those parts flagged "poisoned"."""
    bad = core.bad
    bs = core.block_size
    out = []
    for e in extents:
        p = (e.pool_offset - data_offset) // bs
        k = e.length // bs
        if "unwritten" in e.flags or not bad.overlaps(p, k):
            out.append(e)
            continue
        pos = p
        for bp, bk in bad.parts(p, k) + [(p + k, 0)]:
            for start, n, flags in ((pos, bp - pos, e.flags), (bp, bk, e.flags | {"poisoned"})):
                if n:
                    out.append(Extent(e.file_offset + (start - p) * bs, n * bs, data_offset + start * bs,
                                      frozenset(flags)))
            pos = bp + bk
    return out


# ---- references over bad memory: fenced, told, listed

def fence_reference(ref: "Reference", runs: list[tuple[int, int]], *, tell: bool,
                    view: Any = None) -> list[tuple[int, int]]:
    """Fence file blocks ``runs`` (``(fblk, n)``) of ``ref`` in its memory and list them in
    ``ref.poisoned``; with ``tell``, call its ``on_poison(file_offset, length)``.

    ``view`` is where the blocks are shown when it is not ``ref.view`` (a closed mapping
    whose arrays still live).  A view that cannot fence (another process's memory) is
    left to its holder, who is told.  Returns the file ranges, clipped to the reference.
    """
    bs = ref.block_size
    view = ref.view if view is None else view
    fenced_here: list[tuple[int, int]] = []
    ranges: list[tuple[int, int]] = []
    for f, n in runs:
        lo, hi = max(f * bs, ref.offset), min((f + n) * bs, ref.offset + ref.length)
        if lo >= hi:
            continue
        ranges.append((lo, hi - lo))
        fence = getattr(view, "fence", None)
        # TODO(arbiter): a RemoteView has no fence yet: its client must be sent a poison event
        # and fence the pages itself; until then it is only told (on_poison, ref.poisoned).
        if fence is not None and fence((f - ref.first_block) * bs, n * bs) is not False:
            fenced_here.append((lo, hi - lo))
    if not ranges:
        return []
    ref.poisoned = _merge(list(ref.poisoned) + ranges)
    if fenced_here:
        _explain(ref, fenced_here)
    if tell and ref.on_poison is not None:
        for lo, n in ranges:
            try:
                ref.on_poison(lo, n)
            except Exception:   # a holder's callback failing must not stop the others being told
                pass
    return ranges


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, n in sorted(ranges):
        if out and s <= out[-1][0] + out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][0] + out[-1][1], s + n) - out[-1][0])
        else:
            out.append((s, n))
    return out


def _explain(ref: "Reference", ranges: list[tuple[int, int]]) -> None:
    """Say on stderr what was fenced, and have a fault print a Python traceback: a process
    that touches a fenced page then dies explaining itself, not with a bare SIGSEGV."""
    try:
        if not faulthandler.is_enabled():
            faulthandler.enable()
    except (AttributeError, ValueError, OSError):     # stderr is not a real file (captured)
        pass
    shown = ", ".join(f"[{lo}, +{n})" for lo, n in ranges)
    try:
        print(f"daxfs: memory failure: bytes {shown} of {ref.path} are fenced in a {ref.listed_kind} "
              f"[{ref.offset}, +{ref.length}) held by {ref.holder}: touching them is a segmentation "
              f"fault", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def is_bad(core: "Core", pblk: int, n: int = 1) -> bool:
    """Whether any of data blocks ``[pblk, pblk+n)`` is bad (False at once when none is)."""
    bad = core.bad
    return bool(bad) and bad.overlaps(pblk, n)


__all__ = ["poisoned_runs", "poison_error", "check_read", "writable_pieces", "bad_unwritten_as_holes", "is_bad",
           "flag_extents", "fence_reference"]
