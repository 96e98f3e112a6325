"""The media layer's edges: FilePool (the pool over a file) and PoolView (mapping views).

What these tests pin down, found by a mutation run over ``media/_file.py`` and
``media/_view.py``:

- ``persist`` msyncs exactly the pages covering the range (from the page holding its
  first byte, to its last byte, never past the pool), and nothing for a read-only or
  memory-only pool or an empty range; ``PoolView.persist`` the same over the view.
- ``sync_discards`` fdatasyncs a writable pool file on disk only (never memory, a
  read-only pool); ``share_unlock`` drops a reader's shared lock, never the writer's
  exclusive one, and is a no-op once the pool is closed.
- ``prefault`` maps in (allocates) the pages covering an unaligned range, and stops
  asking once the kernel refused.
- ``reserve`` allocates the pages a range touches, skips an empty range and a read-only
  pool, and names the range, reason and pool when it fails; ``write_fresh`` goes through
  the file from ``fresh_write_min`` bytes on (only there), carries on after a short write,
  and ``zero`` clears exactly its range; ``discard`` refuses a read-only pool and a medium
  that cannot give memory back.
- PoolView: a view reserves room to align to 2 MiB only from 2 MiB on; a range outside the
  view or not page-aligned is refused before anything is mapped, and a mapping the kernel
  refuses is an OSError with its errno; ``map_pool`` populates only when asked; ``fence``
  fences the pages an unaligned range touches, merges fences into sorted disjoint ranges,
  returns True, and does nothing for an empty range; ``migrate`` keeps the bytes around
  fences and the fences, and detaches the view from the pool.

Durability itself cannot be observed without a power cut: the tests watch which msync or
fdatasync calls the pool makes, through a recorder around the real call.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import daxfs.media._view as view_module
from daxfs.media import FilePool, MemoryPool, PoolView, flock_holders
from daxfs.media._view import HUGE

PAGE = mmap.PAGESIZE
MiB = 1 << 20


class FlushSpy:
    """Stands in for a pool's ``mmap`` object: records ``flush`` and ``madvise`` calls and
    passes them (and everything else) to the real one."""

    def __init__(self, real: mmap.mmap, *, refuse_madvise: bool = False) -> None:
        self.real = real
        self.flushes: list[tuple[int, int]] = []
        self.madvises: list[tuple[int, int, int]] = []
        self.refuse_madvise = refuse_madvise

    def flush(self, offset: int, size: int) -> None:
        self.flushes.append((offset, size))
        self.real.flush(offset, size)

    def madvise(self, option: int, start: int, length: int) -> None:
        self.madvises.append((option, start, length))
        if self.refuse_madvise:
            raise OSError(errno.EINVAL, "refused by the test")
        self.real.madvise(option, start, length)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def __getitem__(self, key: slice) -> bytes:
        return self.real[key]


@pytest.fixture
def disk_pool(tmp_path: Path) -> Iterator[FilePool]:
    """A writable 1 MiB + 1 page FilePool on the temporary directory's file system (skipped
    where that is memory: then persist has nothing to do)."""
    pool = FilePool(str(tmp_path / "disk.pool"), create_size=MiB + PAGE)
    if pool.sync_mode == "memory":
        pool.close()
        pytest.skip("the temporary directory is a memory file system here")
    yield pool
    pool.close()


def spy_on(pool: FilePool, **kw: bool) -> FlushSpy:
    spy = FlushSpy(pool._mmap, **kw)
    pool._mmap = spy  # type: ignore[assignment]
    return spy


def unspy(pool: FilePool, spy: FlushSpy) -> None:
    pool._mmap = spy.real


# ---------------------------------------------------------------- FilePool.persist


@pytest.mark.parametrize("offset, length, expect", [
    (0, 1, (0, 1)),                                   # one byte: from its page's start
    (PAGE + 5, 10, (PAGE, 15)),                       # unaligned: rounded down to the page
    (3 * PAGE - 1, 2, (2 * PAGE, PAGE + 1)),          # across a page boundary
    (MiB, PAGE, (MiB, PAGE)),                         # the pool's last page, exactly
    (MiB + 7, 10 * PAGE, (MiB, PAGE)),                # past the end: cut at the pool's size
])
def test_persist_flushes_the_pages_covering_the_range(disk_pool: FilePool, offset: int, length: int,
                                                      expect: tuple[int, int]) -> None:
    disk_pool.write(offset, b"x")
    spy = spy_on(disk_pool)
    try:
        disk_pool.persist(offset, length)
    finally:
        unspy(disk_pool, spy)
    assert spy.flushes == [expect]


@pytest.mark.parametrize("length", [0, -1])
def test_persist_of_an_empty_range_flushes_nothing(disk_pool: FilePool, length: int) -> None:
    spy = spy_on(disk_pool)
    try:
        disk_pool.persist(PAGE, length)
    finally:
        unspy(disk_pool, spy)
    assert spy.flushes == []


def test_persist_of_a_read_only_or_memory_pool_flushes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "ro.pool")
    FilePool(path, create_size=4 * PAGE).close()
    ro = FilePool(path, readonly=True)
    shm = f"/dev/shm/daxfs-media-edges-{os.getpid()}.pool"
    mem = FilePool(shm, create_size=4 * PAGE, exclusive_create=True)
    try:
        assert mem.sync_mode == "memory"
        for pool in (ro, mem):
            spy = spy_on(pool)
            try:
                pool.persist(0, PAGE)
            finally:
                unspy(pool, spy)
            assert spy.flushes == []
    finally:
        ro.close()
        mem.close()
        os.unlink(shm)


# ---------------------------------------------------------------- sync_discards


def record_fdatasync(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    return calls


def test_sync_discards_fdatasyncs_a_writable_pool_file_on_disk(disk_pool: FilePool,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = record_fdatasync(monkeypatch)
    disk_pool.sync_discards()
    assert calls == [disk_pool.fileno]


def test_sync_discards_of_memory_or_a_read_only_pool_does_nothing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "ro.pool")
    FilePool(path, create_size=4 * PAGE).close()
    ro = FilePool(path, readonly=True)
    mem = MemoryPool(4 * PAGE)              # a memfd: a regular file, in memory
    calls = record_fdatasync(monkeypatch)
    try:
        assert mem.discards_durable and not ro.discards_durable
        ro.sync_discards()
        mem.sync_discards()
    finally:
        ro.close()
    assert calls == []


# ---------------------------------------------------------------- share_lock / share_unlock


def my_locks(path: str) -> list[bool]:
    """Whether each flock this process holds on ``path`` is exclusive."""
    found = flock_holders(path)
    assert found is not None
    return [exclusive for pid, exclusive in found if pid == os.getpid()]


def test_share_unlock_drops_a_readers_lock_and_never_the_writers(tmp_path: Path) -> None:
    path = str(tmp_path / "locks.pool")
    writer = FilePool(path, create_size=4 * PAGE, lock=True)
    try:
        assert my_locks(path) == [True]
        writer.share_unlock()                           # the writer's exclusive lock stays
        assert my_locks(path) == [True]
        with pytest.raises(BlockingIOError):
            FilePool(path, lock=True)
    finally:
        writer.close()
    assert my_locks(path) == []
    writer.share_unlock()                               # closed: nothing to do, no EBADF

    reader = FilePool(path, readonly=True)
    try:
        assert reader.share_lock()
        assert my_locks(path) == [False]
        reader.share_unlock()
        assert my_locks(path) == []
    finally:
        reader.close()
    reader.share_unlock()


# ---------------------------------------------------------------- prefault


def test_prefault_allocates_the_pages_an_unaligned_range_covers() -> None:
    shm = f"/dev/shm/daxfs-media-prefault-{os.getpid()}.pool"
    pool = FilePool(shm, create_size=64 * PAGE, exclusive_create=True, preallocate=False)
    try:
        assert pool.resident() == 0
        pool.prefault(0, PAGE)
        if pool.resident() == 0:
            pytest.skip("this kernel has no MADV_POPULATE_WRITE")
        assert pool.resident() == PAGE
        pool.prefault(3 * PAGE + 100, 2 * PAGE)         # touches pages 3, 4 and 5
        assert pool.resident() == 4 * PAGE
        assert pool.backing(0, 64 * PAGE)[0] == [(PAGE, 2 * PAGE), (6 * PAGE, 58 * PAGE)]
    finally:
        pool.close()
        os.unlink(shm)


def test_prefault_stops_asking_once_the_kernel_refused() -> None:
    pool = MemoryPool(16 * PAGE)
    spy = spy_on(pool, refuse_madvise=True)
    try:
        pool.prefault(0, PAGE)
        pool.prefault(PAGE, PAGE)
    finally:
        unspy(pool, spy)
    assert len(spy.madvises) == 1


# ---------------------------------------------------------------- PoolView


@pytest.fixture
def mem_pool() -> MemoryPool:
    pool = MemoryPool(64 * PAGE)
    pool.write(0, bytes(range(256)) * (64 * PAGE // 256))
    return pool


def test_fence_covers_every_page_an_unaligned_range_touches(mem_pool: MemoryPool) -> None:
    view = mem_pool.map_view(8 * PAGE, writable=False)
    try:
        view.map_pool(0, 8 * PAGE, 0)
        assert view.fence(PAGE + 10, PAGE) is True      # bytes in pages 1 and 2
        assert view.fenced == [(PAGE, 2 * PAGE)]
        assert view.fence(5 * PAGE + 1, 1) is True
        assert view.fenced == [(PAGE, 2 * PAGE), (5 * PAGE, PAGE)]
        buf = view.buffer(0, 8 * PAGE)
        assert bytes(buf[:PAGE]) == mem_pool.read(0, PAGE)          # untouched around them
        assert bytes(buf[3 * PAGE:5 * PAGE]) == mem_pool.read(3 * PAGE, 2 * PAGE)
        buf.release()
    finally:
        view.release()


@pytest.mark.parametrize("offset, length", [(2 * PAGE, 0), (8 * PAGE, PAGE), (9 * PAGE, 1)])
def test_fence_of_nothing_inside_the_view_fences_nothing(mem_pool: MemoryPool, offset: int,
                                                         length: int) -> None:
    view = mem_pool.map_view(8 * PAGE, writable=False)
    try:
        view.map_pool(0, 8 * PAGE, 0)
        assert view.fence(offset, length) is True
        assert view.fenced == []
        buf = view.buffer(0, 8 * PAGE)
        assert bytes(buf) == mem_pool.read(0, 8 * PAGE)
        buf.release()
    finally:
        view.release()


def record_msync(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    calls: list[tuple[int, int, int]] = []
    real = view_module._c_msync

    def spy(address: int, length: int, flags: int) -> int:
        calls.append((address, length, flags))
        return real(address, length, flags)

    monkeypatch.setattr(view_module, "_c_msync", spy)
    return calls


@pytest.mark.parametrize("offset, length, expect", [
    (0, 1, (0, PAGE)),
    (PAGE + 5, 10, (PAGE, PAGE)),                      # rounded out to whole pages
    (3 * PAGE - 1, 2, (2 * PAGE, 2 * PAGE)),
    (6 * PAGE, 10 * PAGE, (6 * PAGE, 2 * PAGE)),       # cut at the view's end
])
def test_view_persist_msyncs_the_pages_covering_the_range(disk_pool: FilePool, monkeypatch: pytest.MonkeyPatch,
                                                          offset: int, length: int,
                                                          expect: tuple[int, int]) -> None:
    view = disk_pool.map_view(8 * PAGE, writable=True)
    try:
        view.map_pool(0, 8 * PAGE, 4 * PAGE)
        buf = view.buffer(0, 8 * PAGE)
        buf[offset % (8 * PAGE)] = 7
        buf.release()
        calls = record_msync(monkeypatch)
        view.persist(offset, length)
        assert calls == [(view.address + expect[0], expect[1], 4)]          # MS_SYNC
        assert disk_pool.read(4 * PAGE + offset % (8 * PAGE), 1) == b"\x07"
    finally:
        view.release()


@pytest.mark.parametrize("offset, length", [(PAGE, 0), (8 * PAGE, PAGE)])
def test_view_persist_of_nothing_inside_the_view_msyncs_nothing(disk_pool: FilePool,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                offset: int, length: int) -> None:
    view = disk_pool.map_view(8 * PAGE, writable=True)
    try:
        calls = record_msync(monkeypatch)
        view.persist(offset, length)
        assert calls == []
    finally:
        view.release()


def test_view_persist_failing_is_an_oserror(monkeypatch: pytest.MonkeyPatch) -> None:
    view = PoolView(-1, 4 * PAGE, writable=True)
    try:
        monkeypatch.setattr(view_module, "_c_msync", lambda a, n, f: (-1))
        monkeypatch.setattr(view_module.ctypes, "get_errno", lambda: errno.EIO)
        with pytest.raises(OSError) as info:
            view.persist(0, PAGE)
        assert info.value.errno == errno.EIO
        assert "msync failed" in str(info.value)
    finally:
        view.release()


def test_migrate_keeps_the_bytes_around_fences_and_the_fences(mem_pool: MemoryPool) -> None:
    view = mem_pool.map_view(8 * PAGE, writable=True)
    try:
        view.map_pool(0, 8 * PAGE, 0)
        view.fence(2 * PAGE, PAGE)
        view.fence(5 * PAGE, 2 * PAGE)
        assert view._accessible() == [(0, 2 * PAGE), (3 * PAGE, 2 * PAGE), (7 * PAGE, PAGE)]
        view.migrate()
        assert view.fenced == [(2 * PAGE, PAGE), (5 * PAGE, 2 * PAGE)]
        buf = view.buffer(0, 8 * PAGE)
        for s, n in view._accessible():
            assert bytes(buf[s:s + n]) == mem_pool.read(s, n)
        buf[0] = 0xEE                                   # private now: the pool keeps its byte
        buf[3 * PAGE] = 0xEE
        assert buf[0] == 0xEE and mem_pool.read(0, 1) == b"\x00"
        assert mem_pool.read(3 * PAGE, 1) == b"\x00"
        buf.release()
    finally:
        view.release()


def test_accessible_ranges_of_a_view_fenced_at_both_ends() -> None:
    view = PoolView(-1, 6 * PAGE, writable=True)
    try:
        assert view._accessible() == [(0, 6 * PAGE)]
        view.fence(0, PAGE)
        view.fence(5 * PAGE, PAGE)
        assert view._accessible() == [(PAGE, 4 * PAGE)]
    finally:
        view.release()


# ---------------------------------------------------------------- reserve


def test_reserve_allocates_the_range_and_skips_what_needs_nothing(tmp_path: Path) -> None:
    shm = f"/dev/shm/daxfs-media-reserve-{os.getpid()}.pool"
    pool = FilePool(shm, create_size=16 * PAGE, exclusive_create=True, preallocate=False)
    try:
        pool.reserve(4 * PAGE, 0)                       # nothing to reserve: no EINVAL
        pool.reserve(4 * PAGE, -PAGE)
        assert pool.resident() == 0
        pool.reserve(4 * PAGE, 1)                       # one byte: its whole page
        assert pool.resident() == PAGE
        pool.reserve(8 * PAGE + 1, 2 * PAGE)
        assert pool.resident() == 4 * PAGE
    finally:
        pool.close()
        os.unlink(shm)
    path = str(tmp_path / "ro.pool")
    FilePool(path, create_size=4 * PAGE).close()
    with FilePool(path, readonly=True) as ro:
        ro.reserve(0, PAGE)                             # read-only: nothing (no EBADF)


def test_reserve_that_fails_names_the_range_the_reason_and_the_pool() -> None:
    shm = f"/dev/shm/daxfs-media-reserve-{os.getpid()}.pool"
    pool = FilePool(shm, create_size=16 * PAGE, exclusive_create=True, preallocate=False)
    try:
        with pytest.raises(OSError) as info:
            pool.reserve((1 << 63) - PAGE, 2 * PAGE)    # past the largest file: EFBIG
        err = info.value
        assert err.errno == errno.EFBIG
        assert err.filename == shm
        assert err.strerror == (f"cannot reserve memory for pool bytes [{(1 << 63) - PAGE:#x}, +{2 * PAGE:#x}): "
                                f"{os.strerror(errno.EFBIG)}")
        assert err.__cause__ is None and err.__suppress_context__
    finally:
        pool.close()
        os.unlink(shm)


# ---------------------------------------------------------------- write_fresh


def record_pwrite(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(offset, length) of every os.pwrite, passed on to the real one."""
    calls: list[tuple[int, int]] = []
    real = os.pwrite

    def spy(fd: int, data: memoryview, offset: int) -> int:
        calls.append((offset, len(data)))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", spy)
    return calls


