"""The core and the format codecs, tested without a real pool.

What these tests prove:

- ``ExtentMap`` behaves exactly like a dict ``file block -> (pool block, flags)``
  under any sequence of inserts into holes and removals, and its runs are
  always sorted, non-overlapping and maximally merged; ``lookup``, ``slice``,
  ``pieces``, ``blocks``, ``end``, ``last_written_end`` and the flat form agree
  with that model.
- ``FreeSpace`` behaves like a set of free blocks under take/release; ``plan``
  never hands out a used block or the same block twice, returns exactly the
  blocks asked for or raises ENOSPC, and changes nothing either way; it keeps
  appends contiguous, aligns large requests to huge pages, best-fits small
  ones, and double take/release is reported as corruption.
- ``Core.apply``, driven by real volume operations, keeps fsck clean, and the
  state rebuilt from its checkpoint or by replaying the log at mount is the
  same state.  Malformed records are refused as corruption.
- The codecs round-trip every record type, superblocks and checkpoints, and a
  single flipped byte is detected (``None`` for a record, CorruptVolumeError
  otherwise), never another exception.
"""

from __future__ import annotations

import random
import errno
import pathlib
import stat as st
import uuid
from collections.abc import Callable
from copy import deepcopy

import msgpack
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as hs
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from daxfs.core import UNWRITTEN, Core, ExtentMap, FreeSpace, check
from daxfs.core.busy import BusyList, RunCounts
from daxfs.core.extents import SHARE
from daxfs.core.fields import (ID_MAX, INO_MAX, MAP_FLAGS, MAX_BLOCKS, MAX_FILE_SIZE, PAGE, PERM_BITS, RDEV_MAX,
                               TIME_MAX, TIME_MIN, valid_map, valid_name, valid_names, valid_target, valid_unmap)
from daxfs.core.namespace import check_name, fspath, split_path, whole
from daxfs.core.records import (Batch, RECORD_TYPES, BadMetadata, ClearQuarantine, Create, CreateNode, Link,
                                Quarantine, Reclaim, Rename, SetAttr, SetExtents, Unlink)
from daxfs.core import chunked
from daxfs.core.chunked import ChunkedList
from daxfs.core.rmap import OwnerMap
from daxfs.core.state import ROOT_INO
from daxfs.errors import CorruptVolumeError, InvalidPathError
from daxfs.format.checkpoint import HEADER as CKPT_HEADER
from daxfs.format.checkpoint import Checkpoint, decode_checkpoint, decode_checkpoint_streamed, encode_checkpoint
from daxfs.format.layout import Layout
from daxfs.format.log import HEADER as RECORD_HEADER
from daxfs.format.log import BadRecordError, decode_record, encode_pad, encode_record
from daxfs.format.superblock import SUPERBLOCK_BYTES, Superblock, decode_superblock
from daxfs.media import MemoryPool
from daxfs.testing import Workload
from daxfs.volume import Volume

FILE_BLOCKS = 48        # file blocks the ExtentMap machine plays in
POOL_BLOCKS = 96        # data blocks the FreeSpace machine plays in

machine_settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------- ExtentMap


