"""The journal's commit path (``Journal.commit`` and ``_finish``): its thresholds to the byte.

A change is logged with no checkpoint as long as the log since the last complete
one, the change counted twice (its worst lap skip), stays within half the ring:
exactly half is taken, 8 bytes more (records are 8-byte aligned) checkpoint
first, once.  A record of exactly a quarter of the ring is the largest taken.  A
checkpoint being written when such a change comes is finished first, and another
is written only if the log since the first would still pass half the ring.  A
checkpoint starts once the log passes three eighths of the ring, not at it, and
its slices are paced by the room left to half the ring: with records of 48 bytes
to 4 KiB and no least slice, no more than a sliver of one is left to finish at
once at the half mark, and none is written in its first slice.

A change that may grow the checkpoint by ``BULK_GROW`` or more is applied with
the collector paused, one less is not.  A record the core refuses after it is
durable leaves the volume read-only with the state before it, and the error
names the record by its sequence number and type.  A clean-close claim found at
a commit is taken back in both superblocks before the record is written; a
checkpoint's superblocks drop the claim and keep flag bits this version does not
know.  Records of exact lengths are built from batches of two SetAttr shapes.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from daxfs.core import Core
from daxfs.core.records import Batch, Record, SetAttr
from daxfs.errors import CorruptVolumeError
from daxfs.format.layout import SUPERBLOCK_OFFSETS
from daxfs.format.superblock import CLEAN, SUPERBLOCK_BYTES, decode_superblock
from daxfs.media import MemoryPool
from daxfs.volume import Volume, journal as journal_module
from daxfs.volume.checkpointer import CheckpointWriter
from daxfs.volume.log import LogRing

#: two batch items of different encoded sizes: any 8-byte multiple from 48 bytes is a mix of them
_MODE = SetAttr(1, 0o600, None, None, None, None, None)
_NONE = SetAttr(1, None, None, None, None, None, None)


def _record_of(ring: LogRing, length: int) -> Record:
    """A record (a batch that sets / to mode 0600) whose encoding is exactly ``length`` bytes."""
    per_item = (len(ring.encode(Batch.of(*[_MODE] * 101))) - len(ring.encode(Batch.of(*[_MODE] * 1)))) / 100
    guess = max(1, int(length / per_item))
    for modes in range(guess, max(0, guess - 12), -1):
        for nones in range(0, 24):
            if modes + nones == 0:
                continue
            record = Batch.of(*([_MODE] * modes + [_NONE] * nones))
            got = len(ring.encode(record))
            if got == length:
                return record
            if got > length:
                break
    raise AssertionError(f"no batch encodes to {length} bytes")


def _fresh() -> Volume:
    """A volume on a 4 MiB memory pool (a 256 KiB log ring), just checkpointed: the log since
    the last checkpoint is empty."""
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    vol.mkdir("/d")
    vol.checkpoint()
    j = vol._journal
    assert j.ring.head == j.checkpoint_pos and j.writer is None
    return vol


def _remounted_mode(vol: Volume) -> int:
    """The mode bits of / on a copy of ``vol``'s pool mounted again (its log replayed), which
    holds the same names."""
    again = Volume.mount(MemoryPool(vol._journal.pool.image()))  # type: ignore[attr-defined]
    try:
        assert again.fsck() == [] and sorted(again.listdir("/")) == sorted(vol.listdir("/"))
        return again.stat("/").st_mode & 0o7777
    finally:
        again.close()


def test_the_helper_builds_records_of_every_length_the_tests_use() -> None:
    vol = _fresh()
    ring = vol._journal.ring
    for length in (48, 56, 64, 1024, ring.size // 8, ring.size // 8 + 8, ring.size // 4):
        assert len(ring.encode(_record_of(ring, length))) == length
    vol.close()


def test_a_quarter_of_the_ring_at_an_empty_log_is_taken_with_no_checkpoint_and_8_bytes_more_checkpoints_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after a checkpoint, a record of exactly a quarter of the ring: the log with it
    counted twice is exactly half the ring, so it is logged as it is (no ENOSPC, no
    checkpoint).  Then a record of an eighth of the ring and 8 bytes: a quarter logged plus
    twice that is 16 bytes past half, so one checkpoint is written first (not two), and the
    record is logged after it."""
    monkeypatch.setattr(journal_module, "START_AT", 1.0)     # (no checkpoint starts on its own)
    vol = _fresh()
    j = vol._journal
    ring = j.ring
    generation, pos = j.generation, j.checkpoint_pos
    quarter = _record_of(ring, ring.size // 4)
    with j.lock:
        j.commit(quarter)
        assert (j.generation, j.checkpoint_pos) == (generation, pos), "no checkpoint for exactly half"
        assert ring.head - pos == ring.size // 4
        before = ring.head
        j.commit(_record_of(ring, ring.size // 8 + 8))
        assert j.generation == generation + 1, "one checkpoint, written before the record"
        assert j.checkpoint_pos == before and ring.head - before == ring.size // 8 + 8
        assert ring.tail == pos
    assert vol.fsck() == []
    assert _remounted_mode(vol) == 0o600
    vol.close()


@pytest.mark.parametrize("logged_since_start", [0, 1])
def test_a_large_change_finishes_the_checkpoint_being_written_and_another_only_past_half(
        logged_since_start: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint is started (its snapshot at the head), ``logged_since_start`` small records
    go in while it is written, then a record of a quarter of the ring, which with the log
    before the start passes half the ring: the commit finishes the checkpoint at once.  With
    nothing logged since its start the record counted twice is exactly half the ring from it:
    logged with no further checkpoint.  With a record logged since, it would pass half: a
    second checkpoint, of the state then, is written before it."""
    monkeypatch.setattr(journal_module, "START_AT", 1.0)
    monkeypatch.setattr(journal_module, "MIN_UNITS", 1)     # (a slice is too small to finish it)
    vol = _fresh()
    j = vol._journal
    ring = j.ring
    generation = j.generation
    small = _record_of(ring, 48)
    quarter = _record_of(ring, ring.size // 4)
    with j.lock:
        j.commit(small)
        j._start()
        writer = j.writer
        assert writer is not None and writer.log_pos == ring.head
        for _ in range(logged_since_start):
            j.commit(small)
            assert j.writer is writer, "one slice does not finish it"
        before = ring.head
        assert ring.head - j.checkpoint_pos + 2 * ring.size // 4 > ring.size // 2
        j.commit(quarter)
        assert j.writer is None
        if logged_since_start:
            assert j.generation == writer.generation + 1 == generation + 2
            assert j.checkpoint_pos == before
        else:
            assert j.generation == writer.generation == generation + 1, "only the one being written"
            assert j.checkpoint_pos == writer.log_pos
        assert ring.head - j.checkpoint_pos <= ring.size // 2
    assert vol.fsck() == []
    assert _remounted_mode(vol) == 0o600
    vol.close()


def test_a_checkpoint_starts_once_the_log_passes_three_eighths_of_the_ring_and_not_at_it() -> None:
    """With the shipped pacing: a quarter of the ring and then an eighth logged since the last
    checkpoint is exactly three eighths: no checkpoint is started; the next record passes it
    and one starts, its snapshot at the head after that record."""
    assert journal_module.START_AT == 0.375
    vol = _fresh()
    j = vol._journal
    ring = j.ring
    pos = j.checkpoint_pos
    with j.lock:
        j.commit(_record_of(ring, ring.size // 4))
        assert j.writer is None
        j.commit(_record_of(ring, ring.size // 8))
        assert ring.head - pos == ring.size * 3 // 8 and j.checkpoint_pos == pos
        assert j.writer is None, "none started at exactly three eighths"
        j.commit(_record_of(ring, 48))
        assert j.writer is not None, "one started past three eighths"
        assert j.writer.log_pos == ring.head and j.checkpoint_pos == pos
    assert vol.fsck() == []
    assert _remounted_mode(vol) == 0o600
    vol.close()


def test_a_change_that_takes_the_log_to_exactly_half_leaves_the_checkpoint_being_written_to_its_slices(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint started right after the last one, then a record of a quarter of the ring:
    counted twice it takes the log to exactly half, so the commit advances the checkpoint by
    a slice (about half its work: the record takes half the room left), not to its end."""
    monkeypatch.setattr(journal_module, "START_AT", 1.0)
    monkeypatch.setattr(journal_module, "MIN_UNITS", 1)
    vol = _fresh()
    j = vol._journal
    ring = j.ring
    generation, pos = j.generation, j.checkpoint_pos
    with j.lock:
        j._start()
        writer = j.writer
        assert writer is not None
        work = writer.remaining()
        j.commit(_record_of(ring, ring.size // 4))
        assert j.writer is writer, "still being written a slice per commit"
        assert (j.generation, j.checkpoint_pos) == (generation, pos)
        assert 0 < writer.remaining() < work
        for _ in range(10_000):
            if j.writer is None:
                break
            j.commit(_record_of(ring, 48))
        assert j.writer is None and j.generation == writer.generation
        assert ring.head - j.checkpoint_pos <= ring.size // 2
    assert vol.fsck() == []
    assert _remounted_mode(vol) == 0o600
    vol.close()


@pytest.mark.parametrize("length", [48, 1024, 4096])
def test_slices_are_paced_to_finish_each_checkpoint_before_half_the_ring_and_not_at_its_start(
        length: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,500 directories (rows enough that a checkpoint is many slices of work), then records
    of about ``length`` bytes for three laps of the ring, each changing the next directory
    (so that rows are packed again, not copied from the checkpoint before), with no least slice (``MIN_UNITS`` 1: the
    pacing alone must do it).  Each checkpoint starts at three eighths of the ring; each slice
    is the share of the work left that the record takes of the room left to half the ring
    (its slack counted), so at most a sliver of one is left to be finished at once when a
    commit would pass half, and the first slice of each is a small part of it, not all."""
    monkeypatch.setattr(journal_module, "MIN_UNITS", 1)
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    for i in range(1500):
        vol.mkdir(f"/d{i}")
    vol.checkpoint()
    j = vol._journal
    ring = j.ring
    forced: dict[int, int] = {}             # generation -> work left when finished at once
    firsts: dict[int, tuple[int, int]] = {}     # generation -> (units, work) of its first slice
    finish, step = j._finish, CheckpointWriter.step
    seen: list[CheckpointWriter] = []      # (kept alive: no id is reused)

    def counting_finish(writer: CheckpointWriter, n: int | None) -> None:
        if n is None:
            forced[writer.generation] = writer.remaining()
        finish(writer, n)

    def counting_step(self: CheckpointWriter, units: int) -> bool:
        if not any(w is self for w in seen):
            seen.append(self)
            firsts[self.generation] = (units, self.remaining())
        return step(self, units)

    j._finish = counting_finish                                 # type: ignore[method-assign]
    monkeypatch.setattr(CheckpointWriter, "step", counting_step)
    generation, start = j.generation, ring.head
    dirs = [vol.stat(f"/d{i}").st_ino for i in range(1500)]
    fill = _record_of(ring, length).records()[1:] or [_MODE]
    with j.lock:
        for k in range(3 * ring.size // length):
            j.commit(Batch.of(SetAttr(dirs[k % 1500], 0o700, None, None, None, None, None), *fill))
            assert ring.head - j.checkpoint_pos <= ring.size // 2
    assert ring.head - start >= 3 * ring.size and j.generation - generation >= 5
    assert len(firsts) >= 5 and all(units < work // 2 for units, work in firsts.values()), firsts
    # (the pacing aims at the room to half the ring; a commit that would pass half finishes
    # what is left, which is a sliver: the rounding of the last slices)
    assert all(left <= firsts[g][1] // 16 for g, left in forced.items()), (forced, firsts)
    del j._finish
    assert vol.fsck() == []
    assert _remounted_mode(vol) == 0o600
    vol.close()


def test_a_change_that_may_grow_the_checkpoint_by_bulk_grow_is_applied_in_bulk_and_one_less_is_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``grow`` (what a change may add to a checkpoint) from ``BULK_GROW`` on: the change is
    applied inside ``HeapKeeper.bulk`` (the collector waits); one less: as any other."""
    vol = _fresh()
    j = vol._journal
    applied: list[int] = []         # the mode / has while each bulk change is applied
    bulk = j.heap.bulk

    @contextmanager
    def recording() -> Iterator[None]:
        with bulk():
            yield
        applied.append(j.core.inodes[1].mode & 0o7777)

    monkeypatch.setattr(j.heap, "bulk", recording)
    with j.lock:
        j.commit(SetAttr(1, 0o700, None, None, None, None, None), grow=journal_module.BULK_GROW - 1)
        assert applied == [] and j.core.inodes[1].mode & 0o7777 == 0o700
        j.commit(SetAttr(1, 0o600, None, None, None, None, None), grow=journal_module.BULK_GROW)
        assert applied == [0o600]
    assert _remounted_mode(vol) == 0o600
    vol.close()


def test_a_record_the_core_refuses_after_it_is_durable_names_it_and_leaves_the_state_before_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``apply`` raising after the record was persisted (a validation bug, simulated): the
    commit raises CorruptVolumeError naming the record (its sequence number, its type and
    what the core said), the volume is read-only with the state before that record (reloaded
    from the pool), and every later change is refused with EROFS saying why."""
    vol = _fresh()
    j = vol._journal
    apply = Core.apply

    def refusing(core: Core, record: Record) -> None:
        if isinstance(record, SetAttr) and record.mode == 0o711:
            raise ValueError("refused (simulated)")
        apply(core, record)

    monkeypatch.setattr(Core, "apply", refusing)
    vol.chmod("/d", 0o700)
    seq = j.ring.next_seq
    with pytest.raises(CorruptVolumeError) as info:
        vol.chmod("/d", 0o711)
    assert j.ring.next_seq == seq, "reloaded up to the record before it"
    want = f"log record {seq} (SetAttr) does not apply to the state before it (ValueError('refused (simulated)'))"
    assert want in str(info.value) and vol.damaged is not None and want in vol.damaged
    assert vol.readonly and vol.stat("/d").st_mode & 0o7777 == 0o700
    assert vol._journal.core is not None and vol.listdir("/") == ["d"]
    with pytest.raises(OSError) as refused:
        vol.mkdir("/e")
    assert refused.value.errno == errno.EROFS and want in str(refused.value)
    vol.close()


def test_a_clean_claim_found_at_a_commit_is_taken_back_before_the_record_is_written(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean close claimed in the superblocks (a close that failed after claiming it): the
    next commit clears the claim in both copies on the pool before its record is appended,
    so a crash from then on is never mounted as a clean close (whose log is not searched)."""
    vol = _fresh()
    j = vol._journal
    pool = j.pool

    def flags_on_pool() -> list[int]:
        return [decode_superblock(pool.read(off, SUPERBLOCK_BYTES), off).flags for off in SUPERBLOCK_OFFSETS]

    j.mark_clean(True)
    assert all(f & CLEAN for f in flags_on_pool())
    at_append: list[list[int]] = []
    append = j.ring.append

    def watched(record: Record, data: bytes) -> None:
        at_append.append(flags_on_pool())
        append(record, data)

    monkeypatch.setattr(j.ring, "append", watched)
    vol.chmod("/d", 0o700)
    assert len(at_append) == 1 and not any(f & CLEAN for f in at_append[0]), at_append
    assert not j.superblock.flags & CLEAN
    vol.close()


def test_a_checkpoint_drops_the_clean_claim_and_keeps_flag_bits_it_does_not_know() -> None:
    """Superblocks carrying the clean claim and a bit no flag of this version names (a later
    version's, say): the checkpoint's superblocks, on the pool too, keep that bit and drop
    only the claim."""
    vol = _fresh()
    j = vol._journal
    pool = j.pool
    unknown = 1 << 5
    assert not unknown & CLEAN
    sb = j.superblock.with_flags(j.superblock.flags | unknown | CLEAN)
    j.write_superblocks(sb)
    j.superblock = sb
    generation = j.generation
    vol.checkpoint()
    assert j.generation == generation + 1 and j.superblock.flags == unknown
    on_pool = [decode_superblock(pool.read(off, SUPERBLOCK_BYTES), off) for off in SUPERBLOCK_OFFSETS]
    assert [(s.generation, s.flags) for s in on_pool] == [(generation + 1, unknown)] * len(on_pool)
    vol.close()
