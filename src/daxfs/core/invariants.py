"""fsck for the core: recompute what the state should be and list every difference.

Independent of how ``apply`` maintains things: it rebuilds block ownership,
link counts and the tree from scratch and compares.

``check`` never raises, whatever it is given (a hand-built or half-applied
state included): it first checks every inode's fields for type and range and
leaves an inode whose fields are wrong out of the checks that would trip over
them, and should a check still fail, it says so as one more problem.
"""

from __future__ import annotations

import stat as st
from bisect import bisect_left
from collections.abc import Collection
from itertools import accumulate

from daxfs.core.extents import UNWRITTEN, ExtentMap
from daxfs.core.fields import (ID_MAX, MAX_FILE_SIZE, TIME_MAX, TIME_MIN, target_size, valid_mode, valid_node_mode,
                               valid_name, valid_target)
from daxfs.core.rmap import OwnerMap
from daxfs.core.state import ROOT_INO, Core, Inode
from daxfs.errors import CorruptVolumeError


def check(core: Core, referenced: Collection[int] = ()) -> list[str]:
    """Problems in ``core``; ``referenced`` are inodes held open (orphans allowed among them)."""
    problems: list[str] = []
    try:
        _check(core, referenced, problems)
    except Exception as exc:    # a state too broken for a check below: that is a finding too
        problems.append(f"fsck could not finish: the state is too damaged to check further ({exc!r})")
    return problems


def _value_problems(ino: object, node: object) -> tuple[list[str], bool]:
    """What is wrong with one inode's own fields (types and ranges), and whether it is so
    wrong that the structural checks must leave the inode out (a bad name is not)."""
    if not isinstance(node, Inode):
        return [f"inode {ino!r} is {type(node).__name__}, not an inode"], True
    out = []
    if type(ino) is not int or ino < 1:
        out.append(f"inode number {ino!r} is not an int >= 1")
    special = valid_node_mode(node.mode)
    if not valid_mode(node.mode) and not special:
        out.append(f"inode {ino}: mode {node.mode!r} is not a regular file, directory, symlink or special "
                   f"file with permission bits")
    for name, low, high in (("ino", 1, 1 << 64), ("uid", 0, ID_MAX), ("gid", 0, ID_MAX),
                            ("size", 0, MAX_FILE_SIZE), ("atime_ns", TIME_MIN, TIME_MAX),
                            ("mtime_ns", TIME_MIN, TIME_MAX), ("ctime_ns", TIME_MIN, TIME_MAX),
                            ("nlink", 0, ID_MAX), ("parent", 0, 1 << 64)):
        value = getattr(node, name, None)
        if type(value) is not int or not low <= value <= high:
            out.append(f"inode {ino}: {name} {value!r} is not an int from {low} to {high}")
    entries, extents = node.entries, node.extents
    target = getattr(node, "target", None)
    if special:
        if entries is not None or extents is not None:
            out.append(f"inode {ino}: a symlink or special file with directory entries or a block map")
        elif st.S_ISLNK(node.mode) != (target is not None):
            out.append(f"inode {ino}: {'a symlink without' if target is None else 'a target on a non-symlink'} "
                       f"a target")
        elif target is not None and (not valid_target(target) or node.size != target_size(target)):
            out.append(f"symlink {ino}: target {target!r} is not a valid path, or size {node.size} is not its length")
    elif target is not None:
        out.append(f"inode {ino}: a regular file or directory with a symlink target")
    elif (entries is None) == (extents is None):
        out.append(f"inode {ino} has {'both' if entries is not None else 'neither'} directory entries "
                   f"and a block map")
    elif entries is not None:
        if type(entries) is not dict:
            out.append(f"directory {ino}: entries are {type(entries).__name__}, not a dict")
        else:
            for child in entries.values():
                if type(child) is not int:
                    out.append(f"directory {ino} has an entry pointing to {child!r}, not an inode number")
    elif not isinstance(extents, ExtentMap):
        out.append(f"file {ino}: block map is {type(extents).__name__}, not an ExtentMap")
    else:
        for run in extents:
            if type(run) is not tuple or len(run) != 4 or not all(type(x) is int for x in run):
                out.append(f"file {ino}: run {run!r} is not four ints")
            elif run[3] not in (0, UNWRITTEN):
                out.append(f"file {ino}: run at file block {run[0]} has unknown flags {run[3]:#x}")
    fatal = bool(out)
    if type(entries) is dict:
        out.extend(f"directory {ino} has an invalid name {name!r}" for name in entries if not valid_name(name))
    return out, fatal