def merged_runs(model: dict[int, tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """The canonical runs of a block dict: sorted, and merged wherever file and pool
    blocks both continue with equal flags."""
    runs: list[list[int]] = []
    for fblk in sorted(model):
        pblk, flags = model[fblk]
        if runs:
            f, n, p, fl = runs[-1]
            if f + n == fblk and p + n == pblk and fl == flags:
                runs[-1][1] += 1
                continue
        runs.append([fblk, 1, pblk, flags])
    return [tuple(r) for r in runs]  # type: ignore[misc]


class ExtentMapMachine(RuleBasedStateMachine):
    """ExtentMap against a dict model, step by step."""

    def __init__(self) -> None:
        super().__init__()
        self.emap = ExtentMap()
        self.model: dict[int, tuple[int, int]] = {}

    def holes(self) -> list[tuple[int, int]]:
        out = []
        f = 0
        while f < FILE_BLOCKS:
            if f in self.model:
                f += 1
                continue
            start = f
            while f < FILE_BLOCKS and f not in self.model:
                f += 1
            out.append((start, f - start))
        return out

    @precondition(lambda self: len(self.model) < FILE_BLOCKS)
    @rule(data=hs.data(), flags=hs.sampled_from([0, UNWRITTEN]), follow=hs.booleans())
    def insert_into_hole(self, data: hs.DataObject, flags: int, follow: bool) -> None:
        start, length = data.draw(hs.sampled_from(self.holes()))
        fblk = data.draw(hs.integers(start, start + length - 1))
        nblk = data.draw(hs.integers(1, start + length - fblk))
        left = self.model.get(fblk - 1)
        right = self.model.get(fblk + nblk)
        if follow and left is not None:
            pblk = left[0] + 1           # continues the left neighbour in the pool
        elif follow and right is not None:
            pblk = right[0] - nblk       # runs straight into the right neighbour
        else:
            pblk = data.draw(hs.integers(0, 400))
        assume(pblk >= 0)
        self.emap.insert(fblk, nblk, pblk, flags)
        for i in range(nblk):
            self.model[fblk + i] = (pblk + i, flags)

    @rule(fblk=hs.integers(0, FILE_BLOCKS + 4), nblk=hs.integers(1, 20))
    def remove(self, fblk: int, nblk: int) -> None:
        removed = self.emap.remove(fblk, nblk)
        expect = {f: self.model.pop(f) for f in range(fblk, fblk + nblk) if f in self.model}
        got: dict[int, tuple[int, int]] = {}
        for f, n, p, fl in removed:
            assert n > 0 and fblk <= f and f + n <= fblk + nblk
            for i in range(n):
                assert f + i not in got
                got[f + i] = (p + i, fl)
        assert got == expect

    @rule(fblk=hs.integers(0, FILE_BLOCKS + 4), nblk=hs.integers(1, 30))
    def slice_and_pieces(self, fblk: int, nblk: int) -> None:
        sl = self.emap.slice(fblk, nblk)
        expect = merged_runs({f: v for f, v in self.model.items() if fblk <= f < fblk + nblk})
        assert sl == expect
        pieces = self.emap.pieces(fblk, nblk)
        pos = fblk
        for f, n, p, fl in pieces:
            assert f == pos and n > 0
            for i in range(n):
                assert self.model.get(f + i) == (None if p < 0 else (p + i, fl))
            if p < 0:
                assert fl == 0
            pos += n
        assert pos == fblk + nblk

    @invariant()
    def matches_model(self) -> None:
        runs = list(self.emap)
        assert runs == merged_runs(self.model)
        assert len(self.emap) == len(runs)
        assert bool(self.emap) == bool(self.model)
        assert self.emap.blocks == len(self.model)
        assert self.emap.end == (max(self.model) + 1 if self.model else 0)
        written = [f for f, (_p, fl) in self.model.items() if not fl & UNWRITTEN]
        assert self.emap.last_written_end() == (max(written) + 1 if written else 0)
        for f in range(FILE_BLOCKS + 2):
            entry = self.model.get(f)
            run = self.emap.lookup(f)
            if entry is None:
                assert run is None and self.emap.pblk_of(f) is None
            else:
                assert run is not None and run[0] <= f < run[0] + run[1] and run[3] == entry[1]
                assert self.emap.pblk_of(f) == entry[0]
        again = ExtentMap.from_flat(self.emap.to_flat())
        assert list(again) == runs
        assert list(ExtentMap(runs)) == runs


TestExtentMapModel = ExtentMapMachine.TestCase
TestExtentMapModel.settings = machine_settings


def test_extent_map_merges_appends_into_one_run() -> None:
    emap = ExtentMap()
    for i in range(10):
        emap.insert(i * 3, 3, 100 + i * 3, 0)
    assert list(emap) == [(0, 30, 100, 0)]
    emap.remove(10, 5)
    assert list(emap) == [(0, 10, 100, 0), (15, 15, 115, 0)]
    emap.insert(10, 5, 110, 0)          # filling the hole with the same blocks merges all three
    assert list(emap) == [(0, 30, 100, 0)]


def test_extent_map_does_not_merge_across_flags_or_pool_gaps() -> None:
    emap = ExtentMap()
    emap.insert(0, 4, 10, 0)
    emap.insert(4, 4, 14, UNWRITTEN)    # adjacent in both, but different flags
    emap.insert(8, 4, 30, UNWRITTEN)    # adjacent in the file only
    assert list(emap) == [(0, 4, 10, 0), (4, 4, 14, UNWRITTEN), (8, 4, 30, UNWRITTEN)]
    assert emap.pieces(2, 12) == [(2, 2, 12, 0), (4, 4, 14, UNWRITTEN), (8, 4, 30, UNWRITTEN),
                                  (12, 2, -1, 0)]
    assert emap.last_written_end() == 4
    emap.remove(4, 4)                   # a hole before a run and one after: both (f, n, -1, 0)
    assert emap.pieces(3, 10) == [(3, 1, 13, 0), (4, 4, -1, 0), (8, 4, 30, UNWRITTEN), (12, 1, -1, 0)]


# ---------------------------------------------------------------------------- FreeSpace


def free_runs(free: set[int]) -> list[tuple[int, int]]:
    runs: list[list[int]] = []
    for b in sorted(free):
        if runs and runs[-1][0] + runs[-1][1] == b:
            runs[-1][1] += 1
        else:
            runs.append([b, 1])
    return [(s, n) for s, n in runs]


def plan_blocks_checked(space: FreeSpace, free: set[int], n: int, goal: int | None
                        ) -> list[tuple[int, int]] | None:
    """``space.plan`` with its contract checked; None when it raised ENOSPC."""
    before = (space.runs(), space.free)
    try:
        plan = space.plan(n, goal)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
        assert (space.runs(), space.free) == before
        return None
    assert (space.runs(), space.free) == before, "plan changed the free space"
    blocks: list[int] = []
    for s, k in plan:
        assert k > 0
        blocks.extend(range(s, s + k))
    assert len(blocks) == max(n, 0)
    assert len(set(blocks)) == len(blocks), f"plan {plan} hands out a block twice"
    assert set(blocks) <= free, f"plan {plan} hands out used blocks"
    return plan


class FreeSpaceMachine(RuleBasedStateMachine):
    """FreeSpace against a set of free blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.space = FreeSpace(POOL_BLOCKS, align=8, align_threshold=4)
        self.space.release(0, POOL_BLOCKS)
        self.free = set(range(POOL_BLOCKS))

    def used(self) -> list[int]:
        return sorted(set(range(POOL_BLOCKS)) - self.free)

    @precondition(lambda self: self.free)
    @rule(data=hs.data())
    def take(self, data: hs.DataObject) -> None:
        start, length = data.draw(hs.sampled_from(free_runs(self.free)))
        s = data.draw(hs.integers(start, start + length - 1))
        n = data.draw(hs.integers(1, start + length - s))
        self.space.take(s, n)
        self.free -= set(range(s, s + n))

    @precondition(lambda self: len(self.free) < POOL_BLOCKS)
    @rule(data=hs.data())
    def release(self, data: hs.DataObject) -> None:
        used_runs = free_runs(set(self.used()))
        start, length = data.draw(hs.sampled_from(used_runs))
        s = data.draw(hs.integers(start, start + length - 1))
        n = data.draw(hs.integers(1, start + length - s))
        self.space.release(s, n)
        self.free |= set(range(s, s + n))

    @rule(n=hs.integers(0, POOL_BLOCKS + 4), data=hs.data())
    def plan_then_take(self, n: int, data: hs.DataObject) -> None:
        # goals as the volume makes them: one past a block some file owns
        used = self.used()
        goal = data.draw(hs.one_of(hs.none(), hs.sampled_from(used).map(lambda b: b + 1))) \
            if used else None
        plan = plan_blocks_checked(self.space, self.free, n, goal)
        if plan is None:
            assert n > len(self.free), f"ENOSPC for {n} blocks with {len(self.free)} free"
            return
        if goal is not None and goal in self.free and n:
            assert plan[0][0] == goal, "an append did not continue its run"
        if data.draw(hs.booleans()):
            for s, k in plan:
                self.space.take(s, k)
                self.free -= set(range(s, s + k))

    @rule(n=hs.integers(1, 40))
    def large_request_is_aligned(self, n: int) -> None:
        a = self.space.align
        if n < self.space.align_threshold or not any(k >= n + a - 1 for _s, k in free_runs(self.free)):
            return
        plan = plan_blocks_checked(self.space, self.free, n, None)
        assert plan is not None and len(plan) == 1 and plan[0][0] % a == 0, \
            f"{n} blocks planned as {plan} though an aligned run is free"

    @rule(n=hs.integers(1, 3))
    def small_request_takes_best_fit(self, n: int) -> None:
        # best fit up to a power-of-two size class: the run chosen is in the smallest
        # class holding a run that fits, so small requests leave big runs alone
        fitting = [(k, s) for s, k in free_runs(self.free) if k >= n]
        if not fitting:
            return
        plan = plan_blocks_checked(self.space, self.free, n, None)
        assert plan is not None and len(plan) == 1
        chosen = dict((s, k) for k, s in fitting)[plan[0][0]]
        best = min(k for k, _s in fitting)
        assert chosen.bit_length() == best.bit_length(), \
            f"{n} blocks taken from a run of {chosen} though one of {best} fits"

    @rule(s=hs.integers(0, POOL_BLOCKS - 1), n=hs.integers(1, 8))
    def double_take_or_release_is_corruption(self, s: int, n: int) -> None:
        n = min(n, POOL_BLOCKS - s)
        blocks = set(range(s, s + n))
        before = self.space.runs()
        if not blocks <= self.free:         # some block is used: taking it again is corruption
            with pytest.raises(CorruptVolumeError):
                self.space.take(s, n)
        if blocks & self.free:              # some block is free: releasing it again is corruption
            with pytest.raises(CorruptVolumeError):
                self.space.release(s, n)
        assert self.space.runs() == before

    @invariant()
    def matches_model(self) -> None:
        assert self.space.runs() == free_runs(self.free)
        assert self.space.free == len(self.free)
        for s, n in [(0, 1), (5, 3), (POOL_BLOCKS - 2, 2)]:
            assert self.space.is_free(s, n) == (set(range(s, s + n)) <= self.free)


TestFreeSpaceModel = FreeSpaceMachine.TestCase
TestFreeSpaceModel.settings = machine_settings


class ChunkedFreeSpaceMachine(FreeSpaceMachine):
    """The same, with the list of run starts a ChunkedList (core/chunked.py) from two runs
    on, in chunks of one or two."""

    def __init__(self) -> None:
        self.saved = chunked.CHUNKED_FROM, chunked.LIST_CHUNK
        chunked.CHUNKED_FROM, chunked.LIST_CHUNK = 2, 1
        super().__init__()

    def teardown(self) -> None:
        chunked.CHUNKED_FROM, chunked.LIST_CHUNK = self.saved


TestChunkedFreeSpaceModel = ChunkedFreeSpaceMachine.TestCase
TestChunkedFreeSpaceModel.settings = machine_settings


def test_freespace_turns_chunked_at_chunked_from_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Free space in many runs (a fragmented volume) keeps its starts in a ChunkedList, built
    so by ``from_used`` or turned so by the first new run past ``CHUNKED_FROM``; a copy of
    it is one too, and both answer as a plain one."""
    monkeypatch.setattr(chunked, "CHUNKED_FROM", 8)
    monkeypatch.setattr(chunked, "LIST_CHUNK", 2)
    used = [(3 * k, 2) for k in range(10)]          # free: [2,3) [5,6) ... [29,40)
    built = FreeSpace.from_used(40, used)
    assert type(built._starts) is ChunkedList
    grown = FreeSpace.from_used(40, [(0, 40)])
    for s, _n in used[:8]:
        grown.release(s, 1)
    assert type(grown._starts) is list and len(grown.runs()) == 8      # CHUNKED_FROM: not yet
    grown.release(30, 1)
    assert type(grown._starts) is ChunkedList and grown.runs() == [(0, 1), (3, 1), (6, 1), (9, 1), (12, 1),
                                                                   (15, 1), (18, 1), (21, 1), (30, 1)]
    copy = deepcopy(built)
    assert type(copy._starts) is ChunkedList and copy._starts is not built._starts
    built.take(29, 3)           # the front of a run: its start moves, in place
    built.take(2, 1)
    assert built.runs()[:2] == [(5, 1), (8, 1)] and built.runs()[-1] == (32, 8)
    assert copy.runs()[0] == (2, 1) and copy.runs()[-1] == (29, 11)
    assert built.next_run(30) == (32, 8) and built.free_parts(0, 10) == [(5, 1), (8, 1)]


def test_freespace_from_used_is_the_complement() -> None:
    space = FreeSpace.from_used(20, [(12, 3), (0, 2), (5, 1)])
    assert space.runs() == [(2, 3), (6, 6), (15, 5)]
    assert space.free == 14
    with pytest.raises(CorruptVolumeError, match="data block 4 is owned twice"):
        FreeSpace.from_used(20, [(0, 5), (4, 2)])
    with pytest.raises(CorruptVolumeError, match=r"extent ends at block 23, past the data area \(20 blocks\)"):
        FreeSpace.from_used(20, [(18, 5)])


def test_freespace_from_used_keeps_the_policy_and_the_last_block() -> None:
    """Free space as mount rebuilds it: a file may own the data area's last block, the size
    classes are right (best fit still works) and the alignment policy survives."""
    space = FreeSpace.from_used(20, [(15, 5)])
    assert space.runs() == [(0, 15)] and space.free == 15
    space = FreeSpace.from_used(64, [(3, 20), (31, 29)])    # free: [0,3) [23,31) [60,64)
    assert space.plan(4) == [(60, 4)]                       # the 4-block run, not the 8
    space = FreeSpace.from_used(2048, [(0, 3)], align=512, align_threshold=256)
    assert (space.align, space.align_threshold) == (512, 256) and space.plan(300) == [(512, 300)]


def test_plan_policy_edges() -> None:
    """An exact aligned fit beats carving a bigger run; alignment applies from align=2; the
    goal's run is skipped, not the rest of its size class; a size class crowded with runs
    that do not fit is left for the next one, not given up on."""
    space = FreeSpace(4096, align=512, align_threshold=256)
    space.release(512, 512)
    space.release(2048, 2048)
    assert space.plan(512) == [(512, 512)]
    space = FreeSpace(16, align=2, align_threshold=1)
    space.release(1, 15)
    assert space.plan(2) == [(2, 2)]
    space = FreeSpace(4096, align=512, align_threshold=256)
    space.release(512, 600)                     # the file's next blocks (the goal) ...
    space.release(2049, 1000)                   # ... and a run of the same size class
    assert space.plan(900, goal=512) == [(512, 600), (2560, 300)]
    space = FreeSpace(200)
    space.release(8, 10)
    space.release(33, 12)
    space.release(100, 100)
    assert space.plan(15, goal=8) == [(8, 10), (33, 5)]     # best fit for the rest: not 100..
    space = FreeSpace(1000)
    space.release(8, 100)                       # the goal's run, as big as the next one:
    space.release(201, 100)
    space.release(400, 10)
    space.release(500, 20)
    assert space.plan(215, goal=8) == [(8, 100), (201, 100), (500, 15)]    # largest runs first
    space = FreeSpace(2048, align=512)          # the threshold a mounted volume gets: align/2
    space.release(1, 2047)
    assert space.plan(255) == [(1, 255)] and space.plan(256) == [(512, 256)]
    space = FreeSpace(1000)
    for k in range(70):
        space.release(10 * k, 5)                # 70 runs too short for 7 blocks, one class
    space.release(800, 100)
    assert space.plan(7) == [(800, 7)]
    space = FreeSpace(2200, align=8, align_threshold=4)
    for k in range(70):
        space.release(16 * k + 2, 5)            # long enough for 4 blocks, but not aligned
    space.release(2000, 100)
    assert space.plan(4) == [(2000, 4)]

def test_freespace_release_outside_area_is_corruption() -> None:
    space = FreeSpace(10)
    with pytest.raises(CorruptVolumeError, match=r"blocks 8\.\.13 released outside the data area"):
        space.release(8, 5)
    with pytest.raises(CorruptVolumeError):
        space.release(-1, 2)
    assert space.runs() == [] and space.free == 0


def test_plan_continues_the_goal_run() -> None:
    space = FreeSpace(1000, align=512, align_threshold=256)
    space.release(0, 1000)
    space.take(0, 100)
    space.take(300, 10)
    # a file ending at block 99 appends: it gets 100.. even though a better fit exists
    assert space.plan(50, goal=100) == [(100, 50)]
    # the goal run is too short: it is used up first, the rest comes from elsewhere
    plan = space.plan(250, goal=100)
    assert plan[0] == (100, 200) and sum(k for _s, k in plan) == 250
    assert all(not (100 <= s < 300) for s, _k in plan[1:])


def test_plan_aligns_large_requests_and_best_fits_small_ones() -> None:
    a = 512
    space = FreeSpace(4 * a, align=a, align_threshold=a // 2)
    space.release(0, 4 * a)
    space.take(0, 3)                    # free: 3 .. 2048
    plan = space.plan(300)
    assert plan == [(a, 300)], "a large request did not start on a huge-page boundary"
    space.take(a, 300)
    # free: [3, 512) [812, 2048); a small request goes to the smaller run's start
    assert space.plan(7) == [(3, 7)]
    space.take(3, 7)
    # a 3-block hole between two used ranges is the best fit for 3 blocks
    space.release(5, 3)
    assert space.plan(3) == [(5, 3)]
    # the big aligned run past 1024 is left alone by small requests
    for s, _k in space.plan(2) + space.plan(100):
        assert s < 2 * a


def test_plan_splits_over_the_largest_runs_when_nothing_fits() -> None:
    space = FreeSpace(100)
    space.release(0, 100)
    for s in (10, 30, 60):
        space.take(s, 5)
    # free runs: 0..10 (10), 15..30 (15), 35..60 (25), 65..100 (35)
    plan = space.plan(55)
    assert plan == [(65, 35), (35, 20)]
    with pytest.raises(OSError) as info:
        space.plan(86)
    assert info.value.errno == errno.ENOSPC


def test_plan_with_a_goal_inside_a_free_run_finds_all_free_blocks() -> None:
    """ENOSPC only when fewer than n blocks are free, whatever the goal: a goal in
    the middle of a free run must not hide the run's head from the plan."""
    space = FreeSpace(10)
    space.release(0, 10)
    plan = plan_blocks_checked(space, set(range(10)), 10, goal=5)
    assert plan is not None, "ENOSPC with 10 of 10 blocks free"


def test_take_of_used_and_double_release_are_corruption() -> None:
    space = FreeSpace(64)
    space.release(0, 64)
    space.take(10, 10)
    with pytest.raises(CorruptVolumeError, match=r"blocks 15\.\.17 taken but not free"):
        space.take(15, 2)
    with pytest.raises(CorruptVolumeError):
        space.take(5, 10)                # straddles free and used
    with pytest.raises(CorruptVolumeError, match=r"blocks 0\.\.4 released twice"):
        space.release(0, 4)              # never taken
    with pytest.raises(CorruptVolumeError):
        space.release(18, 4)             # half used, half free
    for start in (5, 10, 15):            # nothing taken or freed is a bad record, not a no-op
        with pytest.raises(CorruptVolumeError):
            space.take(start, 0)
        with pytest.raises(CorruptVolumeError):
            space.release(start, 0)
    assert space.runs() == [(0, 10), (20, 44)] and space.free == 54


def test_overlaps_and_next_run_at_the_edges_of_free_runs() -> None:
    """fsck asks ``overlaps`` whether held, busy or bad blocks are also free, and trim walks
    free space with ``next_run``: both must see a free block at either end of a range."""
    space = FreeSpace.from_used(64, [(4, 6), (20, 10)])     # free: [0,4) [10,20) [30,64)
    assert space.overlaps(0, 1) and space.overlaps(3, 1)    # the first run, at block 0
    assert not space.overlaps(4, 6) and not space.overlaps(20, 10)
    assert space.overlaps(5, 6)                             # only its last block (10) is free
    assert space.overlaps(25, 10)                           # only its tail is free
    assert not space.overlaps(4, 1) and space.overlaps(9, 2)
    assert space.next_run(12) == (12, 8)                    # from pos to the run's end
    assert space.next_run(0) == (0, 4)
    assert space.next_run(5) == (10, 10)                    # used: the next run
    assert space.next_run(40) == (40, 24) and space.next_run(64) is None


def test_free_parts_clips_to_the_range_and_sees_every_run() -> None:
    """``free_parts`` is what a hold adopted at mount takes out of free space: every free
    run inside the range, clipped, and no empty part for a run that starts at its end."""
    space = FreeSpace.from_used(64, [(4, 6), (12, 2), (20, 10)])   # free: [0,4) [10,12) [14,20) [30,64)
    assert space.free_parts(0, 64) == [(0, 4), (10, 2), (14, 6), (30, 34)]
    assert space.free_parts(2, 28) == [(2, 2), (10, 2), (14, 6)]    # up to 30, where a run starts
    assert space.free_parts(11, 4) == [(11, 1), (14, 1)]
    assert space.free_parts(4, 6) == [] and space.free_parts(20, 10) == []

def test_plan_excluding_continues_the_goal_and_keeps_the_free_hook() -> None:
    """A write whose earlier part is already planned (``exclude``) still appends after the
    file's last block, and planning tells ``on_free`` nothing and leaves it listening."""
    space = FreeSpace(1000)
    space.release(0, 1000)
    space.take(0, 100)
    space.take(300, 10)
    space.take(320, 680)                # free: [100,300) and the best fit for 10, [310,320)
    freed: list[tuple[int, int]] = []
    space.on_free = lambda s, n: freed.append((s, n))
    assert space.plan(10) == [(310, 10)]
    assert space.plan_excluding(10, 100, [(200, 5)]) == [(100, 10)]
    assert space.plan_excluding(20, 120, [(100, 20)]) == [(120, 20)]
    assert freed == [] and space.free == 210 and space.runs() == [(100, 200), (310, 10)]
    space.release(300, 10)
    assert freed == [(300, 10)], "plan_excluding left on_free unset: freed blocks go undiscarded"


# ---------------------------------------------------------------------------- BusyList


def _blocks(runs: list[tuple[int, int]]) -> list[int]:
    return sorted(b for s, n in runs for b in range(s, s + n))


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.tuples(hs.sampled_from(["hold", "unhold", "park"]), hs.integers(0, 40),
                          hs.integers(1, 10)), max_size=60))
def test_busy_list_matches_a_model_of_per_block_holds(ops: list[tuple[str, int, int]]) -> None:
    """Holds counted per block; a parked block is busy while held and handed back (once,
    all of it) by the unhold that drops its last hold -- however the hold runs overlap."""
    busy = BusyList()
    counts: dict[int, int] = {}
    parked: set[int] = set()
    holds: list[tuple[int, int]] = []
    for kind, start, n in ops:
        blocks = set(range(start, start + n))
        if kind == "hold":
            busy.hold(start, n)
            holds.append((start, n))
            for b in blocks:
                counts[b] = counts.get(b, 0) + 1
        elif kind == "unhold" and holds:
            start, n = holds.pop(start % len(holds))
            blocks = set(range(start, start + n))
            for b in blocks:
                counts[b] -= 1
            let_go = {b for b in blocks & parked if counts[b] == 0}
            parked -= let_go
            freed = busy.unhold(start, n)
            assert _blocks(freed) == sorted(let_go)
        elif kind == "park" and not blocks & parked:
            held = {b for b in blocks if counts.get(b, 0) > 0}
            parked |= held
            assert _blocks(busy.park(start, n)) == sorted(blocks - held)
        assert busy.blocks == len(parked) and _blocks(busy.runs()) == sorted(parked)
    while holds:
        busy.unhold(*holds.pop())
    assert busy.blocks == 0 and busy.runs() == [] and not busy.holds


def test_busy_list_frees_every_run_the_last_unhold_lets_go() -> None:
    busy = BusyList()
    busy.hold(0, 12)
    busy.hold(4, 2)                 # runs [0,4):1 [4,6):2 [6,12):1
    busy.hold(8, 1)                 # ... [8,9):2
    assert busy.park(0, 16) == [(12, 4)]
    assert busy.unhold(4, 2) == [] and busy.unhold(8, 1) == []
    assert _blocks(busy.unhold(0, 12)) == list(range(12))
    assert busy.blocks == 0 and busy.runs() == []


def test_busy_list_keeps_the_rest_of_a_busy_run_taken_in_part() -> None:
    """A busy run freed or quarantined in part: what is left stays busy and counted."""
    busy = BusyList()
    busy.hold(0, 10)
    assert busy.park(0, 10) == [] and busy.runs() == [(0, 10)]
    busy.hold(3, 2)                     # holds [0,3):1 [3,5):2 [5,10):1
    assert busy.unhold(0, 10) == [(0, 3), (5, 5)]
    assert busy.runs() == [(3, 2)] and busy.blocks == 2
    busy.hold(20, 10)
    busy.park(20, 10)
    assert busy.take_busy(24, 2) == [(24, 2)]               # quarantine from the middle
    assert busy.runs() == [(3, 2), (20, 4), (26, 4)] and busy.blocks == 10


def test_run_counts_refuse_a_release_of_what_is_not_held() -> None:
    counts = RunCounts()
    with pytest.raises(CorruptVolumeError, match=r"blocks 0\.\.4 released more often than held"):
        counts.add(0, 4, -1)
    counts.add(0, 4, 1)
    with pytest.raises(CorruptVolumeError, match=r"blocks 0\.\.4 released more often than held"):
        counts.add(0, 4, -2)


# ---------------------------------------------------------------------------- OwnerMap


def _owner_model(ops: list[tuple[int, int, int, int]]) -> dict[int, set[tuple[int, int]]]:
    model: dict[int, set[tuple[int, int]]] = {}
    for pblk, n, ino, fblk in ops:
        for b in range(pblk, pblk + n):
            model.setdefault(b, set()).add((ino, fblk - pblk))
    return model


def test_owner_map_is_owned_needs_every_block_owned() -> None:
    """``is_owned`` is what refuses a reflink record that shares blocks nobody owns."""
    rmap = OwnerMap.build([(5, 5, 2, 0), (10, 2, 3, 0), (14, 2, 2, 5)])    # [5,10) [10,12) [14,16)
    assert rmap.covered() == [(5, 7), (14, 2)]
    assert rmap.is_owned(5, 7) and rmap.is_owned(6, 1) and rmap.is_owned(11, 1) and rmap.is_owned(14, 2)
    for start, n in ((3, 4), (4, 1), (8, 7), (11, 2), (12, 2), (15, 2), (16, 1), (20, 1), (0, 30)):
        assert not rmap.is_owned(start, n), (start, n)


def test_owner_map_remove_of_blocks_not_owned_is_corruption() -> None:
    rmap = OwnerMap.build([(5, 5, 2, 0)])
    for start, n, ino in ((3, 4, 2), (8, 4, 2), (12, 2, 2), (5, 2, 9)):
        with pytest.raises(CorruptVolumeError, match="does not own"):
            rmap.remove(start, n, ino, start - 5)


def test_owner_map_merges_neighbours_with_the_same_owners() -> None:
    """A file written in pieces is one run, and giving a clone back merges the runs again
    (the map stays as small as the files' extent maps)."""
    rmap = OwnerMap()
    rmap.add(5, 5, 2, 5)
    rmap.add(0, 5, 2, 0)                # before its neighbour: merged with the next run
    assert rmap.runs() == [(0, 10, ((2, 0),))]
    rmap.add(20, 5, 9, 0)
    rmap.add(30, 5, 9, 10)
    rmap.add(25, 5, 9, 5)               # between two: merged with both
    assert rmap.runs() == [(0, 10, ((2, 0),)), (20, 35, ((9, -20),))]
    rmap.add(10, 3, 2, 10)              # after it: merged with the previous run
    assert rmap.runs() == [(0, 13, ((2, 0),)), (20, 35, ((9, -20),))]
    rmap.add(3, 2, 7, 0)                # a clone of the middle splits the run ...
    assert len(rmap) == 4 and rmap.shared_blocks == 2
    assert rmap.remove(3, 2, 7, 0) == []    # ... and its end joins the pieces again
    assert rmap.runs() == [(0, 13, ((2, 0),)), (20, 35, ((9, -20),))] and rmap.shared_blocks == 0
    rmap.add(8, 5, 7, 8)                # a clone of the tail (a split) ...
    rmap.add(5, 3, 7, 5)                # ... grown by its head: one run again
    assert rmap.runs()[:2] == [(0, 5, ((2, 0),)), (5, 13, ((2, 0), (7, 0)))] and rmap.shared_blocks == 8


def test_owner_map_refuses_the_same_owner_twice() -> None:
    rmap = OwnerMap.build([(0, 5, 2, 0)])
    for start, n in ((0, 5), (1, 2), (3, 4)):
        with pytest.raises(CorruptVolumeError, match="twice"):
            rmap.add(start, n, 2, start)
    assert rmap.shared_blocks == 0 and rmap.covered() == [(0, 5)]      # refused: still one owner

def test_core_refuses_sharing_blocks_nobody_owns() -> None:
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 0))
    core.apply(SetExtents(2, [], [0, 4, 10, 0], 4 * BS, 0))
    core.apply(Create(3, ROOT_INO, "b", st.S_IFREG | 0o644, 0, 0, 0))
    for pblk, n in ((8, 4), (13, 2), (14, 1), (30, 1)):     # a owns [10,14)
        with pytest.raises(CorruptVolumeError, match=f"inode 3 shares data blocks {pblk}..{pblk + n} nobody owns"):
            core.apply(SetExtents(3, [], [0, n, pblk, SHARE], n * BS, 0))
    core.apply(SetExtents(3, [], [0, 4, 10, SHARE], 4 * BS, 0))
    assert core.rmap.shared_blocks == 4 and check(core) == []


