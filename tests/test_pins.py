"""Pins, holders, leases and pin policies: the seeds' "pinned pages vs truncate" threads.

Each test is named after the seed thread whose scenario it plays (seeds/ in the
shared tree):

- seed 000 (GUP references outlive truncate; busy extents, or make truncate
  wait): a pin over a range that is truncated, under each of the four
  policies.  ``defer`` changes the file now and parks the pinned blocks on the
  busy list (visible in ``statfs().busy`` and ``vol.pins()``, never handed to
  another file even when the volume fills up, freed at the last release);
  ``wait`` blocks without holding a lock (other threads use the volume
  meanwhile), refuses new pins and mappings over its range only, and fails
  with BusyError after its timeout with nothing changed; ``break`` with no
  lease is ``defer``; ``refuse`` is BusyError at once with nothing changed.
- seed 004 (busy list, waiting truncate, the I_MMAP_LOCK deadlock): pin +
  punch under each policy; thread A pins page A, thread B truncates with
  ``wait``, thread A then asks for page B inside the range and gets BusyError
  at once (a page outside the range is fine), lets go of A and B completes
  (a deadlock would hang: pytest-timeout turns it into a failure with every
  thread's traceback).  A stream of pins over the range, one always live,
  cannot starve the waiting truncate.
- seed 002 (the inode is the arbiter; pgmap must not go away under live
  references): unlink of a pinned file removes the name at once and leaves a
  readable orphan (``pins()`` path None) that is freed at the last release; a
  pool image taken while pinned mounts with the orphan reclaimed, nothing
  busy, no leak, fsck clean.  Rename-over and open("wb") of a pinned file
  orphan or park its blocks the same way; a released pin whose CPU view is
  still exported keeps its blocks until the export goes.  The volume refuses
  to close under live pins and mappings (BusyError naming them);
  ``close(force=True, timeout=t)`` breaks leases, revokes mappings, waits for
  pins (released meanwhile by another thread; a mapping taken meanwhile must
  not defeat it) or times out with the volume still open and usable.
- seed 003 (breakable seals, released when the holder exits): a lease broken
  by a conflicting truncate, with a cooperative holder (closes at
  ``on_break``, the change goes ahead at once) and an unresponsive one
  (revoked after ``lease_break_s``, its view still readable); pins and plain
  mappings left over are deferred.  Holders own what is opened, mapped and
  pinned through them and release it all at ``close()``; a holder that never
  releases keeps its blocks visibly busy and breaks nothing else.

Plus: pin geometry (``segments``/``pool_offset`` match the extents and the raw
pool bytes, ``buffer`` equals pread), write pins populating holes and
unwritten ranges durably, a multi-threaded stress test (pinners vs truncate /
punch / write / zero_range under ``defer`` and under ``wait`` with short
timeouts; fsck — which checks free + owned + busy == total — at every sampled
point), and bad input (double release, use after release, ranges past EOF,
zero/negative lengths, unknown policies, negative timeouts): clear errors and
no change to ``statfs()`` or ``vol.pins()``.

No test here measures time.  Threads are ordered by events and by what the
volume shows: a change that waits on a range refuses new pins there, and a
forced close refuses them too, so a test knows a waiter is waiting by polling
for that refusal (bounded by a count of tries, never by a clock).  Which of two
things happened first is recorded in a list, not by timestamps.  How long waits,
timeouts and lease breaks take is measured in bench/bench_waits.py.
"""

from __future__ import annotations

import errno
import gc
import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import daxfs
from daxfs.media import MemoryPool
from daxfs.testing import close_checked
from daxfs.volume import Volume

POOL = 16 << 20
BS = 4096
JOIN = 60.0         # a thread still running after this is hung (pytest-timeout is the backstop)
TRIES = 5_000       # polls for a refusal before calling it never coming


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def shm_path() -> Iterator[str]:
    path = f"/dev/shm/daxfs-pintest-{os.getpid()}-{uuid.uuid4().hex}.pool"
    yield path
    if os.path.exists(path):
        os.unlink(path)


@pytest.fixture
def make_vol(shm_path: str) -> Iterator[Callable[..., daxfs.Volume]]:
    """``make_vol(policy=..., lease_break_s=...)``: a fresh volume opened with those options."""
    opened: list[daxfs.Volume] = []

    def make(policy: str = "defer", lease_break_s: float = 0.2) -> daxfs.Volume:
        if not opened:
            daxfs.mkfs(shm_path, POOL).close()
        v = daxfs.open_volume(shm_path, policy=policy, lease_break_s=lease_break_s)
        opened.append(v)
        return v

    yield make
    for v in opened:
        close_checked(v)        # fails the test if it left a pin or mapping behind


@pytest.fixture
def vol(make_vol: Callable[..., daxfs.Volume]) -> daxfs.Volume:
    return make_vol()


