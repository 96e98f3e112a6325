"""Sharing blocks through any front end: clone, dedupe, copy_file_range, owners.

A clone shares every block (``shared`` in extents, counted once in ``statfs().shared``) and
a write to either side copies first, so the other never sees it; dedupe shares only equal
blocks; copy_file_range copies bytes exactly, sharing the aligned middle; owners() finds
every file that owns a pool block.
"""

from __future__ import annotations

from typing import Any

import pytest

from daxfs.testing.suite._base import SuiteBase, errno_of, pattern, read_file, write_file


class SharingTests(SuiteBase):
    """clone_file, clone_range, dedupe_range, copy_file_range, owners."""

    def test_clone_shares_and_writes_stay_private(self, volume: Any, remount: Any) -> None:
        self.require("reflink")
        bs = volume.statfs().block_size
        data = pattern(4 * bs)
        write_file(volume, "src", data)
        used = volume.statfs().used
        volume.clone_file("src", "dst")
        assert volume.statfs().used == used and volume.statfs().shared == 4 * bs
        with volume.open("dst", "rb", buffering=0) as f:
            assert all("shared" in e.flags for e in f.extents())
            pool_offset = f.extents()[0].pool_offset
        assert sorted(o.path for o in volume.owners(pool_offset, bs)) == ["/dst", "/src"]
        with volume.open("dst", "r+b", buffering=0) as f:
            f.pwrite(b"mine", bs)
        assert read_file(volume, "src") == data
        assert read_file(volume, "dst") == data[:bs] + b"mine" + data[bs + 4:]
        volume = remount(volume)
        assert read_file(volume, "src") == data and volume.statfs().shared == 3 * bs

    def test_clone_range_and_its_rules(self, volume: Any) -> None:
        self.require("reflink")
        bs = volume.statfs().block_size
        write_file(volume, "a", pattern(3 * bs))
        write_file(volume, "b", b"b" * (3 * bs))
        with volume.open("a", "rb", buffering=0) as src, volume.open("b", "r+b", buffering=0) as dst:
            assert volume.clone_range(src, 0, dst, bs, bs) == bs
            with pytest.raises(OSError) as exc:
                volume.clone_range(src, 1, dst, 0, bs)          # offsets must be block multiples
            assert errno_of(exc) == 22
        assert read_file(volume, "b") == b"b" * bs + pattern(bs) + b"b" * bs

    def test_dedupe_shares_only_equal_blocks(self, volume: Any) -> None:
        self.require("reflink")
        bs = volume.statfs().block_size
        write_file(volume, "x", b"x" * bs + b"y" * bs)
        write_file(volume, "y", b"x" * bs + b"z" * bs)
        assert volume.dedupe_range("x", 0, "y", 0, 2 * bs) == bs
        assert read_file(volume, "y") == b"x" * bs + b"z" * bs
        assert volume.statfs().shared == bs

    def test_copy_file_range_is_exact(self, volume: Any) -> None:
        self.require("reflink")
        bs = volume.statfs().block_size
        data = pattern(5 * bs + 77)
        write_file(volume, "c1", data)
        write_file(volume, "c2", b"")
        assert volume.copy_file_range("c1", 10, "c2", 10, len(data)) == len(data) - 10
        assert read_file(volume, "c2") == bytes(10) + data[10:]
        assert volume.statfs().shared > 0                       # the aligned middle is shared