@settings(max_examples=150, deadline=None)
@given(hs.lists(hs.tuples(hs.booleans(), hs.integers(0, 30), hs.integers(1, 8), hs.integers(2, 4),
                          hs.integers(0, 3)), max_size=25), hs.booleans())
def test_owner_map_matches_a_model_of_per_block_owners(ops: list[tuple[bool, int, int, int, int]],
                                                       small_chunks: bool) -> None:
    """Owners, shared counts and freed blocks agree with a per-block model of who owns what,
    under any sequence of adds and removes (a remove gives up part of an earlier add); with
    ``small_chunks`` its table of runs turns chunked (core/chunked.py) after four runs, in
    chunks of four blocks, and its list of run starts in chunks of two to four."""
    saved = chunked.CHUNK_BITS, chunked.CHUNKED_FROM, chunked.LIST_CHUNK
    if small_chunks:
        chunked.CHUNK_BITS, chunked.CHUNKED_FROM, chunked.LIST_CHUNK = 2, 4, 2
    try:
        _owner_map_against_the_model(ops)
    finally:
        chunked.CHUNK_BITS, chunked.CHUNKED_FROM, chunked.LIST_CHUNK = saved


def _owner_map_against_the_model(ops: list[tuple[bool, int, int, int, int]]) -> None:
    rmap = OwnerMap()
    added: list[tuple[int, int, int, int]] = []
    for is_add, pblk, n, ino, shift in ops:
        if is_add:
            fblk = pblk + shift
            model = _owner_model(added)
            if any((ino, shift) in model.get(b, ()) for b in range(pblk, pblk + n)):
                continue                # the same file block at the same place twice
            rmap.add(pblk, n, ino, fblk)
            added.append((pblk, n, ino, fblk))
        elif added:
            p, k, i, f = added.pop(pblk % len(added))
            lo = p + shift % k
            hi = min(p + k, lo + n)
            before = _owner_model(added + [(p, k, i, f)])
            if lo > p:
                added.append((p, lo - p, i, f))
            if hi < p + k:
                added.append((hi, p + k - hi, i, f + hi - p))
            after = _owner_model(added)
            freed = rmap.remove(lo, hi - lo, i, f + lo - p)
            assert _blocks(freed) == sorted(b for b in before if b not in after)
            assert all(a[0] + a[1] < b[0] for a, b in zip(freed, freed[1:])), "freed runs not merged"
        model = _owner_model(added)
        assert rmap.shared_blocks == sum(1 for o in model.values() if len(o) > 1)
        assert _blocks(rmap.covered()) == sorted(model)
        runs = rmap.runs()
        assert list(rmap._starts) == sorted(rmap._runs)
        assert all(a[1] <= b[0] and (a[1], a[2]) != (b[0], b[2]) for a, b in zip(runs, runs[1:])), \
            "runs overlap, or neighbours with the same owners are not merged"
        for start in range(0, 40, 3):
            for n in (1, 4, 11):
                blocks = range(start, start + n)
                assert rmap.is_owned(start, n) == all(b in model for b in blocks)
                got = sorted((ino, fb, pb) for ino, fb0, pb0, m in rmap.owners(start, n)
                             for pb, fb in zip(range(pb0, pb0 + m), range(fb0, fb0 + m)))
                assert got == sorted((ino, b + d, b) for b in blocks for ino, d in model.get(b, ()))
                assert _blocks(rmap.shared_parts(start, n)) == [b for b in blocks if len(model.get(b, ())) > 1]


# ---------------------------------------------------------------------------- Core


def inode_table(core: Core) -> dict[int, tuple]:
    """Every inode's fields, read from the objects themselves (not through the codec
    under test, so a checkpoint that mixes up two fields cannot agree with itself)."""
    out = {}
    for ino, n in core.inodes.items():
        body = (dict(n.entries) if n.entries is not None else list(n.extents) if n.extents is not None
                else (n.target, n.rdev))
        out[ino] = (n.mode, n.uid, n.gid, n.size, n.atime_ns, n.mtime_ns, n.ctime_ns, n.nlink, body)
    return out


def core_summary(core: Core) -> dict[str, object]:
    """Everything that defines a core's state, derived parts included."""
    return {
        "inodes": inode_table(core),
        "next_ino": core.next_ino,
        "free": core.space.runs(),
        "free_blocks": core.space.free,
        "nlink": {ino: node.nlink for ino, node in core.inodes.items()},
        "parent": {ino: node.parent for ino, node in core.inodes.items() if node.is_dir},
        "runs": core.runs,
        "name_chars": core.name_chars,
        "target_chars": core.target_chars,
    }


def rebuilt_from_checkpoint(core: Core) -> Core:
    """``core`` through a checkpoint, decoded both ways (whole, and a row at a time as mount
    does): both must give the same state."""
    whole = Core.from_checkpoint(core.to_checkpoint(), core.block_size, core.data_blocks,
                                 align_blocks=core.space.align)
    raw = encode_checkpoint(core.to_checkpoint(), 1, 0, 0)
    streamed = Core.from_checkpoint(decode_checkpoint_streamed(raw, 0).state, core.block_size,
                                    core.data_blocks, align_blocks=core.space.align)
    assert core_summary(streamed) == core_summary(whole)
    return whole


_ROOT_ROW = [1, st.S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, None, []]


@pytest.mark.parametrize("body", [msgpack.packb(5), msgpack.packb([2]), msgpack.packb([2, 3]),
                                  msgpack.packb([2, [], [[], []]]) + b"\x00", msgpack.packb([2, [[1]]]),
                                  # two rows declared, the body ends after one
                                  b"\x92" + msgpack.packb(2) + b"\x92" + msgpack.packb(_ROOT_ROW),
                                  b"\x93" + msgpack.packb(2) + b"\x92" + msgpack.packb(_ROOT_ROW)],
                         ids=["int", "one-field", "rows-int", "bytes-after", "short-row", "one-row-of-two",
                              "one-row-of-two-then-bad-memory"])
def test_a_streamed_checkpoint_of_the_wrong_shape_is_corrupt(body: bytes) -> None:
    from daxfs.format.checkpoint import StreamedState
    with pytest.raises(CorruptVolumeError):
        Core.from_checkpoint(StreamedState(body), BS, 64)


def test_a_streamed_checkpoint_with_every_row_loads() -> None:
    from daxfs.format.checkpoint import StreamedState
    body = b"\x92" + msgpack.packb(2) + b"\x91" + msgpack.packb(_ROOT_ROW)
    assert list(Core.from_checkpoint(StreamedState(body), BS, 64).inodes) == [1]


@settings(max_examples=300, deadline=None)
@given(hs.lists(hs.one_of(hs.text(max_size=70), hs.sampled_from([".", "..", "a/b", "x\0", "é" * 127, "é" * 128,
                                                                  "\udcff" * 64, "\ud800", "a" * 256, ""]),
                          hs.integers(), hs.none(), hs.binary(max_size=3)), max_size=6))
@example([".."]).via("a dot-dot among valid names: the screen itself must refuse it")
@example(["a", "..", "b" * 64]).via("the same, beside a name long enough for valid_name")
@example(["a", "."]).via("a dot")
def test_a_directory_names_checked_at_once_as_one_by_one(names: list[object]) -> None:
    """Mount checks a directory's names together (``valid_names``): the same verdict as
    ``valid_name`` on each."""
    assert valid_names(names) == all(valid_name(n) for n in names)


