"""A checkpoint's rows loaded into a Core (``core/loading.py``), field by field.

What these tests prove:

- A valid checkpoint loads with every derived count right: link counts (``.``/``..`` and
  every name), directory parents, runs, name and target characters, free space, the
  reverse map, bad memory, inode order, and a ChunkedTable from ``CHUNKED_FROM`` inodes.
- Every field of every row is accepted at both ends of its range and refused one past
  each, and the refusal is a CorruptVolumeError that says which inode, which field or run,
  and why (the messages a damaged volume is reported by).
"""

from __future__ import annotations

import copy
import re
import stat as st
from collections.abc import Callable

import pytest

from daxfs.core import UNWRITTEN, Core, check, chunked
from daxfs.core.chunked import ChunkedTable
from daxfs.core.fields import ID_MAX, INO_MAX, MAX_FILE_SIZE, RDEV_MAX, TIME_MAX, TIME_MIN
from daxfs.errors import CorruptVolumeError

BS = 4096
BLOCKS = 64
MAXB = MAX_FILE_SIZE // BS          # blocks in the largest file
DIR, REG = st.S_IFDIR, st.S_IFREG

# rows: 0 root, 1 d (a directory), 2 f (two runs), 3 l (a symlink), 4 p (a fifo), 5 g (one run, in d)
BASE = [7, [
    [1, DIR | 0o755, 0, 0, 0, 5, 6, 7, None, ["d", 2, "f", 3, "l", 4, "p", 5]],
    [2, DIR | 0o750, 1, 2, 0, 8, 8, 8, None, ["g", 6]],
    [3, REG | 0o644, 3, 4, 3 * BS + 1, 9, 10, 11, [0, 2, 10, 0, 3, 1, 20, UNWRITTEN], None],
    [4, st.S_IFLNK | 0o777, 0, 0, 3, 1, 1, 1, None, None, "abc"],
    [5, st.S_IFIFO | 0o644, 0, 0, 0, 1, 1, 1, None, None, 7],
    [6, REG | 0o600, 0, 0, BS, 1, 1, 1, [0, 1, 30, 0], None],
]]
ROOT, D, F, L, P, G = range(6)


def load(state: object) -> Core:
    return Core.from_checkpoint(state, BS, BLOCKS)


def changed(change: Callable[[list], object]) -> object:
    """BASE with ``change`` made to a copy (what it returns, if anything, is the state)."""
    s = copy.deepcopy(BASE)
    out = change(s)
    return s if out is None else out


def test_a_checkpoint_loads_with_every_derived_count() -> None:
    core = load(copy.deepcopy(BASE))
    nodes = core.inodes
    assert list(nodes) == [1, 2, 3, 4, 5, 6] and core.next_ino == 7
    assert [nodes[i].nlink for i in range(1, 7)] == [3, 2, 1, 1, 1, 1]
    assert (nodes[1].parent, nodes[2].parent) == (1, 1)
    assert nodes[1].entries == {"d": 2, "f": 3, "l": 4, "p": 5} and nodes[2].entries == {"g": 6}
    assert (nodes[4].target, nodes[4].size, nodes[5].rdev, nodes[5].target) == ("abc", 3, 7, None)
    assert (nodes[3].uid, nodes[3].gid, nodes[3].size) == (3, 4, 3 * BS + 1)
    assert (nodes[3].atime_ns, nodes[3].mtime_ns, nodes[3].ctime_ns) == (9, 10, 11)
    assert list(nodes[3].extents) == [(0, 2, 10, 0), (3, 1, 20, UNWRITTEN)]
    assert list(nodes[6].extents) == [(0, 1, 30, 0)]
    assert (core.runs, core.name_chars, core.target_chars) == (3, 5, 3)
    assert core.space.free == BLOCKS - 4 and not core.space.is_free(10, 2) and core.space.is_free(12, 8)
    assert sorted(core.rmap.covered()) == [(10, 2), (20, 1), (30, 1)]
    assert [o[0] for o in core.rmap.owners(30, 1)] == [6] and not core.bad
    assert check(core) == []


