"""Giving memory back: online discard, trim, known-zero blocks, reserving before use.

A pool in /dev/shm is RAM.  Freed blocks are punched out of the pool file (so its
allocated blocks, ``st_blocks``, go down) — but never a block a pin or mapping still
holds, never a quarantined bad block, never metadata.  The background discarder is
waited for with ``vol.flush_discards()``, which does what is queued in the caller's
thread; no test here asserts a duration.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

import daxfs
from daxfs.media import FilePool, MemoryPool, Pool
from daxfs.volume import Volume
from daxfs.volume.discard import RESERVE_AHEAD

MiB = 1 << 20
BS = 4096


@pytest.fixture
def shm() -> Iterator[str]:
    """A path for a pool in /dev/shm, removed afterwards."""
    path = f"/dev/shm/daxfs-discard-{os.getpid()}-{uuid.uuid4().hex}.pool"
    yield path
    for leftover in (path, path + ".sock", path + ".holders"):
        if os.path.exists(leftover):
            os.unlink(leftover)


def allocated(path: str) -> int:
    """Bytes of the pool file the file system holds (its memory, on tmpfs)."""
    return os.stat(path).st_blocks * 512


def is_data(path: str, offset: int) -> bool:
    """Whether the page at ``offset`` of the file is data (not a hole)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, offset, os.SEEK_DATA) == offset
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return False
        raise
    finally:
        os.close(fd)


def eventually(check: Callable[[], bool], tries: int = 3000, delay: float = 0.01) -> bool:
    """Poll ``check`` a bounded number of times: a hang detector bounded by a count, not by
    the clock (the outcome is asserted, never a duration)."""
    for _ in range(tries):
        if check():
            return True
        time.sleep(delay)
    return check()


def _write(vol: daxfs.Volume, path: str, data: bytes) -> list[daxfs.Extent]:
    with vol.open(path, "wb") as f:
        f.write(data)
        return f.extents()


# ---------------------------------------------------------------- online discard


def test_deleting_a_256_mib_file_gives_its_memory_back(shm: str) -> None:
    with daxfs.mkfs(shm, 512 * MiB) as vol:
        assert vol.info()["discard"] == "online"
        vol.trim()                                  # start from a pool holding only metadata
        base = allocated(shm)
        _write(vol, "/big", b"\xab" * (256 * MiB))
        assert allocated(shm) - base >= 256 * MiB
        vol.unlink("/big")
        vol.flush_discards()
        dropped = allocated(shm) - base
        assert dropped <= 1 * MiB, f"{dropped} bytes still allocated after the delete"
        assert vol.statfs().resident == allocated(shm)
        assert vol.fsck() == []


def test_the_background_thread_discards_without_being_asked(shm: str) -> None:
    with daxfs.mkfs(shm, 64 * MiB, sparse=True) as vol:
        base = allocated(shm)
        _write(vol, "/f", b"q" * (8 * MiB))
        vol.unlink("/f")
        slack = RESERVE_AHEAD + 64 * 1024           # (what was reserved past the file stays)
        assert eventually(lambda: allocated(shm) <= base + slack)


def test_a_pinned_file_deleted_under_defer_stays_resident_until_the_pin_goes(shm: str) -> None:
    with daxfs.mkfs(shm, 64 * MiB, sparse=True) as vol:
        extents = _write(vol, "/pinned", b"p" * (4 * MiB))
        first = extents[0].pool_offset
        f = vol.open("/pinned", "rb")
        pin = f.pin(0, 4 * MiB)
        f.close()
        vol.unlink("/pinned")                       # the name goes; the pinned inode lives on
        assert vol.statfs().used == 4 * MiB and vol.pins()[0].path is None
        vol.flush_discards()
        vol.trim()
        assert is_data(shm, first) and is_data(shm, first + 4 * MiB - BS)
        assert bytes(pin.buffer[:4]) == b"pppp"     # the device still sees its bytes
        pin.release()                               # the orphan goes: its blocks free, queued
        vol.flush_discards()
        assert not is_data(shm, first) and not is_data(shm, first + 4 * MiB - BS)
        assert vol.statfs().used == 0 and vol.fsck() == []


