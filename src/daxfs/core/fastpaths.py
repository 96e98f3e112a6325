"""Fast paths of ``Core._setextents`` for the shapes of block-map record that matter most.

Each takes a record's map only when it has one shape, and does exactly what the general
loop would do with it (tests compare the two); for any other map it returns False having
changed nothing, and the general loop does the work.

- ``share_into_empty``: a clone of whole extents into an empty file (``clone_file`` of a
  many-extent file): owners are added and the extent map is built in C-level passes over
  the map's columns, with no Python step per extent.
- ``replace_in_run``: fresh blocks that replace blocks inside one written run (the first
  write into a clone: copy-on-write), without the general loop's bookkeeping.
"""

from __future__ import annotations

from operator import add, le
from typing import TYPE_CHECKING

from daxfs.core.extents import SHARE, UNWRITTEN, ExtentMap
from daxfs.core.rmap import OwnerMap
from daxfs.errors import CorruptVolumeError

if TYPE_CHECKING:
    from daxfs.core.state import Core


def check_map(core: "Core", ino: int, map: list[int]) -> None:
    """Refuse a map that reaches past the largest file or gives bad blocks an owner."""
    max_blocks = core.max_blocks
    bad = core.bad
    for i in range(0, len(map), 4):
        if map[i] + map[i + 1] > max_blocks:
            raise CorruptVolumeError(f"inode {ino} maps file block {map[i] + map[i + 1]}, past the largest file")
        if bad and bad.overlaps(map[i + 2], map[i + 1]):
            # a bad block never gains an owner: only the files it failed under keep it
            raise CorruptVolumeError(f"inode {ino} maps bad data blocks {map[i + 2]}..{map[i + 2] + map[i + 1]}")


def share_into_empty(rmap: OwnerMap, ino: int, emap: ExtentMap, map: list[int]) -> bool:
    """A clone's map into an empty file — every entry SHARE, in file order, none
    overlapping, each naming exactly one owned run — applied in bulk.  (The caller has
    checked the map against the largest file and bad blocks.)"""
    fblks, nblks, pblks = map[0::4], map[1::4], map[2::4]
    if set(map[3::4]) != {SHARE} or min(nblks) <= 0:
        return False
    if not all(_map(le, _map(add, fblks[:-1], nblks[:-1]), fblks[1:])):
        return False            # not in file order, or overlapping
    if not rmap.share_whole_runs(ino, fblks, nblks, pblks):
        return False
    emap.fill_sorted(fblks, nblks, pblks)
    return True


def replace_in_run(core: "Core", ino: int, emap: ExtentMap, map: list[int], time_ns: int | None) -> bool:
    """One ``[fblk, nblk, pblk, 0]`` entry (no size change) whose file blocks lie inside one
    written run: blocks taken from free space, the old ones given up (freed, or busy, when
    no other file shares them), as the general loop does it."""
    fblk, nblk, pblk, flags = map
    run = emap.lookup(fblk)
    if flags or run is None or run[3] & UNWRITTEN or run[0] + run[1] < fblk + nblk or nblk <= 0 \
            or core.bad or fblk + nblk > core.max_blocks:
        return False
    old = run[2] + fblk - run[0]
    if old < pblk + nblk and pblk < old + nblk:
        return False            # blocks mapped onto themselves (given back and taken again)
    core.space.take(pblk, nblk)         # refuses blocks that are not free, before any change
    before = len(emap)
    rmap = core.rmap
    emap.remove(fblk, nblk)
    unowned = rmap.remove(old, nblk, ino, fblk)
    rmap.add(pblk, nblk, ino, fblk)
    emap.insert(fblk, nblk, pblk, 0)
    for p, n in unowned:
        core._release(p, n)
    core.runs += len(emap) - before
    if time_ns is not None:
        node = core.inodes[ino]
        node.mtime_ns = node.ctime_ns = time_ns
    return True


_map = map      # the builtin, under a name the functions' ``map`` arguments do not hide

__all__ = ["check_map", "share_into_empty", "replace_in_run"]
