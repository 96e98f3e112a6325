"""Range operations (``volume/ranges.py``): edges the differential and reflink tests leave open.

What these tests prove (each found untested by a mutation run of ranges.py):

- fallocate that grows a file whose partial last block is shared, over a range that does
  not reach that block, copies the block before zeroing its bytes past EOF: the other
  owner keeps its bytes; with ``keep_size`` (fallocate, zero_range) nothing grows, so
  nothing is copied.
- fallocate continues the file's last run when the block after it is free (locality).
- fallocate that allocates nothing and does not grow the file logs nothing (no new mtime);
  every range op that changes a file's map or size sets mtime and ctime.
- What fallocate, punch_hole and zero_range may add to a checkpoint (``GROW_RUN`` a run,
  and one more for a run the record may split) is held against the checkpoint area:
  a byte less room than that is ENOSPC with nothing changed, exactly that much is taken.
- Under ``refuse``, punch_hole and zero_range settle the pin policy over their own blocks
  only, and the BusyError names the op.
- zero_range and punch_hole copy a range's partial edge blocks (all-or-nothing) and mark
  its whole blocks unwritten unless a mapping covers the range: a mapping of the blocks
  just past it does not make them zero in place.
- Under a mapping, zero_range (whole written blocks) and punch_hole (partial edges) zero
  in place and persist it: a crash after the call returns shows the zeros; nothing is
  logged, the mtime is deferred and logged at close.
- A poisoned block a punch or zero_range covers in part stays, poisoned (never copied).
- Short of free blocks for the edge copies, edges are zeroed in place (never ENOSPC), and
  the blocks the op needs besides are still found; punching whole shared blocks on a full
  pool needs no block at all; a shared edge block zeroed in place (under a mapping) is
  copied first, and only the edge blocks are.
- Punching a hole that is already a hole logs nothing.
- An op that logs its own mtime after an in-place write (whose mtime is deferred) keeps
  its own: neither stat nor the mtime logged at close goes back to the write's (a bug in
  fallocate, punch_hole, zero_range, truncate up, a write mapping, clone_range,
  clone_file over a file and copy_file_range, fixed with these tests).
- truncate settles the pin policy only over the blocks it drops: not for a truncate to the
  size the file has (a pin left past EOF by a deferred shrink), nor over the block that
  keeps the new EOF; a truncate that changes nothing logs nothing.
- Edge copies split off a plan of single-block gaps take only the planned blocks; only
  ENOSPC for the copies makes the edges zero in place (another error is the op's).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import Any

import pytest

from daxfs import PoisonError
from daxfs.media import MemoryPool
from daxfs.testing.crash import CrashRecorder
from daxfs.volume import Volume

from _small_volume import (check_checkpoint_room, clock_past, distinct as _distinct, file_between_free_blocks,
                           read_file as _read, small_volume as _volume, write_file as _write)

BS = 4096


def _shared_tail(vol: Volume) -> bytes:
    """``a`` (3 blocks) cloned to ``b``, ``b`` cut to 2 blocks + 10 bytes: block 2 stays
    shared, and ``a`` shows the bytes past ``b``'s EOF."""
    data = _distinct(1, 3 * BS)
    _write(vol, "a", data)
    vol.clone_file("a", "b")
    with vol.open("b", "r+b", buffering=0) as f:
        f.truncate(2 * BS + 10)
    return data


def test_fallocate_growing_past_a_shared_tail_block_copies_it_first() -> None:
    vol = _volume()
    data = _shared_tail(vol)
    with vol.open("b", "r+b", buffering=0) as f:
        f.fallocate(3 * BS + 100, BS)       # does not cover block 2: only the growth reaches it
        assert f.stat().st_size == 4 * BS + 100
        assert f.pread(5 * BS, 0) == data[:2 * BS + 10] + bytes(2 * BS + 90)
    assert _read(vol, "a") == data, "a's bytes past b's old EOF were zeroed in place"
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("op", ["fallocate", "zero_range"])
def test_keep_size_past_eof_leaves_a_shared_tail_block_shared(op: str) -> None:
    vol = _volume()
    data = _shared_tail(vol)
    before = vol.statfs().shared
    with vol.open("b", "r+b", buffering=0) as f:
        getattr(f, op)(3 * BS + 100, BS, keep_size=True)
        assert f.stat().st_size == 2 * BS + 10
        first = f.extents()[0]
        assert (first.file_offset, first.length) == (0, 3 * BS) and "shared" in first.flags
    assert vol.statfs().shared == before, f"a keep_size {op} copied a shared block it never changes"
    assert _read(vol, "a") == data
    assert vol.fsck() == []
    vol.close()


