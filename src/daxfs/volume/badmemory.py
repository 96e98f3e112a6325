"""BadMemory: what the volume does when memory behind it fails (seed 001).

``memory_failure(pool_offset, length)`` is the device calling into the file
system.  The range is validated, rounded out to whole blocks (data) or pages
(metadata), logged (``Quarantine`` / ``BadMetadata``: it survives remount and
crash), and acted on at once:

- file data: the reverse map gives every owner of the bad blocks — all
  reflink sharers, orphans included.  Their ranges are poisoned from then on
  (``poison``: reads raise EIO, ``extents`` flags them);
- mappings over the bad pages (any holder, any file, a closed mapping whose
  arrays still live) are fenced — those pages replaced by inaccessible memory —
  and told (``on_poison``, ``poisoned``); pins are told and kept;
- free and busy blocks are quarantined at once; owned ones when their last
  owner lets go.  No bad block is ever handed out again until
  ``clear_badblocks``, after the media is repaired;
- metadata: each region does what keeps every byte of metadata (``regions``):

  ================  =======================================================
  superblock copy   the other copy is rewritten from memory at once; later
                    superblock writes go to the healthy copy only.  Both
                    copies bad: read-only.
  owner/status      advisory pages other processes read: no longer written.
  log               the state is checkpointed twice at once (no record in
                    the ring is needed any more); appends never write the
                    bad range again: the head jumps over it, followed by two
                    checkpoints, each time it comes round.  More than half
                    of the log bad: read-only.
  checkpoint slot   the state is in memory: if the newest checkpoint is in
                    the bad slot it is written again into the other one;
                    then the volume goes read-only (a checkpoint needs two
                    slots to survive a crash while writing one).
                    ``daxfs fsck --repair`` makes it writable again once the
                    memory is repaired.
  unused            padding between regions and past the data: nothing.
  ================  =======================================================

Where bad ranges come from: ``media.badblocks`` — the kernel's list for a
pmem or device-dax device, a side file ``POOL.badblocks`` for a file pool —
read at mount and watched while mounted (``Watcher``, every 0.25 s).
"""

from __future__ import annotations

import errno
import threading
import warnings
import weakref

from daxfs._types import Owner
from daxfs.core.badblocks import BlockRuns
from daxfs.core.fields import PAGE
from daxfs.core.inode_paths import paths_of
from daxfs.core.records import BadMetadata, Batch, ClearQuarantine, Quarantine, Record
from daxfs.errors import BusyError, MediaErrorWarning, fs_error
from daxfs.format.layout import OWNER_OFFSET, STATUS_OFFSET, STATUS_SIZE, SUPERBLOCK_SIZE, Layout
from daxfs.media.badblocks import BadblockSource, source_for
from daxfs.volume import poison
from daxfs.volume.datapath import GROW_RUN, DataPath

WATCH_EVERY = 0.25       # seconds between looks at the badblock source while mounted


def regions(layout: Layout) -> list[tuple[str, int, int]]:
    """``(name, start, end)`` of every region of the pool, in order, gaps named "unused"."""
    a, b = layout.checkpoint_offsets
    data_end = layout.data_offset + layout.data_blocks * layout.block_size
    named = [("superblock A", 0, SUPERBLOCK_SIZE), ("superblock B", SUPERBLOCK_SIZE, 2 * SUPERBLOCK_SIZE),
             ("owner page", OWNER_OFFSET, STATUS_OFFSET), ("status page", STATUS_OFFSET, STATUS_OFFSET + STATUS_SIZE),
             ("log", layout.log_offset, layout.log_offset + layout.log_size),
             ("checkpoint slot A", a, a + layout.checkpoint_size), ("checkpoint slot B", b, b + layout.checkpoint_size),
             ("data", layout.data_offset, data_end)]
    out: list[tuple[str, int, int]] = []
    pos = 0
    for name, start, end in named:
        if start > pos:
            out.append(("unused", pos, start))
        out.append((name, start, end))
        pos = end
    if layout.pool_size > pos:
        out.append(("unused", pos, layout.pool_size))
    return out


