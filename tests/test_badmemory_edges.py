"""Memory failures of a volume, at their edges (found by a mutation run over
``volume/badmemory.py``): each test pins down one thing a slip there would get wrong
while every other memory-failure test still passed.

- ``readonly_reason``: exactly half of the log bad still takes changes, a page more does
  not (and less than half, e.g. two fifths, never stops it).
- ``memory_failure``: a range that is whole blocks or pages is not "rounded out" (no
  warning).
- ``clear_badblocks``: bytes that are not bad are EINVAL naming where they are; bad blocks
  a file still owns are BusyError naming the file and range, an orphan by its inode, and
  ``holders`` lists them.
- ``memory_failure`` returns the owners in pool order (not by inode), and tells every
  reference over the bad block, whatever references not over it come before.
- the watcher: a range cleared and then listed again by the side file is a new failure,
  acted on at the next look; a forced close that times out on a pin (the watcher was
  stopped for it) watches again, with a new watcher (a daemon thread named for the
  list), and the close that succeeds stops it.
- metadata (``_metadata_failed``): a failed superblock copy rewrites the other at once (a
  copy lost before is current again: the volume mounts from it alone) and checkpoints
  nothing; a failure in the slot of the newest checkpoint, A or B, rewrites it into the
  other; one over both slots is read-only, naming both.
- a failure (or a clearing) that is several records — new runs around old bad blocks, data
  and the unused tail — logs them all; each needs its checkpoint room (``GROW_RUN``); a
  cleared block's zeros are durable before the clearing is logged (a crash right after);
  the rounding warnings point outside daxfs; an empty range or one not in the pool is
  EINVAL naming the call and the range.
- ``poisoned`` leaves out a bad block never written; ``badblock_report`` gives byte
  lengths; references next to a bad block are not told; ``regions`` of a pool of whole
  blocks end with the data, no empty gap.
- the badblock source: a listed range reaching past the pool is acted on inside it; a
  malformed line is warned about once, the rest acted on; each range listed once the
  volume is read-only is warned about; clearing is refused only for a range a device (not
  daxfs) still lists, not its neighbours; the watcher warns about a look that fails and
  keeps watching; ``Watcher.stop`` waits for a look in progress (and a watcher never
  started stops at once).
"""

from __future__ import annotations

import errno
import os
import threading
import warnings
from pathlib import Path

import pytest

import daxfs
from daxfs.core.badblocks import BlockRuns
from daxfs.core.fields import PAGE
from daxfs.errors import MediaErrorWarning
from daxfs.format.layout import SUPERBLOCK_SIZE
from daxfs.media import MemoryPool, RecordingPool
from daxfs.media.badblocks import BadblockSource, format_badblocks
from daxfs.testing import snapshot
from daxfs.volume import Volume
from daxfs.volume.badmemory import Watcher, readonly_reason, regions
from daxfs.volume.datapath import GROW_RUN

from _small_volume import check_checkpoint_room, pool_and_volume, read_file, small_volume, write_file

BS = 4096


def test_half_the_log_bad_still_takes_changes_a_page_more_does_not() -> None:
    vol = small_volume()
    lay = vol._layout
    half = lay.log_size // 2
    assert half % PAGE == 0
    assert readonly_reason(BlockRuns.of([(lay.log_offset, half)]), lay) is None
    two_fifths = lay.log_size * 2 // 5 // PAGE * PAGE
    assert readonly_reason(BlockRuns.of([(lay.log_offset + PAGE, two_fifths)]), lay) is None
    reason = readonly_reason(BlockRuns.of([(lay.log_offset, half + PAGE)]), lay)
    assert reason is not None and "more than half of the metadata log" in reason
    vol.close()