def test_fallocate_continues_the_files_last_run() -> None:
    vol, b_block = file_between_free_blocks()
    with vol.open("b", "r+b", buffering=0) as f:
        f.fallocate(BS, 2 * BS)             # the hole starts at block 1 and is 2 long
        ext = f.extents()
    assert [(e.file_offset, e.length, e.pool_offset) for e in ext] == \
        [(0, BS, b_block), (BS, 2 * BS, b_block + BS)], ext
    vol.close()


def test_fallocate_that_allocates_nothing_and_ends_at_eof_changes_nothing() -> None:
    vol = _volume()
    _write(vol, "f", _distinct(2, 3 * BS))
    with vol.open("f", "r+b", buffering=0) as f:
        before = f.stat()
        clock_past(before.st_mtime_ns)
        f.fallocate(0, 3 * BS)              # every block written, the end is the size
        after = f.stat()
    assert (after.st_mtime_ns, after.st_ctime_ns, after.st_size) == \
        (before.st_mtime_ns, before.st_ctime_ns, before.st_size)
    vol.close()


_MTIME_OPS = [
    ("fallocate", lambda f: f.fallocate(2 * BS, BS, keep_size=True)),
    ("zero_range", lambda f: f.zero_range(100, 2 * BS)),
    ("punch_hole", lambda f: f.punch_hole(0, BS)),
    ("truncate", lambda f: f.truncate(BS)),
    ("truncate_up", lambda f: f.truncate(3 * BS)),
]


@pytest.mark.parametrize("name, op", _MTIME_OPS, ids=[c[0] for c in _MTIME_OPS])
def test_range_ops_that_change_the_map_set_mtime_and_ctime(name: str, op: Callable[[Any], None]) -> None:
    vol = _volume()
    _write(vol, "f", _distinct(3, 2 * BS))
    with vol.open("f", "r+b", buffering=0) as f:
        before = f.stat()
        clock_past(before.st_mtime_ns)
        op(f)
    with vol.open("f", "rb", buffering=0) as f:
        after = f.stat()
    assert after.st_mtime_ns > before.st_mtime_ns and after.st_ctime_ns > before.st_ctime_ns
    vol.close()


# (operation on a 4-block file, the checkpoint room it needs: GROW_RUN = 80 a run)
_ROOM_CASES = [
    ("fallocate_past_eof", lambda f: f.fallocate(4 * BS, BS), 160),       # 1 run, +1
    ("punch_whole_block", lambda f: f.punch_hole(BS, BS), 160),           # no copies, +2
    ("punch_two_edges", lambda f: f.punch_hole(BS + 100, BS), 320),       # 2 edge copies, +2
    ("zero_whole_block", lambda f: f.zero_range(BS, BS), 160),            # 1 run marked unwritten, +1
    ("zero_two_edges", lambda f: f.zero_range(BS + 100, BS), 240),        # 2 edge copies, +1
    ("zero_past_eof", lambda f: f.zero_range(4 * BS, BS), 160),           # 1 fresh run, +1
]


@pytest.mark.parametrize("name, op, room", _ROOM_CASES, ids=[c[0] for c in _ROOM_CASES])
def test_range_ops_hold_their_checkpoint_growth_against_the_area(
        name: str, op: Callable[[Any], None], room: int) -> None:
    def make() -> Volume:
        vol = _volume()
        _write(vol, "f", _distinct(4, 4 * BS))
        return vol

    check_checkpoint_room(make, op, room, name, 8 * BS)


