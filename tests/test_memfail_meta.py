"""Memory failure in the metadata regions: no metadata is lost.

For each region of the pool header (``volume.badmemory.regions``): the failure is
recorded, the bad bytes are never written again, what lives in memory is
rewritten to a healthy copy or slot, and the volume carries on — or, where it
cannot stay crash-safe (a checkpoint slot, both superblocks), goes read-only
with an error naming what was hit, and ``daxfs fsck --repair`` makes it
writable again once the memory is repaired.  Every case remounts with all its
files and the failure still recorded.
"""

from __future__ import annotations

import errno
import warnings
from pathlib import Path

import pytest

import daxfs
from daxfs.format.layout import OWNER_OFFSET, STATUS_OFFSET, STATUS_SIZE
from daxfs.media import MemoryPool
from daxfs.media.badblocks import BadblockSource
from daxfs.testing import snapshot
from daxfs.volume import Volume, repair
from daxfs.volume.badmemory import regions

BS = 4096
POOL = 16 << 20


def _fresh(size: int = POOL) -> tuple[MemoryPool, Volume]:
    pool = MemoryPool(size)
    Volume.format(pool)
    vol = Volume.mount(pool)
    for i in range(4):
        with vol.open(f"/f{i}", "wb", buffering=0) as f:
            f.write(bytes([65 + i]) * (BS * (i + 1) + 7))
    return pool, vol


def _busy_work(vol: Volume, rounds: int) -> None:
    """Enough metadata changes to checkpoint, and to wrap the log ring, several times."""
    for i in range(rounds):
        with vol.open(f"/w{i % 7}", "wb", buffering=0) as f:
            f.write(b"w" * (100 + i))
        vol.chmod(f"/w{i % 7}", 0o600 + i % 64)


def _remount(pool: MemoryPool) -> Volume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", daxfs.DamagedVolumeWarning)
        return Volume.mount(MemoryPool(pool.image()))


def test_regions_cover_the_pool_in_order() -> None:
    _pool, vol = _fresh(64 << 20)
    got = regions(vol._layout)
    assert got[0][1] == 0 and got[-1][2] == vol._layout.pool_size
    assert all(a[2] == b[1] for a, b in zip(got, got[1:]))
    names = [name for name, _s, _e in got]
    for name in ("superblock A", "superblock B", "owner page", "status page", "log", "checkpoint slot A",
                 "checkpoint slot B", "data", "unused"):
        assert name in names
    vol.close()


@pytest.mark.parametrize("copy", [0, 1])
def test_a_bad_superblock_copy_is_never_written_again(copy: int) -> None:
    pool, vol = _fresh()
    offset = copy * BS
    vol.memory_failure(offset, BS)
    frozen = pool.read(offset, BS)
    assert not vol.readonly and vol.damaged is None
    _busy_work(vol, 300)
    vol.checkpoint()
    assert pool.read(offset, BS) == frozen                   # the bad copy: untouched
    healthy = (1 - copy) * BS
    assert pool.read(healthy, 64) == vol._journal.superblock.encode()[:64]   # the other: current
    state = snapshot(vol)
    again = _remount(pool)
    assert snapshot(again) == state and again.badblocks() == [(offset, BS)] and not again.readonly
    again.close()
    vol.clear_badblocks(offset, BS)                          # repaired: written again, current
    assert pool.read(offset, 64) == vol._journal.superblock.encode()[:64]
    assert vol.badblocks() == []
    vol.close()


def test_both_superblocks_bad_make_the_volume_read_only() -> None:
    pool, vol = _fresh()
    state = snapshot(vol)
    vol.memory_failure(0, 2 * BS)
    assert vol.readonly and "both superblock copies" in (vol.damaged or "")
    with pytest.raises(OSError) as err:
        vol.mkdir("/no")
    assert err.value.errno == errno.EROFS and "superblock" in err.value.strerror
    assert snapshot(vol) == state
    vol.close()
    again = _remount(pool)                                   # the log holds the record: still read-only
    assert again.readonly and snapshot(again) == state
    again.close()


