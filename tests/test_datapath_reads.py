"""The read side of the data path (``volume/datapath.py``: pread, stat, size, extents,
seek_data, references, flush, fsync, forget): edges the other tests leave open, found by a
mutation run of those functions.

What these tests prove:

- A read is served from one run only when that run holds its last byte: a read that ends
  one byte into the next, non-adjacent, run reads that run's bytes, not the bytes after the
  first run in the pool; a read clipped at EOF, at EOF or of nothing reads nothing, into a
  buffer too (and leaves the rest of the buffer alone).
- Holes and unwritten blocks read as zeros between written ones, at any offset in a block.
- A read is refused exactly when it touches a poisoned block, in one run or across a hole.
- ``extents`` splits a run where a part of it is shared (and where the number of owners
  changes), with the right file offsets, pool offsets and flags (``shared``, ``unwritten``).
- SEEK_DATA / SEEK_HOLE (an int position): unwritten blocks are holes; an offset inside a
  run answers itself; at or past EOF, and SEEK_DATA with no data after the offset, are
  ENXIO; SEEK_HOLE with none is EOF.
- A pin must lie inside the file (ending exactly at EOF is fine); a read mapping may not
  reach past EOF, a write mapping grows the file to cover it; a mapping needs a length at
  or past EOF and of more than 0 bytes, and may end at the largest file but not pass it
  (EINVAL naming the file).  A pin or a write mapping over a poisoned block is refused
  (saying which), one next to it is not; ``pins()`` names each reference's file and holder.
  A view that could not be laid out is released.
- A read-only mount catches up with the writer before each read call answers (pread,
  preadinto, stat, size, extents, seek_data, map, pin): it sees the writer's append, and a
  handle whose file the writer removed is ESTALE; beside a live writer it takes no mapping
  or pin (EBUSY naming the file).
- After the volume is closed (a read-only mount's too), every read call refuses.
- With lazy durability, fsync persists a file's pending bytes (and only that file's);
  nothing stays pending for a file removed and closed.
"""

from __future__ import annotations

import errno
import os

import pytest

from daxfs.media import MemoryPool
from daxfs.volume import Volume
from daxfs.volume.arguments import MAX_FILE_SIZE

from _small_volume import distinct, read_file, small_volume, write_file

BS = 4096


def _apart(vol: Volume) -> tuple[bytes, bytes]:
    """File ``f`` of 2 blocks whose two blocks are not adjacent in the pool (``g``'s block
    lies between them): returns f's bytes and g's."""
    a, b = distinct(1, BS), distinct(2, BS)
    write_file(vol, "f", a)
    write_file(vol, "g", b)
    with vol.open("f", "ab", buffering=0) as f:
        f.write(distinct(3, BS))
    with vol.open("f", "rb", buffering=0) as f:
        ext = f.extents()
        assert len(ext) == 2 and ext[1].pool_offset == ext[0].pool_offset + 2 * BS, ext
    return a + distinct(3, BS), b


@pytest.mark.parametrize("offset, n", [(BS - 10, 11), (BS - 1, 2), (100, BS), (0, 2 * BS), (BS - 10, 10),
                                       (BS, BS), (0, BS)])
def test_a_read_over_two_runs_reads_each_runs_bytes(offset: int, n: int) -> None:
    vol = small_volume()
    data, _g = _apart(vol)
    with vol.open("f", "rb", buffering=0) as f:
        assert f.pread(n, offset) == data[offset:offset + n]
        buf = bytearray(b"\xee" * (n + 5))
        assert f.preadinto(memoryview(buf)[:n], offset) == n
        assert bytes(buf) == data[offset:offset + n] + b"\xee" * 5
    vol.close()


