"""fsck (``daxfs.core.invariants.check``) finds each kind of damage, alone, and says which.

Every case starts from one consistent state that holds every kind of inode and block fsck
knows (directories, a hard link, a written run, an unwritten run past the size, blocks
shared by a reflink, a symlink, a FIFO, an empty file), which ``check`` passes; it then
breaks exactly one thing through the core's own objects (a free-space run, the busy list,
the reverse map, a field of one inode, a directory entry, a counter) and asserts the
problems ``check`` lists, in order, each by the part of its message that names the damage
and where it is.  An inode whose own fields are wrong is reported and left out of the
other checks, so it must not bring findings about anything else with it.  Edge values
(a field at its limit, a run ending at the last data block, a written run ending at the
size rounded up) must pass.  ``check`` never raises: a state too damaged to check is one
more finding.
"""

from __future__ import annotations

import stat as st
from collections.abc import Callable

import pytest

from daxfs.core import Core, check
from daxfs.core.extents import SHARE, UNWRITTEN, ExtentMap
from daxfs.core.fields import ID_MAX, MAX_FILE_SIZE, TIME_MAX, TIME_MIN
from daxfs.core.records import Create, CreateNode, Link, Quarantine, SetExtents
from daxfs.core.state import ROOT_INO, Inode

BS = 4096
DATA_BLOCKS = 64
ROOT = ROOT_INO
DIR, FILE, CLONE, LINK, FIFO, EMPTY_DIR, EMPTY_FILE, SMALL = 2, 3, 4, 5, 6, 7, 8, 9

Change = Callable[[Core], None]


def clean_core() -> Core:
    """A consistent state with one of everything fsck looks at.

    ``/d`` (2) a directory holding ``b`` and ``h`` and ``p``; ``/a`` (3) a file named twice
    (``/a``, ``/d/h``) with written blocks 10..14 and unwritten blocks 20..22 past its size;
    ``/d/b`` (4) a clone sharing 10..14; ``/s`` (5) a symlink to ``abc``; ``/d/p`` (6) a
    FIFO; ``/e`` (7) an empty directory; ``/z`` (8) an empty file; ``/r`` (9) a file with
    written blocks 30..32.  56 of the 64 data blocks are free, 4 shared.
    """
    core = Core.new(BS, DATA_BLOCKS, time_ns=1, uid=0, gid=0)
    reg, folder = st.S_IFREG | 0o644, st.S_IFDIR | 0o755
    core.apply(Create(DIR, ROOT, "d", folder, 0, 0, 1))
    core.apply(Create(FILE, ROOT, "a", reg, 0, 0, 1))
    core.apply(SetExtents(FILE, [], [0, 4, 10, 0, 4, 2, 20, UNWRITTEN], 4 * BS, 1))
    core.apply(Create(CLONE, DIR, "b", reg, 0, 0, 1))
    core.apply(SetExtents(CLONE, [], [0, 4, 10, SHARE], 4 * BS, 1))
    core.apply(Link(FILE, DIR, "h", 1))
    core.apply(CreateNode(LINK, ROOT, "s", st.S_IFLNK | 0o777, 0, 0, 1, 0, "abc"))
    core.apply(CreateNode(FIFO, DIR, "p", st.S_IFIFO | 0o644, 0, 0, 1, 0, ""))
    core.apply(Create(EMPTY_DIR, ROOT, "e", folder, 0, 0, 1))
    core.apply(Create(EMPTY_FILE, ROOT, "z", reg, 0, 0, 1))
    core.apply(Create(SMALL, ROOT, "r", reg, 0, 0, 1))
    core.apply(SetExtents(SMALL, [], [0, 2, 30, 0], 2 * BS, 1))
    return core


def test_the_clean_state_passes_and_holds_what_the_cases_rely_on() -> None:
    core = clean_core()
    assert check(core) == []
    assert core.space.free == 56 and core.rmap.shared_blocks == 4 and core.runs == 4
    assert core.next_ino == 10 and core.inodes[FILE].nlink == 2 and core.unnamed == set()