@pytest.mark.parametrize("op", ["zero_range", "punch_hole"])
def test_range_ops_settle_the_pin_policy_over_their_own_blocks_only(op: str) -> None:
    """Under ``refuse``, a pin past the range does not stop the op; one over it does,
    and the BusyError names the op."""
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool, policy="refuse")
    data = _distinct(5, 4 * BS)
    _write(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        pin = f.pin(3 * BS, BS)
        getattr(f, op)(BS + 100, BS)                     # blocks 1 and 2: not the pinned one
        with pytest.raises(OSError, match=op):
            getattr(f, op)(2 * BS + 100, BS)             # blocks 2 and 3
        assert f.pread(4 * BS, 0) == data[:BS + 100] + bytes(BS) + data[2 * BS + 100:]
        pin.release()
    assert vol.fsck() == []
    vol.close()


def _pool_blocks(f: Any) -> dict[int, tuple[int, bool]]:
    """file block -> (pool offset, unwritten) for every mapped block."""
    out = {}
    for e in f.extents():
        for i in range(e.length // BS):
            out[e.file_offset // BS + i] = (e.pool_offset + i * BS, "unwritten" in e.flags)
    return out


@pytest.mark.parametrize("op", ["zero_range", "punch_hole"])
def test_a_mapping_just_past_the_range_does_not_seal_it(op: str) -> None:
    vol = _volume()
    data = _distinct(6, 6 * BS)
    _write(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        view = f.map(4 * BS, BS)                          # block 4 only
        before = _pool_blocks(f)
        getattr(f, op)(BS + 100, 3 * BS - 100)            # edge in block 1, whole blocks 2 and 3
        after = _pool_blocks(f)
        assert after[1][0] != before[1][0], f"{op}: the partial edge block was zeroed in place"
        if op == "zero_range":
            assert after[2] == (before[2][0], True) and after[3] == (before[3][0], True), after
        else:
            assert 2 not in after and 3 not in after
        assert after[4] == before[4] and bytes(view.buffer) == data[4 * BS:5 * BS]
        assert f.pread(6 * BS, 0) == data[:BS + 100] + bytes(3 * BS - 100) + data[4 * BS:]
        view.close()
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("op, offset, length", [("zero_range", BS, 2 * BS), ("punch_hole", BS + 3000, 1000)])
def test_zeroing_under_a_mapping_is_in_place_and_durable(op: str, offset: int, length: int) -> None:
    """zero_range's whole blocks, and a punch's partial edge, under a mapping: zeroed where
    they are, and persisted: a crash after the call returns shows the zeros (the punch's edge
    lies past the middle of its block, so a persist of the wrong bytes misses its page)."""
    rec = CrashRecorder(times=False)        # (an in-place zero's mtime is durable at close)
    vol = rec.vol
    data = _distinct(7, 5 * BS)
    _write(vol, "f", data)
    rec.run("set-up", lambda: None)
    f = vol.open("f", "r+b", buffering=0)
    view = f.map(0, 5 * BS)
    before = _pool_blocks(f)
    ino = f.stat().st_ino
    rec.run(op, lambda: getattr(f, op)(offset, length), tearable={ino: [(offset, offset + length)]})
    assert _pool_blocks(f) == before, "blocks under a mapping moved or were marked unwritten"
    assert bytes(view.buffer) == data[:offset] + bytes(length) + data[offset + length:]
    seen = rec.check(points=[p for p in rec.points() if p >= rec.starts[1]])
    assert seen["between"] and seen["after"], seen
    view.close()
    f.close()
    rec.vol.close()


def test_zeroing_part_of_a_poisoned_block_leaves_it_poisoned() -> None:
    """A poisoned block is neither copied nor zeroed by a punch or zero_range over part of
    it: it stays where it is, poisoned (only a whole-block op clears it)."""
    vol = _volume()
    data = _distinct(15, 4 * BS)
    _write(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        base = f.extents()[0].pool_offset
        vol.memory_failure(base + BS, BS)
        before = _pool_blocks(f)
        f.punch_hole(BS + 100, 100)
        f.zero_range(2 * BS - 100, 200)                 # edges in blocks 1 and 2
        assert _pool_blocks(f)[1] == before[1]
        assert any("poisoned" in e.flags and e.file_offset <= BS < e.file_offset + e.length
                   for e in f.extents())
        with pytest.raises(PoisonError):
            f.pread(10, BS + 50)
        assert f.pread(BS - 100, 2 * BS + 100) == data[2 * BS + 100:3 * BS]
        assert f.pread(100, 2 * BS) == bytes(100)
    assert vol.statfs().bad == BS and vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("op, offset, length", [("zero_range", 2 * BS, 2 * BS), ("punch_hole", BS + 100, 100)])
def test_zeroing_in_place_logs_nothing_and_sets_mtime_at_close(op: str, offset: int, length: int) -> None:
    """Under a mapping, zeroing written blocks (zero_range up to EOF, a punch inside one
    block) changes no map and no size: nothing is logged; the mtime is deferred, as for an
    in-place write, and logged at close."""
    vol = _volume()
    _write(vol, "f", _distinct(8, 4 * BS))
    j = vol._journal
    with vol.open("f", "r+b", buffering=0) as f:
        before = f.stat()
        view = f.map(0, 4 * BS)
        clock_past(before.st_mtime_ns)
        seq = j.ring.next_seq
        getattr(f, op)(offset, length)
        assert j.ring.next_seq == seq
        assert f.pread(length, offset) == bytes(length) and f.stat().st_size == 4 * BS
        view.close()
    with vol.open("f", "rb", buffering=0) as f:
        assert f.stat().st_mtime_ns > before.st_mtime_ns
    vol.close()


def _fill_but(vol: Volume, blocks: int) -> None:
    """Fill the pool's data area, then give back ``blocks`` free blocks."""
    _write(vol, "spare", b"s" * BS * blocks)
    with vol.open("fill", "wb", buffering=0) as g:
        n = 1 << 20
        while n >= BS:
            try:
                g.write(b"z" * n)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                n //= 2
    assert vol.statfs().free == 0
    vol.unlink("spare")
    assert vol.statfs().free == blocks * BS


@pytest.mark.parametrize("spare", [0, 1])
def test_with_no_room_for_edge_copies_edges_are_zeroed_in_place(spare: int) -> None:
    """Two written partial edges need two blocks for their copies; short of them the edges
    are zeroed in place (never ENOSPC), and blocks the op needs besides (zero_range over a
    hole) are still found."""
    vol = _volume()
    data = _distinct(9, 6 * BS)
    _write(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        f.punch_hole(2 * BS, BS)                          # block 2: a hole
        _fill_but(vol, spare)
        before = _pool_blocks(f)
        want = bytearray(data)
        want[2 * BS:3 * BS] = bytes(BS)
        if not spare:
            f.punch_hole(BS + 100, 100)                   # one edge, inside block 1
            want[BS + 100:BS + 200] = bytes(100)
        f.punch_hole(4 * BS - 100, 200)                   # two edges: blocks 3 and 4
        assert _pool_blocks(f) == before
        want[4 * BS - 100:4 * BS + 100] = bytes(200)
        if spare:
            f.zero_range(BS + 300, 2 * BS)                # edges in blocks 1 and 3, block 2 a hole
            want[BS + 300:3 * BS + 300] = bytes(2 * BS)
            after = _pool_blocks(f)
            assert after[1] == before[1] and after[3] == before[3], "an edge moved with no room for it"
            assert after[2][1] and vol.statfs().free == 0, "the hole got no unwritten block"
        assert f.pread(6 * BS, 0) == bytes(want)
    assert vol.fsck() == []
    vol.close()


def test_punching_whole_shared_blocks_on_a_full_pool_needs_no_space() -> None:
    """Whole blocks are unmapped, never copied first: a full pool can still punch them out
    of a file that shares them."""
    vol = _volume()
    data = _distinct(10, 4 * BS)
    _write(vol, "a", data)
    vol.clone_file("a", "b")
    _fill_but(vol, 0)
    with vol.open("b", "r+b", buffering=0) as f:
        f.punch_hole(BS, 2 * BS)
        assert f.pread(4 * BS, 0) == data[:BS] + bytes(2 * BS) + data[3 * BS:]
    assert _read(vol, "a") == data and vol.statfs().free == 0
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("offset, length", [(BS + 100, 100), (BS - 100, 200), (100, BS + 100)],
                         ids=["inside_one_block", "across_two", "start_and_end_edges"])
def test_punching_shared_edges_under_a_mapping_leaves_the_other_owner_alone(offset: int, length: int) -> None:
    """Under a mapping the edges are zeroed in place, so a shared edge block is copied
    first (and only the edge blocks: the others stay shared)."""
    vol = _volume()
    data = _distinct(11, 4 * BS)
    _write(vol, "a", data)
    vol.clone_file("a", "b")
    with vol.open("b", "r+b", buffering=0) as f:
        view = f.map(0, 4 * BS)
        f.punch_hole(offset, length)
        want = data[:offset] + bytes(length) + data[offset + length:]
        assert f.pread(4 * BS, 0) == want
        edges = {offset // BS, (offset + length) // BS}
        for e in f.extents():
            for i in range(e.length // BS):
                blk = e.file_offset // BS + i
                assert ("shared" in e.flags) == (blk not in edges), (blk, e)
        view.close()
    assert _read(vol, "a") == data, "the other owner saw the punch"
    assert vol.fsck() == []
    vol.close()


def test_punching_a_hole_that_is_already_a_hole_logs_nothing() -> None:
    vol = _volume()
    _write(vol, "f", _distinct(12, 4 * BS))
    j = vol._journal
    with vol.open("f", "r+b", buffering=0) as f:
        f.punch_hole(BS, 2 * BS)
        seq = j.ring.next_seq
        f.punch_hole(BS, 2 * BS)
        assert j.ring.next_seq == seq
    vol.close()


_AFTER_IN_PLACE = [
    ("fallocate", lambda f: f.fallocate(0, 8 * BS)),
    ("fallocate_keep_size", lambda f: f.fallocate(0, 8 * BS, keep_size=True)),
    ("punch_hole", lambda f: f.punch_hole(0, BS)),
    ("zero_range", lambda f: f.zero_range(0, BS)),
    ("truncate_down", lambda f: f.truncate(BS)),
    ("truncate_up", lambda f: f.truncate(4 * BS)),
    ("write_growing", lambda f: f.pwrite(b"z", 20 * BS)),
    ("write_into_a_hole", lambda f: f.pwrite(b"z", 12 * BS)),
    ("write_mapping", lambda f: f.map(4 * BS, BS, write=True).close()),
    ("clone_range", lambda f: f._vol.clone_range("src", 0, f, 4 * BS, BS)),
    ("copy_file_range", lambda f: f._vol.copy_file_range("src", 0, f, 4 * BS + 7, 100)),
    ("clone_file_over", lambda f: f._vol.clone_file("src", "f")),
]


@pytest.mark.parametrize("name, op", _AFTER_IN_PLACE, ids=[c[0] for c in _AFTER_IN_PLACE])
def test_an_op_after_an_in_place_write_keeps_its_own_mtime(name: str, op: Callable[[Any], None]) -> None:
    """An in-place write's mtime is deferred (logged at close); a later change that logs its
    own mtime supersedes it: neither stat nor the mtime logged at close goes back to the
    in-place write's."""
    vol = _volume()
    _write(vol, "f", _distinct(13, 2 * BS))
    _write(vol, "src", _distinct(14, 2 * BS))
    with vol.open("f", "r+b", buffering=0) as f:
        f.truncate(16 * BS)                   # (blocks 2.. a hole, so a write there allocates)
        f.truncate(2 * BS)
    with vol.open("f", "r+b", buffering=0) as f:
        f.pwrite(b"x", BS)                    # in place: its mtime deferred
        clock_past(f.stat().st_mtime_ns)
        t = time.time_ns()
        op(f)
        assert f.stat().st_mtime_ns >= t, f"{name}: stat shows the in-place write's older mtime"
    with vol.open("f", "rb", buffering=0) as f:
        assert f.stat().st_mtime_ns >= t, f"{name}: the older mtime was logged at close"
    vol.close()


def test_truncate_to_the_same_size_settles_no_policy() -> None:
    """Only a truncate that drops blocks settles the pin policy: under ``refuse``, a pin
    left past EOF by an earlier (deferred) shrink does not stop a truncate to the size the
    file already has; a shrink over it is refused, and the BusyError names the op."""
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool, policy="defer")
    data = _distinct(15, 3 * BS)
    _write(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        pin = f.pin(2 * BS, BS)                           # block 2
        f.truncate(2 * BS, policy="defer")                # drops block 2: deferred, still pinned
        f.truncate(2 * BS, policy="refuse")               # the same size: nothing to settle
        f.truncate(2 * BS + 1, policy="refuse")           # growing: nothing to settle either
        assert f.stat().st_size == 2 * BS + 1
        with pytest.raises(OSError, match="truncate"):
            f.truncate(2 * BS, policy="refuse")           # drops block 2 again: the pin is over it
        assert f.pread(3 * BS, 0) == data[:2 * BS] + bytes(1)
        pin.release()
    assert vol.fsck() == []
    vol.close()


def test_a_pin_on_the_block_that_keeps_the_new_eof_does_not_stop_a_shrink() -> None:
    """A shrink to the middle of a block keeps that block: under ``refuse``, a pin on it
    does not stop the shrink, a pin on the next block does."""
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool, policy="refuse")
    data = _distinct(18, 4 * BS)
    _write(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        pin = f.pin(BS, BS)                               # block 1
        f.truncate(BS + 100)                              # drops blocks 2 and 3 only
        assert f.pread(4 * BS, 0) == data[:BS + 100]
        with pytest.raises(OSError, match="truncate"):
            f.truncate(BS - 1)                            # drops block 1
        pin.release()
    assert vol.fsck() == []
    vol.close()


def test_edge_copies_in_single_block_gaps_take_only_planned_blocks() -> None:
    """The copies of a punch's two partial edges are split off the end of the plan one block
    at a time; when the free space is single-block gaps, each copy lands in a gap of its own,
    never in the block after a gap (another file's): the neighbours keep their bytes."""
    vol = _volume()
    data = _distinct(16, 4 * BS)
    _write(vol, "f", data)
    for i in range(6):
        _write(vol, f"n{i}", _distinct(100 + i, BS))
    _fill_but(vol, 0)
    for i in range(0, 6, 2):
        vol.unlink(f"n{i}")                               # free space: three one-block gaps
    assert vol.statfs().free == 3 * BS
    with vol.open("f", "r+b", buffering=0) as f:
        before = _pool_blocks(f)
        f.punch_hole(BS + 100, 2 * BS)                    # edges in blocks 1 and 3, whole block 2
        after = _pool_blocks(f)
        assert after[1][0] != before[1][0] and after[3][0] != before[3][0], "the edges were not copied"
        assert f.pread(4 * BS, 0) == data[:BS + 100] + bytes(2 * BS) + data[3 * BS + 100:]
    for i in range(1, 6, 2):
        assert _read(vol, f"n{i}") == _distinct(100 + i, BS), f"n{i} was overwritten"
    assert vol.fsck() == []
    vol.close()


def test_only_enospc_for_the_edge_copies_zeroes_them_in_place() -> None:
    """Short of room for the edge copies (ENOSPC) a punch zeroes its edges in place; any
    other error from finding those blocks (EIO from the medium reserving memory for them)
    is the punch's error, with nothing changed."""
    vol = _volume()
    data = _distinct(17, 4 * BS)
    _write(vol, "f", data)
    journal = vol._journal
    plan_blocks = journal.plan_blocks

    def failing(n: int, *args: Any, **kwargs: Any) -> list[tuple[int, int]]:
        if n:
            raise OSError(errno.EIO, "cannot reserve memory")
        return plan_blocks(n, *args, **kwargs)

    with vol.open("f", "r+b", buffering=0) as f:
        before = _pool_blocks(f)
        journal.plan_blocks = failing  # type: ignore[method-assign]
        try:
            with pytest.raises(OSError) as info:
                f.punch_hole(BS + 100, 2 * BS)
        finally:
            del journal.plan_blocks
        assert info.value.errno == errno.EIO
        assert _pool_blocks(f) == before and f.pread(4 * BS, 0) == data
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("size", [2 * BS, 2 * BS - 100])
def test_truncate_to_the_size_a_file_has_logs_nothing(size: int) -> None:
    """A truncate that neither drops blocks nor changes the size logs nothing (its mtime
    stays), also when the file's blocks end exactly at the block that holds its EOF."""
    vol = _volume()
    _write(vol, "f", _distinct(19, size))
    j = vol._journal
    with vol.open("f", "r+b", buffering=0) as f:
        before = f.stat()
        seq = j.ring.next_seq
        clock_past(before.st_mtime_ns)
        f.truncate(size)
        assert j.ring.next_seq == seq, "a truncate to the same size logged a record"
        assert f.stat().st_mtime_ns == before.st_mtime_ns and f.stat().st_size == size
        f.truncate(size + 1)                              # a change of size alone is logged
        assert j.ring.next_seq > seq and f.stat().st_mtime_ns > before.st_mtime_ns
    assert vol.fsck() == []
    vol.close()