def readonly_reason(bad: BlockRuns, layout: Layout) -> str | None:
    """Why bad metadata ``bad`` keeps a volume from taking changes (checkpoint slot, both
    superblocks, more than half of the log), or None."""
    if not bad:
        return None
    again = "once the memory is repaired, `daxfs fsck --repair` makes it writable again"
    slots = [name for name, off in zip("AB", layout.checkpoint_offsets) if bad.overlaps(off, layout.checkpoint_size)]
    if slots:
        return (f"checkpoint slot {' and '.join(slots)} is bad memory: the volume is read-only (a checkpoint "
                f"needs two healthy slots to survive a crash); {again}")
    if all(bad.overlaps(off, SUPERBLOCK_SIZE) for off in (0, SUPERBLOCK_SIZE)):
        return f"both superblock copies are bad memory: the volume is read-only; {again}"
    if sum(n for _s, n in bad.parts(layout.log_offset, layout.log_size)) * 2 > layout.log_size:
        return f"more than half of the metadata log is bad memory: the volume is read-only; {again}"
    return None


def region_of(layout: Layout, offset: int) -> str:
    for name, start, end in regions(layout):
        if start <= offset < end:
            return name
    return "outside the pool"


class BadMemory:
    """Memory failures of one volume: report, act, clear, list, watch."""

    def __init__(self, data: DataPath) -> None:
        self.data = data
        self.journal = data.journal
        self.references = data.references
        self.lock = data.lock
        self.source: BadblockSource | None = None
        self._watcher: Watcher | None = None

    # ---------------------------------------------------------------- arguments

    def _split(self, pool_offset: int, length: int, what: str) -> tuple[tuple[int, int] | None,
                                                                         list[tuple[int, int]], bool]:
        """``(data blocks (first, n) or None, metadata pages [(offset, length)], rounded)`` for
        pool bytes ``[pool_offset, +length)`` (pages outside the data area: before it, or the
        unused tail after it); EINVAL for a range that is empty or not inside the pool."""
        lay = self.journal.layout
        if length <= 0:
            raise fs_error(errno.EINVAL, message=f"{what}: the length must be positive, not {length}")
        if pool_offset < 0 or pool_offset + length > lay.pool_size:
            raise fs_error(errno.EINVAL, message=f"{what}: pool bytes [{pool_offset}, +{length}) are not "
                           f"inside the pool ({lay.pool_size} bytes)")
        end = pool_offset + length
        bs = lay.block_size
        data_lo, data_hi = lay.data_offset, lay.data_offset + lay.data_blocks * bs
        blocks = None
        meta: list[tuple[int, int]] = []
        rounded = False
        lo, hi = max(pool_offset, data_lo), min(end, data_hi)
        if lo < hi:
            b0, b1 = (lo - data_lo) // bs, -(-(hi - data_lo) // bs)
            blocks = (b0, b1 - b0)
            rounded = lo != data_lo + b0 * bs or hi != data_lo + b1 * bs
        for lo, hi in ((pool_offset, min(end, data_lo)), (max(pool_offset, data_hi), end)):
            if lo < hi:     # (data_lo and data_hi are page-aligned: pages never reach into data)
                m0, m1 = lo - lo % PAGE, -(-hi // PAGE) * PAGE
                meta.append((m0, m1 - m0))
                rounded = rounded or (m0, m1) != (lo, hi)
        return blocks, meta, rounded

    # ---------------------------------------------------------------- a failure

    def memory_failure(self, pool_offset: int, length: int) -> list[Owner]:
        """Record pool bytes ``[pool_offset, +length)`` as bad memory and act on it (see the
        module docstring); returns every owner of the bad data blocks.  Idempotent."""
        journal = self.journal
        with self.lock:
            journal.check_writable()
            blocks, meta, rounded = self._split(pool_offset, length, "memory_failure")
            if rounded:
                warnings.warn(f"memory_failure of pool bytes [{pool_offset}, +{length}) rounded out to whole "
                              f"blocks ({journal.block_size} bytes) and pages", MediaErrorWarning, stacklevel=3)
            core = journal.core
            new_blocks = core.bad.outside(*blocks) if blocks else []
            new_meta = [part for run in meta for part in core.bad_metadata.outside(*run)]
            owners = self._owners(*blocks) if blocks else []
            records: list[Record] = [Quarantine(s, n) for s, n in new_blocks]
            records += [BadMetadata(s, n, True) for s, n in new_meta]
            if not records:
                return owners           # reported before: nothing new to do
            journal.failing = new_meta           # never written while the record is logged
            if new_meta:
                self._configure_log(extra=new_meta)
            try:
                journal.commit(records[0] if len(records) == 1 else Batch.of(*records),
                               GROW_RUN * (len(records) + 1))
            except BaseException:
                if new_meta:
                    self._configure_log()       # not recorded: the ring goes back to what is
                raise
            finally:
                journal.failing = []
            if new_blocks:
                self._fence(new_blocks)
            if new_meta:
                self._metadata_failed(new_meta)
            return owners

    def _owners(self, first: int, n: int) -> list[Owner]:
        core = self.journal.core
        bs = core.block_size
        base = self.data.data_offset
        found = core.rmap.owners(first, n)
        paths = paths_of(core, {ino for ino, _f, _p, _n in found})
        out = [Owner(ino, paths[ino], f * bs, k * bs, base + p * bs) for ino, f, p, k in found]
        out.sort(key=lambda o: (o.pool_offset, o.ino, o.file_offset))
        return out

    def _fence(self, bad: list[tuple[int, int]]) -> None:
        """Fence the bad blocks in every memory that shows them, and tell the live holders."""
        table = self.references
        bs = self.journal.block_size
        base = self.data.data_offset
        live = table.live()
        for ref in live + table.lingering():
            runs: list[tuple[int, int]] = []
            for f, k, pool_offset in ref.pieces:
                p = (pool_offset - base) // bs
                for s, n in bad:
                    lo, hi = max(p, s), min(p + k, s + n)
                    if lo < hi:
                        runs.append((f + lo - p, hi - lo))
            if not runs:
                continue
            view = ref.view
            if view is None and ref.lingering is not None:
                view = ref.lingering()
            poison.fence_reference(ref, runs, tell=ref in live, view=view)

    # ---------------------------------------------------------------- metadata

    def _configure_log(self, extra: list[tuple[int, int]] = ()) -> None:  # type: ignore[assignment]
        """Tell the log ring which of its bytes are bad (it never writes them)."""
        journal = self.journal
        lay = journal.layout
        lo, hi = lay.log_offset, lay.log_offset + lay.log_size
        bad = []
        for s, n in journal.core.bad_metadata.runs() + list(extra):
            a, b = max(s, lo), min(s + n, hi)
            if a < b:
                bad.append((a - lo, b - lo))
        journal.ring.bad = sorted(bad)

    def why_readonly(self) -> str | None:
        """Why bad metadata keeps the volume from taking changes, or None."""
        return readonly_reason(self.journal.core.bad_metadata, self.journal.layout)

    def _metadata_failed(self, ranges: list[tuple[int, int]]) -> None:
        """Act on bad metadata just recorded, region by region (see the module docstring)."""
        journal = self.journal
        lay = journal.layout
        hit = {region_of(lay, off) for s, n in ranges for off in range(s, s + n, PAGE)}
        if "checkpoint slot A" in hit or "checkpoint slot B" in hit:
            newest = lay.checkpoint_offsets[journal.generation % 2]
            other = lay.checkpoint_offsets[(journal.generation + 1) % 2]
            if not journal.meta_ok(newest, lay.checkpoint_size) and journal.meta_ok(other, lay.checkpoint_size):
                journal.checkpoint()        # the state, from memory, into the healthy slot
        elif "log" in hit and self.why_readonly() is None:
            journal.checkpoint()            # no record in the ring is needed after these two
            journal.checkpoint()
        if ("superblock A" in hit or "superblock B" in hit) and journal.superblock_offsets():
            journal.write_superblocks(journal.superblock)      # the healthy copy, current
        reason = self.why_readonly()
        if reason is not None:
            journal.readonly = True
            journal.damaged = reason

    def mounted(self) -> str | None:
        """At mount: the log ring learns its bad bytes; returns why the volume must be
        read-only because of bad metadata (None when it need not)."""
        if self.journal.core.bad_metadata:
            self._configure_log()
            return self.why_readonly()
        return None

    # ---------------------------------------------------------------- clearing

    def clear_badblocks(self, pool_offset: int, length: int) -> None:
        """The memory is repaired: bad blocks no file owns and nothing holds are zeroed and go
        back to free space (bad metadata pages are written again).  EINVAL for bytes that are
        not bad, BusyError while anything owns or holds them; nothing changed either way."""
        journal = self.journal
        with self.lock:
            journal.check_writable()
            blocks, meta, rounded = self._split(pool_offset, length, "clear_badblocks")
            if rounded:
                warnings.warn(f"clear_badblocks of pool bytes [{pool_offset}, +{length}) rounded out to whole "
                              f"blocks and pages", MediaErrorWarning, stacklevel=3)
            core = journal.core
            lay = journal.layout
            bs = lay.block_size
            base = lay.data_offset
            good = [(base + s * bs, n * bs) for s, n in (core.bad.outside(*blocks) if blocks else [])]
            good += [part for run in meta for part in core.bad_metadata.outside(*run)]
            if good:
                shown = ", ".join(f"[{s:#x}, +{n})" for s, n in good[:4])
                raise fs_error(errno.EINVAL, message=f"clear_badblocks: pool bytes {shown} are not bad: "
                               f"nothing was cleared")
            if blocks:
                owners = self._owners(*blocks)
                if owners:
                    shown = ", ".join(f"{o.path or f'(unlinked inode {o.ino})'} [{o.file_offset}, +{o.length})"
                                      for o in owners[:4])
                    raise BusyError(f"bad blocks still owned by {shown}: remove, truncate, punch, zero_range "
                                    f"or rewrite them first", holders=sorted({o.path or str(o.ino) for o in owners}))
                if core.busy.holds.overlapping(*blocks):
                    raise BusyError("bad blocks still held by a pin or mapping: release it first")
            self._unlist(pool_offset, length)
            records: list[Record] = []
            if blocks:
                for s, n in core.bad.parts(*blocks):
                    journal.pool.zero(base + s * bs, n * bs)
                    journal.pool.persist(base + s * bs, n * bs)
                    records.append(ClearQuarantine(s, n))
            records += [BadMetadata(s, n, False) for run in meta for s, n in core.bad_metadata.parts(*run)]
            journal.commit(records[0] if len(records) == 1 else Batch.of(*records), GROW_RUN)
            if meta:
                self._configure_log()
                journal.write_superblocks(journal.superblock)

    def _unlist(self, pool_offset: int, length: int) -> None:
        """The badblock source must not list the range any more: a side file is the simulated
        device, so clearing is its repair; a device's list is the kernel's to clear."""
        source = self.source
        if source is None:
            return
        listed = [(s, n) for s, n in source.read() if s < pool_offset + length and pool_offset < s + n]
        if not listed:
            return
        if not source.writable:
            raise BusyError(f"{source.path} still lists pool bytes [{listed[0][0]:#x}, +{listed[0][1]}) as bad: "
                            f"clear them on the device first (`ndctl clear-errors`)")
        source.remove(pool_offset, length)
        if self._watcher is not None:
            self._watcher.forget(pool_offset, length)

    # ---------------------------------------------------------------- seeing it

    def badblocks(self) -> list[tuple[int, int]]:
        """Every bad range, ``(pool_offset, length)`` in pool order: metadata pages and data blocks."""
        journal = self.journal
        with self.lock:
            journal.check_open()
            bs = journal.block_size
            base = journal.layout.data_offset
            return journal.core.bad_metadata.runs() + [(base + s * bs, n * bs) for s, n in journal.core.bad.runs()]

    def report(self) -> list[tuple[int, int, str, list[Owner]]]:
        """``(pool_offset, length, region, owners)`` for each bad range (``daxfs badblocks``)."""
        journal = self.journal
        with self.lock:
            journal.check_open()
            lay = journal.layout
            out = [(s, n, region_of(lay, s), []) for s, n in journal.core.bad_metadata.runs()]
            for s, n in journal.core.bad.runs():
                out.append((lay.block_offset(s), n * lay.block_size, "data", self._owners(s, n)))
            return out  # type: ignore[return-value]

    def poisoned(self) -> list[Owner]:
        """Every poisoned file range: written file data on bad memory (``daxfs fsck`` lists them).
        A fallocated block never written reads as zeros, bad memory or not: it is not listed."""
        journal = self.journal
        with self.lock:
            journal.check_open()
            core = journal.core
            bs = core.block_size
            out = []
            for s, n in core.bad.runs():
                for owner in self._owners(s, n):
                    node = core.inodes.get(owner.ino)
                    if node is None:
                        continue
                    for f, k, _p in poison.poisoned_runs(core, node, owner.file_offset // bs, owner.length // bs):
                        out.append(owner._replace(file_offset=f * bs, length=k * bs,
                                                  pool_offset=owner.pool_offset + f * bs - owner.file_offset))
            return out

    # ---------------------------------------------------------------- the badblock source

    def watch(self, pool_path: str) -> None:
        """Act on what the pool's badblock source lists now, then watch it while mounted."""
        source = source_for(pool_path, self.journal.layout.pool_size)
        if source is None:
            return
        self.source = source
        watcher = Watcher(self, source)
        watcher.look()
        watcher.start()
        self._watcher = watcher

    def stop(self) -> None:
        """Stop watching (before the volume closes: the watcher takes the volume's lock)."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    def resume(self) -> None:
        """Watch again after ``stop`` (a close that did not happen); what is listed meanwhile
        is acted on at the first look (reporting a range again changes nothing)."""
        if self.source is not None and self._watcher is None and not self.journal.readonly:
            watcher = Watcher(self, self.source)
            watcher.start()
            self._watcher = watcher


class Watcher(threading.Thread):
    """Polls a badblock source and reports each range it newly lists to ``memory_failure``."""

    def __init__(self, owner: BadMemory, source: BadblockSource) -> None:
        super().__init__(name=f"daxfs badblocks {source.path}", daemon=True)
        self._owner = weakref.ref(owner)        # a volume nobody closed must still be collectable
        self._source = source
        self._halt = threading.Event()
        self._stamp: tuple[int, int, int] | None = None
        self._seen: set[tuple[int, int]] = set()
        self._warned: set[tuple[int, int]] = set()

    def run(self) -> None:
        while not self._halt.wait(WATCH_EVERY):
            if self._owner() is None:
                return
            try:
                self.look()
            except Exception as exc:    # the watcher must outlive a bad list or a volume gone read-only
                warnings.warn(f"{self._source.path}: {exc}", MediaErrorWarning, stacklevel=1)

    def look(self) -> None:
        """Read the list if it changed and report what is new on it."""
        stamp = self._source.stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        listed = set(self._source.read())
        for problem in self._source.problems:
            warnings.warn(f"{self._source.path}: {problem}", MediaErrorWarning, stacklevel=1)
        owner = self._owner()
        if owner is None:
            return
        for offset, length in sorted(listed - self._seen):
            if self._halt.is_set():
                return                  # the volume is closing: the next mount reads the list
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MediaErrorWarning)     # the list's sectors are not blocks
                    owner.memory_failure(offset, length)
            except (OSError, ValueError) as exc:
                if self._halt.is_set():
                    return
                if (offset, length) not in self._warned:
                    self._warned.add((offset, length))
                    warnings.warn(f"{self._source.path}: bad range [{offset:#x}, +{length}) not acted on: {exc}",
                                  MediaErrorWarning, stacklevel=1)
                continue
        self._seen = listed

    def forget(self, offset: int, length: int) -> None:
        """A range was cleared: if it is listed again later, it is a new failure."""
        self._seen = {(s, n) for s, n in self._seen if s + n <= offset or s >= offset + length}
        self._stamp = None

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            # Bounded: a caller that closes the volume while holding its lock must not wait
            # forever for a watcher waiting for that lock (it then gives up on its own).
            self.join(timeout=5.0)


__all__ = ["BadMemory", "Watcher", "regions", "region_of", "readonly_reason", "WATCH_EVERY"]
