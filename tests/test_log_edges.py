"""The log ring's arithmetic at its edges (found by a mutation run over ``volume/log.py``):
each test pins down one thing a slip there would get wrong while the volume tests, whose
records rarely land on a lap's end, still passed.

- ``append``: a record that does not fit the rest of a lap goes to the next one, after a
  PAD when the rest holds a header (exactly a header's worth included: the PAD then takes a
  sequence number of its own), with nothing written when it does not; one that exactly
  fills the rest stays in it (nothing written over the tail at the next lap's start);
  every byte written is persisted before ``append`` returns.
- ``cost`` / ``fits``: a record that exactly fills the lap costs its own length; one byte
  more costs the skipped rest too; ``fits`` is right at the byte where the tail is reached.
- ``blocked`` / ``clear_position``: bad memory counts only where a write would land (the
  PAD's header and the record, half-open ranges), and the clear position is the first one
  past the furthest bad range in the way, at a lap's start when the rest is too short.
- ``peek``, ``replay``, ``count_from``: each follows a PAD (and the short rest of a lap
  with none) into the next lap; replay of a ring exactly full ends where its last record
  does (not past the short rest after it); replay stops at ``stop_before_seq``, reports a valid
  record past a torn one (naming where it is) only when asked, and turns a record that
  does not decode or apply into a BadRecordError naming its sequence, type and place.
"""

from __future__ import annotations

from typing import Any

import pytest

from daxfs.core.records import Record, SetAttr
from daxfs.errors import CorruptVolumeError
from daxfs.format.log import HEADER, BadRecordError, _frame, encode_pad, encode_record
from daxfs.media import MemoryPool
from daxfs.volume.log import LogRing

OFFSET = 512          # the ring's place in the pool (not 0: every place is offset + phys)
SIZE = 256
VID = 0x1234_5678_9ABC


