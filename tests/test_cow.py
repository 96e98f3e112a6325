"""The one-pass copy on write (``volume/cow.py``): the first write into a clone.

``cow_in_run`` takes a write inside the file into one written run whose blocks are all
shared, and declines everything else to ``DataPath.unshare`` and the general write path.
What these tests prove (each found untested by a mutation run of cow.py):

- It copies exactly the blocks written, in one record; the blocks around stay shared.
- It holds the checkpoint room its record takes (a byte less: ENOSPC, nothing changed).
- A write that runs past the end of the run is not its shape, even where the data
  blocks after the run are shared too (by other files): those are never copied into
  this file.
- A private block under a mapping is written in place (the mapping sees the write) even
  while other blocks of the volume are shared.
- The pin policy applies to the blocks it copies: 'refuse' refuses a write under a
  mapping of them, with nothing changed, and not a write next to one.
- A write ending at a block boundary copies no block after it; copies scattered over
  single free blocks write nothing outside them (the blocks between hold other files).
- It sets mtime and ctime, superseding an in-place write's held-back mtime.
- (The general path) one write over a shared block and a hole plans a fresh block for
  each, never the same one twice.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from daxfs.errors import BusyError
from daxfs.volume import Volume
from daxfs.volume.prepared import GROW_RUN

from _small_volume import (check_checkpoint_room, clock_past, distinct, read_file, scatter_free_space, small_volume,
                           write_file)

BS = 4096


def _cloned(policy: str = "defer") -> tuple[Volume, bytes]:
    vol = small_volume(policy=policy)
    data = distinct(1, 6 * BS)
    write_file(vol, "f", data)
    vol.clone_file("f", "g")
    return vol, data


def _model(old: bytes, offset: int, payload: bytes) -> bytes:
    return old[:offset] + payload + old[offset + len(payload):]


def test_the_first_write_into_a_clone_copies_only_its_blocks_in_one_record() -> None:
    vol, data = _cloned()
    with vol.open("f", "r+b", buffering=0) as f, vol.open("g", "rb", buffering=0) as g:
        seq = vol._journal.ring.next_seq
        payload = distinct(2, BS + 200)
        f.pwrite(payload, 2 * BS + 100)                 # blocks 2..3, partly
        assert vol._journal.ring.next_seq == seq + 1
        mine, theirs = f.extents(), g.extents()
        moved = [e for e in mine if e.pool_offset != theirs[0].pool_offset + e.file_offset]
        assert [(e.file_offset, e.length) for e in moved] == [(2 * BS, 2 * BS)]
    assert read_file(vol, "f") == _model(data, 2 * BS + 100, payload) and read_file(vol, "g") == data
    assert vol.fsck() == []


def test_a_copy_on_write_holds_its_checkpoint_room() -> None:
    check_checkpoint_room(lambda: _cloned()[0], lambda f: f.pwrite(b"y" * 100, BS + 10), 3 * GROW_RUN,
                          "copy on write", 6 * BS, says="metadata")


def test_a_write_past_the_run_never_copies_the_shared_blocks_after_it() -> None:
    """f's blocks 0..1 lie right before h's (h shared with a clone), its blocks 2..3 after
    them: a write over f's blocks 1..2 is two runs, and h's first block is not f's."""
    vol = small_volume()
    f_data, h_data = distinct(3, 4 * BS), distinct(4, 2 * BS)
    write_file(vol, "f", f_data[:2 * BS])
    write_file(vol, "h", h_data)
    with vol.open("f", "ab", buffering=0) as f:
        f.write(f_data[2 * BS:])
    vol.clone_file("f", "g")
    vol.clone_file("h", "h2")
    with vol.open("f", "r+b", buffering=0) as f, vol.open("h", "rb", buffering=0) as h:
        runs, h_runs = f.extents(), h.extents()
        assert len(runs) == 2 and runs[0].pool_offset + 2 * BS == h_runs[0].pool_offset, (runs, h_runs)
        payload = distinct(5, 200)
        f.pwrite(payload, 2 * BS - 100)                 # 100 bytes in each run
    assert read_file(vol, "f") == _model(f_data, 2 * BS - 100, payload)
    assert read_file(vol, "g") == f_data and read_file(vol, "h") == read_file(vol, "h2") == h_data
    assert vol.fsck() == []


def test_a_private_block_under_a_mapping_is_written_in_place_while_others_are_shared() -> None:
    vol, _data = _cloned()                              # (the volume holds shared blocks)
    own = distinct(6, 4 * BS)
    write_file(vol, "p", own)
    with vol.open("p", "r+b", buffering=0) as p:
        extents = p.extents()
        with p.map(0, 4 * BS) as view:
            payload = distinct(7, 300)
            p.pwrite(payload, BS + 50)
            assert bytes(view.buffer[BS + 50:BS + 350]) == payload
        assert p.extents() == extents
    assert read_file(vol, "p") == _model(own, BS + 50, payload)


@pytest.mark.parametrize("mapped, refused", [((BS, BS), True), ((3 * BS, BS), False)],
                         ids=["over the block", "the block after"])
def test_refuse_applies_to_the_blocks_a_copy_on_write_copies(mapped: tuple[int, int], refused: bool) -> None:
    vol, data = _cloned("refuse")
    payload = distinct(8, 100)
    with vol.open("f", "r+b", buffering=0) as f:
        with f.map(*mapped):
            before: Any = (f.extents(), vol._journal.ring.next_seq)
            if refused:
                with pytest.raises(BusyError):
                    f.pwrite(payload, 2 * BS - 200)     # block 1
                assert (f.extents(), vol._journal.ring.next_seq) == before
            else:
                f.pwrite(payload, 2 * BS - 200)
    want = data if refused else _model(data, 2 * BS - 200, payload)
    assert read_file(vol, "f") == want and read_file(vol, "g") == data
    assert vol.fsck() == []