def test_reads_are_clipped_at_eof_and_empty_at_or_past_it() -> None:
    vol = small_volume()
    data = distinct(4, BS + 100)
    write_file(vol, "f", data)
    with vol.open("f", "rb", buffering=0) as f:
        assert f.pread(50, BS + 80) == data[BS + 80:]
        assert f.pread(1 << 20, 0) == data
        for offset in (BS + 100, BS + 101, 1 << 30):
            assert f.pread(10, offset) == b""
            assert f.preadinto(bytearray(10), offset) == 0
        assert f.pread(0, 0) == b"" and f.pread(0, 10) == b""
        buf = bytearray(b"\xee" * 200)
        assert f.preadinto(buf, BS) == 100
        assert bytes(buf) == data[BS:] + b"\xee" * 100
        buf = bytearray(b"\xee" * 20)
        assert f.preadinto(memoryview(buf)[:0], 0) == 0 and buf == bytearray(b"\xee" * 20)
    vol.close()


def test_holes_and_unwritten_blocks_read_as_zeros_between_data() -> None:
    vol = small_volume()
    data = distinct(5, 6 * BS)
    write_file(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        f.punch_hole(BS, BS)                           # block 1: a hole
        f.zero_range(3 * BS, BS)                       # block 3: unwritten
        f.truncate(8 * BS)                             # blocks 6, 7: past the old EOF, holes
        f.fallocate(7 * BS, BS)                        # block 7: unwritten
        want = data[:BS] + bytes(BS) + data[2 * BS:3 * BS] + bytes(BS) + data[4 * BS:] + bytes(2 * BS)
        assert f.pread(8 * BS, 0) == want
        for offset, n in ((BS - 5, 10), (BS + 7, 100), (3 * BS - 3, BS + 6), (5 * BS + 1, 3 * BS),
                          (7 * BS + 9, 50), (3 * BS + 1, 10)):
            assert f.pread(n, offset) == want[offset:offset + n], (offset, n)
            buf = bytearray(b"\xee" * n)
            assert f.preadinto(buf, offset) == len(want[offset:offset + n])
            assert bytes(buf[:len(want[offset:offset + n])]) == want[offset:offset + n]
    vol.close()


def test_extents_split_runs_where_part_is_shared() -> None:
    vol = small_volume()
    write_file(vol, "f", distinct(6, 4 * BS))
    write_file(vol, "g", distinct(7, 4 * BS))
    with vol.open("f", "r+b", buffering=0) as f:
        base = f.extents()[0].pool_offset
        assert f.extents() == [(0, 4 * BS, base, frozenset())]
    vol.clone_range("f", BS, "g", 0, 2 * BS)           # f's blocks 1 and 2 now shared with g
    with vol.open("f", "r+b", buffering=0) as f:
        assert f.extents() == [(0, BS, base, frozenset()),
                               (BS, 2 * BS, base + BS, frozenset({"shared"})),
                               (3 * BS, BS, base + 3 * BS, frozenset())]
        f.truncate(6 * BS)
        f.fallocate(4 * BS, 2 * BS)
        ext = f.extents()
        assert ext[:3] == [(0, BS, base, frozenset()),
                           (BS, 2 * BS, base + BS, frozenset({"shared"})),
                           (3 * BS, BS, base + 3 * BS, frozenset())]
        assert [(e.file_offset, e.length, e.flags) for e in ext[3:]] == [(4 * BS, 2 * BS, frozenset({"unwritten"}))]
    with vol.open("g", "rb", buffering=0) as g:
        assert [(e.file_offset, e.length, e.pool_offset, e.flags) for e in g.extents()][:1] == \
            [(0, 2 * BS, base + BS, frozenset({"shared"}))]
    vol.clone_range("f", 2 * BS, "g", 3 * BS, BS)       # block 2: three owners, block 1 two
    with vol.open("f", "rb", buffering=0) as f:
        assert f.extents()[1:3] == [(BS, BS, base + BS, frozenset({"shared"})),
                                    (2 * BS, BS, base + 2 * BS, frozenset({"shared"}))]
    assert vol.fsck() == []
    vol.close()


def test_seek_data_and_hole() -> None:
    vol = small_volume()
    data = distinct(8, 5 * BS)
    write_file(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        f.punch_hole(BS, BS)                           # block 1: a hole
        f.zero_range(3 * BS, BS)                       # block 3: unwritten, a hole too
        f.truncate(5 * BS - 100)

        def seek(offset: int, whence: int) -> int:
            pos = f.seek(offset, whence)
            assert type(pos) is int and f.tell() == pos, pos     # a position, never a float
            return pos

        assert seek(0, os.SEEK_DATA) == 0 and seek(10, os.SEEK_DATA) == 10
        assert seek(0, os.SEEK_HOLE) == BS and seek(BS + 5, os.SEEK_HOLE) == BS + 5
        assert seek(5, os.SEEK_HOLE) == BS and seek(BS - 1, os.SEEK_HOLE) == BS
        assert seek(BS + 5, os.SEEK_DATA) == 2 * BS
        assert seek(2 * BS + 7, os.SEEK_DATA) == 2 * BS + 7
        assert seek(2 * BS + 7, os.SEEK_HOLE) == 3 * BS
        assert seek(3 * BS, os.SEEK_DATA) == 4 * BS
        assert seek(4 * BS, os.SEEK_HOLE) == 5 * BS - 100        # EOF: the implicit hole
        assert seek(5 * BS - 101, os.SEEK_DATA) == 5 * BS - 101
        for offset in (5 * BS - 100, 5 * BS, 1 << 40):
            for whence in (os.SEEK_DATA, os.SEEK_HOLE):
                with pytest.raises(OSError) as info:
                    seek(offset, whence)
                assert info.value.errno == errno.ENXIO
        f.punch_hole(4 * BS, BS)                       # no data after block 2
        with pytest.raises(OSError) as info:
            seek(3 * BS, os.SEEK_DATA)
        assert info.value.errno == errno.ENXIO
        assert seek(3 * BS, os.SEEK_HOLE) == 3 * BS
        assert seek(2 * BS + 1, os.SEEK_HOLE) == 3 * BS
        assert vol.data.seek_data(f.stat().st_ino, 3 * BS, True) == 3 * BS
        with pytest.raises(OSError) as info:
            vol.data.seek_data(f.stat().st_ino, -1, False)
        assert info.value.errno == errno.ENXIO
    with vol.open("e", "wb", buffering=0) as e:
        with pytest.raises(OSError) as info:
            e.seek(0, os.SEEK_HOLE)                    # an empty file: 0 is EOF
        assert info.value.errno == errno.ENXIO
    vol.close()


def test_pins_lie_inside_the_file_and_mappings_need_a_length_inside_it() -> None:
    vol = small_volume()
    write_file(vol, "f", distinct(9, 2 * BS + 100))
    write_file(vol, "empty", b"")
    size = 2 * BS + 100
    with vol.open("f", "r+b", buffering=0) as f:
        f.pin(BS, size - BS).release()                 # ends at EOF: fine
        with pytest.raises(ValueError, match="past the end"):
            f.pin(BS, size - BS + 1)
        m = f.map(BS)                                  # no length: to EOF
        assert len(m.buffer) >= size - BS
        m.close()
        m = f.map(0, size)
        m.close()
        with pytest.raises(ValueError, match="greater than file size"):
            f.map(0, size + 1)
        for offset in (size, size + 1):
            with pytest.raises(ValueError, match="at or past the end"):
                f.map(offset)
        with pytest.raises(ValueError, match="empty range"):
            f.map(0, 0)
        with pytest.raises(OSError) as info:
            f.map(MAX_FILE_SIZE - BS, BS + 1, write=True)
        assert info.value.errno == errno.EINVAL and info.value.filename == "f"
        m = f.map(3 * BS, BS, write=True)              # a write mapping grows the file over it
        assert f.stat().st_size == 4 * BS
        m.close()
    with vol.open("empty", "r+b", buffering=0) as e:
        with pytest.raises(ValueError, match="empty file"):
            e.map()
        m = e.map(MAX_FILE_SIZE - BS, BS, write=True)  # ends exactly at the largest file: fine
        m.buffer[:3] = b"end"
        m.close()
        assert e.stat().st_size == MAX_FILE_SIZE and e.pread(10, MAX_FILE_SIZE - BS) == b"end" + bytes(7)
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("follower", [False, True])
def test_a_closed_volume_answers_no_reads(tmp_path, follower: bool) -> None:  # type: ignore[no-untyped-def]
    """After close, the data path refuses every read call, a read-only mount's too."""
    import daxfs
    path = str(tmp_path / "pool")
    vol = daxfs.mkfs(path, 8 << 20)
    write_file(vol, "f", b"x" * 100)
    if follower:
        vol.close()
        vol = daxfs.open_volume(path, readonly=True)
    ino = vol.stat("f").st_ino
    data = vol.data
    assert data.pread(ino, None, 10, 0) == b"x" * 10
    buf = bytearray(20)
    assert data.pread(ino, memoryview(buf), 10, 5) == 10 and buf == b"x" * 10 + bytes(10)
    vol.close()
    for call in (lambda: data.stat(ino), lambda: data.size(ino), lambda: data.extents(ino),
                 lambda: data.seek_data(ino, 0, False), lambda: data.fsync(ino),
                 lambda: data.pread(ino, None, 10, 0), lambda: data.pread(ino, memoryview(bytearray(10)), 10, 0),
                 lambda: data.reference(ino, "f", 0, 10, kind="pin", write=False)):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_lazy_fsync_persists_that_files_pending_bytes_and_a_removed_file_forgets_them() -> None:
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool, durability="lazy")
    write_file(vol, "f", distinct(10, 2 * BS))
    write_file(vol, "g", distinct(11, 2 * BS))
    fino, gino = vol.stat("f").st_ino, vol.stat("g").st_ino
    data = vol.data
    with vol.open("f", "r+b", buffering=0) as f, vol.open("g", "r+b", buffering=0) as g:
        f.pwrite(b"F" * 10, 5)                          # in place: pending (lazy)
        g.pwrite(b"G" * 10, 5)
        assert fino in data.dirty and gino in data.dirty
        f.fsync()
        assert fino not in data.dirty and gino in data.dirty
        assert gino in vol._journal.deferred, "fsync of f logged g's deferred mtime"
        vol.unlink("g")
    assert gino not in data.dirty
    assert read_file(vol, "f")[:20] == distinct(10, 2 * BS)[:5] + b"F" * 10 + distinct(10, 2 * BS)[15:20]
    vol.close()


# ---------------------------------------------------------------- a read-only mount beside a writer


def _mapped(f: object) -> bytes:
    m = f.map(0, 2 * BS)  # type: ignore[attr-defined]
    try:
        return bytes(m.buffer[:2 * BS])
    finally:
        m.close()


_FOLLOWER_CALLS = {
    "map": _mapped,
    "pin": lambda f: f.pin(BS, BS).release(),
    "seek_data": lambda f: f.seek(BS, os.SEEK_DATA),
    "extents": lambda f: sum(e.length for e in f.extents()),
    "stat": lambda f: f.stat().st_size,
    "size": lambda f: f.seek(0, os.SEEK_END),
    "pread": lambda f: f.pread(2 * BS, 0),
    "preadinto": lambda f: (lambda buf: (f.preadinto(buf, 0), bytes(buf)))(bytearray(2 * BS)),
}
_FOLLOWER_SEES = {"map": distinct(20, BS) + distinct(21, BS), "pin": None, "seek_data": BS, "extents": 2 * BS,
                  "stat": 2 * BS, "size": 2 * BS, "pread": distinct(20, BS) + distinct(21, BS),
                  "preadinto": (2 * BS, distinct(20, BS) + distinct(21, BS))}


@pytest.mark.parametrize("call", list(_FOLLOWER_CALLS))
def test_a_follower_catches_up_before_it_answers(tmp_path, call: str) -> None:  # type: ignore[no-untyped-def]
    """A read-only mount catches up with the writer's log before each call answers (the
    first call after the writer's changes): it sees the writer's append, and a handle
    whose file the writer removed is ESTALE (never the removed file's stale blocks)."""
    import daxfs
    path = str(tmp_path / "pool")
    vol = daxfs.mkfs(path, 8 << 20)
    write_file(vol, "a", distinct(20, BS))
    write_file(vol, "b", b"B" * 300)
    with daxfs.open_volume(path, readonly=True) as ro:
        f = ro.open("a", "rb", buffering=0)
        g = ro.open("b", "rb", buffering=0)
        with vol.open("a", "ab", buffering=0) as w:
            w.write(distinct(21, BS))
        vol.unlink("b")
        write_file(vol, "c", b"C" * 300)
        vol.close()                                    # (a follower maps or pins with no writer)
        assert _FOLLOWER_CALLS[call](f) == _FOLLOWER_SEES[call]
        with pytest.raises(OSError) as info:
            _FOLLOWER_CALLS[call](g)
        assert info.value.errno == errno.ESTALE
        g.close()
        f.close()


def test_a_follower_beside_a_writer_takes_no_reference_and_the_error_names_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import daxfs
    path = str(tmp_path / "pool")
    with daxfs.mkfs(path, 8 << 20) as vol:
        write_file(vol, "a", distinct(22, BS))
        with daxfs.open_volume(path, readonly=True) as ro:
            with ro.open("a", "rb", buffering=0) as f:
                for call in (lambda: f.map(0, BS), lambda: f.pin(0, BS)):
                    with pytest.raises(OSError) as info:
                        call()
                    assert info.value.errno == errno.EBUSY and info.value.filename == "a"
            assert ro.pins() == []


def test_references_list_their_holder_and_path_and_poison_refuses_only_its_own_blocks() -> None:
    """A pin or a write mapping over a poisoned block is refused (PoisonError naming the file),
    one on the blocks around it is not; a read mapping over it is fenced. ``pins()`` names
    each reference's file and holder."""
    from daxfs import PoisonError
    vol = small_volume()
    data = distinct(23, 4 * BS)
    write_file(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        base = f.extents()[0].pool_offset
        vol.memory_failure(base + 3 * BS, BS)           # block 3
        pin = f.pin(BS, 2 * BS)                         # blocks 1, 2: next to it
        infos = vol.pins()
        assert [(i.path, i.offset, i.length, i.kind) for i in infos] == [("/f", BS, 2 * BS, "pin")], infos
        assert infos[0].holder and infos[0].pid == os.getpid()
        pin.release()
        m = f.map(0, 3 * BS, write=True)                # blocks 0-2: fine
        m.close()
        for call, what in ((lambda: f.pin(3 * BS, BS), "a pin"), (lambda: f.pin(2 * BS, 2 * BS), "a pin"),
                           (lambda: f.map(3 * BS, BS, write=True), "a write mapping")):
            with pytest.raises(PoisonError) as info:
                call()
            assert what in str(info.value) and info.value.filename in ("f", "/f"), info.value
        m = f.map(0, 4 * BS)                            # a read mapping: fenced, not refused
        assert bytes(m.buffer[:3 * BS]) == data[:3 * BS]
        m.close()
        assert vol.pins() == []
    vol.close()


@pytest.mark.parametrize("hole", [False, True])
def test_a_read_is_refused_exactly_when_it_touches_a_poisoned_block(hole: bool) -> None:
    """In one written run (the fast path) and across a hole (the general one): a read of
    bytes next to a poisoned block reads them; one that touches it by a byte is refused."""
    from daxfs import PoisonError
    vol = small_volume()
    data = distinct(24, 6 * BS)
    write_file(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        base = f.extents()[0].pool_offset
        vol.memory_failure(base + 3 * BS, BS)           # block 3
        want = bytearray(data)
        if hole:
            f.punch_hole(BS, BS)                        # block 1: a hole
            want[BS:2 * BS] = bytes(BS)
        for offset, n in ((0, 3 * BS), (2 * BS, BS), (3 * BS - 1, 1), (4 * BS, 2 * BS), (4 * BS, 100)):
            assert f.pread(n, offset) == bytes(want[offset:offset + n]), (offset, n)
            buf = bytearray(n)
            assert f.preadinto(buf, offset) == n and buf == want[offset:offset + n]
        for offset, n in ((3 * BS - 1, 2), (3 * BS + BS - 1, 1), (2 * BS, 2 * BS + 1), (0, 6 * BS), (3 * BS, 10)):
            with pytest.raises(PoisonError):
                f.pread(n, offset)
            with pytest.raises(PoisonError):
                f.preadinto(bytearray(n), offset)
    vol.close()


def test_a_mapping_that_fails_to_lay_out_releases_its_view(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """If laying a mapping's blocks into its view fails, the view is released and the error
    is the caller's; nothing is left registered."""
    vol = small_volume()
    write_file(vol, "f", distinct(25, 2 * BS))
    ino = vol.stat("f").st_ino
    released: list[int] = []

    class View:
        def __init__(self, n: int) -> None:
            self.n = n

        def release(self) -> None:
            released.append(self.n)

    def fail(ref: object, pieces: object) -> None:
        raise OSError(errno.ENOMEM, "cannot map")

    monkeypatch.setattr(vol.data.references, "lay_out", fail)
    with pytest.raises(OSError) as info:
        vol.data.reference(ino, "f", 0, 2 * BS, kind="mapping", write=False, make_view=View)
    assert info.value.errno == errno.ENOMEM and released == [2 * BS]
    monkeypatch.undo()
    assert vol.pins() == []
    vol.close()


def test_closing_a_lazy_volume_with_files_open_persists_and_logs_what_is_pending() -> None:
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool, durability="lazy")
    write_file(vol, "f", distinct(26, 2 * BS))
    write_file(vol, "g", distinct(27, 2 * BS))
    data = vol.data
    f = vol.open("f", "r+b", buffering=0)
    g = vol.open("g", "r+b", buffering=0)
    f.pwrite(b"F" * 10, 5)                              # in place: pending (lazy), mtime deferred
    g.pwrite(b"G" * 10, BS + 5)
    mtimes = f.stat().st_mtime_ns, g.stat().st_mtime_ns
    assert data.dirty and vol._journal.deferred
    vol.close()                                         # with both still open
    assert data.dirty == {} and vol._journal.deferred == {}
    vol = Volume.mount(pool)
    assert (vol.stat("f").st_mtime_ns, vol.stat("g").st_mtime_ns) == mtimes
    assert read_file(vol, "f")[:20] == distinct(26, 2 * BS)[:5] + b"F" * 10 + distinct(26, 2 * BS)[15:20]
    vol.close()


def test_a_followers_read_that_a_writer_raced_is_read_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A follower copies a file's bytes while the writer frees its blocks and gives them to
    another file (between the follower's catch-up and its copy): the record that landed
    during the copy sends it to read again, and it never returns the other file's bytes."""
    import daxfs
    path = str(tmp_path / "pool")
    vol = daxfs.mkfs(path, 8 << 20)
    a_data = distinct(30, 2 * BS)
    write_file(vol, "a", a_data)
    with vol.open("a", "rb", buffering=0) as a:
        a_at = a.extents()[0].pool_offset
    with daxfs.open_volume(path, readonly=True) as ro:
        f = ro.open("a", "rb", buffering=0)
        real = ro.data.read_locked
        calls: list[int] = []

        def racing(ino: int, dest: object, n: int, offset: int) -> object:
            calls.append(len(calls))
            if len(calls) == 1:                 # the writer changes something: no quick answer
                write_file(vol, "other", b"o")
            elif len(calls) == 2:               # a's blocks freed and given to b, mid-read
                with vol.open("a", "r+b", buffering=0) as w:
                    w.truncate(0)
                write_file(vol, "b", b"B" * 2 * BS)
                with vol.open("b", "rb", buffering=0) as b:
                    assert b.extents()[0].pool_offset == a_at     # (the race this is about)
            return real(ino, dest, n, offset)  # type: ignore[arg-type]

        ro.data.read_locked = racing  # type: ignore[method-assign]
        got = f.pread(2 * BS, 0)
        assert len(calls) == 3 and got == b""   # read again, after the truncate
        f.close()
    vol.close()