def test_a_mapping_keeps_truncated_blocks_resident_until_closed(shm: str) -> None:
    with daxfs.mkfs(shm, 64 * MiB, sparse=True) as vol:
        extents = _write(vol, "/m", b"m" * (1 * MiB))
        tail = extents[0].pool_offset + 512 * 1024
        with vol.open("/m", "r+b") as f:
            m = f.map()
            f.truncate(4096)                        # the mapped tail goes busy
            vol.flush_discards()
            vol.trim()
            assert is_data(shm, tail) and m.buffer[512 * 1024] == ord("m")
            m.close()
        vol.flush_discards()
        assert not is_data(shm, tail)


def test_bad_blocks_are_never_discarded(shm: str) -> None:
    with daxfs.mkfs(shm, 64 * MiB, sparse=True) as vol:
        extents = _write(vol, "/f", b"\x5a" * (64 * BS))
        bad = extents[0].pool_offset + 3 * BS
        vol.memory_failure(bad, BS)
        vol.unlink("/f")                            # the other 63 blocks are freed
        vol.flush_discards()
        vol.trim()
        assert vol.badblocks() == [(bad, BS)]
        assert is_data(shm, bad), "a quarantined bad block was discarded"
        assert not is_data(shm, bad + BS) and not is_data(shm, bad - BS)
        with open(shm, "rb") as raw:
            raw.seek(bad)
            assert raw.read(BS) == b"\x5a" * BS     # its bytes are where they were
        # a bad block that is free when it fails is not discarded either
        spare = vol._layout.data_offset + vol._core.space.runs()[-1][0] * BS
        with open(shm, "r+b") as raw:               # (memory the device says went bad)
            raw.seek(spare)
            raw.write(b"\x77" * BS)
        vol.memory_failure(spare, BS)
        vol.trim()
        assert is_data(shm, spare)
        assert vol.fsck() == []


def test_metadata_is_never_discarded(shm: str) -> None:
    with daxfs.mkfs(shm, 64 * MiB, sparse=True) as vol:
        data_offset = vol._layout.data_offset
        with open(shm, "rb") as raw:
            metadata = raw.read(data_offset)
        vol.trim()
        # every metadata page is still there (reserved at mkfs, so resident even unwritten)
        assert allocated(shm) >= data_offset
        with open(shm, "rb") as raw:
            assert raw.read(data_offset) == metadata
    with daxfs.open_volume(shm) as vol:
        assert vol.fsck() == []


def test_trim_after_online_discard_was_off_returns_the_free_space(shm: str) -> None:
    daxfs.mkfs(shm, 128 * MiB, discard=False).close()
    with daxfs.open_volume(shm, discard=False) as vol:
        assert vol.info()["discard"] == "off"
        _write(vol, "/a", b"a" * (32 * MiB))
        _write(vol, "/b", b"b" * (16 * MiB))
        vol.unlink("/a")
        assert vol.flush_discards() == 0            # nothing queued: discard is off
        held = allocated(shm)
        returned = vol.trim()
        assert returned == held - allocated(shm) >= 32 * MiB
        # what stays: metadata and /b (the free space, preallocated at mkfs, went too)
        assert allocated(shm) <= vol._layout.data_offset + 16 * MiB + 64 * 1024
        with vol.open("/b", "rb") as f:
            assert f.read(4) == b"bbbb"
        assert vol.trim() == 0                      # nothing left to give
        assert vol.fsck() == []


