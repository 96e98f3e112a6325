"""Direct access: ``File.map`` and ``daxfs.Mapping`` through the public API.

What these tests prove:

- A mapping is one contiguous view of a file made of scattered extents (files
  written interleaved, punched, fallocated): its bytes equal ``pread`` for
  random, unaligned ranges; holes and unwritten ranges read as zeros.
  ``buffer`` is read-only for read mappings and writable for write mappings.
- ``array`` is zero-copy (arrays share memory with each other and with the
  buffer, their base chain ends in the memoryview, stores through a write
  mapping reach ``pread``); pyarrow buffers made on the mapping point at the
  same addresses, and an Arrow IPC file read through a mapping keeps its
  column buffers inside the mapping.
- A write mapping is populated at map time: holes and unwritten ranges become
  written blocks of zeros, the file grows to cover the range, and that
  metadata is in the pool (a copy of the pool mounts with it) when map returns.
- Sealed ranges: punch/zero under a mapping leave the blocks where they are
  (the view shows the zeros); blocks a truncate/punch/unlink takes away from
  a mapped file are busy, never reused, and freed when the mapping goes; an
  unlinked mapped file lives on as an orphan until the mapping closes.
- Revocation: "migrate" keeps every array valid and detached from the file
  and lets go of the blocks; "invalidate" makes a touch a SIGSEGV (checked in
  a child process); an unknown mode is ValueError.
- Closing a mapping while arrays live neither crashes nor frees the blocks
  under them: it drops the inode at once, the blocks when the arrays go.
- Coherence with pread/pwrite, including writes into holes that the view
  showed as zeros; concurrent readers beside a writer.
- The volume refuses to close under a live mapping unless forced (then the
  mapping is migrated and stays readable).
- Bad arguments fail with the documented errors and allocate nothing.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

import daxfs
from daxfs.media import MemoryPool
from daxfs.testing import close_checked
from daxfs.volume import Volume

POOL = 16 << 20
BS = 4096


@pytest.fixture
def shm_path() -> Iterator[str]:
    path = f"/dev/shm/daxfs-maptest-{os.getpid()}-{uuid.uuid4().hex}.pool"
    yield path
    if os.path.exists(path):
        os.unlink(path)


@pytest.fixture
def vol(shm_path: str) -> Iterator[daxfs.Volume]:
    v = daxfs.mkfs(shm_path, POOL)
    yield v
    close_checked(v)            # fails the test if it left a pin or mapping behind


def _address(buf: memoryview) -> int:
    """The address of a buffer's first byte."""
    return int(np.frombuffer(buf, np.uint8).__array_interface__["data"][0])