def test_a_whole_block_failure_is_not_said_to_be_rounded() -> None:
    vol = small_volume()
    write_file(vol, "/a", b"a" * 2 * BS)
    with vol.open("/a", "rb", buffering=0) as f:
        base = f.extents()[0].pool_offset
    with warnings.catch_warnings():
        warnings.simplefilter("error", MediaErrorWarning)
        vol.memory_failure(base, BS)
        vol.memory_failure(vol._layout.log_offset + PAGE, PAGE)       # a metadata page
    assert vol.badblocks() == [(vol._layout.log_offset + PAGE, PAGE), (base, BS)]
    vol.close()


def test_clearing_bytes_that_are_not_bad_names_them() -> None:
    vol = small_volume()
    lay = vol._layout
    bad = lay.block_offset(10)
    vol.memory_failure(bad, BS)
    with pytest.raises(OSError) as info:
        vol.clear_badblocks(bad, 3 * BS)
    assert info.value.errno == errno.EINVAL
    assert f"pool bytes [{bad + BS:#x}, +{2 * BS}) are not bad" in str(info.value)
    assert vol.badblocks() == [(bad, BS)]
    vol.close()


def test_clearing_blocks_a_file_or_an_orphan_still_owns_is_busy_naming_them() -> None:
    vol = small_volume()
    write_file(vol, "/own", b"o" * 2 * BS)
    with vol.open("/own", "rb", buffering=0) as f:
        base = f.extents()[0].pool_offset
    vol.memory_failure(base + BS, BS)
    with pytest.raises(daxfs.BusyError) as info:
        vol.clear_badblocks(base + BS, BS)
    assert info.value.holders == ["/own"]
    assert "bad blocks still owned by /own [4096, +4096)" in str(info.value)
    f = vol.open("/own", "rb", buffering=0)
    ino = f.stat().st_ino
    vol.unlink("/own")                                 # an orphan while f is open
    with pytest.raises(daxfs.BusyError) as info:
        vol.clear_badblocks(base + BS, BS)
    assert info.value.holders == [str(ino)]
    assert f"(unlinked inode {ino}) [4096, +4096)" in str(info.value)
    f.close()
    vol.clear_badblocks(base + BS, BS)
    assert vol.badblocks() == []
    vol.close()


def test_a_range_listed_again_after_clearing_is_a_new_failure(tmp_path: Path) -> None:
    path = str(tmp_path / "again.pool")
    with daxfs.mkfs(path, 16 << 20) as vol:
        write_file(vol, "/w", b"w" * 2 * BS)
        with vol.open("/w", "rb", buffering=0) as f:
            base = f.extents()[0].pool_offset
    side = BadblockSource(path + ".badblocks", "side file")
    side.append(base, BS)
    with daxfs.open_volume(path) as vol:
        watcher = vol.badmemory._watcher
        assert watcher is not None and vol.badblocks() == [(base, BS)]
        vol.unlink("/w")
        vol.clear_badblocks(base, BS)
        assert vol.badblocks() == [] and side.read() == []
        side.append(base, BS)                          # it fails again
        os.utime(side.path, ns=(1, 1))                 # (a stamp the watcher has not seen)
        watcher.look()
        assert vol.badblocks() == [(base, BS)]


def test_a_forced_close_that_times_out_on_a_pin_keeps_watching(tmp_path: Path) -> None:
    path = str(tmp_path / "pinned.pool")
    with daxfs.mkfs(path, 16 << 20) as vol:
        write_file(vol, "/p", b"p" * 2 * BS)
    side = BadblockSource(path + ".badblocks", "side file")
    vol = daxfs.open_volume(path)
    f = vol.open("/p", "rb", buffering=0)
    base = f.extents()[0].pool_offset
    held = f.pin(0, BS)
    first = vol.badmemory._watcher
    assert first is not None and first.daemon                  # never keeps the interpreter from exiting
    assert first.name == f"daxfs badblocks {side.path}"
    with pytest.raises(daxfs.BusyError):
        vol.close(force=True, timeout=0)               # the watcher was stopped for the close
    assert not vol.closed
    watcher = vol.badmemory._watcher
    assert watcher is not None and watcher is not first and watcher.is_alive() and watcher.daemon
    side.append(base + BS, BS)
    watcher.look()
    assert vol.badblocks() == [(base + BS, BS)]
    held.release()
    f.close()
    vol.close()
    assert vol.badmemory._watcher is None and not watcher.is_alive()