def test_hard_links_and_nested_directories_count_every_name() -> None:
    def more(s: list) -> None:
        s[0] = 8
        s[1][ROOT][9] += ["f2", 3]
        s[1][D][9] += ["e", 7, "g2", 6]
        s[1].append([7, DIR | 0o700, 0, 0, 0, 1, 1, 1, None, []])

    core = load(changed(more))
    assert [core.inodes[i].nlink for i in (1, 2, 3, 6, 7)] == [3, 3, 2, 2, 2]
    assert core.inodes[7].parent == 2 and core.name_chars == 5 + 2 + 3 and check(core) == []


def test_rows_out_of_order_are_kept_in_inode_order() -> None:
    s = copy.deepcopy(BASE)
    s[1] = [s[1][i] for i in (L, ROOT, G, D, P, F)]
    core = load(s)
    assert list(core.inodes) == [1, 2, 3, 4, 5, 6] and core.target_chars == 3 and check(core) == []
    s = copy.deepcopy(BASE)
    s[1] = [s[1][i] for i in (ROOT, D, F, P, L, G)]        # only a symlink's row out of order
    assert list(load(s).inodes) == [1, 2, 3, 4, 5, 6]


def test_bad_memory_is_loaded_and_never_free() -> None:
    core = load(changed(lambda s: s.append([[40, 2, 62, 2], [0, 4096]])))
    assert core.bad.runs() == [(40, 2), (62, 2)] and core.bad_metadata.runs() == [(0, 4096)]
    assert core.space.free == BLOCKS - 4 - 4 and not core.space.is_free(62, 1) and core.space.is_free(42, 1)
    assert load(changed(lambda s: s.append(None))).space.free == BLOCKS - 4    # (no bad memory recorded)


def test_a_table_of_chunked_from_inodes_is_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked, "CHUNKED_FROM", 6)
    assert type(load(copy.deepcopy(BASE)).inodes) is ChunkedTable
    monkeypatch.setattr(chunked, "CHUNKED_FROM", 7)
    assert type(load(copy.deepcopy(BASE)).inodes) is dict


def _set(row: int, field: int, value: object) -> Callable[[list], None]:
    def change(s: list) -> None:
        s[1][row][field] = value
    return change


def _set_run(row: int, run: list[int], size: int | None = None) -> Callable[[list], None]:
    def change(s: list) -> None:
        s[1][row][8] = run
        if size is not None:
            s[1][row][4] = size
    return change


ACCEPTED = {
    "next-ino-max": lambda s: s.__setitem__(0, INO_MAX + 1),
    "dir-all-perm-bits": _set(D, 1, DIR | 0o7777),
    "uid-max": _set(D, 2, ID_MAX), "gid-max": _set(D, 3, ID_MAX), "size-max": _set(D, 4, MAX_FILE_SIZE),
    "atime-min": _set(D, 5, TIME_MIN), "atime-max": _set(D, 5, TIME_MAX),
    "mtime-min": _set(D, 6, TIME_MIN), "mtime-max": _set(D, 6, TIME_MAX),
    "ctime-min": _set(D, 7, TIME_MIN), "ctime-max": _set(D, 7, TIME_MAX),
    "node-uid-max": _set(P, 2, ID_MAX), "node-gid-max": _set(P, 3, ID_MAX),
    "node-times-min": lambda s: s[1][P].__setitem__(slice(5, 8), [TIME_MIN] * 3),
    "node-times-max": lambda s: s[1][P].__setitem__(slice(5, 8), [TIME_MAX] * 3),
    "rdev-max": _set(P, 10, RDEV_MAX), "rdev-0": _set(P, 10, 0),
    "target-4095": lambda s: s[1][L].__setitem__(slice(4, 11), [4095, 1, 1, 1, None, None, "t" * 4095]),
    "one-run-last-data-block": _set_run(G, [0, 1, BLOCKS - 1, 0]),
    "one-run-last-file-block": _set_run(G, [MAXB - 1, 1, 30, UNWRITTEN]),
    "one-run-written-to-the-size": _set_run(G, [0, 2, 30, 0], BS + 1),
    "one-run-unwritten-past-the-size": _set_run(G, [5, 1, 30, UNWRITTEN], 0),
    "runs-touching": _set_run(F, [0, 2, 10, 0, 2, 2, 20, 0]),
    "runs-last-data-block": _set_run(F, [0, 2, 10, 0, 3, 1, BLOCKS - 1, UNWRITTEN]),
    "runs-last-file-block": _set_run(F, [0, 2, 10, 0, MAXB - 1, 1, 20, UNWRITTEN]),
    "runs-first-at-block-0": _set_run(F, [0, 1, 0, UNWRITTEN, 1, 1, 20, 0]),
}