def test_trim_and_discard_on_the_command_line(shm: str, capsys: pytest.CaptureFixture[str]) -> None:
    from daxfs.adapters.cli import main

    assert main(["mkfs", shm, "--size", "64M", "--sparse"]) == 0
    assert allocated(shm) < 32 * MiB
    local = f"/tmp/daxfs-discard-{uuid.uuid4().hex}"
    with open(local, "wb") as fh:
        fh.write(b"c" * (8 * MiB))
    try:
        assert main(["put", local, shm + ":/c"]) == 0
    finally:
        os.unlink(local)
    capsys.readouterr()
    assert main(["df", shm]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Resident" in out[0]
    assert main(["rm", shm + ":/c"]) == 0
    assert main(["trim", shm]) == 0
    said = capsys.readouterr().out
    assert "trimmed" in said and "resident" in said
    with daxfs.open_volume(shm, readonly=True) as vol:
        assert vol.statfs().resident == allocated(shm) < 32 * MiB


# ---------------------------------------------------------------- the race, and known zeros


def _quiet_volume() -> tuple[MemoryPool, Volume]:
    """A volume whose discards run only when asked (no thread): the test orders them."""
    pool = MemoryPool(16 * MiB)
    Volume.format(pool)
    vol = Volume.mount(pool)
    vol.space.background = False
    return pool, vol


def test_a_block_freed_queued_and_reused_before_the_discard_runs_keeps_its_data() -> None:
    pool, vol = _quiet_volume()
    first = _write(vol, "/a", b"1" * (16 * BS))[0].pool_offset
    vol.unlink("/a")                                 # queued, not yet discarded
    assert vol.space.queued()
    again = _write(vol, "/b", b"2" * (16 * BS))[0].pool_offset
    assert again == first                            # the allocator reuses them at once
    assert vol.flush_discards() == 0                 # they are not free: nothing to do
    with vol.open("/b", "rb") as f:
        assert f.read() == b"2" * (16 * BS)
    assert vol.fsck() == []
    vol.close()


def test_discarded_blocks_are_known_zero_and_not_zeroed_again() -> None:
    pool, vol = _quiet_volume()
    _write(vol, "/a", b"1" * (8 * BS))
    vol.unlink("/a")
    vol.flush_discards()
    space = vol._core.space
    assert space.zero.total == space.free            # every free block reads as zeros
    zeroed: list[tuple[int, int]] = []
    real_zero = pool.zero
    pool.zero = lambda off, n: (zeroed.append((off, n)), real_zero(off, n))[1]  # type: ignore[method-assign]
    try:
        with vol.open("/b", "wb") as f:
            f.write(b"x" * (BS + 10))                # the rest of its second block needs no zeroing
        with vol.open("/c", "w+b") as f:
            m = f.map(0, 4 * BS, write=True)         # populated with zeros it already has
            assert bytes(m.buffer) == bytes(4 * BS)
            m.close()
    finally:
        del pool.zero
    assert zeroed == []
    with vol.open("/b", "rb") as f:
        assert f.read() == b"x" * (BS + 10)
    assert space.zero.total == space.free            # what was handed out is no longer listed
    assert vol.fsck() == []
    vol.close()


def test_a_write_that_fails_after_its_stores_leaves_its_blocks_no_longer_known_zero() -> None:
    """Blocks planned as known-zero, written, then not taken (the record failed) hold the
    failed write's bytes: the next file given them must not see those."""
    pool, vol = _quiet_volume()
    vol.trim()
    journal = vol._journal
    real = journal.commit

    def full(record: object, grow: int = 0) -> None:
        raise OSError(errno.ENOSPC, "no space left for metadata")

    vol.open("/a", "wb").close()
    journal.commit = full  # type: ignore[method-assign]
    try:
        with vol.open("/a", "r+b") as f:
            with pytest.raises(OSError):
                f.pwrite(b"\xaa" * (2 * BS), 0)
    finally:
        journal.commit = real  # type: ignore[method-assign]
    with vol.open("/b", "wb") as f:
        f.pwrite(b"b" * 10, 100)                     # into the same (free) first block
    with vol.open("/b", "rb") as f:
        assert f.read() == bytes(100) + b"b" * 10
    assert vol.fsck() == []
    vol.close()


def test_blocks_freed_without_a_discard_are_zeroed_when_reused() -> None:
    pool = MemoryPool(16 * MiB)
    Volume.format(pool)
    vol = Volume.mount(pool, discard=False)
    _write(vol, "/a", b"\xee" * (4 * BS))
    vol.unlink("/a")
    with vol.open("/b", "wb") as f:
        f.write(b"y" * 10)
    with vol.open("/b", "r+b") as f:
        f.truncate(2 * BS)                           # the bytes past 10 must read as zeros
        assert f.read() == b"y" * 10 + bytes(2 * BS - 10)
    vol.close()


def test_nothing_is_known_zero_after_a_remount_but_the_pool_files_holes(shm: str) -> None:
    with daxfs.mkfs(shm, 64 * MiB, discard=False) as vol:
        _write(vol, "/a", b"\x11" * (8 * BS))
        vol.unlink("/a")                             # freed, not discarded: old bytes stay
        freed_with_data = vol._core.space.free
    with daxfs.open_volume(shm) as vol:
        space = vol._core.space
        assert space.free == freed_with_data
        # the 8 blocks that held /a are data in the pool file, not zero; and the pool file is
        # allocated whole (preallocated, nothing discarded): nothing is unbacked
        assert space.free - space.zero.total == 8
        assert space.unbacked.total == 0
        with vol.open("/b", "wb") as f:
            f.write(b"z")
        with vol.open("/b", "r+b") as f:
            f.truncate(BS)
            assert f.read() == b"z" + bytes(BS - 1)


def test_fsck_finds_a_known_zero_block_that_is_not_free() -> None:
    pool, vol = _quiet_volume()
    _write(vol, "/a", b"1" * BS)
    extent = vol.open("/a", "rb")
    p = (extent.extents()[0].pool_offset - vol._layout.data_offset) // BS
    extent.close()
    vol._core.space.zero.add(p, 1)
    assert any("known-zero" in problem for problem in vol.fsck())
    vol._core.space.zero.remove(p, 1)
    vol.close()


# ---------------------------------------------------------------- sparse pools


def test_a_sparse_pool_takes_memory_as_blocks_are_handed_out(shm: str) -> None:
    with daxfs.mkfs(shm, 256 * MiB, sparse=True) as vol:
        data_offset = vol._layout.data_offset
        assert allocated(shm) <= data_offset + 64 * 1024
        _write(vol, "/f", b"s" * (10 * MiB))
        assert 10 * MiB <= allocated(shm) - data_offset <= 11 * MiB
        st = vol.statfs()
        assert st.resident == allocated(shm) and st.free == st.size - 10 * MiB


def test_reserve_failure_leaves_nothing_behind() -> None:
    """The medium refuses memory (as a full tmpfs does): ENOSPC, nothing logged, nothing held."""
    pool, vol = _quiet_volume()
    _write(vol, "/x", b"x" * (4 * MiB))
    _write(vol, "/hold", b"h")                       # splits free space in two runs
    vol.unlink("/x")
    vol.trim()                                       # every free block a hole now
    vol.open("/f", "wb").close()
    before, seq = vol.statfs(), vol._ring.next_seq
    real = pool.reserve
    calls = []

    def full(offset: int, length: int) -> None:
        calls.append(length)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(offset, length)

    pool.reserve = full  # type: ignore[method-assign]
    try:
        with vol.open("/f", "wb") as f:
            with pytest.raises(OSError) as info:      # more than either run: both are planned
                f.write(memoryview(b"w" * (vol.statfs().free - 4 * MiB + 4 * BS)))
            assert info.value.errno == errno.ENOSPC
    finally:
        del pool.reserve
    assert len(calls) > 1
    after = vol.statfs()
    assert (after.free, after.used, after.busy, vol._ring.next_seq) == (before.free, before.used, 0, seq)
    assert vol.stat("/f").st_size == 0 and vol.fsck() == []
    space = vol._core.space
    assert space.unbacked.total == space.free        # what it reserved went back
    with vol.open("/f", "wb") as f:
        f.write(b"ok")
    vol.close()


def _mount_tmpfs(size: str) -> str:
    where = f"/tmp/daxfs-tmpfs-{uuid.uuid4().hex}"
    os.mkdir(where)
    rc = os.system(f"mount -t tmpfs -o size={size} tmpfs {where} 2>/dev/null")
    if rc != 0:
        os.rmdir(where)
        pytest.skip("cannot mount a tmpfs here")
    return where


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs of a given size needs root")
def test_a_sparse_pool_on_a_small_tmpfs_fills_to_a_clean_enospc_and_stays_usable() -> None:
    where = _mount_tmpfs("48m")
    try:
        pool = os.path.join(where, "small.pool")
        with daxfs.mkfs(pool, 256 * MiB, sparse=True) as vol:     # 5x the memory behind it
            chunk = b"\xc3" * MiB
            written = 0
            with vol.open("/fill", "wb") as f:
                with pytest.raises(OSError) as info:
                    for _ in range(256):
                        f.write(chunk)                  # never a SIGBUS: ENOSPC first
                        written += len(chunk)
                assert info.value.errno == errno.ENOSPC
            assert 16 * MiB <= written < 48 * MiB
            assert vol.stat("/fill").st_size == written     # the failed write left nothing
            assert vol.fsck() == []
            with vol.open("/fill", "rb") as f:
                assert f.read(MiB) == chunk
            # a mapping is refused the same way, before it could fault
            with vol.open("/map", "w+b") as f:
                with pytest.raises(OSError) as info:
                    f.map(0, 64 * MiB, write=True)
                assert info.value.errno == errno.ENOSPC
            # ... and the pool stays usable: delete, and the memory is there again
            vol.unlink("/fill")
            vol.flush_discards()
            with vol.open("/again", "wb") as f:
                f.write(chunk * 16)
            assert vol.fsck() == []
        with daxfs.open_volume(pool) as vol:
            assert vol.fsck() == [] and vol.stat("/again").st_size == 16 * MiB
            with vol.open("/again", "rb") as f:
                assert f.read(MiB) == chunk
    finally:
        os.system(f"umount {where}")
        os.rmdir(where)


# ---------------------------------------------------------------- media


def test_media_say_what_they_can_discard(shm: str) -> None:
    class Bare(Pool):
        size, readonly, sync_mode, name = 4096, False, "msync", "bare"
        read = view = write = zero = persist = close = lambda *a: None  # type: ignore[assignment]

    bare = Bare()
    assert bare.discard_granularity == 0
    with pytest.raises(OSError) as info:
        bare.discard(0, 4096)
    assert info.value.errno == errno.EOPNOTSUPP
    mem = MemoryPool(1 * MiB)
    assert mem.discard_granularity == 4096 and mem.discard_default and mem.discards_durable
    mem.write(0, b"x" * 8192)
    mem.discard(0, 4096)
    assert mem.backing(0, 1 * MiB)[0][0] == (0, 4096)
    assert mem.read(0, 8192) == bytes(4096) + b"x" * 4096           # (reading it through the
    assert mem.backing(0, 1 * MiB)[1][0] == (8192, 1 * MiB - 8192)  # map takes a zeroed page)
    daxfs.mkfs(shm, 64 * MiB).close()
    ro = FilePool(shm, readonly=True)
    try:
        assert ro.discard_granularity == 0
    finally:
        ro.close()
    with daxfs.open_volume(shm, readonly=True) as vol:
        assert vol.info()["discard"] == "unsupported"
        with pytest.raises(OSError) as info:
            vol.trim()
        assert info.value.errno == errno.EOPNOTSUPP


def test_a_pool_file_on_disk_discards_when_asked(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "disk.pool")
    with daxfs.mkfs(path, 64 * MiB, discard=True) as vol:
        if vol.pool.sync_mode == "memory":
            pytest.skip("the temporary directory is a memory file system here")
        assert vol.info()["discard"] == "online" and not vol.pool.discards_durable
        first = _write(vol, "/f", b"d" * MiB)[0].pool_offset
        vol.unlink("/f")
        vol.flush_discards()
        assert not is_data(path, first)
        # Known zero once the punch is synced: by this flush, or -- where the discard thread
        # took the run first (the test thread was slow to call flush_discards) and is still in
        # its sync -- by that thread once its sync returns.
        space, block = vol._core.space, (first - vol._layout.data_offset) // BS

        def known_zero() -> bool:
            with vol._journal.lock:
                return space.zero.overlaps(block, 1)
        assert eventually(known_zero)                                               # after the sync
        with vol.open("/g", "wb") as f:
            f.write(b"g")
        assert vol.fsck() == []


# ---------------------------------------------------------------- through the arbiter


def test_the_arbiter_discards_and_trims_for_its_clients(served_pool: str) -> None:
    client = daxfs.connect(served_pool, name="trimmer")
    try:
        with client.open("/big", "wb") as f:
            f.write(b"r" * (8 * MiB))
        held = allocated(served_pool)
        assert client.statfs().resident == held
        client.unlink("/big")                       # freed in the arbiter, discarded by its thread
        assert eventually(lambda: held - allocated(served_pool) >= 8 * MiB)
        returned = client.trim()                    # the rest of the free space (mkfs preallocated it)
        assert returned > 32 * MiB and client.statfs().resident == allocated(served_pool)
        assert client.info()["discard"] == "online"
    finally:
        client.close()


@pytest.fixture
def hugetlbfs(tmp_path) -> Iterator[str]:
    """A hugetlbfs mount with free 2 MiB pages: DAXFS_TEST_HUGETLBFS if set, else (as root)
    24 huge pages taken from the system and a scratch mount, both given back afterwards.
    Skips only where the kernel or the container gives neither."""
    if os.environ.get("DAXFS_TEST_HUGETLBFS"):
        yield os.environ["DAXFS_TEST_HUGETLBFS"]
        return
    import subprocess

    knob = "/proc/sys/vm/nr_hugepages"
    try:
        with open(knob) as fh:
            before = int(fh.read())
        with open(knob, "w") as fh:
            fh.write(str(before + 24))
    except OSError as exc:
        pytest.skip(f"huge pages cannot be reserved here ({exc}); set DAXFS_TEST_HUGETLBFS")
    mounted = False
    try:
        with open("/proc/meminfo") as fh:
            free = int(next(line for line in fh if line.startswith("HugePages_Free")).split()[1])
        if free < 24:
            pytest.skip(f"the kernel gave only {free} free huge pages; set DAXFS_TEST_HUGETLBFS")
        mounted = subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "none",
                                  str(tmp_path)], capture_output=True).returncode == 0
        if not mounted:
            pytest.skip("hugetlbfs cannot be mounted here; set DAXFS_TEST_HUGETLBFS")
        yield str(tmp_path)
    finally:
        if mounted:
            subprocess.run(["umount", str(tmp_path)], check=True)
        with open(knob, "w") as fh:
            fh.write(str(before))