def _pool_offsets(f: daxfs.File, lo: int, hi: int) -> list[tuple[int, int]]:
    """``(file block, pool offset)`` for every block of ``[lo, hi)`` the file has data for."""
    out = []
    for e in f.extents():
        for b in range(e.length // BS):
            off = e.file_offset + b * BS
            if lo // BS * BS <= off < hi:
                out.append((off // BS, e.pool_offset + b * BS))
    return out


def _scattered(vol: daxfs.Volume, seed: int) -> list[daxfs.File]:
    """Three files written interleaved (their blocks interleave in the pool), then punched,
    fallocated and written at unaligned offsets."""
    rng = random.Random(seed)
    files = [vol.open(f"s{i}", "w+b", buffering=0) for i in range(3)]
    for _ in range(25):
        for f in files:
            off = rng.randrange(0, 300_000)
            f.pwrite(rng.randbytes(rng.randrange(1, 9000)), off)
    for f in files:
        f.punch_hole(rng.randrange(0, 100_000), rng.randrange(5000, 40_000))
        f.fallocate(rng.randrange(300_000, 350_000), rng.randrange(5000, 30_000))
        f.pwrite(rng.randbytes(777), rng.randrange(0, 50_000) * 7 + 3)
    return files


# ---------------------------------------------------------------- 1. one contiguous view


def test_scattered_extents_are_one_view_equal_to_pread(vol: daxfs.Volume) -> None:
    files = _scattered(vol, 1)
    rng = random.Random(2)
    f = files[0]
    ext = [e for e in f.extents() if "unwritten" not in e.flags]
    gaps = sum(1 for a, b in zip(ext, ext[1:]) if a.pool_offset + a.length != b.pool_offset)
    assert gaps >= 5, "the test file is not scattered in the pool"
    # the files' blocks interleave in the pool
    other = sorted(e.pool_offset for e in files[1].extents())
    assert any(a.pool_offset < o < b.pool_offset for a, b in zip(ext, ext[1:]) for o in other)
    for f in files:
        size = f.stat().st_size
        with f.map() as m:
            assert len(m.buffer) == size
            assert bytes(m.buffer) == f.pread(size, 0)
            for _ in range(150):
                a = rng.randrange(0, size)
                b = rng.randrange(a, min(size, a + 70_000) + 1)
                assert bytes(m.buffer[a:b]) == f.pread(b - a, a)
        # sub-range mappings at unaligned offsets
        for _ in range(12):
            off = rng.randrange(0, size - 1)
            length = rng.randrange(1, size - off + 1)
            with f.map(off, length) as m:
                assert len(m.buffer) == length
                assert bytes(m.buffer) == f.pread(length, off)
    for f in files:
        f.close()


def test_large_scattered_file_over_2mib_is_one_view(vol: daxfs.Volume) -> None:
    """Views of 2 MiB and more take the huge-page-aligned path; still one contiguous view."""
    chunk = 5 * BS + 123
    size = 3 * (1 << 20) + 77
    data = bytearray(os.urandom(size))
    with vol.open("big", "w+b", buffering=0) as f, vol.open("side", "w+b", buffering=0) as g:
        for pos in range(0, size, chunk):
            f.pwrite(data[pos:pos + chunk], pos)
            g.pwrite(b"s" * 100, pos)          # interleaves the files' blocks
        f.punch_hole(1 << 20, 3 * BS)
        data[1 << 20:(1 << 20) + 3 * BS] = bytes(3 * BS)
        assert len(f.extents()) > 10
        with f.map() as m:
            assert bytes(m.buffer) == bytes(data)
            arr = m.array()
            assert arr.tobytes() == bytes(data)
            del arr
        with f.map(BS + 1, size - 2 * BS) as m:
            assert bytes(m.buffer) == bytes(data[BS + 1:size - BS + 1])


def test_holes_and_unwritten_ranges_read_as_zeros(vol: daxfs.Volume) -> None:
    with vol.open("z", "w+b", buffering=0) as f:
        f.pwrite(b"\xaa" * 40_000, 0)
        f.pwrite(b"\xbb" * 5000, 100_000)       # hole at [40000, 100000)
        f.punch_hole(8192, 16384)              # whole-block hole in written data
        f.punch_hole(30_001, 3000)             # a partial one
        f.fallocate(110_000, 20_000)           # unwritten blocks, size grows to 130000
        assert any("unwritten" in e.flags for e in f.extents())
        with f.map() as m:
            buf = m.buffer
            assert len(buf) == 130_000
            assert bytes(buf[8192:24576]) == bytes(16384)
            assert bytes(buf[30_001:33_001]) == bytes(3000)
            assert bytes(buf[40_000:100_000]) == bytes(60_000)
            assert bytes(buf[105_000:130_000]) == bytes(25_000)
            assert bytes(buf[0:8192]) == b"\xaa" * 8192
            assert bytes(buf[100_000:105_000]) == b"\xbb" * 5000
            assert bytes(buf) == f.pread(130_000, 0)


def test_read_mapping_buffer_is_read_only_write_mapping_is_writable(vol: daxfs.Volume) -> None:
    with vol.open("rw", "w+b", buffering=0) as f:
        f.pwrite(b"x" * 10_000, 0)
        with f.map() as m:
            assert m.buffer.readonly
            with pytest.raises(TypeError):
                m.buffer[0] = 1
            with pytest.raises(TypeError):
                m.buffer[10:20] = b"y" * 10
            arr = m.array()
            assert not arr.flags.writeable
            with pytest.raises(ValueError):
                arr[0] = 1
            del arr
        assert f.pread(10_000, 0) == b"x" * 10_000
        with f.map(write=True) as m:
            assert not m.buffer.readonly
            m.buffer[5:8] = b"abc"
            m.array()[100] = ord("Z")
        assert f.pread(10, 0) == b"xxxxxabcxx"
        assert f.pread(1, 100) == b"Z"


# ---------------------------------------------------------------- 2. zero-copy arrays, Arrow


def _base_chain(arr: np.ndarray) -> list[object]:
    chain: list[object] = []
    obj: object = arr
    while isinstance(obj, np.ndarray) and obj.base is not None:
        obj = obj.base
        chain.append(obj)
    return chain


def test_array_is_zero_copy(vol: daxfs.Volume) -> None:
    with vol.open("a", "w+b", buffering=0) as f:
        f.pwrite(np.arange(20_000, dtype="<u4").tobytes(), 0)
        f.punch_hole(3 * BS, BS)
        with f.map() as m:
            start = _address(m.buffer)
            whole = m.array()
            words = m.array("<u4", (100, 10), offset=4 * BS)
            assert np.shares_memory(whole, words)
            assert whole.__array_interface__["data"][0] == start
            assert words.__array_interface__["data"][0] == start + 4 * BS
            assert words.shape == (100, 10)
            assert words[0, 0] == BS and words[99, 9] == BS + 999
            assert (whole[3 * BS:4 * BS] == 0).all()
            chain = _base_chain(words)
            assert isinstance(chain[-1], memoryview), chain
            assert chain[-1].obj is m.buffer.obj        # the mapping's own memory
            with pytest.raises(ValueError):
                m.array("<u8", 20_000)                  # does not fit
            with pytest.raises(ValueError):
                m.array(offset=-1)
            del whole, words, chain
        with f.map(0, 80_000, write=True) as m:
            w = m.array("<u4")
            other = m.array("u1", 16, offset=12)
            assert np.shares_memory(w, other)
            w[3] = 0xDEADBEEF
            w[3 * BS // 4] = 7                          # into the block that was a hole
            assert f.pread(4, 12) == (0xDEADBEEF).to_bytes(4, "little")
            assert f.pread(4, 3 * BS) == (7).to_bytes(4, "little")
            assert bytes(other[:4]) == (0xDEADBEEF).to_bytes(4, "little")
            del w, other


def test_pyarrow_buffer_shares_the_mapping(vol: daxfs.Volume) -> None:
    import pyarrow as pa
    with vol.open("pa", "w+b", buffering=0) as f:
        f.pwrite(os.urandom(50_000), 0)
        with f.map() as m:
            buf = pa.py_buffer(m.buffer)
            arr = np.frombuffer(m.buffer, np.uint8)
            assert buf.address == arr.__array_interface__["data"][0]
            assert buf.size == 50_000
            assert buf.to_pybytes() == f.pread(50_000, 0)
            del buf, arr


def test_arrow_ipc_file_read_through_a_mapping_is_zero_copy(vol: daxfs.Volume) -> None:
    import pyarrow as pa
    rng = np.random.default_rng(5)
    table = pa.table({
        "x": pa.array(rng.integers(0, 1 << 40, 30_000, dtype=np.int64)),
        "y": pa.array(rng.standard_normal(30_000)),
        "s": pa.array([f"row{i}" for i in range(30_000)]),
    })
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=7000)
    data = sink.getvalue().to_pybytes()
    with vol.open("t.arrow", "w+b", buffering=0) as f, vol.open("other", "w+b", buffering=0) as g:
        # written in pieces interleaved with another file: the IPC file is scattered
        for pos in range(0, len(data), 3 * BS):
            f.pwrite(data[pos:pos + 3 * BS], pos)
            g.pwrite(b"g" * BS, pos)
        assert len(f.extents()) > 3
        with f.map() as m:
            lo = _address(m.buffer)
            hi = lo + len(m.buffer)
            got = pa.ipc.open_file(pa.py_buffer(m.buffer)).read_all()
            assert got.equals(table)
            seen = 0
            for column in got.columns:
                for chunk in column.chunks:
                    for b in chunk.buffers():
                        if b is not None:
                            assert lo <= b.address and b.address + b.size <= hi, "column buffer was copied"
                            seen += 1
            assert seen >= 9
            del got, column, chunk, b


# ---------------------------------------------------------------- 3. populate at map time


def test_write_mapping_populates_holes_unwritten_and_grows(vol: daxfs.Volume) -> None:
    # blocks of a deleted file with a pattern: a populate must never show them
    with vol.open("old", "wb", buffering=0) as f:
        f.write(b"\x5a" * (2 << 20))
    vol.unlink("old")
    with vol.open("w", "w+b", buffering=0) as f:
        f.pwrite(b"D" * 10_000, 0)
        f.pwrite(b"E" * 3000, 60_000)              # hole [10000, 60000); EOF at 63000
        f.fallocate(70_000, 30_000, keep_size=True)  # unwritten blocks past EOF
        f.truncate(62_000)                          # stale "E" bytes past EOF in the last block
        blocks0 = f.stat().st_blocks
        free0 = vol.statfs().free
        m = f.map(5000, 200_000, write=True)        # up to 205000, past EOF
        st = f.stat()
        assert st.st_size == 205_000
        assert st.st_blocks > blocks0
        ext = f.extents()
        assert not any("unwritten" in e.flags for e in ext)
        covered = set()
        for e in ext:
            covered.update(range(e.file_offset // BS, (e.file_offset + e.length) // BS))
        assert covered >= set(range(5000 // BS, -(-205_000 // BS)))
        new_blocks = (st.st_blocks - blocks0) * 512
        assert vol.statfs().free == free0 - new_blocks
        view = bytes(m.buffer)
        assert view[:5000] == b"D" * 5000
        assert view[5000:55_000] == bytes(50_000)         # the old hole
        assert view[55_000:57_000] == b"E" * 2000
        assert view[57_000:] == bytes(200_000 - 57_000)   # stale tail, unwritten, growth: zeros
        assert b"\x5a" not in view
        assert f.pread(205_000, 0) == b"D" * 10_000 + bytes(50_000) + b"E" * 2000 + bytes(143_000)
        m.close()
        assert vol.fsck() == []


def test_write_mapping_past_eof_leaves_the_gap_a_hole(vol: daxfs.Volume) -> None:
    with vol.open("g", "w+b", buffering=0) as f:
        f.pwrite(b"g" * 10, 0)
        with f.map(100 * BS + 7, 2 * BS, write=True) as m:
            assert f.stat().st_size == 102 * BS + 7
            assert bytes(m.buffer) == bytes(2 * BS)
            m.buffer[-1:] = b"!"
        assert f.pread(102 * BS + 7, 0) == b"g" * 10 + bytes(102 * BS - 4) + b"!"
        # only the mapped blocks (and the first) were allocated: the gap stays a hole
        assert f.stat().st_blocks * 512 == 4 * BS
        assert f.seek(BS, os.SEEK_DATA) == 100 * BS


def test_write_mapping_fills_holes_a_read_mapping_shows(vol: daxfs.Volume) -> None:
    with vol.open("wr", "w+b", buffering=0) as f:
        f.pwrite(b"r" * BS, 0)
        f.pwrite(b"r" * BS, 9 * BS)             # hole: blocks 1..8
        with f.map() as r:
            assert bytes(r.buffer[BS:9 * BS]) == bytes(8 * BS)
            with f.map(2 * BS, 3 * BS, write=True) as w:
                w.buffer[:5] = b"store"
                w.buffer[-5:] = b"later"
            assert bytes(r.buffer[2 * BS:2 * BS + 5]) == b"store"
            assert bytes(r.buffer[5 * BS - 5:5 * BS]) == b"later"
            assert bytes(r.buffer) == f.pread(10 * BS, 0)


def test_write_mapping_metadata_is_in_the_pool_when_map_returns() -> None:
    pool = MemoryPool(POOL)
    Volume.format(pool)
    v = Volume.mount(pool)
    f = v.open("m", "w+b", buffering=0)
    f.pwrite(b"a" * 100, 0)
    m = f.map(BS, 20 * BS, write=True)
    live_extents = f.extents()
    copy = Volume.mount(MemoryPool(pool.image()))
    try:
        st = copy.stat("m")
        assert st.st_size == 21 * BS
        with copy.open("m", "rb", buffering=0) as g:
            assert g.extents() == live_extents
            assert g.pread(21 * BS, 0) == b"a" * 100 + bytes(21 * BS - 100)
        assert copy.fsck() == []
    finally:
        copy.close()
    m.close()
    f.close()
    v.close()


def test_write_mapping_over_written_range_allocates_nothing(vol: daxfs.Volume) -> None:
    with vol.open("full", "w+b", buffering=0) as f:
        f.write(b"q" * 50_000)
        before = f.extents()
        free = vol.statfs().free
        with f.map(0, 50_000, write=True) as m:
            assert f.extents() == before
            assert vol.statfs().free == free
            assert bytes(m.buffer) == b"q" * 50_000
            m.buffer[:4] = b"done"
            m.persist(0, 4)
            m.persist()
        assert f.pread(5, 0) == b"doneq"


# ---------------------------------------------------------------- 4. sealed ranges, busy blocks


def test_zero_range_under_a_mapping_zeroes_in_place(vol: daxfs.Volume) -> None:
    with vol.open("z", "w+b", buffering=0) as f:
        f.write(os.urandom(20 * BS))
        with f.map(0, 20 * BS) as m:
            before = f.extents()
            f.zero_range(2 * BS + 100, 5 * BS)       # partial edges and whole blocks
            assert f.extents() == before            # nothing moved, nothing marked unwritten
            assert bytes(m.buffer[2 * BS + 100:7 * BS + 100]) == bytes(5 * BS)
            assert bytes(m.buffer) == f.pread(20 * BS, 0)
            assert vol.statfs().busy == 0
        f.zero_range(10 * BS, 4 * BS)               # unmapped: free to do it either way
        assert f.pread(4 * BS, 10 * BS) == bytes(4 * BS)
        assert vol.fsck() == []


def test_punch_under_a_mapping_keeps_edges_in_place_and_parks_blocks(vol: daxfs.Volume) -> None:
    with vol.open("p", "w+b", buffering=0) as f:
        data = os.urandom(20 * BS)
        f.write(data)
        m = f.map()
        offsets = dict(_pool_offsets(f, 0, 20 * BS))
        f.punch_hole(3 * BS + 10, 6 * BS)         # edges: blocks 3 and 9; whole: 4..8
        after = dict(_pool_offsets(f, 0, 20 * BS))
        assert after[3] == offsets[3] and after[9] == offsets[9], "edge blocks moved under a mapping"
        assert all(after[b] == offsets[b] for b in after)
        assert not any(b in after for b in range(4, 9))
        assert vol.statfs().busy == 5 * BS
        assert vol.fsck() == []
        buf = m.buffer
        assert bytes(buf[3 * BS + 10:4 * BS]) == bytes(BS - 10)
        assert bytes(buf[9 * BS:9 * BS + 10]) == bytes(10)
        assert f.pread(6 * BS, 3 * BS + 10) == bytes(6 * BS)
        del buf
        m.close()
        assert vol.statfs().busy == 0
        assert vol.fsck() == []


def test_truncate_under_a_mapping_parks_blocks_until_close(vol: daxfs.Volume) -> None:
    pattern = b"T" * (64 * BS)
    with vol.open("t", "w+b", buffering=0) as f:
        f.write(pattern)
        free_full = vol.statfs().free
        m = f.map()
        f.truncate(BS)
        assert f.stat().st_size == BS
        st = vol.statfs()
        assert st.busy == 63 * BS
        assert st.free == free_full                   # nothing freed yet
        assert vol.fsck() == []
        # fill the rest of the pool: the busy blocks are never handed out
        with vol.open("filler", "wb", buffering=0) as g:
            g.write(b"F" * (st.free // BS * BS))
            with pytest.raises(OSError) as exc:
                g.write(b"F" * BS)
            assert exc.value.errno == errno.ENOSPC
        assert bytes(m.buffer) == pattern          # the detached view still shows the file's bytes
        m.close()
        assert vol.statfs().busy == 0
        assert vol.statfs().free == 63 * BS
        assert vol.fsck() == []


def test_unlinked_mapped_file_lives_until_the_mapping_closes(vol: daxfs.Volume) -> None:
    free0 = vol.statfs().free
    files0 = vol.statfs().files
    with vol.open("u", "wb", buffering=0) as f:
        f.write(b"U" * 100_000)
    f = vol.open("u", "rb", buffering=0)
    m = f.map()
    f.close()
    vol.unlink("u")
    assert not vol.exists("u")
    assert "u" not in vol.listdir("/")
    assert bytes(m.buffer) == b"U" * 100_000
    assert vol.statfs().free < free0
    assert vol.fsck() == []
    m.close()
    assert vol.statfs().free == free0
    assert vol.statfs().files == files0
    assert vol.statfs().busy == 0
    assert vol.fsck() == []


# ---------------------------------------------------------------- 5. revocation


def test_revoke_migrate_detaches_and_lets_go(vol: daxfs.Volume) -> None:
    with vol.open("r", "w+b", buffering=0) as f:
        f.write(b"m" * (10 * BS))
        m = f.map()
        arr = m.array()
        words = m.array("<u2", offset=2)
        addr = _address(m.buffer)
        m.revoke("migrate")
        assert m.revoked
        assert _address(m.buffer) == addr
        assert (arr == ord("m")).all() and words[0] == 0x6D6D
        with pytest.raises(daxfs.BusyError):
            m.persist()
        f.pwrite(b"new!", 0)
        assert bytes(arr[:4]) == b"mmmm"           # detached: later writes are not seen
        assert bytes(m.buffer[:4]) == b"mmmm"
        m.revoke("migrate")                         # again: nothing to do
        f.truncate(0)
        assert vol.statfs().busy == 0               # the blocks are no longer held
        assert vol.fsck() == []
        assert (arr == ord("m")).all()
        m.close()
        assert (arr == ord("m")).all()
        del arr, words
        gc.collect()
        assert vol.statfs().busy == 0


def test_revoke_write_mapping_migrate_keeps_stores_private(vol: daxfs.Volume) -> None:
    with vol.open("rw", "w+b", buffering=0) as f:
        m = f.map(0, 8 * BS, write=True)
        arr = m.array()
        arr[:3] = (1, 2, 3)
        m.revoke()
        arr[3] = 4                                   # private memory now
        assert list(arr[:4]) == [1, 2, 3, 4]
        assert f.pread(4, 0) == b"\x01\x02\x03\x00"
        m.close()
        del arr


def test_revoke_unknown_mode_is_value_error(vol: daxfs.Volume) -> None:
    with vol.open("x", "w+b", buffering=0) as f:
        f.write(b"x" * 100)
        with f.map() as m:
            with pytest.raises(ValueError):
                m.revoke("evict")
            assert not m.revoked
            f.pwrite(b"y", 0)
            assert bytes(m.buffer[:1]) == b"y"      # still the file


_INVALIDATE_CHILD = textwrap.dedent("""
    import sys, daxfs
    vol = daxfs.mkfs(sys.argv[1], 4 << 20)
    f = vol.open("f", "w+b", buffering=0)
    f.write(b"i" * 20000)
    m = f.map()
    arr = m.array()
    assert arr[5] == ord("i")
    m.revoke("invalidate")
    assert m.revoked
    print("revoked", flush=True)
    print(int(arr[5]), flush=True)     # must fault
    print("survived", flush=True)
""")


def test_revoke_invalidate_faults_on_touch(vol: daxfs.Volume, shm_path: str) -> None:
    child_pool = shm_path + ".child"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    try:
        proc = subprocess.run([sys.executable, "-c", _INVALIDATE_CHILD, child_pool], capture_output=True,
                              text=True, timeout=60, env=env)
    finally:
        if os.path.exists(child_pool):
            os.unlink(child_pool)
    assert proc.returncode == -11, (proc.returncode, proc.stdout, proc.stderr)
    assert "revoked" in proc.stdout and "survived" not in proc.stdout
    # here (no touch): invalidate also detaches and lets go of the blocks
    with vol.open("f", "w+b", buffering=0) as f:
        f.write(b"i" * 20000)
        m = f.map()
        m.revoke("invalidate")
        assert m.revoked
        with pytest.raises(daxfs.BusyError):
            m.persist()
        f.truncate(0)
        assert vol.statfs().busy == 0
        m.close()
    assert vol.fsck() == []


# ---------------------------------------------------------------- 6. close with live exports


def test_close_with_live_array_keeps_blocks_until_it_goes(vol: daxfs.Volume) -> None:
    with vol.open("c", "w+b", buffering=0) as f:
        f.write(b"c" * (16 * BS))
        m = f.map()
        arr = m.array()
        f.truncate(0)                                # blocks detached from the file, held by the view
        assert vol.statfs().busy == 16 * BS
        m.close()
        with pytest.raises(ValueError):
            _ = m.buffer
        with pytest.raises(ValueError):
            m.array()
        assert (arr == ord("c")).all()               # no crash, still readable
        assert vol.statfs().busy == 16 * BS          # the array still points at them
        # the busy blocks are not handed to a new file meanwhile
        with vol.open("n", "wb", buffering=0) as g:
            g.write(b"n" * (vol.statfs().free // BS * BS))
        assert (arr == ord("c")).all()
        del arr
        gc.collect()
        assert vol.statfs().busy == 0
        assert vol.statfs().free == 16 * BS
        assert vol.fsck() == []


def test_close_with_live_array_drops_the_inode_at_once(vol: daxfs.Volume) -> None:
    files0 = vol.statfs().files
    with vol.open("d", "wb", buffering=0) as f:
        f.write(b"d" * (8 * BS))
    f = vol.open("d", "rb", buffering=0)
    m = f.map()
    f.close()
    arr = m.array()
    vol.unlink("d")
    assert vol.statfs().files == files0 + 1          # an orphan held by the mapping
    m.close()
    assert vol.statfs().files == files0              # reclaimed at close, not at gc
    assert not vol.exists("d")
    assert vol.fsck() == []
    assert vol.statfs().busy == 8 * BS               # the array still holds the blocks
    assert bytes(arr[:3]) == b"ddd"
    del arr
    gc.collect()
    assert vol.statfs().busy == 0
    assert vol.fsck() == []


def test_zero_range_over_blocks_an_array_still_shows_after_close(vol: daxfs.Volume) -> None:
    """A closed mapping's live arrays still hold its blocks; the file may change them."""
    with vol.open("zr", "w+b", buffering=0) as f:
        f.write(b"a" * (8 * BS))
        m = f.map()
        arr = m.array()
        m.close()                                # exports live: blocks held, range not sealed
        f.zero_range(BS, 3 * BS)
        assert f.pread(8 * BS, 0) == b"a" * BS + bytes(3 * BS) + b"a" * (4 * BS)
        assert vol.fsck() == []
        f.punch_hole(5 * BS + 1, 2 * BS)
        f.pwrite(b"b" * 10, 6 * BS)
        assert vol.fsck() == []
        del arr
        gc.collect()
        assert vol.statfs().busy == 0
        assert vol.fsck() == []


# ---------------------------------------------------------------- 7. coherence


def test_pwrite_is_seen_through_a_read_mapping_at_once(vol: daxfs.Volume) -> None:
    with vol.open("h", "w+b", buffering=0) as f:
        f.pwrite(b"a" * BS, 0)
        f.pwrite(b"b" * BS, 30 * BS)                 # hole: blocks 1..29
        f.fallocate(10 * BS, 5 * BS)                 # unwritten: blocks 10..14
        with f.map() as m:
            buf = m.buffer
            assert bytes(buf[5 * BS:6 * BS]) == bytes(BS)
            f.pwrite(b"x" * 10, 100)                 # written data
            f.pwrite(b"y" * 3 * BS, 4 * BS + 7)      # into the hole
            f.pwrite(b"u" * 20, 12 * BS + 5)         # into the unwritten range
            f.pwrite(b"w" * 9, 31 * BS - 9)          # the last bytes
            assert bytes(buf[100:110]) == b"x" * 10
            assert bytes(buf[4 * BS + 7:7 * BS + 7]) == b"y" * 3 * BS
            assert bytes(buf[12 * BS + 5:12 * BS + 25]) == b"u" * 20
            assert bytes(buf[12 * BS:12 * BS + 5]) == bytes(5)
            assert bytes(buf[-9:]) == b"w" * 9
            assert bytes(buf) == f.pread(31 * BS, 0)
            # a second mapping sees the same
            with f.map(4 * BS, 4 * BS) as m2:
                assert bytes(m2.buffer) == bytes(buf[4 * BS:8 * BS])
            f.zero_range(4 * BS + 7, 10)
            assert bytes(buf[4 * BS + 7:4 * BS + 17]) == bytes(10)
            del buf
        assert vol.fsck() == []


def test_fallocate_then_pwrite_under_a_read_mapping_is_seen(vol: daxfs.Volume) -> None:
    with vol.open("fa", "w+b", buffering=0) as f:
        f.truncate(16 * BS)                      # all hole
        with f.map(BS + 3, 10 * BS) as m:        # an unaligned sub-range
            assert bytes(m.buffer) == bytes(10 * BS)
            f.fallocate(0, 8 * BS)               # unwritten: still zeros
            assert bytes(m.buffer) == bytes(10 * BS)
            f.pwrite(b"P" * (3 * BS), 2 * BS - 1)  # converts unwritten blocks 1..4
            f.pwrite(b"Q" * 20, 10 * BS)         # fills a hole block
            f.zero_range(9 * BS, 5)              # a hole edge: allocated unwritten
            assert bytes(m.buffer) == f.pread(10 * BS, BS + 3)
            assert b"P" * 100 in bytes(m.buffer) and b"Q" * 20 in bytes(m.buffer)
        assert vol.fsck() == []


def test_stores_through_a_write_mapping_are_seen_by_pread_and_other_mappings(vol: daxfs.Volume) -> None:
    with vol.open("s", "w+b", buffering=0) as f:
        f.pwrite(b"0" * 100, 0)
        with f.map(0, 40 * BS, write=True) as w, f.map(0, 40 * BS) as r:
            w.buffer[10 * BS:10 * BS + 5] = b"hello"
            a = w.array("<f8", 16, offset=20 * BS)
            a[:] = np.arange(16) / 2
            assert f.pread(5, 10 * BS) == b"hello"
            assert bytes(r.buffer[10 * BS:10 * BS + 5]) == b"hello"
            assert np.array_equal(np.frombuffer(f.pread(128, 20 * BS), "<f8"), np.arange(16) / 2)
            assert np.array_equal(r.array("<f8", 16, offset=20 * BS), np.arange(16) / 2)
            del a


# ---------------------------------------------------------------- 8. threads


def test_threads_read_through_one_mapping_while_another_writes(vol: daxfs.Volume) -> None:
    size = 64 * BS
    with vol.open("mt", "w+b", buffering=0) as f:
        # stable part: the first half; the writer touches only the second half (holes at first)
        stable = os.urandom(size // 2)
        f.pwrite(stable, 0)
        f.pwrite(b"e", size - 1)
        m = f.map()
        errors: list[BaseException] = []
        stop = threading.Event()

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(400):
                    a = rng.randrange(0, size // 2)
                    b = rng.randrange(a, size // 2 + 1)
                    assert bytes(m.buffer[a:b]) == stable[a:b]
                    arr = m.array("u1", b - a, offset=a)
                    assert arr.tobytes() == stable[a:b]
                    tail = bytes(m.buffer[size // 2:])
                    assert len(tail) == size // 2
            except BaseException as exc:     # noqa: BLE001 - reported below
                errors.append(exc)

        writes = [0]
        writing = threading.Event()         # the writer has written once: it runs beside the readers

        def writer() -> None:
            rng = random.Random(99)
            try:
                while not stop.is_set():
                    off = rng.randrange(size // 2, size - 100)
                    f.pwrite(bytes([rng.randrange(1, 256)]) * rng.randrange(1, 100), off)
                    writes[0] += 1
                    writing.set()
            except BaseException as exc:     # noqa: BLE001
                errors.append(exc)
                writing.set()

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
        w = threading.Thread(target=writer)
        w.start()
        try:
            assert writing.wait(60), "the writer never wrote"
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            stop.set()
            w.join()
        assert errors == []
        assert writes[0] > 0
        assert bytes(m.buffer) == f.pread(size, 0)       # the writes into holes are seen too
        m.close()
        assert vol.fsck() == []


_RACE_CHILD = textwrap.dedent("""
    import gc, json, os, sys, threading
    import daxfs

    path, keep_array = sys.argv[1], sys.argv[2] == "1"
    BS = 4096
    name = os.path.basename(path)

    def pool_mappings():
        with open("/proc/self/maps") as maps:
            return sum(1 for line in maps if line.rstrip().endswith(name))

    vol = daxfs.mkfs(path, 16 << 20)
    baseline = pool_mappings()
    f = vol.open("race", "w+b", buffering=0)
    errors, writes = [], [0]
    stop = threading.Event()

    def writer():
        i = 0
        try:
            while not stop.is_set():
                f.pwrite(b"w", (i % 64) * 2 * BS + BS)   # into a hole the view shows
                writes[0] += 1
                i += 1
        except BaseException as exc:
            errors.append(repr(exc))

    sys.setswitchinterval(1e-5)          # interleave the two threads finely
    t = threading.Thread(target=writer)
    t.start()
    for _ in range(12_000):              # a count, not a duration (about 1 s here)
        if errors:
            break
        f.truncate(0)
        f.truncate(128 * BS)             # all holes again
        m = f.map()
        arr = m.array() if keep_array else None
        m.close()
        del arr
    stop.set()
    t.join()
    gc.collect()
    print(json.dumps({"errors": errors, "writes": writes[0], "leaked": pool_mappings() - baseline,
                      "busy": vol.statfs().busy, "fsck": vol.fsck()}))
    f.close()
    vol.close()
""")


@pytest.mark.parametrize("keep_array", [False, True], ids=["no-exports", "live-array"])
def test_closing_mappings_while_another_thread_fills_their_holes(shm_path: str, keep_array: bool) -> None:
    """Close runs beside writes into the holes the view shows: the writes succeed, and no
    piece of the pool stays mapped at addresses the closed view gave back (which would
    overlay whatever memory is allocated there next).  In a child process: such a stray
    mapping may crash it."""
    child_pool = shm_path + ".race"
    try:
        proc = subprocess.run([sys.executable, "-c", _RACE_CHILD, child_pool, "1" if keep_array else "0"],
                              capture_output=True, text=True, timeout=120)
    finally:
        if os.path.exists(child_pool):
            os.unlink(child_pool)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["writes"] > 0
    assert result["errors"] == [], result["errors"][:1]
    assert result["leaked"] == 0, f"{result['leaked']} pool ranges left mapped after every view closed"
    assert result["busy"] == 0
    assert result["fsck"] == []


# ---------------------------------------------------------------- 9. closing the volume


def test_volume_close_refuses_under_a_live_mapping_unless_forced(shm_path: str) -> None:
    v = daxfs.mkfs(shm_path, POOL)
    f = v.open("v", "w+b", buffering=0)
    f.write(b"v" * 50_000)
    m = f.map()
    arr = m.array()
    with pytest.raises(daxfs.BusyError) as exc:
        v.close()
    assert exc.value.errno == errno.EBUSY
    assert not v.closed
    assert f.pread(3, 0) == b"vvv"                  # still fully usable
    v.close(force=True)
    assert v.closed
    assert m.revoked
    assert bytes(m.buffer) == b"v" * 50_000
    assert (arr == ord("v")).all()
    m.close()
    del arr
    with daxfs.open_volume(shm_path) as again:
        assert again.fsck() == []
        with again.open("v", "rb", buffering=0) as g:
            assert g.read() == b"v" * 50_000


def test_volume_close_with_a_mapped_orphan(shm_path: str) -> None:
    v = daxfs.mkfs(shm_path, POOL)
    free0 = v.statfs().free
    with v.open("o", "wb", buffering=0) as f:
        f.write(b"o" * 30_000)
    f = v.open("o", "rb", buffering=0)
    m = f.map()
    f.close()
    v.unlink("o")
    with pytest.raises(daxfs.BusyError):
        v.close()
    v.close(force=True)
    assert bytes(m.buffer) == b"o" * 30_000
    m.close()
    with daxfs.open_volume(shm_path) as again:
        assert again.listdir("/") == []
        assert again.statfs().free == free0
        assert again.fsck() == []


# ---------------------------------------------------------------- 10. bad input


def _unchanged(vol: daxfs.Volume, f: daxfs.File | None) -> tuple[int, int, int]:
    st = vol.statfs()
    return st.free, st.busy, f.stat().st_size if f is not None and not f.closed else -1


@pytest.mark.parametrize("args, kwargs, error", [
    pytest.param((0, 10_001), {}, ValueError, id="read-past-eof"),
    pytest.param((10_001, None), {}, ValueError, id="read-offset-past-eof"),
    pytest.param((10_000, None), {}, ValueError, id="read-offset-at-eof"),
    pytest.param((10_000, None), {"write": True}, ValueError, id="write-offset-at-eof-to-eof"),
    pytest.param((10_001, None), {"write": True}, ValueError, id="write-offset-past-eof-to-eof"),
    pytest.param((-1, 10), {}, ValueError, id="read-negative-offset"),
    pytest.param((0, -1), {}, ValueError, id="read-negative-length"),
    pytest.param((-BS, None), {"write": True}, ValueError, id="write-negative-offset"),
    pytest.param((0, -5), {"write": True}, ValueError, id="write-negative-length"),
    pytest.param((0, 0), {}, ValueError, id="read-empty"),
    pytest.param((0, 0), {"write": True}, ValueError, id="write-empty"),
    pytest.param((1 << 62, 1 << 62), {}, OSError, id="read-overflow"),
    pytest.param((1, 1 << 62), {"write": True}, OSError, id="write-overflow"),
    pytest.param((1 << 63, 1 << 63), {"write": True}, OSError, id="write-overflow-huge"),
])
def test_bad_ranges_fail_and_allocate_nothing(vol: daxfs.Volume, args: tuple, kwargs: dict,
                                              error: type) -> None:
    with vol.open("b", "w+b", buffering=0) as f:
        f.pwrite(b"b" * 10_000, 0)
        f.punch_hole(0, BS)
        before = _unchanged(vol, f)
        with pytest.raises(error) as exc:
            f.map(*args, **kwargs)
        if error is OSError:
            assert exc.value.errno == errno.EINVAL
        assert _unchanged(vol, f) == before
        assert f.extents()[0].file_offset == BS
        assert vol.statfs().busy == 0
        f.pwrite(b"q", 0)                           # the file is not sealed by a failed map
        f.truncate(10)
        assert vol.statfs().busy == 0
    assert vol.fsck() == []


def test_empty_file_read_map_is_value_error(vol: daxfs.Volume) -> None:
    with vol.open("empty", "w+b", buffering=0) as f:
        before = _unchanged(vol, f)
        with pytest.raises(ValueError):
            f.map()
        with pytest.raises(ValueError):
            f.map(0, 1)
        assert _unchanged(vol, f) == before
        with f.map(write=True, length=BS) as m:    # a write mapping may grow it
            assert len(m.buffer) == BS
        assert f.stat().st_size == BS


def test_write_mapping_bigger_than_free_space_is_enospc_and_allocates_nothing(vol: daxfs.Volume) -> None:
    with vol.open("big", "w+b", buffering=0) as f:
        f.pwrite(b"b" * 100, 0)
        before = _unchanged(vol, f)
        with pytest.raises(OSError) as exc:
            f.map(0, POOL, write=True)
        assert exc.value.errno == errno.ENOSPC
        assert _unchanged(vol, f) == before
        assert f.pread(200, 0) == b"b" * 100
    assert vol.fsck() == []


def test_mode_and_type_errors(vol: daxfs.Volume, shm_path: str) -> None:
    with vol.open("m", "wb", buffering=0) as f:
        f.write(b"m" * 10_000)
    vol.mkdir("d")
    free = vol.statfs().free
    with vol.open("m", "rb", buffering=0) as f:
        with pytest.raises(PermissionError):
            f.map(write=True)
        with pytest.raises(PermissionError):
            f.map(0, 50_000, write=True)           # would grow the file: still nothing done
        assert f.stat().st_size == 10_000
    with vol.open("m", "ab", buffering=0) as f:
        with pytest.raises(PermissionError):
            f.map()
    with vol.open("m", "r+b", buffering=0) as f:
        pass
    f = vol.open("m", "wb", buffering=0)                         # truncates: size 0
    with pytest.raises(PermissionError):
        f.map()
    with pytest.raises(PermissionError):
        f.map(0, BS, write=True)
    assert f.stat().st_size == 0
    f.close()
    with pytest.raises(ValueError):
        f.map()                                     # closed handle
    with pytest.raises(IsADirectoryError):
        vol.open("d")
    assert vol.statfs().free == free + 3 * BS       # "wb" freed the old blocks, nothing else changed
    assert vol.statfs().busy == 0
    vol.close()
    ro = daxfs.open_volume(shm_path, readonly=True)
    try:
        with ro.open("m", "rb", buffering=0) as f:
            with pytest.raises(PermissionError):
                f.map(write=True)
            with pytest.raises(PermissionError):
                f.map(0, 2 * BS, write=True)
            assert f.stat().st_size == 0
    finally:
        ro.close()


def test_read_mapping_on_a_read_only_volume(shm_path: str) -> None:
    with daxfs.mkfs(shm_path, POOL) as v:
        with v.open("r", "wb", buffering=0) as f:
            f.write(b"ro" * 5000)
    ro = daxfs.open_volume(shm_path, readonly=True)
    try:
        with ro.open("r", "rb", buffering=0) as f:
            with f.map() as m:
                assert bytes(m.buffer) == b"ro" * 5000
                assert m.buffer.readonly
    finally:
        ro.close()


def test_persist_and_array_range_checks(vol: daxfs.Volume) -> None:
    with vol.open("pc", "w+b", buffering=0) as f:
        with f.map(0, 2 * BS, write=True) as m:
            for off, n in [(-1, 1), (0, 2 * BS + 1), (2 * BS, 1), (1, -2)]:
                with pytest.raises(ValueError):
                    m.persist(off, n)
            m.persist(2 * BS, 0)
            with pytest.raises(ValueError):
                m.array(offset=2 * BS + 1)
        with pytest.raises(ValueError):
            m.persist()
        with pytest.raises(ValueError):
            m.revoke()
