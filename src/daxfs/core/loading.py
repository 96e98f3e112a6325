"""Rebuilding a Core from a checkpoint's rows, checking every field on the way.

Every field of every row is checked for type and range, and the whole for what
fsck checks (unique inodes below ``next_ino``, runs sorted, disjoint and inside
the data area, written blocks below the size, valid unique names that point at
existing inodes, one tree under a directory root, bad memory runs in range):
anything else is a CorruptVolumeError saying what and which inode.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from operator import attrgetter
from stat import S_IFDIR, S_IFLNK, S_IFREG

from daxfs.core.badblocks import load_bad, merge_runs
from daxfs.core.extents import NO_EXTENTS, UNWRITTEN, ExtentMap
from daxfs.core.fields import (FILE_TYPES, ID_MAX, INO_MAX, MAX_FILE_SIZE, NODE_TYPES, PERM_BITS, RDEV_MAX, TIME_MAX,
                               TIME_MIN, target_size, valid_name, valid_names, valid_target)
from daxfs.core import chunked
from daxfs.core.chunked import ChunkedTable
from daxfs.core.rmap import OwnerMap
from daxfs.core.space import FreeSpace
from daxfs.core.state import ROOT_INO, Core, Inode
from daxfs.errors import CorruptVolumeError


_INO = attrgetter("ino")
new = object.__new__
_FORMAT_BITS = 0o170000     # (what stat.S_IFMT() masks, without its call)


def load_rows(core: Core, obj: object) -> None:
    """Fill the empty ``core`` with the state checkpoint ``obj`` holds (see ``Core.from_checkpoint``).

    ``obj`` is the decoded ``[next_ino, rows(, bad memory)]``, or a body decoded a row at a
    time (anything with ``parts()``, as ``format.checkpoint.StreamedState``): then no more
    than one row is alive at once besides what the state keeps."""
    rows: Iterable[object]
    if hasattr(obj, "parts"):
        next_ino, rows, rest = obj.parts()
    else:
        if type(obj) is not list or len(obj) not in (2, 3):
            raise _bad_checkpoint(f"top level is {_show(obj)}, not [next_ino, inodes(, bad memory)]")
        next_ino, rows = obj[0], obj[1]
        if type(rows) is not list:
            raise _bad_checkpoint(f"inode table is {_show(rows)}, not a list")
        rest = (lambda n: obj[2]) if len(obj) == 3 else (lambda n: None)
    if type(next_ino) is not int or not ROOT_INO < next_ino <= INO_MAX + 1:
        raise _bad_checkpoint(f"next inode number is {_show(next_ino)}, not an int from 2 to {INO_MAX + 1}")
    core.next_ino = next_ino
    bs = core.block_size
    data_blocks = core.data_blocks
    max_blocks = MAX_FILE_SIZE // bs
    inodes = core.inodes
    owned: list[tuple[int, int, int, int]] = []
    dirs: list[tuple[Inode, list[object]]] = []
    runs = 0
    targets = 0
    ascending = True
    top = 0                 # the highest inode number so far: one above it cannot be a repeat
    modes: dict[int, int] = {}
    i = -1
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != 10:
            if type(row) is list and len(row) == 11:      # a symlink or special file
                node = _load_node(i, row, next_ino, inodes)
                targets += len(node.target or "")
                if node.ino > top:
                    top = node.ino
                else:
                    ascending = False
                continue
            raise _bad_checkpoint(f"inode row {i} is {_show(row)}, not a list of 10 fields "
                                  f"(11 for a symlink or special file)")
        ino, mode, uid, gid, size, atime, mtime, ctime, ext, entries = row
        if not (type(ino) is int and 0 < ino < next_ino):
            raise _bad_checkpoint(f"inode row {i}: inode number {_show(ino)} is not an int from 1 to "
                                  f"{next_ino - 1} (below next_ino)")
        if ino > top:
            top = ino
        else:
            if ino in inodes:
                raise _bad_checkpoint(f"inode {ino} is stored twice")
            ascending = False
        if not (type(mode) is int and type(uid) is int and type(gid) is int and type(size) is int
                and type(atime) is int and type(mtime) is int and type(ctime) is int
                and (mode & ~PERM_BITS) in FILE_TYPES and 0 <= uid <= ID_MAX and 0 <= gid <= ID_MAX
                and 0 <= size <= MAX_FILE_SIZE and TIME_MIN <= atime <= TIME_MAX
                and TIME_MIN <= mtime <= TIME_MAX and TIME_MIN <= ctime <= TIME_MAX):
            raise _bad_checkpoint(_attr_problem(ino, mode, uid, gid, size, atime, mtime, ctime))
        # Equal values share one int object (msgpack decodes each field to its own): the
        # few distinct modes, and the times of a file never touched since it was made.
        mode = modes.setdefault(mode, mode)
        if mtime == atime:
            mtime = atime
        if ctime == mtime:
            ctime = mtime
        # Inode.__init__'s work, inline (a call a file: 0.1 s a million).
        node = new(Inode)
        node.ino = ino
        node.mode = mode
        node.uid = uid
        node.gid = gid
        node.size = size
        node.atime_ns = atime
        node.mtime_ns = mtime
        node.ctime_ns = ctime
        node.parent = 0
        node.target = None
        node.rdev = 0
        inodes[ino] = node
        if mode & _FORMAT_BITS == S_IFDIR:
            if ext is not None or type(entries) is not list or len(entries) & 1:
                raise _bad_checkpoint(f"directory {ino}: entries {_show(entries)} are not a flat "
                                      f"[name, ino, ...] list (with extents {_show(ext)}, not None)")
            node.nlink = 2          # its own entry and "." (its parent's entry and "..": below)
            node.entries = {}
            node.extents = None
            dirs.append((node, entries))
            continue
        node.nlink = 1              # one name (corrected below for no name or more than one)
        node.entries = None
        if entries is not None or type(ext) is not list or len(ext) & 3:
            raise _bad_checkpoint(f"file {ino}: extents {_show(ext)} are not a flat [fblk, nblk, pblk, "
                                  f"flags, ...] list (with entries {_show(entries)}, not None)")
        if not ext:
            node.extents = NO_EXTENTS       # (shared until the file's first blocks)
            continue
        if len(ext) == 4:           # most files: one run, checked here as _check_runs does
            f, n, p, fl = ext
            if not (type(f) is int and type(n) is int and type(p) is int and type(fl) is int
                    and 0 <= f and 0 < n and f + n <= max_blocks and 0 <= p and p + n <= data_blocks
                    and (fl == 0 and f + n <= -(-size // bs) or fl == UNWRITTEN)):
                _check_runs(ino, ext, size, bs, data_blocks, max_blocks)    # (raises, saying what)
            node.extents = ExtentMap.from_flat(ext)
            runs += 1
            owned.append((p, n, ino, f))
        else:
            _check_runs(ino, ext, size, bs, data_blocks, max_blocks)
            emap = ExtentMap.from_flat(ext)
            node.extents = emap
            runs += len(emap)
            owned.extend((r[2], r[1], ino, r[0]) for r in emap)
    loaded = i + 1
    chars = 0
    named: list[int] = []           # every entry's inode number, over all directories
    dir_inos = {node.ino for node, _flat in dirs}
    below: dict[int, list[int]] = {}    # directory -> the directories in it
    for node, flat in dirs:
        names, children = flat[0::2], flat[1::2]
        if not valid_names(names) or not set(map(type, children)) <= {int}:
            _check_entries(node, flat, inodes)      # (raises, saying which entry)
        found = list(map(inodes.get, children))
        if None in found or ROOT_INO in children:
            _check_entries(node, flat, inodes)
        # the inodes' own int objects, not the row's (one int a file, not two)
        node.entries = dict(zip(names, map(_INO, found)))
        if len(node.entries) != len(names):     # a name twice
            _check_entries(node, flat, inodes)
        chars += sum(map(len, names))
        named += children
        subdirs = dir_inos.intersection(children)
        if subdirs:
            below[node.ino] = list(subdirs)
    # Link counts at C speed (a loop over every name took 0.1 s a million): each file was
    # given one name and each directory two; a number named twice is a hard link or a
    # directory with two parents, one never named an orphan.
    unique = set(named)
    if len(unique) != len(named):
        for ino, count in Counter(named).items():
            if count > 1:
                if ino in dir_inos:
                    parents = [n.ino for n, flat in dirs if ino in flat[1::2]]
                    raise _bad_checkpoint(f"directory {ino} has two parents ({parents[0]} and {parents[-1]})")
                inodes[ino].nlink = count
    if len(unique) != len(inodes) - 1:      # (the root has no entry: ROOT_INO in no list)
        unnamed = set(inodes).difference(unique, (ROOT_INO,))
        for ino in unnamed:
            inodes[ino].nlink = 0
        core.unnamed = unnamed      # (a directory among them is not connected: refused below)
    for parent, subdirs in below.items():
        inodes[parent].nlink += len(subdirs)
        for child in subdirs:
            inodes[child].parent = parent
    root = inodes.get(ROOT_INO)
    if root is None or root.entries is None:
        raise _bad_checkpoint("the root (inode 1) is missing or not a directory")
    root.parent = ROOT_INO
    # Every directory hangs off the root: one parent each is not enough (a cycle of
    # directories away from the root has that too).
    reached = 1
    stack = [ROOT_INO]
    while stack:
        subdirs = below.get(stack.pop(), ())
        reached += len(subdirs)
        stack += subdirs
    if reached != len(dirs):
        lost = sorted(n.ino for n, _f in dirs if not _reaches_root(inodes, n))
        raise _bad_checkpoint(f"directories {lost[:10]} are not connected to the root")
    bad = rest(loaded)
    if bad is not None:
        load_bad(core, bad)
    if not ascending:       # (a checkpoint daxfs did not write) Core keeps inodes in ino order
        ordered = sorted(inodes.items())
        inodes.clear()
        inodes.update(ordered)
    if len(inodes) >= chunked.CHUNKED_FROM:
        core.inodes = ChunkedTable.adopt(inodes)      # (as Core._add_inode would have by now)
    core.runs = runs
    core.name_chars = chars
    core.target_chars = targets
    core.rmap = OwnerMap.build(owned)
    used = merge_runs(core.rmap.covered(), core.bad.runs()) if core.bad else core.rmap.covered()
    core.space = FreeSpace.from_used(data_blocks, used, align=core.space.align)


def _load_node(i: int, row: list[object], next_ino: int, inodes: dict[int, Inode]) -> Inode:
    """A symlink's or special file's row: the ten fields of every inode (no extents, no
    entries) and its target (a symlink) or device number (any other)."""
    ino, mode, uid, gid, size, atime, mtime, ctime, ext, entries, extra = row
    if not (type(ino) is int and 0 < ino < next_ino):
        raise _bad_checkpoint(f"inode row {i}: inode number {_show(ino)} is not an int from 1 to "
                              f"{next_ino - 1} (below next_ino)")
    if ino in inodes:
        raise _bad_checkpoint(f"inode {ino} is stored twice")
    if not (type(mode) is int and (mode & ~PERM_BITS) in NODE_TYPES):
        raise _bad_checkpoint(f"inode {ino}: mode {_show(mode)} is not a symlink or special file with "
                              f"permission bits (its row has 11 fields)")
    if not (type(uid) is int and type(gid) is int and type(size) is int and type(atime) is int
            and type(mtime) is int and type(ctime) is int and 0 <= uid <= ID_MAX and 0 <= gid <= ID_MAX
            and 0 <= size <= MAX_FILE_SIZE and TIME_MIN <= atime <= TIME_MAX
            and TIME_MIN <= mtime <= TIME_MAX and TIME_MIN <= ctime <= TIME_MAX):
        raise _bad_checkpoint(_attr_problem(ino, S_IFREG, uid, gid, size, atime, mtime, ctime))
    if ext is not None or entries is not None:
        raise _bad_checkpoint(f"inode {ino}: a symlink or special file with extents {_show(ext)} or "
                              f"entries {_show(entries)}, not None")
    node = Inode(ino, mode, uid, gid, size, atime, mtime, ctime)     # type: ignore[arg-type]
    node.nlink = 1      # (as every file: corrected once the names are counted)
    if mode & ~PERM_BITS == S_IFLNK:
        if not valid_target(extra) or size != target_size(extra):   # type: ignore[arg-type]
            raise _bad_checkpoint(f"symlink {ino}: target {_show(extra)} is not a path of at most 4095 bytes "
                                  f"without NUL, or its size {size} is not the target's length")
        node.target = extra     # type: ignore[assignment]
    elif not (type(extra) is int and 0 <= extra <= RDEV_MAX and size == 0):
        raise _bad_checkpoint(f"special file {ino}: device number {_show(extra)} is not an int from 0 to "
                              f"{RDEV_MAX}, or its size {size} is not 0")
    else:
        node.rdev = extra
    inodes[ino] = node      # type: ignore[index]
    return node


# ---- checkpoint checks: the messages say which inode and which field, and why

def _bad_checkpoint(what: str) -> CorruptVolumeError:
    return CorruptVolumeError(f"checkpoint: {what}")


def _show(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _attr_problem(ino: int, mode: object, uid: object, gid: object, size: object,
                  atime: object, mtime: object, ctime: object) -> str:
    """What is wrong with an inode's attributes (the caller found something)."""
    if type(mode) is not int or (mode & ~PERM_BITS) not in FILE_TYPES:
        return f"inode {ino}: mode {_show(mode)} is not a regular file or directory with permission bits"
    for name, value, low, high in (("uid", uid, 0, ID_MAX), ("gid", gid, 0, ID_MAX),
                                   ("size", size, 0, MAX_FILE_SIZE), ("atime", atime, TIME_MIN, TIME_MAX),
                                   ("mtime", mtime, TIME_MIN, TIME_MAX), ("ctime", ctime, TIME_MIN, TIME_MAX)):
        if type(value) is not int or not low <= value <= high:  # type: ignore[operator]
            return f"inode {ino}: {name} {_show(value)} is not an int from {low} to {high}"
    return f"inode {ino}: attributes out of range"