def set_fields(number: int, **values: object) -> Change:
    """Fields of inode ``number`` set by hand."""
    def change(core: Core) -> None:
        for name, value in values.items():
            setattr(core.inodes[number], name, value)
    return change


def set_runs(ino: int, *runs: tuple[object, ...]) -> Change:
    """Give inode ``ino`` a block map of exactly ``runs`` (as a checkpoint would load them)."""
    def change(core: Core) -> None:
        emap = ExtentMap.__new__(ExtentMap)
        emap._runs = list(runs)      # type: ignore[arg-type]
        emap._starts = [run[0] for run in runs]     # type: ignore[misc]
        core.inodes[ino].extents = emap
    return change


def both(*changes: Change) -> Change:
    def change(core: Core) -> None:
        for one in changes:
            one(core)
    return change


def add_name(directory: int, name: str, child: int) -> Change:
    """A directory entry added by hand, the name count kept right."""
    def change(core: Core) -> None:
        core.inodes[directory].entries[name] = child     # type: ignore[index]
        core.name_chars += len(name)
    return change


def drop_name(directory: int, name: str) -> Change:
    def change(core: Core) -> None:
        del core.inodes[directory].entries[name]       # type: ignore[union-attr]
        core.name_chars -= len(name)
    return change


def busy_by_hand(start: int, n: int, *, held: int, from_free: bool = True) -> Change:
    """Blocks ``[start, start+n)`` put on the busy list, the first ``held`` of them held."""
    def change(core: Core) -> None:
        if from_free:
            core.space.take(start, n)
        core.busy._busy[start] = n
        core.busy.blocks += n
        if held:
            core.busy.hold(start, held)
    return change


def bump(obj: str, attr: str, by: int = 1) -> Change:
    """Counter ``attr`` of the core (``obj`` "") or of one of its parts off by ``by``."""
    def change(core: Core) -> None:
        owner = getattr(core, obj) if obj else core
        setattr(owner, attr, getattr(owner, attr) + by)
    return change


def assert_reports(core: Core, expected: list[str], referenced: tuple[int, ...] = ()) -> None:
    """``check`` lists exactly ``len(expected)`` problems, the i-th holding ``expected[i]``."""
    problems = check(core, referenced)
    assert len(problems) == len(expected) and all(want in got for want, got in zip(expected, problems)), \
        f"\nexpected {expected}\n     got {problems}"


# ---------------------------------------------------------------- one inode's own fields