def test_checkpoint_round_trip_keeps_every_inode_field_apart() -> None:
    """Each field through encode -> decode -> from_checkpoint, with values that all differ,
    so a codec that swaps or copies one field into another cannot pass."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "d", st.S_IFDIR | 0o750, 0, 0, 10))
    core.apply(Create(3, 2, "f", st.S_IFREG | 0o640, 0, 0, 11))
    core.apply(SetExtents(3, [], [0, 2, 5, 0, 3, 1, 20, UNWRITTEN], 3 * BS + 7, 12))
    core.apply(SetAttr(3, st.S_IFREG | 0o604, 1001, 1002, 101, 202, 303))
    core.apply(SetAttr(2, None, 2001, 2002, 404, 505, 606))
    core.apply(Link(3, ROOT_INO, "g", 13))
    raw = encode_checkpoint(core.to_checkpoint(), 7, 99, 4096)
    decoded = decode_checkpoint(raw, 0)
    back = Core.from_checkpoint(decoded.state, BS, 64)
    f, d = back.inodes[3], back.inodes[2]
    assert (f.mode, f.uid, f.gid, f.size) == (st.S_IFREG | 0o604, 1001, 1002, 3 * BS + 7)
    assert (f.atime_ns, f.mtime_ns, f.ctime_ns) == (101, 202, 13)     # the link set ctime
    assert (d.mode, d.uid, d.gid) == (st.S_IFDIR | 0o750, 2001, 2002)
    assert (d.atime_ns, d.mtime_ns, d.ctime_ns) == (404, 505, 606)
    assert list(f.extents) == [(0, 2, 5, 0), (3, 1, 20, UNWRITTEN)] and f.nlink == 2
    assert back.inodes[ROOT_INO].entries == {"d": 2, "g": 3}
    assert inode_table(back) == inode_table(core)
    assert back.next_ino == core.next_ino and back.space.runs() == core.space.runs()


@pytest.mark.parametrize("seed", range(12))
def test_apply_keeps_invariants_and_checkpoint_and_replay_agree(seed: int) -> None:
    pool = MemoryPool(8 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    core = vol._core
    for i, op in enumerate(Workload(seed, checkpoints=(seed % 2 == 0)).ops(200)):
        op.apply(vol)
        assert check(core) == [], f"fsck after {op}"
        if i % 30 == 29:
            assert core_summary(rebuilt_from_checkpoint(core)) == core_summary(core)
    live = core_summary(core)
    assert core_summary(rebuilt_from_checkpoint(core)) == live
    # the pool as it is now: newest checkpoint plus the log after it
    replayed = Volume.mount(MemoryPool(pool.image()), readonly=True)
    assert core_summary(replayed._core) == live
    assert replayed.fsck() == []
    replayed.close()
    vol.close()                                   # a final checkpoint: mount replays nothing
    after_close = Volume.mount(MemoryPool(pool.image()), readonly=True)
    assert core_summary(after_close._core) == core_summary(core) == live
    after_close.close()


BS = 4096


def fresh_core(blocks: int = 64) -> Core:
    return Core.new(BS, blocks, time_ns=1, uid=0, gid=0)


def test_a_block_map_change_on_a_missing_inode_or_a_directory_says_which() -> None:
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "d", st.S_IFDIR | 0o755, 0, 0, 1))
    for ino, says in ((2, "block map change on directory 2"), (9, "block map change on missing inode 9")):
        with pytest.raises(CorruptVolumeError) as info:
            core.apply(SetExtents(ino, [], [0, 1, 5, 0], BS, 2))
        assert str(info.value).endswith(says)
    assert check(core) == []


def test_a_reclaim_of_a_missing_inode_a_directory_or_a_named_file_says_which() -> None:
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "d", st.S_IFDIR | 0o755, 0, 0, 1))
    core.apply(Create(3, ROOT_INO, "f", st.S_IFREG | 0o644, 0, 0, 1))
    for ino, says in ((2, "reclaim of directory 2"), (9, "reclaim of missing inode 9"),
                      (3, "reclaim of inode 3 that still has 1 names")):
        with pytest.raises(CorruptVolumeError) as info:
            core.apply(Reclaim(ino))
        assert str(info.value).endswith(says)
    assert check(core) == [] and sorted(core.inodes) == [ROOT_INO, 2, 3]


def test_fresh_blocks_into_a_hole_are_checked_to_the_edges() -> None:
    """The common write (fresh blocks into a hole): a written block must start below the size,
    the last block a file can hold is allowed, and a shrink keeps written blocks up to the new
    size rounded up to a block, no further."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "f", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(2, [], [0, 2, 10, 0], 2 * BS, 1))
    for refused in (SetExtents(2, [], [2, 1, 20, 0], 2 * BS, 1),          # starts at the size
                    SetExtents(2, [], [5, 1, 20, UNWRITTEN], BS, 1)):     # a shrink past written block 1
        with pytest.raises(CorruptVolumeError):
            core.apply(refused)
    core.apply(SetExtents(2, [], [5, 1, 20, UNWRITTEN], BS + 1, 1))      # keeps block 1's first byte
    assert core.inodes[2].size == BS + 1
    core.apply(SetExtents(2, [], [core.max_blocks - 1, 1, 21, UNWRITTEN], None, 1))   # the last block
    assert check(core) == []


def test_records_apply_with_link_counts_and_free_space() -> None:
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "d", st.S_IFDIR | 0o755, 0, 0, 10))
    core.apply(Create(3, 2, "f", st.S_IFREG | 0o644, 0, 0, 11))
    assert core.inodes[ROOT_INO].nlink == 3 and core.inodes[2].nlink == 2 and core.inodes[3].nlink == 1
    core.apply(SetExtents(3, [], [0, 4, 8, 0, 4, 2, 12, UNWRITTEN], 4 * BS + 1, 12))
    assert core.space.free == 58 and list(core.inodes[3].extents) == [(0, 4, 8, 0), (4, 2, 12, UNWRITTEN)]
    assert core.inodes[3].size == 4 * BS + 1 and core.inodes[3].mtime_ns == 12
    core.apply(Link(3, ROOT_INO, "g", 13))
    assert core.inodes[3].nlink == 2
    core.apply(Create(4, ROOT_INO, "e", st.S_IFDIR | 0o700, 0, 0, 14))
    core.apply(Rename(ROOT_INO, "e", 2, "e2", 15, False))      # a directory changes parent
    assert core.inodes[ROOT_INO].nlink == 3 and core.inodes[2].nlink == 3 and core.inodes[4].parent == 2
    core.apply(SetAttr(3, 0o600, None, None, 1, 2, 16))
    assert core.inodes[3].mode == st.S_IFREG | 0o600 and core.inodes[3].atime_ns == 1
    assert check(core) == []
    core.apply(Unlink(2, "f", 17, False))                       # still named "g"
    core.apply(Unlink(ROOT_INO, "g", 18, False))                # now an orphan somebody holds
    assert core.orphans() == [3] and core.space.free == 58
    assert check(core, referenced=[3]) == []
    assert any("orphan" in p for p in check(core))
    core.apply(Reclaim(3))
    assert 3 not in core.inodes and core.space.free == 64
    core.apply(Unlink(2, "e2", 19, True))                     # rmdir of the empty directory
    assert core.inodes[2].nlink == 2 and 4 not in core.inodes
    assert check(core) == []
    assert core_summary(rebuilt_from_checkpoint(core)) == core_summary(core)


def test_rename_over_a_file_reclaims_it() -> None:
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(Create(3, ROOT_INO, "b", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(3, [], [0, 5, 0, 0], 5 * BS, 2))
    core.apply(Rename(ROOT_INO, "a", ROOT_INO, "b", 3, True))
    assert core.inodes[ROOT_INO].entries == {"b": 2} and 3 not in core.inodes
    assert core.space.free == 64 and check(core) == []


def test_setextents_gives_back_exactly_what_it_does_not_take_again() -> None:
    """One record that unmaps some blocks and maps part of them again (a truncate that also
    writes, unwritten -> written): the blocks kept never pass through free space, the rest are
    freed exactly, and blocks mapped beyond what was unmapped are taken."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(2, [], [0, 6, 10, UNWRITTEN], 0, 2))
    assert core.space.free == 58
    core.apply(SetExtents(2, [0, -1], [0, 2, 12, 0], 2 * BS, 3))     # keeps 12..13, frees 10..11, 14..15
    assert list(core.inodes[2].extents) == [(0, 2, 12, 0)] and core.space.free == 62
    assert [core.space.is_free(b, 1) for b in range(9, 17)] == [True, True, True, False, False, True, True, True]
    core.apply(SetExtents(2, [0, 2], [0, 4, 11, 0], 4 * BS, 4))      # gives back 12..13, takes 11..14
    assert list(core.inodes[2].extents) == [(0, 4, 11, 0)] and core.space.free == 60
    assert [core.space.is_free(b, 1) for b in range(9, 17)] == [True, True, False, False, False, False, True, True]
    assert check(core) == [] and core_summary(rebuilt_from_checkpoint(core)) == core_summary(core)


def test_goal_after_continues_the_run_before_any_block_but_the_first() -> None:
    """Appends ask for the block after the file's previous one, from file block 1 on."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(2, [], [0, 1, 20, 0, 1, 2, 40, 0], 3 * BS, 2))
    node = core.inodes[2]
    assert [core.goal_after(node, f) for f in (0, 1, 2, 3, 4)] == [None, 21, 41, 42, None]


def test_symlink_targets_are_counted_until_the_link_is_freed() -> None:
    """``target_chars`` (part of the checkpoint bound) follows links made and reclaimed."""
    core = fresh_core()
    bound = core.checkpoint_bound
    core.apply(CreateNode(2, ROOT_INO, "l", st.S_IFLNK | 0o777, 0, 0, 1, 0, "target"))
    core.apply(CreateNode(3, ROOT_INO, "m", st.S_IFLNK | 0o777, 0, 0, 1, 0, "xy"))
    assert core.target_chars == 8
    core.apply(Unlink(ROOT_INO, "l", 2, True))
    assert core.target_chars == 2 and 2 not in core.inodes
    core.apply(Unlink(ROOT_INO, "m", 3, False))
    assert core.target_chars == 2                    # an orphan keeps its target
    core.apply(Reclaim(3))
    assert core.target_chars == 0 and core.checkpoint_bound == bound


def test_core_plan_blocks_continues_the_goal_past_excluded_runs_and_says_enospc_in_bytes() -> None:
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(2, [], [0, 4, 0, 0, 4, 3, 20, 0], 7 * BS, 2))   # free: 4..19, 23..63
    assert core.plan_blocks(2) == [(4, 2)]                                # best fit, no goal
    assert core.plan_blocks(2, 23) == [(23, 2)]                           # after the file's block 22
    assert core.plan_blocks(2, 23, exclude=[(4, 2)]) == [(23, 2)]          # the goal, with runs promised
    with pytest.raises(OSError) as info:
        core.plan_blocks(100)
    assert info.value.errno == errno.ENOSPC
    assert f"asked for {100 * BS} bytes" in str(info.value) and f"{57 * BS} bytes" in str(info.value)


def test_split_path_and_the_length_limits() -> None:
    """Components without the empty ones (leading, repeated, trailing slashes), ``.`` and
    ``..`` kept, and whether the path ends in ``/``; ``""`` is ENOENT, a NUL byte EINVAL (also
    a ValueError); a path of 4096 bytes or more is ENAMETOOLONG, counted in bytes of UTF-8
    (undecodable bytes as one each) not characters, except on a thread that walks whole paths
    from a mount's root; a name of 256 bytes is ENAMETOOLONG, 255 are fine."""
    assert split_path("/") == ([], True) and split_path("a") == (["a"], False)
    assert split_path("//a//./..///b/") == (["a", ".", "..", "b"], True)
    assert split_path("a/b") == (["a", "b"], False) and split_path("./") == (["."], True)
    for bad in ("\0", "a/\0", "a\0b/"):
        with pytest.raises(InvalidPathError) as info:
            split_path(bad)
        assert info.value.errno == errno.EINVAL and isinstance(info.value, ValueError)
        assert info.value.strerror == "embedded null byte" and info.value.filename == bad     # as os says it
    with pytest.raises(FileNotFoundError) as info:
        split_path("")
    assert info.value.filename == ""
    if hasattr(whole, "paths"):
        del whole.paths                 # a thread that never said: PATH_MAX applies
    for fits in ("a/" * 2047 + "b", "\u00e9" * 2047 + "a", "\U0001F600" * 1023 + "abc", "\udcff" * 4095):
        assert len(fits.encode("utf-8", "surrogateescape")) == 4095
        assert split_path(fits)[0]
    for long in ("a/" * 2048, "\u00e9" * 2048, "\U0001F600" * 1024, "\udcff" * 4096):
        with pytest.raises(OSError) as info:
            split_path(long)
        assert info.value.errno == errno.ENAMETOOLONG and info.value.filename == long
    whole.paths = True
    try:
        assert len(split_path("a/" * 3000)[0]) == 3000
    finally:
        del whole.paths
    for name in ("n" * 255, "\u00e9" * 127 + "a", "\udcff" * 255, "\U0001F600" * 63 + "abc"):
        check_name(name, "/d/" + name)
    for name in ("n" * 256, "\u00e9" * 128, "\udcff" * 256, "\U0001F600" * 64):
        with pytest.raises(OSError) as info:
            check_name(name, "/d/" + name)
        assert info.value.errno == errno.ENAMETOOLONG and info.value.filename == "/d/" + name


def test_fspath_takes_str_bytes_and_path_like() -> None:
    assert fspath("a/b") == "a/b" and fspath(b"a/\xff") == "a/\udcff"
    assert fspath(pathlib.PurePosixPath("/a/b")) == "/a/b"
    for bad in (3, None, ["a"]):
        with pytest.raises(TypeError, match=type(bad).__name__):
            fspath(bad)


