"""Memory failure, clearing and clear_badblocks under crashes at every persist point.

A run on a RecordingPool reports bad memory under a block three reflinked files
share, under a free block, in the log (the volume checkpoints twice at once)
and under a superblock copy; fills the volume while the bad blocks are
quarantined; clears the shared block's poison file by file (zero_range, a
whole-block write, a punch); then ``clear_badblocks`` returns the blocks; last,
a checkpoint slot fails (the volume saves its state to the other slot and goes
read-only).  For every persist point, every image a power failure could leave
must mount with (the strict oracle of ``daxfs.testing.crash``):

- fsck clean — which checks that no bad block is free or busy;
- the quarantine exactly as the live volume had it after the last step that
  returned (inside a step: as before it or after it, all-or-nothing): it is
  never lost;
- no bad block with an owner it did not have when it failed (never handed out
  again), and poisoned files exactly where the live volume had them.
"""

from __future__ import annotations

import warnings
from typing import Any

from daxfs.errors import DamagedVolumeWarning, MediaErrorWarning
from daxfs.testing.crash import CrashRecorder
from daxfs.volume import Volume

BS = 4096


def _data(n: int, byte: int) -> bytes:
    return bytes([byte]) * n


def test_memory_failure_and_clearing_at_every_crash_point() -> None:
    rec = CrashRecorder(4 << 20)
    vol: Volume = rec.vol
    lay = vol._layout
    quarantine = [vol.badblocks()]
    owners_at_failure: dict[int, set[int]] = {}          # bad pool offset -> inodes that owned it then

    def step(label: str, fn: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MediaErrorWarning)
            rec.run(label, fn)
        quarantine.append(vol.badblocks())

    def fail(offset: int, length: int) -> None:
        for o in vol.memory_failure(offset, length):
            owners_at_failure.setdefault(o.pool_offset, set()).add(o.ino)
        for start, n in vol.badblocks():
            for b in range(start, start + n, BS):
                owners_at_failure.setdefault(b, set())

    def create(name: str) -> None:
        vol.open(name, "wb", buffering=0).close()

    def write(name: str, data: bytes) -> None:
        with vol.open(name, "r+b", buffering=0) as f:
            f.write(data)

    step("create a", lambda: create("/a"))
    step("write a", lambda: write("/a", _data(4 * BS, 0x41)))
    step("clone b", lambda: vol.clone_file("/a", "/b"))
    step("clone c", lambda: vol.clone_file("/a", "/c"))
    with vol.open("/a", "rb", buffering=0) as f:
        shared = f.extents()[0].pool_offset + BS
    spare = lay.block_offset(lay.data_blocks - 1)
    log_bad = lay.log_offset + (vol._ring.head % lay.log_size + lay.log_size // 2) // BS * BS
    step("memory failure under three sharers", lambda: fail(shared, BS))
    step("memory failure under a free block", lambda: fail(spare, BS))
    step("memory failure in the log", lambda: fail(log_bad, BS))
    step("memory failure under superblock A", lambda: fail(0, BS))

    step("create fill", lambda: create("/fill"))
    step("fill the volume around the quarantine", lambda: write("/fill", _data(vol.statfs().free - 2 * BS, 0x46)))

    def rewrite(name: str, how: str) -> None:
        with vol.open(name, "r+b", buffering=0) as f:
            if how == "zero":
                f.zero_range(BS, BS)
            elif how == "write":
                f.pwrite(_data(BS, 0x57), BS)
            else:
                f.punch_hole(BS, BS)

    step("zero_range clears a", lambda: rewrite("/a", "zero"))
    step("a whole-block write clears b", lambda: rewrite("/b", "write"))
    step("punch clears c", lambda: rewrite("/c", "punch"))
    step("make room", lambda: vol.unlink("/fill"))
    step("clear_badblocks of the shared block", lambda: vol.clear_badblocks(shared, BS))
    step("clear_badblocks of the spare block", lambda: vol.clear_badblocks(spare, BS))
    step("create d", lambda: create("/d"))
    step("write over the cleared blocks", lambda: write("/d", _data(64 * BS, 0x44)))
    slot = lay.checkpoint_offsets[(vol._generation + 1) % 2]
    step("memory failure under the older checkpoint slot", lambda: fail(slot, BS))
    assert vol.readonly and vol.badblocks() == quarantine[-1]

    def extra(mounted: Volume, where: str, running: int | None, done: int) -> None:
        got = mounted.badblocks()
        if running is None:
            assert got == quarantine[done], f"{where}: quarantine {got} != {quarantine[done]}"
        else:
            assert got in (quarantine[running], quarantine[running + 1]), \
                f"{where} inside step {running}: quarantine {got}"
        st = mounted.statfs()
        assert st.free + st.used + st.busy + st.bad == st.size, where
        base = lay.data_offset
        for start, n in got:
            if start < base:
                continue
            for b in range(start, start + n, BS):
                now = {o.ino for o in mounted.owners(b, BS)}
                assert now <= owners_at_failure.get(b, set()), f"{where}: bad block {b:#x} gained owners {now}"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedVolumeWarning)    # the last steps: read-only, as they must
        seen = rec.check(extra=extra)
    assert seen["between"] and seen["before"] and seen["after"], seen
    vol.close()
