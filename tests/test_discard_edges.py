"""MediaSpace's switches and edges: what turns online discard on and off, what trim counts
and passes over, when the discard thread may start, and how freed runs are coalesced.

The volumes here live in private memory (a memfd: its holes are real, so ``Pool.backing``
says which pages a discard gave back).  Discards are done in the test's own thread
(``flush_discards``, ``trim``) unless a test is about the thread; then it waits for an
outcome a bounded number of times, never for a duration.
"""

from __future__ import annotations

import errno
import random
import threading
import time
from collections.abc import Callable

import pytest

from daxfs.media import MemoryPool
from daxfs.volume import Volume
from daxfs.volume.discard import RESERVE_AHEAD, _coalesce

BS = 4096
MiB = 1 << 20


def quiet_volume(size: int = 16 * MiB, **options: object) -> tuple[MemoryPool, Volume]:
    """A volume whose discards run only when asked (no thread)."""
    pool = MemoryPool(size)
    Volume.format(pool)
    vol = Volume.mount(pool, **options)     # type: ignore[arg-type]
    vol.space.background = False
    return pool, vol


def write_and_free(vol: Volume, path: str, nbytes: int) -> tuple[int, int]:
    """Write ``path`` (``nbytes``), delete it; its first pool offset and its block count."""
    with vol.open(path, "wb") as f:
        f.write(b"\xa5" * nbytes)
        first = f.extents()[0].pool_offset
    vol.unlink(path)
    return first, -(-nbytes // BS)


def is_hole(pool: MemoryPool, offset: int, length: int) -> bool:
    """Whether pool bytes ``[offset, +length)`` are all a hole (given back)."""
    zeros, _unbacked = pool.backing(offset, length)
    return any(s <= offset and offset + length <= s + n for s, n in zeros)


def eventually(check: Callable[[], bool], tries: int = 2000) -> bool:
    """``check`` polled a bounded number of times (a hang detector, no duration asserted)."""
    for _ in range(tries):
        if check():
            return True
        time.sleep(0.005)
    return check()


# ---------------------------------------------------------------- turning it on and off

def test_set_online_off_stops_queueing_and_drops_what_was_queued() -> None:
    pool, vol = quiet_volume()
    space = vol.space
    first, _n = write_and_free(vol, "/a", 8 * BS)
    assert space.queued()
    space.set_online(False)
    assert not space.online and not space.queued() and space.mode() == "off"
    assert vol.flush_discards() == 0 and not is_hole(pool, first, 8 * BS)
    write_and_free(vol, "/b", 8 * BS)
    assert not space.queued()                       # freed while off: not queued
    assert vol.fsck() == []
    vol.close()


def test_set_online_on_again_queues_and_discards() -> None:
    pool, vol = quiet_volume(discard=False)
    space = vol.space
    assert not space.online
    space.set_online(False)
    space.set_online(True)
    assert space.online and space.mode() == "online"
    first, n = write_and_free(vol, "/a", 8 * BS)
    assert space.queued()
    assert vol.flush_discards() == n * BS and is_hole(pool, first, n * BS)
    space.set_online(False)
    space.set_online(None)                          # the medium's default: on for memory
    assert pool.discard_default and space.online
    first, n = write_and_free(vol, "/b", 4 * BS)
    assert vol.flush_discards() == n * BS and is_hole(pool, first, n * BS)
    vol.close()


def test_a_read_only_mount_never_discards_even_when_asked() -> None:
    pool, vol = quiet_volume()
    vol.close()
    ro = Volume.mount(pool, readonly=True, discard=True)      # asked: no error, nothing done
    space = ro.space
    assert not space.capable and not space.online and space.mode() == "unsupported"
    space.set_online(True)
    assert not space.online and space.journal.core.space.on_free is None
    with pytest.raises(OSError) as info:
        ro.trim()
    assert info.value.errno == errno.EOPNOTSUPP and "read-only" in str(info.value)
    ro.close()


def test_asking_for_discard_where_the_medium_cannot_is_refused() -> None:
    pool = MemoryPool(16 * MiB)
    Volume.format(pool)
    pool.discard_granularity = 0                    # as device DAX: nothing to give back
    with pytest.raises(OSError) as info:
        Volume.mount(pool, discard=True)
    assert info.value.errno == errno.EOPNOTSUPP and info.value.filename == pool.name
    assert "cannot give memory back" in str(info.value)
    vol = Volume.mount(pool)                        # not asked: mounted, discard unsupported
    assert vol.space.mode() == "unsupported" and not vol.space.online
    for ask in (True, False):
        if ask:
            with pytest.raises(OSError) as info:
                vol.space.set_online(ask)
            assert info.value.errno == errno.EOPNOTSUPP
        else:
            vol.space.set_online(ask)
        assert not vol.space.online
    with pytest.raises(OSError) as info:
        vol.trim()
    assert info.value.errno == errno.EOPNOTSUPP and pool.name in str(info.value)
    assert vol.flush_discards() == 0
    vol.close()


# ---------------------------------------------------------------- trim

def test_trim_counts_bytes_discarded_where_the_medium_cannot_say_what_it_holds() -> None:
    pool, vol = quiet_volume(discard=False)
    _first, n = write_and_free(vol, "/a", 8 * BS)
    with vol.open("/keep", "wb") as f:
        f.write(b"k" * BS)
    free = vol._core.space.free
    pool.resident = lambda: None                    # type: ignore[method-assign]
    try:
        assert vol.trim() == free * BS              # every free block, in whole pages
        assert vol.trim() == free * BS              # again: a hole may hold memory (fallocate'd)
        assert vol.space.resident() == pool.size
    finally:
        del pool.resident
    vol.close()


def test_trim_gives_back_free_blocks_thought_to_be_holes_that_hold_memory() -> None:
    """A page fallocate'd and never written reads as a hole but holds memory: the volume
    cannot tell, so it lists it as maybe unbacked; trim discards it anyway."""
    pool, vol = quiet_volume(discard=False)
    first, n = write_and_free(vol, "/a", 16 * BS)       # written: memory behind it
    block = (first - vol._layout.data_offset) // BS
    vol._core.space.unbacked.add(block, n)               # as mount would think of such pages
    assert not is_hole(pool, first, n * BS)
    before = pool.resident()
    assert vol.trim() >= n * BS and is_hole(pool, first, n * BS)
    assert before - pool.resident() >= n * BS
    assert vol.fsck() == []
    vol.close()


# ---------------------------------------------------------------- the thread

def test_no_discard_thread_starts_once_the_volume_is_closing() -> None:
    pool = MemoryPool(16 * MiB)
    Volume.format(pool)
    vol = Volume.mount(pool)
    space = vol.space
    assert space.background and space._thread is None
    space.stop()                                    # what close does first
    write_and_free(vol, "/a", 4 * BS)
    assert space._thread is None and space.queued()
    space.resume()                                  # the close was refused: the volume stays
    first, n = write_and_free(vol, "/b", 4 * BS)
    thread = space._thread
    assert thread is not None and thread.daemon and thread.is_alive()   # (never keeps a process up)
    assert eventually(lambda: not space.queued())
    assert is_hole(pool, first, n * BS)
    vol.close()
    assert space._thread is None and not thread.is_alive()


def test_a_refused_close_keeps_the_discard_thread_working() -> None:
    pool = MemoryPool(16 * MiB)
    Volume.format(pool)
    vol = Volume.mount(pool)
    write_and_free(vol, "/a", 4 * BS)               # the thread starts
    real = vol._journal.checkpoint

    def refuse() -> None:
        raise OSError(errno.EIO, "checkpoint refused")

    vol._journal.checkpoint = refuse                # type: ignore[method-assign]
    try:
        with pytest.raises(OSError):
            vol.close()
    finally:
        vol._journal.checkpoint = real              # type: ignore[method-assign]
    assert not vol._journal.closed and not vol.space._stopping
    first, n = write_and_free(vol, "/b", 4 * BS)
    assert eventually(lambda: not vol.space.queued() and is_hole(pool, first, n * BS))
    vol.close()


def test_the_discard_thread_is_named_for_its_pool() -> None:
    pool = MemoryPool(16 * MiB, name="edges")
    Volume.format(pool)
    vol = Volume.mount(pool)
    write_and_free(vol, "/a", 4 * BS)
    assert any(t.name == "daxfs discard edges" for t in threading.enumerate())
    vol.close()


# ---------------------------------------------------------------- coalescing

def test_coalesce_merges_touching_overlapping_and_contained_runs() -> None:
    assert _coalesce([(10, 2), (0, 3), (3, 1), (12, 1), (20, 5), (21, 2), (30, 1)]) == \
        [(0, 4), (10, 3), (20, 5), (30, 1)]
    rng = random.Random(3)
    for _trial in range(200):
        runs = [(rng.randrange(0, 100), rng.randrange(1, 12)) for _ in range(rng.randrange(0, 12))]
        blocks = {b for s, n in runs for b in range(s, s + n)}
        out = _coalesce(list(runs))
        assert {b for s, n in out for b in range(s, s + n)} == blocks
        assert all(s + n < t for (s, n), (t, _k) in zip(out, out[1:]))      # sorted, apart


def test_the_discard_thread_keeps_working_after_it_has_been_idle() -> None:
    """The worker backs off while nothing is queued, and still discards what is freed later."""
    pool = MemoryPool(16 * MiB)
    Volume.format(pool)
    vol = Volume.mount(pool)
    space = vol.space
    idle = [0]
    real_queued = space.queued

    def counted() -> bool:
        got = real_queued()
        if not got and threading.current_thread() is space._thread:
            idle[0] += 1
        return got

    space.queued = counted                          # type: ignore[method-assign]
    for round_ in range(3):
        first, n = write_and_free(vol, f"/f{round_}", 4 * BS)
        assert eventually(lambda: is_hole(pool, first, n * BS)), f"round {round_}: not discarded"
        seen = idle[0]
        assert eventually(lambda: idle[0] >= seen + 2), f"round {round_}: the worker stopped looking"
    assert space._thread is not None and space._thread.is_alive()
    vol.close()


def test_a_medium_that_refuses_a_discard_stops_online_discard_and_says_why() -> None:
    pool = MemoryPool(16 * MiB)
    Volume.format(pool)
    vol = Volume.mount(pool)
    space = vol.space

    def refuse(offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "punching holes is not supported here")

    pool.discard = refuse                           # type: ignore[method-assign]
    try:
        write_and_free(vol, "/a", 4 * BS)
        assert eventually(lambda: space.error is not None)
        assert space.error is not None and space.error.startswith("online discard stopped: ")
        assert "not supported" in space.error and vol.info()["discard"] == space.error
        assert space.online is False and not space.queued()
        write_and_free(vol, "/b", 4 * BS)           # nothing queued any more
        assert not space.queued()
    finally:
        del pool.discard
    space.background = False
    space.set_online(True)                          # the medium works again: on once more
    first, n = write_and_free(vol, "/c", 4 * BS)
    assert space.queued() and vol.flush_discards() == n * BS and is_hole(pool, first, n * BS)
    assert vol.fsck() == []
    vol.close()


# ---------------------------------------------------------------- discard units larger than a block

UNIT = 4          # blocks in a discard unit (a huge page, scaled down)


def unit_volume() -> tuple[MemoryPool, Volume]:
    """A quiet volume whose medium discards whole units of ``UNIT`` blocks (as hugetlbfs
    does 2 MiB pages); units start at data blocks that are multiples of ``UNIT``."""
    pool, vol = quiet_volume()
    assert vol._layout.data_offset % (UNIT * BS) == 0
    vol.space.granularity = UNIT * BS
    return pool, vol


def block_of(vol: Volume, pool_offset: int) -> int:
    return (pool_offset - vol._layout.data_offset) // BS


def offset_of(vol: Volume, block: int) -> int:
    return vol._layout.data_offset + block * BS


def test_only_whole_units_of_free_blocks_are_discarded() -> None:
    pool, vol = unit_volume()
    data = bytes(range(256)) * (16 * BS // 256)
    with vol.open("/a", "wb") as f:
        f.write(data)
        first = block_of(vol, f.extents()[0].pool_offset)
    assert first % UNIT == 0 and vol.flush_discards() == 0
    with vol.open("/a", "r+b") as f:
        f.truncate(6 * BS)                          # frees 6..16: units 8..12 and 12..16 are whole
    assert vol.flush_discards() == 8 * BS
    assert is_hole(pool, offset_of(vol, first + 8), 8 * BS)
    with vol.open("/a", "rb") as f:
        assert f.read() == data[:6 * BS]            # the unit it still shares keeps its bytes
    assert not is_hole(pool, offset_of(vol, first + 6), BS) and not is_hole(pool, offset_of(vol, first + 7), BS)
    with vol.open("/a", "r+b") as f:
        f.truncate(5 * BS)                          # frees 5: its unit 4..8 still has block 4
    assert vol.flush_discards() == 0
    with vol.open("/a", "r+b") as f:
        f.truncate(4 * BS)                          # frees 4: now the unit is whole
    assert vol.flush_discards() == UNIT * BS and is_hole(pool, offset_of(vol, first + 4), UNIT * BS)
    with vol.open("/a", "rb") as f:
        assert f.read() == data[:4 * BS]
    assert vol.fsck() == []
    vol.close()


def test_a_failed_reservation_gives_back_only_whole_units_of_what_it_reserved() -> None:
    """The reservation is undone by punching what it reserved, rounded in: a block of the
    same unit that a file owns keeps its bytes."""
    pool, vol = unit_volume()
    with vol.open("/own", "wb") as f:
        f.write(b"o" * (2 * BS))
        owned = block_of(vol, f.extents()[0].pool_offset)
    assert owned % UNIT == 0
    space = vol._core.space
    space.unbacked.remove(0, vol.space.data_blocks)
    space.unbacked.add(owned + 2, 6)                # holes from the middle of the first unit on

    def full(offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    pool.reserve = full                             # type: ignore[method-assign]
    try:
        with vol.open("/f", "wb", buffering=0) as f:
            with pytest.raises(OSError) as info:
                f.write(b"w" * (6 * BS))
    finally:
        del pool.reserve
    assert info.value.errno == errno.ENOSPC and f"memory left for {6 * BS} more bytes" in str(info.value)
    with vol.open("/own", "rb") as f:
        assert f.read() == b"o" * (2 * BS)
    assert vol.stat("/f").st_size == 0 and vol.fsck() == []
    vol.close()


def test_a_reservation_that_fails_otherwise_is_not_called_enospc() -> None:
    pool, vol = quiet_volume()

    def broken(offset: int, length: int) -> None:
        raise OSError(errno.EIO, "the medium failed")

    pool.reserve = broken                           # type: ignore[method-assign]
    try:
        with vol.open("/f", "wb", buffering=0) as f:
            with pytest.raises(OSError) as info:
                f.write(b"w" * (4 * BS))
    finally:
        del pool.reserve
    assert info.value.errno == errno.EIO and "the medium failed" in str(info.value)
    assert vol._core.space.unbacked.total == vol._core.space.free      # nothing left reserved
    vol.close()


# ---------------------------------------------------------------- reserving ahead

def test_a_write_reserves_the_unbacked_blocks_just_after_it_and_no_others() -> None:
    pool, vol = quiet_volume()
    space = vol._core.space
    start = space.runs()[0][0]
    ahead = RESERVE_AHEAD // BS
    space.unbacked.remove(0, vol.space.data_blocks)     # pretend every block has memory but:
    space.unbacked.add(start, 4 + ahead)                # the write's 4 and the next ones
    space.unbacked.add(start + 4 + ahead + 8, 16)       # and a run further on
    before = pool.resident()
    with vol.open("/f", "wb") as f:
        f.write(b"f" * (4 * BS))
        assert block_of(vol, f.extents()[0].pool_offset) == start
    assert space.unbacked.runs() == [(start + 4 + ahead + 8, 16)]
    assert pool.resident() - before >= (4 + ahead) * BS
    with vol.open("/g", "wb") as f:                     # backed already: nothing reserved ahead
        f.write(b"g" * (4 * BS))
    assert space.unbacked.runs() == [(start + 4 + ahead + 8, 16)]
    space.unbacked.remove(0, vol.space.data_blocks)
    space.unbacked.add(space.runs()[0][0], 2)           # the last unbacked blocks: nothing after
    with vol.open("/h", "wb") as f:
        f.write(b"h" * (2 * BS))
    assert not space.unbacked and vol.fsck() == []
    vol.close()


def test_a_free_part_without_a_whole_unit_does_not_end_the_run_it_is_in() -> None:
    """A queued run is widened to whole units; a free part of it too small for a unit is
    passed over, and the free parts after it are still discarded."""
    pool, vol = unit_volume()
    sizes = {"/x": 1, "/y": 1, "/w": 1, "/z": 13}       # blocks 0, 1, 2, 3..16 of one unit-aligned span
    starts = {}
    for path, n in sizes.items():
        with vol.open(path, "wb") as f:
            f.write(path[1].encode() * (n * BS))
            starts[path] = block_of(vol, f.extents()[0].pool_offset)
    base = starts["/x"]
    assert base % UNIT == 0 and [starts[p] - base for p in sizes] == [0, 1, 2, 3]
    vol.flush_discards()
    vol.unlink("/y")
    assert vol.flush_discards() == 0                    # block 1 alone: no whole unit
    vol.unlink("/z")                                    # queued 3..16, widened to 0..16: free 1, 3..16
    assert vol.flush_discards() == 12 * BS and is_hole(pool, offset_of(vol, base + 4), 12 * BS)
    for path in ("/x", "/w"):
        with vol.open(path, "rb") as f:
            assert f.read() == path[1].encode() * BS
    vol.close()


def test_a_flush_counts_every_queued_run() -> None:
    pool, vol = quiet_volume()
    with vol.open("/a", "wb") as f:
        f.write(b"a" * (3 * BS))
    with vol.open("/keep", "wb") as f:
        f.write(b"k" * BS)
    with vol.open("/b", "wb") as f:
        f.write(b"b" * (5 * BS))
    vol.flush_discards()
    vol.unlink("/a")
    vol.unlink("/b")                                    # two runs apart: two chunks of work
    assert vol.flush_discards() == 8 * BS
    vol.close()


# ---------------------------------------------------------------- what mount learns

def test_mount_learns_exactly_which_free_blocks_are_holes(tmp_path: object) -> None:
    """A sparse pool file: free blocks whose pages are holes are known zero and maybe
    unbacked; a freed block whose page still holds old bytes is neither."""
    import os
    import uuid

    import daxfs

    path = f"/dev/shm/daxfs-edges-{os.getpid()}-{uuid.uuid4().hex}.pool"
    try:
        with daxfs.mkfs(path, 16 * MiB, sparse=True, discard=False) as vol:
            layout = {}
            for name, n in (("/d", 4), ("/c", 8), ("/a", 8), ("/b", 8)):
                with vol.open(name, "wb") as f:
                    f.write(name[1].encode() * (n * BS))
                    layout[name] = (block_of(vol, f.extents()[0].pool_offset), n)
            assert layout["/d"][0] == 0 and [layout[p][0] for p in ("/c", "/a", "/b")] == [4, 12, 20]
            vol.unlink("/c")
            assert vol.trim() > 0                       # /c's blocks are holes now
            vol.unlink("/a")                            # freed, its old bytes stay
            data_blocks = vol.space.data_blocks
        with daxfs.open_volume(path) as vol:
            space = vol._core.space
            expected = [(4, 8), (28, data_blocks - 28)]     # /c's, and all past /b: never written
            assert space.zero.runs() == expected and space.unbacked.runs() == expected
            assert space.free == 8 + 8 + data_blocks - 28
            with vol.open("/n", "wb") as f:             # gets /c's hole, then /a's old blocks
                f.write(b"n" * (8 * BS + 10))
                f.truncate(9 * BS)
            with vol.open("/n", "rb") as f:             # not known zero: zeroed, no "a" shows
                assert f.read() == b"n" * (8 * BS + 10) + bytes(BS - 10)
            vol.unlink("/d")
            vol.unlink("/b")
            vol.unlink("/n")
            vol.trim()
        with daxfs.open_volume(path) as vol:            # every page a hole, block 0 included
            space = vol._core.space
            assert space.zero.runs() == [(0, space.free)] == space.unbacked.runs() == space.runs()
    finally:
        for leftover in (path, path + ".sock", path + ".holders"):
            if os.path.exists(leftover):
                os.unlink(leftover)


def test_a_block_only_partly_a_hole_is_not_known_zero_but_may_lack_memory() -> None:
    """Blocks of two pages: a hole over one page of a free block (at either end of the hole)
    does not make it read as zeros (its other page holds old bytes), but it may lack memory."""
    pool = MemoryPool(16 * MiB)
    Volume.format(pool, block_size=2 * BS)
    vol = Volume.mount(pool, discard=False)
    bs = 2 * BS
    with vol.open("/a", "wb") as f:
        f.write(b"a" * (4 * bs))
        first = f.extents()[0].pool_offset
    vol.unlink("/a")                                # freed with its bytes: neither zero nor a hole
    space = vol._core.space
    block = (first - vol._layout.data_offset) // bs
    assert not space.zero.overlaps(block, 4) and not space.unbacked.overlaps(block, 4)
    pool.discard(first + bs + BS, BS + bs + BS)     # block 1's second page, block 2, block 3's first
    vol.space._learn()                              # what a mount would conclude now
    assert space.zero.parts(block, 4) == [(block + 2, 1)]
    assert space.unbacked.parts(block, 4) == [(block + 1, 3)]
    vol.close()


def test_mount_makes_the_log_durable_before_discarding_on_a_disk_pool(tmp_path: object) -> None:
    """On a file on disk a discard is durable only after a sync, and the state just loaded may
    rest on log records still in the page cache: mount persists the metadata first."""
    import os

    import daxfs
    from daxfs.media import FilePool

    path = os.path.join(str(tmp_path), "disk.pool")
    daxfs.mkfs(path, 16 * MiB, discard=False).close()
    pool = FilePool(path)
    if pool.discards_durable:
        pool.close()
        pytest.skip("the temporary directory is a memory file system here")
    persisted: list[tuple[int, int]] = []
    real = pool.persist

    def spy(offset: int, length: int) -> None:
        persisted.append((offset, length))
        real(offset, length)

    pool.persist = spy                              # type: ignore[method-assign]
    vol = Volume.mount(pool, discard=True)
    assert vol.space.online and (0, vol._layout.data_offset) in persisted
    vol.space.background = False
    vol.space.set_online(False)
    first, n = write_and_free(vol, "/a", 8 * BS)
    block = (first - vol._layout.data_offset) // BS
    space = vol._core.space
    assert not space.zero.overlaps(block, n)
    assert vol.trim() > 0                           # punched, synced, then known zero
    assert space.zero.parts(block, n) == [(block, n)] and space.zero.total == space.free
    vol.close()


def test_close_discards_what_is_still_queued() -> None:
    import os
    import uuid

    import daxfs

    path = f"/dev/shm/daxfs-edges-{os.getpid()}-{uuid.uuid4().hex}.pool"
    try:
        with daxfs.mkfs(path, 16 * MiB) as vol:
            vol.space.background = False
            first, n = write_and_free(vol, "/a", 8 * BS)
            assert vol.space.queued()
        fd = os.open(path, os.O_RDONLY)
        try:
            for offset in range(first, first + n * BS, BS):     # every page of /a is a hole
                try:
                    assert os.lseek(fd, offset, os.SEEK_DATA) != offset
                except OSError as exc:
                    assert exc.errno == errno.ENXIO
        finally:
            os.close(fd)
    finally:
        for leftover in (path, path + ".sock", path + ".holders"):
            if os.path.exists(leftover):
                os.unlink(leftover)


def test_the_worker_gives_up_waiting_for_the_lock_once_the_volume_is_closing() -> None:
    """Whoever closes may hold the volume lock while it waits for the worker: a worker
    waiting for that lock must give up, not go on without it."""
    pool, vol = quiet_volume()
    space = vol.space
    lock = vol._journal.lock
    got: list[bool] = []

    def worker_takes_the_lock() -> None:
        took = space._acquire(True)
        got.append(took)
        if took:
            lock.release()

    with lock:                                      # held here, as a closer might
        space._stopping = True
        waiter = threading.Thread(target=worker_takes_the_lock)
        waiter.start()
        waiter.join()
    assert got == [False]
    space._stopping = False
    waiter = threading.Thread(target=worker_takes_the_lock)
    waiter.start()
    waiter.join()
    assert got == [False, True]
    vol.close()