def test_resolve_dot_names_searched_directories_and_enotdir() -> None:
    """A path ending in ``.`` or ``..`` names a directory (as a trailing ``/`` does); every
    directory looked in is listed for the permission check; ENOTDIR names the path."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFDIR | 0o755, 0, 0, 1))
    core.apply(Create(3, 2, "b", st.S_IFDIR | 0o755, 0, 0, 1))
    core.apply(Create(4, 3, "f", st.S_IFREG | 0o644, 0, 0, 1))
    assert core.resolve("/a/b/.") == (3, None, 3, True)
    assert core.resolve("/a/b/..") == (2, None, 2, True)
    assert core.resolve("/a/b/f") == (3, "f", 4, False)
    searched: list = []
    core.resolve("/a/./b/../b/f", searched=searched)
    assert [node.ino for node in searched] == [ROOT_INO, 2, 2, 3, 2, 3]
    with pytest.raises(OSError) as info:
        core.resolve("/a/b/f/g")
    assert info.value.errno == errno.ENOTDIR and info.value.filename == "/a/b/f/g"


def test_resolve_name_length_limit_and_trailing_slash_on_a_symlink() -> None:
    """A name is checked from 64 characters on (64 four-byte characters are 256 bytes:
    ENAMETOOLONG, with the path); a symlink last with a trailing ``/`` is followed by lstat
    (``follow=False``) but not by what makes or removes the name (``follow=None``)."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFDIR | 0o755, 0, 0, 1))
    core.apply(CreateNode(3, ROOT_INO, "l", st.S_IFLNK | 0o777, 0, 0, 1, 0, "a"))
    assert core.resolve("/" + "\U0001F600" * 63) == (ROOT_INO, "\U0001F600" * 63, None, False)
    long = "/a/" + "\U0001F600" * 64
    with pytest.raises(OSError) as info:
        core.resolve(long)
    assert info.value.errno == errno.ENAMETOOLONG and info.value.filename == long
    assert core.resolve("/l/", follow=False) == (ROOT_INO, "a", 2, True)
    assert core.resolve("/l/", follow=True) == (ROOT_INO, "a", 2, True)
    assert core.resolve("/l/", follow=None) == (ROOT_INO, "l", 3, True)
    assert core.resolve("/l", follow=False) == (ROOT_INO, "l", 3, False)


def test_resolve_follows_at_most_40_links_and_errors_carry_the_path() -> None:
    """Links on the way are followed (an absolute target from the root, a relative one from
    the link's directory), 40 in one walk at most, then ELOOP; ENOENT and ELOOP name the path."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFDIR | 0o755, 0, 0, 1))
    core.apply(Create(3, 2, "f", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(CreateNode(4, 2, "up", st.S_IFLNK | 0o777, 0, 0, 1, 0, "/a/f"))
    core.apply(CreateNode(5, 2, "near", st.S_IFLNK | 0o777, 0, 0, 1, 0, "f"))
    ino = 6
    for i in range(41):                 # /t0 -> /t1 -> ... -> /t40 -> a/f
        target = f"t{i + 1}" if i < 40 else "a/f"
        core.apply(CreateNode(ino, ROOT_INO, f"t{i}", st.S_IFLNK | 0o777, 0, 0, 1, 0, target))
        ino += 1
    assert core.resolve("/a/up", follow=True) == (2, "f", 3, False)
    assert core.resolve("/a/near", follow=True) == (2, "f", 3, False)
    core.apply(CreateNode(47, ROOT_INO, "ds", st.S_IFLNK | 0o777, 0, 0, 1, 0, "a/"))
    assert core.resolve("/ds", follow=True) == (ROOT_INO, "a", 2, True)     # the target's slash counts last
    assert core.resolve("/ds/f", follow=True) == (2, "f", 3, False)         # but not on the way
    core.apply(CreateNode(48, 2, "root", st.S_IFLNK | 0o777, 0, 0, 1, 0, "/"))
    assert core.resolve("/") == core.resolve("/a/root", follow=True) == (ROOT_INO, None, ROOT_INO, True)
    assert core.resolve("/a/root/a/f") == (2, "f", 3, False)
    assert core.resolve("/t1", follow=True) == (2, "f", 3, False)           # 40 links
    for path, code in (("/t0", errno.ELOOP), ("/a/nothing/f", errno.ENOENT)):
        with pytest.raises(OSError) as info:
            core.resolve(path, follow=True)
        assert info.value.errno == code and info.value.filename == path


def test_setextents_unmap_to_end_and_replace() -> None:
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(2, [], [0, 8, 0, 0], 8 * BS, 2))
    core.apply(SetExtents(2, [3, -1], [1, 1, 20, 0], 3 * BS, 3))   # truncate + swap block 1
    assert list(core.inodes[2].extents) == [(0, 1, 0, 0), (1, 1, 20, 0), (2, 1, 2, 0)]
    assert core.space.free == 64 - 3 and core.space.is_free(1, 1) and not core.space.is_free(20, 1)
    assert check(core) == []


def test_setextents_unmaps_every_run_of_its_unmap_list() -> None:
    """An unmap of several runs in one record gives back each of them, no other block."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(2, [], [0, 8, 0, 0], 8 * BS, 2))
    core.apply(SetExtents(2, [1, 1, 4, 2, 7, 1], [], None, 3))
    assert list(core.inodes[2].extents) == [(0, 1, 0, 0), (2, 2, 2, 0), (6, 1, 6, 0)]
    assert [core.space.is_free(b, 1) for b in range(9)] == [False, True, False, False, True, True, False, True,
                                                           True]
    assert core.runs == 3 and core.space.free == 60 and check(core) == []
    core.apply(SetExtents(2, [0, 0, 2, 0], [], None, 4))     # empty ranges (a clone of an empty file)
    assert list(core.inodes[2].extents) == [(0, 1, 0, 0), (2, 2, 2, 0), (6, 1, 6, 0)] and core.space.free == 60


def test_a_copy_on_write_record_sets_the_times_and_gives_back_the_old_blocks() -> None:
    """Fresh blocks replacing blocks inside one written run (the first write into a clone,
    applied by a fast path): the file's times change as for any write, the old blocks are
    freed, and the run is split around the new ones."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(2, [], [0, 4, 10, 0], 4 * BS, 2))
    core.apply(SetExtents(2, [], [1, 2, 30, 0], None, 50))
    node = core.inodes[2]
    assert list(node.extents) == [(0, 1, 10, 0), (1, 2, 30, 0), (3, 1, 13, 0)]
    assert (node.mtime_ns, node.ctime_ns, node.size) == (50, 50, 4 * BS)
    assert [core.space.is_free(b, 1) for b in (10, 11, 12, 13, 30, 31)] == [False, True, True, False, False, False]
    assert core.runs == 3 and check(core) == []


def test_a_block_map_past_the_largest_file_names_the_inode() -> None:
    """Past the largest file by one block, in a record that is not the common write."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(2, [], [0, 1, 10, 0], BS, 2))
    with pytest.raises(CorruptVolumeError, match=f": inode 2 maps file block {core.max_blocks + 1}, past"):
        core.apply(SetExtents(2, [0, 1], [core.max_blocks - 1, 2, 5, UNWRITTEN], None, 3))
    core.apply(SetExtents(2, [0, 1], [core.max_blocks - 2, 2, 5, UNWRITTEN], None, 3))     # up to the last block
    assert list(core.inodes[2].extents) == [(core.max_blocks - 2, 2, 5, UNWRITTEN)] and check(core) == []


