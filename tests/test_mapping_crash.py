"""Crash consistency of write mappings, by enumerating crash images on a recording pool.

A write mapping is populated at map time (blocks allocated, zeroed, size
grown, metadata durable before ``map`` returns), and stores through it are
durable after ``Mapping.persist``.  For every event from the map call on, we
build the pool images a power failure could leave (in-flight stores lost,
kept, kept at random, torn), mount each one and check:

- ``fsck`` is clean;
- the file's size and extent map are either as before the map call or as
  after the populate (all-or-nothing), and always the latter once ``map`` has
  returned;
- every byte of the mapped range is its old value, zero, or what was stored
  through the mapping, and after the persist it is what was stored;
- bytes of a file deleted earlier, whose blocks the populate reuses (also
  through fallocate'd, unwritten blocks and a stale tail past EOF), never
  show up in the new file.

And holds are not logged: after a crash, blocks that were busy under a mapping
are free and an orphan a mapping kept alive is reclaimed at mount.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from daxfs.media import MemoryPool, RecordingPool
from daxfs.testing import recorded_volume
from daxfs.volume import Volume

POOL_SIZE = 4 << 20
BS = 4096
SECRET = 0x53     # "S": the deleted file's bytes
DATA = 0x44       # "D": stored through the mapping
OLD = 0x45        # "E": the new file's own bytes from before the map


def _fresh_recorded_volume() -> tuple[RecordingPool, Volume]:
    return recorded_volume(POOL_SIZE)


def _blocks(extents: list) -> set[int]:
    return {e.pool_offset // BS + i for e in extents for i in range(e.length // BS)}


def _layout(f) -> tuple[int, tuple]:
    return f.stat().st_size, tuple((e.file_offset, e.length, e.pool_offset, tuple(sorted(e.flags)))
                                   for e in f.extents())


def _leave_secret(vol: Volume, size: int) -> set[int]:
    """A file full of SECRET bytes, made durable, then deleted: its blocks are free again."""
    with vol.open("secret", "wb", buffering=0) as f:
        f.write(bytes([SECRET]) * size)
        f.fsync()
        blocks = _blocks(f.extents())
    vol.unlink("secret")
    return blocks


def _prepare_empty(vol: Volume, secret: set[int]):
    f = vol.open("new", "w+b", buffering=0)
    return f, 0, 2 << 20                                # map [0, 2 MiB) of an empty file


def _prepare_mixed(vol: Volume, secret: set[int]):
    f = vol.open("new", "w+b", buffering=0)
    f.pwrite(bytes([OLD]) * 10_000, 0)
    f.fallocate(40_000, 300_000, keep_size=True)       # unwritten blocks: reused, full of SECRET
    assert _blocks([e for e in f.extents() if "unwritten" in e.flags]) & secret
    f.pwrite(bytes([OLD]) * 100, 20_000)               # a hole at [10000, 20000)
    f.truncate(20_050)                                 # stale OLD bytes past EOF in the last block
    return f, 5_000, 600_000                           # past EOF, over data, hole, unwritten, growth


def _prepare_grow_over_stale_tail(vol: Volume, secret: set[int]):
    f = vol.open("new", "w+b", buffering=0)
    f.pwrite(bytes([SECRET]) * 7000, 0)                # SECRET bytes of the file's own ...
    f.truncate(100)                                    # ... left past EOF in its first block
    f.pwrite(bytes([OLD]) * 100, 0)
    return f, 0, 300 * BS + 123


PREPARE: dict[str, Callable] = {
    "empty-file": _prepare_empty,
    "data-hole-unwritten-tail": _prepare_mixed,
    "stale-tail": _prepare_grow_over_stale_tail,
}


@pytest.mark.parametrize("case", sorted(PREPARE))
def test_write_mapping_populate_and_persist_survive_any_crash(case: str) -> None:
    pool, vol = _fresh_recorded_volume()
    secret = _leave_secret(vol, 2 << 20)
    f, offset, length = PREPARE[case](vol, secret)
    before_layout = _layout(f)
    before_size = before_layout[0]
    old = np.frombuffer(f.pread(before_size, 0), np.uint8)

    start = pool.mark()
    m = f.map(offset, length, write=True)
    mapped = pool.mark()
    after_layout = _layout(f)
    end = offset + length
    assert after_layout[0] == max(before_size, end)
    assert not any("unwritten" in flags for *_rest, flags in after_layout[1])
    if case != "stale-tail":
        assert _blocks(f.extents()) & secret, "the populate did not reuse the deleted file's blocks"
    view = m.array()
    assert not (view == SECRET).any()
    stored = np.full(length, DATA, np.uint8)
    stored[::97] = np.arange(len(stored[::97])) % 60 + 1     # not all one byte (and never SECRET)
    view[:] = stored
    del view
    persist_start = pool.mark()
    m.persist()
    persisted = pool.mark()
    assert persisted > persist_start, "persist recorded nothing"

    size_after = after_layout[0]
    final = np.zeros(size_after, np.uint8)
    final[:before_size] = old
    final[offset:end] = stored
    assert np.array_equal(np.frombuffer(f.pread(size_after, 0), np.uint8), final)

    # per byte: what the file may show at any crash point (old or zero before the populate
    # lands, zero after it, the stored byte once stored)
    old_full = np.zeros(size_after, np.uint8)
    old_full[:before_size] = old
    seen = {"populate lost": 0, "populate kept": 0, "stores partly there": 0}
    for e in range(start, len(pool.events) + 1):
        for image in pool.crash_images(e, seed=e, random_variants=2):
            v = Volume.mount(MemoryPool(image.image))
            try:
                where = f"crash at event {e} ({image.variant}) in {case}"
                assert v.fsck() == [], where
                assert v.listdir("/") == ["new"], where
                with v.open("new", "rb", buffering=0) as g:
                    got_layout = _layout(g)
                    assert got_layout in (before_layout, after_layout), where
                    if e >= mapped:
                        assert got_layout == after_layout, f"{where}: map returned before its metadata was durable"
                    data = np.frombuffer(g.pread(got_layout[0], 0), np.uint8)
                n = len(data)
                assert not (data == SECRET).any(), f"{where}: a deleted file's bytes are visible"
                ok = (data == old_full[:n]) | (data == 0) | (data == final[:n])
                assert ok.all(), f"{where}: bytes at {np.flatnonzero(~ok)[:5]} are neither old, zero nor stored"
                if e >= persisted:
                    assert np.array_equal(data, final), f"{where}: persisted stores are missing"
                seen["populate kept" if got_layout == after_layout else "populate lost"] += 1
                stored_here = data[offset:end] == stored[:max(0, n - offset)]
                if stored_here.any() and not stored_here.all():
                    seen["stores partly there"] += 1
            finally:
                v.close()
    # the images reached both sides of the populate, and stores torn part-way
    assert all(seen.values()), seen
    m.close()
    f.close()
    vol.close()


def test_persist_of_a_sub_range_makes_exactly_that_durable() -> None:
    pool, vol = _fresh_recorded_volume()
    _leave_secret(vol, 1 << 20)
    f = vol.open("new", "w+b", buffering=0)
    m = f.map(0, 64 * BS, write=True)
    m.buffer[:] = bytes([DATA]) * (64 * BS)
    start = pool.mark()
    m.persist(10 * BS + 5, 3 * BS)            # unaligned inside the mapping
    persisted = pool.mark()
    m.persist(40 * BS, 1)
    for e in range(start, len(pool.events) + 1):
        for image in pool.crash_images(e, seed=e):
            v = Volume.mount(MemoryPool(image.image))
            try:
                assert v.fsck() == []
                with v.open("new", "rb", buffering=0) as g:
                    data = np.frombuffer(g.read(), np.uint8)
                assert len(data) == 64 * BS
                assert np.isin(data, (0, DATA)).all(), f"crash at event {e}: bytes neither zero nor stored"
                if e >= persisted:
                    assert (data[10 * BS + 5:13 * BS + 5] == DATA).all(), f"crash at event {e}: persist lost"
                if e == len(pool.events):
                    assert data[40 * BS] == DATA
            finally:
                v.close()
    m.close()
    f.close()
    vol.close()


def test_crash_after_map_returns_keeps_the_populate_even_if_nothing_was_stored() -> None:
    pool, vol = _fresh_recorded_volume()
    f = vol.open("new", "w+b", buffering=0)
    f.pwrite(b"x", 0)
    m = f.map(BS, 50 * BS, write=True)
    live = _layout(f)
    for image in pool.crash_images(len(pool.events), seed=1, random_variants=3):
        v = Volume.mount(MemoryPool(image.image))
        try:
            assert v.fsck() == []
            with v.open("new", "rb", buffering=0) as g:
                assert _layout(g) == live
                assert g.read() == b"x" + bytes(51 * BS - 1)
        finally:
            v.close()
    m.close()
    f.close()
    vol.close()


def test_a_crash_frees_busy_blocks_and_the_orphan_a_mapping_held() -> None:
    """Holds are not logged: after a crash nothing holds anything, so blocks that were busy
    under a mapping are free, and a mapped orphan is reclaimed, at mount."""
    pool, vol = _fresh_recorded_volume()
    free0 = vol.statfs().free
    with vol.open("keep", "wb", buffering=0) as f:
        f.write(b"k" * (4 * BS))
    f = vol.open("cut", "w+b", buffering=0)
    f.write(b"c" * (32 * BS))
    m = f.map()
    f.truncate(2 * BS)                           # 30 blocks busy under the mapping
    with vol.open("gone", "wb", buffering=0) as g:
        g.write(b"g" * (16 * BS))
    g = vol.open("gone", "rb", buffering=0)
    mg = g.map()
    g.close()
    vol.unlink("gone")                           # an orphan the mapping holds
    assert vol.statfs().busy == 30 * BS
    assert vol.statfs().free == free0 - (4 + 32 + 16) * BS
    for image in pool.crash_images(len(pool.events), seed=3):
        v = Volume.mount(MemoryPool(image.image))
        try:
            assert v.fsck() == []
            assert sorted(v.listdir("/")) == ["cut", "keep"]
            st = v.statfs()
            assert st.busy == 0
            assert st.free == free0 - (4 + 2) * BS
            with v.open("cut", "rb", buffering=0) as h:
                assert h.read() == b"c" * (2 * BS)
        finally:
            v.close()
    assert bytes(m.buffer[-BS:]) == b"c" * BS      # the live mapping is untouched by all this
    m.close()
    mg.close()
    f.close()
    vol.close()
