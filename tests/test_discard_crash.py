"""Discard and crash consistency: a discard never takes bytes a file can show.

Two oracles:

- **Discards change nothing visible.**  The same workload runs on a volume that
  discards (after every operation, and trims now and then) and on one that never
  does: after every operation both show exactly the same tree, sizes, blocks and
  bytes.  That holds only if no block a file owns is ever discarded, and if a
  block taken as known-zero (not zeroed again) really reads as zeros.
- **Crashes.**  On a recording pool (a discard is a store of zeros, persisted),
  the crash oracle (``daxfs.testing.crash``) mounts the image a crash could leave
  at every persist point — discards and the writes that reuse discarded blocks
  without zeroing them included — and holds it to the state before or after the
  step; a discard step must leave the state exactly as it was.
"""

from __future__ import annotations

from typing import Any

import pytest

from daxfs.media import MemoryPool
from daxfs.testing import Workload, snapshot
from daxfs.testing.crash import CrashRecorder
from daxfs.volume import Volume

POOL_SIZE = 4 << 20
BS = 4096


def _volume(discard: bool) -> Volume:
    pool = MemoryPool(POOL_SIZE)
    Volume.format(pool)
    vol = Volume.mount(pool, discard=discard)
    vol.space.background = False        # the test says when discards run
    return vol


@pytest.mark.parametrize("seed", range(6))
def test_discards_change_nothing_a_file_shows(seed: int) -> None:
    on, off = _volume(True), _volume(False)
    discarded = skipped = 0
    for i, op in enumerate(Workload(500 + seed, extended=True).ops(120)):
        known_zero = on._core.space.zero.total
        assert op.apply(on) == Op_apply(off, op), f"op {i} {op} failed differently"
        skipped += known_zero > on._core.space.zero.total      # some known-zero block was handed out
        discarded += on.flush_discards()
        if i % 17 == 16:
            discarded += on.trim()
        assert snapshot(on, times=False) == snapshot(off, times=False), f"after op {i} {op}"
        assert on.fsck() == [], f"after op {i} {op}"
    assert discarded > 0 and skipped > 0, (discarded, skipped)
    on.close()
    off.close()


def Op_apply(vol: Volume, op: Any) -> Any:
    """The same op again, on the other volume (``Op.apply`` keeps its result on the op)."""
    copy = type(op)(op.kind, op.args)
    return copy.apply(vol)


def _discard_step(rec: CrashRecorder, label: str, fn: Any) -> None:
    """A step that discards: the state after it is the state before it, exactly."""
    before = rec.snaps[-1]
    rec.run(label, fn)
    assert rec.snaps[-1] == before, f"{label} changed what files show"


@pytest.mark.parametrize("seed", range(4))
def test_crash_at_every_persist_point_with_online_discard(seed: int) -> None:
    rec = CrashRecorder(POOL_SIZE, discard=True)
    vol = rec.vol
    for i, op in enumerate(Workload(700 + seed, extended=True).ops(80)):
        rec.run_op(op)
        if vol.space.queued():
            _discard_step(rec, f"discard after {op}", vol.flush_discards)
        if i % 23 == 22:
            _discard_step(rec, "trim", vol.trim)
    assert vol.space.discarded > 0, "the workload freed nothing to discard"
    seen = rec.check()
    assert seen["between"] > 0 and seen["before"] > 0 and seen["after"] > 0, seen
    rec.vol.close()


def test_crash_around_a_discard_and_the_reuse_of_its_blocks() -> None:
    """Freed, discarded, then reused without zeroing by a partial write, a write mapping
    and a growing truncate; and blocks a pin kept busy, discarded once it went."""
    rec = CrashRecorder(POOL_SIZE, discard=True)
    vol = rec.vol

    def write(path: str, data: bytes, offset: int = 0) -> None:
        with vol.open(path, "r+b") as f:
            f.pwrite(data, offset)

    for name in ("/a", "/b", "/c", "/d", "/e"):         # (a create is a step of its own)
        rec.run(f"create {name}", lambda name=name: vol.open(name, "wb").close())
    rec.run("write /a", lambda: write("/a", b"\xaa" * (10 * BS + 123)))
    rec.run("write /b", lambda: write("/b", b"\xbb" * (3 * BS)))
    rec.run("unlink /a", lambda: vol.unlink("/a"))
    _discard_step(rec, "discard", vol.flush_discards)
    assert vol._core.space.zero.total > 10
    rec.run("partial write into /c", lambda: write("/c", b"\xcc" * 5000, 100))

    def map_write(store: bool) -> None:
        with vol.open("/d", "r+b") as f:
            m = f.map(0, 3 * BS, write=True)        # populated: known-zero blocks not zeroed again
            assert store or bytes(m.buffer) == bytes(3 * BS)
            if store:
                m.buffer[BS:BS + 10] = b"\xdd" * 10
                m.persist()
            m.close()

    rec.run("populate a write mapping of /d", lambda: map_write(False))
    rec.run("store through it", lambda: map_write(True), tearable={vol.stat("/d").st_ino: [(BS, BS + 10)]})
    def grow() -> None:
        with vol.open("/c", "r+b") as f:
            f.truncate(6 * BS)

    rec.run("grow /c", grow)

    held: dict[str, Any] = {}

    def pin_and_truncate() -> None:
        f = vol.open("/b", "r+b")
        held["pin"] = f.pin(0, 3 * BS)
        f.truncate(BS)
        f.close()

    rec.run("pin /b and truncate it", pin_and_truncate)
    _discard_step(rec, "discard while pinned", vol.flush_discards)
    _discard_step(rec, "trim while pinned", vol.trim)
    assert bytes(held["pin"].buffer[2 * BS:2 * BS + 4]) == b"\xbb" * 4    # busy: never discarded
    rec.run("release the pin", lambda: held["pin"].release())
    _discard_step(rec, "discard after the pin", vol.flush_discards)
    rec.run("write /e over what the pin held", lambda: write("/e", b"\xee" * (2 * BS + 1)))
    seen = rec.check(random_variants=2)
    assert seen["between"] > 0 and seen["before"] > 0 and seen["after"] > 0, seen
    rec.vol.close()


def test_the_oracle_catches_a_discard_of_blocks_a_file_owns() -> None:
    """The check the discard steps above pass would fail for a discarder that punched owned
    blocks: the test of the test."""
    rec = CrashRecorder(POOL_SIZE, discard=True)
    vol = rec.vol
    rec.run("write /a", lambda: vol.open("/a", "wb").write(b"\xaa" * (2 * BS)))
    with vol.open("/a", "rb") as f:
        extent = f.extents()[0]
    with pytest.raises(AssertionError, match="changed what files show"):
        _discard_step(rec, "a wrong discard", lambda: vol.pool.discard(extent.pool_offset, BS))
    rec.vol.close()
