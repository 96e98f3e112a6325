"""Putting a volume on a pool and reading it back: format, superblocks, load.

``format_pool`` writes an empty volume (superblocks last, so a crash leaves
no half-volume).  ``load`` rebuilds the state a pool holds: the superblock
names the newest checkpoint; it is decoded (falling back to the other slot
when it is damaged), then the log after it is replayed.  ``open_pool`` opens
the pool file, turning "someone else writes it" into a BusyError naming the
writer's pid from the owner page.
"""

from __future__ import annotations

import errno
import gc
import os
import stat as st
import time
import uuid as uuidlib
from typing import Any, NamedTuple

from daxfs.core import Core
from daxfs.errors import BusyError, CorruptVolumeError, fs_error
from daxfs.format.checkpoint import Checkpoint, decode_checkpoint_streamed, encode_checkpoint, peek_checkpoint
from daxfs.format.log import BadRecordError
from daxfs.format.layout import HEADER_SIZE, OWNER_OFFSET, SUPERBLOCK_OFFSETS, Layout
from daxfs.format.superblock import (CLEAN, SUPERBLOCK_BYTES, Superblock, decode_owner, decode_superblock,
                                     has_magic)
from daxfs.media import FilePool, Pool, flock_holders
from daxfs.volume.heap import freeze_built
from daxfs.volume.log import LogRing


class Loaded(NamedTuple):
    superblock: Superblock
    core: Core
    ring: LogRing
    generation: int
    checkpoint_pos: int
    #: Why the state stops short of the log's end: record ``bad_seq`` (and all after it)
    #: has a valid checksum but does not decode or apply.  The state is the one before it;
    #: mount it read-only (``repair`` makes it writable).  None when the whole log applied.
    bad_record: str | None = None
    bad_seq: int | None = None
    #: What is wrong with record ``bad_seq`` alone (``bad_record`` adds what it means).
    bad_reason: str | None = None
    #: Why the newest checkpoint was not the one used (the other one plus the log was), or None.
    fallback: str | None = None


def format_pool(pool: Pool, *, block_size: int = 4096) -> None:
    """Write an empty volume onto ``pool`` (superblocks last, so a crash leaves no half-volume)."""
    layout = Layout.compute(pool.size, block_size)
    for off in SUPERBLOCK_OFFSETS:
        pool.zero(off, SUPERBLOCK_BYTES)
    pool.persist(0, HEADER_SIZE)
    meta_end = layout.checkpoint_offsets[1] + layout.checkpoint_size
    pool.zero(HEADER_SIZE, meta_end - HEADER_SIZE)
    pool.persist(HEADER_SIZE, meta_end - HEADER_SIZE)
    core = Core.new(block_size, layout.data_blocks, time_ns=time.time_ns(), uid=os.getuid(),
                    gid=os.getgid(), align_blocks=layout.align_blocks)
    generation = 1
    data = encode_checkpoint(core.to_checkpoint(), generation, -1, 0)
    slot = layout.checkpoint_offsets[generation % 2]
    pool.write(slot, data)
    pool.persist(slot, len(data))
    raw = Superblock(uuidlib.uuid4(), layout, generation).encode()
    for off in SUPERBLOCK_OFFSETS:
        pool.write(off, raw)
        pool.persist(off, len(raw))


def read_superblock(pool: Pool) -> Superblock:
    """The newest valid superblock copy; CorruptVolumeError saying why there is none."""
    if pool.size < HEADER_SIZE:
        raise CorruptVolumeError(f"not a daxfs volume: {pool.size} bytes is too small to hold one")
    found: list[Superblock] = []
    errors: list[CorruptVolumeError] = []
    magic_seen = False
    for off in SUPERBLOCK_OFFSETS:
        raw = pool.read(off, SUPERBLOCK_BYTES)
        magic_seen = magic_seen or has_magic(raw)
        try:
            found.append(decode_superblock(raw, off))
        except CorruptVolumeError as exc:
            errors.append(exc)
    if found:
        # the newest; of two as new, one that does not claim a clean close (a writer
        # clears the claim in the copies it can write before it logs anything)
        return max(found, key=lambda sb: (sb.generation, not sb.flags & CLEAN))
    if not magic_seen:
        raise CorruptVolumeError("not a daxfs volume (no superblock found)")
    versions = [e for e in errors if "version" in e.what]
    raise versions[0] if versions else CorruptVolumeError(
        "both superblocks are damaged: " + "; ".join(e.what for e in errors))


