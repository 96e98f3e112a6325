"""The checkpoint writer at its edges (found by a mutation run over ``volume/checkpointer.py``):
each test pins down one thing a slip there would get wrong while every other test still passed.

- ``index_of``: what a complete checkpoint says of its rows (which inode each is, how long,
  where it starts in the body) is exactly where the body holds them, whatever the slices'
  sizes, whether rows were packed or copied from the checkpoint before, and with a bad-memory
  field after the rows (which outlives a checkpoint and a mount): the next checkpoint
  copies rows by it, and counts as copied exactly the rows of inodes unchanged since.
- rows are copied from the checkpoint before only by the set of inodes changed since its
  snapshot: given its index without that set, every row is packed.
- a slice stays a slice: ``step(units)`` packs at most ``units`` rows (a stretch of changed
  rows or inodes made since the previous snapshot included), copies at most ``units`` runs,
  and a large directory goes a slice of names at a time.
- ``touch``: a row is kept as it was at the snapshot before a change reaches it when it
  will be packed from memory: always on the first checkpoint after mount (no checkpoint
  before it to copy from), and while the previous checkpoint's crc is still being checked
  (a mismatch there packs every row from memory).
- the previous checkpoint is copied from only while its header still says what was
  written: its magic, its generation, a body length that fits the slot (exactly fitting
  is fine).
- ``_flush``: a body that exactly fills the slot is written; a byte more is ENOSPC before
  anything is written past the slot, and the error says the checkpoint area is full.
- the header goes last: until ``step`` returns True the slot's header is the older
  checkpoint's it held (a crash mounts the checkpoint before), and every body byte is
  written and persisted before the header is.
"""

from __future__ import annotations

import errno

import msgpack
import pytest

from daxfs.core import chunked
from daxfs.core.records import Quarantine
from daxfs.core.rows import state_rows
from daxfs.format.checkpoint import HEADER, body_prefix, decode_checkpoint
from daxfs.media import MemoryPool
from daxfs.volume import Volume, checkpointer
from daxfs.volume.checkpointer import CheckpointWriter, RowIndex
from daxfs.volume.journal import Journal

