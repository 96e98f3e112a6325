"""Prepared writes (``volume/prepared.py``): the arbiter's large-write path, in one process.

A client of the arbiter copies a write's bytes straight into blocks the volume prepared
(``prepare_write``), then has them swapped in with one record (``commit_write``).  The
arbiter tests drive this through a server process, where a mutation run cannot see it;
these drive the same calls in-process.  What they prove (each found untested by a
mutation run of prepared.py):

- The bytes of an edge block the writer did not cover are the file's bytes there *at
  commit* (a write made meanwhile to the same block is kept), zeros in a hole or past
  EOF — never what the prepared block held before (memory of a freed file).
- A commit that grows the file zeroes the stale bytes past the old EOF in its last block,
  and copies that block first when a clone shares it: the clone keeps its bytes.
- Under a mapping of the range the write lands in place (as pwrite does: the blocks a
  mapping shows must not move) and the prepared blocks go back to free space.
- Prepared blocks that went bad before the commit refuse it (PoisonError naming them),
  as does a file's poisoned block the write covers only in part; nothing changes.
- The commit sets mtime and ctime, superseding an in-place write's held-back mtime.
- ``prepare_write`` holds the checkpoint room its commit will take (a byte less: ENOSPC,
  nothing changed).
"""

from __future__ import annotations

import errno
import time

import pytest

from daxfs.errors import PoisonError
from daxfs.volume import Volume

from _small_volume import (check_checkpoint_room, clock_past, distinct, read_file, scatter_free_space, small_volume,
                           write_file)

BS = 4096
JUNK = b"\xee"


def _stale_block_pool() -> Volume:
    """A volume whose free blocks hold a deleted file's bytes (``JUNK``), as reused
    memory does: a prepared block shows them until the commit fills what the writer left."""
    vol = small_volume(discard=False)           # (discarded, freed blocks would read as zeros)
    write_file(vol, "junk", JUNK * (64 * BS))
    vol.unlink("junk")
    return vol


def _prepare(vol: Volume, ino: int, offset: int, payload: bytes) -> list[tuple[int, int, int, int]]:
    """Prepare a write of ``payload`` at ``offset`` and store it as a client does: only its
    own bytes, persisted; the rest of each prepared block is left as it was."""
    data = vol.data
    pieces = data.prepare_write(ino, offset, len(payload))
    end = offset + len(payload)
    for f, k, p, _fl in pieces:
        lo, hi = max(f * BS, offset), min((f + k) * BS, end)
        at = data.data_offset + p * BS + lo - f * BS
        data.pool.write(at, payload[lo - offset:hi - offset])
        data.pool.persist(at, hi - lo)
    return pieces


def _model(old: bytes, offset: int, payload: bytes) -> bytes:
    grown = old + bytes(max(0, offset + len(payload) - len(old)))
    return grown[:offset] + payload + grown[offset + len(payload):]


# (name, the file before, offset, length): the edges a write can have
_SHAPES = [
    ("inside one block", 3 * BS, BS + 100, 200),
    ("partial head and tail over three blocks", 4 * BS, 100, 2 * BS + 200),
    ("whole blocks in the middle", 4 * BS, BS, 2 * BS),
    ("from mid-block past EOF", 2 * BS + 300, BS + 500, 3 * BS),
    ("past EOF with a gap", BS + 100, 3 * BS + 50, 100),
    ("into a hole", 0, 2 * BS + 10, 20),
]


@pytest.mark.parametrize("name, size, offset, length", _SHAPES, ids=[s[0] for s in _SHAPES])
def test_edges_take_the_files_bytes_or_zeros_never_the_prepared_blocks_old_ones(
        name: str, size: int, offset: int, length: int) -> None:
    vol = _stale_block_pool()
    old = distinct(1, size)
    if name == "into a hole":
        write_file(vol, "f", b"")
        with vol.open("f", "r+b", buffering=0) as f:
            f.truncate(4 * BS)
        old = bytes(4 * BS)
    else:
        write_file(vol, "f", old)
    payload = distinct(2, length)
    with vol.open("f", "r+b", buffering=0) as f:
        ino = f.stat().st_ino
        pieces = _prepare(vol, ino, offset, payload)
        seq = vol._journal.ring.next_seq
        assert vol.data.commit_write(ino, offset, length, pieces) == length
        assert vol._journal.ring.next_seq == seq + 1 and pieces == []      # one record; let go of
    want = _model(old, offset, payload)
    got = read_file(vol, "f")
    assert len(got) == len(want) and JUNK * 8 not in got and got == want
    assert vol.fsck() == []


