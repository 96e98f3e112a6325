"""ReferenceTable: who holds which file range, and what a change does about it.

A *reference* is a live mapping, pin or lease on a range of a file.  While it
lives it holds its inode (an unlinked file stays as an orphan), seals its
file blocks (nothing moves them; a change to them follows the pin policy) and
holds its data blocks (a block the file gives up meanwhile is parked on the
busy list, never reused).  Open files hold their inode too.

The table answers the volume's small questions — is this range sealed, settle
this change under this policy (``PolicyActions``, policies.py), lay these newly written blocks into the views
that showed zeros — and never assumes the holder lives in this process: a
holder is any object whose ``str()`` names it; a reference's memory is any
``View`` (a ``PoolView`` here, a proxy for another process later); breaking a
lease calls the reference's ``notify_break``.

Invariants: a reference is in ``_seals[ino]`` exactly while it is live (not
yet released, revoked or forced out); its ``held`` runs are counted in the
core's holds until ``let_go``; ``_inode_refs[ino]`` counts open files plus
sealed references of ``ino``.  Every method runs under ``lock`` (the volume's).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from daxfs._types import PinInfo
from daxfs.core import UNWRITTEN
from daxfs.errors import BusyError
from daxfs.media import when_unshown
from daxfs.volume.listing import PinListing
from daxfs.volume.policies import POLICIES, POLICY_ACTION, PolicyActions, check_policy

if TYPE_CHECKING:
    from daxfs.volume.journal import Journal

# A reference's life: live -> (breaking ->) revoked or released.  Released and revoked
# references no longer seal anything; a revoked one still has to be closed by its holder.
LIVE, BREAKING, REVOKED, RELEASED = "live", "breaking", "revoked", "released"
TRANSITIONS: dict[str, dict[str, str]] = {
    LIVE: {"break": BREAKING, "revoke": REVOKED, "release": RELEASED},
    BREAKING: {"revoke": REVOKED, "release": RELEASED},
    REVOKED: {},
    RELEASED: {},
}


class View(Protocol):
    """Memory a reference shows its blocks in (``media.PoolView`` satisfies it).

    ``migrate``/``invalidate`` return False when the memory lives in another process
    that detaches it itself later: its blocks then stay held until ``release_blocks``.
    ``fence`` makes view bytes over bad memory inaccessible (after a memory failure);
    False when another process must do that itself.  (A view without ``fence`` — the
    arbiter's RemoteView until it sends poison events — is told, not fenced.)
    """

    def map_pool(self, offset: int, length: int, pool_offset: int, *, populate: bool = False) -> None: ...
    def map_zero(self, offset: int, length: int) -> None: ...
    def migrate(self) -> bool | None: ...
    def invalidate(self) -> bool | None: ...
    def fence(self, offset: int, length: int) -> bool | None: ...


class Reference:
    """One mapping, pin or lease as the volume sees it (the access layer subclasses it)."""

    kind = "mapping"        # "mapping" or "pin"; a mapping taken with lease=True lists as "lease"
    # Memory failure (class defaults: a reference no failure reaches costs nothing to make):
    #: file ranges ``(offset, length)`` over bad memory: fenced in its memory, told to the holder
    poisoned: Sequence[tuple[int, int]] = ()
    #: called (under the lock) with ``(file_offset, length)`` when memory under it fails
    on_poison: Callable[[int, int], object] | None = None
    #: where a closed mapping's blocks are still shown (arrays into it live): weak, so it
    #: does not keep them alive; memory failures fence it too
    lingering: "weakref.ref[Any] | None" = None
    #: what ``vol.pins()`` last listed for it (remade when its path or holder changes)
    listed: PinInfo | None = None
    #: forks made while its view was mapped (the view's list, kept after it is unmapped):
    #: their children show the blocks, which are let go only once they are gone
    forks: Sequence[Any] = ()

    def __init__(self, ino: int, path: str, offset: int, length: int, block_size: int,
                 writable: bool, lease: bool = False, holder: object = None, kind: str = "mapping") -> None:
        self.kind = kind
        self.ino = ino
        self.path = path
        self.offset = offset
        self.length = length
        self.writable = writable
        self.lease = lease
        self.holder = holder
        self.block_size = block_size
        self.first_block = offset // block_size         # file block at view offset 0
        self.end_block = -(-(offset + length) // block_size)
        self.state = LIVE
        self.since = 0.0
        #: data runs ``(pblk, n)`` this reference holds (None once let go)
        self.held: list[tuple[int, int]] | None = []
        #: ``(fblk, n, pool_offset)``: file blocks shown from the pool
        self.pieces: list[tuple[int, int, int]] = []
        #: ``(fblk, n)``: file blocks shown as zeros (holes, unwritten) that a write may fill
        self.zero_blocks: list[tuple[int, int]] = []
        #: where the blocks are shown; None until someone needs a CPU view (pins)
        self.view: View | None = None
        #: called (under the lock) to tell the holder a lease is being broken
        self.on_break: Callable[[], object] | None = None
        #: called (under the lock) with the runs it held, once they are let go
        self.on_let_go: Callable[[list[tuple[int, int]]], object] | None = None

    @property
    def revoked(self) -> bool:
        return self.state == REVOKED

    @property
    def breaking(self) -> bool:
        return self.state == BREAKING

    @property
    def listed_kind(self) -> str:
        return "lease" if self.lease else self.kind

    def block_range(self) -> tuple[int, int]:
        """File blocks ``[first, end)`` the reference covers."""
        return self.first_block, self.end_block

    def notify_break(self) -> None:
        """Tell the holder to let go (a lease being broken)."""
        if self.on_break is not None:
            self.on_break()

    def is_done(self) -> bool:
        """Whether the holder has let go (closed or released) or it was revoked."""
        return self.state in (REVOKED, RELEASED)


class _ProcessHolder:
    """The default holder: this process (what a file opened without a holder belongs to)."""

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def uid(self) -> int:
        return os.getuid()

    def __str__(self) -> str:
        return f"pid {os.getpid()}"


class ReferenceTable(PolicyActions):
    """Live references of one volume, inode references, waiters, and the pin policies."""

    def __init__(self, journal: "Journal", *, policy: str, lease_break_s: float,
                 reclaim: Callable[[int], None], changed: Callable[[], None]) -> None:
        self._journal = journal
        self.lock = journal.lock
        self.policy = policy
        self.lease_break_s = lease_break_s
        self._reclaim = reclaim              # an orphan's last reference went: free it
        self._changed_hook = changed         # the published status may be stale now
        self._changed = threading.Condition(self.lock)    # a reference let go (for waiters)
        self._seals: dict[int, set[Reference]] = {}       # ino -> live references over it
        self._inode_refs: dict[int, int] = {}             # ino -> open files + live references
        self._waiting: list[tuple[int, int, int]] = []    # (ino, first, end block) a 'wait' holds
        self._lingering: set[Reference] = set()           # let go of, blocks still held (shown)
        self._follower_refs = 0                           # a follower's references (shared lock)
        #: ``vol.pins()``: the live references as PinInfo, kept between listings
        self.listing = PinListing(journal, self.holder_name)
        self.closing = False                              # a forced close is under way
        self.process_holder: object = _ProcessHolder()

    # ---------------------------------------------------------------- inode references

    def open_inode(self, ino: int) -> None:
        self._inode_refs[ino] = self._inode_refs.get(ino, 0) + 1

    def close_inode(self, ino: int) -> None:
        """One holder of the inode lets go; the last one frees an orphan."""
        count = self._inode_refs.get(ino, 0) - 1
        if count > 0:
            self._inode_refs[ino] = count
            return
        self._inode_refs.pop(ino, None)
        node = self._journal.core.inodes.get(ino)
        if node is not None and node.nlink == 0:
            self._reclaim(ino)

    def inode_held(self, ino: int) -> bool:
        return ino in self._inode_refs

    def held_inodes(self) -> list[int]:
        return list(self._inode_refs)

    def clear_inodes(self) -> list[int]:
        """The volume is closing: forget every inode reference; returns the inodes."""
        inos = list(self._inode_refs)
        self._inode_refs.clear()
        return inos

    # ---------------------------------------------------------------- taking references

    def admit(self, ino: int, first: int, end: int, path: str) -> None:
        """May a new reference to file blocks ``[first, end)`` be made now?

        Not while a forced close is under way, nor over a range a 'wait' change is
        waiting on (so it cannot be starved).  A read-only follower first takes the
        pool's shared lock: with no writer able to open meanwhile, nobody can free
        the blocks its references point at.
        """
        journal = self._journal
        if not (self.closing or self._waiting or journal.follow):
            return              # the common case: nothing to refuse, no shared lock to take
        if self.closing:
            raise BusyError("volume is closing: no new mappings or pins", filename=path)
        for wino, wfirst, wend in self._waiting:
            if wino == ino and wfirst < end and (wend < 0 or first < wend):
                raise BusyError("a change waiting on this range refuses new pins and mappings", filename=path)
        if journal.follow and self._follower_refs == 0:
            if not journal.pool.share_lock():  # type: ignore[attr-defined]
                raise BusyError("the pool's writer could reuse blocks a read-only opener maps or pins: "
                                "map or pin through the writer, or when no process writes",
                                filename=path)
            journal.refresh()          # the writer may have logged changes before leaving

    def lay_out(self, ref: Reference, pieces: Iterable[tuple[int, int, int, int]]) -> None:
        """Give ``ref`` the file's blocks: ``(fblk, n, pblk or -1, flags)`` pieces of its range."""
        for f, k, p, fl in pieces:
            if p < 0 or fl & UNWRITTEN:
                ref.zero_blocks.append((f, k))
                if ref.view is not None:
                    ref.view.map_zero((f - ref.first_block) * ref.block_size, k * ref.block_size)
            else:
                self._attach(ref, f, k, p)

    def _attach(self, ref: Reference, f: int, k: int, p: int) -> None:
        """Show data blocks ``p..p+k`` as file blocks ``f..f+k`` of the reference, holding them."""
        bs = ref.block_size
        pool_offset = self._journal.layout.block_offset(p)
        if ref.view is not None:
            # a write view is faulted in now (MAP_POPULATE): its stores then never fault
            ref.view.map_pool((f - ref.first_block) * bs, k * bs, pool_offset, populate=ref.writable)
        ref.held.append((p, k))  # type: ignore[union-attr]
        ref.pieces.append((f, k, pool_offset))

    def register(self, ref: Reference) -> None:
        """A new live reference: it holds its blocks and its inode, and seals its range."""
        if self._journal.follow:
            self._follower_refs += 1
        else:
            core = self._journal.core
            for p, k in ref.held:  # type: ignore[union-attr]
                core.hold(p, k)
        ino = ref.ino
        self._inode_refs[ino] = self._inode_refs.get(ino, 0) + 1
        refs = self._seals.get(ino)
        if refs is None:
            self._seals[ino] = refs = set()
        refs.add(ref)
        self.listing.taken(ref)
        ref.since = time.time()
        self._changed_hook()

    def show(self, ref: Reference, view: View) -> None:
        """Lay everything ``ref`` shows into ``view`` (a CPU view made after the reference)."""
        bs = ref.block_size
        for f, k in ref.zero_blocks:
            view.map_zero((f - ref.first_block) * bs, k * bs)
        for f, k, pool_offset in ref.pieces:
            view.map_pool((f - ref.first_block) * bs, k * bs, pool_offset)
        fence = getattr(view, "fence", None)
        for lo, n in ref.poisoned if fence is not None else ():
            fence(lo - ref.first_block * bs, n)     # bad memory is never shown, in any view
        ref.view = view
        ref.forks = getattr(view, "forks", ())

    def show_filled(self, ino: int, filled: list[tuple[int, int, int, int]]) -> None:
        """Blocks just written into holes or unwritten ranges: references that showed zeros
        there now show the blocks, so reads, writes and mappings stay coherent."""
        refs = self._seals.get(ino)
        if not refs or not filled:
            return
        follow = self._journal.follow
        core = self._journal.core
        for ref in refs:
            if not ref.zero_blocks:
                continue
            first, end = ref.block_range()
            still_zero: list[tuple[int, int]] = []
            for zf, zk in ref.zero_blocks:
                pos = zf
                for f, k, p, fl in sorted(filled):
                    lo, hi = max(f, zf, first), min(f + k, zf + zk, end)
                    if lo >= hi or fl & UNWRITTEN:
                        continue
                    if lo > pos:
                        still_zero.append((pos, lo - pos))
                    self._attach(ref, lo, hi - lo, p + lo - f)
                    if not follow:
                        core.hold(p + lo - f, hi - lo)
                    pos = hi
                if pos < zf + zk:
                    still_zero.append((pos, zf + zk - pos))
            ref.zero_blocks = still_zero

    # ---------------------------------------------------------------- letting go

    def _move(self, ref: Reference, event: str) -> bool:
        """Advance ``ref``'s state by ``event``; False when the event no longer applies."""
        target = TRANSITIONS[ref.state].get(event)
        if target is None:
            return False
        ref.state = target
        return True

    def release(self, ref: Reference, *, unmapped: bool) -> None:
        """The holder let go (closed or released).  ``unmapped``: its memory is gone too,
        so its blocks are let go now; else when ``release_blocks`` says the memory went."""
        if not self._move(ref, "release"):
            if unmapped and ref.state == REVOKED and ref.held is not None:
                # Revoked meanwhile, its blocks held until the holder's memory went (another
                # process's view): a holder that let go unmapped says just that, and, its
                # mapping closed, it will not answer the revoke itself.
                self._unhold(ref)
                self._announce()
            return
        ref.view = None         # nothing is laid into it any more (and it may now be collected)
        self._unseal(ref)
        if unmapped:
            self._unhold(ref)
        elif ref.held is not None:
            self._lingering.add(ref)
        self._announce()

    def after_fork(self) -> None:
        """In a forked child: the lock (shared with the journal) may have come over held by a
        parent thread the child does not have; made free again, the child can let go of its
        copies of references (close, or the collector) instead of waiting forever."""
        self._changed._at_fork_reinit()      # type: ignore[attr-defined]  # the lock and its waiters

    def release_blocks(self, ref: Reference) -> None:
        """The reference's memory is unmapped at last: its data blocks are no longer held."""
        with self.lock:
            self._unhold(ref)
            self._announce()

    def revoke(self, ref: Reference, mode: str) -> None:
        """Detach ``ref`` from the file: its memory is migrated to private memory or made
        inaccessible, and its blocks are let go at once."""
        with self.lock:
            if ref.state not in (LIVE, BREAKING):
                return
            detached: bool | None = True
            if ref.view is not None:
                detached = ref.view.migrate() if mode == "migrate" else ref.view.invalidate()
            self._move(ref, "revoke")
            self._unseal(ref)
            if detached is not False:
                self._unhold(ref)
            elif ref.held is not None:
                # another process still shows the blocks until it detaches them itself
                # (``release_blocks``): held_by_others and memory failures must see them
                self._lingering.add(ref)
            self._announce()

    def _unseal(self, ref: Reference) -> None:
        refs = self._seals.get(ref.ino)
        if refs is None or ref not in refs:
            return
        refs.discard(ref)
        self.listing.gone(ref)
        if not refs:
            del self._seals[ref.ino]
        if not self._journal.closed:
            self.close_inode(ref.ino)

    def _unhold(self, ref: Reference) -> None:
        if ref.held is None:
            return
        if ref.forks and when_unshown(ref.forks, lambda: self.release_blocks(ref)):
            # A child forked while the view was mapped still shows its copy, whatever this
            # process did with its own: the blocks go when the last such child has.
            self._lingering.add(ref)
            return
        journal = self._journal
        if journal.follow:
            self._follower_refs -= 1
            if self._follower_refs == 0 and not journal.closed:
                journal.pool.share_unlock()  # type: ignore[attr-defined]
        elif not journal.closed:
            core = journal.core
            for p, k in ref.held:
                core.unhold(p, k)
        held, ref.held = ref.held, None
        if self._lingering:
            self._lingering.discard(ref)
        if ref.on_let_go is not None:
            ref.on_let_go(held)

    def _announce(self) -> None:
        self._changed.notify_all()
        self._changed_hook()

    # ---------------------------------------------------------------- questions

    def live(self) -> list[Reference]:
        return [r for refs in self._seals.values() for r in refs]

    def held_by_others(self, ino: int, start: int, n: int) -> list[tuple[int, int]]:
        """The data blocks of ``[start, start+n)`` a reference to another inode holds (live,
        or let go while its memory is still shown): they show that file's bytes as they
        were when it was taken, so ``ino`` must not change them in place (a clone written
        under a pin leaves the pinned blocks to the file it was cloned from)."""
        end = start + n
        out: list[tuple[int, int]] = []
        refs = [r for other, live in self._seals.items() if other != ino for r in live]
        refs += [r for r in self._lingering if r.ino != ino]
        for ref in refs:
            for p, k in ref.held or ():
                lo, hi = max(p, start), min(p + k, end)
                if lo < hi:
                    out.append((lo, hi - lo))
        return out

    def lingering(self) -> list[Reference]:
        """References let go of whose blocks are still held (their memory is still mapped)."""
        return list(self._lingering)

    def writers_over(self, ino: int, first: int, end: int) -> list[Reference]:
        """Write references that can still store into file blocks ``[first, end)``: live ones,
        and ones let go of while a buffer exported from them lives (it stores on)."""
        return [r for r in self.covering(ino, first, end) if r.writable] + \
            [r for r in self._lingering if r.ino == ino and r.writable and r.end_block > first and r.first_block < end]

    def detach_lingering(self) -> None:
        """At close: buffers still exported from references let go of in this process move
        to private memory (same addresses, same bytes), and their blocks are let go, so no
        array shows pool memory once the pool is closed and given to the next writer.
        Memory another process shows (no view here) stays held as it is."""
        for ref in list(self._lingering):
            view = ref.lingering() if ref.lingering is not None else None
            if view is not None:
                view.migrate()
                self._unhold(ref)
        self._announce()

    def covering(self, ino: int, first: int, end: int | None) -> list[Reference]:
        """Live references to file blocks ``[first, end)`` (``end`` None: to the end)."""
        out = []
        for ref in self._seals.get(ino, ()):
            if ref.end_block > first and (end is None or ref.first_block < end):
                out.append(ref)
        return out

    def sealed(self, ino: int, fblk: int, nblk: int) -> bool:
        """Whether a live reference covers any of file blocks ``[fblk, fblk+nblk)``."""
        for ref in self._seals.get(ino, ()):
            if ref.first_block < fblk + nblk and fblk < ref.end_block:
                return True
        return False

    def holder_name(self, holder: object) -> str:
        return str(holder if holder is not None else self.process_holder)

    def infos(self, refs: list[Reference] | None = None) -> list[PinInfo]:
        """PinInfo for ``refs`` (default: every live reference), oldest first."""
        return self.listing.infos(self._seals, refs)

    def persist(self, ref: Reference, start: int, length: int) -> None:
        """Persist view bytes ``[start, start+length)`` of ``ref``: the pool ranges under them."""
        bs = ref.block_size
        end = start + length
        pool = self._journal.pool
        with self.lock:
            for f, k, pool_offset in ref.pieces:
                lo = (f - ref.first_block) * bs
                a, b = max(lo, start), min(lo + k * bs, end)
                if a < b:
                    pool.persist_mapped(pool_offset + a - lo, b - a)

    def segments(self, ref: Reference) -> list[tuple[int, int, int | None]]:
        """``(file_offset, length, pool_offset or None)`` over the reference's range, in order."""
        with self.lock:
            bs = ref.block_size
            runs: list[tuple[int, int, Any]] = [*ref.pieces, *((f, k, None) for f, k in ref.zero_blocks)]
            out: list[tuple[int, int, int | None]] = []
            start, end = ref.offset, ref.offset + ref.length
            for f, k, pool_offset in sorted(runs, key=lambda r: r[0]):
                lo, hi = max(f * bs, start), min((f + k) * bs, end)
                if lo < hi:
                    out.append((lo, hi - lo, None if pool_offset is None else pool_offset + lo - f * bs))
            return out

__all__ = ["ReferenceTable", "Reference", "View", "POLICIES", "POLICY_ACTION", "check_policy"]