FIELD_CASES = [
    # (id, change, problems)
    ("not-an-inode", lambda core: core.inodes.__setitem__(10, "junk"), ["inode 10 is str, not an inode"]),
    ("number-zero", lambda core: core.inodes.__setitem__(0, Inode(0, st.S_IFIFO | 0o644, 0, 0, 0, 1, 1, 1)),
     ["inode number 0 is not an int >= 1", "inode 0: ino 0 is not an int from 1 to"]),
    ("number-a-str", lambda core: core.inodes.__setitem__("11", Inode(11, st.S_IFIFO | 0o644, 0, 0, 0, 1, 1, 1)),
     ["inode number '11' is not an int >= 1"]),
    ("mode-without-a-type", set_fields(FIFO, mode=0o644),
     ["inode 6: mode 420 is not a regular file", "inode 6 has neither directory entries and a block map"]),
    ("mode-a-str", set_fields(EMPTY_DIR, mode=str(st.S_IFDIR | 0o755)), ["inode 7: mode '16877' is not"]),
    ("mode-past-the-type-bits", set_fields(FIFO, mode=st.S_IFIFO | 0o200000),
     ["inode 6: mode 69632 is not", "inode 6 has neither"]),
    ("uid-missing", lambda core: delattr(core.inodes[FIFO], "uid"), ["inode 6: uid None is not an int"]),
    ("uid-negative", set_fields(FIFO, uid=-1), [f"inode 6: uid -1 is not an int from 0 to {ID_MAX}"]),
    ("uid-too-big", set_fields(FIFO, uid=ID_MAX + 1), [f"inode 6: uid {ID_MAX + 1} is not an int"]),
    ("gid-too-big", set_fields(FIFO, gid=ID_MAX + 1), [f"inode 6: gid {ID_MAX + 1} is not an int from 0"]),
    ("gid-a-bool", set_fields(FIFO, gid=True), ["inode 6: gid True is not an int"]),
    ("size-negative", set_fields(FIFO, size=-1), [f"inode 6: size -1 is not an int from 0 to {MAX_FILE_SIZE}"]),
    ("size-too-big", set_fields(FIFO, size=MAX_FILE_SIZE + 1), [f"inode 6: size {MAX_FILE_SIZE + 1} is not"]),
    ("atime-too-early", set_fields(FIFO, atime_ns=TIME_MIN - 1),
     [f"inode 6: atime_ns {TIME_MIN - 1} is not an int from {TIME_MIN} to {TIME_MAX}"]),
    ("mtime-too-late", set_fields(FIFO, mtime_ns=TIME_MAX + 1), [f"inode 6: mtime_ns {TIME_MAX + 1} is not"]),
    ("ctime-a-float", set_fields(FIFO, ctime_ns=1.0), ["inode 6: ctime_ns 1.0 is not"]),
    ("nlink-negative", set_fields(FIFO, nlink=-1), [f"inode 6: nlink -1 is not an int from 0 to {ID_MAX}"]),
    ("nlink-too-big", set_fields(FIFO, nlink=ID_MAX + 1), [f"inode 6: nlink {ID_MAX + 1} is not"]),
    ("parent-negative", set_fields(FIFO, parent=-1), [f"inode 6: parent -1 is not an int from 0 to {1 << 64}"]),
    ("parent-too-big", set_fields(FIFO, parent=(1 << 64) + 1), [f"inode 6: parent {(1 << 64) + 1} is not"]),
    ("ino-zero", set_fields(FIFO, ino=0), [f"inode 6: ino 0 is not an int from 1 to {1 << 64}"]),
    ("ino-too-big", set_fields(FIFO, ino=(1 << 64) + 1), ["inode 6: ino 18446744073709551617 is not"]),
    ("special-with-entries", set_fields(FIFO, entries={}),
     ["inode 6: a symlink or special file with directory entries or a block map"]),
    ("special-with-a-block-map", set_fields(LINK, extents=ExtentMap()),
     ["inode 5: a symlink or special file with directory entries or a block map"]),
    ("symlink-without-target", set_fields(LINK, target=None), ["inode 5: a symlink without a target"]),
    ("fifo-with-target", set_fields(FIFO, target="x"), ["inode 6: a target on a non-symlink a target"]),
    ("symlink-target-with-nul", set_fields(LINK, target="a\0c"), ["symlink 5: target 'a\\x00c' is not a valid"]),
    ("symlink-size-not-its-length", set_fields(LINK, size=4), ["symlink 5: target 'abc' is not a valid path, or "
                                                             "size 4 is not its length"]),
    ("file-with-target", set_fields(EMPTY_FILE, target="x"),
     ["inode 8: a regular file or directory with a symlink target"]),
    ("directory-with-target", set_fields(EMPTY_DIR, target="x"), ["inode 7: a regular file or directory with"]),
    ("file-with-entries-too", set_fields(EMPTY_FILE, entries={}),
     ["inode 8 has both directory entries and a block map"]),
    ("file-with-neither", set_fields(EMPTY_FILE, extents=None),
     ["inode 8 has neither directory entries and a block map"]),
    ("entries-a-list", set_fields(EMPTY_DIR, entries=[]), ["directory 7: entries are list, not a dict"]),
    ("entry-to-a-str", set_fields(EMPTY_DIR, entries={"x": "3"}),
     ["directory 7 has an entry pointing to '3', not an inode number"]),
    ("block-map-a-list", set_fields(SMALL, extents=[(0, 2, 30, 0)]), ["file 9: block map is list, not an ExtentMap"]),
    ("run-of-three", set_runs(SMALL, (0, 2, 30)), ["file 9: run (0, 2, 30) is not four ints"]),
    ("run-a-list", set_runs(SMALL, [0, 2, 30, 0]), ["file 9: run [0, 2, 30, 0] is not four ints"]),
    ("run-with-a-float", set_runs(SMALL, (0, 2, 30.0, 0)), ["file 9: run (0, 2, 30.0, 0) is not four ints"]),
    ("run-with-a-bool", set_runs(SMALL, (0, 2, 30, False)), ["file 9: run (0, 2, 30, False) is not four ints"]),
    ("run-share-flag", set_runs(SMALL, (0, 2, 30, SHARE)), ["file 9: run at file block 0 has unknown flags 0x2"]),
    ("run-high-flag", set_runs(SMALL, (0, 2, 30, 4)), ["file 9: run at file block 0 has unknown flags 0x4"]),
]