def test_the_stale_tail_past_the_old_eof_reads_as_zeros_after_growing() -> None:
    vol = _stale_block_pool()
    data = distinct(3, 2 * BS)
    write_file(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        f.truncate(BS + 100)                # the last block keeps its old bytes past EOF
        ino = f.stat().st_ino
        payload = distinct(4, 300)
        pieces = _prepare(vol, ino, 3 * BS, payload)
        vol.data.commit_write(ino, 3 * BS, 300, pieces)
    assert read_file(vol, "f") == data[:BS + 100] + bytes(2 * BS - 100) + payload
    assert vol.fsck() == []


def test_a_write_made_meanwhile_to_an_edge_block_is_kept() -> None:
    vol = _stale_block_pool()
    old = distinct(5, 3 * BS)
    write_file(vol, "f", old)
    with vol.open("f", "r+b", buffering=0) as f:
        ino = f.stat().st_ino
        payload = distinct(6, BS)
        pieces = _prepare(vol, ino, BS + 1000, payload)     # two edge blocks
        f.pwrite(b"M" * 10, BS + 100)                       # the first edge, outside the write
        f.pwrite(b"N" * 10, 2 * BS + 3000)                  # the second edge, outside it
        vol.data.commit_write(ino, BS + 1000, BS, pieces)
    want = _model(_model(_model(old, BS + 100, b"M" * 10), 2 * BS + 3000, b"N" * 10), BS + 1000, payload)
    assert read_file(vol, "f") == want
    assert vol.fsck() == []


@pytest.mark.parametrize("cut, offset", [(50, 2 * BS), (BS + 50, 3 * BS), (BS + 50, BS + 100)],
                         ids=["first block", "second block", "the write starts in it"])
def test_growing_over_a_shared_last_block_leaves_the_clone_its_bytes(cut: int, offset: int) -> None:
    """f's last block is shared with a clone that shows all of it; f, cut short, grows past
    it: the bytes past f's EOF are zeroed in a copy, never in the block the clone reads (and
    a write that starts inside that block replaces it with the prepared one, one record)."""
    vol = _stale_block_pool()
    old = distinct(7, 2 * BS)
    write_file(vol, "f", old)
    vol.clone_file("f", "g")
    with vol.open("f", "r+b", buffering=0) as f:
        f.truncate(cut)                     # the last block stays shared, its bytes past EOF too
        ino = f.stat().st_ino
        payload = distinct(8, 100)
        pieces = _prepare(vol, ino, offset, payload)
        seq = vol._journal.ring.next_seq
        vol.data.commit_write(ino, offset, 100, pieces)
        if offset // BS == cut // BS:
            assert vol._journal.ring.next_seq == seq + 1        # no copy first: the block is replaced
        if cut > BS:                        # the first block was not the last: still shared
            with vol.open("g", "rb") as g:
                assert f.extents()[0].pool_offset == g.extents()[0].pool_offset
    assert read_file(vol, "f") == _model(old[:cut], offset, payload)
    assert read_file(vol, "g") == old
    assert vol.fsck() == []


def test_under_a_mapping_the_write_lands_in_place_and_the_prepared_blocks_go_back() -> None:
    vol = _stale_block_pool()
    old = distinct(9, 4 * BS)
    write_file(vol, "f", old)
    with vol.open("f", "r+b", buffering=0) as f:
        ino = f.stat().st_ino
        extents = f.extents()
        free = vol.statfs().free
        with f.map(0, 4 * BS) as view:
            payload = distinct(10, 2 * BS)
            pieces = _prepare(vol, ino, BS + 300, payload)
            assert vol.statfs().free < free
            assert vol.data.commit_write(ino, BS + 300, 2 * BS, pieces) == 2 * BS
            assert bytes(view.buffer[BS + 300:3 * BS + 300]) == payload     # the mapping sees it
        assert f.extents() == extents                       # no block moved
    assert vol.statfs().free == free
    assert read_file(vol, "f") == _model(old, BS + 300, payload)
    assert vol.fsck() == []


def test_prepared_blocks_gone_bad_refuse_the_commit_and_change_nothing() -> None:
    vol = _stale_block_pool()
    old = distinct(11, 4 * BS)
    write_file(vol, "f", old)
    with vol.open("f", "r+b", buffering=0) as f:
        ino = f.stat().st_ino
        pieces = _prepare(vol, ino, BS, distinct(12, 2 * BS))
        bad_at = vol.data.data_offset + (pieces[0][2] + 1) * BS     # the second prepared block
        vol.memory_failure(bad_at, BS)
        seq = vol._journal.ring.next_seq
        with pytest.raises(PoisonError) as caught:
            vol.data.commit_write(ino, BS, 2 * BS, pieces)
        assert caught.value.pool_offset == bad_at and caught.value.length == BS
        assert f"{bad_at:#x}" in str(caught.value)
        assert vol._journal.ring.next_seq == seq and read_file(vol, "f") == old
        vol.data.abort_write(pieces)
    assert vol.fsck() == []


def test_a_write_covering_a_poisoned_block_in_part_is_refused() -> None:
    vol = _stale_block_pool()
    old = distinct(13, 4 * BS)
    write_file(vol, "f", old)
    with vol.open("f", "r+b", buffering=0) as f:
        ino = f.stat().st_ino
        vol.memory_failure(f.extents()[0].pool_offset + 2 * BS, BS)
        pieces = _prepare(vol, ino, 2 * BS + 100, distinct(14, 200))
        with pytest.raises(PoisonError):
            vol.data.commit_write(ino, 2 * BS + 100, 200, pieces)
        vol.data.abort_write(pieces)
        whole = distinct(15, BS)                            # covering it whole replaces it
        pieces = _prepare(vol, ino, 2 * BS, whole)
        vol.data.commit_write(ino, 2 * BS, BS, pieces)
        assert f.pread(BS, 2 * BS) == whole
    assert vol.fsck() == []


def test_the_commit_sets_mtime_and_ctime_over_a_held_back_one() -> None:
    vol = small_volume()
    write_file(vol, "f", distinct(16, 4 * BS))
    with vol.open("f", "r+b", buffering=0) as f:
        ino = f.stat().st_ino
        f.pwrite(b"x", 10)                  # in place: its mtime is held back until close
        held = vol.stat("f").st_mtime_ns
        clock_past(held)
        pieces = _prepare(vol, ino, BS, distinct(17, BS))
        before = time.time_ns()
        vol.data.commit_write(ino, BS, BS, pieces)
        st = vol.stat("f")
        assert st.st_mtime_ns >= before and st.st_ctime_ns == st.st_mtime_ns
    after = vol.stat("f")
    assert after.st_mtime_ns == st.st_mtime_ns          # the close did not bring the older one back


def test_prepare_holds_the_checkpoint_room_its_commit_takes() -> None:
    def op(f: object) -> None:
        ino = f.stat().st_ino  # type: ignore[attr-defined]
        payload = distinct(18, 3 * BS)
        pieces = _prepare(vol_of[0], ino, BS, payload)
        vol_of[0].data.commit_write(ino, BS, 3 * BS, pieces)

    vol_of: list[Volume] = []

    def make() -> Volume:
        vol = small_volume()
        write_file(vol, "f", distinct(19, 2 * BS))
        vol_of[:] = [vol]
        return vol

    from daxfs.volume.prepared import GROW_RUN
    check_checkpoint_room(make, op, GROW_RUN * (1 + 2), "prepare_write", 8 * BS, says="metadata")


def test_a_commit_on_a_read_only_volume_is_erofs() -> None:
    vol = small_volume()
    write_file(vol, "f", distinct(20, BS))
    with vol.open("f", "r+b", buffering=0) as f:
        ino = f.stat().st_ino
        pieces = _prepare(vol, ino, 0, distinct(21, BS))
        vol._journal.readonly = True
        try:
            with pytest.raises(OSError) as caught:
                vol.data.commit_write(ino, 0, BS, pieces)
            assert caught.value.errno == errno.EROFS
        finally:
            vol._journal.readonly = False
        vol.data.abort_write(pieces)
    assert vol.fsck() == []


def test_a_prepared_write_in_several_runs_under_a_mapping_lands_in_place_in_order() -> None:
    vol = small_volume(1 << 20, discard=False)
    others = scatter_free_space(vol)
    write_file(vol, "f", b"")
    with vol.open("f", "r+b", buffering=0) as f:
        f.truncate(4 * BS)
        with f.map(0, 4 * BS, write=True) as view:     # (a write mapping allocates the blocks)
            old = bytes(view.buffer)
            ino = f.stat().st_ino
            payload = distinct(22, 2 * BS + 200)
            pieces = _prepare(vol, ino, 100, payload)
            assert len(pieces) > 1, pieces
            vol.data.commit_write(ino, 100, len(payload), pieces)
            assert bytes(view.buffer) == _model(old, 100, payload)
    assert all(read_file(vol, name) == bytes_ for name, bytes_ in others.items())
    assert vol.fsck() == []


def test_a_mapping_just_past_the_range_does_not_seal_it() -> None:
    vol = _stale_block_pool()
    old = distinct(23, 6 * BS)
    write_file(vol, "f", old)
    with vol.open("f", "r+b", buffering=0) as f:
        ino = f.stat().st_ino
        before = f.extents()
        with f.map(3 * BS, BS):             # blocks 3..4: after the write's blocks 1..3
            payload = distinct(24, 2 * BS)
            pieces = _prepare(vol, ino, BS, payload)
            new = [(p, k) for _f, k, p, _fl in pieces]
            vol.data.commit_write(ino, BS, 2 * BS, pieces)
            after = f.extents()
        assert after != before and any(e.pool_offset == vol.data.data_offset + new[0][0] * BS for e in after)
    assert read_file(vol, "f") == _model(old, BS, payload)
    assert vol.fsck() == []


def test_a_poisoned_block_past_the_write_does_not_refuse_it() -> None:
    vol = _stale_block_pool()
    old = distinct(25, 6 * BS)
    write_file(vol, "f", old)
    with vol.open("f", "r+b", buffering=0) as f:
        ino = f.stat().st_ino
        vol.memory_failure(f.extents()[0].pool_offset + 3 * BS, BS)     # block 3
        payload = distinct(26, 300)
        pieces = _prepare(vol, ino, 2 * BS + 100, payload)              # inside block 2
        vol.data.commit_write(ino, 2 * BS + 100, 300, pieces)
        assert f.pread(BS, 2 * BS) == _model(old, 2 * BS + 100, payload)[2 * BS:3 * BS]
    assert vol.fsck() == []