def test_bad_owner_and_status_pages_are_not_written_again() -> None:
    pool, vol = _fresh()
    vol.memory_failure(OWNER_OFFSET, STATUS_OFFSET + STATUS_SIZE - OWNER_OFFSET)
    frozen = pool.read(OWNER_OFFSET, STATUS_OFFSET + STATUS_SIZE - OWNER_OFFSET)
    with vol.open("/f0", "rb", buffering=0) as f, f.pin(0, BS):
        vol._publish()                                       # would write the status page
    assert not vol.readonly
    state = snapshot(vol)
    vol.close()                                              # would clear the owner page
    assert pool.read(OWNER_OFFSET, len(frozen)) == frozen
    again = _remount(pool)
    assert snapshot(again) == state and not again.readonly
    again.close()


def test_a_bad_log_range_is_jumped_over_every_lap() -> None:
    pool, vol = _fresh()
    lay = vol._layout
    ring = vol._ring
    # a range ahead of the head, so the next laps must pass it
    ahead = (ring.head % lay.log_size + lay.log_size // 3) // BS * BS
    bad = (lay.log_offset + ahead, 2 * BS)
    generation = vol._generation
    vol.memory_failure(*bad)
    assert vol._generation >= generation + 2                  # checkpointed at once, twice
    frozen = pool.read(*bad)
    laps = ring.head // lay.log_size
    _busy_work(vol, 6000)
    assert ring.head // lay.log_size >= laps + 2, "the log did not come round twice"
    assert pool.read(*bad) == frozen                          # never written
    assert not vol.readonly and vol.fsck() == []
    state = snapshot(vol)
    again = _remount(pool)
    assert snapshot(again) == state and again.badblocks() == [bad]
    _busy_work(again, 3000)                                   # after a remount it is still avoided
    assert again._ring.bad and MemoryPool(again.pool.image()).read(*bad) == frozen
    again.close()
    vol.close()


def test_a_follower_reloads_across_a_jumped_log_range(tmp_path: Path) -> None:
    path = str(tmp_path / "follow.pool")
    with daxfs.mkfs(path, POOL) as vol:
        with daxfs.open_volume(path, readonly=True) as follower:
            lay = vol._layout
            vol.memory_failure(lay.log_offset + (vol._ring.head % lay.log_size + lay.log_size // 2) // BS * BS, BS)
            for i in range(2500):
                with vol.open(f"/x{i % 5}", "wb", buffering=0) as f:
                    f.write(b"x" * (i + 1))
                if i % 500 == 0:
                    assert follower.stat(f"/x{i % 5}").st_size == i + 1
            assert sorted(follower.listdir("/")) == [f"x{i}" for i in range(5)]
            assert follower.stat("/x4").st_size == 2500


def test_more_than_half_the_log_bad_makes_the_volume_read_only() -> None:
    pool, vol = _fresh()
    lay = vol._layout
    vol.memory_failure(lay.log_offset, lay.log_size // 2 + BS)
    assert vol.readonly and "metadata log" in (vol.damaged or "")
    vol.close()


@pytest.mark.parametrize("which", ["newest", "older"])
def test_a_bad_checkpoint_slot_saves_the_state_and_goes_read_only(which: str, tmp_path: Path) -> None:
    path = str(tmp_path / "slot.pool")
    with daxfs.mkfs(path, POOL) as vol:
        with vol.open("/keep", "wb", buffering=0) as f:
            f.write(b"k" * 10000)
        vol.checkpoint()
        with vol.open("/after", "wb", buffering=0) as f:                 # a record after the checkpoint
            f.write(b"a" * 100)
        lay = vol._layout
        newest = vol._generation % 2
        slot = newest if which == "newest" else 1 - newest
        offset = lay.checkpoint_offsets[slot] + BS            # one page inside the slot
        frozen = vol.pool.read(offset, BS)
        state = snapshot(vol)
        vol.memory_failure(offset, BS)
        assert vol.readonly and f"checkpoint slot {'AB'[slot]}" in (vol.damaged or "")
        assert vol._generation % 2 != slot                    # the newest checkpoint is in the healthy slot
        assert vol.pool.read(offset, BS) == frozen
        assert snapshot(vol) == state
        with pytest.raises(OSError) as err:
            vol.unlink("/keep")
        assert err.value.errno == errno.EROFS
    with pytest.warns(daxfs.DamagedVolumeWarning, match="checkpoint slot"):
        vol = daxfs.open_volume(path)
    with vol:
        assert vol.readonly and snapshot(vol) == state and vol.badblocks() == [(offset, BS)]
    # still listed by the pool's badblocks list: not repaired, repair refuses
    BadblockSource(path + ".badblocks", "side file").append(offset, BS)
    with pytest.raises(daxfs.CorruptVolumeError, match="still listed"):
        repair(path)
    BadblockSource(path + ".badblocks", "side file").remove(offset, BS)     # the memory is repaired
    actions = repair(path)
    assert any("forgot bad metadata" in a for a in actions)
    with daxfs.open_volume(path) as vol:
        assert not vol.readonly and vol.badblocks() == [] and snapshot(vol) == state
        vol.mkdir("/writable-again")


def test_unused_pool_bytes_are_recorded_and_nothing_else() -> None:
    pool, vol = _fresh(64 << 20)
    gaps = [(s, e) for name, s, e in regions(vol._layout) if name == "unused"]
    start = gaps[0][0] // BS * BS + BS
    vol.memory_failure(start, BS)
    assert not vol.readonly and vol.badblocks() == [(start, BS)]
    report = vol.badblock_report()
    assert report == [(start, BS, "unused", [])]
    vol.close()


def test_the_unused_tail_past_the_data_area_is_recorded_too() -> None:
    pool = MemoryPool(POOL + 2048)                          # not a whole number of blocks
    Volume.format(pool)
    vol = Volume.mount(pool)
    lay = vol._layout
    tail = lay.data_offset + lay.data_blocks * lay.block_size
    assert regions(lay)[-1] == ("unused", tail, POOL + 2048)
    with pytest.warns(daxfs.errors.MediaErrorWarning):
        assert vol.memory_failure(POOL + 2048 - 100, 100) == []
    assert vol.badblocks() == [(tail, BS)] and not vol.readonly
    assert vol.badblock_report() == [(tail, BS, "unused", [])]
    with pytest.warns(daxfs.errors.MediaErrorWarning):
        vol.clear_badblocks(tail, 1)
    assert vol.badblocks() == []
    vol.close()


def test_a_change_no_healthy_stretch_of_the_log_holds_is_enospc_and_changes_nothing() -> None:
    """Bad log memory scattered so that no gap between bad ranges holds the record: ENOSPC
    (what the caller can act on), nothing logged, nothing applied, the head where it was."""
    from daxfs.core.records import Batch, SetAttr
    _pool, vol = _fresh()
    j = vol._journal
    ring = j.ring
    ino = vol.stat("/f0").st_ino
    mode = vol.stat("/f0").st_mode
    record = Batch.of(*[SetAttr(ino, 0o600, None, None, None, None, None)] * 300)
    assert len(ring.encode(record)) > 2048
    head, seq = ring.head, ring.next_seq
    ring.bad = [(s, s + 1) for s in range(0, ring.size, 2048)]
    try:
        with j.lock, pytest.raises(OSError) as info:
            j.commit(record)
        assert info.value.errno == errno.ENOSPC
        assert (ring.head, ring.next_seq) == (head, seq) and vol.stat("/f0").st_mode == mode
    finally:
        ring.bad = []
    vol.chmod("/f0", 0o600)                     # the volume goes on
    assert vol.stat("/f0").st_mode & 0o7777 == 0o600 and vol.fsck() == []
    vol.close()