@pytest.mark.parametrize("change, expected", [pytest.param(c, e, id=i) for i, c, e in FIELD_CASES])
def test_a_bad_field_is_reported_alone(change: Change, expected: list[str]) -> None:
    """The inode is left out of everything else (its blocks, names and links are not counted),
    so the counts it would throw off are not reported on top."""
    core = clean_core()
    change(core)
    assert_reports(core, expected)


def test_a_block_size_of_one_is_checked_not_refused() -> None:
    """1 is a positive int (every size here is then past its written blocks, as it must be)."""
    core = clean_core()
    core.block_size = 1
    assert check(core) == []


def test_an_inode_without_a_target_field_has_none() -> None:
    """A special file or a regular file built without the slot (``getattr``'s default)."""
    core = clean_core()
    delattr(core.inodes[FIFO], "target")
    delattr(core.inodes[EMPTY_FILE], "target")
    assert check(core) == []


def test_fields_at_their_limits_pass() -> None:
    core = clean_core()
    set_fields(FIFO, uid=ID_MAX, gid=ID_MAX, size=MAX_FILE_SIZE, atime_ns=TIME_MIN, mtime_ns=TIME_MAX,
               ctime_ns=TIME_MAX, parent=1 << 64)(core)
    set_fields(EMPTY_FILE, uid=0, gid=0, atime_ns=0, size=0, parent=0)(core)
    assert check(core) == []
    core.inodes[FIFO].mode = st.S_IFIFO | 0o7777        # every permission bit
    assert check(core) == []


def test_an_invalid_name_is_reported_and_the_rest_still_checked() -> None:
    """A bad name does not leave its directory out: the other checks still see the tree."""
    core = clean_core()
    entries = core.inodes[ROOT].entries
    assert entries is not None
    entries["."] = entries.pop("z")         # same length: the name count stays right
    assert_reports(core, ["directory 1 has an invalid name '.'"])
    core.inodes[EMPTY_FILE].nlink = 2
    assert_reports(core, ["directory 1 has an invalid name '.'", "inode 8 link count is 2, should be 1"])


# ---------------------------------------------------------------- the volume's own numbers

@pytest.mark.parametrize("attr, value", [("block_size", 0), ("block_size", -BS), ("block_size", float(BS)),
                                          ("data_blocks", 64.0), ("next_ino", "10")])
def test_a_bad_geometry_is_one_problem_and_stops_the_check(attr: str, value: object) -> None:
    core = clean_core()
    setattr(core, attr, value)
    core.inodes[FIFO].uid = -1              # not reached
    problems = check(core)
    assert len(problems) == 1 and "is not a positive int" in problems[0] and repr(value) in problems[0], problems


# ---------------------------------------------------------------- block maps and blocks

def release(start: int, n: int) -> Change:
    return lambda core: core.space.release(start, n)


def take(start: int, n: int) -> Change:
    return lambda core: core.space.take(start, n)


def rmap_offset_wrong(core: Core) -> None:
    """The reverse map names the right file for blocks 30..32, at the wrong file block."""
    core.rmap.remove(30, 2, SMALL, 0)
    core.rmap.add(30, 2, SMALL, 1)


