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
from typing import NamedTuple

from daxfs.core import Core
from daxfs.errors import BusyError, CorruptVolumeError, fs_error
from daxfs.format.checkpoint import decode_checkpoint, encode_checkpoint, peek_checkpoint
from daxfs.format.layout import HEADER_SIZE, OWNER_OFFSET, SUPERBLOCK_OFFSETS, Layout
from daxfs.format.superblock import (SUPERBLOCK_BYTES, Superblock, decode_owner, decode_superblock,
                                     has_magic)
from daxfs.media import FilePool, Pool
from daxfs.volume.log import LogRing


class Loaded(NamedTuple):
    superblock: Superblock
    core: Core
    ring: LogRing
    generation: int
    checkpoint_pos: int


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
        return max(found, key=lambda sb: sb.generation)
    if not magic_seen:
        raise CorruptVolumeError("not a daxfs volume (no superblock found)")
    versions = [e for e in errors if "version" in e.what]
    raise versions[0] if versions else CorruptVolumeError(
        "both superblocks are damaged: " + "; ".join(e.what for e in errors))


def load(pool: Pool, *, check_damage: bool, stop_before_seq: int | None = None) -> Loaded:
    """Rebuild a volume's state from its pool: newest valid checkpoint, then the log after it.

    ``stop_before_seq``: replay only the records before that sequence number.
    """
    sb = read_superblock(pool)
    layout = sb.layout
    if layout.pool_size > pool.size:
        raise CorruptVolumeError(f"pool is {pool.size} bytes but the volume was made for "
                                 f"{layout.pool_size} (truncated?)")
    slots = layout.checkpoint_offsets
    want = sb.generation
    size = layout.checkpoint_size
    try:
        ckpt = decode_checkpoint(pool.view(slots[want % 2], size), slots[want % 2])
        if ckpt.generation != want:
            raise CorruptVolumeError(f"checkpoint slot holds generation {ckpt.generation}, "
                                     f"superblock wants {want}", where=slots[want % 2])
        # The other slot only tells how far back the log is still needed.
        other = peek_checkpoint(pool.view(slots[(want + 1) % 2], size))
        older_pos = other[2] if other is not None and other[0] == want - 1 else None
    except CorruptVolumeError as damaged:
        # Fall back to the other slot: the checkpoint before (or a newer one whose
        # superblock flip did not land).  The log still holds every record after it.
        off = slots[(want + 1) % 2]
        try:
            ckpt = decode_checkpoint(pool.view(off, size), off)
        except CorruptVolumeError:
            raise damaged from None
        if ckpt.generation not in (want - 1, want + 1):
            raise damaged from None
        older_pos = None
    # Building ~10 objects per inode makes the cyclic GC rescan the growing heap
    # over and over; none of them form cycles, so it can wait until the end.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        core = Core.from_checkpoint(ckpt.state, layout.block_size, layout.data_blocks,
                                    align_blocks=layout.align_blocks)
    finally:
        if gc_was_enabled:
            gc.enable()
    volume_id = int.from_bytes(sb.uuid.bytes[:8], "little")
    head, next_seq = LogRing.replay(pool, layout.log_offset, layout.log_size, volume_id,
                                    start=ckpt.log_pos, first_seq=ckpt.last_seq + 1, apply=core.apply,
                                    check_damage=check_damage, stop_before_seq=stop_before_seq)
    tail = ckpt.log_pos if older_pos is None or older_pos > ckpt.log_pos else older_pos
    if head - tail > layout.log_size:
        tail = ckpt.log_pos
    ring = LogRing(pool, layout.log_offset, layout.log_size, volume_id,
                   head=head, tail=tail, next_seq=next_seq)
    return Loaded(sb, core, ring, max(want, ckpt.generation), ckpt.log_pos)


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
    """The BusyError for a pool another opener holds, naming its pid when the owner page has it."""
    try:
        with FilePool(path, readonly=True) as peek:
            pid = decode_owner(peek.read(OWNER_OFFSET, 64)) if peek.size >= HEADER_SIZE else None
    except OSError:
        pid = None
    who = f"process {pid}" if pid else "another process"
    return BusyError(f"pool is open read-write by {who}", holders=[pid] if pid else [], filename=path)
