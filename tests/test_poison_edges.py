"""What the data path does about bad memory, at its edges (found by a mutation run over
``volume/poison.py``): each test pins down one thing a slip there would get wrong while
every other memory-failure test still passed.

- ``writable_pieces``: healthy pieces and holes go through unchanged (data block 0 is a
  block like any other), bad blocks become holes and the healthy blocks around them keep
  their place; a write that covers a bad run in part names the block it cuts (the first
  or the last of the run: its file offset, one block, its pool offset) and says why.
- ``bad_as_holes`` / ``bad_unwritten_as_holes``: every bad block, or only the unwritten
  ones, become holes; written data on bad memory is left for the read or write path.
- ``flag_extents``: an extent is split at its bad blocks, the parts keep their file and
  pool offsets and flags, the bad one gains "poisoned".
- ``fence_reference``: only the part of a run inside the reference counts (a run that
  ends where it starts is none); its memory is fenced at view offsets (from the
  reference's first block), in the view given when there is one; a view that says it
  cannot fence is left out of what is said on stderr; the holder is told only when asked.
- ``_merge``: touching and overlapping ranges merge, away from 0 too.
- reads (``check_read``, ``poisoned_runs``, ``poison_error``): a read sees poisoned blocks
  after an unwritten one, and only those in its own range; the error names the first run's
  file and pool offsets, lists at most four runs (then "..."), and names an unlinked file
  by its inode.
- ``_explain``: a fault handler is turned on when none is, and the message names the
  fenced bytes, the file, the kind of reference, its range and its holder.
"""

from __future__ import annotations

import faulthandler
from types import SimpleNamespace
from typing import Any

import pytest

import daxfs
from daxfs._types import Extent
from daxfs.core import UNWRITTEN
from daxfs.core.badblocks import BlockRuns
from daxfs.volume import poison
from daxfs.volume.references import Reference

from _small_volume import small_volume, write_file

BS = 4096
D = 1 << 20         # a data offset for the pure helpers


def fake_core(*bad: tuple[int, int]) -> Any:
    return SimpleNamespace(bad=BlockRuns.of(list(bad)), block_size=BS)


# ---------------------------------------------------------------- writable_pieces

def test_writable_pieces_turn_bad_blocks_into_holes_and_keep_the_rest() -> None:
    core = fake_core((0, 1), (11, 2), (30, 1))
    node = SimpleNamespace(size=20 * BS)
    pieces = [(0, 2, -1, 0), (2, 2, 0, 0), (4, 4, 10, 0), (8, 2, 40, 0), (10, 2, 29, UNWRITTEN)]
    out = poison.writable_pieces(core, node, pieces, 0, 12 * BS, D)
    assert out == [(0, 2, -1, 0),                                   # a hole: as it was
                   (2, 1, -1, 0), (3, 1, 1, 0),                     # data block 0 is bad
                   (4, 1, 10, 0), (5, 2, -1, 0), (7, 1, 13, 0),     # bad in the middle
                   (8, 2, 40, 0),                                   # healthy
                   (10, 1, 29, UNWRITTEN), (11, 1, -1, 0)]          # unwritten: any write is whole


def test_writable_pieces_with_nothing_bad_under_them_are_unchanged() -> None:
    core = fake_core((100, 1))
    node = SimpleNamespace(size=0)
    pieces = [(0, 3, 0, 0), (3, 1, -1, 0), (4, 2, 7, UNWRITTEN)]
    assert poison.writable_pieces(core, node, pieces, 100, 50, D) == pieces