BLOCK_CASES = [
    ("stored-as-another", set_fields(SMALL, ino=19), ["inode 9 is stored as 19"]),
    ("file-mode-without-block-map", both(set_fields(EMPTY_DIR, mode=st.S_IFREG | 0o644)),
     ["inode 7 has no block map but is not a directory"]),
    ("directory-mode-with-block-map", both(set_fields(EMPTY_FILE, mode=st.S_IFDIR | 0o755)),
     ["inode 8 has a block map but is not a regular file"]),
    ("fifo-mode-with-block-map", both(set_fields(EMPTY_FILE, mode=st.S_IFIFO | 0o644)),
     ["inode 8: a symlink or special file with directory entries or a block map"]),
    ("run-of-no-blocks", both(set_runs(SMALL, (0, 2, 30, 0), (2, 0, 40, 0)), bump("", "runs")),
     ["inode 9: bad run at file block 2 (+0)", "reverse map differs", "free blocks 32..64 overlap inode 9's blocks 40..40"]),
    ("run-before-file-start", set_runs(SMALL, (-1, 2, 30, 0)), ["inode 9: bad run at file block -1 (+2)", "reverse map differs"]),
    ("runs-overlap", both(set_runs(SMALL, (0, 2, 30, 0), (1, 1, 40, 0)), bump("", "runs"), take(40, 1)),
     ["inode 9: runs overlap at file block 1", "reverse map differs", "free (55) + used (8) + busy (0)"]),
    ("run-past-the-data-area", both(set_runs(SMALL, (0, 2, 63, 0)), release(30, 2), take(63, 1)),
     ["inode 9: run at file block 0 points outside the data area", "reverse map differs", "free (57) + used (8)"]),
    ("run-before-the-data-area", both(set_runs(SMALL, (0, 2, -1, 0)), set_fields(FILE, nlink=3)),
     ["inode 9: run at file block 0 points outside the data area", "reverse map differs",
      "inode 3 link count is 3, should be 2"]),          # (and the rest is still checked)
    ("written-past-the-size", set_fields(SMALL, size=BS),
     ["inode 9: written blocks past its size 4096 (file block 0+2)"]),
    ("written-run-starting-past-the-size", both(set_runs(SMALL, (5, 2, 30, 0))),
     ["inode 9: written blocks past its size 8192 (file block 5+2)", "reverse map differs"]),
    ("run-count", bump("", "runs"), ["run count is 5, files hold 4"]),
    ("run-count-low", bump("", "runs", -1), ["run count is 3, files hold 4"]),
    ("same-owner-twice", both(set_runs(SMALL, (0, 2, 30, 0), (1, 1, 31, 0)), bump("", "runs")),
     ["inode 9: runs overlap at file block 1", "extent maps do not form a reverse map"]),
    ("reverse-map-offset", rmap_offset_wrong, ["reverse map differs from the extent maps (refcounts are wrong)"]),
    ("reverse-map-extra-owner", lambda core: core.rmap.add(30, 2, FILE, 8),
     ["reverse map differs from the extent maps", "shared block count is 6, extents share 4"]),
    ("shared-count", bump("rmap", "shared_blocks"), ["shared block count is 5, extents share 4"]),
    ("free-and-owned", release(31, 1),
     ["free blocks 31..64 overlap inode 9's blocks 30..32", "free (57) + used (8) + busy (0)"]),
    ("free-and-shared", release(12, 2),
     ["free blocks 12..20 overlap inode 3's blocks 10..14", "free blocks 12..20 overlap inode 4's blocks 10..14",
      "free (58) + used (8)"]),
    ("leaked", take(50, 3), ["free (53) + used (8) + busy (0) + quarantined (0) blocks != data area (64)"]),
    ("busy-and-owned", busy_by_hand(30, 1, held=1, from_free=False),
     ["busy blocks 30..31 overlap inode 9's blocks 30..32", "free (56) + used (8) + busy (1)"]),
    ("busy-and-free", busy_by_hand(50, 1, held=1, from_free=False),
     ["busy blocks 50..51 are also free", "held blocks 50..51 include free blocks", "free (56) + used (8) + busy (1)"]),
    ("busy-not-held", busy_by_hand(50, 1, held=0), ["busy blocks 50..51 are not all held"]),
    ("busy-partly-held", busy_by_hand(50, 3, held=2), ["busy blocks 50..53 are not all held"]),
    ("held-and-free", lambda core: core.busy.hold(50, 2),
     ["held blocks 50..52 include free blocks: a pin or mapping points at memory"]),
    ("busy-count", bump("busy", "blocks"), ["busy count is 1, the busy list holds 0", "busy (1)"]),
    ("known-zero-owned", lambda core: core.space.zero.add(31, 2), ["known-zero blocks 31..33 are not free"]),
    ("claimed-owned", lambda core: core.space.claimed.add(10, 1), ["claimed known-zero blocks 10..11 are not free"]),
    ("unbacked-owned", lambda core: core.space.unbacked.add(21, 1), ["unbacked blocks 21..22 are not free"]),
    ("bad-count", bump("bad", "total"), ["bad block count is 1, the quarantine holds 0"]),
    ("bad-past-the-data-area", lambda core: core.bad.add(63, 2), ["bad blocks 63..65 lie outside the data area"]),
    ("bad-before-the-data-area", lambda core: core.bad.add(-1, 1), ["bad blocks -1..0 lie outside the data area"]),
    ("bad-empty-run", lambda core: (core.bad.starts.append(50), core.bad.__setitem__(50, 0)),
     ["bad blocks 50..50 lie outside the data area"]),
    ("bad-outside-then-free", lambda core: (core.bad.add(-1, 1), core.bad.add(50, 1)),
     ["bad blocks -1..0 lie outside the data area", "bad blocks 50..51 are free", "quarantined (1)"]),
    ("bad-and-free", lambda core: core.bad.add(50, 2),
     ["bad blocks 50..52 are free: they could be handed out again", "quarantined (2)"]),
    ("bad-and-busy", both(lambda core: core.apply(Quarantine(50, 1)), busy_by_hand(50, 1, held=1, from_free=False)),
     ["bad blocks 50..51 are also busy (blocks 50..51)", "busy (1) + quarantined (1)"]),
]


