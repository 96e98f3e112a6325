"""The edges of the reference table's policy decisions, with real threads: what a change
that waits (the ``wait`` policy) refuses meanwhile, and what a wait for writers lets
through once they go.

- ``admit``: while a change waits on file blocks ``[first, end)``, a new pin or mapping
  touching any of them is refused (BusyError), one just before or just after the range,
  or on another file, is not; a change running to the end of the file (a truncate)
  refuses every new reference from its first block on.
- ``wait_for_writers`` under ``wait``: a clone from a range under a write mapping waits
  for the mapping to close, then shares the blocks with what was stored through it.

A thread is known to be waiting by ``before_wait`` (run just before it blocks); nothing
sleeps.
"""

from __future__ import annotations


import pytest

import daxfs
from daxfs.volume import Volume

from _small_volume import JOIN, BS, distinct, read_file, small_volume, start_waiting, write_file



def _pin_refused(f: daxfs.File, offset: int, length: int) -> bool:
    """Whether a new pin of ``[offset, +length)`` is refused now (one taken is let go)."""
    try:
        pin = f.pin(offset, length)
    except daxfs.BusyError:
        return True
    pin.release()
    return False


def _pools(vol: Volume, path: str) -> list[int]:
    with vol.open(path, "rb", buffering=0) as f:
        return [e.pool_offset + i for e in f.extents() for i in range(0, e.length, BS)]


def test_a_waiting_punch_refuses_new_pins_over_exactly_its_blocks() -> None:
    vol = small_volume()
    data = distinct(1, 8 * BS)
    write_file(vol, "f", data)
    write_file(vol, "g", data)
    with vol.open("f", "r+b", buffering=0) as f, vol.open("g", "rb", buffering=0) as g:
        held = f.pin(2 * BS, BS)
        thread, errors = start_waiting(lambda: f.punch_hole(2 * BS, 2 * BS, policy="wait", timeout=JOIN))
        refused = {(offset // BS, length // BS): _pin_refused(f, offset, length)
                   for offset, length in ((BS, BS), (2 * BS, BS), (3 * BS, BS), (4 * BS, BS),
                                          (0, 2 * BS), (3 * BS, 2 * BS), (0, 8 * BS))}
        assert refused == {(1, 1): False, (2, 1): True, (3, 1): True, (4, 1): False,
                           (0, 2): False, (3, 2): True, (0, 8): True}
        assert not _pin_refused(g, 2 * BS, BS), "another file's blocks are not waited on"
        held.release()
        thread.join(JOIN)
        assert not thread.is_alive() and errors == []
        assert not _pin_refused(f, 2 * BS, BS), "the wait is over"
    assert read_file(vol, "f") == data[:2 * BS] + bytes(2 * BS) + data[4 * BS:]
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


def test_a_waiting_truncate_refuses_new_pins_from_its_first_block_to_any_end() -> None:
    vol = small_volume()
    write_file(vol, "f", distinct(2, 8 * BS))
    with vol.open("f", "r+b", buffering=0) as f:
        held = f.pin(5 * BS, BS)
        thread, errors = start_waiting(lambda: f.truncate(2 * BS, policy="wait", timeout=JOIN))
        assert [_pin_refused(f, b * BS, BS) for b in range(8)] == [False, False] + [True] * 6
        held.release()
        thread.join(JOIN)
        assert not thread.is_alive() and errors == []
        assert f.stat().st_size == 2 * BS
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("op", ["clone_range", "clone_file", "dedupe_range"])
def test_under_wait_sharing_waits_for_the_write_mapping_and_shares_what_it_stored(op: str) -> None:
    vol = small_volume(policy="wait")
    data = distinct(3, 4 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", data)
    with vol.open("a", "r+b", buffering=0) as f:
        mapping = f.map(BS, BS, write=True)
        call = {"clone_range": lambda: vol.clone_range("a", 0, "b", 0, 4 * BS),
                "clone_file": lambda: vol.clone_file("a", "b"),
                "dedupe_range": lambda: vol.dedupe_range("a", 0, "b", 0, 4 * BS)}[op]
        thread, errors = start_waiting(call)
        mapping.buffer[:5] = b"mapds"
        mapping.persist(0, 5)
        mapping.close()
        thread.join(JOIN)
        assert not thread.is_alive() and errors == []
    a, b = read_file(vol, "a"), read_file(vol, "b")
    assert a == data[:BS] + b"mapds" + data[BS + 5:]
    if op == "dedupe_range":        # block 1 differs now: every other block is shared
        assert b == data
        assert [x == y for x, y in zip(_pools(vol, "a"), _pools(vol, "b"))] == [True, False, True, True]
    else:
        assert b == a and _pools(vol, "b") == _pools(vol, "a")
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()