STEPS = 100_000         # more steps than any checkpoint here takes


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Directories sliced by 3 names, unchanged rows copied 3 at a time, tiny flushes, and
    the inode table and changed set in chunks of four (rows cross chunk boundaries)."""
    monkeypatch.setattr(checkpointer, "SLICE_ENTRIES", 3)
    monkeypatch.setattr(checkpointer, "COPY_CHUNK", 3)
    monkeypatch.setattr(checkpointer, "FLUSH_BYTES", 96)
    monkeypatch.setattr(chunked, "CHUNK_BITS", 2)
    monkeypatch.setattr(chunked, "CHUNKED_FROM", 8)
    monkeypatch.setattr(chunked, "LIST_CHUNK", 2)


def _volume(files: int = 52, big: int = 10) -> tuple[MemoryPool, Volume]:
    """A volume with ``files`` files (some written, one linked twice), a symlink and a
    directory ``/big`` of ``big`` names: rows of every shape, 65 of them by default (one
    past a multiple of ``OFFSETS_PER_UNIT``: the last row's end is an offset of its own)."""
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    vol.mkdir("/big")
    for i in range(big):
        vol.open(f"/big/n{i}", "wb").close()
    for i in range(files):
        with vol.open(f"/f{i}", "wb") as f:
            f.write(bytes([i % 256]) * (i % 12 * 300))
    vol.link("/f3", "/big/link")
    vol.symlink("/f1", "/s")
    return pool, vol


def _remount(pool: MemoryPool) -> tuple[MemoryPool, Volume]:
    """The volume on a copy of ``pool``'s bytes, mounted afresh (no checkpoint written yet)."""
    copy = MemoryPool(pool.image())
    return copy, Volume.mount(copy)


def _checkpointed(copy: bool) -> tuple[MemoryPool, Volume, Journal]:
    """``_volume()`` after a checkpoint: its next checkpoint copies unchanged rows from that
    one (``copy``), or, remounted afresh, has none to copy from and packs every row."""
    pool, vol = _volume()
    vol.checkpoint()
    if not copy:
        pool, vol = _remount(pool)
    return pool, vol, vol._journal


def _writer(j: Journal, *, previous: RowIndex | None = None, copy: bool = False,
            slot_size: int | None = None) -> CheckpointWriter:
    """A writer of the state now into the slot the journal writes next (no superblock names
    it); ``copy``: with the journal's last row index to copy from and its changed set."""
    generation = j.generation + 1
    slot = j.layout.checkpoint_offsets[generation % 2]
    changed = None
    if copy:
        previous = j.row_index
        assert previous is not None
        changed, j.changed = j.changed, chunked.ChunkedSet()
    return CheckpointWriter(j.core, j.pool, slot, slot_size or j.layout.checkpoint_size, generation,
                            j.ring.next_seq - 1, j.ring.head, previous, changed)


def _run(writer: CheckpointWriter, units: int) -> int:
    """Step ``writer`` by ``units`` until it is complete; the number of steps."""
    for steps in range(1, STEPS):
        if writer.step(units):
            return steps
    raise AssertionError("the writer never completed")


def _check(j: Journal, writer: CheckpointWriter, expected: list[object]) -> None:
    """The slot holds ``expected`` with the writer's header, and ``index_of`` says where each
    of its rows is: every row, decoded alone from where the index says, is that row."""
    with j.pool.view(writer.slot, j.layout.checkpoint_size) as view:
        got = decode_checkpoint(bytes(view), writer.slot)
    assert got.state == expected
    assert (got.generation, got.last_seq, got.log_pos) == (writer.generation, writer.last_seq, writer.log_pos)
    rows = expected[1]
    index = writer.index_of()
    assert (index.generation, index.body, index.end) == (writer.generation, writer.slot + HEADER.size,
                                                        expected[0])
    assert list(index.keys) == [row[0] for row in rows]         # type: ignore[index]
    assert len(index.lengths) == len(rows) and len(index.offsets) == len(rows) + 1
    body = j.pool.read(index.body, writer.written)
    assert index.offsets[0] == len(body_prefix(expected[0], len(rows), len(expected) == 3))  # type: ignore[arg-type]
    for i, row in enumerate(rows):                               # type: ignore[arg-type]
        start, length = index.offsets[i], index.lengths[i]
        assert index.offsets[i + 1] == start + length, i
        assert msgpack.unpackb(body[start:start + length], raw=False, strict_map_key=False) == row, i
    if writer.copy_from is None:
        assert writer.copied == 0
    else:       # every row of an inode unchanged since the previous snapshot, and only those
        assert writer.copied == sum(ino not in writer.changed for ino in index.keys)
    tail = msgpack.packb(expected[2]) if len(expected) == 3 else b""
    assert index.offsets[-1] + len(tail) == writer.written == len(body)
    j._finish(writer, None)     # the journal flips to it (as after its last slice) and goes on
    assert j.generation == writer.generation and j.row_index is not None
    assert list(j.row_index.offsets) == list(index.offsets)


@pytest.mark.parametrize("units", [1, 2, 7, 40, 1 << 62])
@pytest.mark.parametrize("bad", [False, True], ids=["", "bad-memory"])
def test_the_row_index_says_where_each_row_lies_packed_or_copied(units: int, bad: bool, small_slices: None) -> None:
    pool, vol = _volume()
    j = vol._journal
    if bad:     # a quarantined block: the body gets its third field, after the rows
        with j.lock:
            j.commit(Quarantine(j.layout.data_blocks - 1, 1))
        assert j.core.bad
    vol.checkpoint()
    pool, vol = _remount(pool)          # no index to copy from: every row packed
    j = vol._journal
    with j.lock:
        expected = state_rows(j.core)
        assert (len(expected) == 3) == bad, "the bad memory outlives a checkpoint and a mount"
        assert len(expected[1]) % checkpointer.OFFSETS_PER_UNIT == 1         # type: ignore[arg-type]
        writer = _writer(j)
        assert writer.copy_from is None
        _run(writer, units)
        _check(j, writer, expected)
    # the next one copies every unchanged row (runs of them) by that index, packs the rest
    vol.chmod("/f5", 0o600)
    vol.chmod("/f6", 0o640)
    vol.unlink("/f20")
    vol.open("/new", "wb").close()
    with j.lock:
        expected = state_rows(j.core)
        writer = _writer(j, copy=True)
        assert writer.copy_from is not None
        _run(writer, units)
        assert writer.copied > len(expected[1]) - 6        # type: ignore[arg-type]
        _check(j, writer, expected)
    vol.close()


def test_a_previous_index_without_the_inodes_changed_since_is_not_copied_from() -> None:
    """Rows are copied from the checkpoint before only by the set of inodes changed since
    its snapshot: given its index but no such set, every row is packed from memory."""
    pool, vol = _volume()
    j = vol._journal
    vol.checkpoint()
    vol.chmod("/f5", 0o600)
    vol.unlink("/f6")
    with j.lock:
        expected = state_rows(j.core)
        assert j.row_index is not None
        writer = _writer(j, previous=j.row_index)
        assert writer.copy_from is None and writer.verify is None
        _run(writer, 3)
        assert writer.copied == 0
        _check(j, writer, expected)
    vol.close()


@pytest.mark.parametrize("units", [1, 2])
@pytest.mark.parametrize("copy", [False, True], ids=["packed", "copied"])
def test_a_slice_packs_no_more_rows_than_its_units(units: int, copy: bool, small_slices: None) -> None:
    """``step(units)`` packs at most ``units`` rows, or copies at most ``units`` runs of
    ``COPY_CHUNK`` unchanged rows, and a directory of more than ``SLICE_ENTRIES`` names is
    packed a slice of names at a time: a commit's slice stays a slice however much is left."""
    pool, vol, j = _checkpointed(copy)
    for i in range(10, 30):             # a long stretch of changed rows, packed one by one
        vol.chmod(f"/f{i}", 0o600)
    for i in range(10):                 # inodes made since the previous snapshot
        vol.open(f"/new{i}", "wb").close()
    with j.lock:
        expected = state_rows(j.core)
        writer = _writer(j, copy=copy)
        most = units * (checkpointer.COPY_CHUNK if copy else 1)
        sliced = 0
        for steps in range(STEPS):
            at = writer.index + writer.tail
            complete = writer.step(units)
            assert writer.index + writer.tail - at <= most, (steps, at)
            if complete:
                break
            sliced += writer.entries is not None
        assert sliced >= (0 if copy else 2), "/big (10 names, unchanged) packed 3 names a step"
        assert steps >= len(expected[1]) // most          # type: ignore[arg-type]
        _check(j, writer, expected)
    vol.close()


def _held(j: Journal, writer: CheckpointWriter) -> None:
    """``writer`` is the journal's: each commit calls its ``touch``, and does no slice of it
    (until ``_released``)."""
    j.writer = writer
    j._finish = lambda writer, n: None          # type: ignore[method-assign]


def _released(j: Journal) -> None:
    del j._finish


def test_the_first_checkpoint_after_mount_keeps_each_row_as_it_was_at_its_start(
        small_slices: None) -> None:
    """No checkpoint before it to copy from: a change to an inode not yet packed, whether or
    not it changed since mount, must not reach the checkpoint."""
    pool, vol = _volume()
    vol.checkpoint()
    pool, vol = _remount(pool)
    j = vol._journal
    vol.chmod("/f28", 0o604)            # changed since mount
    with j.lock:
        expected = state_rows(j.core)
        writer = _writer(j)
        _held(j, writer)
    assert writer.copy_from is None
    writer.step(3)                      # some rows packed, not the last files'
    assert 0 < writer.index < len(writer.keys) - 8
    vol.chmod("/f27", 0o600)            # unchanged since mount
    vol.chmod("/f28", 0o600)
    vol.truncate("/f29", 5)
    vol.unlink("/big/n9")
    vol.rename("/f26", "/big/moved")
    vol.open("/after", "wb").close()    # made after the snapshot: not in this checkpoint
    with j.lock:
        _run(writer, 2)
        _released(j)
        _check(j, writer, expected)
    assert not writer.before
    vol.close()


def test_rows_changed_while_the_previous_crc_is_checked_are_kept_for_a_mismatch(
        small_slices: None) -> None:
    """While the previous checkpoint's crc is being checked, whether its rows will be copied
    is not known yet: a row changed meanwhile is kept, and a mismatch (a byte of the previous
    body changed) packs it as it was."""
    pool, vol = _volume(files=200)
    j = vol._journal
    vol.checkpoint()
    previous = j.row_index
    assert previous is not None
    at = previous.body + previous.offsets[3] + 1
    j.pool.write(at, bytes([j.pool.read(at, 1)[0] ^ 0x01]))
    vol.chmod("/f0", 0o600)
    with j.lock:
        expected = state_rows(j.core)
        writer = _writer(j, copy=True)
        _held(j, writer)
    assert writer.verify is not None and writer.verify[1] > 2 * checkpointer.CRC_BYTES_PER_UNIT
    writer.step(1)                      # a slice of the crc: not all of it
    assert writer.verify is not None and writer.verify[0] > 0 and writer.index == 0
    vol.chmod("/f150", 0o600)           # unchanged since the previous checkpoint
    vol.truncate("/f199", 1)
    with j.lock:
        _run(writer, 1)
        assert writer.copy_from is None and writer.copied == 0
        _released(j)
        _check(j, writer, expected)
    vol.close()


def test_rows_kept_while_the_previous_crc_is_checked_are_copied_once_it_matches(
        small_slices: None) -> None:
    """The crc matches after all: rows kept meanwhile of inodes unchanged since the previous
    checkpoint are let go (copied from it instead); those that did change are packed."""
    pool, vol = _volume(files=200)
    j = vol._journal
    vol.checkpoint()
    vol.chmod("/f0", 0o600)
    with j.lock:
        expected = state_rows(j.core)
        writer = _writer(j, copy=True)
        _held(j, writer)
    writer.step(1)
    assert writer.verify is not None
    vol.chmod("/f150", 0o600)
    vol.chmod("/f0", 0o644)
    assert len(writer.before) == 2
    with j.lock:
        _run(writer, 1)
        assert writer.copy_from is not None and writer.copied >= len(expected[1]) - 1  # type: ignore[arg-type]
        _released(j)
        _check(j, writer, expected)
    assert not writer.before
    vol.close()


def _previous_with(j: Journal, **fields: int) -> RowIndex:
    """The journal's row index, its slot's header rewritten with ``fields`` changed (the crc
    still covering them, so only the check of that field can tell)."""
    import zlib

    from daxfs.format.checkpoint import encode_header, header_fields

    previous = j.row_index
    assert previous is not None
    at = previous.body - HEADER.size
    magic, _crc, gen, last_seq, log_pos, body_len = HEADER.unpack_from(j.pool.read(at, HEADER.size), 0)
    values = {"magic": magic, "generation": gen, "body_len": body_len, **fields}
    gen, body_len = values["generation"], values["body_len"]
    crc = zlib.crc32(j.pool.read(previous.body, body_len), zlib.crc32(header_fields(gen, last_seq, log_pos,
                                                                                   body_len)))
    header = bytearray(encode_header(crc, gen, last_seq, log_pos, body_len))
    if values["magic"] != magic:
        header[:8] = b"NOTACKPT"
    j.pool.write(at, bytes(header))
    return previous


@pytest.mark.parametrize("change", ["magic", "generation", "too-long"])
def test_the_previous_checkpoint_is_not_copied_from_when_its_header_is_not_what_it_wrote(change: str) -> None:
    pool, vol = _volume()
    j = vol._journal
    vol.checkpoint()
    vol.chmod("/f0", 0o600)
    previous = j.row_index
    assert previous is not None
    body_len = HEADER.unpack_from(j.pool.read(previous.body - HEADER.size, HEADER.size), 0)[5]
    slot_size = j.layout.checkpoint_size
    with j.lock:
        expected = state_rows(j.core)
        if change == "magic":
            _previous_with(j, magic=0)
        elif change == "generation":
            _previous_with(j, generation=previous.generation + 2)
        else:       # a body that claims exactly the room its slot has is taken; a byte more is not
            slot_size = HEADER.size + body_len
            writer = _writer(j, copy=True, slot_size=slot_size)
            assert writer.copy_from is previous and writer.verify is not None
            j.changed = writer.changed
            slot_size -= 1
        writer = _writer(j, copy=True, slot_size=slot_size)
        assert writer.copy_from is None and writer.verify is None
        writer.slot_size = j.layout.checkpoint_size
        _run(writer, 5)
        assert writer.copied == 0
        _check(j, writer, expected)
    vol.close()


def test_a_body_that_exactly_fills_the_slot_is_written_and_a_byte_more_is_enospc() -> None:
    pool, vol = _volume()
    j = vol._journal
    with j.lock:
        expected = state_rows(j.core)
        writer = _writer(j)
        _run(writer, 1 << 62)
        size = HEADER.size + writer.written
        slot = writer.slot
        j.pool.write(slot, bytes(j.layout.checkpoint_size))
        writer = _writer(j, slot_size=size)
        _run(writer, 1 << 62)
        _check(j, writer, expected)
        j.pool.write(slot, bytes(size))
        writer = _writer(j, slot_size=size - 1)
        with pytest.raises(OSError) as info:
            _run(writer, 1 << 62)
        assert info.value.errno == errno.ENOSPC and "checkpoint area" in str(info.value)
        assert writer.written == 0 and j.pool.read(slot, size) == bytes(size), "nothing written"
    vol.close()


class _Recorder:
    """A pool that notes each write and persist of ``[lo, hi)``, in order."""

    def __init__(self, pool: MemoryPool, lo: int, hi: int) -> None:
        self.pool, self.lo, self.hi = pool, lo, hi
        self.events: list[tuple[str, int, int]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.pool, name)

    def write(self, offset: int, data: bytes) -> None:
        if self.lo <= offset < self.hi:
            self.events.append(("write", offset, len(data)))
        self.pool.write(offset, data)

    def persist(self, offset: int, length: int) -> None:
        if self.lo <= offset < self.hi:
            self.events.append(("persist", offset, length))
        self.pool.persist(offset, length)


@pytest.mark.parametrize("copy", [False, True], ids=["packed", "copied"])
def test_every_body_byte_is_persisted_before_the_header_which_comes_last(copy: bool, small_slices: None) -> None:
    pool, vol, j = _checkpointed(copy)
    vol.chmod("/f4", 0o600)
    with j.lock:
        expected = state_rows(j.core)
        writer = _writer(j, copy=copy)
        recorder = _Recorder(j.pool, writer.slot, writer.slot + j.layout.checkpoint_size)
        writer.pool = recorder          # type: ignore[assignment]
        old = j.pool.read(writer.slot, HEADER.size)        # an older checkpoint's, no superblock's
        for _ in range(STEPS):
            if writer.step(2):
                break
            assert j.pool.read(writer.slot, HEADER.size) == old, "a header before the body is complete"
        events = list(recorder.events)
        _check(j, writer, expected)
    assert events[-2:] == [("write", writer.slot, HEADER.size), ("persist", writer.slot, HEADER.size)]
    persisted = bytearray(writer.written)
    written = bytearray(writer.written)
    for kind, offset, length in events[:-2]:
        at = offset - writer.slot - HEADER.size
        assert at >= 0 and at + length <= writer.written, (kind, offset, length)
        target = written if kind == "write" else persisted
        target[at:at + length] = b"\x01" * length
        if kind == "persist":
            assert written[at:at + length] == b"\x01" * length, "persisted before written"
    assert persisted == b"\x01" * writer.written, "a body byte not persisted before the header"
    vol.close()