@pytest.mark.parametrize("change, expected", [pytest.param(c, e, id=i) for i, c, e in BLOCK_CASES])
def test_block_damage_is_reported(change: Change, expected: list[str]) -> None:
    core = clean_core()
    change(core)
    assert_reports(core, expected)


def test_runs_at_the_edges_pass() -> None:
    """A run ending at the last data block, written blocks up to the size rounded up, unwritten
    blocks past it."""
    core = clean_core()
    core.apply(SetExtents(SMALL, [0, 2], [0, 2, DATA_BLOCKS - 2, 0, 9, 1, 40, UNWRITTEN], BS + 1, 2))
    core.apply(SetExtents(EMPTY_FILE, [], [0, 1, 0, 0], BS, 2))            # the first data block
    assert check(core) == []
    assert_reports(core, [], referenced=(SMALL,))


def test_busy_and_bad_blocks_kept_right_pass() -> None:
    """Blocks held by a mapping while their file gave them up (busy), a hold on owned blocks,
    bad blocks owned and unowned, known-zero free blocks: all consistent."""
    core = clean_core()
    core.adopt_hold(50, 3)                          # free blocks made busy, held
    core.hold(30, 2)                                # owned blocks held
    core.apply(Quarantine(12, 4))                   # owned (12, 13; shared) and free (14, 15)
    core.apply(Quarantine(40, 2))                   # free
    core.space.zero.add(44, 2)
    core.space.claimed.add(44, 1)
    core.space.unbacked.add(60, 4)
    core.apply(Quarantine(0, 1))                    # the first and the last data block
    core.apply(Quarantine(DATA_BLOCKS - 1, 1))
    core.adopt_hold(42, 1)                          # busy just before bad 43, and just after
    core.apply(Quarantine(43, 1))
    core.adopt_hold(44, 1)
    assert core.busy.blocks == 5 and core.bad.total == 9
    assert check(core) == []
    core.unhold(50, 3)
    assert core.busy.blocks == 2 and check(core) == []