def test_owners_of_a_failure_come_in_pool_order() -> None:
    vol = small_volume()
    vol.open("/a", "wb", buffering=0).close()          # the lower inode number
    write_file(vol, "/b", b"b" * BS)                   # the lower pool offset
    write_file(vol, "/a", b"a" * BS)
    where = {}
    for p in ("/a", "/b"):
        with vol.open(p, "rb", buffering=0) as f:
            where[p] = f.extents()[0].pool_offset
    pa, pb = where["/a"], where["/b"]
    assert vol.stat("/a").st_ino < vol.stat("/b").st_ino and pb < pa
    lo, hi = min(pa, pb), max(pa, pb) + BS
    owners = vol.memory_failure(lo, hi - lo)
    assert [(o.path, o.pool_offset) for o in owners] == [("/b", pb), ("/a", pa)]
    vol.close()


def test_every_reference_over_the_bad_block_is_told_whatever_comes_before_it() -> None:
    vol = small_volume()
    write_file(vol, "/x", b"x" * BS)
    write_file(vol, "/y", b"y" * 2 * BS)
    told: list[tuple[str, int, int]] = []
    fx, fy = vol.open("/x", "rb", buffering=0), vol.open("/y", "rb", buffering=0)
    px = fx.pin(0, BS, on_poison=lambda r, off, n: told.append(("x", off, n)))      # not over it
    m = fy.map(on_poison=lambda r, off, n: told.append(("y map", off, n)))
    py = fy.pin(0, 2 * BS, on_poison=lambda r, off, n: told.append(("y pin", off, n)))
    vol.memory_failure(fy.extents()[0].pool_offset + BS, BS)
    assert sorted(told) == [("y map", BS, BS), ("y pin", BS, BS)]
    assert m.poisoned == [(BS, BS)] and py.poisoned == [(BS, BS)] and list(px.poisoned) == []
    for ref in (px, py):
        ref.release()
    m.close()
    fx.close()
    fy.close()
    vol.close()


def _mount_image(image: bytes) -> Volume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", daxfs.DamagedVolumeWarning)
        return Volume.mount(MemoryPool(image))


@pytest.mark.parametrize("bad", [0, 1])
def test_a_failed_superblock_copy_rewrites_the_other_at_once(bad: int) -> None:
    pool, vol = pool_and_volume(16 << 20)
    write_file(vol, "/keep", b"k" * BS)
    other = (1 - bad) * SUPERBLOCK_SIZE
    pool.write(other, bytes(SUPERBLOCK_SIZE))           # the other copy lost before (a torn write)
    generation = vol._generation
    vol.memory_failure(bad * SUPERBLOCK_SIZE, SUPERBLOCK_SIZE)
    raw = vol._journal.superblock.encode()
    assert pool.read(other, len(raw)) == raw            # current again, from memory
    assert vol._generation == generation and not vol.readonly      # and nothing else: no checkpoint
    image = bytearray(pool.image())
    image[bad * SUPERBLOCK_SIZE:(bad + 1) * SUPERBLOCK_SIZE] = b"\xff" * SUPERBLOCK_SIZE    # what the bad copy held is gone
    again = _mount_image(bytes(image))
    assert read_file(again, "/keep") == b"k" * BS and again.badblocks() == [(bad * SUPERBLOCK_SIZE, SUPERBLOCK_SIZE)]
    again.close()
    vol.close()


