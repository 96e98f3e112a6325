"""The holder table's file, locks and slots at their edges (found by a mutation run over
``volume/holders.py``), without an arbiter: each test pins down one thing a slip there
would get wrong while the arbiter tests still passed.

- ``side_path``: beside a pool file (absolute, even for a relative pool path, or for one
  that does not exist yet); for a device, in ``/run/daxfs`` under the device's name.
- the liveness lock covers one byte, ``slot``: a second open of the file cannot take a
  held slot but can take its neighbours; ``alive`` sees only another open's lock (the
  table's own never counts); a dropped lock is free again; an error that is not "taken"
  is raised, not read as "taken".
- ``_pack_runs``: overlapping and touching runs merge (a run inside another adds
  nothing); runs that do not fit a slot are merged by closing the smallest gap first, and
  ``MAX_RUNS`` runs fit as they are.
- the file: created at its full size with its header (a bigger file is not cut), opened
  again without ``create``; a header that differs in any field is EINVAL.
- slots: ``write`` / ``read`` round-trip pid, uid, name (cut to 64 bytes; a character cut
  in two reads as U+FFFD) and runs at slot ``i``'s place, gid stored too; a slot that is
  empty or cleared reads as None; one whose CRC does not match is read again (a read racing
  the slot's write), and one that stays so, or names more runs than fit, holds the whole
  pool; an older arbiter's slot (``DXSL``, no CRC) reads as it did (None past the file's
  end or with too many runs); ``used`` lists the slots that hold records;
  ``free_slot`` is the first slot neither taken nor alive, EUSERS when there is none.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Iterator

import pytest

from daxfs.volume import holders
from daxfs.errors import BusyError
from daxfs.volume.holders import (MAX_RUNS, SLOT_SIZE, SLOTS, WHOLE_POOL, HolderTable, _pack_runs, drop_slot_lock,
                                  holders_path, side_path, take_slot_lock)

FIRST = SLOT_SIZE                      # slot 0 starts after the header block
SLOT = struct.Struct("<4sIIII64s")     # the slot record, as the module docstring describes it


@pytest.fixture
def table(tmp_path: object) -> Iterator[HolderTable]:
    t = HolderTable(os.path.join(str(tmp_path), "pool.holders"), create=True)
    yield t
    t.close()


@pytest.fixture
def other(table: HolderTable) -> Iterator[int]:
    """A second open of the table's file: a client's own open file description."""
    fd = os.open(table.path, os.O_RDWR | os.O_CLOEXEC)
    yield fd
    os.close(fd)


# ---------------------------------------------------------------- where the file lies

def test_side_path_is_beside_a_pool_file_or_in_run_for_a_device(tmp_path: object, monkeypatch: object) -> None:
    pool = os.path.join(str(tmp_path), "p.pool")
    assert side_path(pool, ".x") == pool + ".x"                 # not there yet: still beside it
    open(pool, "wb").close()
    assert side_path(pool, ".sock") == pool + ".sock"
    assert holders_path(pool) == pool + ".holders"
    monkeypatch.chdir(str(tmp_path))                            # type: ignore[attr-defined]
    assert side_path("p.pool", ".holders") == pool + ".holders"   # absolute
    assert side_path("/dev/null", ".holders") == "/run/daxfs/null.holders"
    assert holders_path("/dev/zero") == "/run/daxfs/zero.holders"


# ---------------------------------------------------------------- liveness locks

def test_a_slot_lock_covers_its_own_byte_only(table: HolderTable, other: int) -> None:
    third = os.open(table.path, os.O_RDWR | os.O_CLOEXEC)
    try:
        assert take_slot_lock(other, 3) is True
        assert take_slot_lock(other, 3) is True                # the same open holds it already
        assert take_slot_lock(third, 3) is False               # another open cannot
        assert take_slot_lock(third, 2) is True and take_slot_lock(third, 4) is True
        assert [s for s in range(8) if table.alive(s)] == [2, 3, 4]
        drop_slot_lock(third, 2)
        assert [s for s in range(8) if table.alive(s)] == [3, 4]
        drop_slot_lock(other, 3)
        assert not table.alive(3)
        assert take_slot_lock(third, 3) is True
    finally:
        os.close(third)
    assert [s for s in range(8) if table.alive(s)] == []         # closing the open drops its locks


def test_the_tables_own_lock_never_reads_as_alive(table: HolderTable) -> None:
    assert take_slot_lock(table.fd, 5) is True
    assert not table.alive(5)


def test_a_lock_error_that_is_not_taken_is_raised(table: HolderTable) -> None:
    fd = os.open(table.path, os.O_RDONLY | os.O_CLOEXEC)        # a write lock needs a writable open
    try:
        with pytest.raises(OSError) as info:
            take_slot_lock(fd, 0)
        assert info.value.errno == errno.EBADF
    finally:
        os.close(fd)
    drop_slot_lock(fd, 0)                                         # a closed fd: nothing to drop, no error


# ---------------------------------------------------------------- runs

def test_touching_and_overlapping_runs_merge() -> None:
    assert _pack_runs([]) == []
    assert _pack_runs([(100, 10), (0, 10)]) == [(0, 10), (100, 10)]
    assert _pack_runs([(10, 5), (0, 10)]) == [(0, 15)]                      # touching
    assert _pack_runs([(0, 10), (5, 10)]) == [(0, 15)]                      # overlapping
    assert _pack_runs([(0, 100), (10, 5)]) == [(0, 100)]                    # inside
    assert _pack_runs([(105, 10), (100, 10)]) == [(100, 15)]                # away from 0
    assert _pack_runs([(100, 50), (110, 5)]) == [(100, 50)]
    assert _pack_runs([(0, 10), (11, 5)]) == [(0, 10), (11, 5)]             # one byte apart


def test_runs_that_do_not_fit_close_the_smallest_gap_first() -> None:
    # MAX_RUNS + 2 runs of lengths 1..13, gaps growing by one from 10, except a gap of 3
    # after run 7 and one of 2 before the last run: those two are closed, nothing else.
    lengths = [1 + i * 5 % 13 for i in range(MAX_RUNS + 2)]
    gaps = [10 + i for i in range(MAX_RUNS + 1)]
    gaps[7], gaps[-1] = 3, 2
    runs, pos = [], 0
    for n, g in zip(lengths, gaps + [0]):
        runs.append((pos, n))
        pos += n + g
    packed = _pack_runs(list(reversed(runs)))
    assert len(packed) == MAX_RUNS
    want = (runs[:7] + [(runs[7][0], runs[8][0] + runs[8][1] - runs[7][0])] + runs[9:-2]
            + [(runs[-2][0], runs[-1][0] + runs[-1][1] - runs[-2][0])])
    assert packed == want
    assert _pack_runs(runs[:MAX_RUNS]) == runs[:MAX_RUNS]                  # fits: unchanged


# ---------------------------------------------------------------- the file

def test_a_created_table_has_its_size_and_header_and_reopens(table: HolderTable) -> None:
    assert os.fstat(table.fd).st_size == FIRST + SLOTS * SLOT_SIZE
    assert os.stat(table.path).st_mode & 0o777 == 0o600
    with open(table.path, "rb") as f:
        assert struct.unpack("<4sIII", f.read(16)) == (b"DXHT", 1, SLOT_SIZE, SLOTS)
    again = HolderTable(table.path)
    assert again.read(0) is None and again.fd >= 0
    again.close()
    assert again.fd == -1
    again.close()                                                 # twice: nothing


def test_creating_over_a_bigger_file_keeps_its_size(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "big.holders")
    size = FIRST + SLOTS * SLOT_SIZE + 12345
    with open(path, "wb") as f:
        f.truncate(size)
    t = HolderTable(path, create=True)
    assert os.fstat(t.fd).st_size == size
    t.close()


@pytest.mark.parametrize("field", range(4))
def test_a_header_that_differs_in_any_field_is_einval(table: HolderTable, field: int) -> None:
    header = [b"DXHT", 1, SLOT_SIZE, SLOTS]
    header[field] = b"DXHX" if field == 0 else header[field] + 1   # type: ignore[operator]
    os.pwrite(table.fd, struct.pack("<4sIII", *header), 0)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError) as info:
        HolderTable(table.path)
    assert info.value.errno == errno.EINVAL and info.value.filename == table.path
    assert len(os.listdir("/proc/self/fd")) == before             # its fd was closed


def test_opening_a_missing_table_without_create_fails(tmp_path: object) -> None:
    with pytest.raises(FileNotFoundError):
        HolderTable(os.path.join(str(tmp_path), "none.holders"))


# ---------------------------------------------------------------- slots

def test_write_and_read_a_slot(table: HolderTable) -> None:
    runs = [(8192, 4096), (0, 4096), (4096, 100)]
    table.write(2, 4242, 1001, 77, "loader", runs)
    assert table.read(2) == (4242, 1001, "loader", [(0, 4196), (8192, 4096)])
    assert table.read(1) is None and table.read(3) is None
    raw = os.pread(table.fd, SLOT_SIZE, FIRST + 2 * SLOT_SIZE)
    assert SLOT.unpack_from(raw)[:5] == (b"DXS2", 4242, 1001, 77, 2)
    assert struct.unpack_from("<I", raw, SLOT_SIZE - 4)[0] == zlib.crc32(raw[:-4])   # the CRC ends it
    assert table.used() == [2]
    table.write(0, 1, 2, 3, "x" * 70, [])
    assert table.read(0) == (1, 2, "x" * 64, [])                 # the name cut to 64 bytes
    table.write(1, 1, 2, 3, "x" + "ä" * 40, [])
    assert table.read(1) == (1, 2, "x" + "ä" * 31 + "\ufffd", [])  # ... even inside a character
    table.write(1, 1, 2, 3, "BOX\udcff", [])                        # an undecodable name, from os.fsdecode
    assert table.read(1) == (1, 2, "BOX?", [])
    table.write(1, 1, 2, 3, "BOX", [])
    assert table.read(1) == (1, 2, "BOX", [])                     # only NULs are padding
    table.clear(1)
    table.write(SLOTS - 1, 9, 9, 9, "dä", [(5, 6)])
    assert table.read(SLOTS - 1) == (9, 9, "dä", [(5, 6)])
    assert table.used() == [0, 2, SLOTS - 1]
    table.clear(2)
    assert table.read(2) is None and table.used() == [0, SLOTS - 1]
    assert table.read(0) == (1, 2, "x" * 64, [])                 # its neighbours untouched


def _old_slot(pid: int, uid: int, name: bytes, runs: list[tuple[int, int]], count: int | None = None) -> bytes:
    """A slot as arbiters before the CRC wrote it (``DXSL``, no CRC)."""
    body = bytearray(SLOT_SIZE)
    SLOT.pack_into(body, 0, b"DXSL", pid, uid, 0, len(runs) if count is None else count, name)
    for i, run in enumerate(runs):
        struct.pack_into("<QQ", body, SLOT.size + 16 * i, *run)
    return bytes(body)


def test_a_slot_with_exactly_max_runs_is_read_and_one_more_holds_the_whole_pool(table: HolderTable) -> None:
    runs = [(i * 10, 5) for i in range(MAX_RUNS)]
    table.write(4, 1, 1, 1, "full", runs)
    assert table.read(4) == (1, 1, "full", runs)
    raw = bytearray(os.pread(table.fd, SLOT_SIZE, FIRST + 4 * SLOT_SIZE))
    struct.pack_into("<I", raw, 16, MAX_RUNS + 1)                  # the run count (the CRC made to match)
    struct.pack_into("<I", raw, SLOT_SIZE - 4, zlib.crc32(raw[:-4]))
    os.pwrite(table.fd, bytes(raw), FIRST + 4 * SLOT_SIZE)
    assert table.read(4) == (0, 0, "full (its slot could not be read)", WHOLE_POOL)
    # an older arbiter's slot (no CRC) is read as that arbiter read it, but never trusted to
    # list less than before (a read racing its rewrite could miss runs)
    os.pwrite(table.fd, _old_slot(5, 6, b"old", [(0, 8), (64, 8)]), FIRST + 4 * SLOT_SIZE)
    assert table.read(4) == (5, 6, "old", [(0, 8), (64, 8)])
    assert table.read_checked(4) == ((5, 6, "old", [(0, 8), (64, 8)]), False)
    assert table.read_checked(3) == (None, True) and table.read_checked(SLOTS - 2)[1]
    os.pwrite(table.fd, _old_slot(5, 6, b"old", [], count=251), FIRST + 4 * SLOT_SIZE)
    assert table.read(4) is None and table.used() == []


def test_a_slot_that_the_file_ends_in(table: HolderTable) -> None:
    os.pwrite(table.fd, _old_slot(7, 8, b"edge", []), FIRST)
    os.ftruncate(table.fd, FIRST + SLOT.size)                      # exactly an old record, no runs
    assert table.read(0) == (7, 8, "edge", [])
    os.ftruncate(table.fd, FIRST + SLOT.size - 1)
    assert table.read(0) is None
    assert table.read(SLOTS) is None                               # past the file
    table.write(1, 7, 8, 9, "cut", [(0, 1)])
    os.ftruncate(table.fd, FIRST + 2 * SLOT_SIZE - 1)              # a new slot without its CRC
    assert table.read(1) == (0, 0, "cut (its slot could not be read)", WHOLE_POOL)


def test_a_slot_read_while_it_is_being_written_is_read_again(table: HolderTable,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A client rewrites its own slot (its arbiter died) as a restarted arbiter reads the
    table: a read can see the new run count over the old runs.  Without the CRC that was
    taken for the record, and the runs the new one names were forgotten."""
    table.write(3, 40, 0, 0, "client", [(0, 4096)])
    before = os.pread(table.fd, SLOT_SIZE, FIRST + 3 * SLOT_SIZE)
    table.write(3, 40, 0, 0, "client", [(0, 4096), (1 << 20, 8192)])
    after = os.pread(table.fd, SLOT_SIZE, FIRST + 3 * SLOT_SIZE)
    torn = after[:SLOT.size] + before[SLOT.size:]                   # the header written, the runs not yet
    reads = []
    real_pread = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        reads.append(offset)
        return torn if len(reads) <= 2 else real_pread(fd, n, offset)

    monkeypatch.setattr(holders.os, "pread", pread)
    assert table.read(3) == (40, 0, "client", [(0, 4096), (1 << 20, 8192)])
    assert len(reads) == 3


