"""Sparse files: holes, truncate, fallocate, punch_hole, zero_range, SEEK_DATA/SEEK_HOLE, extents."""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest

from daxfs.testing.suite._base import SEEK_DATA, SEEK_HOLE, SuiteBase, allocated, errno_of, pattern, read_file


class SparseTests(SuiteBase):
    """Sparse files: holes, truncate, fallocate, punch_hole, zero_range, SEEK_DATA/SEEK_HOLE, extents."""

    def test_sparse_file_holes_read_as_zeros(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        with volume.open("f", "w+b", buffering=0) as f:
            f.pwrite(b"tail", 50 * bs + 3)
            assert f.stat().st_size == 50 * bs + 7
            assert f.pread(10, 7 * bs) == bytes(10)
            assert f.pread(50 * bs + 7, 0) == bytes(50 * bs + 3) + b"tail"
        assert allocated(volume, "f") == bs

    def test_truncate_down_then_up_shows_zeros(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        data = pattern(3 * bs + 100)
        with volume.open("f", "w+b", buffering=0) as f:
            f.write(data)
            f.truncate(100)
            assert f.stat().st_size == 100 and allocated(volume, "f") == bs
            assert f.pread(bs, 0) == data[:100]
            f.truncate(3 * bs)
            assert f.pread(3 * bs, 0) == data[:100] + bytes(3 * bs - 100)
            # shrink and regrow inside one block
            f.pwrite(data[:2 * bs], 0)
            f.truncate(bs + 10)
            f.truncate(bs + 500)
            assert f.pread(bs + 500, 0) == data[:bs + 10] + bytes(490)
            f.seek(7)
            assert f.truncate() == 7                   # no argument: at the position
            assert f.stat().st_size == 7
        with volume.open("f", "r+b", buffering=0) as f:
            f.truncate(0)
        assert volume.stat("f").st_size == 0 and volume.stat("f").st_blocks == 0

    @pytest.mark.parametrize("regrow", ["truncate", "pwrite", "fallocate", "zero_range", "write_end"])
    def test_growing_over_a_truncated_tail_shows_zeros(self, volume: Any, regrow: str) -> None:
        """Bytes cut off by truncate never come back, whatever grows the file again."""
        bs = volume.statfs().block_size
        with volume.open("f", "w+b", buffering=0) as f:
            f.write(b"x" * (2 * bs))
            f.truncate(100)
            if regrow == "truncate":
                f.truncate(300)
            elif regrow == "pwrite":
                f.pwrite(b"y", 299)
            elif regrow == "fallocate":
                f.fallocate(200, 100)
            elif regrow == "zero_range":
                f.zero_range(200, 100)
            else:
                f.seek(0, os.SEEK_END)
                f.seek(199, os.SEEK_CUR)
                f.write(b"y")
            assert f.stat().st_size == 300
            got = f.pread(300, 0)
        assert got[:100] == b"x" * 100
        assert got[100:299] == bytes(199), f"stale bytes after {regrow}: {got[100:299].count(b'x')} 'x'"

    def test_fallocate(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        free = volume.statfs().free
        with volume.open("f", "w+b", buffering=0) as f:
            f.fallocate(0, 3 * bs)
            assert f.stat().st_size == 3 * bs and allocated(volume, "f") == 3 * bs
            assert volume.statfs().free == free - 3 * bs
            assert f.read() == bytes(3 * bs)
            assert [e.flags for e in f.extents()] == [frozenset({"unwritten"})]
            f.fallocate(10 * bs, 2 * bs, keep_size=True)          # past EOF: size stays
            assert f.stat().st_size == 3 * bs and allocated(volume, "f") == 5 * bs
            assert f.pread(20 * bs, 0) == bytes(3 * bs)
            f.fallocate(bs, 100)                                  # already allocated: nothing changes
            assert f.stat().st_size == 3 * bs and allocated(volume, "f") == 5 * bs
            f.fallocate(3 * bs, 5)                                # size grows to offset+length exactly
            assert f.stat().st_size == 3 * bs + 5 and allocated(volume, "f") == 6 * bs
            f.pwrite(b"mid", bs + 10)
            assert f.pread(2 * bs, 0) == bytes(bs + 10) + b"mid" + bytes(bs - 13)
            f.truncate(12 * bs)
            assert f.pread(12 * bs, 0) == bytes(bs + 10) + b"mid" + bytes(11 * bs - 13)
        for call in (lambda g: g.fallocate(0, 0), lambda g: g.fallocate(-1, 10)):
            with volume.open("f", "r+b", buffering=0) as g, pytest.raises(OSError) as info:
                call(g)
            assert errno_of(info) == errno.EINVAL

    def test_punch_hole(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        data = pattern(4 * bs)
        with volume.open("f", "w+b", buffering=0) as f:
            f.write(data)
            free = volume.statfs().free
            f.punch_hole(bs, 2 * bs)
            assert f.stat().st_size == 4 * bs
            assert allocated(volume, "f") == 2 * bs and volume.statfs().free == free + 2 * bs
            assert f.pread(4 * bs, 0) == data[:bs] + bytes(2 * bs) + data[3 * bs:]
            offsets = [(e.file_offset, e.length) for e in f.extents()]
            assert offsets == [(0, bs), (3 * bs, bs)]
            f.punch_hole(10, 20)                                  # inside a block: zeros, still allocated
            assert f.pread(40, 0) == data[:10] + bytes(20) + data[30:40]
            assert allocated(volume, "f") == 2 * bs
            f.punch_hole(3 * bs + 5, 10 * bs)                     # past EOF: size unchanged
            assert f.stat().st_size == 4 * bs
            assert f.pread(bs, 3 * bs) == data[3 * bs:3 * bs + 5] + bytes(bs - 5)
        assert read_file(volume, "f") == data[:10] + bytes(20) + data[30:bs] + bytes(2 * bs) + \
            data[3 * bs:3 * bs + 5] + bytes(bs - 5)

    def test_zero_range(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        data = pattern(4 * bs)
        with volume.open("f", "w+b", buffering=0) as f:
            f.write(data)
            f.zero_range(bs - 10, 2 * bs)
            assert f.stat().st_size == 4 * bs and allocated(volume, "f") == 4 * bs
            expect = data[:bs - 10] + bytes(2 * bs) + data[3 * bs - 10:]
            assert f.pread(4 * bs, 0) == expect
            f.zero_range(4 * bs, 2 * bs, keep_size=True)
            assert f.stat().st_size == 4 * bs and allocated(volume, "f") == 6 * bs
            f.zero_range(4 * bs - 1, 100)
            assert f.stat().st_size == 4 * bs + 99
            assert f.pread(5 * bs, 0) == expect[:-1] + bytes(100)
        assert read_file(volume, "f") == expect[:-1] + bytes(100)

    def test_seek_data_and_seek_hole(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        with volume.open("f", "w+b", buffering=0) as f:
            f.pwrite(b"a" * bs, 0)
            f.pwrite(b"b" * (bs + 10), 3 * bs)
            size = 4 * bs + 10
            assert f.seek(0, SEEK_DATA) == 0
            assert f.seek(0, SEEK_HOLE) == bs
            assert f.seek(bs + 5, SEEK_DATA) == 3 * bs
            assert f.seek(bs + 5, SEEK_HOLE) == bs + 5
            assert f.seek(3 * bs, SEEK_HOLE) == size          # the implicit hole at EOF
            for whence in (SEEK_DATA, SEEK_HOLE):
                with pytest.raises(OSError) as info:
                    f.seek(size, whence)
                assert errno_of(info) == errno.ENXIO
            f.truncate(8 * bs)
            with pytest.raises(OSError) as info:
                f.seek(5 * bs, SEEK_DATA)                     # only a hole from here to EOF
            assert errno_of(info) == errno.ENXIO
            f.punch_hole(0, bs)
            assert f.seek(0, SEEK_DATA) == 3 * bs
            f.fallocate(bs, bs)                               # unwritten: reads as zeros, seeks as a hole
            assert f.seek(0, SEEK_DATA) == 3 * bs
            assert f.tell() == 3 * bs

    def test_extents_after_fallocate_punch_and_write(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        with volume.open("f", "w+b", buffering=0) as f:
            assert f.extents() == []
            f.write(pattern(2 * bs))
            f.fallocate(2 * bs, 2 * bs)
            f.pwrite(b"z", 6 * bs)
            f.punch_hole(bs, bs)
            exts = f.extents()
            assert [e.file_offset for e in exts] == sorted(e.file_offset for e in exts)
            covered = {}
            for e in exts:
                assert e.length > 0 and e.length % bs == 0 and e.pool_offset % bs == 0
                for k in range(e.length // bs):
                    covered[e.file_offset // bs + k] = "unwritten" in e.flags
            assert covered == {0: False, 2: True, 3: True, 6: False}
            assert sum(e.length for e in exts) == allocated(volume, "f")
            f.pwrite(b"w", 2 * bs)                             # writing converts the block it touches
            covered = {e.file_offset // bs + k: "unwritten" in e.flags
                       for e in f.extents() for k in range(e.length // bs)}
            assert covered == {0: False, 2: False, 3: True, 6: False}
            pools = [e.pool_offset + k * bs for e in f.extents() for k in range(e.length // bs)]
            assert len(set(pools)) == len(pools)