class DurablePool(MemoryPool):
    """A MemoryPool that keeps, byte for byte, what has been persisted."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.durable = bytearray(size)

    def persist(self, offset: int, length: int) -> None:
        self.durable[offset:offset + length] = self.read(offset, length)


def small(ino: int) -> SetAttr:
    """A record of 40 bytes."""
    return SetAttr(ino, None, None, None, None, None, None)


def big(ino: int) -> SetAttr:
    """A record of 72 bytes."""
    return SetAttr(ino, 0o644, 1000, 1000, 1 << 40, 1 << 40, 1 << 40)


def ring(pool: MemoryPool, head: int = 0, tail: int = 0, next_seq: int = 1) -> LogRing:
    return LogRing(pool, OFFSET, SIZE, VID, head=head, tail=tail, next_seq=next_seq)


def append(r: LogRing, record: Record) -> None:
    r.append(record, r.encode(record))


def ring_bytes(pool: MemoryPool) -> bytes:
    return pool.read(OFFSET, SIZE)


def replay(pool: MemoryPool, **kw: Any) -> tuple[list[Record], tuple[int, int]]:
    applied: list[Record] = []
    kw.setdefault("start", 0)
    kw.setdefault("first_seq", 1)
    end = LogRing.replay(pool, OFFSET, SIZE, VID, apply=applied.append, **kw)
    return applied, end


def test_record_sizes() -> None:
    assert len(encode_record(small(1), VID, 1)) == 40
    assert len(encode_record(big(1), VID, 1)) == 72
    assert len(encode_pad(VID, 1)) == HEADER.size == 32


def test_a_record_past_the_lap_end_goes_after_a_pad_and_every_byte_is_persisted() -> None:
    pool = DurablePool(4096)
    r = ring(pool, head=80, tail=80)
    records: list[Record] = [small(i) for i in range(1, 4)]
    for rec in records:
        append(r, rec)
    assert (r.head, r.next_seq) == (200, 4)
    append(r, big(9))                   # 72 bytes > the 56 left: a PAD (seq 4), then seq 5 at 0
    records.append(big(9))
    assert (r.head, r.next_seq) == (SIZE + 72, 6)
    raw = ring_bytes(pool)
    assert raw[200:232] == encode_pad(VID, 4)
    assert raw[232:SIZE] == bytes(SIZE - 232)            # only the PAD's header is written
    assert raw[:72] == encode_record(big(9), VID, 5)
    assert bytes(pool.durable) == pool.image()           # all of it persisted
    assert replay(pool, start=80) == (records, (SIZE + 72, 6))
    assert LogRing.count_from(pool, OFFSET, SIZE, VID, start=80, first_seq=1) == 5
    assert LogRing.peek(pool, OFFSET, SIZE, VID, 200, 4)
    assert LogRing.peek(pool, OFFSET, SIZE, VID, SIZE, 5)
    assert not LogRing.peek(pool, OFFSET, SIZE, VID, SIZE, 6)


def test_a_lap_end_with_exactly_a_header_left_gets_a_pad() -> None:
    pool = DurablePool(4096)
    r = ring(pool, head=SIZE * 3 + 184, tail=SIZE * 3 + 184, next_seq=40)
    records: list[Record] = [small(1)]
    append(r, small(1))                 # ends at 224: 32 bytes left, a PAD's worth
    append(r, small(2))
    records.append(small(2))
    assert (r.head, r.next_seq) == (SIZE * 4 + 40, 43)
    raw = ring_bytes(pool)
    assert raw[224:SIZE] == encode_pad(VID, 41)
    assert raw[:40] == encode_record(small(2), VID, 42)
    assert bytes(pool.durable) == pool.image()
    assert replay(pool, start=SIZE * 3 + 184, first_seq=40) == (records, (SIZE * 4 + 40, 43))
    assert LogRing.count_from(pool, OFFSET, SIZE, VID, start=SIZE * 3 + 184, first_seq=40) == 3
    assert LogRing.peek(pool, OFFSET, SIZE, VID, SIZE * 3 + 224, 41)


def test_a_lap_end_too_short_for_a_header_is_skipped_without_a_pad() -> None:
    pool = DurablePool(4096)
    r = ring(pool, head=200, tail=200, next_seq=10)
    fill = SetAttr(1, 0o644, None, None, None, None, None)   # 48 bytes: ends at 248, 8 left
    assert len(r.encode(fill)) == 48
    append(r, fill)
    append(r, small(2))
    assert (r.head, r.next_seq) == (SIZE + 40, 12)        # no sequence number for a PAD
    raw = ring_bytes(pool)
    assert raw[248:SIZE] == bytes(8)
    assert raw[:40] == encode_record(small(2), VID, 11)
    assert bytes(pool.durable) == pool.image()
    assert replay(pool, start=200, first_seq=10) == ([fill, small(2)], (SIZE + 40, 12))
    assert LogRing.count_from(pool, OFFSET, SIZE, VID, start=200, first_seq=10) == 2
    assert LogRing.peek(pool, OFFSET, SIZE, VID, 248, 11)     # the short rest: read at 0
    assert not LogRing.peek(pool, OFFSET, SIZE, VID, 248, 10)


def test_a_pad_with_room_after_it_still_ends_the_lap() -> None:
    pool = MemoryPool(4096)
    r = ring(pool, head=192, tail=192, next_seq=3)
    append(r, big(1))                   # 64 left: a PAD, then the record at the next lap
    assert (r.head, r.next_seq) == (SIZE + 72, 5)
    assert LogRing.count_from(pool, OFFSET, SIZE, VID, start=192, first_seq=3) == 2
    assert replay(pool, start=192, first_seq=3) == ([big(1)], (SIZE + 72, 5))


def test_cost_and_fits_at_the_lap_end_and_the_tail() -> None:
    pool = MemoryPool(4096)
    r = ring(pool, head=SIZE + 200, tail=0)
    assert r.cost(56) == 56 and r.cost(1) == 1
    assert r.cost(57) == 56 + 57
    r.tail = r.head + 113 - SIZE        # exactly up to the tail
    assert r.fits(57)
    r.tail -= 1
    assert not r.fits(57)
    r.tail = r.head + 56 - SIZE
    assert r.fits(56)
    r.tail -= 1
    assert not r.fits(56)


@pytest.mark.parametrize(("head", "n", "bad", "blocked"), [
    (200, 40, (240, 250), False), (200, 40, (239, 250), True),       # just after / at its last byte
    (200, 40, (190, 200), False), (200, 40, (190, 201), True),       # just before / at its first byte
    (200, 72, (232, 256), False), (200, 72, (231, 256), True),       # past the PAD's header / in it
    (200, 72, (72, 100), False), (200, 72, (71, 100), True),         # past the record at 0 / in it
    (200, 72, (100, 200), False),
    (200, 56, (0, 10), False),                                       # exactly fills the lap: no wrap
    (224, 40, (250, 256), True),                                     # 32 left: the PAD is written
    (240, 40, (240, 256), False), (240, 40, (0, 1), True),           # 16 left: nothing written there
    (SIZE + 200, 40, (239, 240), True),                              # physical, in a later lap
])
def test_blocked_counts_only_what_a_write_would_touch(head: int, n: int, bad: tuple[int, int],
                                                       blocked: bool) -> None:
    r = ring(MemoryPool(4096), head=head, tail=head)
    r.bad = [(0, 0), bad]
    assert r.blocked(n) is blocked


@pytest.mark.parametrize(("head", "n", "bad", "clear"), [
    (200, 40, [], 200),
    (200, 40, [(240, 256)], 200),
    (200, 40, [(239, 240)], SIZE),                   # past it only 16 left: the next lap
    (200, 20, [(205, 210), (212, 222)], 222),        # past the furthest range in the way
    (200, 20, [(212, 222), (205, 210)], 222),
    (100, 40, [(205, 210)], 100),
    (250, 40, [(0, 10)], SIZE + 10),                 # the lap's end, then a range at its start
    (SIZE + 180, 40, [(200, 250), (0, 10)], 2 * SIZE + 10),
    (0, 40, [(0, SIZE)], None),                      # nowhere
    (0, SIZE + 1, [], None),                         # longer than the ring
    (0, SIZE, [], 0),
])
def test_clear_position(head: int, n: int, bad: list[tuple[int, int]], clear: int | None) -> None:
    r = ring(MemoryPool(4096), head=head, tail=head)
    r.bad = list(bad)
    assert r.clear_position(n) == clear
    assert r.head == head               # looking writes nothing and moves nothing


def _three(pool: MemoryPool) -> LogRing:
    r = ring(pool)
    for i in range(1, 4):
        append(r, small(i))
    return r


def test_replay_stops_before_the_record_asked() -> None:
    pool = MemoryPool(4096)
    _three(pool)
    assert replay(pool, stop_before_seq=3) == ([small(1), small(2)], (80, 3))
    assert replay(pool, stop_before_seq=1) == ([], (0, 1))
    assert replay(pool, stop_before_seq=9) == ([small(1), small(2), small(3)], (120, 4))
    # stopping before record 2 on purpose: what lies beyond is not damage
    pool.write(OFFSET + 200, encode_record(small(7), VID, 7))
    assert replay(pool, stop_before_seq=2) == ([small(1)], (40, 2))


def test_a_valid_record_past_a_torn_one_is_damage_only_when_asked() -> None:
    pool = MemoryPool(4096)
    _three(pool)
    torn = bytearray(encode_record(small(4), VID, 4))
    torn[-1] ^= 1
    pool.write(OFFSET + 120, bytes(torn))
    pool.write(OFFSET + 200, encode_record(small(5), VID, 5))
    with pytest.raises(CorruptVolumeError) as info:
        replay(pool)
    assert info.value.where == OFFSET + 200
    assert "log record 4 is unreadable but a later record follows it" in info.value.what
    assert replay(pool, check_damage=False) == ([small(1), small(2), small(3)], (120, 4))
    # a record from before (seq 3 again) further on is no sign of damage
    pool.write(OFFSET + 200, encode_record(small(5), VID, 3))
    assert replay(pool) == ([small(1), small(2), small(3)], (120, 4))


def test_a_record_that_does_not_apply_is_a_bad_record_naming_it() -> None:
    pool = MemoryPool(4096)
    r = ring(pool, head=SIZE + 40, tail=SIZE + 40, next_seq=20)
    for i in range(1, 4):
        append(r, small(i))

    def failing(exc: Exception) -> Any:
        def apply(record: Record) -> None:
            if record == small(2):
                raise exc
        return apply

    for exc, says in ((ValueError("no such inode"), "ValueError('no such inode')"),
                      (CorruptVolumeError("inode 2 is gone"), "inode 2 is gone")):
        with pytest.raises(BadRecordError) as info:
            LogRing.replay(pool, OFFSET, SIZE, VID, start=SIZE + 40, first_seq=20, apply=failing(exc))
        bad = info.value
        assert (bad.seq, bad.kind, bad.where, bad.pos) == (21, "SetAttr", OFFSET + 80, SIZE + 80)
        assert bad.what == f"log record 21 (SetAttr) does not apply to the state before it: {says}"
        assert bad.__cause__ is None and bad.__suppress_context__


def test_a_record_that_does_not_decode_is_a_bad_record_naming_its_place() -> None:
    pool = MemoryPool(4096)
    r = ring(pool, head=SIZE + 40, tail=SIZE + 40, next_seq=20)
    append(r, small(1))
    pool.write(OFFSET + 80, _frame(VID, 21, 99, b"\x90"))        # type 99: no such record
    with pytest.raises(BadRecordError) as info:
        replay(pool, start=SIZE + 40, first_seq=20)
    bad = info.value
    assert (bad.seq, bad.kind, bad.where, bad.pos) == (21, "type 99", OFFSET + 80, SIZE + 80)
    assert bad.what == "log record 21 has unknown type 99"
    # counted all the same: its checksum is right
    assert LogRing.count_from(pool, OFFSET, SIZE, VID, start=SIZE + 40, first_seq=20) == 2



def test_a_record_that_exactly_fills_the_rest_of_a_lap_stays_in_it() -> None:
    pool = DurablePool(4096)
    tail_record = encode_record(small(1), VID, 6)
    pool.write(OFFSET, tail_record)     # the oldest record still needed, at this lap's start
    r = ring(pool, head=SIZE + 216, tail=SIZE, next_seq=7)
    assert r.cost(40) == 40 and r.fits(40)          # the ring then exactly full
    append(r, small(2))
    assert (r.head, r.next_seq) == (2 * SIZE, 8)
    raw = ring_bytes(pool)
    assert raw[216:] == encode_record(small(2), VID, 7)
    assert raw[:40] == tail_record                   # no PAD, nothing written over the tail
    assert bytes(pool.durable[OFFSET + 216:OFFSET + SIZE]) == raw[216:]
    r.tail = SIZE + 40                               # (a checkpoint let go of the tail's record)
    append(r, small(3))
    assert (r.head, r.next_seq) == (2 * SIZE + 40, 9)
    assert ring_bytes(pool)[:40] == encode_record(small(3), VID, 8)
    assert replay(pool, start=SIZE + 216, first_seq=7) == ([small(2), small(3)], (2 * SIZE + 40, 9))


def test_replay_of_a_ring_exactly_full_ends_where_its_last_record_does() -> None:
    pool = MemoryPool(4096)
    mid = SetAttr(1, 0o644, None, None, None, None, None)    # 48 bytes
    records: list[Record] = [small(1), mid, big(2), small(3), mid]     # 40 + 48 + 72 + 40 + 48 = 248
    r = ring(pool, head=248, tail=248, next_seq=30)          # 8 bytes left in the lap: skipped
    for rec in records:
        append(r, rec)
    assert r.head == 248 + SIZE and not r.fits(1)
    assert replay(pool, start=248, first_seq=30) == (records, (248 + SIZE, 35))
    assert LogRing.count_from(pool, OFFSET, SIZE, VID, start=248, first_seq=30) == 5
