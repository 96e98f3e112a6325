"""The quarantine in the core: records, apply, checkpoints, fsck (no I/O)."""

from __future__ import annotations

import random
import re
import stat as st

import pytest

from daxfs.core import Core, check
from daxfs.core.badblocks import BlockRuns, merge_runs
from daxfs.core.extents import SHARE, UNWRITTEN
from daxfs.core.records import BadMetadata, Batch, ClearQuarantine, Create, Quarantine, SetExtents
from daxfs.errors import CorruptVolumeError

BS = 4096


def _core() -> Core:
    core = Core.new(BS, 64, time_ns=0, uid=0, gid=0)
    core.apply(Create(2, 1, "a", st.S_IFREG | 0o644, 0, 0, 0))
    core.apply(SetExtents(2, [], [0, 4, 10, 0], 4 * BS, 0))
    core.apply(Create(3, 1, "b", st.S_IFREG | 0o644, 0, 0, 0))
    core.apply(SetExtents(3, [], [0, 4, 10, SHARE], 4 * BS, 0))      # b shares a's blocks
    return core


def test_records_check_types_at_construction_and_values_in_validate() -> None:
    for bad in ((1.0, 1), (1, True), ("1", 1)):
        with pytest.raises(TypeError):
            Quarantine(*bad)  # type: ignore[arg-type]
    for bad in ((-1, 1), (0, 0), (0, -3)):
        with pytest.raises(ValueError):
            Quarantine(*bad).validate()
        with pytest.raises(ValueError):
            ClearQuarantine(*bad).validate()
    with pytest.raises(TypeError):
        BadMetadata(0, BS, 1)  # type: ignore[arg-type]
    for bad in ((100, BS), (0, 100), (0, 0), (-BS, BS)):
        with pytest.raises(ValueError):
            BadMetadata(bad[0], bad[1], True).validate()
    assert Quarantine(3, 2).validate() == (3, 2)
    assert Batch.of(Quarantine(1, 1), BadMetadata(0, BS, True)).validate().records() == \
        [Quarantine(1, 1), BadMetadata(0, BS, True)]
    assert len({Quarantine.CODE, ClearQuarantine.CODE, BadMetadata.CODE} - {1, 2, 3, 4, 5, 6, 7, 8}) == 3


def test_block_runs() -> None:
    runs = BlockRuns()
    assert not runs and runs.add(5, 3) == [(5, 3)] and runs
    assert runs.add(6, 4) == [(8, 2)] and runs.runs() == [(5, 5)] and runs.total == 5
    assert runs.add(10, 1) == [(10, 1)] and runs.runs() == [(5, 6)]         # adjacent: merged
    runs.remove(7, 2)
    assert runs.runs() == [(5, 2), (9, 2)] and runs.total == 4
    assert runs.parts(0, 20) == [(5, 2), (9, 2)] and runs.outside(4, 8) == [(4, 1), (7, 2), (11, 1)]
    assert runs.overlaps(6, 1) and not runs.overlaps(7, 2)
    assert merge_runs([(0, 2), (5, 1)], [(1, 3), (9, 1)]) == [(0, 4), (5, 1), (9, 1)]


def _runs_of(blocks: set[int]) -> list[tuple[int, int]]:
    """The maximal runs of a set of blocks, in order (the model BlockRuns must match)."""
    out: list[tuple[int, int]] = []
    for b in sorted(blocks):
        if out and out[-1][0] + out[-1][1] == b:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((b, 1))
    return out


def test_block_runs_match_a_set_of_blocks() -> None:
    """Random adds and removes (touching, overlapping, inside, spanning, empty) on a small
    range against a plain set: the runs stay disjoint and merged, ``total`` counts the blocks,
    ``add`` returns exactly the blocks it added, and the queries agree with the set."""
    rng = random.Random(17)
    for _ in range(40):
        runs, model = BlockRuns(), set()
        for _ in range(60):
            start, n = rng.randrange(40), rng.choice((0, 1, 1, 2, 3, 5, 8, 13))
            span = set(range(start, start + n))
            if rng.random() < 0.55:
                assert runs.add(start, n) == _runs_of(span - model)
                model |= span
            else:
                runs.remove(start, n)
                model -= span
            assert runs.runs() == _runs_of(model) and runs.starts == sorted(runs)
            assert runs.total == len(model) and bool(runs) == bool(model)
            assert runs.to_flat() == [x for run in _runs_of(model) for x in run]
            qs, qn = rng.randrange(-2, 45), rng.randrange(0, 12)
            q = set(range(qs, qs + qn))
            assert runs.parts(qs, qn) == _runs_of(q & model), (runs.runs(), qs, qn)
            assert runs.outside(qs, qn) == _runs_of(q - model), (runs.runs(), qs, qn)
            if qn:      # (no caller asks about an empty range; inside a run that answers True)
                assert runs.overlaps(qs, qn) == bool(q & model), (runs.runs(), qs, qn)
        assert BlockRuns.of(runs.runs()).runs() == runs.runs()