def test_a_shrink_past_written_blocks_says_so() -> None:
    """A record that is not the common write and leaves written blocks past the new size."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(2, [], [0, 2, 10, 0], 2 * BS, 2))
    with pytest.raises(CorruptVolumeError, match=f": inode 2 holds written blocks past its size {BS}$"):
        core.apply(SetExtents(2, [5, 1], [], BS, 3))


@pytest.mark.parametrize("record", [
    Create(2, ROOT_INO, "x", st.S_IFREG | 0o644, 0, 0, 1),        # name exists
    Create(3, ROOT_INO, "y", st.S_IFREG | 0o644, 0, 0, 1),        # inode exists
    Link(ROOT_INO, ROOT_INO, "z", 1),                             # hard link to a directory
    Reclaim(3),                                                   # still has a name
    SetExtents(5, [], [0, 1, 0, 0], BS, 1),                       # block 0 belongs to inode 3
    SetExtents(4, [], [0, 1, 9, 0], BS, 1),                       # block map on a directory
    Unlink(ROOT_INO, "d", 1, True),                               # directory not empty
], ids=["create-over-name", "create-over-inode", "link-dir", "reclaim-linked", "take-used-block",
        "extents-on-dir", "rmdir-nonempty"])
def test_invalid_records_are_refused_as_corruption(record: object) -> None:
    core = fresh_core()
    core.apply(Create(3, ROOT_INO, "x", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(3, [], [0, 1, 0, 0], BS, 1))
    core.apply(Create(4, ROOT_INO, "d", st.S_IFDIR | 0o755, 0, 0, 1))
    core.apply(Create(5, 4, "inner", st.S_IFREG | 0o644, 0, 0, 1))
    with pytest.raises(CorruptVolumeError):
        core.apply(record)  # type: ignore[arg-type]


@pytest.mark.parametrize("record", [
    Create(6, ROOT_INO, "x", st.S_IFREG | 0o644, 0, 0, 1),        # name exists
    Create(2, ROOT_INO, "new", st.S_IFREG | 0o644, 0, 0, 1),      # an inode number already used
    Create(6, 3, "in-a-file", st.S_IFREG | 0o644, 0, 0, 1),       # parent is a file
    Create(6, 99, "nowhere", st.S_IFREG | 0o644, 0, 0, 1),        # parent does not exist
    Link(99, ROOT_INO, "z", 1),                                   # no such inode
    Link(3, ROOT_INO, "d", 1),                                    # name exists
    Unlink(ROOT_INO, "missing", 1, True),
    Unlink(3, "x", 1, True),                                      # parent is a file
    Rename(ROOT_INO, "d", 4, "self", 1, False),                   # a directory into itself
    Rename(ROOT_INO, "x", ROOT_INO, "x", 1, False),               # onto itself
    Rename(ROOT_INO, "d", ROOT_INO, "x", 1, False),               # a directory over a file
    Rename(ROOT_INO, "x", ROOT_INO, "d", 1, False),               # a file over a directory
    Rename(ROOT_INO, "missing", ROOT_INO, "y", 1, False),
    SetAttr(99, 0o600, None, None, None, None, None),
    SetExtents(3, [], [5, 1, 9, 0], BS, 1),                        # written block past the size it sets
    SetExtents(3, [], [1, 1, 9, 0], 10, 1),                        # shrinks over a written block
    SetExtents(99, [], [0, 1, 9, 0], BS, 1),
    SetExtents(3, [], [1, 1, 64, UNWRITTEN], None, 1),             # past the data area
    SetExtents(3, [], [1 << 49, 1 << 49, 9, UNWRITTEN], None, 1),  # to the largest file's end, past the data area
    SetExtents(3, [], [1, 1, 9, UNWRITTEN, MAX_FILE_SIZE // BS - 1, 2, 10, UNWRITTEN], None, 1),  # 2nd run past it
    Reclaim(4),                                                   # a directory
    Reclaim(99),
    Unlink(99, "x", 1, True),                                     # parent does not exist
    Link(3, 99, "z", 1),                                          # parent does not exist
    Link(3, 3, "z", 1),                                           # parent is a file
    Rename(ROOT_INO, "x", 99, "y", 1, False),                     # target parent does not exist
    Rename(ROOT_INO, "x", ROOT_INO, "ghost", 1, False),           # target names a missing inode
], ids=["create-over-name", "create-old-ino", "create-in-file", "create-no-parent", "link-missing",
        "link-over-name", "unlink-missing", "unlink-in-file", "rename-into-itself", "rename-onto-itself",
        "rename-dir-over-file", "rename-file-over-dir", "rename-missing", "setattr-missing", "write-past-size",
        "shrink-over-data", "extents-missing", "past-data-area", "past-largest-file", "past-largest-file-2",
        "reclaim-dir",
        "reclaim-missing", "unlink-no-parent", "link-no-parent", "link-in-file", "rename-no-target-parent",
        "rename-over-dangling-name"])
def test_records_that_do_not_fit_the_state_change_nothing(record: object) -> None:
    """Refused before any change: the state after the refusal is the state before it, and the
    error names the record's name or inode (what a damaged log is reported by)."""
    core = fresh_core()
    core.apply(Create(3, ROOT_INO, "x", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(3, [], [0, 1, 0, 0], BS, 1))
    core.apply(Create(4, ROOT_INO, "d", st.S_IFDIR | 0o755, 0, 0, 1))
    core.apply(Create(5, 4, "inner", st.S_IFREG | 0o644, 0, 0, 1))
    core.inodes[ROOT_INO].entries["ghost"] = 98       # type: ignore[index]  # a name without its inode
    before = core.to_checkpoint()
    with pytest.raises(CorruptVolumeError) as info:
        core.apply(record)  # type: ignore[arg-type]
    assert core.to_checkpoint() == before
    del core.inodes[ROOT_INO].entries["ghost"]          # type: ignore[union-attr]
    assert check(core) == []
    fields = [x for f in record for x in (f if type(f) is list else [f])]  # type: ignore[attr-defined]
    named = [repr(f) for f in fields if type(f) is str] + [str(f) for f in fields if type(f) is int and f > 1]
    assert any(token in str(info.value) for token in named), (str(info.value), named)


def test_rename_refuses_a_directory_under_any_of_its_descendants() -> None:
    """The walk from the new parent up to the root finds the moved directory at any depth;
    a move that is not under itself still goes through."""
    core = fresh_core()
    for ino, parent, name in ((2, ROOT_INO, "a"), (3, 2, "b"), (4, 3, "c"), (5, 4, "e")):
        core.apply(Create(ino, parent, name, st.S_IFDIR | 0o755, 0, 0, 1))
    before = core.to_checkpoint()
    for dst in (2, 3, 4, 5):
        with pytest.raises(CorruptVolumeError, match="inside itself"):
            core.apply(Rename(ROOT_INO, "a", dst, "moved", 2, False))
        assert core.to_checkpoint() == before
    core.apply(Rename(3, "c", ROOT_INO, "c", 3, False))         # c (and e) up to the root
    core.apply(Rename(ROOT_INO, "a", 5, "a", 4, False))         # a is not above e any more
    assert core.inodes[2].parent == 5 and core.inodes[5].entries == {"a": 2}
    assert check(core) == []


@pytest.mark.parametrize("build", [
    lambda: Create(0, 1, "a", st.S_IFREG, 0, 0, 0),
    lambda: Create(True, 1, "a", st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1.0, "a", st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1, "..", st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1, ".", st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1, "a/b", st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1, "a\0b", st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1, "", st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1, "x" * 256, st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1, "\u00e9" * 128, st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1, "\ud800" * 70, st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1, b"a", st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1, "a", -1, 0, 0, 0),
    lambda: Create(2, 1, "a", st.S_IFLNK | 0o777, 0, 0, 0),
    lambda: Create(2, 1, "a", st.S_IFREG | 0o10000, 0, 0, 0),
    lambda: Create(2, 1, "a", st.S_IFREG, -1, 0, 0),
    lambda: Create(2, 1, "a", st.S_IFREG, 0, 2**32, 0),
    lambda: Create(2, 1, "a", st.S_IFREG, 0, 0, 2**63),
    lambda: Create(2, 1, "a", st.S_IFREG, 0, 0, 1.5),
    lambda: Link(2, 1, "a", None),
    lambda: Unlink(1, "a", 0, 1),
    lambda: Unlink(1, "a", 0, None),
    lambda: Rename(1, "a", 1, "..", 0, False),
    lambda: Rename(1, "a", 0, "b", 0, False),
    lambda: SetAttr(2, 0o10000, None, None, None, None, None),
    lambda: SetAttr(2, st.S_IFREG | 0o644, None, None, None, None, None),
    lambda: SetAttr(2, None, "0", None, None, None, None),
    lambda: SetAttr(2, None, None, None, None, -(2**63) - 1, None),
    lambda: SetAttr(2, None, None, None, None, None, False),
    lambda: SetExtents(2, [0], [], None, None),
    lambda: SetExtents(2, [0, -2], [], None, None),
    lambda: SetExtents(2, [-1, 1], [], None, None),
    lambda: SetExtents(2, (0, 1), [], None, None),
    lambda: SetExtents(2, [], [0, 0, 1, 0], None, None),
    lambda: SetExtents(2, [], [0, 1, 1, 4], None, None),
    lambda: SetExtents(2, [], [0, 1, 1, True], None, None),
    lambda: SetExtents(2, [], [0, 1, 1], None, None),
    lambda: SetExtents(2, [], [0, 1, -1, 0], None, None),
    lambda: SetExtents(2, [], [0, 1, 1, 0, 4, 1, 1.0, 0], None, None),
    lambda: SetExtents(2, [], [0, 1, 1, 0, 4, 0, 9, 0], None, None),
    lambda: SetExtents(2, [], [0, 1, 1, 0, 4, 1, 9, 8], None, None),
    lambda: SetExtents(2, [0, 1, 2, 1, 3, None], [], None, None),
    lambda: SetExtents(2, [], [], -1, None),
    lambda: SetExtents(2, [], [], (1 << 62) + 1, None),
    lambda: SetExtents(2, [], [], 1.0, None),
    lambda: SetExtents(2, [], [], None, "now"),
    lambda: Reclaim(-3),
    lambda: Reclaim("3"),
    lambda: Batch([]),
    lambda: Batch([[Batch.CODE, [[Reclaim.CODE, 2]]]]),
    lambda: Batch([[99, 2]]),
    lambda: Batch([[Reclaim.CODE]]),
    lambda: Batch([[Reclaim.CODE, 2.0]]),
    lambda: Batch([(Reclaim.CODE, 2)]),
    lambda: Batch(((Reclaim.CODE, 2),)),
])
def test_records_refuse_fields_of_the_wrong_type_or_range(build: object) -> None:
    """Wrong types when built; bad names and anything out of range by validate() (what the decoder runs)."""
    with pytest.raises((TypeError, ValueError)) as info:
        build().validate()  # type: ignore[operator]
    assert ".items" in str(info.value) or " must be " in str(info.value) or "argument" in str(info.value)


@pytest.mark.parametrize("build", [
    lambda: Create(True, 1, "a", st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1.0, "a", st.S_IFREG, 0, 0, 0),
    lambda: Create(2, 1, "a", st.S_IFREG, 0, 0, None),
    lambda: Create(2, 1, b"a", st.S_IFREG, 0, 0, 0),
    lambda: Link(2, 1, None, 0),
    lambda: Unlink(1, "a", 0, 1),
    lambda: Rename(1, "a", 1, ["b"], 0, False),
    lambda: SetAttr(2, None, "0", None, None, None, None),
    lambda: SetAttr(2, None, None, None, None, None, False),
    lambda: SetExtents(2, (0, 1), [], None, None),
    lambda: SetExtents(2, [], [0, 1, 1], None, None),
    lambda: SetExtents(2, [], [0, 1, 1, True], None, None),
    lambda: SetExtents(2, [], [0, 1, 1, 0, 4, 1, 1.0, 0], None, None),
    lambda: SetExtents(2, [], [], 1.0, None),
    lambda: Reclaim("3"),
    lambda: Batch([]),
    lambda: Batch([[Batch.CODE, [[Reclaim.CODE, 2]]]]),
    lambda: Batch([[Reclaim.CODE, 2.0]]),
])
def test_records_refuse_wrong_types_when_built(build: object) -> None:
    """A slip in the volume (a float, a bool, None, a tuple, bytes for a str) fails before the log."""
    with pytest.raises((TypeError, ValueError)):
        build()  # type: ignore[operator]


def test_record_errors_name_the_field_and_type() -> None:
    with pytest.raises(TypeError, match=r"Create\.time_ns must be .* not float 1\.5"):
        Create(2, 1, "a", st.S_IFREG, 0, 0, 1.5)
    with pytest.raises(ValueError, match=r"Create\.name must be .* not str '\.\.'"):
        Create(2, 1, "..", st.S_IFREG, 0, 0, 0).validate()
    with pytest.raises(TypeError, match=r"Unlink\.reclaim must be a bool, not int 1"):
        Unlink(1, "a", 0, 1)
    with pytest.raises(ValueError, match=r"SetExtents\.map"):
        SetExtents(2, [], [0, 1, 1, 4], None, None).validate()
    with pytest.raises(ValueError, match=r"Create\.ino must be .* not int 0"):
        Create.checked(0, 1, "a", st.S_IFREG, 0, 0, 0)
    with pytest.raises(ValueError, match=r"Batch\.items: item 0 is a Batch"):
        Batch([[Batch.CODE, [[Reclaim.CODE, 2]]]])


def test_a_batch_checks_the_values_of_its_items_too() -> None:
    """Construction checks an item's types; validate(), which the decoder runs, its values."""
    batch = Batch.of(SetAttr(2, None, None, None, None, None, None), Reclaim(0))     # Reclaim(0) is well typed
    with pytest.raises(ValueError, match=r"^Batch\.items: item 1: Reclaim\.ino must be "):
        batch.validate()
    with pytest.raises(BadRecordError, match=r"Batch\.items: item 1"):
        decode_record(encode_record(batch, 7, 3), 0, 7, 3)


@pytest.mark.parametrize("items, error", [
    ("x", "must be a non-empty list, not str 'x'"),
    ([5], "item 0 must be a non-empty list [CODE, *fields], not int 5"),
    ([[99, 2]], "item 0 has unknown record type int 99"),
    ([[True, 2, 1, "a", st.S_IFREG, 0, 0, 0]], "item 0 has unknown record type bool True"),     # not Create's 1
    ([[1.0, 2, 1, "a", st.S_IFREG, 0, 0, 0]], "item 0 has unknown record type float 1.0"),
    ([[[1], 2]], "item 0 has unknown record type list [1]"),
])
def test_a_batch_item_needs_an_int_code_of_a_known_record(items: object, error: str) -> None:
    with pytest.raises(ValueError) as info:
        Batch(items)  # type: ignore[arg-type]
    assert str(info.value) == f"Batch.items: {error}"


@pytest.mark.parametrize("build, field", [
    (lambda: SetExtents(2, [0, None], [], None, None), "unmap"),                 # a list, but not of ints
    (lambda: SetExtents(2, [0, 1, 2], [], None, None), "unmap"),                 # not whole [fblk, nblk] pairs
    (lambda: SetExtents(2, [], [0, 1, 1, 0, 4, 1.0, 9, 0], None, None), "map"),
    (lambda: SetExtents(2, [], [0, 1, 1, 0, 4, 1], None, None), "map"),          # not whole runs of four
    (lambda: SetExtents(2, [0, 1], [0, 1, 1, 0, 4, 1, 9, 0], None, "now"), "time_ns"),   # lists fine: the time
    (lambda: SetExtents(2, [0, 1, 5, -1], [0, 1, 1, 0], 1.0, None), "size"),
])
def test_a_block_map_of_the_wrong_shape_is_a_type_error_naming_its_field(build: object, field: str) -> None:
    """A list of the wrong arity or element type is a wrong type (TypeError), not a bad value,
    and a well-formed list beside a wrong field is not blamed for it."""
    with pytest.raises(TypeError, match=rf"^SetExtents\.{field} must be "):
        build()  # type: ignore[operator]


def test_a_create_node_error_names_the_field_that_is_wrong() -> None:
    link, fifo = st.S_IFLNK | 0o777, st.S_IFIFO | 0o644
    with pytest.raises(ValueError, match=r"^CreateNode\.target must be a symlink target for mode 0o120777, "
                                         r"not str ''$"):
        CreateNode(2, 1, "a", link, 0, 0, 0, 0, "").validate()
    with pytest.raises(ValueError, match=r"^CreateNode\.target must be empty for mode 0o10644, not str 't'$"):
        CreateNode(2, 1, "a", fifo, 0, 0, 0, 0, "t").validate()
    with pytest.raises(ValueError, match=r"^CreateNode\.rdev must be 0 for a symlink, not 5$"):
        CreateNode(2, 1, "a", link, 0, 0, 0, 5, "t").validate()
    # the target fits the mode: the field that is wrong is named, not the target
    with pytest.raises(ValueError, match=r"^CreateNode\.ino must be "):
        CreateNode(0, 1, "a", link, 0, 0, 0, 0, "t").validate()
    with pytest.raises(ValueError, match=r"^CreateNode\.uid must be "):
        CreateNode(2, 1, "a", fifo, -1, 0, 0, 0, "").validate()
    with pytest.raises(ValueError, match=r"^CreateNode\.mode must be "):
        CreateNode(2, 1, "a", st.S_IFREG | 0o644, 0, 0, 0, 0, "").validate()


def test_a_value_in_an_error_is_shown_whole_up_to_80_characters_then_cut() -> None:
    for length, shown in ((78, None), (79, 77)):      # repr adds two quotes: 80 and 81 characters
        name = "/" + "x" * (length - 1)
        with pytest.raises(ValueError) as info:
            Create(2, 1, name, st.S_IFREG, 0, 0, 0).validate()
        text = repr(name) if shown is None else repr(name)[:shown] + "..."
        assert str(info.value).endswith(f", not str {text}"), (length, str(info.value))


def test_replace_and_make_check_too() -> None:
    record = SetExtents(2, [], [0, 1, 1, 0], 10, 5)
    assert record._replace(unmap=[0, -1]) == SetExtents(2, [0, -1], [0, 1, 1, 0], 10, 5)
    assert type(record._replace(size=None)) is SetExtents
    with pytest.raises(TypeError):
        record._replace(size=-1.0)
    with pytest.raises(ValueError):
        record._replace(size=-1).validate()
    with pytest.raises(TypeError):
        SetExtents._make([2, [], [0, 1, 1, 0], 10, 5.0])


def test_records_accept_the_edges_of_their_ranges() -> None:
    Create(2**63 - 1, 1, "x" * 255, st.S_IFDIR | 0o7777, 2**32 - 1, 0, -(2**63)).validate()
    Create(2, 1, "\u00e9" * 127, st.S_IFREG, 0, 0, 2**63 - 1).validate()      # 254 bytes of UTF-8
    Create(2, 1, "caf\udce9", st.S_IFREG, 0, 0, 0).validate()                  # an undecodable byte, escaped
    SetExtents(2, [0, -1, 5, 0], [0, 1, 0, 3, 7, 2, 9, 1], 1 << 62, None).validate()   # nblk 0 unmaps nothing
    SetAttr(2, 0, 0, 0, 0, 0, 0).validate()
    big = [x for i in range(500) for x in (2 * i, 1, 3 * i, i % 2)]
    assert SetExtents(2, [], big, None, None).validate().map == big
    Batch.of(Reclaim(2), SetAttr(3, None, None, None, None, None, None)).validate()


# ---------------------------------------------------------------------------- field edges
# Every numeric field of every record, at each end of its range (accepted) and one past it
# (ValueError naming the field): what the log decoder refuses must be exactly what the
# format cannot hold, off by one in neither direction.

_EDGES = {
    "ino": (1, INO_MAX), "id": (0, ID_MAX), "time": (TIME_MIN, TIME_MAX), "rdev": (0, RDEV_MAX),
    "perm?": (0, PERM_BITS), "id?": (0, ID_MAX), "time?": (TIME_MIN, TIME_MAX), "size?": (0, MAX_FILE_SIZE),
    "blk": (0, MAX_BLOCKS), "count": (1, MAX_BLOCKS), "page": (0, MAX_FILE_SIZE),
    "pages": (PAGE, MAX_FILE_SIZE),
}
_STEP = {"page": PAGE, "pages": PAGE}
_BASES = [
    Create(2, 1, "a", st.S_IFREG | 0o644, 0, 0, 0),
    CreateNode(2, 1, "a", st.S_IFCHR | 0o644, 0, 0, 0, 5, ""),
    Link(2, 1, "a", 0),
    Unlink(1, "a", 0, False),
    Rename(1, "a", 1, "b", 0, False),
    SetAttr(2, 0o644, 0, 0, 0, 0, 0),
    SetExtents(2, [], [], 0, 0),
    Reclaim(2),
    Quarantine(0, 1),
    ClearQuarantine(0, 1),
    BadMetadata(0, PAGE, True),
]


def _edge_cases() -> list[tuple[object, bool]]:
    cases = []
    for base in _BASES:
        for i, kind in enumerate(type(base)._KINDS):
            if kind not in _EDGES:
                continue
            low, high = _EDGES[kind]
            step = _STEP.get(kind, 1)
            for value, ok in ((low, True), (high, True), (low - step, False), (high + step, False)):
                cases.append((type(base)(*base[:i], value, *base[i + 1:]), ok))
    return cases


@pytest.mark.parametrize("record, ok", _edge_cases(), ids=str)
def test_every_numeric_field_is_checked_at_both_ends_of_its_range(record: object, ok: bool) -> None:
    if ok:
        assert record.validate() is record  # type: ignore[attr-defined]
        return
    with pytest.raises(ValueError) as info:
        record.validate()  # type: ignore[attr-defined]
    assert str(info.value).startswith(f"{type(record).__name__}."), info.value


@pytest.mark.parametrize("base", _BASES, ids=lambda b: type(b).__name__)
@pytest.mark.parametrize("end", [0, 1], ids=["low", "high"])
def test_a_field_at_an_end_of_its_range_is_not_blamed_for_another(base: object, end: int) -> None:
    """Every numeric field at the same end of its range, the last one a step past it: the
    error names the last one (the message says which field is wrong; a bound off by one in
    the per-field checks would name an earlier field that is fine)."""
    kinds = type(base)._KINDS  # type: ignore[attr-defined]
    at = [i for i, kind in enumerate(kinds) if kind in _EDGES]
    values = list(base)  # type: ignore[call-overload]
    for i in at:
        values[i] = _EDGES[kinds[i]][end]
    last = at[-1]
    step = _STEP.get(kinds[last], 1)
    values[last] += step if end else -step
    field = type(base)._fields[last]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=rf"^{type(base).__name__}\.{field} must be "):
        type(base)(*values).validate()  # type: ignore[operator]