def test_write_fresh_goes_through_the_file_from_its_threshold_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import array

    pool = MemoryPool(1 * MiB)                          # a memfd: tmpfs, where the file route pays
    assert pool.fresh_write_min == 64 * 1024
    small = bytes(range(256)) * (pool.fresh_write_min // 256 - 1) + b"\x01" * 255
    exact = bytearray(b"\x5a" * pool.fresh_write_min)
    words = array.array("I", range(pool.fresh_write_min))     # 4-byte items: cast to bytes
    calls = record_pwrite(monkeypatch)
    pool.write_fresh(4 * PAGE, small)                  # one byte short of the threshold: the mapping
    assert calls == []
    pool.write_fresh(32 * PAGE, memoryview(exact))     # exactly the threshold: the file
    pool.write_fresh(64 * PAGE, memoryview(words))
    assert calls == [(32 * PAGE, len(exact)), (64 * PAGE, len(words) * 4)]
    assert pool.read(4 * PAGE, len(small)) == small
    assert pool.read(32 * PAGE, len(exact)) == exact
    assert pool.read(64 * PAGE, len(words) * 4) == words.tobytes()


def test_write_fresh_carries_on_after_a_short_write(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = MemoryPool(1 * MiB)
    real = os.pwrite
    calls: list[tuple[int, int]] = []

    def short(fd: int, data: memoryview, offset: int) -> int:     # at most 5,000 bytes a call
        calls.append((offset, len(data)))
        return real(fd, data[:5000], offset)

    monkeypatch.setattr(os, "pwrite", short)
    data = bytes(range(251)) * 300                      # 75,300 bytes: 16 calls
    pool.write_fresh(3 * PAGE, data)
    assert pool.read(3 * PAGE, len(data)) == data
    assert calls == [(3 * PAGE + done, len(data) - done) for done in range(0, len(data), 5000)]


def test_write_fresh_where_the_file_route_never_pays_stores_through_the_mapping(
        disk_pool: FilePool, monkeypatch: pytest.MonkeyPatch) -> None:
    assert disk_pool.fresh_write_min == 0              # a file on disk (and hugetlbfs: no write(2))
    calls = record_pwrite(monkeypatch)
    data = b"\xab" * (128 * 1024)
    disk_pool.write_fresh(PAGE, data)
    assert calls == []
    assert disk_pool.read(PAGE, len(data)) == data


# ---------------------------------------------------------------- discard's refusals


def test_discard_of_a_read_only_pool_or_one_that_cannot_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "ro.pool")
    FilePool(path, create_size=4 * PAGE).close()
    with FilePool(path, readonly=True) as ro:
        with pytest.raises(PermissionError) as info:
            ro.discard(0, PAGE)
        assert (info.value.errno, info.value.strerror, info.value.filename) == \
            (errno.EROFS, "pool is read-only", path)
    pool = MemoryPool(4 * PAGE, name="<no discard>")
    pool.discard_granularity = 0                        # as on device-dax or a block device
    with pytest.raises(OSError) as info:
        pool.discard(0, PAGE)
    assert (info.value.errno, info.value.filename) == (errno.EOPNOTSUPP, "<no discard>")


# ---------------------------------------------------------------- PoolView's shape and refusals


@pytest.mark.parametrize("length, reserved", [
    (0, PAGE), (1, PAGE), (PAGE + 1, 2 * PAGE),
    (HUGE - PAGE, HUGE - PAGE),                          # below 2 MiB: page-aligned, no slack
    (HUGE, 2 * HUGE - PAGE),                             # from 2 MiB: room to align to 2 MiB
    (HUGE + 1, 2 * HUGE),
])
def test_a_view_reserves_room_to_align_only_from_2_mib(length: int, reserved: int) -> None:
    view = PoolView(-1, length, writable=False)
    try:
        assert view.length == length
        assert len(view.reservation) == reserved
        assert view.address % (HUGE if length >= HUGE else PAGE) == 0
    finally:
        view.release()


@pytest.mark.parametrize("offset, length", [
    (-PAGE, PAGE),                                       # before the view
    (PAGE + 1, PAGE),                                    # not page-aligned
    (7 * PAGE, 2 * PAGE),                                # runs past the view's end
    (8 * PAGE, PAGE),                                    # starts at it
])
def test_mapping_outside_the_view_is_refused_before_anything_is_mapped(mem_pool: MemoryPool, offset: int,
                                                                       length: int) -> None:
    view = mem_pool.map_view(8 * PAGE, writable=False)
    try:
        with pytest.raises(ValueError) as info:
            view.map_pool(offset, length, 0)
        assert str(info.value) == f"view range {offset:#x}+{length:#x} is not page-aligned inside the view"
        with pytest.raises(ValueError):
            view.map_zero(offset, length)
    finally:
        view.release()


def test_a_mapping_the_kernel_refuses_is_an_oserror_with_its_errno(tmp_path: Path) -> None:
    fd = os.open(str(tmp_path / "closed"), os.O_CREAT | os.O_RDWR)
    os.close(fd)                                         # a descriptor no longer open: EBADF
    view = PoolView(fd, 4 * PAGE, writable=False)
    try:
        with pytest.raises(OSError) as info:
            view.map_pool(0, PAGE, 0)
        assert info.value.errno == errno.EBADF
        assert info.value.strerror == f"mmap into view failed: {os.strerror(errno.EBADF)}"
    finally:
        view.release()


@pytest.mark.parametrize("fences, merged", [
    ([(PAGE, PAGE), (2 * PAGE, PAGE)], [(PAGE, 2 * PAGE)]),                     # adjacent: one
    ([(2 * PAGE, PAGE), (PAGE, PAGE)], [(PAGE, 2 * PAGE)]),                     # in any order
    ([(PAGE, 3 * PAGE), (2 * PAGE, PAGE)], [(PAGE, 3 * PAGE)]),                 # inside another
    ([(PAGE, 2 * PAGE), (2 * PAGE, 3 * PAGE)], [(PAGE, 4 * PAGE)]),             # overlapping
    ([(0, PAGE), (4 * PAGE, PAGE), (6 * PAGE, PAGE), (5 * PAGE, PAGE)],
     [(0, PAGE), (4 * PAGE, 3 * PAGE)]),                                       # joins the last two
    ([(0, PAGE), (2 * PAGE, PAGE), (4 * PAGE, PAGE), (6 * PAGE, PAGE)],
     [(0, PAGE), (2 * PAGE, PAGE), (4 * PAGE, PAGE), (6 * PAGE, PAGE)]),       # a page apart: apart
])
def test_fences_are_merged_into_sorted_disjoint_ranges(fences: list[tuple[int, int]],
                                                       merged: list[tuple[int, int]]) -> None:
    view = PoolView(-1, 8 * PAGE, writable=True)
    try:
        for offset, length in fences:
            assert view.fence(offset, length) is True
        assert view.fenced == merged
    finally:
        view.release()


def test_map_pool_populates_the_pages_only_when_asked() -> None:
    shm = f"/dev/shm/daxfs-media-populate-{os.getpid()}.pool"
    pool = FilePool(shm, create_size=64 * PAGE, exclusive_create=True, preallocate=False)
    try:
        view = pool.map_view(8 * PAGE, writable=True)
        view.map_pool(0, 8 * PAGE, 0)                   # the default: pages come on first touch
        assert pool.resident() == 0
        view.map_pool(2 * PAGE, 3 * PAGE - 1, 16 * PAGE, populate=True)
        assert pool.resident() == 3 * PAGE
        assert pool.backing(0, 64 * PAGE)[0] == [(0, 16 * PAGE), (19 * PAGE, 45 * PAGE)]
        view.release()
    finally:
        pool.close()
        os.unlink(shm)


# ---------------------------------------------------------------- zero


def test_zero_clears_exactly_the_range_and_refuses_outside_the_pool(mem_pool: MemoryPool) -> None:
    before = mem_pool.read(0, 8 * PAGE)
    mem_pool.zero(PAGE + 3, PAGE + 10)
    after = mem_pool.read(0, 8 * PAGE)
    assert after[PAGE + 3:2 * PAGE + 13] == bytes(PAGE + 10)
    assert after[:PAGE + 3] == before[:PAGE + 3] and after[2 * PAGE + 13:] == before[2 * PAGE + 13:]
    with pytest.raises(ValueError):
        mem_pool.zero(64 * PAGE - 1, 2)
    assert mem_pool.read(64 * PAGE - 1, 1) != b"\x00"
    ro = MemoryPool(mem_pool.image(), readonly=True, name="<ro>")
    with pytest.raises(PermissionError) as info:
        ro.zero(0, PAGE)
    assert (info.value.errno, info.value.filename) == (errno.EROFS, "<ro>")


def test_a_reader_never_sees_a_migrating_view_between_pool_and_copy() -> None:
    # migrate() swaps the copy in with one mremap: threads reading through the view (numpy
    # lets the GIL go) see 7s throughout; the pages were zeros until the copy came back when
    # the range was first replaced by fresh memory, then filled
    size = 32 * 1024 * 1024
    pool = MemoryPool(size)
    pool.write(0, b"\x07" * size)
    view = pool.map_view(size, writable=False)
    view.map_pool(0, size, 0)
    array = np.frombuffer(view.buffer(0, size), dtype=np.uint8)
    started, done = threading.Event(), threading.Event()
    seen: list[int] = []
    reads = [0]

    def read() -> None:
        while not done.is_set():
            seen.append(int(array.min()))
            reads[0] += 1
            started.set()
    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    assert started.wait(60)
    for _ in range(3):
        view.migrate()
    done.set()
    for t in readers:
        t.join(60)
    assert reads[0] > 0 and set(seen) == {7}
    assert int(array.min()) == 7 and pool.read(0, 1) == b"\x07"
