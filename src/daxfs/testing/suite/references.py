"""Mappings and pins through any front end: what daxfs exists for.

Zero-copy views show the file's bytes and stores through a write mapping are the file's;
a write into a hole shows through a mapping that showed zeros; a change under a mapping or
a pin follows the policy (``defer``: the change happens, the holder keeps its bytes, the
blocks stay busy until it lets go); pins give DMA segments; leases are broken; closing a
mapping while arrays still point into it keeps the memory until they go; holders release
everything they own.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from daxfs.errors import BusyError
from daxfs.testing.suite._base import SuiteBase, pattern, read_file, write_file


class ReferenceTests(SuiteBase):
    """Mappings, pins, leases and holders."""

    def test_read_mapping_shows_the_file_zero_copy(self, volume: Any) -> None:
        self.require("mappings")
        bs = volume.statfs().block_size
        data = pattern(3 * bs + 100)
        write_file(volume, "m", data)
        with volume.open("m", "rb", buffering=0) as f:
            with f.map() as m:
                assert bytes(m.buffer) == data and len(m.buffer) == len(data)
                assert m.buffer.readonly
                words = m.array("u1")
                assert words.tobytes() == data and not words.flags.writeable
            with f.map(bs + 7, 10) as part:
                assert bytes(part.buffer) == data[bs + 7:bs + 17]
            with pytest.raises(ValueError):
                f.map(0, len(data) + 1)                 # a read mapping stays inside the file
            with pytest.raises(PermissionError):
                f.map(write=True)

    def test_write_mapping_populates_grows_and_persists(self, volume: Any, remount: Any) -> None:
        self.require("mappings")
        bs = volume.statfs().block_size
        with volume.open("w", "w+b", buffering=0) as f:
            with f.map(0, 2 * bs + 5, write=True) as m:
                assert f.stat().st_size == 2 * bs + 5 and bytes(m.buffer) == bytes(2 * bs + 5)
                m.array("u1")[:] = 7
                m.persist()
            assert f.pread(3, bs) == b"\x07\x07\x07"
        volume = remount(volume)
        assert read_file(volume, "w") == b"\x07" * (2 * bs + 5)

    def test_write_into_a_hole_shows_through_a_mapping(self, volume: Any) -> None:
        self.require("mappings")
        bs = volume.statfs().block_size
        with volume.open("h", "w+b", buffering=0) as f:
            f.truncate(4 * bs)
            with f.map() as m:
                assert bytes(m.buffer[bs:bs + 4]) == bytes(4)
                f.pwrite(b"fill", bs)
                assert bytes(m.buffer[bs:bs + 4]) == b"fill"     # the same memory, now the file's
                f.pwrite(b"over", 0)
                assert bytes(m.buffer[:4]) == b"over"

    def test_truncate_under_a_mapping_defers_and_the_holder_keeps_its_bytes(self, volume: Any) -> None:
        self.require("mappings")
        bs = volume.statfs().block_size
        write_file(volume, "t", pattern(8 * bs))
        with volume.open("t", "r+b", buffering=0) as f:
            m = f.map()
            f.truncate(bs, policy="defer")
            assert f.stat().st_size == bs
            assert volume.statfs().busy == 7 * bs
            assert bytes(m.buffer[-10:]) == pattern(8 * bs)[-10:]
            write_file(volume, "other", b"z" * (16 * bs))        # never takes the busy blocks
            assert bytes(m.buffer[-10:]) == pattern(8 * bs)[-10:]
            m.close()
        assert volume.statfs().busy == 0

    def test_refuse_and_unlink_of_a_mapped_file(self, volume: Any) -> None:
        self.require("mappings")
        bs = volume.statfs().block_size
        write_file(volume, "u", pattern(2 * bs))
        f = volume.open("u", "rb", buffering=0)
        m = f.map()
        with volume.open("u", "r+b", buffering=0) as g:
            with pytest.raises(BusyError):
                g.truncate(0, policy="refuse")
        assert volume.stat("u").st_size == 2 * bs
        volume.unlink("u")
        assert not volume.exists("u")
        assert bytes(m.buffer[:8]) == pattern(8)                 # an orphan, alive for its mapping
        f.close()
        m.close()
        assert volume.statfs().busy == 0

    def test_pin_segments_and_buffer(self, volume: Any) -> None:
        self.require("pins")
        bs = volume.statfs().block_size
        data = pattern(4 * bs)
        write_file(volume, "p", data)
        with volume.open("p", "r+b", buffering=0) as f:
            with f.pin(bs, 2 * bs) as p:
                assert sum(n for _o, n, _p in p.segments) == 2 * bs
                assert all(pool_offset is not None for _o, _n, pool_offset in p.segments)
                assert bytes(p.buffer) == data[bs:3 * bs]
                f.punch_hole(bs, bs)                            # deferred: the pin keeps its block
                assert bytes(p.buffer[:4]) == data[bs:bs + 4]
                assert volume.statfs().busy == bs
            assert volume.statfs().busy == 0
            with pytest.raises(ValueError):
                f.pin(0, 5 * bs)                                # a pin lies inside the file
            with f.pin(0, bs, write=True) as wp:
                wp.buffer[:2] = b"hi"
            assert f.pread(2, 0) == b"hi"

    def test_lease_break_calls_on_break(self, volume: Any) -> None:
        self.require("mappings")
        bs = volume.statfs().block_size
        write_file(volume, "l", pattern(2 * bs))
        told: list[Any] = []
        with volume.open("l", "r+b", buffering=0) as f:
            lease = f.map(lease=True, on_break=lambda m: (told.append(m), m.close()))
            f.truncate(0, policy="break")
            assert told == [lease] and lease.closed
        assert volume.pins() == []

    def test_closed_mapping_keeps_memory_for_live_arrays(self, volume: Any) -> None:
        self.require("mappings")
        bs = volume.statfs().block_size
        write_file(volume, "a", b"\x05" * (2 * bs))
        with volume.open("a", "r+b", buffering=0) as f:
            m = f.map()
            arr = m.array("u1")
            m.close()
            f.truncate(0)
            assert int(arr.sum()) == 5 * 2 * bs                 # still readable, still its bytes
            assert volume.statfs().busy == 2 * bs
            del arr
            gc.collect()
        for _ in range(200):                                    # the release may travel (a client)
            if volume.statfs().busy == 0:
                break
            gc.collect()
        assert volume.statfs().busy == 0

    def test_holder_close_releases_everything_it_owns(self, volume: Any) -> None:
        self.require("pins")
        bs = volume.statfs().block_size
        write_file(volume, "o", pattern(2 * bs))
        h = volume.holder("worker-1")
        f = h.open("o", "rb", buffering=0)
        f.map()
        f.pin(0, bs)
        assert sorted((i.holder, i.kind) for i in volume.pins()) == [("worker-1", "mapping"), ("worker-1", "pin")]
        h.close()
        assert volume.pins() == [] and f.closed