_M = MAX_BLOCKS


@pytest.mark.parametrize("unmap, ok", [
    ([0, 0], True), ([_M, _M], True), ([0, -1], True), ([_M + 1, 0], False), ([0, _M + 1], False),
    ([-1, 0], False), ([0, -2], False),
    # two runs take the other path: the same bounds on every run
    ([5, 1, 0, 0], True), ([5, 1, _M, _M], True), ([5, 1, 0, -1], True), ([0, -1, 5, 1], True),
    ([5, 1, _M + 1, 0], False), ([5, 1, 0, _M + 1], False), ([5, 1, -1, 0], False), ([5, 1, 0, -2], False),
    ([_M + 1, 1, 5, 1], False), ([5, -2, 5, 1], False), ([5, 1, 5], False), ([5, 1, 5, 1, 5, 1], True),
])
def test_unmap_runs_are_checked_at_their_edges(unmap: list[int], ok: bool) -> None:
    assert valid_unmap(unmap) is ok


@pytest.mark.parametrize("runs, ok", [
    ([0, 1, 0, 0], True), ([_M, _M, _M, MAP_FLAGS], True), ([0, 0, 0, 0], False), ([_M + 1, 1, 0, 0], False),
    ([0, _M + 1, 0, 0], False), ([0, 1, _M + 1, 0], False), ([0, 1, 0, MAP_FLAGS + 1], False),
    ([-1, 1, 0, 0], False), ([0, 1, -1, 0], False), ([0, 1, 0, -1], False),
    ([9, 1, 9, 0, 0, 1, 0, 0], True), ([9, 1, 9, 0, _M, _M, _M, MAP_FLAGS], True),
    ([9, 1, 9, 0, 0, 0, 0, 0], False), ([9, 1, 9, 0, _M + 1, 1, 0, 0], False),
    ([9, 1, 9, 0, 0, _M + 1, 0, 0], False), ([9, 1, 9, 0, 0, 1, _M + 1, 0], False),
    ([9, 1, 9, 0, 0, 1, 0, MAP_FLAGS + 1], False), ([9, 1, 9, 0, -1, 1, 0, 0], False),
    ([9, 1, 9, 0, 0, 1, -1, 0], False), ([9, 1, 9, 0, 0, 1, 0, -1], False),
    ([0, 0, 9, 0, 9, 1, 9, 0], False), ([9, 1, 9, MAP_FLAGS + 1, 0, 1, 0, 0], False),
    ([9, 1, 9, 0, 0, 1], False),
])
def test_map_runs_are_checked_at_their_edges(runs: list[int], ok: bool) -> None:
    assert valid_map(runs) is ok


@pytest.mark.parametrize("check", [valid_unmap, valid_map])
@pytest.mark.parametrize("value", [(0, 1, 2, 0), None, "0120", {0: 1}])
def test_block_map_checks_refuse_what_is_not_a_list(check: Callable[[object], bool], value: object) -> None:
    assert check(value) is False


@pytest.mark.parametrize("target, ok", [
    ("x", True), ("x" * 4095, True), ("\u00e9" * 2047 + "x", True), ("caf\udce9", True),
    ("", False), ("x" * 4096, False), ("\u00e9" * 2048, False),    # 4096 bytes of UTF-8
    ("a\0b", False), ("\0", False), ("\ud800", False), ("a\udfff", False),   # NUL; a lone surrogate
    (b"x", False), (None, False),
])
def test_symlink_targets_are_checked_at_their_edges(target: object, ok: bool) -> None:
    assert valid_target(target) is ok
    mode = st.S_IFLNK | 0o777
    if type(target) is str and target:
        record = CreateNode(2, 1, "a", mode, 0, 0, 0, 0, target)
        if ok:
            assert record.validate() is record
        else:
            with pytest.raises(ValueError, match=r"^CreateNode\.target must be "):
                record.validate()


@pytest.mark.parametrize("state", [
    [2, [[1, st.S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, None, ["a", 2]],
         [2, st.S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, None, ["b", 3]],
         [3, st.S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, None, ["c", 2]]]],      # a directory with two parents
    [3, [[1, st.S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, None, ["a", 2, "b", 3]],
         [2, st.S_IFREG | 0o644, 0, 0, 0, 0, 0, 0, [0, 4, 0, 0], None],
         [3, st.S_IFREG | 0o644, 0, 0, 0, 0, 0, 0, [0, 4, 62, 0], None]]],  # blocks past the data area
    [2, [[1, st.S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, None, ["a", 9]]]],     # entry to a missing inode
    [2, [[2, st.S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, None, []]]],           # no root
    "not a state",
    [2, [[1, 2, 3]]],
], ids=["two-parents", "past-the-end", "dangling-entry", "no-root", "garbage", "short-row"])
def test_from_checkpoint_refuses_inconsistent_states(state: object) -> None:
    with pytest.raises(CorruptVolumeError):
        Core.from_checkpoint(state, BS, 64)


def test_from_checkpoint_counts_blocks_shared_by_two_files() -> None:
    """Reflinked files own the same blocks: the reverse map holds both, free space counts them once."""
    state = [4, [[1, st.S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, None, ["a", 2, "b", 3]],
                 [2, st.S_IFREG | 0o644, 0, 0, 4 * BS, 0, 0, 0, [0, 4, 0, 0], None],
                 [3, st.S_IFREG | 0o644, 0, 0, 4 * BS, 0, 0, 0, [0, 4, 2, 0], None]]]
    core = Core.from_checkpoint(state, BS, 64)
    assert core.rmap.shared_blocks == 2                  # blocks 2 and 3
    assert core.space.free == 64 - 6
    assert sorted(o[0] for o in core.rmap.owners(2, 1)) == [2, 3]
    assert check(core) == []


# ---------------------------------------------------------------------------- codecs

# Records refuse fields out of their range, so the strategies draw inside it.
names = hs.one_of(hs.text(min_size=1, max_size=40).filter(valid_name),
                  hs.sampled_from(["caf\udce9", "a b", "\u00e9t\u00e9", "x" * 255]))
times = hs.integers(-2**63, 2**63 - 1)
inos = hs.integers(1, 2**63 - 1)
ids = hs.integers(0, 2**32 - 1)
small = hs.integers(0, 2**32)
modes = hs.builds(lambda kind, perm: kind | perm, hs.sampled_from([st.S_IFREG, st.S_IFDIR]), hs.integers(0, 0o7777))
opt = lambda s: hs.one_of(hs.none(), s)  # noqa: E731
runs = hs.tuples(small, hs.integers(1, 2**32), small, hs.integers(0, 3))
flat_runs = hs.lists(runs, max_size=4).map(lambda rs: [x for r in rs for x in r])
flat_unmap = hs.lists(hs.tuples(small, hs.integers(-1, 2**32)), max_size=4).map(lambda rs: [x for r in rs for x in r])

records = hs.one_of(
    hs.builds(Create, inos, inos, names, modes, ids, ids, times),
    hs.builds(Link, inos, inos, names, times),
    hs.builds(Unlink, inos, names, times, hs.booleans()),
    hs.builds(Rename, inos, names, inos, names, times, hs.booleans()),
    hs.builds(SetAttr, inos, opt(hs.integers(0, 0o7777)), opt(ids), opt(ids), opt(times), opt(times), opt(times)),
    hs.builds(SetExtents, inos, flat_unmap, flat_runs, opt(hs.integers(0, 1 << 62)), opt(times)),
    hs.builds(Reclaim, inos),
    hs.builds(lambda a, b: Batch.of(a, b), hs.builds(Reclaim, inos),
              hs.builds(SetAttr, inos, opt(hs.integers(0, 0o7777)), opt(ids), opt(ids), opt(times), opt(times),
                        opt(times))),
    hs.builds(Quarantine, small, hs.integers(1, 2**32)),
    hs.builds(ClearQuarantine, small, hs.integers(1, 2**32)),
    hs.builds(BadMetadata, small.map(lambda x: x * 4096), hs.integers(1, 2**20).map(lambda x: x * 4096), hs.booleans()),
    hs.builds(CreateNode, inos, inos, names, hs.integers(0, 0o7777).map(lambda p: st.S_IFLNK | p), ids, ids, times,
              hs.just(0), hs.text(min_size=1, max_size=60).filter(valid_target)),
    hs.builds(CreateNode, inos, inos, names,
              hs.builds(lambda kind, perm: kind | perm, hs.sampled_from([st.S_IFIFO, st.S_IFSOCK, st.S_IFCHR,
                                                                           st.S_IFBLK]), hs.integers(0, 0o7777)),
              ids, ids, times, hs.integers(0, 2**64 - 1), hs.just("")),
)


def test_every_record_type_is_covered() -> None:
    assert set(RECORD_TYPES.values()) == {Create, Link, Unlink, Rename, SetAttr, SetExtents, Reclaim, Batch,
                                          Quarantine, ClearQuarantine, BadMetadata, CreateNode}


@settings(max_examples=200, deadline=None)
@given(record=records, vid=hs.integers(0, 2**64 - 1), seq=hs.integers(0, 2**64 - 1),
       lead=hs.integers(0, 3).map(lambda k: k * 8))
def test_record_round_trip(record: object, vid: int, seq: int, lead: int) -> None:
    raw = encode_record(record, vid, seq)  # type: ignore[arg-type]
    assert len(raw) % 8 == 0
    buf = b"\xaa" * lead + raw + b"\x55" * 16
    got = decode_record(buf, lead, vid, seq)
    assert got == (record, len(raw))
    assert type(got[0]) is type(record)  # type: ignore[index]
    # the wrong sequence or volume id is not this record
    assert decode_record(buf, lead, vid, (seq + 1) % 2**64) is None
    assert decode_record(buf, lead, (vid + 1) % 2**64, seq) is None
    # a record cut short is not a record
    assert decode_record(raw[:-8 if len(raw) > RECORD_HEADER.size else -1], 0, vid, seq) is None


def test_pad_record_decodes_as_none() -> None:
    raw = encode_pad(7, 3)
    assert decode_record(raw, 0, 7, 3) == (None, len(raw))


def flipped(raw: bytes, i: int, bit: int = 0x01) -> bytes:
    b = bytearray(raw)
    b[i] ^= bit
    return bytes(b)


@settings(max_examples=40, deadline=None)
@given(record=records, bit=hs.sampled_from([0x01, 0x80, 0xff]))
def test_record_with_any_flipped_byte_is_not_decoded(record: object, bit: int) -> None:
    raw = encode_record(record, 42, 9)  # type: ignore[arg-type]
    body_len = RECORD_HEADER.unpack_from(raw, 0)[-1]
    framed = RECORD_HEADER.size + body_len
    for i in range(len(raw)):
        got = decode_record(flipped(raw, i, bit), 0, 42, 9)
        if i < framed:
            assert got is None, f"byte {i} flipped and the record still decodes"
        else:   # alignment padding past the body carries nothing
            assert got == (record, len(raw))


@settings(max_examples=300, deadline=None)
@given(junk=hs.binary(max_size=200), seq=hs.integers(0, 3))
def test_decode_record_of_garbage_never_raises_another_error(junk: bytes, seq: int) -> None:
    for buf in (junk, b"DXLR" + junk):
        try:
            got = decode_record(buf, 0, 0, seq)
        except CorruptVolumeError:
            continue
        assert got is None or isinstance(got, tuple)


