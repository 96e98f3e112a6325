"""Crash consistency of sharing blocks: clone, dedupe, copy_file_range and copy-on-write.

Workloads run on a RecordingPool; for every persist point, every image a power
failure could leave (in-flight stores lost, kept, kept at random, torn) is
mounted and must have:

- ``fsck() == []`` -- it rebuilds every block's owners from the extent maps and
  compares refcounts, so a leaked block (owned by nobody, not free) or a double
  free (free and owned) fails it -- and nothing busy;
- every operation that returned present: names, bytes, and the space accounting
  (``statfs().used`` and ``.shared``) exactly as the live volume had them;
- the interrupted operation all-or-nothing, by the strict oracle of
  ``daxfs.testing.crash``: the image is the state before or after it (for a dedupe,
  whose bytes are the same on both sides, the sharing too), except that bytes a write
  overwrites in place -- inside the file, in blocks it owned privately and had written,
  as any in-place store on memory does -- may each be old or new while everything else,
  the file's metadata included, is as before.  What a write puts over shared blocks
  (copy-on-write: fresh blocks), holes and unwritten blocks is all old or all new, and so
  is everything copy_file_range writes (its edges go to fresh blocks).

Seeded workloads (``test_crash_at_every_persist_point``) mix all of them over four
files.  Separate tests name the cases the contract spells out:

- a write over blocks that were all shared goes to fresh blocks, so it is
  all-or-nothing, never torn (``test_cow_write_is_all_or_nothing``), and one over
  private and shared blocks tears only in the private ones;
- copy_file_range (copy the head, share the aligned middle, copy the tail) is one
  operation, even when it grows the destination;
- clone_file (create or truncate the destination, then share) is one operation;
- unlinking one sharer, or the last, and an orphan sharer reclaimed at mount.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import daxfs
from daxfs.media import MemoryPool, RecordingPool
from daxfs.testing import recorded_volume, snapshot
from daxfs.testing.crash import crash_state_error, describe
from daxfs.testing.workload import in_place_ranges
from daxfs.volume import Volume

BS = 4096
POOL_SIZE = 4 << 20
NAMES = ("a", "b", "c", "d")
MAX_BLOCKS = 8


def _fresh_recorded_volume() -> tuple[RecordingPool, Volume]:
    return recorded_volume(POOL_SIZE)


def _accounting(vol: Volume) -> tuple[int, int]:
    sfs = vol.statfs()
    return sfs.used, sfs.shared


def _extents(vol: Volume, path: str) -> list[daxfs.Extent]:
    with vol.open(path, "rb", buffering=0) as f:
        return f.extents()


def _private_blocks(vol: Volume, path: str) -> set[int]:
    """File blocks ``path`` owns alone and has written: the only ones a write may tear."""
    out = set()
    for e in _extents(vol, path):
        if "shared" in e.flags or "unwritten" in e.flags:
            continue
        out.update(range(e.file_offset // BS, (e.file_offset + e.length) // BS))
    return out


# --------------------------------------------------------------------------- ops


@dataclass
class Step:
    """One operation of a workload and what a crash inside it may leave.

    ``check``: "atomic" (before or after, bytes a write overwrites in place excepted:
    ``tearable``, ``{ino: [(lo, hi)]}``), or "dedupe" (before or after, sharing too)."""

    label: str
    fn: Callable[[], Any]
    check: str = "atomic"
    tearable: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.label


def _write_step(rec: "Recorder", label: str, name: str, off: int, n: int, fn: Callable[[], Any]) -> Step:
    """A step that writes ``n`` bytes at ``off`` of ``name``: its in-place bytes may tear."""
    return Step(label, fn, tearable=in_place_ranges(rec.vol, name, off, n))


class Recorder:
    """Runs steps on a recording pool, keeping what each crash image is checked against."""

    def __init__(self) -> None:
        self.pool, self.vol = _fresh_recorded_volume()
        self.steps: list[Step] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.snaps = [snapshot(self.vol)]
        self.accts = [_accounting(self.vol)]
        self.exact_accounting = [True]      # False while an orphan lives (the mount reclaims it)
        self.orphans = 0
        self.seen: Counter = Counter()      # images by outcome: between, before, after, torn

    def run(self, step: Step) -> Any:
        self.starts.append(self.pool.mark())
        result = step.fn()
        self.ends.append(self.pool.mark())
        self.steps.append(step)
        self.snaps.append(snapshot(self.vol))
        self.accts.append(_accounting(self.vol))
        self.exact_accounting.append(self.orphans == 0)
        problems = self.vol.fsck()
        assert problems == [], f"live volume unclean after {step}: {problems}"
        return result

    def check(self, points: list[int] | None = None, *, random_variants: int = 1) -> Counter:
        """Check the crash images at ``points``; return how many showed each outcome."""
        pool = self.pool
        if points is None:
            points = pool.persist_points() + [len(pool.events)]
        self.seen = Counter()
        for e in points:
            running = next((i for i in range(len(self.steps)) if self.starts[i] <= e < self.ends[i]), None)
            done = sum(1 for i in range(len(self.steps)) if self.ends[i] <= e)
            for image in pool.crash_images(e, seed=e, random_variants=random_variants):
                vol = Volume.mount(MemoryPool(image.image))
                try:
                    problems = vol.fsck()
                    where = f"crash at event {e} ({image.variant})"
                    assert problems == [], f"fsck after {where}: {problems}"
                    assert vol.statfs().busy == 0, where
                    got = snapshot(vol)
                    acct = _accounting(vol)
                finally:
                    vol.close()
                if running is None:
                    assert got == self.snaps[done], \
                        f"{where} after {done} steps: {describe(self.snaps[done], got)}"
                    self.seen["between"] += 1
                    if self.exact_accounting[done]:
                        assert acct == self.accts[done], \
                            f"{where} between steps: used/shared {acct}, live {self.accts[done]}"
                else:
                    step = self.steps[running]
                    before, after = self.snaps[running], self.snaps[running + 1]
                    error = crash_state_error(before, after, got, step.tearable)
                    assert error is None, f"{where} inside {step}: {error}; {describe(before, got)}"
                    self.seen["before" if got == before else "after" if got == after else "torn"] += 1
                    if step.check == "dedupe" and self.exact_accounting[running + 1]:
                        assert acct in (self.accts[running], self.accts[running + 1]), \
                            f"{where} inside {step}: used/shared {acct} is neither side"
        return self.seen


# --------------------------------------------------------------------------- seeded workloads


class Workload:
    """Operations drawn from the live state, so that most of them are valid and share blocks."""

    def __init__(self, seed: int, rec: Recorder) -> None:
        self.rng = random.Random(seed)
        self.rec = rec
        self.vol = rec.vol
        self.patterns = [bytes([k]) * BS for k in (0x41, 0x42)]

    def _size(self, name: str) -> int:
        return self.vol.stat(name).st_size

    def setup(self) -> None:
        """Four files of 2..6 blocks of two block patterns (so dedupe finds equal blocks)."""
        rng = self.rng
        for name in NAMES:
            data = b"".join(rng.choice(self.patterns) for _ in range(rng.randrange(2, 7)))
            _fill(self.rec, name, data[:len(data) - rng.choice([0, 0, 100])])

    def _existing(self) -> list[str]:
        return [n for n in NAMES if self.vol.exists(n)]

    def _data(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.5:
            return b"".join(rng.choice(self.patterns) for _ in range(rng.randrange(1, 3)))
        return bytes([rng.randrange(1, 256)]) * rng.choice([1, 100, BS - 1, BS + 7, 2 * BS + 300])

    def step(self) -> None:
        rng, vol = self.rng, self.vol
        names = self._existing()
        if len(names) < 2 or rng.random() < 0.05:
            name = rng.choice([n for n in NAMES if n not in names] or list(NAMES))
            self.rec.run(Step(f"create({name!r})", lambda: vol.open(name, "wb", buffering=0).close()))
            return
        kind = rng.choices(["write", "cow", "clone", "clone_all", "dedupe", "copy", "truncate", "punch",
                            "zero", "fallocate", "unlink", "checkpoint"],
                           weights=[4, 5, 7, 2, 4, 3, 2, 2, 2, 1, 1, 1])[0]
        getattr(self, "_" + kind)(names)

    def _pwrite(self, name: str, data: bytes, off: int, what: str) -> None:
        vol = self.vol

        def fn() -> int:
            with vol.open(name, "r+b", buffering=0) as f:
                return f.pwrite(data, off)
        self.rec.run(_write_step(self.rec, f"{what}({name!r}, {data[:1]!r} * {len(data)}, {off})", name, off,
                                 len(data), fn))

    def _write(self, names: list[str]) -> None:
        name = self.rng.choice(names)
        size = self._size(name)
        off = self.rng.choice([self.rng.randrange(0, size // BS + 2) * BS, size, self.rng.randrange(0, size + 1)])
        data = self._data()
        if len(data) + off > MAX_BLOCKS * BS:
            off = 0
        self._pwrite(name, data, off, "pwrite")

    def _cow(self, names: list[str]) -> None:
        """A write into blocks the file shares (falls back to any write)."""
        rng = self.rng
        shared = [(n, e) for n in names for e in _extents(self.vol, n) if "shared" in e.flags]
        if not shared:
            return self._write(names)
        name, e = rng.choice(shared)
        off = e.file_offset + rng.randrange(0, e.length)
        n = rng.choice([1, 50, BS, e.length - (off - e.file_offset)])
        size = self._size(name)
        off = min(off, size)
        self._pwrite(name, bytes([rng.randrange(1, 256)]) * max(1, n), off, "cow_pwrite")

    def _clone(self, names: list[str]) -> None:
        rng, vol = self.rng, self.vol
        src = rng.choice(names)
        ssize = self._size(src)
        if ssize == 0:
            return self._write([src])
        so = rng.randrange(0, -(-ssize // BS)) * BS
        length = rng.choice([min(rng.randrange(1, 4) * BS, ssize - so), ssize - so])
        dst = rng.choice(names)
        dsize = self._size(dst)
        lo = -(-max(0, dsize - length) // BS) if length % BS else 0
        do = rng.randrange(lo, max(lo, MAX_BLOCKS - 1) + 1) * BS
        nblk = -(-length // BS)
        if src == dst and so // BS < do // BS + nblk and do // BS < so // BS + nblk:
            return
        self.rec.run(Step(f"clone_range({src!r}, {so}, {dst!r}, {do}, {length})",
                          lambda: vol.clone_range(src, so, dst, do, length)))

    def _clone_all(self, names: list[str]) -> None:
        """FICLONE: the whole source over the start of another file."""
        src, dst = self.rng.sample(names, 2)
        ssize, dsize = self._size(src), self._size(dst)
        if ssize % BS and dsize > ssize:
            self.rec.run(Step(f"truncate({dst!r}, {ssize})", lambda: self._truncate_to(dst, ssize)))
        self.rec.run(Step(f"clone_range({src!r}, 0, {dst!r}, 0, 0)", lambda: self.vol.clone_range(src, 0, dst, 0, 0)))

    def _truncate_to(self, name: str, size: int) -> None:
        with self.vol.open(name, "r+b", buffering=0) as f:
            f.truncate(size)

    def _dedupe(self, names: list[str]) -> None:
        rng, vol = self.rng, self.vol
        src, dst = rng.choice(names), rng.choice(names)
        ssize, dsize = self._size(src), self._size(dst)
        so = rng.randrange(0, ssize // BS + 1) * BS
        do = rng.randrange(0, dsize // BS + 1) * BS
        length = max(0, min(ssize - so, dsize - do, rng.randrange(1, 4) * BS))
        if src == dst and length and so // BS < do // BS + -(-length // BS) and do // BS < so // BS + -(-length // BS):
            return
        self.rec.run(Step(f"dedupe_range({src!r}, {so}, {dst!r}, {do}, {length})",
                          lambda: vol.dedupe_range(src, so, dst, do, length), "dedupe"))

    def _copy(self, names: list[str]) -> None:
        """copy_file_range inside the destination's size (growing it: see
        test_copy_file_range_is_all_or_nothing)."""
        rng, vol = self.rng, self.vol
        src, dst = rng.choice(names), rng.choice(names)
        ssize, dsize = self._size(src), self._size(dst)
        so = rng.choice([rng.randrange(0, ssize // BS + 1) * BS, rng.randrange(0, ssize + 1)])
        do = so % BS + rng.randrange(0, MAX_BLOCKS - 2) * BS if rng.random() < 0.6 else rng.randrange(0, 6 * BS)
        length = rng.choice([BS, 2 * BS, rng.randrange(1, 3 * BS), ssize])
        length = max(0, min(length, dsize - do))
        n = max(0, min(length, ssize - so))
        if n == 0 or (src == dst and so < do + n and do < so + n):
            return
        self.rec.run(Step(f"copy_file_range({src!r}, {so}, {dst!r}, {do}, {length})",
                          lambda: vol.copy_file_range(src, so, dst, do, length)))

    def _on(self, names: list[str], label: str, call: Callable[[daxfs.File], Any]) -> None:
        name = self.rng.choice(names)

        def fn() -> Any:
            with self.vol.open(name, "r+b", buffering=0) as f:
                return call(f)
        self.rec.run(Step(f"{label} on {name!r}", fn))

    def _truncate(self, names: list[str]) -> None:
        size = self.rng.choice([0, self.rng.randrange(0, MAX_BLOCKS * BS), self.rng.randrange(0, MAX_BLOCKS) * BS])
        self._on(names, f"truncate({size})", lambda f: f.truncate(size))

    def _punch(self, names: list[str]) -> None:
        off, n = self.rng.randrange(0, 6 * BS), self.rng.randrange(1, 3 * BS)
        self._on(names, f"punch_hole({off}, {n})", lambda f: f.punch_hole(off, n))

    def _zero(self, names: list[str]) -> None:
        off, n, keep = self.rng.randrange(0, 6 * BS), self.rng.randrange(1, 3 * BS), self.rng.random() < 0.5
        self._on(names, f"zero_range({off}, {n}, keep_size={keep})", lambda f: f.zero_range(off, n, keep_size=keep))

    def _fallocate(self, names: list[str]) -> None:
        off, n, keep = self.rng.randrange(0, 6 * BS), self.rng.randrange(1, 3 * BS), self.rng.random() < 0.5
        self._on(names, f"fallocate({off}, {n}, keep_size={keep})", lambda f: f.fallocate(off, n, keep_size=keep))

    def _unlink(self, names: list[str]) -> None:
        name = self.rng.choice(names)
        self.rec.run(Step(f"unlink({name!r})", lambda: self.vol.unlink(name)))

    def _checkpoint(self, names: list[str]) -> None:
        self.rec.run(Step("checkpoint()", self.vol.checkpoint))


@pytest.mark.parametrize("seed", range(8))
def test_crash_at_every_persist_point(seed: int) -> None:
    rec = Recorder()
    work = Workload(seed, rec)
    work.setup()
    while len(rec.steps) < 40:
        work.step()
    shared_ever = any(acct[1] for acct in rec.accts)
    assert shared_ever, "the workload never shared a block"
    seen = rec.check()
    assert seen["between"] > 0 and seen["before"] > 0 and seen["after"] > 0, seen
    rec.vol.close()


# --------------------------------------------------------------------------- named cases


def _fill(rec: Recorder, name: str, data: bytes) -> None:
    """Create ``name`` and write ``data`` into it: two steps (a create, then a write)."""
    rec.run(Step(f"create {name}", lambda: rec.vol.open(name, "wb", buffering=0).close()))

    def write() -> int:
        with rec.vol.open(name, "r+b", buffering=0) as f:
            return f.pwrite(data, 0)
    rec.run(_write_step(rec, f"write {name}", name, 0, len(data), write))


def _two_sharers(rec: Recorder, nblocks: int = 4, tail: int = 0) -> bytes:
    data = random.Random(5).randbytes(nblocks * BS + tail)
    _fill(rec, "a", data)
    rec.run(Step("create b", lambda: rec.vol.open("b", "wb", buffering=0).close()))
    rec.run(Step("clone a to b", lambda: rec.vol.clone_range("a", 0, "b", 0, 0)))
    return data


@pytest.mark.parametrize(("tail", "offset", "length"), [
    (0, BS + 100, 2 * BS), (0, 0, 4 * BS), (0, 3 * BS - 8, 16),
    (100, 4 * BS + 50, 200),            # over the shared, partial EOF block, growing the file
    (100, BS + 100, 3 * BS + 100),      # shared whole blocks and the shared EOF block, growing it
])
def test_cow_write_is_all_or_nothing(tail: int, offset: int, length: int) -> None:
    """Every block the write touches was shared: the write goes to fresh blocks and no crash
    image shows part of it (nor any change to the other sharer)."""
    rec = Recorder()
    _two_sharers(rec, 4, tail)
    assert _private_blocks(rec.vol, "b") == set()

    def write() -> int:
        with rec.vol.open("b", "r+b", buffering=0) as f:
            return f.pwrite(bytes([0xEE]) * length, offset)
    step = _write_step(rec, f"cow_pwrite('b', 0xEE * {length}, {offset})", "b", offset, length, write)
    assert step.tearable == {}
    rec.run(step)
    seen = rec.check(list(range(rec.starts[-1], len(rec.pool.events) + 1)), random_variants=3)
    assert seen["before"] > 0 and seen["after"] > 0 and seen["torn"] == 0, seen
    rec.vol.close()


def test_cow_write_may_tear_only_in_private_blocks() -> None:
    """A write over one private and one shared block: only the private one may tear."""
    rec = Recorder()
    _two_sharers(rec)

    def own_block() -> int:
        with rec.vol.open("b", "r+b", buffering=0) as f:
            return f.pwrite(b"p" * BS, 0)          # block 0 of b is now b's alone
    rec.run(_write_step(rec, "private block 0 of b", "b", 0, BS, own_block))
    private = _private_blocks(rec.vol, "b")
    assert private == {0}

    def write() -> int:
        with rec.vol.open("b", "r+b", buffering=0) as f:
            return f.pwrite(bytes([0xEE]) * (2 * BS), 0)
    step = _write_step(rec, "pwrite('b', 0xEE * 8192, 0)", "b", 0, 2 * BS, write)
    assert list(step.tearable.values()) == [[(0, BS)]]        # block 0 only: block 1 is shared
    rec.run(step)
    seen = rec.check(list(range(rec.starts[-1], len(rec.pool.events) + 1)), random_variants=3)
    assert seen["before"] > 0 and seen["after"] > 0, seen
    rec.vol.close()


@pytest.mark.parametrize(("so", "do", "length"), [(100, 100, 3 * BS), (0, 0, 3 * BS + 100), (0, BS, 2 * BS)])
def test_copy_file_range_is_all_or_nothing(so: int, do: int, length: int) -> None:
    """A copy that grows an empty destination, sharing the aligned middle and copying the
    rest: no crash image shows a size or bytes from part of it."""
    rec = Recorder()
    _fill(rec, "a", random.Random(8).randbytes(3 * BS + 100))
    rec.run(Step("create b", lambda: rec.vol.open("b", "wb", buffering=0).close()))
    rec.run(Step(f"copy_file_range('a', {so}, 'b', {do}, {length})",
                 lambda: rec.vol.copy_file_range("a", so, "b", do, length)))
    seen = rec.check(list(range(rec.starts[-1], len(rec.pool.events) + 1)), random_variants=2)
    assert seen["before"] > 0 and seen["after"] > 0, seen
    rec.vol.close()


@pytest.mark.parametrize("dst_exists", [False, True])
def test_clone_file_is_all_or_nothing(dst_exists: bool) -> None:
    rec = Recorder()
    data = random.Random(6).randbytes(3 * BS + 50)

    _fill(rec, "a", data)
    if dst_exists:
        _fill(rec, "b", b"old" * 3000)
    rec.run(Step("clone_file('a', 'b')", lambda: rec.vol.clone_file("a", "b")))
    rec.check(random_variants=2)
    rec.vol.close()


def test_unlinking_sharers_at_every_crash_point() -> None:
    """Unlink one of three sharers, COW in another, unlink the rest: nothing leaks, nothing is
    freed twice, and the survivors keep their bytes."""
    rec = Recorder()
    _two_sharers(rec, 5, 123)
    vol = rec.vol
    rec.run(Step("create c", lambda: vol.open("c", "wb", buffering=0).close()))
    rec.run(Step("clone a to c", lambda: vol.clone_range("a", 0, "c", 0, 0)))
    rec.run(Step("unlink a", lambda: vol.unlink("a")))

    def cow() -> int:
        with vol.open("b", "r+b", buffering=0) as f:
            return f.pwrite(b"z" * 10, 2 * BS + 5)
    rec.run(_write_step(rec, "cow b", "b", 2 * BS + 5, 10, cow))
    rec.run(Step("dedupe c into b", lambda: vol.dedupe_range("c", 0, "b", 0, 5 * BS + 123), "dedupe"))
    rec.run(Step("unlink b", lambda: vol.unlink("b")))
    rec.run(Step("unlink c", lambda: vol.unlink("c")))
    assert rec.accts[-1] == rec.accts[0]
    rec.check(random_variants=2)
    vol.close()


def test_orphan_sharer_is_reclaimed_at_mount() -> None:
    """A sharer unlinked while a handle holds it, then cloned from: after a crash the mount
    reclaims the orphan and the refcounts of the blocks it shared come out right."""
    rec = Recorder()
    data = _two_sharers(rec, 4)
    vol = rec.vol
    held = vol.open("a", "r+b", buffering=0)
    rec.orphans += 1
    rec.run(Step("unlink a (held)", lambda: vol.unlink("a")))
    rec.run(Step("create c", lambda: vol.open("c", "wb", buffering=0).close()))
    rec.run(Step("clone the orphan into c", lambda: vol.clone_range(held, BS, "c", 0, 2 * BS)))
    rec.run(Step("cow in the orphan", lambda: held.pwrite(b"o" * 100, 2 * BS)))   # no name: not in snapshots
    rec.run(Step("clone c over a shared block of b", lambda: vol.clone_range("c", 0, "b", 3 * BS, BS)))
    rec.orphans -= 1
    rec.run(Step("close the orphan", held.close))
    with vol.open("c", "rb", buffering=0) as f:
        assert f.read() == data[BS:3 * BS]
    rec.check(random_variants=2)
    vol.close()