@pytest.mark.parametrize("slot", [0, 1])
def test_a_failure_in_the_newest_checkpoints_slot_rewrites_it_into_the_other(slot: int) -> None:
    pool, vol = pool_and_volume(16 << 20)
    write_file(vol, "/keep", b"k" * 3 * BS)
    vol.checkpoint()
    if vol._generation % 2 != slot:
        vol.checkpoint()
    write_file(vol, "/after", b"a" * 100)               # a record after that checkpoint
    assert vol._generation % 2 == slot
    state = snapshot(vol)
    offset = vol._layout.checkpoint_offsets[slot] + BS
    vol.memory_failure(offset, BS)
    assert vol.readonly and f"checkpoint slot {'AB'[slot]} is bad" in (vol.damaged or "")
    assert vol._generation % 2 == 1 - slot             # the newest checkpoint: in the healthy slot
    image = bytearray(pool.image())
    image[offset:offset + BS] = b"\xff" * BS            # what the bad page held is gone
    again = _mount_image(bytes(image))
    assert snapshot(again) == state and again.readonly and again.badblocks() == [(offset, BS)]
    again.close()
    vol.close()


def test_a_failure_over_both_checkpoint_slots_makes_the_volume_read_only() -> None:
    pool, vol = pool_and_volume(16 << 20)
    write_file(vol, "/keep", b"k" * BS)
    state = snapshot(vol)
    lay = vol._layout
    a, b = sorted(lay.checkpoint_offsets)
    assert b == a + lay.checkpoint_size                # (one range covers a page of each)
    vol.memory_failure(b - BS, 2 * BS)
    assert vol.readonly and "checkpoint slot A and B is bad memory" in (vol.damaged or "")
    assert (vol.damaged or "").endswith("once the memory is repaired, `daxfs fsck --repair` makes it writable again")
    assert snapshot(vol) == state
    again = _mount_image(pool.image())
    assert again.readonly and snapshot(again) == state
    again.close()
    vol.close()


def test_a_failure_made_of_several_new_runs_records_them_all() -> None:
    """Bad blocks, then a failure over them and their neighbours: two new runs, one change."""
    pool, vol = pool_and_volume()
    lay = vol._layout
    vol.memory_failure(lay.block_offset(11), BS)
    vol.memory_failure(lay.block_offset(10), 3 * BS)
    assert vol.badblocks() == [(lay.block_offset(10), 3 * BS)]
    again = _mount_image(pool.image())
    assert again.badblocks() == [(lay.block_offset(10), 3 * BS)]
    again.close()
    vol.close()


def test_a_failure_and_a_clearing_over_data_and_the_unused_tail_take_both() -> None:
    pool, vol = pool_and_volume((4 << 20) + 2048)       # not a whole number of blocks: a tail
    lay = vol._layout
    tail = lay.data_offset + lay.data_blocks * BS
    last = tail - BS
    with pytest.warns(MediaErrorWarning):
        vol.memory_failure(last, lay.pool_size - last)
    assert vol.badblocks() == [(tail, BS), (last, BS)]
    with pytest.warns(MediaErrorWarning):
        vol.clear_badblocks(last, lay.pool_size - last)
    assert vol.badblocks() == []
    again = _mount_image(pool.image())
    assert again.badblocks() == []
    again.close()
    vol.close()


def test_the_rounding_warning_points_outside_daxfs() -> None:
    """At the caller, not at daxfs's own code (the frames in between are not counted here)."""
    vol = small_volume()
    at = vol._layout.block_offset(12)
    with pytest.warns(MediaErrorWarning) as failed:
        vol.memory_failure(at + 1, 10)
    with pytest.warns(MediaErrorWarning) as cleared:
        vol.clear_badblocks(at + 1, 10)
    ours = os.path.dirname(daxfs.__file__) + os.sep
    assert [w.filename.startswith(ours) for w in list(failed) + list(cleared)] == [False, False]
    assert [str(w.message) for w in cleared] == [f"clear_badblocks of pool bytes [{at + 1}, +10) rounded out to "
                                                 f"whole blocks and pages"]
    vol.close()