def sample_superblock(generation: int = 5) -> Superblock:
    return Superblock(uuid.UUID(int=0x1234_5678_9ABC_DEF0_1122_3344_5566_7788),
                      Layout.compute(64 << 20, 4096), generation)


def test_superblock_round_trip() -> None:
    for pool_size, bs in [(1 << 20, 4096), (64 << 20, 4096), (256 << 20, 65536)]:
        sb = Superblock(uuid.uuid4(), Layout.compute(pool_size, bs), 77)
        raw = sb.encode()
        assert len(raw) == SUPERBLOCK_BYTES
        assert decode_superblock(raw + bytes(4096 - len(raw)), 0) == sb


def test_superblock_with_any_flipped_byte_is_corrupt() -> None:
    raw = sample_superblock().encode()
    for i in range(len(raw)):
        for bit in (0x01, 0x80):
            with pytest.raises(CorruptVolumeError):
                decode_superblock(flipped(raw, i, bit), 4096)


@settings(max_examples=200, deadline=None)
@given(junk=hs.binary(max_size=SUPERBLOCK_BYTES + 8))
def test_decode_superblock_of_garbage_raises_only_corruption(junk: bytes) -> None:
    for raw in (junk, b"DAXFS\x00SB" + junk):
        with pytest.raises(CorruptVolumeError):
            decode_superblock(raw, 0)


def sample_core_state() -> tuple[object, dict[int, tuple]]:
    """A checkpoint state from a real workload, and the live inodes it was taken from."""
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    for op in Workload(3, checkpoints=False).ops(40):
        op.apply(vol)
    vol.mkdir("caf\udce9")
    state = vol._core.to_checkpoint()
    live = inode_table(vol._core)
    vol.close()
    return state, live


def test_checkpoint_round_trip() -> None:
    state, live = sample_core_state()
    raw = encode_checkpoint(state, 9, 123, 4567)
    got = decode_checkpoint(raw + bytes(100), 0)
    assert got == Checkpoint(9, 123, 4567, state)
    core = Core.from_checkpoint(got.state, BS, 4 << 20 // BS)
    assert inode_table(core) == live                  # the live inodes, not the state with itself
    assert any(row[4] != row[5] for row in live.values()), "no inode had atime != mtime to tell apart"


def test_checkpoint_with_any_flipped_byte_is_corrupt() -> None:
    """Every byte of a checkpoint is protected: a flip is CorruptVolumeError, or (for
    the reserved header padding only) decodes to exactly the same checkpoint.  A flip
    in ``generation``, ``last_seq`` or ``log_pos`` that went unnoticed would make mount
    replay the wrong part of the log (see
    test_volume.py::test_flipped_checkpoint_last_seq_is_not_silent).
    """
    state = [2, [[1, st.S_IFDIR | 0o755, 0, 0, 0, 1, 1, 1, None, []]]]
    raw = encode_checkpoint(state, 3, 10, 2048)
    original = decode_checkpoint(raw, 0)
    undetected = []
    for i in range(len(raw)):
        try:
            got = decode_checkpoint(flipped(raw, i), 0)
        except CorruptVolumeError:
            continue
        if got != original:
            undetected.append(i)
    assert undetected == [], f"flips at header bytes {undetected} decode to a different checkpoint"


@settings(max_examples=200, deadline=None)
@given(junk=hs.binary(max_size=120))
def test_decode_checkpoint_of_garbage_raises_only_corruption(junk: bytes) -> None:
    for raw in (junk, b"DAXFSCKP" + junk):
        with pytest.raises(CorruptVolumeError):
            decode_checkpoint(raw, 0)
    # a valid frame around a body that is not msgpack
    import zlib
    body = b"\xc1" + junk
    framed = CKPT_HEADER.pack(b"DAXFSCKP", zlib.crc32(body), 1, 0, 0, len(body)) + body
    with pytest.raises(CorruptVolumeError):
        decode_checkpoint(framed, 0)


@pytest.mark.parametrize("seed", range(30))
def test_owner_map_build_equals_adding_every_run(seed: int) -> None:
    """The one-pass build of disjoint runs (and its fallback once runs share blocks) gives
    the map that adding the runs one by one gives: same runs, same merges, same counts."""
    rng = random.Random(seed)
    owned = []
    pblk = 0
    for _ in range(rng.randrange(1, 40)):
        pblk += rng.choice([0, 0, 1, 5])
        n = rng.randrange(1, 6)
        ino = rng.choice([2, 3, 4])
        owned.append((pblk, n, ino, rng.choice([0, pblk, pblk + 3])))
        pblk += n
        if seed % 3 == 0 and rng.random() < 0.2:        # a reflinked run: blocks owned twice
            owned.append((pblk - n, n, ino + 10, 0))
    rng.shuffle(owned)
    one_by_one = OwnerMap()
    for run in sorted(owned):
        one_by_one.add(*run)
    built = OwnerMap.build(owned)
    assert built.runs() == one_by_one.runs()
    assert built.shared_blocks == one_by_one.shared_blocks


@pytest.mark.parametrize("order", [[1, 2, 3, 2], [1, 3, 2, 3], [3, 1, 2, 1], [1, 4, 4]])
def test_from_checkpoint_refuses_an_inode_stored_twice_in_any_order(order: list[int]) -> None:
    rows = {1: [1, st.S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, None, ["a", 2, "b", 3, "c", 4]],
            2: [2, st.S_IFREG | 0o644, 0, 0, 0, 0, 0, 0, [], None],
            3: [3, st.S_IFREG | 0o644, 0, 0, 0, 0, 0, 0, [], None],
            4: [4, st.S_IFLNK | 0o777, 0, 0, 1, 0, 0, 0, None, None, "a"]}
    with pytest.raises(CorruptVolumeError, match="stored twice"):
        Core.from_checkpoint([5, [rows[i] for i in order]], BS, 64)


def test_from_checkpoint_puts_inodes_in_number_order() -> None:
    """Rows stored out of order (not as daxfs writes them) load in inode order, which the
    checkpoint writer relies on."""
    state = [5, [[3, st.S_IFREG | 0o644, 0, 0, 0, 0, 0, 0, [], None],
                 [1, st.S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, None, ["a", 2, "b", 3, "c", 4]],
                 [4, st.S_IFLNK | 0o777, 0, 0, 1, 0, 0, 0, None, None, "a"],
                 [2, st.S_IFREG | 0o644, 0, 0, 0, 0, 0, 0, [], None]]]
    assert list(Core.from_checkpoint(state, BS, 64).inodes) == [1, 2, 3, 4]


def _linked_core() -> Core:
    """Directories two deep, a file with three names in two directories, a symlink with
    two, a FIFO, an orphan (its last name gone, reclaim left for later) and plain files."""
    core = fresh_core(256)
    core.apply(Create(2, ROOT_INO, "d", st.S_IFDIR | 0o755, 0, 0, 1))
    core.apply(Create(3, 2, "e", st.S_IFDIR | 0o755, 0, 0, 1))
    core.apply(Create(4, 3, "f", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(4, [], [0, 2, 9, 0], 2 * BS, 2))
    core.apply(Link(4, ROOT_INO, "f2", 3))
    core.apply(Link(4, 3, "f3", 3))
    core.apply(CreateNode(5, 2, "l", st.S_IFLNK | 0o777, 0, 0, 1, 0, "e/f"))
    core.apply(Link(5, ROOT_INO, "l2", 3))
    core.apply(CreateNode(6, 2, "p", st.S_IFIFO | 0o644, 0, 0, 1, 0, ""))
    core.apply(Create(7, ROOT_INO, "gone", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(Unlink(ROOT_INO, "gone", 4, False))
    core.apply(Create(8, 2, "g", st.S_IFDIR | 0o700, 0, 0, 1))
    for ino in range(9, 13):
        core.apply(Create(ino, 8, f"n{ino}", st.S_IFREG | 0o600, 0, 0, 1))
    return core


@pytest.mark.parametrize("streamed", [False, True])
def test_mount_counts_links_parents_and_orphans_as_the_records_made_them(streamed: bool) -> None:
    """Mount derives link counts and parents from the entries (counted in bulk): a name
    each for most files, three for a hard-linked file, two for a linked symlink, none for an
    orphan; two for a directory and one more per directory in it."""
    core = _linked_core()
    raw = encode_checkpoint(core.to_checkpoint(), 7, 99, 4096)
    state = (decode_checkpoint_streamed if streamed else decode_checkpoint)(raw, 0).state
    back = Core.from_checkpoint(state, BS, 256)
    assert inode_table(back) == inode_table(core)
    links = {ino: node.nlink for ino, node in back.inodes.items()}
    assert links == {1: 3, 2: 4, 3: 2, 4: 3, 5: 2, 6: 1, 7: 0, 8: 2, 9: 1, 10: 1, 11: 1, 12: 1}
    assert {ino: back.inodes[ino].parent for ino in (1, 2, 3, 8)} == {1: 1, 2: 1, 3: 2, 8: 2}
    assert back.orphans() == [7] == core.orphans()


@pytest.mark.parametrize("chunk", [False, True])
def test_orphans_are_every_inode_without_a_name_in_inode_order(chunk: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``orphans()`` (asked at every mount) over a dict of inodes and over a chunked one."""
    if chunk:
        monkeypatch.setattr(chunked, "CHUNK_BITS", 2)
        monkeypatch.setattr(chunked, "CHUNKED_FROM", 4)
    core = fresh_core(64)
    for ino in range(2, 20):
        core.apply(Create(ino, ROOT_INO, f"f{ino}", st.S_IFREG | 0o644, 0, 0, 1))
    for ino in (3, 4, 11, 19):
        core.apply(Unlink(ROOT_INO, f"f{ino}", 2, False))
    assert type(core.inodes) is (chunked.ChunkedTable if chunk else dict)
    assert core.orphans() == [3, 4, 11, 19]
    core.apply(Link(11, ROOT_INO, "again", 3))         # an orphan given a name again
    core.apply(Reclaim(4))
    core.apply(Rename(ROOT_INO, "f5", ROOT_INO, "f6", 4, False))    # over f6: no name left
    assert core.orphans() == [3, 6, 19]
    assert check(core, referenced=[3, 6, 19]) == []
    core.unnamed.add(12)
    assert any("without a name" in p for p in check(core, referenced=[3, 6, 19]))


def test_batch_of_made_records_keeps_them_and_refuses_what_a_batch_may_not_hold() -> None:
    create = Create(5, ROOT_INO, "f", st.S_IFREG | 0o644, 0, 0, 1)
    share = SetExtents(5, [], [0, 3, 7, SHARE, 4, 1, 20, SHARE], None, 2)
    batch = Batch.of(create, share)
    assert batch.items == [[Create.CODE, *create], [SetExtents.CODE, *share]]
    assert batch.records() == [create, share]
    assert [type(r) for r in batch.records()] == [Create, SetExtents]
    assert Batch(batch.items).records() == batch.records()
    with pytest.raises(ValueError, match="may not nest"):
        Batch.of(create, batch)
    with pytest.raises(ValueError, match="non-empty"):
        Batch.of()
    with pytest.raises(ValueError, match="unknown record type"):
        Batch.of(create, (5, [], [], None, None))   # type: ignore[arg-type]  # a tuple, not a record


def test_files_without_blocks_share_one_map_that_never_changes() -> None:
    """Every regular file without blocks (new, or loaded by mount) holds ``NO_EXTENTS``;
    its first block-map change gives it a map of its own, and the shared one stays empty."""
    import pickle

    from daxfs.core.extents import NO_EXTENTS

    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(Create(3, ROOT_INO, "b", st.S_IFREG | 0o644, 0, 0, 1))
    assert core.inodes[2].extents is NO_EXTENTS is core.inodes[3].extents
    core.apply(SetExtents(2, [], [0, 2, 5, 0], 2 * BS, 2))
    assert core.inodes[2].extents is not NO_EXTENTS and list(core.inodes[2].extents) == [(0, 2, 5, 0)]
    assert core.inodes[3].extents is NO_EXTENTS and list(NO_EXTENTS) == [] and len(NO_EXTENTS) == 0
    copied = deepcopy(core)
    assert copied.inodes[3].extents is NO_EXTENTS
    copied.apply(SetExtents(3, [], [0, 1, 9, 0], BS, 3))
    assert list(copied.inodes[3].extents) == [(0, 1, 9, 0)] and core.inodes[3].extents is NO_EXTENTS
    assert pickle.loads(pickle.dumps(NO_EXTENTS)) is NO_EXTENTS
    for change in (lambda: NO_EXTENTS.insert(0, 1, 2, 0), lambda: NO_EXTENTS.remove(0, 1),
                   lambda: NO_EXTENTS.fill_sorted([0], [1], [2])):
        with pytest.raises(TypeError, match="never changes"):
            change()
    raw = encode_checkpoint(core.to_checkpoint(), 7, 99, 4096)
    back = Core.from_checkpoint(decode_checkpoint_streamed(raw, 0).state, BS, 64)
    assert back.inodes[3].extents is NO_EXTENTS and list(back.inodes[2].extents) == [(0, 2, 5, 0)]
    assert check(back) == []


def test_a_record_mapping_written_blocks_onto_themselves_changes_nothing() -> None:
    """File blocks mapped to the data blocks they already live in: given back and taken again
    in one record, they never pass through free space (the copy-on-write fast path declines
    such a record; the general loop keeps it a no-op)."""
    core = fresh_core()
    core.apply(Create(2, ROOT_INO, "a", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(SetExtents(2, [], [0, 4, 10, 0], 4 * BS, 2))
    free = core.space.free
    core.apply(SetExtents(2, [], [1, 2, 11, 0], None, 3))
    assert list(core.inodes[2].extents) == [(0, 4, 10, 0)] and core.space.free == free
    assert core.inodes[2].mtime_ns == 3 and check(core) == []
