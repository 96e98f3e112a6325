"""The data path (``volume/datapath.py``): edges the differential, reflink and crash tests leave open.

What these tests prove (each found untested by a mutation run of datapath.py):

- What a write, a write mapping and a copy-on-write may add to a checkpoint
  (``GROW_RUN`` a run, plus one) is held against the checkpoint area before anything
  changes: a byte less room than that is ENOSPC ("no space left for metadata") with
  nothing changed, exactly that much is taken.  This covers the append fast path
  (``_append_into_hole``), ``fill_plan`` (holes and unwritten runs), ``unshare``'s own
  record and ``populate``.
- A write mapping that grows the file past a shared partial last block it does not cover
  copies that block before zeroing its bytes past EOF: the other owner keeps them.
- A write over data and a hole places the new blocks right after the file's block before
  them when those are free (``fill_plan``'s goal), not in the first free gap.
- Growing a file zeroes its last block's stale tail unless that very block is poisoned:
  other bad blocks around it (the file's own included) do not stop it.
- A write through a handle opened before the volume went read-only is EROFS, saying why.
- A write may end exactly at the largest file size; a byte more is EFBIG, nothing written.
- An in-place rewrite ending exactly at EOF logs nothing (its mtime is deferred).
- A copy on write that waited for a reference under the 'wait' policy (the lock let go)
  looks at the file again: a write or truncate meanwhile is not lost, an append lands at
  the new EOF (a real bug: it copied the blocks found before the wait); inside a truncate,
  a write mapping or fallocate the copy is made again after the wait and the call goes on.
- Copy on write (``unshare``): under 'refuse' a pin on exactly the copied blocks refuses
  the write, one just before or after does not; a block that only a pin on another file
  still holds is copied all the same; copies are durable when the call returns; a shared
  run copied into scattered free blocks keeps each block's bytes.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import Any

import pytest

from daxfs.errors import BusyError
from daxfs.media import MemoryPool
from daxfs.testing import recorded_volume
from daxfs.volume import Volume

from _small_volume import (check_checkpoint_room, clock_past, distinct as _distinct, file_between_free_blocks,
                           small_volume as _volume, write_file as _write)

BS = 4096


def _setup(kind: str) -> Volume:
    """A volume with ``f``: 4 written blocks; ``unwritten``: 2 more fallocate'd past them;
    ``shared_tail``: cloned to ``g``, then cut to 2 blocks + 10 bytes (block 2 stays shared)."""
    vol = _volume()
    _write(vol, "f", _distinct(1, 4 * BS))
    if kind == "unwritten":
        with vol.open("f", "r+b", buffering=0) as f:
            f.fallocate(4 * BS, 2 * BS)
    elif kind == "shared_tail":
        vol.clone_file("f", "g")
        with vol.open("f", "r+b", buffering=0) as f:
            f.truncate(2 * BS + 10)
    return vol


# (name, set-up, operation on f, the checkpoint room it needs: GROW_RUN = 80 a run)
_ROOM_CASES = [
    ("append_at_eof", "", lambda f: f.pwrite(b"y" * 100, 4 * BS), 160),             # _append_into_hole
    ("append_past_eof", "", lambda f: f.pwrite(b"y" * 100, 6 * BS + 10), 160),
    ("into_unwritten", "unwritten", lambda f: f.pwrite(b"y" * 100, 4 * BS + 10), 160),   # fill_plan
    ("unwritten_and_hole", "unwritten", lambda f: f.pwrite(b"y" * 3 * BS, 4 * BS + 10), 240),
    ("cow_truncate_up", "shared_tail", lambda f: f.truncate(3 * BS), 160),           # unshare
    ("write_mapping", "", lambda f: f.map(4 * BS, BS, write=True).close(), 160),     # populate
]


@pytest.mark.parametrize("name, kind, op, room", _ROOM_CASES, ids=[c[0] for c in _ROOM_CASES])
def test_writes_hold_their_checkpoint_growth_against_the_area(
        name: str, kind: str, op: Callable[[Any], None], room: int) -> None:
    check_checkpoint_room(lambda: _setup(kind), op, room, name, 16 * BS, says="metadata")


def _read(vol: Volume, path: str) -> bytes:
    with vol.open(path, "rb", buffering=0) as f:
        return f.read()


def test_a_write_mapping_growing_past_a_shared_tail_block_copies_it_first() -> None:
    """A write mapping that does not cover the file's shared partial last block still grows
    the size over it: the block is copied before its bytes past EOF are zeroed."""
    vol = _volume()
    data = _distinct(2, 3 * BS)
    _write(vol, "a", data)
    vol.clone_file("a", "b")
    with vol.open("b", "r+b", buffering=0) as f:
        f.truncate(2 * BS + 10)             # block 2 stays shared; a shows the bytes past b's EOF
        f.map(3 * BS, BS, write=True).close()
        assert f.stat().st_size == 4 * BS
        assert f.pread(4 * BS, 0) == data[:2 * BS + 10] + bytes(2 * BS - 10)
    assert _read(vol, "a") == data, "a's bytes past b's old EOF were zeroed in place"
    assert vol.fsck() == []
    vol.close()


def test_a_write_over_data_and_a_hole_continues_the_files_run() -> None:
    """fill_plan (a write that is not one hole) places new blocks right after the file's
    block before them when those are free, not in the first free gap."""
    vol, b_block = file_between_free_blocks()
    with vol.open("b", "r+b", buffering=0) as f:
        f.pwrite(b"y" * 2 * BS, BS - 100)   # the end of block 0 (written), then blocks 1, 2 (holes)
        ext = f.extents()
    assert [(e.file_offset, e.length, e.pool_offset) for e in ext] == [(0, 3 * BS, b_block)], ext
    vol.close()


def test_growing_over_a_good_last_block_zeroes_its_tail_whatever_else_is_bad() -> None:
    """The poison check before zeroing the bytes past EOF looks at the last block itself:
    with every block around it bad (the file's other block included), a good last block
    still has its stale tail zeroed when the size grows over it."""
    vol = _volume()
    _write(vol, "filler", b"f" * 4 * BS)             # so the file's blocks are not the first ones
    data = _distinct(3, 3 * BS)
    _write(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        p0 = f.extents()[0].pool_offset
        f.punch_hole(0, BS)                           # the last run starts at file block 1
        f.truncate(2 * BS + 100)                      # block 2 keeps stale bytes past EOF
        base = vol._journal.layout.data_offset
        last = p0 + 2 * BS
        vol.memory_failure(base, last - base)         # every data block before the last one ...
        vol.memory_failure(last + BS, 3 * BS)         # ... and three after it
        f.truncate(3 * BS)
        assert f.pread(BS - 100, 2 * BS + 100) == bytes(BS - 100), "stale bytes past the old EOF show"
    vol.close()


def test_a_write_on_a_handle_opened_before_the_volume_went_read_only_is_erofs() -> None:
    """A volume can turn read-only while mounted (damage found, metadata on bad memory):
    writes through handles already open are EROFS, saying why, and change nothing."""
    vol = _volume()
    data = _distinct(4, 2 * BS)
    _write(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        j = vol._journal
        j.readonly, j.damaged = True, "metadata on bad memory (simulated)"
        try:
            for off in (0, 2 * BS, None):
                with pytest.raises(OSError) as info:
                    if off is None:
                        f._vol.data.append(f._ino, memoryview(b"z"))
                    else:
                        f.pwrite(b"z" * 10, off)
                assert info.value.errno == errno.EROFS and "simulated" in str(info.value)
            assert f.pread(4 * BS, 0) == data
        finally:
            j.readonly, j.damaged = False, None
    vol.close()


def test_a_write_may_end_at_the_largest_file_size_and_not_past_it() -> None:
    from daxfs.volume.arguments import MAX_FILE_SIZE

    vol = _volume()
    with vol.open("f", "w+b", buffering=0) as f:
        with pytest.raises(OSError) as info:
            f.pwrite(b"zz", MAX_FILE_SIZE - 1)
        assert info.value.errno == errno.EFBIG and f.stat().st_size == 0
        assert f.pwrite(b"z", MAX_FILE_SIZE - 1) == 1
        assert f.stat().st_size == MAX_FILE_SIZE and f.pread(2, MAX_FILE_SIZE - 1) == b"z"
    assert vol.fsck() == []
    vol.close()


def test_an_in_place_rewrite_ending_at_eof_logs_nothing() -> None:
    """A write over a file's own written blocks that ends exactly at EOF does not grow it:
    nothing is logged (its mtime is deferred), as for any in-place rewrite."""
    vol = _volume()
    _write(vol, "f", _distinct(5, 2 * BS + 100))
    j = vol._journal
    with vol.open("f", "r+b", buffering=0) as f:
        seq = j.ring.next_seq
        f.pwrite(b"w" * 200, 2 * BS - 100)
        assert j.ring.next_seq == seq and f.stat().st_size == 2 * BS + 100
    vol.close()


def _meanwhile_on_first_wait(vol: Volume, meanwhile: Callable[[], object]) -> list[str]:
    """Make the volume's first copy-on-write ``settle`` stand for a wait for a reference:
    it runs ``meanwhile`` (what another thread did while the lock was let go) and returns
    True, as a wait does.  The list returned names each settle that came back True."""
    table = vol.data.references
    real = table.settle
    waited: list[str] = []

    def settle(ino: int, first: int, end: int | None, policy: str | None, what: str,
               timeout: float | None = None) -> bool:
        if what == "copy on write" and not waited:
            waited.append(what)
            meanwhile()
            return True
        return real(ino, first, end, policy, what, timeout)

    table.settle = settle  # type: ignore[method-assign]
    return waited


_WAIT_CASES = [
    # (name, the write that waits, what another thread does meanwhile, the file's bytes after both):
    # a growing write (unshare's own wait) and another write into the same shared block; a write
    # inside the file (cow_in_run's wait) and the file cut short; an append and another append;
    # a write past EOF (the copy of the old last block waits) and another one over it and on
    ("write_grows_other_write_same_block",
     lambda f: f.pwrite(b"B" * 20, 2 * BS - 10), lambda f: f.pwrite(b"C" * 10, BS + 100),
     lambda d: d[:BS + 100] + b"C" * 10 + d[BS + 110:2 * BS - 10] + b"B" * 20),
    ("write_inside_file_cut_short",
     lambda f: f.pwrite(b"B" * 20, BS + 100), lambda f: f.truncate(BS + 50),
     lambda d: d[:BS + 50] + bytes(50) + b"B" * 20),
    ("append_other_append",
     lambda f: f._vol.data.append(f._ino, memoryview(b"B" * 20)),
     lambda f: f._vol.data.append(f._ino, memoryview(b"C" * 30)),
     lambda d: d + b"C" * 30 + b"B" * 20),
    ("past_eof_other_write_over_it",
     lambda f: f.pwrite(b"B" * 20, 3 * BS), lambda f: f.pwrite(b"C" * 2 * BS, 3 * BS - 100),
     lambda d: d + bytes(3 * BS - 100 - len(d)) + b"C" * 100 + b"B" * 20 + b"C" * (2 * BS - 120)),
]


@pytest.mark.parametrize("name, write, meanwhile, want", _WAIT_CASES, ids=[c[0] for c in _WAIT_CASES])
def test_a_copy_on_write_that_waited_looks_at_the_file_again(
        name: str, write: Callable[[Any], object], meanwhile: Callable[[Any], object],
        want: Callable[[bytes], bytes]) -> None:
    """Under the 'wait' pin policy a copy on write waits for references to its blocks to
    go, letting the lock go: another thread may write or cut the file meanwhile.  The
    write looks at the file again after the wait (its size, EOF for an append, its blocks
    and which are shared): nothing done meanwhile is lost or brought back.  (Before, it
    copied the blocks it had found before the wait, and an append wrote at the old EOF.)"""
    vol = _volume()
    data = _distinct(8, 2 * BS - 100 if name.startswith(("append", "past_eof")) else 2 * BS)
    _write(vol, "f", data)
    vol.clone_file("f", "g")                        # every block of f is shared
    with vol.open("f", "r+b", buffering=0) as f:
        waited = _meanwhile_on_first_wait(vol, lambda: meanwhile(f))
        write(f)
        assert waited, "nothing waited: the case does not test the wait"
        got = f.pread(8 * BS, 0)
    assert got == want(data), name
    assert _read(vol, "g") == data, "the clone changed"
    assert vol.fsck() == []
    vol.close()


def test_a_block_only_a_pin_on_another_file_holds_is_copied_on_write() -> None:
    """A one-block file is cloned and the clone pinned; the clone's own write moves it onto
    a block of its own, so nothing is shared any more, but the pin still shows the old block,
    now the source's alone.  A write into the source copies on write all the same (the pin
    keeps showing the bytes it was taken on)."""
    vol = _volume()
    _write(vol, "a", b"a" * BS)
    vol.clone_file("a", "b")
    with vol.open("b", "r+b", buffering=0) as b, b.pin(0, BS) as pin:
        b.pwrite(b"b" * BS, 0)
        assert vol._journal.core.rmap.shared_blocks == 0 and vol._journal.core.busy.holds
        with vol.open("a", "r+b", buffering=0) as a:
            a.pwrite(b"Z" * 100, 10)
            assert bytes(pin.buffer[:BS]) == b"a" * BS, "the pin shows the source's write"
            assert a.pread(BS, 0) == b"a" * 10 + b"Z" * 100 + b"a" * (BS - 110)
            assert b.pread(BS, 0) == b"b" * BS
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


_WAIT_OTHER_CALLERS = [
    # (name, an operation that copies on write from within: unshare starts over itself)
    ("truncate_up", lambda f: f.truncate(3 * BS)),
    ("write_mapping", lambda f: f.map(BS, BS, write=True).close()),
    ("fallocate", lambda f: f.fallocate(BS, BS)),
]


@pytest.mark.parametrize("name, op", _WAIT_OTHER_CALLERS, ids=[c[0] for c in _WAIT_OTHER_CALLERS])
def test_a_copy_on_write_that_waited_inside_another_operation_finds_its_blocks_again(
        name: str, op: Callable[[Any], object]) -> None:
    """An operation that is not a write (truncate up, a write mapping, fallocate) copies
    the shared blocks it needs private; when that waited for a reference, the copy is made
    of the blocks as they are after the wait (a write meanwhile stays), and the operation
    goes on: no start-over signal escapes to the caller."""
    vol = _volume()
    data = _distinct(9, 2 * BS - 10)
    _write(vol, "f", data)
    vol.clone_file("f", "g")                        # both blocks shared; block 1 is the partial last one
    with vol.open("f", "r+b", buffering=0) as f:
        waited = _meanwhile_on_first_wait(vol, lambda: f.pwrite(b"C" * 10, BS + 100))
        op(f)
        assert waited, "nothing waited: the case does not test the wait"
        got = f.pread(3 * BS, 0)
        want = data[:BS + 100] + b"C" * 10 + data[BS + 110:]
        assert got[:len(want)] == want, name
        assert got[len(want):] == bytes(len(got) - len(want)), "stale bytes past the old EOF show"
    assert _read(vol, "g") == data, "the clone changed"
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("pinned", [1, 3, 5])
def test_a_copy_on_write_refuses_for_a_reference_to_exactly_the_blocks_it_copies(pinned: int) -> None:
    """Under the 'refuse' policy a write that copies shared blocks on write is refused for a
    pin on those very blocks of the file (EBUSY, nothing changed), not for one on the
    blocks just before or after them.  The write covers block 3 (shared with a clone) and
    block 4 (the file's own), so one pass over one shared run (``cow_in_run``) does not
    apply: ``unshare`` settles the policy for block 3 alone."""
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool, policy="refuse")
    data = _distinct(10, 6 * BS)
    _write(vol, "f", data)
    vol.clone_file("f", "g")
    with vol.open("f", "r+b", buffering=0) as f:
        f.pwrite(b"4" * BS, 4 * BS)                 # block 4: private now (one shared run each side)
        before = f.pread(6 * BS, 0), f.extents(), vol.statfs()
        with f.pin(pinned * BS, BS) as pin:
            if pinned == 3:
                with pytest.raises(BusyError) as info:
                    f.pwrite(b"w" * BS, 3 * BS + 100)
                assert "copy on write refused" in str(info.value)
                assert (f.pread(6 * BS, 0), f.extents(), vol.statfs()) == before
            else:
                f.pwrite(b"w" * BS, 3 * BS + 100)
                assert f.pread(BS + 200, 3 * BS) == data[3 * BS:3 * BS + 100] + b"w" * BS + b"4" * 100
            assert bytes(pin.buffer[:BS]) == data[pinned * BS:(pinned + 1) * BS]
    assert _read(vol, "g") == data, "the clone changed"
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("how", ["fallocate", "write_mapping"])
def test_copies_made_on_write_are_durable_when_the_operation_returns(how: str) -> None:
    """fallocate and a write mapping over three shared blocks give the file private copies
    of them (one run of three fresh blocks) and change no byte: once the call returns, a
    crash that loses every store not yet persisted still shows the file's bytes in every
    copied block, not what the fresh blocks held before."""
    pool, vol = recorded_volume(4 << 20)
    data = _distinct(11, 3 * BS)
    _write(vol, "f", data)
    vol.clone_file("f", "g")
    with vol.open("f", "r+b", buffering=0) as f:
        if how == "fallocate":
            f.fallocate(0, 3 * BS)
        else:
            f.map(0, 3 * BS, write=True).close()
        assert not any("shared" in e.flags for e in f.extents()), "nothing was copied"
    images = list(pool.crash_images(len(pool.events)))
    assert images[0].variant == "all-lost"
    crashed = Volume.mount(MemoryPool(images[0].image))
    assert _read(crashed, "f") == data, "a copy was not persisted"
    assert _read(crashed, "g") == data and crashed.fsck() == []
    crashed.close()
    vol.close()


def test_a_shared_run_copied_into_scattered_free_blocks_keeps_each_blocks_bytes() -> None:
    """When free space is only single blocks apart, a copy on write of a three-block shared
    run lands in three separate runs: each copy holds the bytes of its own file block."""
    vol = _volume()
    data = _distinct(12, 3 * BS)
    _write(vol, "f", data)
    vol.clone_file("f", "g")
    free = vol.statfs().free // BS
    _write(vol, "filler", b"x" * (free - 1) * BS)   # one block left for the metadata's own needs
    with vol.open("filler", "r+b", buffering=0) as filler:
        for blk in range(0, 8, 2):
            filler.punch_hole(blk * BS, BS)         # four free blocks, none next to another
    with vol.open("f", "r+b", buffering=0) as f:
        f.fallocate(0, 3 * BS)
        copies = f.extents()
        assert len(copies) == 3 and not any("shared" in e.flags for e in copies), copies
        assert f.pread(3 * BS, 0) == data
    assert _read(vol, "g") == data and vol.fsck() == []
    vol.close()


def test_a_growing_write_over_two_shared_runs_and_a_private_block() -> None:
    """A write that grows the file over a shared block, a private one and the shared
    partial last block: both shared blocks are copied (the first ends before EOF: nothing
    of it is zeroed), the write lands, nothing stale shows past it when the file grows
    again, and the clone keeps its bytes."""
    vol = _volume()
    data = _distinct(13, 3 * BS)
    _write(vol, "f", data)
    vol.clone_file("f", "g")
    with vol.open("f", "r+b", buffering=0) as f:
        f.pwrite(b"p" * BS, BS)                     # block 1 private: shared runs 0 and 2
        f.truncate(2 * BS + 10)
        f.pwrite(b"W" * (BS + 160), BS - 100)       # blocks 0 to 2: grows to 2 * BS + 60
        want = data[:BS - 100] + b"W" * (BS + 160)
        assert f.pread(4 * BS, 0) == want
        f.truncate(3 * BS)
        assert f.pread(4 * BS, 0) == want + bytes(3 * BS - len(want))
    assert _read(vol, "g") == data, "the clone changed"
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("size", [100, BS + 100])
def test_a_write_past_a_shared_partial_last_block_copies_it_and_nothing_else(size: int) -> None:
    """A write starting past the file's shared partial last block (block 0 included) grows
    the size over that block's tail: the block is copied before the tail is zeroed, so the
    clone, which shows those bytes, keeps them; the file's other shared blocks stay shared."""
    vol = _volume()
    data = _distinct(14, 2 * BS)
    _write(vol, "g", data)
    vol.clone_file("g", "f")
    with vol.open("f", "r+b", buffering=0) as f:
        f.truncate(size)                            # the last block stays shared with g
        f.pwrite(b"w" * 10, 3 * BS)
        assert f.pread(4 * BS, 0) == data[:size] + bytes(3 * BS - size) + b"w" * 10
        shared = [e.file_offset // BS for e in f.extents() if "shared" in e.flags]
        assert shared == ([0] if size > BS else []), f.extents()
    assert _read(vol, "g") == data, "the clone's bytes past f's old EOF were zeroed in place"
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("how", ["write_mapping", "fallocate", "zero_range"])
def test_growing_over_a_shared_partial_last_block_it_covers_leaves_one_copy(how: str) -> None:
    """An operation that covers the file's shared partial last block and grows the file
    past it names that block twice to ``unshare`` (in its range, and as the last block the
    size grows over): the file ends up with one copy of it, one block more in use (and one
    for the block after it), nothing leaked."""
    vol = _volume()
    data = _distinct(15, 3 * BS)
    _write(vol, "g", data)
    vol.clone_file("g", "f")
    with vol.open("f", "r+b", buffering=0) as f:
        f.truncate(2 * BS + 10)                     # block 2 stays shared with g
        used = vol.statfs().used
        if how == "write_mapping":
            f.map(2 * BS, BS + 100, write=True).close()
        elif how == "fallocate":
            f.fallocate(2 * BS, BS + 100)
        else:
            f.zero_range(2 * BS + 5, BS + 95)
        assert f.stat().st_size == 3 * BS + 100
        keep = 2 * BS + (5 if how == "zero_range" else 10)
        assert f.pread(4 * BS, 0) == data[:keep] + bytes(BS + 100 - (keep - 2 * BS))
        assert vol.statfs().used == used + 2 * BS, vol.statfs()    # the copy, and block 3
    assert _read(vol, "g") == data, "the clone changed"
    assert vol.fsck() == []
    vol.close()


def test_an_in_place_write_just_before_a_poisoned_block_goes_ahead() -> None:
    """An in-place rewrite of a written run whose next blocks are poisoned touches only its
    own blocks: it is not refused for the bad ones after it, and they stay bad and unread."""
    vol = _volume()
    data = _distinct(16, 4 * BS)
    _write(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        base = f.extents()[0].pool_offset
        vol.memory_failure(base + 2 * BS, 2 * BS)     # blocks 2 and 3
        f.pwrite(b"w" * 100, BS + 10)               # block 1 only, in place
        assert f.pread(2 * BS, 0) == data[:BS + 10] + b"w" * 100 + data[BS + 110:2 * BS]
        with pytest.raises(OSError) as info:
            f.pread(10, 2 * BS)
        assert info.value.errno == errno.EIO
    vol.close()


@pytest.mark.parametrize("durability", ["sync", "lazy"])
def test_an_in_place_write_is_durable_at_return_or_at_fsync(durability: str) -> None:
    """An in-place rewrite under ``durability="sync"`` is persisted before pwrite returns;
    under "lazy" it is persisted by fsync.  A crash losing every store not yet persisted
    shows the new bytes (sync: at once; lazy: after fsync)."""
    pool, vol = recorded_volume(4 << 20, durability=durability)
    data = _distinct(17, 2 * BS)
    _write(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        f.fsync()
        f.pwrite(b"w" * 3000, BS - 1000)            # blocks 0 and 1, both the file's own
        want = data[:BS - 1000] + b"w" * 3000 + data[BS + 2000:]

        def crashed_bytes() -> bytes:
            image = next(iter(pool.crash_images(len(pool.events))))
            assert image.variant == "all-lost"
            crashed = Volume.mount(MemoryPool(image.image))
            try:
                return _read(crashed, "f")
            finally:
                crashed.close()

        if durability == "sync":
            assert crashed_bytes() == want, "a sync write was not persisted when it returned"
        else:
            f.fsync()
            assert crashed_bytes() == want, "fsync did not persist a lazy write"
    vol.close()


_LOGGED_WRITES = [
    # writes that log a record (general path, not the append fast path): growing in place inside
    # the last block, over data and a hole, into unwritten blocks
    ("grows_in_place", lambda f: f.pwrite(b"z" * 100, 2 * BS - 150)),
    ("data_and_hole", lambda f: f.pwrite(b"z" * 300, 2 * BS - 150)),
    ("into_unwritten", lambda f: f.pwrite(b"z" * 100, 4 * BS + 10)),
]


@pytest.mark.parametrize("name, op", _LOGGED_WRITES, ids=[c[0] for c in _LOGGED_WRITES])
def test_a_logged_write_after_an_in_place_write_keeps_its_own_mtime(
        name: str, op: Callable[[Any], object]) -> None:
    """An in-place write's mtime is held until close; a later write that logs a record
    (it grows the file or maps blocks) logs its own, newer mtime and drops the held one:
    neither stat nor what close logs goes back to the older time."""
    vol = _volume()
    _write(vol, "f", _distinct(18, 2 * BS - 100))
    with vol.open("f", "r+b", buffering=0) as f:
        f.fallocate(4 * BS, 2 * BS, keep_size=True)     # unwritten blocks past EOF
        f.pwrite(b"x", BS)                    # in place: its mtime held
        clock_past(f.stat().st_mtime_ns)
        t = time.time_ns()
        seq = vol._journal.ring.next_seq
        op(f)
        assert vol._journal.ring.next_seq > seq, f"{name}: nothing was logged"
        assert f.stat().st_mtime_ns >= t, f"{name}: stat shows the in-place write's older mtime"
    with vol.open("f", "rb", buffering=0) as f:
        assert f.stat().st_mtime_ns >= t, f"{name}: the older mtime was logged at close"
    vol.close()


def test_a_mapping_over_a_hole_shows_a_write_that_fills_it() -> None:
    """A read mapping shows zeros over a hole; a write over data and that hole (the
    general write path) gives the hole blocks: the mapping then shows the written bytes."""
    vol = _volume()
    data = _distinct(19, 3 * BS)
    _write(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        f.punch_hole(BS, BS)
        with f.map(0, 3 * BS) as m:
            assert bytes(m.buffer[BS:2 * BS]) == bytes(BS)
            f.pwrite(b"w" * 20, BS - 10)            # block 0 in place, block 1 fresh
            assert bytes(m.buffer[BS - 10:BS + 20]) == b"w" * 20 + bytes(10)
            assert bytes(m.buffer[2 * BS:]) == data[2 * BS:]
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


def test_writes_on_a_preallocated_file_pool_map_in_each_huge_page_chunk_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On a medium that cannot discard (device DAX: every free block has memory, nothing to
    reserve), new blocks' huge-page chunks are mapped in ahead of the copy, once per mount.
    (A preallocated file stands for one here, with its reserve hook taken away.)"""
    import daxfs
    vol = daxfs.mkfs(str(tmp_path / "pool"), 16 << 20, discard=False)
    vol.data.journal.reserve = None
    data = _distinct(30, 3 << 20)
    with vol.open("f", "wb", buffering=0) as f:
        f.write(data)
        first = (f.extents()[0].pool_offset - vol.data.data_offset) // BS
    faulted = set(vol.data._faulted)
    shift = vol.data._chunk_shift
    last = first + len(data) // BS - 1
    assert set(range(first >> shift, (last >> shift) + 1)) == faulted
    with vol.open("f", "r+b", buffering=0) as f:
        f.pwrite(b"x" * 100, 0)                     # in place: nothing new to map in
    assert set(vol.data._faulted) == faulted
    assert _read(vol, "f") == b"x" * 100 + data[100:]
    vol.close()