def test_merge_runs_is_the_union() -> None:
    rng = random.Random(6)
    for _ in range(300):
        a = [(rng.randrange(30), rng.randrange(1, 6)) for _ in range(rng.randrange(4))]
        b = [(rng.randrange(30), rng.randrange(1, 6)) for _ in range(rng.randrange(4))]
        blocks = {x for s, n in a + b for x in range(s, s + n)}
        assert merge_runs(a, b) == _runs_of(blocks), (a, b)


def test_quarantine_inside_a_busy_run_keeps_the_rest_busy() -> None:
    """Blocks quarantined out of the middle of a busy run: the rest stays busy, counted, and
    is freed when the hold goes."""
    core = Core.new(BS, 64, time_ns=0, uid=0, gid=0)
    core.apply(Create(2, 1, "f", st.S_IFREG | 0o644, 0, 0, 0))
    core.apply(SetExtents(2, [], [0, 8, 10, 0], 8 * BS, 0))
    core.hold(10, 8)
    core.apply(SetExtents(2, [0, -1], [], 0, 0))            # truncated under the hold: busy
    free = core.space.free
    core.apply(Quarantine(13, 2))
    assert core.busy.runs() == [(10, 3), (15, 3)] and core.busy.blocks == 6 and check(core) == []
    core.unhold(10, 8)
    assert core.busy.blocks == 0 and core.space.free == free + 6 and check(core) == []

def test_quarantine_of_free_owned_and_busy_blocks() -> None:
    core = _core()
    free = core.space.free
    core.apply(Quarantine(40, 2))                       # free: out of free space at once
    assert core.space.free == free - 2 and not core.space.overlaps(40, 2)
    core.apply(Quarantine(11, 1))                       # owned by a and b: stays theirs
    assert core.space.free == free - 2 and len(core.rmap.owners(11, 1)) == 2
    core.hold(12, 1)
    core.apply(SetExtents(2, [2, 1], [], None, None))   # a lets go of block 12, b still owns it
    core.apply(SetExtents(3, [2, 1], [], None, None))   # b too: held, so busy
    assert core.busy.blocks == 1
    core.apply(Quarantine(12, 1))                       # busy: quarantined at once
    assert core.busy.blocks == 0
    core.unhold(12, 1)                                  # the hold goes: it stays quarantined
    assert not core.space.overlaps(12, 1)
    core.apply(SetExtents(2, [1, 1], [], None, None))   # a and b let go of bad block 11
    core.apply(SetExtents(3, [1, 1], [], None, None))
    assert not core.space.overlaps(11, 1) and core.rmap.owners(11, 1) == []
    assert core.bad.runs() == [(11, 2), (40, 2)] and check(core) == []
    core.apply(Quarantine(11, 2))                       # again: nothing changes
    assert core.bad.runs() == [(11, 2), (40, 2)] and check(core) == []


def test_a_bad_block_never_gains_an_owner() -> None:
    core = _core()
    core.apply(Quarantine(40, 1))
    core.apply(Quarantine(10, 1))
    core.apply(Create(4, 1, "c", st.S_IFREG | 0o644, 0, 0, 0))
    for record in (SetExtents(4, [], [0, 1, 40, 0], BS, 0),            # fresh (fast path)
                   SetExtents(4, [], [0, 1, 10, SHARE], BS, 0),        # shared
                   SetExtents(4, [], [0, 2, 39, UNWRITTEN, 5, 1, 1, 0], 6 * BS, 0)):
        with pytest.raises(CorruptVolumeError):
            core.apply(record)
    with pytest.raises(CorruptVolumeError):
        core.apply(Quarantine(63, 2))                   # past the data area


def test_clear_only_unowned_bad_blocks() -> None:
    core = _core()
    core.apply(Quarantine(10, 1))
    with pytest.raises(CorruptVolumeError):
        core.apply(ClearQuarantine(10, 1))              # owned
    with pytest.raises(CorruptVolumeError):
        core.apply(ClearQuarantine(30, 1))              # not bad
    core.apply(SetExtents(2, [0, 1], [], None, None))
    core.apply(SetExtents(3, [0, 1], [], None, None))
    free = core.space.free
    core.apply(ClearQuarantine(10, 1))
    assert core.space.free == free + 1 and not core.bad and check(core) == []


