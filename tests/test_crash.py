"""Crash consistency, proven by enumerating persist points on a recording pool.

For random workloads we record every store and persist, then build the pool
images a power failure could leave at each persist point — with the stores
still in flight lost, kept, kept at random, or torn — mount each one and
check: fsck is clean, every operation that returned is there, and the one
that was interrupted is all-or-nothing (for in-place overwrites, which no
DAX file system makes atomic, each byte is old or new and the metadata is
all-or-nothing).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from daxfs.media import MemoryPool, RecordingPool
from daxfs.testing import recorded_volume, Op, Workload, snapshot
from daxfs.volume import Volume

POOL_SIZE = 4 << 20


def _fresh_recorded_volume() -> tuple[RecordingPool, Volume]:
    return recorded_volume(POOL_SIZE)


def _mixed_ok(before: dict, after: dict, got: dict) -> bool:
    """An interrupted in-place write: names and sizes match one side, every byte is old or new."""
    if set(got) not in (set(before), set(after)):
        return False
    for path, entry in got.items():
        old, new = before.get(path), after.get(path)
        if entry in (old, new):
            continue
        if entry[0] != "file" or old is None or new is None or old[0] != "file" or new[0] != "file":
            return False
        data = entry[3]
        if len(data) not in (len(old[3]), len(new[3])):
            return False
        n = len(data)
        a = np.frombuffer(data, np.uint8)
        o = np.frombuffer(old[3][:n].ljust(n, b"\0"), np.uint8)
        w = np.frombuffer(new[3][:n].ljust(n, b"\0"), np.uint8)
        if not np.all((a == o) | (a == w)):
            return False
    return True


def _run_workload(seed: int, n_ops: int) -> tuple[RecordingPool, list[Op], list[int], list[int], list[dict]]:
    pool, vol = _fresh_recorded_volume()
    ops = list(Workload(seed).ops(n_ops))
    starts, ends, snaps = [], [], [snapshot(vol)]
    for op in ops:
        starts.append(pool.mark())
        op.apply(vol)
        ends.append(pool.mark())
        snaps.append(snapshot(vol))
        assert vol.fsck() == [], f"live volume unclean after {op}"
    return pool, ops, starts, ends, snaps


def _check_crash_points(pool: RecordingPool, ops: list[Op], starts: list[int], ends: list[int],
                        snaps: list[dict], points: list[int]) -> int:
    checked = 0
    for e in points:
        # which op was running when the crash hit event e
        running = next((i for i in range(len(ops)) if starts[i] <= e < ends[i]), None)
        done = sum(1 for i in range(len(ops)) if ends[i] <= e)
        for image in pool.crash_images(e, seed=e):
            vol = Volume.mount(MemoryPool(image.image))
            try:
                problems = vol.fsck()
                assert problems == [], f"fsck after crash at event {e} ({image.variant}): {problems}"
                got = snapshot(vol)
            finally:
                vol.close()
            if running is None:
                assert got == snaps[done], f"crash at event {e} ({image.variant}) between ops lost state"
            else:
                before, after = snaps[running], snaps[running + 1]
                ok = got in (before, after) or (ops[running].in_place and _mixed_ok(before, after, got))
                assert ok, (f"crash at event {e} ({image.variant}) inside {ops[running]} "
                            f"is neither before nor after it")
            checked += 1
    return checked


@pytest.mark.parametrize("seed", range(16))
def test_crash_at_every_persist_point(seed: int) -> None:
    pool, ops, starts, ends, snaps = _run_workload(seed, 40)
    points = pool.persist_points() + [len(pool.events)]
    checked = _check_crash_points(pool, ops, starts, ends, snaps, points)
    assert checked >= len(points)


def _churn(n: int, seed: int) -> list[Op]:
    """Many small metadata operations: enough records to wrap the log ring."""
    rng = random.Random(seed)
    ops = []
    for i in range(n):
        name = f"f{rng.randrange(7)}"
        ops.append(rng.choice([Op("create", (name,)), Op("unlink", (name,)),
                               Op("rename", (name, f"f{rng.randrange(7)}")),
                               Op("pwrite", (name, b"w" * rng.randrange(1, 9000), rng.randrange(0, 9000)),
                                  in_place=True)]))
    return ops


@pytest.mark.parametrize("seed", [100, 101])
def test_crash_points_across_log_wrap(seed: int) -> None:
    """Enough operations to wrap the log ring (checkpointing on the way); crash points sampled."""
    pool, vol = _fresh_recorded_volume()
    ops = _churn(13000, seed)
    starts, ends, snaps = [], [], [snapshot(vol)]
    for op in ops:
        starts.append(pool.mark())
        op.apply(vol)
        ends.append(pool.mark())
        snaps.append(snapshot(vol))
    assert vol._ring.head > vol._ring.size, "the workload did not wrap the log"
    assert vol.fsck() == []
    rng = random.Random(seed)
    points = sorted(rng.sample(pool.persist_points(), 120)) + [len(pool.events)]
    _check_crash_points(pool, ops, starts, ends, snaps, points)


def test_orphan_is_reclaimed_after_crash() -> None:
    pool, vol = _fresh_recorded_volume()
    with vol.open("keep", "wb") as f:
        f.write(b"k" * 10000)
    held = vol.open("gone", "w+b")
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
    with vol.open("secret", "wb") as f:
        f.write(b"S" * 40960)
    vol.unlink("secret")
    start = pool.mark()
    with vol.open("new", "wb") as f:
        f.pwrite(b"n", 40000)           # a sparse file reusing the freed blocks
    for e in range(start, len(pool.events) + 1):
        for image in pool.crash_images(e, seed=e, random_variants=2):
            v = Volume.mount(MemoryPool(image.image))
            try:
                if v.exists("new"):
                    with v.open("new", "rb") as f:
                        assert b"S" not in f.read()
            finally:
                v.close()
    vol.close()
