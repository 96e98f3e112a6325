"""Journal: orders every metadata change — validate, record, persist, apply.

The journal owns the volume's lock, its core state and the log ring.  The
callers validate a change against ``core`` (raising the error Linux would
give, with nothing changed) and make and persist its data stores; then
``commit`` appends the record, persists it and only then applies it: so a
change is durable when the call returns, and a crash at any point leaves it
all-or-nothing.  Checkpoints bound the log: the whole state goes to the older
slot, then both superblocks flip to it, then the log before the previous
checkpoint may be overwritten.  A checkpoint starts once the log since the
last one passes three eighths of the ring and is written a slice per commit
(``checkpointer``), so no operation waits for the whole state to be written.

Timestamps that in-place data writes change (mtime, ctime) are kept here as
``deferred`` and logged at fsync/close/checkpoint, like Linux's ``lazytime``.

A read-only journal on a shared pool *follows* the writer: ``check_open``
first replays what the writer has logged since (``refresh``).  When nothing
changed — no header at our log head claims to be our next record, and no
superblock copy has a newer generation — that is two reads of the pool through
views kept for it, not a superblock decode and a replay.

If ``apply`` ever raises after its record was persisted (a bug: validation
let through a record the core rejects), the state in memory no longer
follows the log; the journal reloads what the log holds before that record
and refuses every later change (EROFS naming the record).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable

from daxfs._types import Stat
from daxfs.core import Core, Inode
from daxfs.core.chunked import ChunkedSet
from daxfs.core.records import (Batch, Create, CreateNode, Link, Quarantine, Reclaim, Record, Rename, SetAttr,
                                SetExtents, Unlink)
from daxfs.errors import CorruptVolumeError, fs_error
from daxfs.format.checkpoint import HEADER
from daxfs.format.layout import HEADER_SIZE, SUPERBLOCK_OFFSETS, SUPERBLOCK_SIZE
from daxfs.format.log import CLAIM, MAGIC
from daxfs.format.log import HEADER as RECORD_HEADER
from daxfs.format.superblock import CLEAN, GENERATIONS, Superblock
from daxfs.media import FilePool, Pool
from daxfs.volume.changes import ChangeTable
from daxfs.volume.checkpointer import CheckpointWriter, RowIndex
from daxfs.volume.heap import BULK_RUNS, HeapKeeper
from daxfs.volume.prepared import GROW_RUN
from daxfs.volume.log import LogRing
from daxfs.volume.mount import Loaded, load, read_superblock


#: A checkpoint starts, to be written a slice per commit, once the log since the last one
#: passes this fraction of the ring; it must be complete by half the ring.  Late, so that
#: checkpoints come about as seldom as when each was written at once at the half mark;
#: early enough that the slices stay small (the pacing spreads one over the eighth left).
START_AT = 0.375
#: The least work a commit does on it (units of about a microsecond: see checkpointer).
MIN_UNITS = 16
#: Log bytes a record takes beyond its encoding (its share of lap skips), for pacing.
RECORD_SLACK = 64


#: A change that may grow the checkpoint this much (that many runs) builds many objects:
#: it is applied with the collector paused (``HeapKeeper.bulk``)
BULK_GROW = GROW_RUN * BULK_RUNS

#: Record types that change one inode (``ino``), and an inode and its parent directory.
_ONE_INODE = frozenset({SetExtents, SetAttr, Reclaim})
_INODE_AND_PARENT = frozenset({Create, Link, CreateNode})


class Journal:
    """The lock, the core state and the log of one mounted volume."""

    def __init__(self, pool: Pool, loaded: Loaded, *, readonly: bool) -> None:
        self.pool = pool
        self.lock = threading.RLock()
        self.readonly = readonly
        #: a read-only mount of a shared pool follows the writer's log (see refresh)
        self.follow = readonly and isinstance(pool, FilePool)
        self.closed = False
        #: why the volume is read-only against its opener's wish (a log record that does not
        #: apply, met at mount or refused by the core live), or None
        self.damaged: str | None = None
        self.deferred: dict[int, int] = {}        # ino -> mtime from in-place writes (lazytime)
        #: per-inode change counters other processes read (the arbiter sets one), or None
        self.changes: ChangeTable | None = None
        #: metadata pool ranges reported bad whose record is being logged (never written meanwhile)
        self.failing: list[tuple[int, int]] = []
        #: puts memory behind planned blocks that may have none (holes of a sparse or discarded
        #: pool) before anything stores there; set by the volume's MediaSpace (discard.py)
        self.reserve: Callable[[list[tuple[int, int]]], None] | None = None
        #: the checkpoint being written a slice per commit, or None
        self.writer: CheckpointWriter | None = None
        self.heap = HeapKeeper()
        #: a follower's views of the pool header and of the log (see ``quiet``), made at its
        #: first check and released by ``drop_views`` before the pool closes
        self._views: tuple[memoryview, memoryview] | None = None
        self._install(loaded)
        self.block_size = self.layout.block_size
        #: what ``stat`` gives as ``st_dev``: stable for the volume (from its uuid)
        self.st_dev = int.from_bytes(self.superblock.uuid.bytes[:4], "little")

    def _install(self, loaded: Loaded) -> None:
        self.writer = None
        #: where the current checkpoint's rows lie (once this journal wrote one), and the
        #: inodes changed since the snapshot of the checkpoint being written or last written
        self.row_index: RowIndex | None = None
        self.changed = ChunkedSet()
        if len(loaded.core.inodes) >= self.heap.next_at:
            self.heap.grown(len(loaded.core.inodes))
        self.superblock: Superblock = loaded.superblock
        self.layout = loaded.superblock.layout
        self.core: Core = loaded.core
        self.ring: LogRing = loaded.ring
        self.generation = loaded.generation
        self.checkpoint_pos = loaded.checkpoint_pos

    # ---------------------------------------------------------------- checks

    def check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed volume")
        if self.follow and not self.quiet():
            self._catch_up()

    def check_writable(self, path: str | None = None) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed volume")
        if self.readonly:
            if self.damaged is not None:
                raise fs_error(errno.EROFS, path, f"Read-only file system: {self.damaged}")
            raise fs_error(errno.EROFS, path)

    # ---------------------------------------------------------------- blocks

    def plan_blocks(self, n: int, goal: int | None = None,
                    exclude: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
        """Free blocks for a request of ``n`` (``Core.plan_blocks``: nothing taken), with memory
        behind them: ENOSPC, with nothing changed, when the medium has no more.

        The caller holds the lock from here to the record that takes the blocks: until
        then they are free, and only that keeps the discarder away from them."""
        plan = self.core.plan_blocks(n, goal, exclude)
        space = self.core.space
        if space.zero or space.claimed:
            space.claim(plan)
        if self.reserve is not None and space.unbacked:
            self.reserve(plan)
        return plan

    # ---------------------------------------------------------------- commit

    def commit(self, record: Record, grow: int = 0) -> None:
        """Log ``record`` durably, then apply it.  ``grow``: how much it may add to a checkpoint.

        Arguments were converted and range-checked before the record was built
        (``arguments``) and the record checked its fields' types when it was; its
        value ranges (``record.validate()``, ~1.3 µs) are left to the decoder, which
        checks every record it reads: the hot path pays for no check twice.
        """
        core = self.core
        if grow and core.checkpoint_bound + grow > self.layout.checkpoint_size - 64:
            raise fs_error(errno.ENOSPC, message="no space left for metadata (too many files or extents "
                           "for this pool's checkpoint area)")
        ring = self.ring
        data = ring.encode(record)
        n = len(data)
        if n > ring.size // 4:
            raise fs_error(errno.ENOSPC, message="change too large for the metadata log (free space is "
                           "too fragmented for one write this big)")
        # n + its worst-case lap skip stays under half the ring since the last checkpoint,
        # which with the records before that one keeps the ring from overrunning its tail.
        if ring.head - self.checkpoint_pos + 2 * n > ring.size // 2 or not ring.fits(n):
            if self.writer is not None:         # the one being written, finished now
                self._finish(self.writer, None)
            if ring.head - self.checkpoint_pos + 2 * n > ring.size // 2 or not ring.fits(n):
                self.checkpoint()
                if not ring.fits(n):
                    self.checkpoint()
            data = ring.encode(record)
        if ring.bad and ring.blocked(n):
            self._jump_bad_log(n)
            data = ring.encode(record)
        if self.superblock.flags & CLEAN:
            self.mark_clean(False)      # (a close that failed after claiming it: not clean now)
        seq = ring.next_seq
        ring.append(record, data)
        writer = self.writer
        touched = self._touched(record)
        self.changed.update(touched)
        if self.changes is not None:
            for ino in touched:
                self.changes.bump(ino)
        if writer is not None:
            writer.touch(touched)
        try:
            if grow < BULK_GROW:
                core.apply(record)
            else:
                with self.heap.bulk():
                    core.apply(record)
        except Exception as exc:
            self._fail(seq, record, exc)
        if writer is not None:
            self._finish(writer, n)
        elif ring.head - self.checkpoint_pos > ring.size * START_AT:
            self._start()
        if len(core.inodes) >= self.heap.next_at:
            self.heap.grown(len(core.inodes))

    def _touched(self, record: Record) -> list[int]:
        """The inodes ``record`` changes (looked up before it is applied)."""
        kind = type(record)     # (records are never subclassed: a set lookup, not isinstance calls)
        if kind in _ONE_INODE:
            return [record.ino]                         # type: ignore[attr-defined]
        if kind in _INODE_AND_PARENT:
            return [record.ino, record.parent]          # type: ignore[attr-defined]
        inodes = self.core.inodes
        if isinstance(record, Unlink):
            parent = inodes.get(record.parent)
            child = parent.entries.get(record.name) if parent is not None and parent.entries else None
            return [record.parent] + ([child] if child is not None else [])
        if isinstance(record, Rename):
            out = [record.src_parent, record.dst_parent]
            for parent_ino, name in ((record.src_parent, record.src_name), (record.dst_parent, record.dst_name)):
                parent = inodes.get(parent_ino)
                child = parent.entries.get(name) if parent is not None and parent.entries else None
                if child is not None:
                    out.append(child)
            return out
        if isinstance(record, Batch):
            return [ino for item in record.records() for ino in self._touched(item)]
        if isinstance(record, Quarantine):
            # what the owners read changes (poisoned): a client's cached layout of them is stale
            return sorted({ino for ino, _f, _p, _n in self.core.rmap.owners(record.pblk, record.nblk)})
        return []

    def _fail(self, seq: int, record: Record, exc: Exception) -> None:
        """``record`` is durable but the core refused it: stop taking changes.

        The state in memory may be half-changed, so it is rebuilt from the pool up to
        the record before; what the log holds before the bad record stays mountable.
        """
        self.damaged = (f"log record {seq} ({type(record).__name__}) does not apply to the state before it "
                        f"({exc!r}); `daxfs fsck --repair` keeps the state before it")
        self.readonly = True
        self.follow = False
        try:
            self._install(load(self.pool, check_damage=False, stop_before_seq=seq))
        except CorruptVolumeError:
            pass     # the old state stays readable; every change is refused anyway
        raise CorruptVolumeError(self.damaged + "; the volume is read-only now") from exc

    def _jump_bad_log(self, n: int) -> None:
        """The next record would land on bad log memory: move the head past it and checkpoint
        twice, so both slots start after the gap and no replay (mount, the older slot's
        fallback, a follower reloading) ever reads across it."""
        ring = self.ring
        pos = ring.clear_position(n)
        if pos is None:
            raise fs_error(errno.ENOSPC, message="no healthy stretch of the metadata log holds this change "
                           "(the log has bad memory)")
        ring.head = pos
        self.checkpoint()
        self.checkpoint()

    def superblock_offsets(self) -> list[int]:
        """The superblock copies on healthy memory (a bad copy is never written again)."""
        return [off for off in SUPERBLOCK_OFFSETS if self.meta_ok(off, SUPERBLOCK_SIZE)]

    def write_superblocks(self, sb: Superblock) -> None:
        raw = sb.encode()
        pool = self.pool
        for off in self.superblock_offsets():
            pool.write(off, raw)
            pool.persist(off, len(raw))

    def mark_clean(self, clean: bool) -> None:
        """Claim a clean close in the superblocks (after the last checkpoint), or take the
        claim back (before the first record a writer logs)."""
        flags = self.superblock.flags | CLEAN if clean else self.superblock.flags & ~CLEAN
        if flags != self.superblock.flags:
            sb = self.superblock.with_flags(flags)
            self.write_superblocks(sb)
            self.superblock = sb

    def meta_ok(self, offset: int, length: int) -> bool:
        """Whether pool bytes ``[offset, +length)`` outside the data area are healthy memory."""
        bad = self.core.bad_metadata
        return not (bad and bad.overlaps(offset, length)) and \
            not any(s < offset + length and offset < s + n for s, n in self.failing)

    def checkpoint(self) -> None:
        """Write the whole state to the older slot, flip the superblocks, free the log before it.

        A checkpoint being written a slice at a time is dropped: this one, of the state
        now, goes to the same slot."""
        self._drop_writer()
        self._finish(self._new_writer(), None)

    def _drop_writer(self) -> None:
        if self.writer is not None:
            self.changed |= self.writer.changed     # (changed since the checkpoint it copies from)
            self.writer = None

    def _start(self) -> None:
        """Start a checkpoint of the state now, to be written a slice per commit."""
        try:
            self.writer = self._new_writer()
        except OSError:
            pass    # (a bad slot: the checkpoint at the half-full mark says so to its caller)

    def _new_writer(self) -> CheckpointWriter:
        core = self.core
        self.changed.update(self.deferred)
        for ino, mtime in self.deferred.items():
            if ino in core.inodes:
                core.apply(SetAttr(ino, None, None, None, None, mtime, mtime))
        self.deferred.clear()
        layout = self.layout
        generation = self.generation + 1
        slot = layout.checkpoint_offsets[generation % 2]
        if not self.meta_ok(slot, layout.checkpoint_size):
            raise fs_error(errno.EROFS, message=f"checkpoint slot {'AB'[generation % 2]} is bad memory: "
                           f"no checkpoint can be written")
        ring = self.ring
        previous = self.row_index
        if previous is not None and (previous.generation != self.generation
                                     or not self.meta_ok(previous.body, layout.checkpoint_size - HEADER.size)):
            previous = None
        changed, self.changed = self.changed, ChunkedSet()
        writer = CheckpointWriter(core, self.pool, slot, layout.checkpoint_size, generation, ring.next_seq - 1,
                                  ring.head, previous, changed)
        if previous is None:
            self.heap.made_young(len(core.inodes))      # (its list of every key)
        return writer

    def _finish(self, writer: CheckpointWriter, n: int | None) -> None:
        """Advance ``writer``: by a slice sized so it completes before the log is half full
        (after a commit of ``n`` log bytes), or to the end (``n`` None); once complete,
        flip the superblocks to it."""
        if n is None:
            units = 1 << 62
        else:
            ring = self.ring
            room = ring.size // 2 - (ring.head - self.checkpoint_pos)
            units = max(MIN_UNITS, writer.remaining() * (n + RECORD_SLACK) // max(room, 1))
        self.writer = writer
        try:
            done = writer.step(units)
        except OSError:
            self._drop_writer()
            if n is None:
                raise
            return      # (ENOSPC: the checkpoint at the half-full mark says so to its caller)
        if not done:
            return
        self.writer = None
        self.row_index = writer.index_of()
        sb = Superblock(self.superblock.uuid, self.layout, writer.generation, self.superblock.version,
                        self.superblock.flags & ~CLEAN)
        self.write_superblocks(sb)
        self.superblock = sb
        self.generation = writer.generation
        self.ring.tail = self.checkpoint_pos
        self.checkpoint_pos = writer.log_pos

    # ---------------------------------------------------------------- lazytime

    def defer_mtime(self, ino: int, time_ns: int) -> None:
        self.deferred[ino] = time_ns
        if self.changes is not None:
            self.changes.bump(ino)

    def flush_deferred(self, ino: int | None) -> None:
        """Log deferred timestamps (one inode's, or all)."""
        inos = list(self.deferred) if ino is None else [ino]
        for i in inos:
            mtime = self.deferred.pop(i, None)
            if mtime is not None and i in self.core.inodes:
                self.commit(SetAttr(i, None, None, None, None, mtime, mtime))

    def stat_of(self, node: Inode) -> Stat:
        """``node``'s attributes as ``stat`` shows them (deferred timestamps included)."""
        bs = self.block_size
        if node.entries is not None:
            size = 40 + 20 * len(node.entries)     # what tmpfs reports, so tools see the same
            blocks = 0
        elif node.extents is None:      # a symlink (its target's length) or a special file (0)
            size = node.size
            blocks = 0
        else:
            size = node.size
            blocks = node.extents.blocks * (bs // 512)  # type: ignore[union-attr]
        mtime = self.deferred.get(node.ino)
        return Stat(node.mode, node.ino, self.st_dev, node.nlink, node.uid, node.gid, size,
                    node.atime_ns, node.mtime_ns if mtime is None else mtime,
                    node.ctime_ns if mtime is None else max(mtime, node.ctime_ns), blocks, bs, node.rdev)

    def node(self, ino: int) -> Inode:
        node = self.core.inodes.get(ino)
        if node is None:
            # A follower's writer removed it; or, in the writer, a call that waited for a
            # reference (the lock let go) lost the file's last handle to another thread.
            raise fs_error(errno.ESTALE, message="file was removed by the pool's writer" if self.follow
                           else "file was removed (its last handle closed) while this call waited")
        return node

    # ---------------------------------------------------------------- following a writer

    def refresh(self) -> None:
        """Read-only beside a writer: catch up with the records it appended since.

        Replays new records from our head; when the writer has checkpointed
        twice since (so the ring may have lapped us), reloads from its newest
        checkpoint.  A handle whose inode the writer removed meanwhile goes
        stale (ESTALE on use), as on NFS: without an arbiter the writer cannot
        know it is held.
        """
        if not self.quiet():
            self._catch_up()

    def _catch_up(self) -> None:
        ring = self.ring
        try:
            generation = read_superblock(self.pool).generation
        except CorruptVolumeError:
            return      # a superblock being rewritten right now: use what we have
        if generation <= self.generation + 1:
            head, seq = LogRing.replay(self.pool, ring.offset, ring.size, ring.volume_id, start=ring.head,
                                       first_seq=ring.next_seq, apply=self.core.apply, check_damage=False)
            ring.head, ring.next_seq = head, seq
            self.generation = max(self.generation, generation)
            if len(self.core.inodes) >= self.heap.next_at:
                self.heap.grown(len(self.core.inodes))
            return
        for attempt in range(3):
            try:
                loaded = load(self.pool, check_damage=False)
                break
            except CorruptVolumeError:
                if attempt == 2:     # the writer rewrote the slot under us thrice: give up for now
                    return
        self._install(loaded)

    def log_moved(self) -> bool:
        """Whether a record has landed at our head since we last caught up (read-only)."""
        if not self._claimed():
            return False        # no header there even says so: no record landed (the common case)
        ring = self.ring
        return LogRing.peek(self.pool, ring.offset, ring.size, ring.volume_id, ring.head, ring.next_seq)

    def _make_views(self) -> tuple[memoryview, memoryview]:
        layout = self.layout
        self._views = (self.pool.view(0, HEADER_SIZE), self.pool.view(layout.log_offset, layout.log_size))
        return self._views

    def _claimed(self) -> bool:
        """Whether the header at our log head says it is our next record (or a PAD in its
        place); unchecked, so True means maybe, False means surely not."""
        log = (self._views or self._make_views())[1]
        ring = self.ring
        size = ring.size
        phys = ring.head % size
        if size - phys < RECORD_HEADER.size:
            phys = 0            # no room for a header at the lap's end: the writer went on at 0
        magic, vid, seq = CLAIM.unpack_from(log, phys)
        return seq == ring.next_seq and magic == MAGIC and vid == ring.volume_id

    def quiet(self) -> bool:
        """Whether the writer has surely changed nothing since we caught up (a follower;
        ``DataPath.pread`` asks it once, after its copy).

        Nothing is logged without record ``next_seq`` landing at our head (or a PAD
        there, or at 0 past a lap's end); when the ring laps us or the writer jumps
        its head past bad log memory it checkpoints, and a superblock copy shows a
        newer generation.  So: no header at our head claiming that record, and no
        copy's generation field past ours.  Any other value (a torn or damaged copy
        included) only sends us down the full, checked ``refresh``.  (``_claimed``
        inlined: this runs before every call a follower answers.)
        """
        header, log = self._views or self._make_views()
        ring = self.ring
        size = ring.size
        phys = ring.head % size
        if size - phys < RECORD_HEADER.size:
            phys = 0
        magic, vid, seq = CLAIM.unpack_from(log, phys)
        if seq == ring.next_seq and magic == MAGIC and vid == ring.volume_id:
            return False
        generation = self.generation
        for seen in GENERATIONS.unpack_from(header):
            if seen > generation:
                return False
        return True

    def drop_views(self) -> None:
        """Release the follower's views of the pool (before the pool closes: they would keep
        its mapping from closing)."""
        views, self._views = self._views, None
        if views is not None:
            for view in views:
                view.release()
