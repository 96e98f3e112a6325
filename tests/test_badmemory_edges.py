"""Memory failures of a volume, at their edges (found by a mutation run over
``volume/badmemory.py``): each test pins down one thing a slip there would get wrong
while every other memory-failure test still passed.

- ``readonly_reason``: exactly half of the log bad still takes changes, a page more does
  not (and less than half, e.g. two fifths, never stops it).
- ``memory_failure``: a range that is whole blocks or pages is not "rounded out" (no
  warning).
- ``clear_badblocks``: bytes that are not bad are EINVAL naming where they are; bad blocks
  a file still owns are BusyError naming the file and range, an orphan by its inode, and
  ``holders`` lists them.
- ``memory_failure`` returns the owners in pool order (not by inode), and tells every
  reference over the bad block, whatever references not over it come before.
- the watcher: a range cleared and then listed again by the side file is a new failure,
  acted on at the next look; a forced close that times out on a pin (the watcher was
  stopped for it) watches again, with a new watcher (a daemon thread named for the
  list), and the close that succeeds stops it.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import pytest

import daxfs
from daxfs.core.badblocks import BlockRuns
from daxfs.core.fields import PAGE
from daxfs.errors import MediaErrorWarning
from daxfs.media.badblocks import BadblockSource
from daxfs.volume.badmemory import readonly_reason

from _small_volume import small_volume, write_file

BS = 4096


def test_half_the_log_bad_still_takes_changes_a_page_more_does_not() -> None:
    vol = small_volume()
    lay = vol._layout
    half = lay.log_size // 2
    assert half % PAGE == 0
    assert readonly_reason(BlockRuns.of([(lay.log_offset, half)]), lay) is None
    two_fifths = lay.log_size * 2 // 5 // PAGE * PAGE
    assert readonly_reason(BlockRuns.of([(lay.log_offset + PAGE, two_fifths)]), lay) is None
    reason = readonly_reason(BlockRuns.of([(lay.log_offset, half + PAGE)]), lay)
    assert reason is not None and "more than half of the metadata log" in reason
    vol.close()


def test_a_whole_block_failure_is_not_said_to_be_rounded() -> None:
    vol = small_volume()
    write_file(vol, "/a", b"a" * 2 * BS)
    with vol.open("/a", "rb", buffering=0) as f:
        base = f.extents()[0].pool_offset
    with warnings.catch_warnings():
        warnings.simplefilter("error", MediaErrorWarning)
        vol.memory_failure(base, BS)
        vol.memory_failure(vol._layout.log_offset + PAGE, PAGE)       # a metadata page
    assert vol.badblocks() == [(vol._layout.log_offset + PAGE, PAGE), (base, BS)]
    vol.close()


def test_clearing_bytes_that_are_not_bad_names_them() -> None:
    vol = small_volume()
    lay = vol._layout
    bad = lay.block_offset(10)
    vol.memory_failure(bad, BS)
    with pytest.raises(OSError) as info:
        vol.clear_badblocks(bad, 3 * BS)
    assert info.value.errno == errno.EINVAL
    assert f"pool bytes [{bad + BS:#x}, +{2 * BS}) are not bad" in str(info.value)
    assert vol.badblocks() == [(bad, BS)]
    vol.close()


def test_clearing_blocks_a_file_or_an_orphan_still_owns_is_busy_naming_them() -> None:
    vol = small_volume()
    write_file(vol, "/own", b"o" * 2 * BS)
    with vol.open("/own", "rb", buffering=0) as f:
        base = f.extents()[0].pool_offset
    vol.memory_failure(base + BS, BS)
    with pytest.raises(daxfs.BusyError) as info:
        vol.clear_badblocks(base + BS, BS)
    assert info.value.holders == ["/own"]
    assert "bad blocks still owned by /own [4096, +4096)" in str(info.value)
    f = vol.open("/own", "rb", buffering=0)
    ino = f.stat().st_ino
    vol.unlink("/own")                                 # an orphan while f is open
    with pytest.raises(daxfs.BusyError) as info:
        vol.clear_badblocks(base + BS, BS)
    assert info.value.holders == [str(ino)]
    assert f"(unlinked inode {ino}) [4096, +4096)" in str(info.value)
    f.close()
    vol.clear_badblocks(base + BS, BS)
    assert vol.badblocks() == []
    vol.close()


def test_a_range_listed_again_after_clearing_is_a_new_failure(tmp_path: Path) -> None:
    path = str(tmp_path / "again.pool")
    with daxfs.mkfs(path, 16 << 20) as vol:
        write_file(vol, "/w", b"w" * 2 * BS)
        with vol.open("/w", "rb", buffering=0) as f:
            base = f.extents()[0].pool_offset
    side = BadblockSource(path + ".badblocks", "side file")
    side.append(base, BS)
    with daxfs.open_volume(path) as vol:
        watcher = vol.badmemory._watcher
        assert watcher is not None and vol.badblocks() == [(base, BS)]
        vol.unlink("/w")
        vol.clear_badblocks(base, BS)
        assert vol.badblocks() == [] and side.read() == []
        side.append(base, BS)                          # it fails again
        os.utime(side.path, ns=(1, 1))                 # (a stamp the watcher has not seen)
        watcher.look()
        assert vol.badblocks() == [(base, BS)]


def test_a_forced_close_that_times_out_on_a_pin_keeps_watching(tmp_path: Path) -> None:
    path = str(tmp_path / "pinned.pool")
    with daxfs.mkfs(path, 16 << 20) as vol:
        write_file(vol, "/p", b"p" * 2 * BS)
    side = BadblockSource(path + ".badblocks", "side file")
    vol = daxfs.open_volume(path)
    f = vol.open("/p", "rb", buffering=0)
    base = f.extents()[0].pool_offset
    held = f.pin(0, BS)
    first = vol.badmemory._watcher
    assert first is not None and first.daemon                  # never keeps the interpreter from exiting
    assert first.name == f"daxfs badblocks {side.path}"
    with pytest.raises(daxfs.BusyError):
        vol.close(force=True, timeout=0)               # the watcher was stopped for the close
    assert not vol.closed
    watcher = vol.badmemory._watcher
    assert watcher is not None and watcher is not first and watcher.is_alive() and watcher.daemon
    side.append(base + BS, BS)
    watcher.look()
    assert vol.badblocks() == [(base + BS, BS)]
    held.release()
    f.close()
    vol.close()
    assert vol.badmemory._watcher is None and not watcher.is_alive()


def test_owners_of_a_failure_come_in_pool_order() -> None:
    vol = small_volume()
    vol.open("/a", "wb", buffering=0).close()          # the lower inode number
    write_file(vol, "/b", b"b" * BS)                   # the lower pool offset
    write_file(vol, "/a", b"a" * BS)
    where = {}
    for p in ("/a", "/b"):
        with vol.open(p, "rb", buffering=0) as f:
            where[p] = f.extents()[0].pool_offset
    pa, pb = where["/a"], where["/b"]
    assert vol.stat("/a").st_ino < vol.stat("/b").st_ino and pb < pa
    lo, hi = min(pa, pb), max(pa, pb) + BS
    owners = vol.memory_failure(lo, hi - lo)
    assert [(o.path, o.pool_offset) for o in owners] == [("/b", pb), ("/a", pa)]
    vol.close()


def test_every_reference_over_the_bad_block_is_told_whatever_comes_before_it() -> None:
    vol = small_volume()
    write_file(vol, "/x", b"x" * BS)
    write_file(vol, "/y", b"y" * 2 * BS)
    told: list[tuple[str, int, int]] = []
    fx, fy = vol.open("/x", "rb", buffering=0), vol.open("/y", "rb", buffering=0)
    px = fx.pin(0, BS, on_poison=lambda r, off, n: told.append(("x", off, n)))      # not over it
    m = fy.map(on_poison=lambda r, off, n: told.append(("y map", off, n)))
    py = fy.pin(0, 2 * BS, on_poison=lambda r, off, n: told.append(("y pin", off, n)))
    vol.memory_failure(fy.extents()[0].pool_offset + BS, BS)
    assert sorted(told) == [("y map", BS, BS), ("y pin", BS, BS)]
    assert m.poisoned == [(BS, BS)] and py.poisoned == [(BS, BS)] and list(px.poisoned) == []
    for ref in (px, py):
        ref.release()
    m.close()
    fx.close()
    fy.close()
    vol.close()
