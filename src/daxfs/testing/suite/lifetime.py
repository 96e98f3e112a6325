"""Lifetimes: unlinked and renamed-over open files, what survives a reopen, and leaving a
``with`` block by an exception."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from daxfs.testing.suite._base import Remount, SuiteBase, pattern, read_file, tree_state, write_file


class LifetimeTests(SuiteBase):
    """Lifetimes: unlinked and renamed-over open files, and what survives a reopen."""

    def test_unlinked_open_file_lives_until_closed(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        free0 = volume.statfs().free
        data = pattern(10 * bs)
        f = volume.open("f", "w+b", buffering=0)
        f.write(data)
        free_with_f = volume.statfs().free
        assert free_with_f == free0 - 10 * bs
        volume.unlink("f")
        assert not volume.exists("f") and volume.listdir() == []
        assert f.pread(len(data), 0) == data
        f.write(b"more")                             # still writable, still grows
        assert f.stat().st_size == 10 * bs + 4 and f.stat().st_nlink == 0
        assert volume.statfs().free == free_with_f - bs
        write_file(volume, "f", b"a different file")
        assert read_file(volume, "f") == b"a different file"
        assert f.pread(4, 10 * bs) == b"more"
        f.close()
        volume.unlink("f")
        assert volume.statfs().free == free0

    def test_rename_over_an_open_file_keeps_it_for_its_handle(self, volume: Any) -> None:
        write_file(volume, "victim", b"v" * 5000)
        write_file(volume, "new", b"n")
        free0 = volume.statfs().free
        with volume.open("victim", "rb", buffering=0) as held:
            volume.rename("new", "victim")
            assert read_file(volume, "victim") == b"n"
            assert held.read() == b"v" * 5000
            assert volume.statfs().free == free0
        assert volume.statfs().free > free0

    def test_open_handle_follows_rename(self, volume: Any) -> None:
        with volume.open("a", "w+b", buffering=0) as f:
            f.write(b"one")
            volume.mkdir("d")
            volume.rename("a", "d/b")
            f.write(b"two")
        assert read_file(volume, "d/b") == b"onetwo"
    def test_everything_survives_reopen(self, volume: Any, remount: Remount) -> None:
        bs = volume.statfs().block_size
        vol = volume
        vol.mkdir("d/e", mode=0o750, parents=True)
        write_file(vol, "d/e/data", pattern(3 * bs + 5))
        vol.chmod("d/e/data", 0o604)
        vol.link("d/e/data", "alias")
        with vol.open("sparse", "wb", buffering=0) as f:
            f.pwrite(b"end", 40 * bs)
            f.fallocate(2 * bs, 2 * bs)
            f.fallocate(50 * bs, bs, keep_size=True)
        with vol.open("punched", "wb", buffering=0) as f:
            f.write(pattern(4 * bs, 9))
            f.punch_hole(bs, bs)
            f.zero_range(3 * bs, 10)
        write_file(vol, "empty", b"")
        with vol.open("inplace", "wb", buffering=0) as f:
            f.write(b"0" * 1000)
        with vol.open("inplace", "r+b", buffering=0) as f:
            f.pwrite(b"1", 500)
        vol.utime("d", ns=(11, 22))
        vol.chmod("d", 0o700)
        before = tree_state(vol)
        stats = vol.statfs()
        exts = {}
        for p in ("sparse", "punched"):
            with vol.open(p, "rb", buffering=0) as f:
                exts[p] = f.extents()
        vol = remount(vol)
        assert tree_state(vol) == before
        after = vol.statfs()
        assert (after.free, after.used, after.files) == (stats.free, stats.used, stats.files)
        for p, e in exts.items():
            with vol.open(p, "rb", buffering=0) as f:
                assert f.extents() == e
        vol = remount(vol)
        assert tree_state(vol) == before
        # and the reopened volume is fully usable
        write_file(vol, "d/e/later", b"later")
        vol.unlink("alias")
        vol = remount(vol)
        assert read_file(vol, "d/e/later") == b"later" and vol.stat("d/e/data").st_nlink == 1

    def test_unlinked_open_file_is_gone_after_reopen(self, volume: Any, remount: Remount) -> None:
        free0 = volume.statfs().free
        f = volume.open("f", "w+b", buffering=0)
        f.write(b"x" * 50000)
        volume.unlink("f")
        vol = remount(volume)                          # closing the volume closes the handle
        assert f.closed
        assert vol.listdir() == [] and vol.statfs().free == free0

    def test_leaving_with_by_an_exception_raises_it_and_lets_go(self, volume: Any,
                                                                reopen: Callable[[Any], Any]) -> None:
        self.require("mappings")
        data = pattern(3 * volume.statfs().block_size, 4)
        write_file(volume, "f", data)
        f = volume.open("f", "rb", buffering=0)
        m = f.map()
        view = m.buffer
        with pytest.raises(KeyError, match="the caller's"):
            with volume:
                raise KeyError("the caller's")
        assert volume.closed                        # let go: no BusyError replaced the KeyError
        assert bytes(view) == data                  # the mapping was migrated, still readable
        vol = reopen(volume)
        assert read_file(vol, "f") == data and vol.fsck() == []

    def test_leaving_with_by_an_exception_while_pinned_closes_at_the_last_release(
            self, volume: Any, reopen: Callable[[Any], Any]) -> None:
        self.require("pins")
        data = pattern(2 * volume.statfs().block_size, 5)
        write_file(volume, "f", data)
        f = volume.open("f", "r+b", buffering=0)
        pin = f.pin(0, len(data), write=True)
        with pytest.raises(ZeroDivisionError):
            with volume:
                1 / 0
        # a pin is never revoked (a device may be writing): the volume stays until it goes
        assert not volume.closed
        pin.buffer[:4] = b"DMA!"
        pin.release()
        for _ in range(3000):                       # a hang detector bounded by a count, not by the clock
            if volume.closed:
                break
            time.sleep(0.01)
        assert volume.closed
        vol = reopen(volume)
        assert read_file(vol, "f") == b"DMA!" + data[4:] and vol.fsck() == []