@pytest.fixture
def bad_file() -> Any:
    """A 4-block file whose blocks 1 and 2 lie on bad memory: ``(vol, file, pool offset of block 0)``."""
    vol = small_volume()
    write_file(vol, "/f", bytes(range(256)) * (4 * BS // 256))
    f = vol.open("/f", "r+b", buffering=0)
    base = f.extents()[0].pool_offset
    vol.memory_failure(base + BS, 2 * BS)
    yield vol, f, base
    f.close()
    vol.close()


def test_a_write_cutting_the_first_bad_block_names_it(bad_file: Any) -> None:
    vol, f, base = bad_file
    with pytest.raises(daxfs.PoisonError) as info:
        f.pwrite(b"x" * (2 * BS - 10), BS + 10)        # to the end of the run, from inside its first block
    e = info.value
    assert (e.file_offset, e.length, e.pool_offset) == (BS, BS, base + BS)
    assert str(e).startswith("[Errno 5] a write covering them in part: bytes [4096, +4096) of /f")
    assert f.pread(4, 0) == bytes(range(4))                # nothing was written


def test_a_write_cutting_the_last_bad_block_names_it(bad_file: Any) -> None:
    vol, f, base = bad_file
    with pytest.raises(daxfs.PoisonError) as info:
        f.pwrite(b"x" * (2 * BS - 10), BS)             # from the start of the run, short of its end
    e = info.value
    assert (e.file_offset, e.length, e.pool_offset) == (2 * BS, BS, base + 2 * BS)
    f.pwrite(b"y" * 2 * BS, BS)                        # the whole run: fresh blocks
    assert f.pread(2 * BS, BS) == b"y" * 2 * BS


# ---------------------------------------------------------------- holes for fresh blocks

def test_bad_as_holes_and_bad_unwritten_as_holes() -> None:
    core = fake_core((0, 1), (21, 1))
    pieces = [(0, 2, -1, 0), (2, 3, 0, 0), (5, 2, 20, UNWRITTEN), (7, 1, 50, UNWRITTEN)]
    assert poison.bad_as_holes(core, pieces) == [(0, 2, -1, 0), (2, 1, -1, 0), (3, 2, 1, 0),
                                                 (5, 1, 20, UNWRITTEN), (6, 1, -1, 0), (7, 1, 50, UNWRITTEN)]
    assert poison.bad_unwritten_as_holes(core, pieces) == [(0, 2, -1, 0), (2, 3, 0, 0), (5, 1, 20, UNWRITTEN),
                                                           (6, 1, -1, 0), (7, 1, 50, UNWRITTEN)]


# ---------------------------------------------------------------- flag_extents

def test_flag_extents_splits_at_bad_blocks_keeping_offsets_and_flags() -> None:
    core = fake_core((11, 1), (31, 1))
    shared = frozenset({"shared"})
    extents = [Extent(8 * BS, 4 * BS, D + 10 * BS, shared),
               Extent(12 * BS, 2 * BS, D + 31 * BS, frozenset({"unwritten"})),     # no data: not poisoned
               Extent(14 * BS, BS, D + 40 * BS)]
    assert poison.flag_extents(core, extents, D) == [
        Extent(8 * BS, BS, D + 10 * BS, shared),
        Extent(9 * BS, BS, D + 11 * BS, shared | {"poisoned"}),
        Extent(10 * BS, 2 * BS, D + 12 * BS, shared),
        extents[1], extents[2]]


# ---------------------------------------------------------------- fence_reference

class FencingView:
    """A view whose ``fence`` answers ``answers`` in turn (False: it cannot fence here)."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.fenced: list[tuple[int, int]] = []

    def fence(self, offset: int, length: int) -> object:
        self.fenced.append((offset, length))
        return self.answers.pop(0)


def test_fence_reference_clips_fences_at_view_offsets_and_tells(capsys: pytest.CaptureFixture[str]) -> None:
    ref = Reference(5, "/f", BS, 3 * BS + 100, BS, writable=False, holder="loader", kind="pin")
    told: list[tuple[int, int]] = []
    ref.on_poison = lambda off, n: told.append((off, n))
    view = FencingView(None, False)
    ranges = poison.fence_reference(ref, [(0, 1), (2, 1), (4, 2)], tell=True, view=view)
    assert ranges == [(2 * BS, BS), (4 * BS, 100)]        # block 0 ends where the pin starts
    assert view.fenced == [(BS, BS), (3 * BS, 2 * BS)]    # at view offsets, the reference's block 1 first
    assert ref.poisoned == [(2 * BS, BS), (4 * BS, 100)]
    assert told == [(2 * BS, BS), (4 * BS, 100)]
    err = capsys.readouterr().err
    assert (f"daxfs: memory failure: bytes [{2 * BS}, +{BS}) of /f are fenced in a pin [{BS}, +{3 * BS + 100}) "
            f"held by loader: touching them is a segmentation fault\n") == err   # not the one it could not fence


def test_fence_reference_uses_the_view_given_and_tells_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    ref = Reference(5, "/g", 0, 4 * BS, BS, writable=False)
    told: list[tuple[int, int]] = []
    ref.on_poison = lambda off, n: told.append((off, n))
    ref.view = FencingView()                               # would fail if asked
    closed = FencingView(True)
    assert poison.fence_reference(ref, [(1, 2)], tell=False, view=closed) == [(BS, 2 * BS)]
    assert closed.fenced == [(BS, 2 * BS)] and told == []
    assert "bytes [4096, +8192) of /g are fenced in a mapping [0, +16384)" in capsys.readouterr().err
    assert poison.fence_reference(ref, [(9, 1)], tell=True, view=closed) == []     # past it: nothing
    assert ref.poisoned == [(BS, 2 * BS)] and told == []
    ref.view = FencingView(None)
    assert poison.fence_reference(ref, [(3, 1)], tell=True) == [(3 * BS, BS)]     # no view given: its own
    assert ref.view.fenced == [(3 * BS, BS)] and told == [(3 * BS, BS)]


def test_fence_reference_keeps_telling_after_a_failing_callback() -> None:
    ref = Reference(5, "/g", 0, 8 * BS, BS, writable=False)
    told: list[int] = []

    def on_poison(off: int, n: int) -> None:
        told.append(off)
        raise RuntimeError("holder failed")
    ref.on_poison = on_poison
    poison.fence_reference(ref, [(1, 1), (3, 1)], tell=True, view=object())       # a view that cannot fence
    assert told == [BS, 3 * BS] and ref.poisoned == [(BS, BS), (3 * BS, BS)]


def test_merge_joins_touching_and_overlapping_ranges() -> None:
    assert poison._merge([]) == []
    assert poison._merge([(10, 5), (0, 10), (15, 5), (30, 1), (25, 2)]) == [(0, 20), (25, 2), (30, 1)]
    assert poison._merge([(100, 10), (105, 10)]) == [(100, 15)]
    assert poison._merge([(100, 50), (110, 5), (151, 1)]) == [(100, 50), (151, 1)]
    assert poison._merge([(200, 5), (100, 10), (105, 2)]) == [(100, 10), (200, 5)]


def test_explain_turns_on_a_fault_handler(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    enabled: list[bool] = []
    monkeypatch.setattr(faulthandler, "is_enabled", lambda: False)
    monkeypatch.setattr(faulthandler, "enable", lambda *a, **k: enabled.append(True))
    ref = Reference(5, "/h", 0, BS, BS, writable=True, holder="me")
    poison.fence_reference(ref, [(0, 1)], tell=False, view=FencingView(None))
    assert enabled == [True]
    monkeypatch.setattr(faulthandler, "is_enabled", lambda: True)
    poison.fence_reference(ref, [(0, 1)], tell=False, view=FencingView(None))
    assert enabled == [True]                               # already on: left alone
    assert capsys.readouterr().err.count("of /h are fenced in a mapping [0, +4096) held by me") == 2


# ---------------------------------------------------------------- reads

def test_reads_see_poison_past_unwritten_blocks_and_only_in_their_own_range() -> None:
    vol = small_volume()
    with vol.open("/r", "w+b", buffering=0) as f:
        f.fallocate(0, BS)                             # block 0: unwritten
        f.pwrite(b"r" * 9 * BS, BS)                    # blocks 1..9: written
        (written,) = [e for e in f.extents() if e.file_offset == BS]
        assert written.length == 9 * BS
        at = written.pool_offset - BS                  # pool offset of file block b: at + b * BS
        for blk in (3, 5, 7, 8, 9):
            vol.memory_failure(at + blk * BS, BS)
        assert f.pread(BS, BS) == b"r" * BS            # block 1: healthy, though later ones are not
        assert f.pread(BS, 4 * BS) == b"r" * BS
        with pytest.raises(daxfs.PoisonError) as info:
            f.pread(10 * BS, 0)                        # the unwritten block 0 first: still seen
        e = info.value
        assert (e.file_offset, e.pool_offset) == (3 * BS, at + 3 * BS)
        assert str(e).startswith(f"[Errno 5] read: bytes [{3 * BS}, +{BS}), [{5 * BS}, +{BS}), "
                                 f"[{7 * BS}, +{3 * BS}) of /r are poisoned (the memory behind them "
                                 f"failed, pool offset {at + 3 * BS:#x})")
        ino = f.stat().st_ino
        vol.unlink("/r")
        with pytest.raises(daxfs.PoisonError) as info:
            f.pread(BS, 3 * BS)
        assert info.value.filename is None and f"of (unlinked inode {ino}) are poisoned" in str(info.value)
    vol.close()


def test_a_read_over_more_than_four_poisoned_runs_lists_four() -> None:
    vol = small_volume()
    write_file(vol, "/m", b"m" * 10 * BS)
    with vol.open("/m", "rb", buffering=0) as f:
        (extent,) = f.extents()
        for blk in (0, 2, 4, 6, 8):
            vol.memory_failure(extent.pool_offset + blk * BS, BS)
        with pytest.raises(daxfs.PoisonError) as info:
            f.pread(10 * BS, 0)
        assert f"[{6 * BS}, +{BS}) ..." in str(info.value) and f"[{8 * BS}," not in str(info.value)
        with pytest.raises(daxfs.PoisonError) as info:
            f.pread(7 * BS, 0)                         # four runs: no ellipsis
        assert f"[{6 * BS}, +{BS}) of /m" in str(info.value)
    vol.close()


def test_a_read_across_a_hole_stops_at_its_own_end() -> None:
    vol = small_volume()
    write_file(vol, "/s", b"s" * 6 * BS)
    with vol.open("/s", "r+b", buffering=0) as f:
        (extent,) = f.extents()
        f.punch_hole(2 * BS, BS)                       # two runs: not one read on the fast path
        vol.memory_failure(extent.pool_offset + 4 * BS, BS)
        assert f.pread(3 * BS, BS) == b"s" * BS + bytes(BS) + b"s" * BS      # blocks 1..3
        with pytest.raises(daxfs.PoisonError):
            f.pread(4 * BS, BS)                        # blocks 1..4
    vol.close()