@pytest.mark.parametrize("change", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_fields_at_the_ends_of_their_ranges_load(change: Callable[[list], None]) -> None:
    core = load(changed(change))
    assert check(core) == []


def test_the_smallest_checkpoint_loads() -> None:
    core = load([2, [[1, DIR | 0o755, 0, 0, 0, 0, 0, 0, None, []]]])
    assert list(core.inodes) == [1] and core.inodes[1].nlink == 2 and core.space.free == BLOCKS


_NOT_TOP = "top level is {}, not [next_ino, inodes(, bad memory)]"
_ATTR = "inode {}: {} {} is not an int from {} to {}"
_RUN = "file {}: run {} {} "

REFUSED: dict[str, tuple[Callable[[list], object], str]] = {
    # the top level
    "not-a-list": (lambda s: 5, _NOT_TOP.format("int 5")),
    "one-field": (lambda s: s[:1], _NOT_TOP.format("list [7]")),
    "four-fields": (lambda s: [7, [], [[], []], 0], _NOT_TOP.format("list [7, [], [[], []], 0]")),
    "rows-not-a-list": (lambda s: [7, "rows"], "inode table is str 'rows', not a list"),
    "next-ino-bool": (lambda s: [True, s[1]], f"next inode number is bool True, not an int from 2 to {INO_MAX + 1}"),
    "next-ino-1": (lambda s: [1, s[1]], "next inode number is int 1, not an int"),
    "next-ino-past-max": (lambda s: [INO_MAX + 2, s[1]], f"next inode number is int {INO_MAX + 2}, not"),
    # inode rows
    "row-short": (lambda s: s[1].__setitem__(D, s[1][D][:9]), "inode row 1 is list [2, "),
    "row-long": (lambda s: s[1].__setitem__(D, s[1][D] + [0, 0]), "inode row 1 is list [2, "),
    "row-not-a-list": (lambda s: s[1].__setitem__(G, "row"),
                       "inode row 5 is str 'row', not a list of 10 fields (11 for a symlink or special file)"),
    "ino-0": (_set(G, 0, 0), "inode row 5: inode number int 0 is not an int from 1 to 6 (below next_ino)"),
    "ino-next": (_set(G, 0, 7), "inode row 5: inode number int 7 is not an int from 1 to 6"),
    "ino-bool": (_set(G, 0, True), "inode row 5: inode number bool True is not"),
    "ino-twice-after": (_set(G, 0, 3), "inode 3 is stored twice"),
    "ino-twice-next": (lambda s: s[1].insert(D, copy.deepcopy(s[1][ROOT])), "inode 1 is stored twice"),
    # attributes of a file or directory
    "mode-symlink": (_set(G, 1, st.S_IFLNK | 0o777),
                     f"inode 6: mode int {st.S_IFLNK | 0o777} is not a regular file or directory with permission bits"),
    "mode-negative": (_set(G, 1, -1), "inode 6: mode int -1 is not a regular file or directory"),
    "mode-str": (_set(G, 1, "x"), "inode 6: mode str 'x' is not a regular file"),
    "uid-negative": (_set(D, 2, -1), _ATTR.format(2, "uid", "int -1", 0, ID_MAX)),
    "uid-past": (_set(D, 2, ID_MAX + 1), _ATTR.format(2, "uid", f"int {ID_MAX + 1}", 0, ID_MAX)),
    "uid-float": (_set(D, 2, 1.0), _ATTR.format(2, "uid", "float 1.0", 0, ID_MAX)),
    "gid-negative": (_set(D, 3, -1), _ATTR.format(2, "gid", "int -1", 0, ID_MAX)),
    "gid-past": (_set(D, 3, ID_MAX + 1), _ATTR.format(2, "gid", f"int {ID_MAX + 1}", 0, ID_MAX)),
    "gid-bool": (_set(D, 3, False), _ATTR.format(2, "gid", "bool False", 0, ID_MAX)),
    "size-negative": (_set(D, 4, -1), _ATTR.format(2, "size", "int -1", 0, MAX_FILE_SIZE)),
    "size-past": (_set(D, 4, MAX_FILE_SIZE + 1), _ATTR.format(2, "size", f"int {MAX_FILE_SIZE + 1}", 0,
                                                               MAX_FILE_SIZE)),
    "size-str": (_set(D, 4, "1"), _ATTR.format(2, "size", "str '1'", 0, MAX_FILE_SIZE)),
    "atime-low": (_set(D, 5, TIME_MIN - 1), _ATTR.format(2, "atime", f"int {TIME_MIN - 1}", TIME_MIN, TIME_MAX)),
    "atime-high": (_set(D, 5, TIME_MAX + 1), _ATTR.format(2, "atime", f"int {TIME_MAX + 1}", TIME_MIN, TIME_MAX)),
    "atime-none": (_set(D, 5, None), _ATTR.format(2, "atime", "NoneType None", TIME_MIN, TIME_MAX)),
    "mtime-low": (_set(D, 6, TIME_MIN - 1), _ATTR.format(2, "mtime", f"int {TIME_MIN - 1}", TIME_MIN, TIME_MAX)),
    "mtime-high": (_set(D, 6, TIME_MAX + 1), _ATTR.format(2, "mtime", f"int {TIME_MAX + 1}", TIME_MIN, TIME_MAX)),
    "mtime-float": (_set(D, 6, 8.0), _ATTR.format(2, "mtime", "float 8.0", TIME_MIN, TIME_MAX)),
    "ctime-low": (_set(D, 7, TIME_MIN - 1), _ATTR.format(2, "ctime", f"int {TIME_MIN - 1}", TIME_MIN, TIME_MAX)),
    "ctime-high": (_set(D, 7, TIME_MAX + 1), _ATTR.format(2, "ctime", f"int {TIME_MAX + 1}", TIME_MIN, TIME_MAX)),
    "ctime-float": (_set(D, 7, 8.0), _ATTR.format(2, "ctime", "float 8.0", TIME_MIN, TIME_MAX)),
    # a directory's and a file's body
    "dir-with-extents": (_set(D, 8, []), "directory 2: entries list ['g', 6] are not a flat [name, ino, ...] list "
                                         "(with extents list [], not None)"),
    "dir-entries-not-a-list": (_set(D, 9, "g"), "directory 2: entries str 'g' are not a flat"),
    "dir-entries-odd": (_set(D, 9, ["g", 6, "h"]), "directory 2: entries list ['g', 6, 'h'] are not a flat"),
    "file-with-entries": (_set(G, 9, []), "file 6: extents list [0, 1, 30, 0] are not a flat [fblk, nblk, pblk, "
                                          "flags, ...] list (with entries list [], not None)"),
    "file-extents-none": (_set(G, 8, None), "file 6: extents NoneType None are not a flat"),
    "file-extents-three": (_set(G, 8, [0, 1, 30]), "file 6: extents list [0, 1, 30] are not a flat"),
    # one run (the fast check) and several (_check_runs), at each edge
    "one-run-before-0": (_set_run(G, [-1, 1, 30, 0]), _RUN.format(6, 0, [-1, 1, 30, 0]) +
                         "starts before the previous run ends (block 0): runs must be sorted and disjoint"),
    "one-run-empty": (_set_run(G, [0, 0, 30, 0]), _RUN.format(6, 0, [0, 0, 30, 0]) + "has a length of 0"),
    "one-run-pblk-negative": (_set_run(G, [0, 1, -1, 0]), _RUN.format(6, 0, [0, 1, -1, 0]) +
                              f"lies outside the data area ({BLOCKS} blocks)"),
    "one-run-past-data": (_set_run(G, [0, 1, BLOCKS, 0]), "lies outside the data area (64 blocks)"),
    "one-run-past-data-by-length": (_set_run(G, [0, 2, BLOCKS - 1, UNWRITTEN]), "lies outside the data area"),
    "one-run-past-largest-file": (_set_run(G, [MAXB, 1, 30, UNWRITTEN]), f"ends past the largest file ({MAXB} blocks)"),
    "one-run-past-largest-by-length": (_set_run(G, [MAXB - 1, 2, 30, UNWRITTEN]), "ends past the largest file"),
    "one-run-written-at-size": (_set_run(G, [1, 1, 30, 0]), _RUN.format(6, 0, [1, 1, 30, 0]) +
                                f"holds written blocks past the file size {BS}"),
    "one-run-written-size-0": (_set_run(G, [0, 1, 30, 0], 0), "holds written blocks past the file size 0"),
    "one-run-share": (_set_run(G, [0, 1, 30, 2]), _RUN.format(6, 0, [0, 1, 30, 2]) + "has unknown flags 0x2"),
    "one-run-both-flags": (_set_run(G, [0, 1, 30, 3]), "has unknown flags 0x3"),
    "one-run-float": (_set_run(G, [0, 1.0, 30, 0]), _RUN.format(6, 0, [0, 1.0, 30, 0]) + "is not four ints"),
    "one-run-bool-flags": (_set_run(G, [0, 1, 30, False]), "is not four ints"),
    "runs-overlap": (_set_run(F, [0, 2, 10, 0, 1, 1, 20, 0]), _RUN.format(3, 1, [1, 1, 20, 0]) +
                     "starts before the previous run ends (block 2)"),
    "runs-empty": (_set_run(F, [0, 2, 10, 0, 3, 0, 20, 0]), _RUN.format(3, 1, [3, 0, 20, 0]) + "has a length of 0"),
    "runs-first-empty": (_set_run(F, [0, 0, 10, 0, 3, 1, 20, 0]), _RUN.format(3, 0, [0, 0, 10, 0]) + "has a length"),
    "runs-past-data": (_set_run(F, [0, 2, 10, 0, 3, 1, BLOCKS, UNWRITTEN]), _RUN.format(3, 1, [3, 1, BLOCKS, 1]) +
                       "lies outside the data area (64 blocks)"),
    "runs-pblk-negative": (_set_run(F, [0, 2, 10, 0, 3, 1, -1, UNWRITTEN]), "lies outside the data area"),
    "runs-past-largest-file": (_set_run(F, [0, 2, 10, 0, MAXB, 1, 20, UNWRITTEN]),
                               _RUN.format(3, 1, [MAXB, 1, 20, 1]) + f"ends past the largest file ({MAXB} blocks)"),
    "runs-written-past-size": (_set_run(F, [0, 2, 10, 0, 4, 1, 20, 0]), _RUN.format(3, 1, [4, 1, 20, 0]) +
                               f"holds written blocks past the file size {3 * BS + 1}"),
    "runs-unknown-flags": (_set_run(F, [0, 2, 10, 0, 3, 1, 20, 4]), "run 1 [3, 1, 20, 4] has unknown flags 0x4"),
    "runs-not-ints": (_set_run(F, [0, 2, 10, 0, 3, 1, "20", 0]), "run 1 [3, 1, '20', 0] is not four ints"),
    # a directory's entries
    "name-slash": (lambda s: s[1][ROOT][9].__setitem__(2, "a/b"),
                   "directory 1: entry 1 has an invalid name str 'a/b'"),
    "name-dotdot": (lambda s: s[1][ROOT][9].__setitem__(6, ".."), "directory 1: entry 3 has an invalid name str '..'"),
    "child-str": (lambda s: s[1][ROOT][9].__setitem__(3, "3"),
                  "directory 1: entry 'f' points to str '3', not an inode in the checkpoint"),
    "child-missing": (lambda s: s[1][D][9].__setitem__(1, 99), "directory 2: entry 'g' points to int 99, not an inode"),
    "child-root": (lambda s: s[1][D][9].__setitem__(1, 1), "directory 2: entry 'g' names the root"),
    "name-twice": (lambda s: s[1][ROOT][9].extend(["f", 6]), "directory 1: name 'f' appears twice"),
    "dir-two-parents": (lambda s: s[1][D][9].extend(["x", 2]), "directory 2 has two parents (1 and 2)"),
    "root-missing": (lambda s: [7, s[1][1:]], "the root (inode 1) is missing or not a directory"),
    "root-a-file": (lambda s: s[1].__setitem__(ROOT, [1, REG | 0o644, 0, 0, 0, 0, 0, 0, [], None]),
                    "the root (inode 1) is missing or not a directory"),
    "dir-alone": (lambda s: [8, s[1] + [[7, DIR | 0o755, 0, 0, 0, 1, 1, 1, None, []]]],
                  re.escape("directories [7] are not connected to the root")),
    "dirs-in-a-cycle": (lambda s: [9, s[1] + [[7, DIR | 0o755, 0, 0, 0, 1, 1, 1, None, ["b", 8]],
                                              [8, DIR | 0o755, 0, 0, 0, 1, 1, 1, None, ["a", 7]]]],
                        re.escape("directories [7, 8] are not connected to the root")),
    # symlinks and special files
    "node-ino-0": (_set(L, 0, 0), "inode row 3: inode number int 0 is not an int from 1 to 6 (below next_ino)"),
    "node-ino-next": (_set(L, 0, 7), "inode row 3: inode number int 7 is not an int from 1 to 6"),
    "node-ino-str": (_set(L, 0, "4"), "inode row 3: inode number str '4' is not"),
    "node-ino-twice": (_set(L, 0, 2), "inode 2 is stored twice"),
    "node-mode-file": (_set(L, 1, REG | 0o644), f"inode 4: mode int {REG | 0o644} is not a symlink or special file "
                                                f"with permission bits (its row has 11 fields)"),
    "node-mode-float": (_set(L, 1, 1.0), "inode 4: mode float 1.0 is not a symlink"),
    "node-uid-negative": (_set(P, 2, -1), _ATTR.format(5, "uid", "int -1", 0, ID_MAX)),
    "node-uid-past": (_set(P, 2, ID_MAX + 1), _ATTR.format(5, "uid", f"int {ID_MAX + 1}", 0, ID_MAX)),
    "node-gid-past": (_set(P, 3, ID_MAX + 1), _ATTR.format(5, "gid", f"int {ID_MAX + 1}", 0, ID_MAX)),
    "node-gid-negative": (_set(P, 3, -1), _ATTR.format(5, "gid", "int -1", 0, ID_MAX)),
    "node-uid-str": (_set(P, 2, "0"), _ATTR.format(5, "uid", "str '0'", 0, ID_MAX)),
    "node-size-negative": (_set(P, 4, -1), _ATTR.format(5, "size", "int -1", 0, MAX_FILE_SIZE)),
    "node-size-past": (_set(P, 4, MAX_FILE_SIZE + 1), _ATTR.format(5, "size", f"int {MAX_FILE_SIZE + 1}", 0,
                                                                    MAX_FILE_SIZE)),
    "node-size-float": (_set(P, 4, 0.0), _ATTR.format(5, "size", "float 0.0", 0, MAX_FILE_SIZE)),
    "node-atime-low": (_set(P, 5, TIME_MIN - 1), _ATTR.format(5, "atime", f"int {TIME_MIN - 1}", TIME_MIN, TIME_MAX)),
    "node-atime-high": (_set(P, 5, TIME_MAX + 1), _ATTR.format(5, "atime", f"int {TIME_MAX + 1}", TIME_MIN,
                                                                TIME_MAX)),
    "node-atime-float": (_set(P, 5, 1.0), _ATTR.format(5, "atime", "float 1.0", TIME_MIN, TIME_MAX)),
    "node-mtime-low": (_set(P, 6, TIME_MIN - 1), _ATTR.format(5, "mtime", f"int {TIME_MIN - 1}", TIME_MIN, TIME_MAX)),
    "node-mtime-high": (_set(P, 6, TIME_MAX + 1), _ATTR.format(5, "mtime", f"int {TIME_MAX + 1}", TIME_MIN,
                                                                TIME_MAX)),
    "node-mtime-float": (_set(P, 6, 1.0), _ATTR.format(5, "mtime", "float 1.0", TIME_MIN, TIME_MAX)),
    "node-ctime-low": (_set(P, 7, TIME_MIN - 1), _ATTR.format(5, "ctime", f"int {TIME_MIN - 1}", TIME_MIN, TIME_MAX)),
    "node-ctime-high": (_set(P, 7, TIME_MAX + 1), _ATTR.format(5, "ctime", f"int {TIME_MAX + 1}", TIME_MIN,
                                                                TIME_MAX)),
    "node-ctime-float": (_set(P, 7, 1.0), _ATTR.format(5, "ctime", "float 1.0", TIME_MIN, TIME_MAX)),
    "node-with-extents": (_set(P, 8, []), "inode 5: a symlink or special file with extents list [] or entries "
                                          "NoneType None, not None"),
    "node-with-entries": (_set(L, 9, []), "inode 4: a symlink or special file with extents NoneType None or "
                                          "entries list [], not None"),
    "target-empty": (lambda s: s[1][L].__setitem__(slice(4, 11), [0, 1, 1, 1, None, None, ""]),
                     "symlink 4: target str '' is not a path of at most 4095 bytes without NUL, or its size 0 is not "
                     "the target's length"),
    "target-size-wrong": (_set(L, 4, 2), "symlink 4: target str 'abc' is not a path of at most 4095 bytes without "
                                         "NUL, or its size 2 is not"),
    "target-4096": (lambda s: s[1][L].__setitem__(slice(4, 11), [4096, 1, 1, 1, None, None, "t" * 4096]),
                    "symlink 4: target str 'tttt"),
    "target-nul": (lambda s: s[1][L].__setitem__(slice(4, 11), [3, 1, 1, 1, None, None, "a\0b"]), "symlink 4"),
    "target-int": (_set(L, 10, 3), "symlink 4: target int 3 is not a path"),
    "rdev-negative": (_set(P, 10, -1), f"special file 5: device number int -1 is not an int from 0 to {RDEV_MAX}, "
                                       f"or its size 0 is not 0"),
    "rdev-past": (_set(P, 10, RDEV_MAX + 1), f"special file 5: device number int {RDEV_MAX + 1} is not an int"),
    "rdev-str": (_set(P, 10, "7"), "special file 5: device number str '7' is not an int"),
    "special-size": (_set(P, 4, 1), f"special file 5: device number int 7 is not an int from 0 to {RDEV_MAX}, "
                                    f"or its size 1 is not 0"),
    # an error blames the field or run at fault, not one at the edge of its range beside it
    "blames-gid-not-uid-at-max": (lambda s: s[1][D].__setitem__(slice(2, 4), [ID_MAX, -1]),
                                  _ATTR.format(2, "gid", "int -1", 0, ID_MAX)),
    "run-at-largest-file-past-data": (_set_run(G, [MAXB - 1, 1, BLOCKS, UNWRITTEN]),
                                      "run 0 [%d, 1, 64, 1] lies outside the data area" % (MAXB - 1)),
    "run-at-block-0-written-past-size": (_set_run(G, [0, 1, 0, 0], 0), "run 0 [0, 1, 0, 0] holds written blocks past"),
    "run-at-last-block-written-past-size": (_set_run(G, [1, 1, BLOCKS - 1, 0]),
                                            "run 0 [1, 1, 63, 0] holds written blocks past the file size 4096"),
    "child-list": (lambda s: s[1][ROOT][9].__setitem__(3, []),
                   "directory 1: entry 'f' points to list [], not an inode in the checkpoint"),
    "node-ino-root": (_set(L, 0, 1), "inode 1 is stored twice"),
    "special-size-max": (_set(P, 4, MAX_FILE_SIZE), f"special file 5: device number int 7 is not an int from 0 to "
                                                    f"{RDEV_MAX}, or its size {MAX_FILE_SIZE} is not 0"),
    "no-rows": (lambda s: [2, []], "the root (inode 1) is missing or not a directory"),
    # bad memory
    "bad-memory-shape": (lambda s: s.append([[40, 2]]), "bad memory field is"),
    "bad-memory-past-the-end": (lambda s: s.append([[63, 2], []]), "bad data blocks run 63+2 is out of order"),
}


@pytest.mark.parametrize("change, says", REFUSED.values(), ids=REFUSED.keys())
def test_a_field_out_of_range_is_refused_saying_what(change: Callable[[list], object], says: str) -> None:
    state = changed(change)
    with pytest.raises(CorruptVolumeError) as info:
        load(state)
    text = str(info.value)
    pattern = says if says.startswith("directories") else re.escape(says)
    assert "corrupt volume: checkpoint: " in text and re.search(pattern, text), (text, says)


def test_a_long_value_is_shown_cut_to_60_characters() -> None:
    """A value's repr up to 60 characters is shown whole; a longer one is cut to 57 and '...'."""
    for value, shown in (("n" * 58, repr("n" * 58)), ("n" * 59, repr("n" * 59)[:57] + "...")):
        with pytest.raises(CorruptVolumeError) as info:
            load([7, value])
        assert str(info.value).endswith(f"checkpoint: inode table is str {shown}, not a list"), str(info.value)


@pytest.mark.parametrize("change, says", [
    (lambda s: [7, s[1][1:]], "the root (inode 1) is missing or not a directory"),
    (_set(G, 0, 3), "inode 3 is stored twice"),
    (lambda s: s[1][D][9].extend(["x", 2]), "directory 2 has two parents (1 and 2)"),
    (lambda s: s[1][D][9].__setitem__(1, 1), "directory 2: entry 'g' names the root"),
    (lambda s: s[1][ROOT][9].extend(["f", 6]), "directory 1: name 'f' appears twice"),
    (lambda s: [7 + 11, s[1] + [[i, DIR | 0o755, 0, 0, 0, 1, 1, 1, None, []] for i in range(7, 18)]],
     f"directories {list(range(7, 17))} are not connected to the root"),     # the first ten of eleven
], ids=["root-missing", "stored-twice", "two-parents", "names-the-root", "name-twice", "eleven-lost"])
def test_a_whole_message(change: Callable[[list], object], says: str) -> None:
    with pytest.raises(CorruptVolumeError) as info:
        load(changed(change))
    assert str(info.value).endswith(": checkpoint: " + says), str(info.value)


def test_a_load_keeps_the_volumes_alignment() -> None:
    """Free space rebuilt at load keeps the huge-page alignment the volume was made with."""
    core = Core.from_checkpoint(copy.deepcopy(BASE), BS, BLOCKS, align_blocks=16)
    assert core.space.align == 16 and core.space.free == BLOCKS - 4
    assert load(copy.deepcopy(BASE)).space.align == 1