def _check_runs(ino: int, flat: list[object], size: int, bs: int, data_blocks: int, max_blocks: int) -> None:
    """A file's stored runs: ints, sorted and disjoint, nblk > 0, inside the data area and the
    largest file, flags 0 or UNWRITTEN (SHARE lives only in records), written ones below the size."""
    size_blocks = -(-size // bs)
    prev_end = 0
    for i in range(0, len(flat), 4):
        f, n, p, fl = flat[i], flat[i + 1], flat[i + 2], flat[i + 3]
        if (type(f) is int and type(n) is int and type(p) is int and type(fl) is int
                and prev_end <= f and 0 < n and f + n <= max_blocks and 0 <= p and p + n <= data_blocks  # type: ignore[operator]
                and (fl == 0 and f + n <= size_blocks or fl == UNWRITTEN)):  # type: ignore[operator]
            prev_end = f + n  # type: ignore[operator]
            continue
        where = f"file {ino}: run {i // 4} {flat[i:i + 4]!r}"
        if not all(type(x) is int for x in (f, n, p, fl)):
            raise _bad_checkpoint(f"{where} is not four ints")
        if fl not in (0, UNWRITTEN):
            raise _bad_checkpoint(f"{where} has unknown flags {fl:#x}")  # type: ignore[str-format]
        if n <= 0:  # type: ignore[operator]
            raise _bad_checkpoint(f"{where} has a length of {n}")
        if f < prev_end:  # type: ignore[operator]
            raise _bad_checkpoint(f"{where} starts before the previous run ends (block {prev_end}): "
                                  f"runs must be sorted and disjoint")
        if f + n > max_blocks:  # type: ignore[operator]
            raise _bad_checkpoint(f"{where} ends past the largest file ({max_blocks} blocks)")
        if p < 0 or p + n > data_blocks:  # type: ignore[operator]
            raise _bad_checkpoint(f"{where} lies outside the data area ({data_blocks} blocks)")
        raise _bad_checkpoint(f"{where} holds written blocks past the file size {size}")


def _check_entries(node: Inode, flat: list[object], inodes: dict[int, Inode]) -> None:
    """What is wrong with a directory's stored entries (the caller's quick look found
    something): the first bad name, a child that is not an inode or is the root, a name
    twice."""
    seen = set()
    for i in range(0, len(flat), 2):
        name, child_ino = flat[i], flat[i + 1]
        if not valid_name(name):
            raise _bad_checkpoint(f"directory {node.ino}: entry {i // 2} has an invalid name {_show(name)}")
        if (inodes.get(child_ino) if type(child_ino) is int else None) is None:
            raise _bad_checkpoint(f"directory {node.ino}: entry {name!r} points to {_show(child_ino)}, "
                                  f"not an inode in the checkpoint")
        if child_ino == ROOT_INO:
            raise _bad_checkpoint(f"directory {node.ino}: entry {name!r} names the root")
        if name in seen:
            raise _bad_checkpoint(f"directory {node.ino}: name {name!r} appears twice")
        seen.add(name)


def _reaches_root(inodes: dict[int, Inode], node: Inode) -> bool:
    """Whether following ``parent`` from ``node`` ends at the root (a bounded walk)."""
    for _ in range(len(inodes) + 1):
        if node.ino == ROOT_INO:
            return True
        parent = inodes.get(node.parent)
        if parent is None:
            return False
        node = parent
    return False


__all__ = ["load_rows"]