def test_a_write_ending_at_a_block_boundary_copies_only_its_blocks() -> None:
    vol, data = _cloned()
    with vol.open("f", "r+b", buffering=0) as f, vol.open("g", "rb", buffering=0) as g:
        payload = distinct(9, BS - 100)
        f.pwrite(payload, BS + 100)                     # ends exactly where block 2 starts
        base = g.extents()[0].pool_offset
        moved = [(e.file_offset, e.length) for e in f.extents() if e.pool_offset != base + e.file_offset]
        assert moved == [(BS, BS)]
    assert read_file(vol, "f") == _model(data, BS + 100, payload)


def test_a_copy_into_scattered_free_blocks_writes_nothing_outside_them() -> None:
    """Free space is single blocks between other files: the copies of a write over three
    shared blocks land in three places, and the blocks between them keep their files' bytes."""
    vol = small_volume(1 << 20, discard=False)
    data = distinct(10, 4 * BS)
    write_file(vol, "f", data)
    vol.clone_file("f", "g")
    others = scatter_free_space(vol)
    with vol.open("f", "r+b", buffering=0) as f:
        payload = distinct(11, 2 * BS + 200)
        f.pwrite(payload, 100)                          # blocks 0..2, each copied somewhere else
        assert len({e.pool_offset for e in f.extents()}) >= 3
    assert read_file(vol, "f") == _model(data, 100, payload) and read_file(vol, "g") == data
    for name, bytes_ in others.items():
        assert read_file(vol, name) == bytes_, name
    assert vol.fsck() == []


def test_a_copy_on_write_sets_the_times_over_an_in_place_writes_held_one() -> None:
    vol, _data = _cloned()
    with vol.open("f", "r+b", buffering=0) as f:
        f.pwrite(b"a", 10)                              # copies block 0: f's own from now on
        f.pwrite(b"b", 20)                              # in place: its mtime held until close
        held = vol.stat("f").st_mtime_ns
        clock_past(held)
        before = time.time_ns()
        f.pwrite(b"c", 3 * BS)                          # block 3: still shared, copied
        st = vol.stat("f")
        assert st.st_mtime_ns >= before and st.st_ctime_ns == st.st_mtime_ns
    assert vol.stat("f").st_mtime_ns == st.st_mtime_ns  # the close did not bring the held one back


def test_a_write_over_private_blocks_around_a_copied_one_keeps_their_bytes_at_pool_block_0() -> None:
    """f's blocks 0 and 2 are its own (the clone copied its), block 1 is shared; f's first
    run starts at the pool's first data block (0, which a careless "is it a hole" test of
    the block number takes for one): a write over all three copies block 1 only and keeps
    the other bytes of blocks 0 and 2."""
    vol = small_volume()
    data = distinct(12, 3 * BS)
    write_file(vol, "f", data)
    vol.clone_file("f", "g")
    with vol.open("g", "r+b", buffering=0) as g:
        g.pwrite(b"G", 0)
        g.pwrite(b"G", 2 * BS)                          # g copies blocks 0 and 2: f's alone now
    with vol.open("f", "r+b", buffering=0) as f:
        assert f.extents()[0].pool_offset == vol.data.data_offset      # (block 0 at pool block 0)
        payload = distinct(13, 2 * BS)
        f.pwrite(payload, 100)                          # blocks 0..2, in part
        assert f.extents()[0].pool_offset == vol.data.data_offset      # written in place
    assert read_file(vol, "f") == _model(data, 100, payload)
    assert read_file(vol, "g") == b"G" + data[1:2 * BS] + b"G" + data[2 * BS + 1:]
    assert vol.fsck() == []


@pytest.mark.parametrize("shape", ["growing past EOF", "over a punched hole"])
def test_a_write_over_shared_blocks_and_a_hole_gives_each_its_own_fresh_block(shape: str) -> None:
    """One pwrite over a shared block (copied) and a hole (filled) plans fresh blocks for
    both: the hole's are planned with the copies' excluded (they are still free until the
    write's record takes them all). Planned twice, both file blocks got one pool block and
    the core refused the record after it was durable: the volume went read-only."""
    vol = small_volume()
    data = distinct(31, 3 * BS)
    write_file(vol, "a", data)
    vol.clone_file("a", "b")
    new = distinct(32, 2 * BS)
    with vol.open("b", "r+b", buffering=0) as f:
        if shape == "growing past EOF":
            f.pwrite(new, 2 * BS)                   # block 2 shared, block 3 past EOF
            want = data[:2 * BS] + new
        else:
            f.punch_hole(BS, BS)                    # block 1 a hole, blocks 0 and 2 shared
            f.pwrite(new, 0)                        # blocks 0 (shared) and 1 (the hole)
            want = new + data[2 * BS:]
    assert read_file(vol, "b") == want
    assert read_file(vol, "a") == data
    assert not vol.readonly and vol.fsck() == []
    b_blocks = [p + i for _f, k, p, _fl in vol._journal.core.inodes[vol.stat("b").st_ino].extents.pieces(0, 4)
                if p >= 0 for i in range(k)]
    assert len(b_blocks) == (4 if shape == "growing past EOF" else 3)
    assert len(set(b_blocks)) == len(b_blocks)          # no pool block twice