class _Made:
    """Volumes with a file "f" (for ``check_checkpoint_room``), and a bad free block when
    ``bad``; ``last`` is the newest."""

    def __init__(self, bad: bool) -> None:
        self.bad = bad
        self.last: Volume | None = None

    def __call__(self) -> Volume:
        vol = small_volume()
        write_file(vol, "f", b"f" * 2 * BS)
        if self.bad:
            vol.memory_failure(vol._layout.block_offset(40), BS)
        self.last = vol
        return vol

    def block(self) -> int:
        assert self.last is not None
        return self.last._layout.block_offset(40)


def test_a_failure_needs_checkpoint_room_for_its_record() -> None:
    made = _Made(bad=False)
    check_checkpoint_room(made, lambda f: made.last.memory_failure(made.block(), BS),  # type: ignore[union-attr]
                          2 * GROW_RUN, "memory_failure", 2 * BS)


def test_a_clearing_needs_checkpoint_room_for_its_record() -> None:
    made = _Made(bad=True)
    check_checkpoint_room(made, lambda f: made.last.clear_badblocks(made.block(), BS),  # type: ignore[union-attr]
                          GROW_RUN, "clear_badblocks", 2 * BS)


def test_a_cleared_block_is_durably_zero_before_the_clearing_is_logged() -> None:
    pool = RecordingPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    write_file(vol, "/w", b"w" * 2 * BS)
    with vol.open("/w", "rb", buffering=0) as f:
        bad = f.extents()[0].pool_offset + BS
    vol.memory_failure(bad, BS)
    vol.unlink("/w")
    vol.clear_badblocks(bad, BS)
    lost = next(c for c in pool.crash_images(pool.mark()) if c.variant == "all-lost")
    again = _mount_image(lost.image)                   # a crash right after: every unpersisted store lost
    assert again.badblocks() == []                      # the clearing is logged...
    assert again.pool.read(bad, BS) == bytes(BS)        # ...so its zeros must be on the media
    again.close()
    vol.close()


def test_a_bad_unwritten_block_is_reported_but_not_poisoned() -> None:
    vol = small_volume()
    write_file(vol, "/w", b"w" * 2 * BS)
    with vol.open("/u", "wb", buffering=0) as f:
        f.fallocate(0, BS)                             # allocated, never written: reads zeros
    where = {}
    for p in ("/w", "/u"):
        with vol.open(p, "rb", buffering=0) as f:
            where[p] = f.extents()[0].pool_offset
    vol.memory_failure(where["/w"], 2 * BS)
    vol.memory_failure(where["/u"], BS)
    assert vol.poisoned() == [daxfs.Owner(vol.stat("/w").st_ino, "/w", 0, 2 * BS, where["/w"])]
    assert read_file(vol, "/u") == bytes(BS)
    assert where["/u"] == where["/w"] + 2 * BS          # (one bad run)
    [(start, length, region, owners)] = vol.badblock_report()
    assert (start, length, region) == (where["/w"], 3 * BS, "data")
    assert [(o.path, o.length) for o in owners] == [("/w", 2 * BS), ("/u", BS)]
    vol.close()


def test_references_next_to_the_bad_block_are_not_told() -> None:
    vol = small_volume()
    write_file(vol, "/n", b"n" * 3 * BS)
    told: list[tuple[str, int, int]] = []
    f = vol.open("/n", "rb", buffering=0)
    before = f.pin(0, BS, on_poison=lambda r, off, n: told.append(("before", off, n)))
    over = f.pin(BS, BS, on_poison=lambda r, off, n: told.append(("over", off, n)))
    after = f.pin(2 * BS, BS, on_poison=lambda r, off, n: told.append(("after", off, n)))
    vol.memory_failure(f.extents()[0].pool_offset + BS, BS)
    assert told == [("over", BS, BS)]
    assert list(before.poisoned) == [] and list(after.poisoned) == [] and over.poisoned == [(BS, BS)]
    for ref in (before, over, after):
        ref.release()
    f.close()
    vol.close()


def test_a_pool_of_whole_blocks_has_no_empty_region_at_its_end() -> None:
    vol = small_volume(4 << 20)
    lay = vol._layout
    got = regions(lay)
    assert all(start < end for _name, start, end in got)
    assert got[-1][2] == lay.pool_size
    vol.close()