def _pattern(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _new_file(vol: daxfs.Volume, path: str, data: bytes, mode: str = "w+b") -> daxfs.File:
    f = vol.open(path, mode, buffering=0)
    f.pwrite(data, 0)
    return f


def _accounting_ok(vol: daxfs.Volume) -> daxfs.StatFS:
    st = vol.statfs()
    assert st.free >= 0 and st.used >= 0 and st.busy >= 0
    assert st.free + st.used + st.busy + st.bad == st.size
    assert vol.fsck() == []
    return st


def _state(vol: daxfs.Volume) -> tuple[daxfs.StatFS, list[daxfs.PinInfo]]:
    """What a refused call must leave unchanged: the volume's counts and references (not
    ``resident``, the memory the medium holds, which the discarder lowers in the background
    after blocks are freed: a test's own punch a moment before may still be giving back)."""
    return vol.statfs()._replace(resident=0), vol.pins()


def _pool_ranges(pin: daxfs.Pin) -> list[tuple[int, int, int]]:
    """``(file_offset, length, pool_offset)`` of the pin's segments that have data blocks."""
    return [(fo, n, po) for fo, n, po in pin.segments if po is not None]


def _foreign_owners(vol: daxfs.Volume, pin: daxfs.Pin, handles: dict[str, daxfs.File], own: str) -> list[str]:
    """Files that own one of the pin's pool bytes at an offset other than the pinned one.

    The segments are read once, first: a hole under a read pin that a write fills
    later gains blocks that another file may have owned a moment before, so only
    blocks held since before the extents are read can be checked against them.
    """
    bad = []
    held = _pool_ranges(pin)
    for path, h in handles.items():
        for e in h.extents():
            for fo, n, po in held:
                lo, hi = max(po, e.pool_offset), min(po + n, e.pool_offset + e.length)
                if lo >= hi:
                    continue
                same_place = path == own and e.file_offset - fo == e.pool_offset - po
                if not same_place:
                    bad.append(f"{path} extent {e} overlaps pinned pool range {po}+{n} (file {own}@{fo})")
    return bad


def _raw_pool(shm_path: str, offset: int, n: int) -> bytes:
    fd = os.open(shm_path, os.O_RDONLY)
    try:
        return os.pread(fd, n, offset)
    finally:
        os.close(fd)


def _start(target: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


def _join(*threads: threading.Thread) -> None:
    for t in threads:
        t.join(JOIN)
    hung = [t for t in threads if t.is_alive()]
    assert not hung, f"{len(hung)} thread(s) still running: deadlock?"


def _until_refused(attempt: Callable[[], object], what: str) -> None:
    """Return once ``attempt()`` (a pin or a mapping) raises BusyError: a change waiting on
    its range, or a forced close, refuses new references -- the sign that the other thread
    is waiting now.  A reference it gets meanwhile is let go at once.  Bounded by a count."""
    pause = threading.Event()
    for _ in range(TRIES):
        try:
            ref = attempt()
        except daxfs.BusyError:
            return
        ref.release() if isinstance(ref, daxfs.Pin) else ref.close()  # type: ignore[attr-defined]
        pause.wait(0.001)                               # let the other thread run
    raise AssertionError(f"{what}: new references were never refused")


# ---------------------------------------------------------------- pin basics


def test_pin_segments_pool_offset_and_buffer_match_the_file(vol: daxfs.Volume, shm_path: str) -> None:
    # two files written interleaved, so each is made of scattered extents
    a = vol.open("a", "w+b", buffering=0)
    b = vol.open("b", "w+b", buffering=0)
    data = _pattern(40 * BS, 1)
    for i in range(0, 40 * BS, 3 * BS):
        a.pwrite(data[i:i + 3 * BS], i)
        b.pwrite(b"x" * BS, i // 3)
    a.punch_hole(10 * BS, 4 * BS)                         # a hole in the middle
    expect = a.pread(40 * BS, 0)
    rng = random.Random(7)
    for _ in range(20):
        off = rng.randrange(0, 40 * BS - 1)
        n = rng.randrange(1, 40 * BS - off + 1)
        with a.pin(off, n) as p:
            segs = p.segments
            assert segs[0][0] == off
            assert sum(k for _fo, k, _po in segs) == n
            pos = off
            for fo, k, po in segs:
                assert fo == pos and k > 0
                pos += k
                if po is None:                             # a hole reads as zeros
                    assert expect[fo:fo + k] == bytes(k)
                    assert 10 * BS <= fo and fo + k <= 14 * BS
                else:                                      # a DMA engine reads these very bytes
                    assert _raw_pool(shm_path, po, k) == expect[fo:fo + k]
            assert p.pool_offset == segs[0][2]
            assert bytes(p.buffer) == expect[off:off + n]
            assert p.buffer.readonly
    assert vol.pins() == []
    assert vol.statfs().busy == 0
    a.close()
    b.close()
    _accounting_ok(vol)


def test_write_pin_populates_holes_and_unwritten_durably_and_stores_reach_the_file() -> None:
    pool = MemoryPool(POOL)
    Volume.format(pool)
    v = Volume.mount(pool)
    f = v.open("w", "w+b", buffering=0)
    f.pwrite(b"w" * BS, 0)
    f.truncate(8 * BS)                                   # blocks 1..7 a hole
    f.fallocate(2 * BS, 2 * BS)                          # blocks 2..3 unwritten
    with f.pin(BS, 6 * BS) as rp:                        # a read pin populates nothing
        assert all(po is None for _fo, _k, po in rp.segments)
        assert sum(k for _fo, k, _po in rp.segments) == 6 * BS
        assert rp.pool_offset is None
        assert bytes(rp.buffer) == bytes(6 * BS)
    free = v.statfs().free
    p = f.pin(BS + 100, 5 * BS, write=True)
    assert all(po is not None for _fo, _k, po in p.segments)
    assert v.statfs().free == free - 4 * BS                 # 1 + 4..5 filled; 2..3 converted
    assert not any("unwritten" in e.flags for e in f.extents())
    assert f.stat().st_size == 8 * BS                       # populating never grows the file
    assert not p.buffer.readonly
    assert bytes(p.buffer) == bytes(5 * BS)
    p.buffer[:5] = b"hello"
    assert f.pread(5, BS + 100) == b"hello"
    live = f.extents()
    copy = Volume.mount(MemoryPool(pool.image()))           # the population is already in the pool
    try:
        with copy.open("w", "rb", buffering=0) as g:
            assert g.extents() == live
        assert copy.fsck() == []
    finally:
        copy.close()
    p.release()
    f.close()
    _accounting_ok(v)
    v.close()


def test_pin_holds_its_inode_after_the_handle_closes(vol: daxfs.Volume) -> None:
    data = _pattern(6 * BS, 2)
    f = _new_file(vol, "h", data)
    p = f.pin(BS, 2 * BS)
    f.close()
    assert bytes(p.buffer) == data[BS:3 * BS]
    with pytest.raises(ValueError):
        f.pin(0, BS)                                     # the handle is closed, the pin is not
    vol.rename("h", "renamed")
    assert [(i.path, i.kind) for i in vol.pins()] == [("/renamed", "pin")]
    p.release()
    _accounting_ok(vol)


# ---------------------------------------------------------------- seed 000: pin + truncate, four policies


def test_seed000_truncate_defer_parks_pinned_blocks_never_reused(vol: daxfs.Volume, shm_path: str) -> None:
    data = _pattern(32 * BS, 3)
    f = _new_file(vol, "t", data)
    before = vol.statfs()
    p = f.pin(8 * BS + 10, 4 * BS)                      # touches file blocks 8..12 (5 blocks)
    segs = p.segments
    f.truncate(0)                                        # defer (the volume's default): changes now
    assert f.stat().st_size == 0 and f.extents() == []
    st = vol.statfs()
    assert st.busy == 5 * BS
    assert st.free == before.free + 27 * BS
    assert [(i.kind, i.path, i.offset, i.length) for i in vol.pins()] == [("pin", "/t", 8 * BS + 10, 4 * BS)]
    assert p.segments == segs                             # the DMA list does not change
    assert bytes(p.buffer) == data[8 * BS + 10:12 * BS + 10]   # first CPU view made after the truncate
    # fill the volume: the busy blocks are never handed to another file
    g = vol.open("filler", "w+b", buffering=0)
    chunk = b"\xee" * (64 * BS)
    with pytest.raises(OSError) as exc:
        while True:
            g.write(chunk)
    assert exc.value.errno == errno.ENOSPC
    g.write(b"\xee" * (vol.statfs().free))
    assert vol.statfs().free == 0 and vol.statfs().busy == 5 * BS
    assert _foreign_owners(vol, p, {"filler": g, "t": f}, "t") == []
    assert bytes(p.buffer) == data[8 * BS + 10:12 * BS + 10]
    for _fo, k, po in segs:
        assert _raw_pool(shm_path, po, k) == data[_fo:_fo + k]
    _accounting_ok(vol)
    p.release()
    st = vol.statfs()
    assert st.busy == 0 and st.free == 5 * BS              # freed at the last reference
    assert vol.pins() == []
    g.close()
    f.close()
    _accounting_ok(vol)


def test_seed000_truncate_defer_frees_only_when_the_last_of_overlapping_pins_goes(vol: daxfs.Volume) -> None:
    f = _new_file(vol, "o", _pattern(16 * BS, 4))
    p1 = f.pin(2 * BS, 4 * BS)                           # blocks 2..5
    p2 = f.pin(4 * BS, 4 * BS)                           # blocks 4..7
    f.truncate(BS)
    assert vol.statfs().busy == 6 * BS
    p1.release()
    assert vol.statfs().busy == 4 * BS                    # 4..5 still held by p2
    p2.release()
    assert vol.statfs().busy == 0
    f.close()
    _accounting_ok(vol)


def test_seed000_truncate_wait_blocks_without_a_lock_until_the_pin_goes(vol: daxfs.Volume) -> None:
    data = _pattern(16 * BS, 5)
    f = _new_file(vol, "w", data)
    other = _new_file(vol, "other", b"o" * BS)
    p = f.pin(10 * BS, BS)
    order: list[str] = []

    def truncate() -> None:
        with vol.open("w", "r+b", buffering=0) as g:
            g.truncate(4 * BS, policy="wait", timeout=JOIN)
            order.append("truncated")

    t = _start(truncate)
    _until_refused(lambda: f.pin(6 * BS, BS), "a truncate waiting on the pin")
    assert t.is_alive() and order == []
    assert f.stat().st_size == 16 * BS                      # nothing changed yet
    # the waiting truncate holds no lock: the volume is usable meanwhile
    assert f.pread(BS, 10 * BS) == data[10 * BS:11 * BS]
    other.pwrite(b"p" * BS, BS)
    with vol.open("new", "wb", buffering=0) as n:
        n.write(b"n" * 3 * BS)
    vol.mkdir("d")
    assert _accounting_ok(vol).busy == 0
    # new references to the range it waits on are refused (no starving it) ...
    for attempt in (lambda: f.pin(6 * BS, BS), lambda: f.pin(0, 16 * BS), lambda: f.map(12 * BS, BS),
                    lambda: f.map(4 * BS, BS, lease=True), lambda: f.pin(5 * BS, BS, write=True)):
        with pytest.raises(daxfs.BusyError) as exc:
            attempt()
        assert exc.value.errno == errno.EBUSY
    # ... other ranges and other files are fine
    with f.pin(0, 4 * BS) as outside, other.pin(0, 2 * BS), f.map(0, 2 * BS):
        assert bytes(outside.buffer) == data[:4 * BS]
    assert t.is_alive() and order == []
    order.append("released")
    p.release()
    _join(t)
    assert order == ["released", "truncated"]
    assert f.stat().st_size == 4 * BS
    assert vol.statfs().busy == 0                          # it waited: nothing had to be parked
    with f.pin(4 * BS - 1, 1):                            # the refusal ended with the wait
        pass
    f.close()
    other.close()
    _accounting_ok(vol)


def test_seed000_truncate_wait_times_out_with_busy_error_and_nothing_changed(vol: daxfs.Volume) -> None:
    h = vol.holder("rdma-nic")
    f = h.open("tw", "w+b", buffering=0)
    f.pwrite(_pattern(8 * BS, 6), 0)
    p = f.pin(6 * BS, BS)
    extents = f.extents()
    before = _state(vol)
    with pytest.raises(daxfs.BusyError) as exc:
        f.truncate(BS, policy="wait", timeout=0.05)      # how long it waited: bench_waits.py
    assert exc.value.errno == errno.EBUSY
    assert "rdma-nic" in exc.value.holders and "rdma-nic" in str(exc.value)
    assert _state(vol) == before and f.extents() == extents and f.stat().st_size == 8 * BS
    with pytest.raises(daxfs.BusyError):
        f.truncate(0, policy="wait", timeout=0)            # timeout 0: one look, then EBUSY
    with f.pin(5 * BS, 2 * BS), f.map(6 * BS, BS):         # no refusal is left behind
        pass
    assert _state(vol) == before
    p.release()
    f.truncate(BS, policy="wait", timeout=0)               # nothing in the way: no waiting at all
    assert f.stat().st_size == BS
    h.close()
    _accounting_ok(vol)


def test_seed000_truncate_refuse_is_busy_error_at_once(make_vol: Callable[..., daxfs.Volume]) -> None:
    vol = make_vol(policy="refuse")
    data = _pattern(8 * BS, 7)
    f = _new_file(vol, "r", data)
    p = f.pin(5 * BS, 100)
    extents = f.extents()
    before = _state(vol)
    with pytest.raises(daxfs.BusyError) as exc:
        f.truncate(2 * BS)          # the volume's policy (waiting for p, held here, would hang)
    assert "pin" in str(exc.value) and "r" in str(exc.value)
    with pytest.raises(daxfs.BusyError):
        f.truncate(0, policy="refuse")
    assert _state(vol) == before and f.extents() == extents and f.pread(8 * BS, 0) == data
    f.truncate(6 * BS)                                      # keeps every pinned block: allowed
    f.truncate(2 * BS, policy="defer")                      # a per-call override
    assert f.stat().st_size == 2 * BS and vol.statfs().busy == BS
    p.release()
    f.close()
    _accounting_ok(vol)


def test_seed000_truncate_break_without_leases_is_defer(make_vol: Callable[..., daxfs.Volume]) -> None:
    vol = make_vol(policy="break", lease_break_s=3600.0)   # a wait for it would hang the test
    data = _pattern(8 * BS, 8)
    f = _new_file(vol, "b", data)
    p = f.pin(4 * BS, BS)
    m = f.map(6 * BS, 2 * BS)                               # a plain mapping: not breakable
    f.truncate(0)                                           # nothing to break: no lease_break_s wait
    assert not m.revoked and not m.closed
    assert bytes(m.buffer) == data[6 * BS:]
    assert bytes(p.buffer) == data[4 * BS:5 * BS]
    assert vol.statfs().busy == 3 * BS
    assert sorted(i.kind for i in vol.pins()) == ["mapping", "pin"]
    m.close()
    p.release()
    assert vol.statfs().busy == 0
    f.close()
    _accounting_ok(vol)


def test_seed000_volume_policy_applies_to_open_wb_rename_over_and_zero_range(
        make_vol: Callable[..., daxfs.Volume]) -> None:
    vol = make_vol(policy="refuse")
    data = _pattern(4 * BS, 9)
    f = _new_file(vol, "v", data)
    _new_file(vol, "src", b"s" * BS).close()
    p = f.pin(0, BS)
    before = _state(vol)
    for attempt in (lambda: vol.open("v", "wb", buffering=0), lambda: vol.rename("src", "v"),
                    lambda: f.zero_range(0, 10), lambda: vol.unlink("v"),
                    lambda: f.punch_hole(0, BS)):
        with pytest.raises(daxfs.BusyError):
            attempt()
    assert _state(vol) == before
    assert sorted(vol.listdir()) == ["src", "v"] and f.pread(4 * BS, 0) == data
    f.zero_range(BS, BS)                                    # not over the pin: fine
    vol.unlink("v", policy="defer")                         # the per-call override
    assert sorted(vol.listdir()) == ["src"]
    assert [i.path for i in vol.pins()] == [None]
    p.release()
    f.close()
    _accounting_ok(vol)


def test_seed000_open_wb_with_volume_policy_wait_waits_for_the_pin(make_vol: Callable[..., daxfs.Volume]) -> None:
    vol = make_vol(policy="wait")
    f = _new_file(vol, "ow", _pattern(4 * BS, 10))
    p = f.pin(BS, BS)
    opened: list[daxfs.File] = []
    t = _start(lambda: opened.append(vol.open("ow", "wb", buffering=0)))
    _until_refused(lambda: f.pin(0, BS), "open('wb') waiting on the pin")
    assert t.is_alive() and f.stat().st_size == 4 * BS and opened == []
    p.release()
    _join(t)
    assert f.stat().st_size == 0 and vol.statfs().busy == 0
    opened[0].close()
    f.close()
    _accounting_ok(vol)


# ---------------------------------------------------------------- seed 004: punch, wait, the deadlock


def test_seed004_punch_under_a_pin_per_policy(make_vol: Callable[..., daxfs.Volume]) -> None:
    vol = make_vol(policy="refuse")
    data = _pattern(16 * BS, 11)
    f = _new_file(vol, "p", data)
    p = f.pin(2 * BS, 8 * BS)                               # blocks 2..9
    before = _state(vol)
    extents = f.extents()
    with pytest.raises(daxfs.BusyError):
        f.punch_hole(3 * BS + 100, 4 * BS)                  # volume policy refuse
    with pytest.raises(daxfs.BusyError):
        f.punch_hole(9 * BS, 1, policy="wait", timeout=0.1)
    assert _state(vol) == before and f.extents() == extents and f.pread(16 * BS, 0) == data
    f.punch_hole(12 * BS, 2 * BS)                           # outside the pin: allowed under refuse
    # defer: punched now; whole blocks 4..6 parked busy, partial edge blocks 3 and 7 zeroed in place
    f.punch_hole(3 * BS + 100, 4 * BS, policy="defer")
    expect = bytearray(data)
    expect[3 * BS + 100:7 * BS + 100] = bytes(4 * BS)
    expect[12 * BS:14 * BS] = bytes(2 * BS)
    assert f.pread(16 * BS, 0) == bytes(expect)
    assert vol.statfs().busy == 3 * BS
    pinned = bytes(p.buffer)
    assert pinned[:BS + 100] == data[2 * BS:3 * BS + 100]
    assert pinned[BS + 100:2 * BS] == bytes(BS - 100)       # edge zeroed in the very block pinned
    assert pinned[2 * BS:5 * BS] == data[4 * BS:7 * BS]     # busy blocks keep their bytes
    assert pinned[5 * BS:5 * BS + 100] == bytes(100)
    assert pinned[5 * BS + 100:] == data[7 * BS + 100:10 * BS]
    # wait: a second pin holds block 9; a waiting punch finishes when it goes
    q = f.pin(9 * BS, BS)
    order: list[str] = []
    t = _start(lambda: (f.punch_hole(9 * BS, BS, policy="wait", timeout=JOIN), order.append("punched")))
    _until_refused(lambda: f.pin(9 * BS, 1), "a punch waiting on the pins")
    assert t.is_alive() and order == []
    q.release()
    # p still holds block 9: the wait goes on until p is let go too
    with pytest.raises(daxfs.BusyError):
        f.pin(9 * BS, 1)
    order.append("p released")
    p.release()
    _join(t)
    assert order == ["p released", "punched"]
    assert f.pread(BS, 9 * BS) == bytes(BS)
    assert vol.statfs().busy == 0 and vol.pins() == []
    f.close()
    _accounting_ok(vol)


@pytest.mark.parametrize("second", ["pin", "map"])
def test_seed004_waiting_truncate_does_not_deadlock_the_pinner(vol: daxfs.Volume, second: str) -> None:
    """Thread A pins page A; B truncates with 'wait'; A then needs page B in the range."""
    _new_file(vol, "dl", _pattern(16 * BS, 12)).close()
    a_pinned, go = threading.Event(), threading.Event()
    out: dict[str, object] = {}

    def thread_a() -> None:
        with vol.open("dl", "rb", buffering=0) as f:
            page_a = f.pin(8 * BS, BS)                      # in the range B will truncate
            a_pinned.set()
            go.wait(JOIN)
            try:
                # waiting here for B, which waits for page A, would deadlock: refused at once
                ref = f.pin(12 * BS, BS) if second == "pin" else f.map(12 * BS, BS)
                out["page_b"] = ref                          # would be a bug: B is waiting on it
            except daxfs.BusyError as exc:
                out["errno"] = exc.errno
            outside = f.pin(2 * BS, BS) if second == "pin" else f.map(2 * BS, BS)   # not in B's range
            out["outside"] = bytes(outside.buffer[:4])
            order.append("a released")
            page_a.release()                                 # A gives up and lets go: B proceeds
            outside.release() if second == "pin" else outside.close()

    def thread_b() -> None:
        with vol.open("dl", "r+b", buffering=0) as g:
            g.truncate(4 * BS, policy="wait", timeout=JOIN)
            order.append("b done")

    order: list[str] = []
    ta = _start(thread_a)
    assert a_pinned.wait(JOIN)
    tb = _start(thread_b)
    with vol.open("dl", "rb", buffering=0) as probe:
        _until_refused(lambda: probe.pin(13 * BS, 1), "the truncate waiting for page A")
    assert tb.is_alive() and order == [], "the truncate did not wait for page A"
    go.set()
    _join(ta, tb)
    assert "page_b" not in out
    assert out["errno"] == errno.EBUSY
    assert out["outside"] == _pattern(16 * BS, 12)[2 * BS:2 * BS + 4]
    assert order == ["a released", "b done"]
    assert vol.stat("dl").st_size == 4 * BS
    assert vol.pins() == [] and vol.statfs().busy == 0
    _accounting_ok(vol)


def test_seed004_stream_of_pins_cannot_starve_a_waiting_truncate(vol: daxfs.Volume) -> None:
    """Pinners that always keep a pin live in the range (each takes the next before it lets go
    of the last) would keep a truncate waiting forever -- unless new pins are refused while it
    waits.  They run until the truncate returns (bounded by a count: reaching it means the
    truncate was starved)."""
    _new_file(vol, "st", _pattern(32 * BS, 13)).close()
    stop = threading.Event()
    started = threading.Barrier(4)                         # three pinners and the truncate
    counts = {"pins": 0, "refused": 0}
    starved: list[int] = []
    errors: list[BaseException] = []
    limit = 200_000

    def pinner(seed: int) -> None:
        rng = random.Random(seed)
        held: daxfs.Pin | None = None
        try:
            with vol.open("st", "rb", buffering=0) as f:
                held = f.pin(8 * BS + seed * BS, BS)
                started.wait(JOIN)
                for _ in range(limit):
                    if stop.is_set():
                        break
                    try:                                   # always inside the range truncated
                        p = f.pin(rng.randrange(8, 32) * BS, BS)
                    except ValueError:                     # past the new EOF: it got through
                        break
                    except daxfs.BusyError:
                        counts["refused"] += 1
                        if held is not None:
                            held.release()
                            held = None
                        continue
                    counts["pins"] += 1
                    if held is not None:
                        held.release()
                    held = p
                else:
                    starved.append(seed)
                if held is not None:
                    held.release()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [_start(lambda s=s: pinner(s)) for s in range(3)]
    started.wait(JOIN)                                     # every pinner holds a pin in the range
    with vol.open("st", "r+b", buffering=0) as g:
        g.truncate(8 * BS, policy="wait", timeout=JOIN)
    stop.set()
    _join(*threads)
    assert not errors, errors
    assert not starved, "the pinners ran out of tries before the truncate got through"
    assert counts["refused"] > 0                           # the wait refused them
    assert vol.stat("st").st_size == 8 * BS
    assert vol.pins() == [] and vol.statfs().busy == 0
    _accounting_ok(vol)


# ---------------------------------------------------------------- seed 002: unlink, orphans, crash, close


def test_seed002_unlink_pinned_file_leaves_a_readable_orphan(vol: daxfs.Volume) -> None:
    data = _pattern(10 * BS, 14)
    base = vol.statfs()
    h = vol.holder("dma")
    f = h.open("u", "w+b", buffering=0)
    f.pwrite(data, 0)
    p = f.pin(BS, 5 * BS)
    ino = f.stat().st_ino
    f.close()                                               # only the pin holds the inode now
    used = vol.statfs().used
    vol.unlink("u")                                         # the name goes at once
    assert not vol.exists("u") and vol.listdir() == []
    [info] = vol.pins()
    assert (info.holder, info.ino, info.path, info.kind) == ("dma", ino, None, "pin")
    assert bytes(p.buffer) == data[BS:6 * BS]               # the orphan is still readable by the holder
    st = vol.statfs()
    assert st.used == used and st.busy == 0                 # its blocks are still its own
    with vol.open("u", "w+b", buffering=0) as again:                     # the name is free for a new inode
        again.write(b"new")
        assert again.stat().st_ino != ino
    vol.unlink("u")
    assert vol.fsck() == []
    h.close()                                               # last reference: orphan reclaimed
    assert p.released
    st = vol.statfs()
    assert st.free == base.free and st.files == base.files and st.busy == 0
    _accounting_ok(vol)


def test_seed002_rename_over_and_open_wb_under_a_pin(vol: daxfs.Volume) -> None:
    data = _pattern(4 * BS, 33)
    vol.mkdir("d")
    _new_file(vol, "d/x", data).close()
    _new_file(vol, "src", b"s" * BS).close()
    base_files = vol.statfs().files
    with vol.open("d/x", "rb", buffering=0) as g:
        p = g.pin(0, 2 * BS)
    assert [i.path for i in vol.pins()] == ["/d/x"]
    vol.rename("d", "e")                                    # pins() follows the current name
    assert [i.path for i in vol.pins()] == ["/e/x"]
    vol.rename("src", "e/x")                                # defer: the pinned inode is an orphan now
    assert [i.path for i in vol.pins()] == [None]
    assert vol.statfs().files == base_files                 # the orphan still counts
    assert bytes(p.buffer) == data[:2 * BS]
    p.release()
    assert vol.statfs().files == base_files - 1             # reclaimed at the last reference
    with vol.open("e/x", "rb", buffering=0) as g:
        q = g.pin(0, BS)
    w = vol.open("e/x", "wb", buffering=0)                               # truncating open, defer: block parked
    assert vol.statfs().busy == BS and bytes(q.buffer) == b"s" * BS
    w.write(b"n" * BS)
    assert bytes(q.buffer) == b"s" * BS                     # the new data went to another block
    q.release()
    w.close()
    assert vol.statfs().busy == 0
    _accounting_ok(vol)


def test_seed002_released_pin_with_a_live_export_keeps_its_blocks(vol: daxfs.Volume) -> None:
    data = _pattern(4 * BS, 34)
    f = _new_file(vol, "ex", data)
    p = f.pin(BS, 2 * BS)
    arr = np.frombuffer(p.buffer, np.uint8)                 # an export of the CPU view
    p.release()
    assert vol.pins() == []                                 # the pin is gone ...
    f.truncate(0)
    assert vol.statfs().busy == 2 * BS                      # ... its memory is not: still held
    g = _new_file(vol, "other", b"o" * 8 * BS)
    assert bytes(arr) == data[BS:3 * BS]
    del arr
    gc.collect()
    assert vol.statfs().busy == 0
    f.close()
    g.close()
    _accounting_ok(vol)


def test_seed002_unlink_under_refuse_and_wait(make_vol: Callable[..., daxfs.Volume]) -> None:
    vol = make_vol(policy="wait")
    f = _new_file(vol, "uw", _pattern(4 * BS, 15))
    p = f.pin(0, BS)
    with pytest.raises(daxfs.BusyError):
        vol.unlink("uw", policy="refuse")
    assert vol.exists("uw")
    vol.link("uw", "second")
    vol.unlink("uw", policy="refuse")                       # another name remains: nothing detached
    assert [i.path for i in vol.pins()] == ["/second"]
    t = _start(lambda: vol.unlink("second"))                # the volume's policy: wait
    _until_refused(lambda: f.pin(BS, BS), "an unlink waiting on the pin")
    assert t.is_alive() and vol.exists("second")
    p.release()
    _join(t)
    assert not vol.exists("second")
    f.close()
    _accounting_ok(vol)


def test_seed002_orphan_and_busy_blocks_pinned_at_crash_are_reclaimed_at_mount() -> None:
    pool = MemoryPool(POOL)
    Volume.format(pool)
    v = Volume.mount(pool)
    empty = v.statfs()
    keep = _pattern(3 * BS, 16)
    _new_file(v, "keep", keep).close()
    h = v.holder("gpu")
    gone = h.open("gone", "w+b", buffering=0)
    gone.pwrite(_pattern(20 * BS, 17), 0)
    p_orphan = gone.pin(0, 20 * BS)
    gone.close()
    v.unlink("gone")                                        # orphan held by the pin
    shrunk = h.open("shrunk", "w+b", buffering=0)
    shrunk.pwrite(_pattern(12 * BS, 18), 0)
    p_busy = shrunk.pin(4 * BS, 8 * BS)
    shrunk.truncate(2 * BS)                                 # blocks 4..11 busy
    live = v.statfs()
    assert live.busy == 8 * BS and [i.path for i in v.pins()] == [None, "/shrunk"]
    image = pool.image()                                    # the machine dies here
    after = Volume.mount(MemoryPool(image))
    try:
        assert sorted(after.listdir()) == ["keep", "shrunk"]
        assert after.pins() == []
        st = after.statfs()
        assert st.busy == 0
        assert st.files == 3                                # root + 2: the orphan is gone
        assert st.used == 5 * BS                            # keep 3 + shrunk 2: nothing leaked
        assert st.free == empty.free - 5 * BS
        assert after.fsck() == []
        with after.open("keep", "rb", buffering=0) as k:
            assert k.read() == keep
        with after.open("shrunk", "rb", buffering=0) as s:
            assert s.read() == _pattern(12 * BS, 18)[:2 * BS]
    finally:
        after.close()
    # the original, still running, is unaffected (but for residency: image() read every page in)
    assert v.statfs()._replace(resident=0) == live._replace(resident=0)
    h.close()
    assert v.statfs().used == 5 * BS and v.statfs().busy == 0
    _accounting_ok(v)
    v.close()


def test_seed002_volume_close_with_live_pins_is_busy_error(vol: daxfs.Volume) -> None:
    f = _new_file(vol, "c", _pattern(4 * BS, 19))
    h = vol.holder("capture-card")
    g = h.open("c", "rb", buffering=0)
    p1 = g.pin(0, BS)
    p2 = f.pin(BS, BS)
    m = f.map(0, 4 * BS)
    with pytest.raises(daxfs.BusyError) as exc:
        vol.close()
    assert exc.value.errno == errno.EBUSY
    msg = str(exc.value)
    assert "capture-card" in msg and "pin" in msg and "mapping" in msg and "c" in msg
    assert set(exc.value.holders) == {"capture-card", f"pid {os.getpid()}"}
    assert not vol.closed and not m.revoked
    assert f.pread(4, 0) == _pattern(4 * BS, 19)[:4]         # still fully usable
    h.close()
    p2.release()
    with pytest.raises(daxfs.BusyError):
        vol.close()                                         # the mapping still lives
    m.close()
    f.close()
    vol.close()
    assert vol.closed


def test_seed002_force_close_breaks_revokes_and_waits_for_pins_released_meanwhile(
        make_vol: Callable[..., daxfs.Volume], shm_path: str) -> None:
    vol = make_vol(lease_break_s=0.2)
    data = _pattern(8 * BS, 20)
    f = _new_file(vol, "fc", data)
    broken: list[daxfs.Mapping] = []
    lease = f.map(0, 2 * BS, lease=True, on_break=broken.append)
    plain = f.map(2 * BS, 2 * BS)
    arr = plain.array()
    p = f.pin(4 * BS, 4 * BS)
    order: list[str] = []

    def release_when_closing() -> None:
        _until_refused(lambda: f.pin(0, BS), "a forced close")
        assert bytes(p.buffer[:4]) == data[4 * BS:4 * BS + 4]
        order.append("released")
        p.release()

    t = _start(release_when_closing)
    vol.close(force=True, timeout=JOIN)
    order.append("closed")
    _join(t)
    assert vol.closed and order == ["released", "closed"]     # close waited for the pin
    assert broken == [lease] and lease.revoked and plain.revoked
    assert bytes(lease.buffer) == data[:2 * BS] and bytes(arr) == data[2 * BS:4 * BS]
    lease.close()
    plain.close()
    del arr
    with daxfs.open_volume(shm_path) as again:
        assert again.fsck() == [] and again.statfs().busy == 0
        with again.open("fc", "rb", buffering=0) as g:
            assert g.read() == data


def test_seed002_force_close_is_not_defeated_by_a_mapping_taken_during_its_wait(vol: daxfs.Volume) -> None:
    """close(force) revokes mappings and waits for pins; a thread that maps while it waits
    must not make it fail once every pin is gone (refuse the mapping, or revoke it too)."""
    data = _pattern(4 * BS, 35)
    f = _new_file(vol, "cw", data)
    p = f.pin(0, BS)
    got: list[object] = []

    def meanwhile() -> None:
        _until_refused(lambda: f.pin(2 * BS, 1), "a forced close")   # close is waiting for p now
        try:
            got.append(f.map(BS, BS))
        except (daxfs.BusyError, ValueError) as exc:        # refused: fine too
            got.append(exc)
        p.release()

    t = _start(meanwhile)
    try:
        vol.close(force=True, timeout=JOIN)
        outcome: object = "closed"
    except daxfs.BusyError as exc:
        outcome = exc
    _join(t)
    leftover = [m for m in got if isinstance(m, daxfs.Mapping)]
    for m in leftover:
        assert m.revoked and bytes(m.buffer) == data[BS:2 * BS]
        m.close()
    assert outcome == "closed", f"force close failed: {outcome}"
    assert vol.closed


def test_seed002_force_close_times_out_while_a_pin_stays(vol: daxfs.Volume) -> None:
    data = _pattern(4 * BS, 21)
    f = _new_file(vol, "ft", data)
    p = f.pin(0, BS)
    m = f.map(BS, BS)
    with pytest.raises(daxfs.BusyError) as exc:
        vol.close(force=True, timeout=0.05)                 # how long it waited: bench_waits.py
    assert "pin" in str(exc.value)
    assert not vol.closed
    assert m.revoked and bytes(m.buffer) == data[BS:2 * BS]  # mappings were revoked on the way
    assert [i.kind for i in vol.pins()] == ["pin"]
    # still open and usable
    f.pwrite(b"more", 4 * BS)
    with f.pin(2 * BS, BS):
        pass
    with pytest.raises(ValueError):
        vol.close(force=True, timeout=-1)
    p.release()
    m.close()
    f.close()
    _accounting_ok(vol)
    vol.close()
    assert vol.closed


# ---------------------------------------------------------------- seed 003: leases, holders


def test_seed003_lease_break_cooperative_holder_lets_go_at_once(make_vol: Callable[..., daxfs.Volume]) -> None:
    vol = make_vol(policy="break", lease_break_s=3600.0)    # a grace period a wait for would hang
    data = _pattern(8 * BS, 22)
    f = _new_file(vol, "lc", data)
    # one holder closes from its callback, another from its own thread when told
    told = threading.Event()
    sync_calls: list[daxfs.Mapping] = []
    m_sync = f.map(0, 2 * BS, lease=True, on_break=lambda m: (sync_calls.append(m), m.close()))
    m_async = f.map(4 * BS, 2 * BS, lease=True, on_break=lambda m: told.set())
    assert sorted(i.kind for i in vol.pins()) == ["lease", "lease"]
    t = _start(lambda: (told.wait(JOIN), m_async.close()))
    f.truncate(0)
    _join(t)
    assert sync_calls == [m_sync]
    assert m_sync.closed and m_async.closed and not m_sync.revoked and not m_async.revoked
    assert vol.pins() == [] and vol.statfs().busy == 0
    f.close()
    _accounting_ok(vol)


def test_seed003_lease_break_unresponsive_holder_is_revoked_after_lease_break_s(
        make_vol: Callable[..., daxfs.Volume]) -> None:
    vol = make_vol(lease_break_s=0.05)                      # how long it gave: bench_waits.py
    data = _pattern(8 * BS, 23)
    f = _new_file(vol, "lu", data)
    calls: list[daxfs.Mapping] = []
    m = f.map(2 * BS, 4 * BS, lease=True, on_break=calls.append)       # told, but does nothing
    silent = f.map(6 * BS, 2 * BS, lease=True)                          # no callback at all
    outside = f.map(0, BS, lease=True, on_break=calls.append)           # not in the range
    arr = m.array()
    f.truncate(BS, policy="break")
    assert calls == [m]
    assert m.revoked and silent.revoked and not outside.revoked
    assert bytes(m.buffer) == data[2 * BS:6 * BS] and bytes(arr) == data[2 * BS:6 * BS]
    assert bytes(silent.buffer) == data[6 * BS:]
    assert [(i.kind, i.offset) for i in vol.pins()] == [("lease", 0)]
    assert vol.statfs().busy == 0                                       # revoked: blocks let go
    assert f.stat().st_size == BS
    m.close()
    silent.close()
    outside.close()
    del arr
    f.close()
    _accounting_ok(vol)


def test_seed003_break_handles_pins_and_plain_mappings_as_defer(make_vol: Callable[..., daxfs.Volume]) -> None:
    vol = make_vol(lease_break_s=0.2)
    data = _pattern(8 * BS, 24)
    f = _new_file(vol, "bd", data)
    lease = f.map(0, 8 * BS, lease=True, on_break=lambda m: m.close())
    p = f.pin(2 * BS, 2 * BS)
    m = f.map(5 * BS, BS)
    f.punch_hole(0, 8 * BS, policy="break")
    assert lease.closed and not m.revoked and not m.closed
    assert bytes(p.buffer) == data[2 * BS:4 * BS] and bytes(m.buffer) == data[5 * BS:6 * BS]
    assert vol.statfs().busy == 3 * BS
    assert f.pread(8 * BS, 0) == bytes(8 * BS)
    p.release()
    m.close()
    assert vol.statfs().busy == 0
    f.close()
    _accounting_ok(vol)


def test_seed003_volume_policy_break_covers_rename_over_zero_range_and_unlink(
        make_vol: Callable[..., daxfs.Volume]) -> None:
    vol = make_vol(policy="break", lease_break_s=0.05)
    data = _pattern(4 * BS, 31)
    f = _new_file(vol, "target", data)
    _new_file(vol, "src", b"s" * BS).close()
    g = _new_file(vol, "z", data)
    h = _new_file(vol, "u", data)
    told: list[str] = []
    m_rename = f.map(0, 4 * BS, lease=True, on_break=lambda m: told.append("rename"))
    m_zero = g.map(0, 2 * BS, lease=True, on_break=lambda m: (told.append("zero"), m.close()))
    m_unlink = h.map(0, BS, lease=True, on_break=lambda m: (told.append("unlink"), 1 / 0))   # a failing callback
    vol.rename("src", "target")
    assert told == ["rename"] and m_rename.revoked and bytes(m_rename.buffer) == data
    assert vol.stat("target").st_size == BS
    g.zero_range(0, BS)
    assert told == ["rename", "zero"] and m_zero.closed and g.pread(BS, 0) == bytes(BS)
    vol.unlink("u")                                         # the raising holder is revoked in the end
    assert told == ["rename", "zero", "unlink"] and m_unlink.revoked and not vol.exists("u")
    assert vol.pins() == [] and vol.statfs().busy == 0
    for x in (m_rename, m_unlink, f, g, h):
        x.close()
    _accounting_ok(vol)


def test_seed003_holder_close_wakes_a_waiting_truncate(vol: daxfs.Volume) -> None:
    f = _new_file(vol, "hw", _pattern(8 * BS, 32))
    h = vol.holder("short-lived")
    g = h.open("hw", "rb", buffering=0)
    t_before = time.time()
    g.pin(2 * BS, BS)
    g.map(4 * BS, BS)
    t_after = time.time()
    assert all(t_before <= i.since <= t_after and i.holder == "short-lived" for i in vol.pins())
    order: list[str] = []
    t = _start(lambda: (f.truncate(0, policy="wait", timeout=JOIN), order.append("truncated")))
    _until_refused(lambda: f.pin(0, BS), "a truncate waiting on the holder's pin and mapping")
    assert t.is_alive() and f.stat().st_size == 8 * BS
    order.append("holder closed")
    h.close()                                              # the holder exits: everything let go
    _join(t)
    assert order == ["holder closed", "truncated"]
    assert f.stat().st_size == 0 and vol.statfs().busy == 0 and vol.pins() == []
    f.close()
    _accounting_ok(vol)


def test_seed003_holder_owns_and_close_releases_everything(vol: daxfs.Volume) -> None:
    data = _pattern(8 * BS, 25)
    f = _new_file(vol, "mine", data)                       # the volume's own handle and pin
    own = f.pin(0, BS)
    h = vol.holder("worker-7")
    h.mkdir("hd")                                           # the rest of the volume API, proxied
    assert h.stat("mine").st_size == 8 * BS and sorted(h.listdir()) == ["hd", "mine"]
    a = h.open("mine", "r+b", buffering=0)
    b = h.open("hd/other", "w+b", buffering=0)
    b.pwrite(b"o" * 2 * BS, 0)
    p = a.pin(BS, 2 * BS)
    wp = b.pin(0, BS, write=True)
    m = a.map(4 * BS, 2 * BS)
    lease = b.map(0, 2 * BS, lease=True)
    arr = m.array()
    kinds = sorted((i.holder, i.kind) for i in vol.pins())
    assert kinds == sorted([("worker-7", "lease"), ("worker-7", "mapping"), ("worker-7", "pin"),
                            ("worker-7", "pin"), (f"pid {os.getpid()}", "pin")])
    assert [i.holder for i in h.pins()] == [i.holder for i in vol.pins()]
    a.truncate(0)                                           # defer: busy while the holder has them
    busy = vol.statfs().busy
    assert busy == 5 * BS                                   # blocks 1..2 pinned, 4..5 mapped, 0 own
    h.close()
    assert a.closed and b.closed and m.closed and lease.closed and p.released and wp.released
    assert (arr == np.frombuffer(data[4 * BS:6 * BS], np.uint8)).all()   # arrays never crash
    assert [(i.holder, i.kind) for i in vol.pins()] == [(f"pid {os.getpid()}", "pin")]
    del arr
    gc.collect()
    assert vol.statfs().busy == BS                          # only the volume's own pin is left
    with pytest.raises(ValueError):
        h.open("mine")
    h.close()                                               # twice is fine
    with pytest.raises(AttributeError):
        h.holder("nested")
    own.release()
    assert vol.statfs().busy == 0
    f.close()
    _accounting_ok(vol)


def test_seed003_holder_that_never_releases_keeps_blocks_visibly_busy(vol: daxfs.Volume) -> None:
    h = vol.holder("stuck-nic")
    f = h.open("s", "w+b", buffering=0)
    f.pwrite(_pattern(16 * BS, 26), 0)
    p1 = f.pin(0, 4 * BS)
    g = h.open("s2", "w+b", buffering=0)
    g.pwrite(b"g" * 4 * BS, 0)
    p2 = g.pin(0, 4 * BS)
    f.truncate(0)
    vol.unlink("s2")
    st = vol.statfs()
    assert st.busy == 4 * BS
    infos = sorted((i.holder, str(i.path), i.length) for i in vol.pins())
    assert infos == [("stuck-nic", "/s", 4 * BS), ("stuck-nic", "None", 4 * BS)]
    # everything else carries on
    for i in range(20):
        with vol.open(f"n{i}", "wb", buffering=0) as n:
            n.write(_pattern((i + 1) * 1000, i))
        if i % 3 == 0:
            vol.unlink(f"n{i}")
    with vol.open("n1", "r+b", buffering=0) as n:
        n.truncate(5)
        with n.pin(0, 5) as q:
            assert bytes(q.buffer) == _pattern(2000, 1)[:5]
    vol.checkpoint()
    st2 = _accounting_ok(vol)
    assert st2.busy == 4 * BS
    with pytest.raises(daxfs.BusyError) as exc:
        vol.close()
    assert "stuck-nic" in exc.value.holders
    h.close()
    assert vol.statfs().busy == 0 and vol.pins() == []
    _accounting_ok(vol)


# ---------------------------------------------------------------- stress


MUTATIONS = 1500    # changes per mutator thread in the stress test (a count, not a duration)


@pytest.mark.parametrize("mode", ["defer", "wait"])
def test_stress_pinners_vs_truncate_punch_write(vol: daxfs.Volume, mode: str) -> None:
    paths = [f"s{i}" for i in range(4)]
    nblk = 48
    for i, path in enumerate(paths):
        _new_file(vol, path, _pattern(nblk * BS, 100 + i)).close()
    stop = threading.Event()
    errors: list[str] = []
    stats = {"pins": 0, "refused": 0, "mutations": 0, "waits_timed_out": 0, "samples": 0, "max_busy": 0}
    lock = threading.Lock()

    def count(key: str, n: int = 1) -> None:
        with lock:
            stats[key] += n

    def pinner(seed: int) -> None:
        rng = random.Random(seed)
        h = vol.holder(f"pinner-{seed}")
        handles = {path: h.open(path, "r+b", buffering=0) for path in paths}
        live: list[tuple[daxfs.Pin, str]] = []
        try:
            for _ in range(1_000_000):                      # until the mutators are done
                if stop.is_set():
                    break
                if live and (len(live) >= 3 or rng.random() < 0.45):
                    p, path = live.pop(rng.randrange(len(live)))
                    bad = _foreign_owners(vol, p, handles, path)
                    if bad:
                        errors.append("; ".join(bad))
                    p.release()
                    continue
                path = rng.choice(paths)
                f = handles[path]
                size = f.stat().st_size
                if size == 0:
                    continue
                off = rng.randrange(size)
                n = rng.randint(1, min(size - off, 8 * BS))
                try:
                    p = f.pin(off, n, write=rng.random() < 0.2)
                except ValueError:
                    continue                                  # the file shrank meanwhile
                except daxfs.BusyError:
                    if mode != "wait":
                        errors.append("BusyError from pin under policy defer")
                    count("refused")
                    continue
                count("pins")
                segs = p.segments
                if sum(k for _fo, k, _po in segs) != n or segs[0][0] != off:
                    errors.append(f"bad segments {segs} for pin {off}+{n}")
                if rng.random() < 0.3:
                    if len(p.buffer) != n:
                        errors.append("pin buffer has the wrong length")
                live.append((p, path))
            for p, path in live:
                p.release()
            live.clear()
        except BaseException as exc:
            errors.append(f"pinner {seed}: {exc!r}")
        finally:
            h.close()

    def mutator(seed: int) -> None:
        rng = random.Random(seed)
        handles = {path: vol.open(path, "r+b", buffering=0) for path in paths}
        try:
            for i in range(MUTATIONS):
                if i % 5 == 4:
                    ticks.put(True)                         # the sampler samples every 5 changes
                f = handles[rng.choice(paths)]
                op = rng.random()
                kwargs = {"policy": "wait", "timeout": rng.choice([0, 0.002, 0.01, 0.03])} if mode == "wait" else {}
                try:
                    if op < 0.3:
                        f.truncate(rng.randrange(0, nblk * BS), **kwargs)
                    elif op < 0.55:
                        f.punch_hole(rng.randrange(0, nblk * BS), rng.randint(1, 12 * BS), **kwargs)
                    elif op < 0.85:
                        f.pwrite(rng.randbytes(rng.randint(1, 10 * BS)), rng.randrange(0, nblk * BS))
                    else:
                        f.zero_range(rng.randrange(0, nblk * BS), rng.randint(1, 6 * BS), keep_size=True)
                    count("mutations")
                except daxfs.BusyError:
                    if mode != "wait":
                        errors.append("BusyError from a change under policy defer")
                    count("waits_timed_out")
        except BaseException as exc:
            errors.append(f"mutator {seed}: {exc!r}")
        finally:
            for f in handles.values():
                f.close()

    def sampler() -> None:
        try:
            while ticks.get(timeout=JOIN):
                st = vol.statfs()
                if not (st.free >= 0 and st.used >= 0 and st.busy >= 0
                        and st.free + st.used + st.busy + st.bad == st.size):
                    errors.append(f"statfs does not add up: {st}")
                problems = vol.fsck()                     # checks free + owned + busy == total
                if problems:
                    errors.append(f"fsck: {problems}")
                with lock:
                    stats["samples"] += 1
                    stats["max_busy"] = max(stats["max_busy"], st.busy)
        except BaseException as exc:
            errors.append(f"sampler: {exc!r}")

    ticks: queue.Queue[bool] = queue.Queue()
    pinners = [_start(lambda s=s: pinner(s)) for s in range(3)]
    mutators = [_start(lambda s=s: mutator(1000 + s)) for s in range(2)]
    sampling = _start(sampler)
    _join(*mutators)
    stop.set()
    ticks.put(False)
    _join(*pinners, sampling)
    assert not errors, "\n".join(errors[:5])
    assert stats["mutations"] + stats["waits_timed_out"] == 2 * MUTATIONS
    assert stats["samples"] == 2 * (MUTATIONS // 5), stats
    assert stats["pins"] > 50, stats
    if mode == "defer":
        assert stats["max_busy"] > 0, stats                # the busy list was exercised
    else:
        # every change that detaches blocks waited for their references: nothing was ever parked
        assert stats["max_busy"] == 0 and stats["refused"] > 0 and stats["waits_timed_out"] > 0, stats
    assert vol.pins() == []
    st = _accounting_ok(vol)
    assert st.busy == 0
    owned = sum(vol.stat(path).st_blocks * 512 for path in paths)
    assert st.used == owned


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("offset, length, write, error", [
    (0, 8 * BS + 1, False, ValueError),            # past EOF
    (8 * BS, 1, False, ValueError),                # starts at EOF
    (8 * BS - 1, 2, True, ValueError),             # a write pin past EOF does not grow the file
    (9 * BS, BS, True, ValueError),
    (0, 0, False, ValueError),
    (0, 0, True, ValueError),
    (0, -1, False, ValueError),
    (BS, -BS, True, ValueError),
    (-1, 10, False, ValueError),
    (-BS, BS, True, ValueError),
    (1 << 62, 1 << 62, True, ValueError),
])
def test_bad_pin_ranges_fail_and_change_nothing(vol: daxfs.Volume, offset: int, length: int, write: bool,
                                                error: type) -> None:
    f = _new_file(vol, "bad", _pattern(8 * BS, 27))
    f.punch_hole(2 * BS, 4 * BS)                            # a hole a write pin would fill
    keep = f.pin(7 * BS, BS)
    before = _state(vol)
    extents = f.extents()
    with pytest.raises(error):
        f.pin(offset, length, write=write)
    assert _state(vol) == before and f.extents() == extents and f.stat().st_size == 8 * BS
    f.truncate(BS)                                          # no stray pin seals the file
    assert vol.statfs().busy == BS
    keep.release()
    f.close()
    _accounting_ok(vol)


def test_pin_empty_file_and_closed_handle(vol: daxfs.Volume) -> None:
    f = vol.open("e", "w+b", buffering=0)
    before = _state(vol)
    with pytest.raises(ValueError):
        f.pin(0, 1)
    with pytest.raises(ValueError):
        f.pin(0, 1, write=True)
    f.close()
    with pytest.raises(ValueError):
        f.pin(0, 1)
    assert _state(vol) == before and vol.stat("e").st_size == 0


def test_release_twice_and_use_after_release_are_value_errors(vol: daxfs.Volume) -> None:
    f = _new_file(vol, "r2", _pattern(4 * BS, 28))
    other = f.pin(0, BS)
    p = f.pin(BS, 2 * BS)
    buf = p.buffer
    assert bytes(buf[:3]) == _pattern(4 * BS, 28)[BS:BS + 3]
    del buf
    p.release()
    after = _state(vol)
    with pytest.raises(ValueError):
        p.release()
    with pytest.raises(ValueError):
        p.buffer
    with pytest.raises(ValueError):
        p.segments
    with pytest.raises(ValueError):
        p.pool_offset
    with p:                                                 # leaving the context of a released pin is fine
        pass
    assert _state(vol) == after
    assert [(i.offset, i.length) for i in vol.pins()] == [(0, BS)]
    with f.pin(2 * BS, BS) as q:
        assert not q.released
    assert q.released
    with pytest.raises(ValueError):
        q.release()
    assert _state(vol) == after
    other.release()
    f.close()
    _accounting_ok(vol)


def test_write_pin_needs_a_writable_handle(vol: daxfs.Volume) -> None:
    f = _new_file(vol, "ro", b"r" * BS)
    f.truncate(4 * BS)                                      # blocks 1..3 a hole
    f.close()
    before = _state(vol)
    with vol.open("ro", "rb", buffering=0) as g:
        with pytest.raises(PermissionError):
            g.pin(0, 4 * BS, write=True)
        with g.pin(0, 4 * BS) as p:                          # a read pin is fine
            assert p.segments[1][2] is None
    assert _state(vol) == before
    assert len(vol.open("ro", "rb", buffering=0).extents()) == 1          # the hole was not filled


@pytest.mark.parametrize("policy", ["", "Defer", "wait ", "none", "busy"])
def test_unknown_policy_is_value_error_and_changes_nothing(make_vol: Callable[..., daxfs.Volume],
                                                           shm_path: str, policy: str) -> None:
    vol = make_vol()
    f = _new_file(vol, "up", _pattern(4 * BS, 29))
    p = f.pin(0, BS)
    before = _state(vol)
    for attempt in (lambda: f.truncate(0, policy=policy), lambda: f.punch_hole(0, BS, policy=policy),
                    lambda: vol.unlink("up", policy=policy)):
        with pytest.raises(ValueError):
            attempt()
    assert _state(vol) == before and vol.exists("up") and f.stat().st_size == 4 * BS
    with pytest.raises(ValueError):
        daxfs.open_volume(shm_path, policy=policy)
    p.release()
    f.close()


def test_negative_timeouts_are_value_errors_and_change_nothing(vol: daxfs.Volume) -> None:
    f = _new_file(vol, "nt", _pattern(4 * BS, 30))
    p = f.pin(0, BS)
    before = _state(vol)
    for attempt in (lambda: f.truncate(0, policy="wait", timeout=-1),
                    lambda: f.punch_hole(0, BS, policy="wait", timeout=-0.5),
                    lambda: f.truncate(0, timeout=-1),
                    lambda: vol.close(force=True, timeout=-1)):
        with pytest.raises(ValueError):
            attempt()
    assert _state(vol) == before and f.stat().st_size == 4 * BS and not vol.closed
    p.release()
    f.close()
    _accounting_ok(vol)
