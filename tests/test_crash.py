"""Crash consistency, proven by enumerating persist points on a recording pool.

For random workloads we record every store and persist, then build the pool
images a power failure could leave at each persist point -- with the stores
still in flight lost, kept, kept at random, or torn at arbitrary cache lines --
mount each one and hold it to the strict oracle (``daxfs.testing.crash``):
fsck is clean; every operation that returned is there exactly (names, modes,
link counts, sizes, blocks, timestamps, bytes); the one that was interrupted
is all-or-nothing, except that bytes it overwrote in place (inside the file,
in blocks the file owned and had written) may each be old or new while all
else is as before it.  A write that allocates is all-or-nothing.
"""

from __future__ import annotations

import random

import pytest

from daxfs.media import MemoryPool, RecordingPool
from daxfs.testing import recorded_volume, Op, Workload
from daxfs.testing.crash import CrashRecorder
from daxfs.volume import Volume

POOL_SIZE = 4 << 20


def _fresh_recorded_volume() -> tuple[RecordingPool, Volume]:
    return recorded_volume(POOL_SIZE)


def _run_workload(seed: int, n_ops: int) -> CrashRecorder:
    rec = CrashRecorder(POOL_SIZE)
    for op in Workload(seed).ops(n_ops):
        rec.run_op(op)
    return rec


@pytest.mark.parametrize("seed", range(16))
def test_crash_at_every_persist_point(seed: int) -> None:
    rec = _run_workload(seed, 40)
    seen = rec.check()
    # the crash points reached both sides of interrupted operations and the gaps between them
    assert seen["between"] > 0 and seen["before"] > 0 and seen["after"] > 0, seen
    rec.vol.close()


@pytest.mark.parametrize("seed", range(6))
def test_crash_at_every_persist_point_with_reflink_mappings_and_pins(seed: int) -> None:
    """The extended workload: clone_file, clone_range and the copy-on-write writes after them,
    write mappings stored through and persisted, truncates under a pin."""
    rec = CrashRecorder(POOL_SIZE)
    for op in Workload(1000 + seed, extended=True).ops(60):
        rec.run_op(op)
    seen = rec.check()
    assert seen["between"] > 0 and seen["before"] > 0 and seen["after"] > 0, seen
    rec.vol.close()


def test_the_workloads_allocate_and_overwrite_in_place() -> None:
    """The seeded workloads cover both kinds of write the oracle tells apart."""
    kinds = set()
    for seed in range(16):
        rec = _run_workload(seed, 40)
        kinds.update("torn-able" if s.tearable else "all-or-nothing" for s in rec.steps
                     if s.label.startswith(("pwrite", "append")))
        rec.vol.close()
    assert kinds == {"torn-able", "all-or-nothing"}


def test_the_extended_workloads_clone_map_and_pin() -> None:
    """Each extra kind of the extended workloads above succeeds at least once (so the crash
    points cover them), and some write lands in blocks a clone shares (copy-on-write)."""
    done, cow = set(), 0
    for seed in range(6):
        pool, vol = recorded_volume(POOL_SIZE)
        for op in Workload(1000 + seed, extended=True).ops(60):
            if op.kind == "pwrite" and vol.exists(op.args[0]) and not vol.stat(op.args[0]).st_mode & 0o040000:
                with vol.open(op.args[0], "rb", buffering=0) as f:
                    cow += any("shared" in e.flags for e in f.extents())
            if op.apply(vol) is None and (op.kind != "map_write" or op.result):
                done.add(op.kind)
        vol.close()
    assert {"clone", "clone_range", "map_write", "pin_truncate"} <= done, done
    assert cow > 0


def _churn(n: int, seed: int) -> list[Op]:
    """Many small metadata operations: enough records to wrap the log ring."""
    rng = random.Random(seed)
    ops = []
    for i in range(n):
        name = f"f{rng.randrange(7)}"
        ops.append(rng.choice([Op("create", (name,)), Op("unlink", (name,)),
                               Op("rename", (name, f"f{rng.randrange(7)}")),
                               Op("pwrite", (name, bytes([rng.randrange(1, 256)]) * rng.randrange(1, 9000),
                                             rng.randrange(0, 9000)))]))
    return ops


@pytest.mark.parametrize("seed", [100, 101])
def test_crash_points_across_log_wrap(seed: int) -> None:
    """Enough operations to wrap the log ring (checkpointing on the way); crash points sampled."""
    rec = CrashRecorder(POOL_SIZE)
    for op in _churn(13000, seed):
        rec.run_op(op)
    vol = rec.vol
    assert vol._ring.head > vol._ring.size, "the workload did not wrap the log"
    assert vol.fsck() == []
    rng = random.Random(seed)
    points = sorted(rng.sample(rec.pool.persist_points(), 120)) + [len(rec.pool.events)]
    seen = rec.check(points)
    assert seen["between"] > 0 and seen["before"] + seen["after"] > 0, seen


def test_orphan_is_reclaimed_after_crash() -> None:
    pool, vol = _fresh_recorded_volume()
    with vol.open("keep", "wb", buffering=0) as f:
        f.write(b"k" * 10000)
    held = vol.open("gone", "w+b", buffering=0)
    held.write(b"g" * 50000)
    free_with_file = vol.statfs().free
    vol.unlink("gone")
    assert held.pread(5, 0) == b"ggggg"          # the orphan is still readable by its holder
    assert vol.statfs().free == free_with_file    # and its blocks are still its own
    crash = list(pool.crash_images(len(pool.events)))[0]
    after = Volume.mount(MemoryPool(crash.image))
    try:
        assert after.listdir("/") == ["keep"]
        assert after.fsck() == []
        assert after.statfs().free > free_with_file   # the orphan's blocks came back at mount
    finally:
        after.close()
    held.close()
    vol.close()


def test_unpersisted_metadata_never_exposes_old_bytes() -> None:
    """Blocks freed by one file and reused by another never show the old bytes after a crash."""
    pool, vol = _fresh_recorded_volume()
    with vol.open("secret", "wb", buffering=0) as f:
        f.write(b"S" * 40960)
    vol.unlink("secret")
    start = pool.mark()
    with vol.open("new", "wb", buffering=0) as f:
        f.pwrite(b"n", 40000)           # a sparse file reusing the freed blocks
    for e in range(start, len(pool.events) + 1):
        for image in pool.crash_images(e, seed=e, random_variants=2):
            v = Volume.mount(MemoryPool(image.image))
            try:
                if v.exists("new"):
                    with v.open("new", "rb", buffering=0) as f:
                        assert b"S" not in f.read()
            finally:
                v.close()
    vol.close()