def test_a_sparse_pool_on_hugetlbfs_gives_huge_pages_back_and_fills_to_enospc(hugetlbfs: str) -> None:
    """Discards work in whole huge pages; a full hugetlbfs gives ENOSPC, never SIGBUS, and
    hugetlbfs's missing write(2) is never used."""
    def free_pages() -> int:
        with open("/proc/meminfo") as fh:
            return int(next(line for line in fh if line.startswith("HugePages_Free")).split()[1])

    path = os.path.join(hugetlbfs, f"daxfs-{uuid.uuid4().hex}.pool")
    start = free_pages()
    try:
        with daxfs.mkfs(path, start * 2 * MiB + 32 * MiB, sparse=True) as vol:   # more than there is
            assert vol.pool.discard_granularity == 2 * MiB and vol.info()["discard"] == "online"
            after_mkfs = free_pages()
            _write(vol, "/a", b"a" * (8 * MiB) + b"tail")
            assert free_pages() == after_mkfs - 5
            vol.unlink("/a")
            vol.flush_discards()
            assert free_pages() == after_mkfs
            with vol.open("/c", "wb") as f:
                with pytest.raises(OSError) as info:
                    while True:
                        f.write(b"c" * MiB)
                assert info.value.errno == errno.ENOSPC
            assert vol.fsck() == [] and free_pages() == 0
            vol.unlink("/c")
            vol.flush_discards()
            assert free_pages() == after_mkfs
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_block_runs_fast_paths_agree_with_a_model() -> None:
    """BlockRuns (bad blocks, known zeros, unbacked blocks) cut and add in place in the
    common cases; a set of ints says what the answers must be."""
    import random

    from daxfs.core.badblocks import BlockRuns

    rng = random.Random(7)
    for _trial in range(300):
        runs, model = BlockRuns(), set()
        for _step in range(40):
            s, n = rng.randrange(0, 200), rng.randrange(0, 30)
            if rng.random() < 0.5:
                if n:
                    runs.add(s, n)
                model |= set(range(s, s + n))
            else:
                runs.remove(s, n)
                model -= set(range(s, s + n))
            assert {b for a, k in runs.runs() for b in range(a, a + k)} == model
            assert runs.total == len(model) and runs.starts == sorted(runs)
            listed = runs.runs()
            assert all(a + k < b for (a, k), (b, _) in zip(listed, listed[1:]))    # disjoint, apart
            qs, qn = rng.randrange(0, 200), rng.randrange(0, 40)
            assert [b for a, k in runs.parts(qs, qn) for b in range(a, a + k)] == \
                sorted(set(range(qs, qs + qn)) & model)