def reflinked_core() -> Core:
    """File 2 owns blocks 0..10; file 3 shares 3..8 (ending where block 8 starts), file 4
    shares 5; file 5 owns 20..22 (a run after all of them)."""
    core = Core.new(BS, DATA_BLOCKS, time_ns=1, uid=0, gid=0)
    reg = st.S_IFREG | 0o644
    for ino, name in ((2, "a"), (3, "b"), (4, "c"), (5, "d")):
        core.apply(Create(ino, ROOT, name, reg, 0, 0, 1))
    core.apply(SetExtents(2, [], [0, 10, 0, 0], 10 * BS, 1))
    core.apply(SetExtents(3, [], [0, 5, 3, SHARE], 5 * BS, 1))
    core.apply(SetExtents(4, [], [0, 1, 5, SHARE], BS, 1))
    core.apply(SetExtents(5, [], [0, 2, 20, 0], 2 * BS, 1))
    return core


@pytest.mark.parametrize("how", ["free", "busy"])
def test_a_block_under_a_long_shared_run_is_found_free_or_busy(how: str) -> None:
    """A block both free (or busy) and owned, a double allocation waiting to happen, is found
    when the run owning it starts before shorter runs of other files (reflinks of its middle),
    and a leak elsewhere makes the counts add up; only its real owner is named (not a clone
    that ends where the block starts)."""
    core = reflinked_core()
    assert check(core) == []
    if how == "free":
        core.space.release(8, 1)
    else:
        busy_by_hand(8, 1, held=1, from_free=False)(core)
    core.space.take(50, 1)
    assert_reports(core, [f"{how} blocks 8..9 overlap inode 2's blocks 0..10"])


def test_an_equal_reverse_map_in_another_shape_passes() -> None:
    """The reverse map is compared by what it says, not how its runs are cut: owners in
    another order, a run split in two."""
    core = clean_core()
    runs = core.rmap._runs
    end, owners = runs[10]
    assert len(owners) == 2
    runs[10] = (end, tuple(reversed(owners)))
    end, owners = runs[30]
    runs[30] = (31, owners)
    runs[31] = (end, owners)
    core.rmap._starts.insert(core.rmap._starts.index(30) + 1, 31)
    assert len(core.rmap.runs()) == 4
    assert check(core) == []


# ---------------------------------------------------------------- the tree

def swap_root(core: Core) -> None:
    core.inodes[ROOT] = Inode(ROOT, st.S_IFREG | 0o644, 0, 0, 0, 1, 1, 1)


def detach(directory: int, name: str) -> Change:
    def change(core: Core) -> None:
        child = core.inodes[directory].entries[name]     # type: ignore[index]
        drop_name(directory, name)(core)
        if core.inodes[child].entries is not None:
            core.inodes[directory].nlink -= 1
        else:
            core.inodes[child].nlink -= 1
            if core.inodes[child].nlink == 0:
                core.unnamed.add(child)
    return change


