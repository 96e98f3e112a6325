"""Pins and crashes, proven at every persist point on a recording pool (seeds 002 and 004).

Pins, holds and the busy list live in memory only.  A run on a RecordingPool
pins files, then unlinks one (an orphan held by its pin), truncates and
punches pinned ranges (blocks parked busy), allocates new files while blocks
are busy, and releases the pins (the busy blocks and the orphan are freed).
For every persist point of that run, each image a power failure could leave
(in-flight stores lost, kept, kept at random, torn) must mount with:

- fsck clean, nothing busy, no pins, and no orphan left (the mount reclaims
  it): every inode has a name;
- no leak: the used bytes are exactly the blocks the surviving files own;
- every call that returned present, the one interrupted all-or-nothing.

The live run itself never hands a busy block to another file.
"""

from __future__ import annotations

from collections.abc import Callable

from daxfs.media import MemoryPool, RecordingPool
from daxfs.testing import snapshot
from daxfs.testing.crash import describe
from daxfs.volume import Volume

POOL = 4 << 20
BS = 4096


def _data(n: int, byte: int) -> bytes:
    return bytes([byte]) * n


def _pool_ranges(segments: list[tuple[int, int, int | None]]) -> list[tuple[int, int]]:
    return [(po, n) for _fo, n, po in segments if po is not None]


def _overlaps(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> bool:
    return any(x < y + m and y < x + n for x, n in a for y, m in b)


def test_pins_orphans_and_busy_blocks_at_every_crash_point() -> None:
    pool = RecordingPool(POOL)
    pool.recording = False
    Volume.format(pool)
    pool.initial = pool.image()
    pool.recording = True
    vol = Volume.mount(pool)
    size = vol.statfs().size

    handles = {}
    for name, n, byte in (("keep", 3, 0x4B), ("gone", 10, 0x47), ("shrunk", 12, 0x53)):
        handles[name] = vol.open(name, "w+b", buffering=0)
        handles[name].pwrite(_data(n * BS, byte), 0)
    holder = vol.holder("dma-engine")
    gone = holder.open("gone", "rb", buffering=0)
    pins = {
        "gone": gone.pin(0, 10 * BS),
        "shrunk": handles["shrunk"].pin(4 * BS, 8 * BS),
        "keep": handles["keep"].pin(BS, BS),
        "inner": handles["shrunk"].pin(6 * BS, 2 * BS),   # inside "shrunk"'s: holds of 1 and 2
    }
    handles.pop("gone").close()
    gone.close()                                     # only the pin holds "gone" now
    pinned_blocks = {name: _pool_ranges(p.segments) for name, p in pins.items()}

    def create(name: str) -> Callable[[], None]:
        return lambda: handles.__setitem__(name, vol.open(name, "w+b", buffering=0))

    def fill(name: str, n: int, byte: int) -> Callable[[], object]:
        """Write ``n`` blocks (0: all free space but ``byte // 16`` blocks, reusing what was freed)."""
        def step() -> object:
            blocks = n or vol.statfs().free // BS - byte // 16
            return handles[name].pwrite(_data(blocks * BS, byte), 0)
        return step

    steps: list[tuple[str, Callable[[], object]]] = [
        ("unlink pinned file", lambda: vol.unlink("gone")),
        ("truncate under a pin", lambda: handles["shrunk"].truncate(2 * BS)),
        ("punch under a pin", lambda: handles["keep"].punch_hole(BS, BS)),
        ("create", create("fresh")),
        ("allocate while busy", fill("fresh", 150, 0x46)),
        ("release the inner pin", lambda: pins["inner"].release()),     # still held: stays busy
        ("release the truncated range", lambda: pins["shrunk"].release()),
        ("create", create("fresh2")),
        ("allocate after release", fill("fresh2", 0, 0x32)),
        ("release the orphan", lambda: holder.close()),
        ("release the punched block", lambda: pins["keep"].release()),
        ("create", create("fresh3")),
        ("allocate again", fill("fresh3", 0, 0x03)),
    ]
    starts: list[int] = []
    ends: list[int] = []
    snaps = [snapshot(vol)]
    for what, step in steps:
        starts.append(pool.mark())
        step()
        ends.append(pool.mark())
        snaps.append(snapshot(vol))
        assert vol.fsck() == [], f"live volume unclean after {what}"
        st = vol.statfs()
        assert st.free + st.used + st.busy == st.size
        if what == "allocate while busy":
            # busy blocks (and the orphan's) are never handed to the new file
            fresh = _pool_ranges([(e.file_offset, e.length, e.pool_offset) for e in handles["fresh"].extents()])
            for name in ("gone", "shrunk", "keep"):
                assert not _overlaps(fresh, pinned_blocks[name]), f"fresh file got {name}'s pinned blocks"
            assert st.busy == 9 * BS                   # 8 truncated + 1 punched
        if what == "release the inner pin":
            assert st.busy == 9 * BS
        if what == "release the truncated range":
            assert st.busy == BS                       # every run of it, not just the first
    assert vol.statfs().busy == 0 and vol.pins() == []

    points = [e for e in pool.persist_points() if e >= starts[0]] + [len(pool.events)]
    seen = {"between": 0, "before": 0, "after": 0}
    for e in points:
        running = next((i for i in range(len(steps)) if starts[i] <= e < ends[i]), None)
        done = sum(1 for i in range(len(steps)) if ends[i] <= e)
        for image in pool.crash_images(e, seed=e):
            after = Volume.mount(MemoryPool(image.image))
            where = f"crash at event {e} ({image.variant})"
            try:
                assert after.fsck() == [], where
                st = after.statfs()
                assert st.busy == 0 and after.pins() == [], where
                names = after.listdir("/")
                assert st.files == 1 + len(names), f"{where}: an orphan survived the mount"
                owned = sum(after.stat(name).st_blocks * 512 for name in names)
                assert st.used == owned and st.free + owned == size, f"{where}: blocks leaked"
                got = snapshot(after)
            finally:
                after.close()
            if running is None:
                assert got == snaps[done], f"{where} after {done} steps: {describe(snaps[done], got)}"
                seen["between"] += 1
            else:
                assert got in (snaps[running], snaps[running + 1]), \
                    f"{where} inside '{steps[running][0]}' is neither before nor after it"
                seen["before" if got == snaps[running] else "after"] += 1
    assert all(seen.values()), f"the crash points missed a side of the steps: {seen}"
    assert vol.statfs().free < 8 * BS                  # the freed busy and orphan blocks were reused
    for f in handles.values():
        f.close()
    vol.close()