def load(pool: Pool, *, check_damage: bool, stop_before_seq: int | None = None) -> Loaded:
    """Rebuild a volume's state from its pool: newest valid checkpoint, then the log after it.

    When the newest checkpoint does not form a volume (it does not decode, its
    contents are inconsistent, or the log does not apply to it), the other slot
    plus the log is tried.  When a log record with a valid checksum does not
    decode or apply whichever checkpoint it follows, the state stops before it
    and ``bad_record`` says why: one bad record never costs the whole volume.
    ``stop_before_seq`` stops replay before that record on purpose.
    CorruptVolumeError when no checkpoint yields a state at all.
    """
    sb = read_superblock(pool)
    layout = sb.layout
    if layout.pool_size > pool.size:
        raise CorruptVolumeError(f"pool is {pool.size} bytes but the volume was made for "
                                 f"{layout.pool_size} (truncated?)")
    slots = layout.checkpoint_offsets
    want = sb.generation
    size = layout.checkpoint_size
    volume_id = int.from_bytes(sb.uuid.bytes[:8], "little")
    # The slot the superblock names, then the other: the checkpoint before it, or a
    # newer one whose superblock flip did not land.  The log holds every record after
    # either one.
    candidates = [(slots[want % 2], (want,)), (slots[(want + 1) % 2], (want - 1, want + 1))]
    first_error: CorruptVolumeError | None = None
    errors: list[CorruptVolumeError] = []
    bad: tuple[BadRecordError, Checkpoint, int | None] | None = None   # the furthest a bad record let us get
    for index, (off, generations) in enumerate(candidates):
        try:
            ckpt = decode_checkpoint_streamed(pool.view(off, size), off)
            if ckpt.generation not in generations:
                raise CorruptVolumeError(f"checkpoint slot holds generation {ckpt.generation}, "
                                         f"superblock wants {want}" if index == 0 else
                                         f"the other checkpoint slot holds generation {ckpt.generation}, "
                                         f"neither {want - 1} nor {want + 1}", where=off)
            older_pos = None
            if index == 0:
                # The other slot only tells how far back the log is still needed.
                other = peek_checkpoint(pool.view(slots[(want + 1) % 2], size))
                older_pos = other[2] if other is not None and other[0] == want - 1 else None
            core = _core_from(ckpt, layout)
            # After a clean close nothing follows the checkpoint it names: no valid record
            # beyond the log's end to look for (the whole ring: most of a large mount's time).
            # Believed only with the owner page empty: every read-write mount writes its pid
            # there before it logs anything (a daxfs that does not know the claim too) and
            # only a clean close clears it.
            clean = (index == 0 and bool(sb.flags & CLEAN) and decode_owner(pool.read(OWNER_OFFSET, 64)) is None
                     and not (core.bad_metadata and core.bad_metadata.overlaps(OWNER_OFFSET, 64)))
            head, next_seq = LogRing.replay(pool, layout.log_offset, layout.log_size, volume_id,
                                            start=ckpt.log_pos, first_seq=ckpt.last_seq + 1, apply=core.apply,
                                            check_damage=check_damage and not clean,
                                            stop_before_seq=stop_before_seq)
        except CorruptVolumeError as exc:
            # Kept without its traceback: its frames hold views of the pool, which must
            # not outlive this call (the pool cannot be closed while a view lives).
            exc = exc.with_traceback(None)
            exc.__context__ = None
            if isinstance(exc, BadRecordError) and (bad is None or exc.seq > bad[0].seq):
                bad = (exc, ckpt, older_pos)
            first_error = first_error or exc
            errors.append(exc)
            continue
        fallback = None if index == 0 else first_error.strerror  # type: ignore[union-attr]
        return _loaded(pool, sb, core, ckpt, older_pos, head, next_seq, want, volume_id, fallback=fallback)
    if bad is None:
        raise _both_failed(errors)
    # Both ways stop at a bad record: the state before it, from the checkpoint that got
    # furthest.  apply may have half-changed the state it failed on, so build it again.
    error, ckpt, older_pos = bad
    core = _core_from(ckpt, layout)
    head, next_seq = LogRing.replay(pool, layout.log_offset, layout.log_size, volume_id, start=ckpt.log_pos,
                                    first_seq=ckpt.last_seq + 1, apply=core.apply, check_damage=False,
                                    stop_before_seq=error.seq)
    after = LogRing.count_from(pool, layout.log_offset, layout.log_size, volume_id, start=head,
                               first_seq=error.seq) - 1
    why = (f"{error.strerror}; the volume is read-only with the state before it (through record "
           f"{error.seq - 1}); `daxfs fsck --repair` keeps that state and discards record {error.seq}"
           + (f" and the {after} after it" if after > 0 else ""))
    fallback = None if ckpt.generation == want else first_error.strerror  # type: ignore[union-attr]
    return _loaded(pool, sb, core, ckpt, older_pos, head, next_seq, want, volume_id, bad_record=why,
                   bad_seq=error.seq, bad_reason=error.strerror, fallback=fallback)