def test_a_live_slot_that_stays_torn_holds_the_whole_pool(tmp_path: object) -> None:
    pool = os.path.join(str(tmp_path), "p.pool")
    open(pool, "wb").close()
    table = HolderTable(holders_path(pool), create=True)
    try:
        table.write(0, 0xFFFF_FFFF, 0, 0, "client", [(0, 4096)])  # (a pid no process has)
        os.pwrite(table.fd, b"\xff" * 16, FIRST + SLOT.size)        # the first run, garbled
        assert table.read(0) == (0, 0, "client (its slot could not be read)", WHOLE_POOL)
        assert table.read_checked(0)[1]                              # (it lists all: trusted)
        client = os.open(table.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            assert take_slot_lock(client, 0)
            assert table.live() == [(0, 0, "client (its slot could not be read)", WHOLE_POOL)]
            with pytest.raises(BusyError, match="its slot could not be read"):    # (not OverflowError)
                holders.refuse_live_holders(pool)
        finally:
            os.close(client)
    finally:
        table.close()


def test_a_slot_with_another_magic_is_empty(table: HolderTable) -> None:
    table.write(6, 1, 1, 1, "m", [(0, 1)])
    os.pwrite(table.fd, b"DXSM", FIRST + 6 * SLOT_SIZE)
    assert table.read(6) is None


def test_free_slot_is_the_first_neither_taken_nor_alive(table: HolderTable, other: int) -> None:
    assert table.free_slot(set()) == 0
    assert table.free_slot({0, 1}) == 2
    assert take_slot_lock(other, 0) and take_slot_lock(other, 2)
    table.write(3, 1, 1, 1, "dead", [(0, 4096)])                   # left by a dead process: reusable
    assert table.free_slot({1}) == 3
    with pytest.raises(OSError) as info:
        table.free_slot(set(range(SLOTS)))
    assert info.value.errno == errno.EUSERS and str(SLOTS) in str(info.value)


def test_free_slot_is_eusers_when_every_slot_is_alive(table: HolderTable, other: int) -> None:
    for slot in range(SLOTS):
        assert take_slot_lock(other, slot)
    with pytest.raises(OSError) as info:
        table.free_slot(set())
    assert info.value.errno == errno.EUSERS
    drop_slot_lock(other, SLOTS - 1)
    assert table.free_slot(set()) == SLOTS - 1


def test_the_lock_struct_is_the_kernels(table: HolderTable, other: int) -> None:
    # GETLK fills in the conflicting lock: its type, start and length are what the client took.
    assert take_slot_lock(other, 9)
    got = holders._lock(table.fd, holders._F_OFD_GETLK, holders.fcntl.F_WRLCK, 9)
    kind, whence, start, length, pid = holders._FLOCK.unpack(got)
    assert (kind, whence, start, length, pid) == (holders.fcntl.F_WRLCK, os.SEEK_SET, 9, 1, -1)


# ---------------------------------------------------------------- refusing an open while slots hold

def test_refusal_names_holders_and_says_when_the_process_exited_but_a_child_it_forked_holds_on(
        tmp_path: object) -> None:
    """The slot's lock belongs to an open file description, which a forked child shares: it
    outlives the process named in the slot.  The refusal still refuses (the child's copies
    of the views show the blocks) and says so instead of naming only a dead pid."""
    from daxfs.errors import BusyError
    pool = os.path.join(str(tmp_path), "p.pool")
    open(pool, "wb").close()
    holders.refuse_live_holders(pool)                            # no table: nothing to refuse
    table = HolderTable(holders_path(pool), create=True)
    holders.refuse_live_holders(pool)                            # a table, nobody in it
    fd = os.open(table.path, os.O_RDWR | os.O_CLOEXEC)
    assert take_slot_lock(fd, 3)
    table.write(3, os.getpid(), 0, 0, "me", [(1 << 20, 4096)])
    with pytest.raises(BusyError, match=r"process \d+ \('me'\)") as exc:
        holders.refuse_live_holders(pool)
    assert exc.value.holders == [os.getpid()]
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:                                              # exits; its child holds the lock
        if os.fork() == 0:
            os.close(write)
            os.read(read, 1)
            os._exit(0)
        os._exit(0)
    os.waitpid(middle, 0)
    table.write(3, middle, 0, 0, "gone", [(1 << 20, 4096)])
    os.close(fd)                                                 # only the grandchild holds it now
    try:
        with pytest.raises(BusyError, match=rf"process {middle} \('gone', exited; a child it forked holds its slot\)"):
            holders.refuse_live_holders(pool)
    finally:
        os.close(write)                                          # the grandchild ends
    os.close(read)
    table.close()


# ---------------------------------------------------------------- a table the arbiter may trust

def test_a_planted_symlink_or_second_name_at_the_tables_place_is_refused_and_left_alone(tmp_path: object) -> None:
    """The arbiter (often root) creates the table beside the pool, in a directory the pool's
    owner may write: a symlink or a hard link planted there must not get the target
    resized, overwritten or given away (it was, through O_CREAT without O_NOFOLLOW)."""
    pool = os.path.join(str(tmp_path), "p.pool")
    open(pool, "wb").close()
    target = os.path.join(str(tmp_path), "precious")
    with open(target, "wb") as f:
        f.write(b"keep me")
    os.chmod(target, 0o600)
    like = os.stat(pool)
    os.symlink(target, holders_path(pool))
    with pytest.raises(OSError) as exc:
        HolderTable(holders_path(pool), create=True, like=like)
    assert exc.value.errno == errno.ELOOP
    os.unlink(holders_path(pool))
    os.link(target, holders_path(pool))
    with pytest.raises(PermissionError):
        HolderTable(holders_path(pool), create=True, like=like)
    with open(target, "rb") as f:
        assert f.read() == b"keep me"
    assert os.stat(target).st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_new_table_takes_the_pools_owner_group_and_mode_and_a_strangers_file_is_refused(
        tmp_path: object) -> None:
    pool = os.path.join(str(tmp_path), "p.pool")
    open(pool, "wb").close()
    os.chown(pool, 1000, 4321)
    os.chmod(pool, 0o640)
    table = HolderTable(holders_path(pool), create=True, like=os.stat(pool))
    info = os.stat(table.path)
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (1000, 4321, 0o640)
    table.close()
    again = HolderTable(holders_path(pool), create=True, like=os.stat(pool))   # the pool owner's: kept
    again.close()
    os.chown(holders_path(pool), 1001, 1001)                                     # someone else's
    with pytest.raises(PermissionError):
        HolderTable(holders_path(pool), create=True, like=os.stat(pool))