TREE_CASES = [
    ("root-missing", lambda core: core.inodes.pop(ROOT), ["root directory missing"]),
    ("root-a-file", swap_root, ["root directory missing"]),
    ("entry-to-nothing", add_name(EMPTY_DIR, "q", 99), ["directory 7 entry 'q' points to missing inode 99"]),
    ("entry-to-nothing-then-a-link", both(add_name(EMPTY_DIR, "q", 99), add_name(EMPTY_DIR, "w", EMPTY_FILE),
                                          set_fields(EMPTY_FILE, nlink=2)),
     ["directory 7 entry 'q' points to missing inode 99"]),         # (the link after it is counted)
    ("entry-to-a-bad-inode-then-a-link", both(add_name(EMPTY_DIR, "q", FIFO), add_name(EMPTY_DIR, "w", EMPTY_FILE),
                                              set_fields(EMPTY_FILE, nlink=2), set_fields(FIFO, uid=-1)),
     ["inode 6: uid -1 is not"]),
    ("name-not-a-str", lambda core: core.inodes[ROOT].entries.__setitem__(b"z", core.inodes[ROOT].entries.pop("z")),
     ["directory 1 has an invalid name b'z'", "name length total is 9, entries hold 8"]),
    ("directory-named-twice", both(add_name(ROOT, "d2", DIR), bump("", "name_chars", -2)),
     ["directory 2 is reachable twice", "name length total is 9, entries hold 11", "inode 1 link count is 4, should be 5",
      "inode 2 link count is 2, should be 3"]),
    ("directory-named-twice-then-a-link",
     both(add_name(ROOT, "d2", DIR), add_name(ROOT, "w", EMPTY_FILE), set_fields(EMPTY_FILE, nlink=2)),
     ["directory 2 is reachable twice", "inode 1 link count is 4, should be 5", "inode 2 link count is 2, should be 3"]),
    ("parent-wrong", set_fields(EMPTY_DIR, parent=DIR), ["directory 7 records parent 2, is in 1"]),
    ("name-count", bump("", "name_chars"), ["name length total is 10, entries hold 9"]),
    ("target-count", bump("", "target_chars", -1), ["symlink target length total is 2, symlinks hold 3"]),
    ("directory-cut-off", detach(ROOT, "e"),
     ["directory 7 is not connected to the tree", "inode 7 link count is 2, should be 0"]),
    ("file-cut-off", detach(ROOT, "z"), ["orphan inode 8 has no names and nobody holds it"]),
    ("fifo-cut-off", detach(DIR, "p"), ["orphan inode 6 has no names and nobody holds it"]),
    ("link-count-high", set_fields(FILE, nlink=3), ["inode 3 link count is 3, should be 2"]),
    ("link-count-low", set_fields(EMPTY_DIR, nlink=1), ["inode 7 link count is 1, should be 2"]),
    ("root-link-count", set_fields(ROOT, nlink=5), ["inode 1 link count is 5, should be 4"]),
    ("next-number-at-an-inode", lambda core: setattr(core, "next_ino", SMALL),
     ["inode 9 is not below the next inode number 9"]),
    ("unnamed-extra", lambda core: core.unnamed.add(FILE),
     ["the files kept as without a name are [3], should be []"]),
    ("unnamed-missing", both(detach(ROOT, "z"), lambda core: core.unnamed.clear()),
     ["orphan inode 8", "the files kept as without a name are [], should be [8]"]),
    ("unnamed-not-a-set", lambda core: setattr(core, "unnamed", (8, 3)),
     ["the files kept as without a name are (8, 3), should be []"]),
    ("unnamed-attribute-gone", lambda core: delattr(core, "unnamed"),
     ["the files kept as without a name are None, should be []"]),
]


@pytest.mark.parametrize("change, expected", [pytest.param(c, e, id=i) for i, c, e in TREE_CASES])
def test_tree_damage_is_reported(change: Change, expected: list[str]) -> None:
    core = clean_core()
    change(core)
    assert_reports(core, expected)


def test_files_held_open_may_have_no_name() -> None:
    """An orphan somebody holds is no problem (it is kept as unnamed); a directory cut off is,
    held or not."""
    core = clean_core()
    detach(ROOT, "z")(core)
    detach(DIR, "p")(core)
    assert core.unnamed == {EMPTY_FILE, FIFO}
    assert_reports(core, [], referenced=(EMPTY_FILE, FIFO))
    assert_reports(core, ["orphan inode 8 has no names"], referenced=(FIFO,))
    core = clean_core()
    detach(ROOT, "e")(core)
    assert_reports(core, ["directory 7 is not connected", "inode 7 link count"], referenced=(EMPTY_DIR,))


def test_the_next_inode_number_just_above_the_last_passes() -> None:
    core = clean_core()
    core.next_ino = SMALL + 1
    assert check(core) == []
    core.next_ino = 1 << 40
    assert check(core) == []


# ---------------------------------------------------------------- never raises

@pytest.mark.parametrize("change", [
    pytest.param(set_fields(EMPTY_DIR, ino=19), id="directory-stored-as-another"),
    pytest.param(lambda core: setattr(core, "space", None), id="no-free-space"),
    pytest.param(lambda core: setattr(core, "inodes", None), id="no-inodes"),
])
def test_a_state_too_damaged_to_check_is_a_finding(change: Change) -> None:
    core = clean_core()
    change(core)
    problems = check(core)
    assert problems and problems[-1].startswith("fsck could not finish: the state is too damaged to check further ("), \
        problems