def _both_failed(errors: list[CorruptVolumeError]) -> CorruptVolumeError:
    """Neither checkpoint slot loads: the newest's fault (its ``where``), the other's beside it."""
    if len(errors) < 2:
        return errors[0]
    newest, other = errors[:2]
    combined = CorruptVolumeError(f"{_placed(newest)} (and {_placed(other)})")
    combined.where = newest.where
    return combined


def _placed(error: CorruptVolumeError) -> str:
    return error.what + ("" if error.where is None else f" at pool offset {error.where:#x}")


def _core_from(ckpt: Checkpoint, layout: Layout) -> Core:
    # Building ~10 objects per inode makes the cyclic GC rescan the growing heap
    # over and over; none of them form cycles, so it can wait until the end.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        core = Core.from_checkpoint(ckpt.state, layout.block_size, layout.data_blocks,
                                    align_blocks=layout.align_blocks)
        freeze_built(len(core.inodes))
        return core
    finally:
        if gc_was_enabled:
            gc.enable()


def _loaded(pool: Pool, sb: Superblock, core: Core, ckpt: Checkpoint, older_pos: int | None, head: int, next_seq: int,
            want: int, volume_id: int, **notes: Any) -> Loaded:
    layout = sb.layout
    # The next checkpoint (generation + 1, in slot (generation + 1) % 2) must go over the
    # slot not loaded from: over the one just loaded, a crash while writing it would
    # leave no checkpoint to mount when the other slot is the one that failed.
    generation = want if ckpt.generation == want else max(want + 1, ckpt.generation)
    tail = ckpt.log_pos if older_pos is None or older_pos > ckpt.log_pos else older_pos
    if head - tail > layout.log_size:
        tail = ckpt.log_pos
    ring = LogRing(pool, layout.log_offset, layout.log_size, volume_id, head=head, tail=tail, next_seq=next_seq)
    return Loaded(sb, core, ring, generation, ckpt.log_pos, **notes)


def open_pool(path: str, readonly: bool) -> FilePool:
    """Open the pool file at ``path``; BusyError naming the writer when another process has it."""
    info = os.stat(path)
    if st.S_ISDIR(info.st_mode):
        raise fs_error(errno.EISDIR, path)
    if st.S_ISREG(info.st_mode) and info.st_size < HEADER_SIZE:
        raise CorruptVolumeError(f"not a daxfs volume: {info.st_size} bytes is too small to hold one",
                                 path=path)
    try:
        return FilePool(path, readonly=readonly, lock=not readonly)
    except BlockingIOError:
        raise held_elsewhere(path) from None


def held_elsewhere(path: str) -> BusyError:
    """The BusyError for a pool another opener holds, saying who holds it and how.

    The kernel's lock list says which processes hold the pool's lock: the writer's is
    exclusive; read-only openers that map or pin hold it shared.  Where that list cannot
    be read, the owner page names the writer.  ``holders`` are their pids.
    """
    found = openers(path)
    return BusyError(f"pool is {describe_openers(found)}", holders=[pid for pid, _rw in found], filename=path)


def openers(path: str) -> list[tuple[int, bool]]:
    """Processes that hold the pool at ``path`` open: ``(pid, read_write)``, the writer first."""
    found = flock_holders(path)
    if found is None:           # no lock list: the owner page names the writer, if any
        try:
            with FilePool(path, readonly=True) as peek:
                pid = decode_owner(peek.read(OWNER_OFFSET, 64)) if peek.size >= HEADER_SIZE else None
        except OSError:
            pid = None
        found = [(pid, True)] if pid else []
    found = [(pid, rw) for pid, rw in found if pid > 0]      # 0: a process in another pid namespace
    return sorted(set(found), key=lambda held: (not held[1], held[0]))


def describe_openers(found: list[tuple[int, bool]]) -> str:
    """``openers`` in words: "open read-write by process 12 (this process)", ..."""
    writers = [pid for pid, rw in found if rw]
    readers = [pid for pid, rw in found if not rw]
    parts = []
    if writers:
        parts.append("open read-write by " + _processes(writers))
    if readers:
        parts.append(("mapped or pinned by a read-only opener, " if len(readers) == 1 else
                      "mapped or pinned by read-only openers: ") + _processes(readers))
    return "; ".join(parts) or "locked by another opener (one this process cannot see)"


def _processes(pids: list[int]) -> str:
    me = os.getpid()
    names = [f"process {pid}" + (" (this process)" if pid == me else "") for pid in pids]
    return ", ".join(names)