def test_a_listed_range_reaching_past_the_pool_is_acted_on_inside_it(tmp_path: Path) -> None:
    path = str(tmp_path / "past.pool")
    size = 16 << 20
    daxfs.mkfs(path, size).close()
    BadblockSource(path + ".badblocks", "side file").append(size - BS, 2 * BS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MediaErrorWarning)      # (not "not acted on")
        with daxfs.open_volume(path) as vol:
            assert vol.badblocks() == [(size - BS, BS)]


def test_a_malformed_line_of_the_list_is_warned_about_once_and_the_rest_acted_on(tmp_path: Path) -> None:
    path = str(tmp_path / "line.pool")
    with daxfs.mkfs(path, 16 << 20) as vol:
        bad = vol._layout.block_offset(30)
    side = BadblockSource(path + ".badblocks", "side file")
    with open(side.path, "w", encoding="ascii") as fh:
        fh.write("not a range\n")
    side.append(bad, BS)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        vol = daxfs.open_volume(path)
    assert [(w.category, str(w.message)) for w in seen] == [
        (MediaErrorWarning, f"{side.path}: line 1: 'not a range' is not 'first-sector count'")]
    with vol:
        assert vol.badblocks() == [(bad, BS)]
        watcher = vol.badmemory._watcher
        assert watcher is not None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            watcher.look()                               # the list has not changed: not read again


def test_each_range_listed_after_the_volume_went_read_only_is_warned_about(tmp_path: Path) -> None:
    path = str(tmp_path / "ro.pool")
    daxfs.mkfs(path, 16 << 20).close()
    side = BadblockSource(path + ".badblocks", "side file")
    with daxfs.open_volume(path) as vol:
        vol.badmemory.stop()                            # (looks from this thread only)
        lay = vol._layout
        slot_page = lay.checkpoint_offsets[0] + BS
        vol.memory_failure(slot_page, BS)               # read-only from now on
        assert vol.readonly
        first, second = lay.block_offset(30), lay.block_offset(32)
        side.append(first, BS)
        side.append(second, BS)
        watcher = Watcher(vol.badmemory, side)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            watcher.look()
        assert [w.category for w in seen] == [MediaErrorWarning, MediaErrorWarning]
        assert [str(w.message).split(" not acted on: ")[0] for w in seen] == [
            f"{side.path}: bad range [{first:#x}, +{BS})", f"{side.path}: bad range [{second:#x}, +{BS})"]
        assert all("EROFS" in str(w.message) or "read-only" in str(w.message) for w in seen)
        assert vol.badblocks() == [(slot_page, BS)]


class _DeviceList(BadblockSource):
    """A device's list (the kernel's: daxfs cannot change it), in a file the test writes."""

    def __init__(self, path: str, ranges: list[tuple[int, int]]) -> None:
        super().__init__(path, "device")
        with open(path, "w", encoding="ascii") as fh:
            fh.write(format_badblocks(ranges))


def test_only_a_range_the_device_still_lists_is_refused_clearing(tmp_path: Path) -> None:
    vol = small_volume()
    lay = vol._layout
    listed = lay.block_offset(20)
    for b in (19, 20, 21, 25):
        vol.memory_failure(lay.block_offset(b), BS)
    vol.badmemory.source = _DeviceList(str(tmp_path / "badblocks"), [(listed, BS)])
    vol.clear_badblocks(lay.block_offset(19), BS)       # ends where the listed range starts
    vol.clear_badblocks(lay.block_offset(21), BS)       # starts where it ends
    vol.clear_badblocks(lay.block_offset(25), BS)
    with pytest.raises(daxfs.BusyError) as info:
        vol.clear_badblocks(listed, BS)
    assert info.value.strerror.startswith(f"{tmp_path / 'badblocks'} still lists pool bytes [{listed:#x}, +{BS}) as bad")
    assert vol.badblocks() == [(listed, BS)]
    vol.close()


