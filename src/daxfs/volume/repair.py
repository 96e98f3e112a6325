"""Recovery: make a volume that mounts read-only because of a bad log record writable again.

A log record whose checksum is right but which does not decode or apply (damage
the checksum cannot see, or a writer's bug) stops mount before it: the volume
mounts read-only with everything before it.  ``repair`` is the admin's way
forward, as ``xfs_repair -L`` or ``e2fsck -p`` are: it keeps that state, and
discards the bad record and every record after it.  The same goes for a log
damaged in the middle (an unreadable record with valid ones after it), and for
a newest checkpoint that does not form a volume (the older one plus the log is
written over it).

How the discarded records are kept from ever being replayed:

1. The state is written as a checkpoint into the slot it was not loaded from
   and the superblock flipped to it, then again into the other slot: both slots
   hold it, so no fallback can reach back to a checkpoint the bad record follows,
   and a crash while writing the first leaves the pool as it was.
2. Its ``last_seq`` is the highest sequence of any valid record left anywhere in
   the ring, so the records written from now on carry sequences no stale record
   has: replay, which wants each next sequence exactly, can never continue into
   one, and the damage check (a valid record beyond the end) sees none.
3. The log is zeroed (after 1 and 2, so a crash in between is harmless).

A crash at any point leaves either the old pool (mount read-only as before, or a
newer checkpoint found by the fallback) or the repaired one.

When bad metadata memory makes the volume mount read-only (a checkpoint slot,
both superblocks, more than half the log), the bad metadata ranges the pool's
badblocks list no longer lists are forgotten here — the list is the admin's
word that the memory is repaired — and the state goes into both slots as
above.  What the list still lists stays bad.  (Bad metadata that leaves the
volume writable is cleared with ``clear_badblocks``.)
"""

from __future__ import annotations

from daxfs.core.namespace import fspath
from daxfs.errors import CorruptVolumeError
from daxfs.format.checkpoint import encode_checkpoint
from daxfs.format.layout import SUPERBLOCK_OFFSETS
from daxfs.format.log import highest_seq
from daxfs.format.superblock import CLEAN, Superblock
from daxfs.media import Pool
from daxfs.media.badblocks import source_for
from daxfs.volume.badmemory import readonly_reason
from daxfs.volume.holders import refuse_live_holders
from daxfs.volume.mount import load as _load, open_pool as _open_pool

__all__ = ["repair", "repair_pool"]


def repair_pool(pool: Pool) -> list[str]:
    """Repair the volume on ``pool`` (opened writable, by nobody else); return what was done.

    An empty list means there was nothing to repair.  CorruptVolumeError when no
    checkpoint forms a volume at all (there is no state to keep).
    """
    loaded = _load(pool, check_damage=False)
    sb = loaded.superblock
    layout = sb.layout
    ring = loaded.ring
    core = loaded.core
    view = pool.view(layout.log_offset, layout.log_size)
    try:
        top = highest_seq(view, ring.volume_id)
    finally:
        view.release()
    kept = ring.next_seq - 1            # the last record the state includes
    actions: list[str] = []
    if loaded.bad_record is not None:
        actions.append(f"discarded records {loaded.bad_seq} to {top}: {loaded.bad_reason}")
    elif top is not None and top > kept:
        actions.append(f"discarded records {kept + 1} to {top}: the log is unreadable at record {kept + 1} "
                       f"but holds valid records after it")
    if loaded.fallback is not None:
        actions.append(f"replaced the newest checkpoint with the other one plus the log ({loaded.fallback})")
    if readonly_reason(core.bad_metadata, layout) is not None:
        source = source_for(pool.name, layout.pool_size)
        listed = source.read() if source is not None else []
        for start, n in core.bad_metadata.runs():
            if not any(s < start + n and start < s + k for s, k in listed):
                core.bad_metadata.remove(start, n)
                actions.append(f"forgot bad metadata memory at pool bytes [{start:#x}, +{n}): its badblocks "
                               f"list no longer lists it (repaired)")
    if readonly_reason(core.bad_metadata, layout) is not None:
        raise CorruptVolumeError("the metadata memory that keeps the volume read-only is still listed as bad "
                                 "by the pool's badblocks list: repair the memory (and clear the list) first")
    if not actions:
        return []
    last_seq = max(kept, top if top is not None else -1)
    state = core.to_checkpoint()
    generation = loaded.generation
    for _ in range(2):
        generation += 1
        data = encode_checkpoint(state, generation, last_seq, ring.head)
        if len(data) > layout.checkpoint_size:
            raise CorruptVolumeError("the state to keep does not fit a checkpoint slot")
        slot = layout.checkpoint_offsets[generation % 2]
        pool.write(slot, data)
        pool.persist(slot, len(data))
        raw = Superblock(sb.uuid, layout, generation, sb.version, sb.flags & ~CLEAN).encode()
        bad = core.bad_metadata
        for off in SUPERBLOCK_OFFSETS:
            if bad and bad.overlaps(off, len(raw)):
                continue            # still bad memory: never written
            pool.write(off, raw)
            pool.persist(off, len(raw))
    log_end = layout.log_offset + layout.log_size
    for start, n in core.bad_metadata.outside(layout.log_offset, layout.log_size) if core.bad_metadata else \
            [(layout.log_offset, layout.log_size)]:
        n = min(n, log_end - start)     # (bad memory in the log is never written)
        pool.zero(start, n)
        pool.persist(start, n)
    actions.append(f"kept the state through record {kept} ({len(core.inodes)} inodes) as checkpoint "
                   f"generation {generation} in both slots; cleared the log")
    return actions


def repair(path: object) -> list[str]:
    """Repair the pool at ``path`` (see ``repair_pool``); BusyError while another process has it open."""
    p = fspath(path)
    pool = _open_pool(p, readonly=False)
    try:
        refuse_live_holders(p)       # repair rewrites the allocation: their blocks could go elsewhere
        return repair_pool(pool)
    except CorruptVolumeError as exc:
        raise CorruptVolumeError(f"{exc.what}; nothing to keep, the pool cannot be repaired",
                                 where=exc.where, path=p) from None
    finally:
        pool.close()