def _check(core: Core, referenced: Collection[int], problems: list[str]) -> None:
    bs = core.block_size
    if type(bs) is not int or bs <= 0 or type(core.data_blocks) is not int or type(core.next_ino) is not int:
        problems.append(f"block size {bs!r}, data blocks {core.data_blocks!r} or next inode number "
                        f"{core.next_ino!r} is not a positive int")
        return
    # Inodes whose own fields are wrong are reported, then left out of what follows
    # (their sizes, runs and entries would make the checks below fail, not find).
    inodes: dict[int, Inode] = {}
    for ino, node in core.inodes.items():
        found, fatal = _value_problems(ino, node)
        problems.extend(found)
        if not fatal:
            inodes[ino] = node
    broken = len(inodes) != len(core.inodes)
    owned: list[tuple[int, int, int, int]] = []     # (pblk, n, ino, fblk)
    runs = 0
    for ino, node in inodes.items():
        if node.ino != ino:
            problems.append(f"inode {ino} is stored as {node.ino}")
        if node.extents is None:
            if not st.S_ISDIR(node.mode) and not valid_node_mode(node.mode):
                problems.append(f"inode {ino} has no block map but is not a directory")
            continue
        if not st.S_ISREG(node.mode):
            problems.append(f"inode {ino} has a block map but is not a regular file")
        runs += len(node.extents)
        prev_end = -1
        size_blocks = -(-node.size // bs)
        for fblk, n, pblk, flags in node.extents:
            if n <= 0 or fblk < 0:
                problems.append(f"inode {ino}: bad run at file block {fblk} (+{n})")
            if fblk < prev_end:
                problems.append(f"inode {ino}: runs overlap at file block {fblk}")
            prev_end = fblk + n
            inside = 0 <= pblk and pblk + n <= core.data_blocks
            if not inside:
                problems.append(f"inode {ino}: run at file block {fblk} points outside the data area")
            if not flags & UNWRITTEN and fblk + n > size_blocks:
                problems.append(f"inode {ino}: written blocks past its size {node.size} (file block {fblk}+{n})")
            if inside:      # (blocks outside are no block's owner: the reverse map would trip over them)
                owned.append((pblk, n, ino, fblk))
    if runs != core.runs and not broken:
        problems.append(f"run count is {core.runs}, files hold {runs}")

    # The reverse map (every block's owners, so its refcount) is what the extent maps say;
    # a block is free or owned, and free + owned + busy = the whole data area.
    owned.sort()
    try:
        rebuilt = OwnerMap.build([(p, n, ino, f) for p, n, ino, f in owned])
    except CorruptVolumeError as exc:
        problems.append(f"extent maps do not form a reverse map: {exc.what}")
        rebuilt = None
    if rebuilt is not None and not broken and _canonical(rebuilt) != _canonical(core.rmap):
        problems.append("reverse map differs from the extent maps (refcounts are wrong)")
    if rebuilt is not None and not broken and rebuilt.shared_blocks != core.rmap.shared_blocks:
        problems.append(f"shared block count is {core.rmap.shared_blocks}, extents share {rebuilt.shared_blocks}")
    owned_blocks = sum(n for _s, n in core.rmap.covered())
    reach = list(accumulate((p + m for p, m, _ino, _f in owned), max))
    for start, n in core.space.runs():
        for pblk, m, ino, _f in _overlapping(owned, reach, start, n):
            problems.append(f"free blocks {start}..{start + n} overlap inode {ino}'s blocks {pblk}..{pblk + m}")
    busy = core.busy
    for start, n in busy.runs():
        for pblk, m, ino, _f in _overlapping(owned, reach, start, n):
            problems.append(f"busy blocks {start}..{start + n} overlap inode {ino}'s blocks {pblk}..{pblk + m}")
        if core.space.overlaps(start, n):
            problems.append(f"busy blocks {start}..{start + n} are also free")
        held = sum(e - s for s, e, _c in busy.holds.overlapping(start, n))
        if held != n:
            problems.append(f"busy blocks {start}..{start + n} are not all held")
    for start, end, _count in busy.holds.runs():
        if core.space.overlaps(start, end - start):
            problems.append(f"held blocks {start}..{end} include free blocks: a pin or mapping "
                            f"points at memory that may be handed to another file")
    for what, runs in (("known-zero", core.space.zero), ("claimed known-zero", core.space.claimed),
                       ("unbacked", core.space.unbacked)):
        for start, n in runs.runs() if runs else ():
            if not core.space.is_free(start, n):
                # a block handed out must have been dropped from both (see FreeSpace.take)
                problems.append(f"{what} blocks {start}..{start + n} are not free")
    if sum(n for _s, n in busy.runs()) != busy.blocks:
        problems.append(f"busy count is {busy.blocks}, the busy list holds {sum(n for _s, n in busy.runs())}")
    quarantined = _check_bad(core, problems)
    if core.space.free + owned_blocks + busy.blocks + quarantined != core.data_blocks and not broken:
        problems.append(f"free ({core.space.free}) + used ({owned_blocks}) + busy ({busy.blocks}) + "
                        f"quarantined ({quarantined}) blocks != data area ({core.data_blocks})")

    # The tree: reachable from the root, one parent per directory, link counts.
    root = inodes.get(ROOT_INO)
    if root is None or root.entries is None:
        problems.append("root directory missing")
        return
    links = {ino: 0 for ino in inodes}
    seen = {ROOT_INO}
    stack = [root]
    chars = 0
    while stack:
        d = stack.pop()
        links[d.ino] += 1              # "."
        for name, child in d.entries.items():  # type: ignore[union-attr]
            chars += len(name) if type(name) is str else 0
            cnode = inodes.get(child)
            if cnode is None:
                if child not in core.inodes:    # else it is reported above, with what is wrong in it
                    problems.append(f"directory {d.ino} entry {name!r} points to missing inode {child}")
                continue
            links[child] += 1
            if cnode.entries is not None:
                links[d.ino] += 1      # the child's ".."
                if child in seen:
                    problems.append(f"directory {child} is reachable twice")
                    continue
                if cnode.parent != d.ino:
                    problems.append(f"directory {child} records parent {cnode.parent}, is in {d.ino}")
                seen.add(child)
                stack.append(cnode)
            else:
                seen.add(child)
    links[ROOT_INO] += 1               # the root's ".." is itself
    if chars != core.name_chars and not broken:
        problems.append(f"name length total is {core.name_chars}, entries hold {chars}")
    targets = sum(len(node.target) for node in inodes.values() if getattr(node, "target", None) is not None)
    if targets != core.target_chars and not broken:
        problems.append(f"symlink target length total is {core.target_chars}, symlinks hold {targets}")
    for ino, node in inodes.items():
        if ino not in seen:
            if node.entries is not None:
                problems.append(f"directory {ino} is not connected to the tree")
            elif ino not in referenced:
                problems.append(f"orphan inode {ino} has no names and nobody holds it")
        if node.nlink != links[ino] and not broken:
            problems.append(f"inode {ino} link count is {node.nlink}, should be {links[ino]}")
        if ino >= core.next_ino:
            problems.append(f"inode {ino} is not below the next inode number {core.next_ino}")
    # Core.unnamed (what mount reclaims) is kept as links come and go: every file no
    # directory names, reachable or not.
    named = {child for node in inodes.values() if type(node.entries) is dict for child in node.entries.values()}
    unnamed = {ino for ino, node in inodes.items() if node.entries is None and ino not in named}
    kept = getattr(core, "unnamed", None)
    if kept != unnamed and not broken:
        shown = sorted(kept)[:10] if isinstance(kept, set) else repr(kept)
        problems.append(f"the files kept as without a name are {shown}, should be {sorted(unnamed)[:10]}")


def _check_bad(core: Core, problems: list[str]) -> int:
    """Bad blocks are never free nor busy (never handed out again); returns how many no file owns."""
    bad = core.bad
    if sum(n for _s, n in bad.runs()) != bad.total:
        problems.append(f"bad block count is {bad.total}, the quarantine holds {sum(n for _s, n in bad.runs())}")
    unowned = 0
    for start, n in bad.runs():
        if start < 0 or n <= 0 or start + n > core.data_blocks:
            problems.append(f"bad blocks {start}..{start + n} lie outside the data area")
            continue
        if core.space.overlaps(start, n):
            problems.append(f"bad blocks {start}..{start + n} are free: they could be handed out again")
        for s, k in core.busy.runs():
            if s < start + n and start < s + k:
                problems.append(f"bad blocks {start}..{start + n} are also busy (blocks {s}..{s + k})")
        owned = sum(min(e, start + n) - max(s, start) for s, e, _o in core.rmap.runs() if s < start + n and e > start)
        unowned += n - owned
    return unowned


def _canonical(rmap: OwnerMap) -> list[tuple[int, int, tuple]]:
    """Runs with sorted owners, equal neighbours merged: two maps of the same ownership agree."""
    out: list[tuple[int, int, tuple]] = []
    for start, end, owners in rmap.runs():
        key = tuple(sorted(owners))
        if out and out[-1][1] == start and out[-1][2] == key:
            out[-1] = (out[-1][0], end, key)
        else:
            out.append((start, end, key))
    return out


def _overlapping(owned: list[tuple[int, int, int, int]], reach: list[int], start: int, n: int
                 ) -> list[tuple[int, int, int, int]]:
    """The runs of ``owned`` (sorted) that overlap ``[start, start+n)``.

    ``reach[i]``: the furthest end of ``owned[:i+1]``.  Runs of different files overlap where
    they share blocks, so a long run may reach ``start`` from behind shorter ones (or from
    beside another run at the same block): look back while any run before still does."""
    i = bisect_left(owned, (start, 0, 0, 0))
    while i > 0 and reach[i - 1] > start:
        i -= 1
    out = []
    while i < len(owned) and owned[i][0] < start + n:
        p, m, _ino, _f = owned[i]
        if p + m > start:
            out.append(owned[i])
        i += 1
    return out
