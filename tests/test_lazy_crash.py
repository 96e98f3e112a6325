"""durability="lazy" under crashes, proven at every persist point on a recording pool.

With lazy durability, data written by pwrite is durable at fsync/close, not at return;
metadata (names, sizes, extents) still is durable at return.  For seeded workloads over
four files held open -- overwrites in place, writes that grow a file or fill holes,
truncates, re-creates that free blocks for the other files to reuse, fsync, close and
reopen, checkpoints -- every image a power failure could leave (in-flight stores lost,
kept, kept at random, torn at arbitrary cache lines) must mount with:

- fsck clean, the same four names, and each file's size as the last call that returned
  left it (or, inside a call, as before or after it);
- every byte one that the file held at its last fsync/close or was written to it since
  (zero where none was): so data acknowledged by fsync or close is there exactly, and
  data not yet flushed may be lost but never shows another file's bytes -- each file
  writes bytes from its own alphabet, and blocks freed by one file are reused by others.

The tests also assert that they saw what they are about: un-flushed data lost in some
image (lazy really is lazy), and overwrites in place flushed by fsync and by close.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from daxfs.media import MemoryPool
from daxfs.testing import recorded_volume
from daxfs.volume import Volume

BS = 4096
NAMES = ("a", "b", "c", "d")
MAX_BLOCKS = 8


def _alphabet(k: int) -> list[int]:
    """File ``k`` writes only these byte values (never zero, never another file's)."""
    return list(range(1 + 60 * k, 61 + 60 * k))


class Model:
    """What each file may hold after a crash: its size, and the versions of its bytes
    since its last flush (the first one durable; any byte may come from any of them)."""

    def __init__(self) -> None:
        self.size = {n: 0 for n in NAMES}
        self.versions: dict[str, list[bytes]] = {n: [b""] for n in NAMES}

    def copy(self) -> "Model":
        m = Model()
        m.size = dict(self.size)
        m.versions = {n: list(v) for n, v in self.versions.items()}
        return m

    def wrote(self, name: str, content: bytes) -> None:
        self.size[name] = len(content)
        self.versions[name].append(content)

    def truncated(self, name: str, content: bytes) -> None:
        """A size change is durable at once; bytes past it can never show again (a later
        growth zeroes them durably first)."""
        size = len(content)
        self.size[name] = size
        self.versions[name] = [v[:size] for v in self.versions[name]] + [content]

    def flushed(self, name: str, content: bytes) -> None:
        self.versions[name] = [content]


def _allowed(data: bytes, versions: list[bytes]) -> np.ndarray:
    """Per byte: whether it is the byte of some version (zero past a version's end)."""
    n = len(data)
    got = np.frombuffer(data, np.uint8)
    ok = np.zeros(n, bool)
    for v in versions:
        ref = np.zeros(n, np.uint8)
        m = min(n, len(v))
        ref[:m] = np.frombuffer(v, np.uint8)[:m]
        ok |= got == ref
    return ok


class LazyRun:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.pool, self.vol = recorded_volume(1 << 20, durability="lazy")   # 48 data blocks: reuse
        self.handles = {n: self.vol.open(n, "w+b", buffering=0) for n in NAMES}
        self.model = Model()
        self.steps: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.models = [self.model.copy()]
        self.flushed_in_place = {"fsync": 0, "close": 0}
        self.dirty_in_place: set[str] = set()
        self.owner: dict[int, str] = {}              # pool block -> file that last owned it
        self.reused = 0                              # blocks one file had and another got

    def _content(self, name: str) -> bytes:
        h = self.handles[name]
        return h.pread(h.stat().st_size, 0)

    def _run(self, label: str, fn) -> None:  # type: ignore[no-untyped-def]
        self.starts.append(self.pool.mark())
        fn()
        self.ends.append(self.pool.mark())
        self.steps.append(label)
        self.models.append(self.model.copy())
        assert self.vol.fsck() == [], f"live volume unclean after {label}"
        for name, h in self.handles.items():
            for e in h.extents():
                for blk in range(e.pool_offset // BS, (e.pool_offset + e.length) // BS):
                    self.reused += self.owner.get(blk, name) != name
                    self.owner[blk] = name

    def _flush(self, name: str, how: str) -> None:
        """fsync or close the file's handle (reading it first: no other handle may close,
        which would flush it too)."""
        content = self._content(name)
        self.handles[name].fsync() if how == "fsync" else self.handles[name].close()
        if name in self.dirty_in_place:
            self.flushed_in_place[how] += 1
            self.dirty_in_place.discard(name)
        self.model.flushed(name, content)

    def step(self) -> None:
        rng = self.rng
        name = rng.choice(NAMES)
        h = self.handles[name]
        size = self.model.size[name]
        kind = rng.choices(["write", "fsync", "reopen", "truncate", "recreate", "checkpoint"],
                           weights=[10, 3, 2, 2, 1, 1])[0]
        if kind == "write":
            off = rng.choice([rng.randrange(0, size + 1), rng.randrange(0, max(1, size // BS)) * BS,
                              size, rng.randrange(0, MAX_BLOCKS * BS)])
            n = rng.choice([1, 100, BS, rng.randrange(1, 2 * BS)])
            n = max(1, min(n, MAX_BLOCKS * BS - off))
            alpha = _alphabet(NAMES.index(name))
            unit = bytes(rng.choice(alpha) for _ in range(61))
            data = (unit * (n // 61 + 1))[:n]
            if off < size:
                self.dirty_in_place.add(name)       # some of it overwrites bytes the file has

            def write() -> None:
                h.pwrite(data, off)
                self.model.wrote(name, self._content(name))
            self._run(f"pwrite({name!r}, {len(data)} at {off})", write)
        elif kind == "fsync":
            self._run(f"fsync({name!r})", lambda: self._flush(name, "fsync"))
        elif kind == "reopen":
            def reopen() -> None:
                self._flush(name, "close")
                self.handles[name] = self.vol.open(name, "r+b", buffering=0)
            self._run(f"close+reopen({name!r})", reopen)
        elif kind == "truncate":
            new = rng.choice([0, rng.randrange(0, MAX_BLOCKS * BS), rng.randrange(0, size + 1)])

            def truncate() -> None:
                h.truncate(new)
                self.model.truncated(name, self._content(name))
            self._run(f"truncate({name!r}, {new})", truncate)
        elif kind == "recreate":
            def recreate() -> None:
                self._flush(name, "close")           # then open("wb") frees its blocks
                self.handles[name] = self.vol.open(name, "w+b", buffering=0)
                self.model.truncated(name, b"")
            self._run(f"recreate({name!r})", recreate)
        else:
            self._run("checkpoint()", self.vol.checkpoint)

    def check(self) -> dict[str, int]:
        pool = self.pool
        seen = {"images": 0, "lost": 0, "exact-after-flush": 0}
        for e in pool.persist_points() + [len(pool.events)]:
            if e < self.starts[0]:
                continue
            running = next((i for i in range(len(self.steps)) if self.starts[i] <= e < self.ends[i]), None)
            done = sum(1 for end in self.ends if end <= e)
            sides = [self.models[done]] if running is None else [self.models[running], self.models[running + 1]]
            for image in pool.crash_images(e, seed=e):
                where = f"crash at event {e} ({image.variant})" + \
                    (f" inside {self.steps[running]}" if running is not None else f" after {done} steps")
                v = Volume.mount(MemoryPool(image.image))
                try:
                    assert v.fsck() == [], where
                    assert sorted(v.listdir("/")) == list(NAMES), where
                    for name in NAMES:
                        with v.open(name, "rb", buffering=0) as f:
                            data = f.read()
                        sizes = {m.size[name] for m in sides}
                        assert len(data) in sizes, f"{where}: {name} has size {len(data)}, expected {sizes}"
                        versions = [x for m in sides for x in m.versions[name]]
                        ok = _allowed(data, versions)
                        bad = np.flatnonzero(~ok)
                        assert not len(bad), (f"{where}: {name} bytes at {bad[:5]} ({data[bad[0]]}) are "
                                              f"from no write to it since its last flush")
                        latest = sides[-1].versions[name][-1]
                        if data != latest[:len(data)].ljust(len(data), b"\0"):
                            seen["lost"] += 1
                        elif all(len(m.versions[name]) == 1 for m in sides) and data:
                            seen["exact-after-flush"] += 1
                finally:
                    v.close()
                seen["images"] += 1
        return seen


@pytest.mark.parametrize("seed", range(6))
def test_lazy_durability_at_every_persist_point(seed: int) -> None:
    run = LazyRun(seed)
    while len(run.steps) < 60:
        run.step()
    seen = run.check()
    assert seen["lost"] > 0, f"no crash image lost an un-flushed write: is lazy lazy? {seen}"
    assert seen["exact-after-flush"] > 0, seen
    assert run.flushed_in_place["fsync"] + run.flushed_in_place["close"] > 0, run.flushed_in_place
    assert run.reused > 0, "no file got blocks another had: foreign bytes were never possible"
    for h in run.handles.values():
        h.close()
    run.vol.close()


@pytest.mark.parametrize("flush", ["fsync", "close"])
def test_lazy_overwrite_in_place_is_durable_exactly_at_fsync_or_close(flush: str) -> None:
    """Overwrite durable bytes in place: before the flush a crash may show the old bytes
    (and some image does); from the moment fsync or close returns, every image shows the
    new ones."""
    pool, vol = recorded_volume(1 << 20, durability="lazy")
    old = b"o" * (3 * BS)
    with vol.open("f", "wb", buffering=0) as f:
        f.write(old)
    f = vol.open("f", "r+b", buffering=0)
    new = b"n" * (2 * BS + 10)
    written_from = pool.mark()
    f.pwrite(new, 500)
    flush_from = pool.mark()
    f.fsync() if flush == "fsync" else f.close()
    flushed = pool.mark()
    assert flushed > flush_from, "the flush persisted nothing"
    want = old[:500] + new + old[500 + len(new):]
    showed_old = 0
    for e in range(written_from, flushed + 1):
        for image in pool.crash_images(e, seed=e, random_variants=2):
            v = Volume.mount(MemoryPool(image.image))
            try:
                assert v.fsck() == []
                with v.open("f", "rb", buffering=0) as g:
                    data = g.read()
            finally:
                v.close()
            assert len(data) == len(old)
            assert all(x == y or x == z for x, y, z in zip(data, old, want)), f"crash at event {e}: foreign bytes"
            if e >= flushed:
                assert data == want, f"crash at event {e} ({image.variant}), after {flush} returned: data lost"
            elif data != want:
                showed_old += 1
    assert showed_old > 0, "no crash before the flush lost the write: the test cannot tell lazy from sync"
    if not f.closed:
        f.close()
    vol.close()