def test_checkpoints_keep_the_quarantine_and_old_ones_load() -> None:
    core = _core()
    assert len(core.to_checkpoint()) == 2                # nothing bad: the old format exactly
    core.apply(Quarantine(11, 1))
    core.apply(Quarantine(50, 3))
    core.apply(BadMetadata(BS, BS, True))
    state = core.to_checkpoint()
    assert state[2] == [[11, 1, 50, 3], [BS, BS]]
    again = Core.from_checkpoint(state, BS, 64)
    assert again.bad.runs() == [(11, 1), (50, 3)] and again.bad_metadata.runs() == [(BS, BS)]
    assert again.space.free == core.space.free and check(again) == []
    old = Core.from_checkpoint(state[:2], BS, 64)        # a checkpoint from before: loads, nothing bad
    assert not old.bad and check(old) == []
    for extra in ("x", [[11, 1]], [[11, 1, 50], []], [[50, 3, 11, 1], []], [[60, 10], []], [[0, 0], []],
                  [[1.0, 1], []], [[], [100, BS]]):
        with pytest.raises(CorruptVolumeError):
            Core.from_checkpoint(state[:2] + [extra], BS, 64)


def test_quarantine_and_clear_up_to_the_last_data_block_and_bad_metadata_comes_and_goes() -> None:
    """Both records are checked against the end of the data area (its last block is in it) and
    name the range they refuse; a refused clear changes nothing; bad metadata pages come and go."""
    core = _core()                                      # 64 data blocks; 10..13 owned
    free = core.space.free
    with pytest.raises(CorruptVolumeError, match=re.escape("quarantine of data blocks 63..65, past the data area")):
        core.apply(Quarantine(63, 2))
    core.apply(Quarantine(63, 1))                       # the last block: in the data area
    core.apply(Quarantine(60, 4))                       # overlapping: only 60..62 are new
    assert core.bad.runs() == [(60, 4)] and core.bad.total == 4 and core.space.free == free - 4
    core.apply(ClearQuarantine(62, 2))                  # up to the end of the data area
    assert core.bad.runs() == [(60, 2)] and core.space.free == free - 2 and check(core) == []
    for refused in (ClearQuarantine(61, 2), ClearQuarantine(59, 2)):     # 62, 59 are not bad
        says = f"clear of data blocks {refused.pblk}..{refused.pblk + 2}: not all bad"
        with pytest.raises(CorruptVolumeError, match=re.escape(says)):
            core.apply(refused)
        assert core.bad.runs() == [(60, 2)] and core.space.free == free - 2       # and nothing changed
    core.apply(BadMetadata(BS, 3 * BS, True))
    core.apply(BadMetadata(2 * BS, BS, False))          # the middle page is good again
    assert core.bad_metadata.runs() == [(BS, BS), (3 * BS, BS)] and core.bad_metadata.total == 2 * BS


def test_checkpoint_quarantine_runs_are_checked_to_the_edges() -> None:
    """Runs that start at 0 and end at the last data block load; touching, overlapping,
    empty, unaligned (metadata) and past-the-end runs, and a malformed field, are corruption."""
    state = _core().to_checkpoint()
    top = (1 << 62) - BS
    again = Core.from_checkpoint(state[:2] + [[[0, 1, 2, 1, 63, 1], [0, BS, 2 * BS, BS, top, BS]]], BS, 64)
    assert again.bad.runs() == [(0, 1), (2, 1), (63, 1)] and again.bad.total == 3
    assert again.bad_metadata.runs() == [(0, BS), (2 * BS, BS), (top, BS)] and check(again) == []
    blocks, meta = "checkpoint: bad data blocks", "checkpoint: bad metadata"
    for extra, says in (([[1, 1, 2, 1], []], f"{blocks} run 2+1 is"), ([[5, 3, 7, 1], []], f"{blocks} run 7+1 is"),
                        ([[63, 2], []], f"{blocks} run 63+2 is"), ([[5, -1], []], f"{blocks} run 5+-1 is"),
                        ([[-1, 2], []], f"{blocks} run -1+2 is"), ([(11, 1), []], f"{blocks} are (11, 1), not"),
                        ([[True, 1], []], f"{blocks} are [True, 1], not"), ([[], [0.0, BS]], f"{meta} are [0.0"),
                        ([[], [0, 100]], f"{meta} run 0+100 is"), ([[], [0, 0]], f"{meta} run 0+0 is"),
                        ([[], [0, BS, BS, BS]], f"{meta} run {BS}+{BS} is"),
                        ([[], [top, 2 * BS]], f"{meta} run {top}+{2 * BS} is"),
                        ([[], ["0", BS]], f"{meta} are ['0'"), ([[], (0, BS)], f"{meta} are (0, {BS}), not"),
                        ([[], [], []], "checkpoint: bad memory field is [[], [], []], not")):
        with pytest.raises(CorruptVolumeError, match=re.escape(says)):     # the message says which run
            Core.from_checkpoint(state[:2] + [extra], BS, 64)


def test_fsck_finds_a_bad_block_that_is_free_or_busy() -> None:
    core = _core()
    core.bad.add(30, 1)                                 # by hand: bad but still free
    problems = check(core)
    assert any("are free" in p for p in problems)
    core = _core()
    core.apply(Quarantine(30, 1))
    core.busy._busy[30] = 1                             # by hand: bad and busy
    core.busy.blocks += 1
    assert any("also busy" in p for p in check(core))