class _FailingOnce(BadblockSource):
    """A list whose first look fails (it cannot be read, say); ``again`` is set at the next."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "side file")
        self.looks = 0
        self.again = threading.Event()

    def stamp(self) -> tuple[int, int, int] | None:
        self.looks += 1
        if self.looks == 1:
            raise PermissionError(errno.EACCES, "Permission denied", self.path)
        self.again.set()
        return None


def test_the_watcher_warns_about_a_look_that_fails_and_keeps_watching(tmp_path: Path) -> None:
    vol = small_volume()
    source = _FailingOnce(str(tmp_path / "list"))
    watcher = Watcher(vol.badmemory, source)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        watcher.start()
        looked_again = source.again.wait(10)
        watcher.stop()
    assert looked_again and not watcher.is_alive()
    assert [(w.category, str(w.message)) for w in seen] == [
        (MediaErrorWarning, f"{source.path}: [Errno 13] Permission denied: '{source.path}'")]
    vol.close()


class _ReadUntilStopped(BadblockSource):
    """A list whose read takes until its watcher is told to stop (``reading``: it started)."""

    def __init__(self, path: str, bad: tuple[int, int]) -> None:
        super().__init__(path, "side file")
        self.bad = bad
        self.reading = threading.Event()
        self.watcher: Watcher | None = None

    def stamp(self) -> tuple[int, int, int] | None:
        return (1, 1, 1)

    def read(self) -> list[tuple[int, int]]:
        self.reading.set()
        assert self.watcher is not None
        self.watcher._halt.wait()
        return [self.bad]


def test_stopping_the_watcher_waits_for_a_look_in_progress(tmp_path: Path) -> None:
    vol = small_volume()
    source = _ReadUntilStopped(str(tmp_path / "list"), (vol._layout.block_offset(30), BS))
    Watcher(vol.badmemory, source).stop()               # one never started: nothing to wait for
    watcher = source.watcher = Watcher(vol.badmemory, source)
    watcher.start()
    assert source.reading.wait(10)
    watcher.stop()
    assert not watcher.is_alive()                       # the look was over when stop returned
    assert vol.badblocks() == []                        # (stopped: the next mount acts on the list)
    vol.close()


def test_a_range_that_is_empty_or_not_in_the_pool_is_einval_naming_the_call_and_range() -> None:
    vol = small_volume()
    size = vol._layout.pool_size
    for call in (vol.memory_failure, vol.clear_badblocks):
        name = call.__name__
        with pytest.raises(OSError) as info:
            call(BS, 0)
        assert info.value.errno == errno.EINVAL
        assert info.value.strerror == f"{name}: the length must be positive, not 0"
        with pytest.raises(OSError) as info:
            call(size - BS, 2 * BS)
        assert info.value.errno == errno.EINVAL
        assert info.value.strerror == f"{name}: pool bytes [{size - BS}, +{2 * BS}) are not inside the pool ({size} bytes)"
    assert vol.badblocks() == []
    vol.close()


def test_poisoned_lists_only_the_written_blocks_of_a_run_that_mixes_in_unwritten_ones() -> None:
    # one file, one run: block 0 written, block 1 fallocated and never written; both fail.
    # Block 1 reads as zeros without EIO, so only block 0 is poisoned data
    vol = small_volume()
    with vol.open("/m", "wb", buffering=0) as f:
        f.fallocate(0, 2 * BS)
        f.pwrite(b"m" * BS, 0)
        [first, second] = f.extents()
        assert (first.length, second.length) == (BS, BS) and second.pool_offset == first.pool_offset + BS
    vol.memory_failure(first.pool_offset, 2 * BS)
    ino = vol.stat("/m").st_ino
    assert vol.poisoned() == [daxfs.Owner(ino, "/m", 0, BS, first.pool_offset)]
    with vol.open("/m", "rb", buffering=0) as f:
        assert f.pread(BS, BS) == bytes(BS)
        with pytest.raises(daxfs.PoisonError):
            f.pread(BS, 0)
    vol.close()
