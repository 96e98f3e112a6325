"""Checkpoints written a slice per commit (volume/checkpointer.py).

A checkpoint started at some point must hold exactly the state of that point,
whatever the operations interleaved with its slices change (files written,
truncated, unlinked, renamed, directories grown and emptied); the bytes must
decode as the one-shot encoder's do; a crash at any persist point while one is
being written must mount as the oracle says; and a volume with many files
never writes its whole state within one operation.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import random
import warnings
import weakref

import pytest

import daxfs
from daxfs.core import chunked
from daxfs.core.records import Batch, SetAttr
from daxfs.core.rows import state_rows
from daxfs.format.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint
from daxfs.media import MemoryPool
from daxfs.testing.crash import CrashRecorder
from daxfs.volume import Volume, checkpointer, heap, journal as journal_module
from daxfs.volume.checkpointer import CheckpointWriter
from test_crash import _churn


@pytest.fixture(autouse=True, params=[chunked.CHUNK_BITS, 2], ids=["chunks-64Ki", "chunks-4"])
def chunk_bits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs twice: as shipped, and with the inode table chunked from 8 inodes on
    and it and the changed set in chunks of four numbers (test_chunked), so rows cross
    chunk boundaries everywhere (and the reverse map's starts in chunks of two to four)."""
    monkeypatch.setattr(chunked, "CHUNK_BITS", request.param)
    if request.param == 2:
        monkeypatch.setattr(chunked, "CHUNKED_FROM", 8)
        monkeypatch.setattr(chunked, "LIST_CHUNK", 2)


@pytest.fixture
def slow_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices as small as they go: a row per commit, tiny flushes, directories sliced by 3
    names, unchanged rows copied 3 at a time; checkpoints start only when a test starts one."""
    monkeypatch.setattr(checkpointer, "SLICE_ENTRIES", 3)
    monkeypatch.setattr(checkpointer, "COPY_CHUNK", 3)
    monkeypatch.setattr(checkpointer, "FLUSH_BYTES", 96)
    monkeypatch.setattr(journal_module, "MIN_UNITS", 1)
    monkeypatch.setattr(journal_module, "START_AT", 1.0)


def _written(journal: journal_module.Journal, writer: CheckpointWriter) -> Checkpoint:
    """The checkpoint ``writer`` wrote, decoded from its slot."""
    with journal.pool.view(writer.slot, journal.layout.checkpoint_size) as view:
        return decode_checkpoint(bytes(view), writer.slot)


def _random_op(vol: daxfs.Volume, rng: random.Random, names: list[str]) -> None:
    """One random namespace or data change over a small tree (some directories large)."""
    kind = rng.randrange(14)
    name = rng.choice(names)
    try:
        if kind <= 2:
            with vol.open(name, "r+b" if vol.exists(name) else "wb") as f:
                f.seek(rng.randrange(0, 20000))
                f.write(bytes([rng.randrange(256)]) * rng.randrange(1, 9000))
        elif kind == 3:
            vol.unlink(name)
        elif kind == 4:
            vol.rename(name, rng.choice(names))
        elif kind == 5:
            vol.truncate(name, rng.randrange(0, 12000))
        elif kind == 6:
            vol.chmod(name, rng.randrange(0o1000))
        elif kind == 7:
            vol.link(name, rng.choice(names))
        elif kind == 8:
            vol.utime(name, ns=(rng.randrange(1 << 40), rng.randrange(1 << 40)))
        elif kind == 9:
            vol.clone_file(name, rng.choice(names))         # shared blocks; COW on later writes
        elif kind == 10:
            vol.symlink(rng.choice(names), name)
        elif kind == 11:
            vol.mkdir(name)
        elif kind == 12:
            vol.rmdir(name)
        else:
            with vol.open(name, "r+b") as f:
                f.punch_hole(rng.randrange(0, 8192), rng.randrange(1, 8192))
    except OSError:
        pass        # (a missing name, an existing one: the state is unchanged, which is fine)


@pytest.mark.parametrize("seed", range(10))
def test_a_checkpoint_written_in_slices_holds_the_state_it_started_from(
        seed: int, slow_writer: None, shm_pool: str) -> None:
    rng = random.Random(seed)
    vol = daxfs.mkfs(shm_pool, size=16 << 20, force=True)
    try:
        for d in ("/a", "/b", "/a/c"):
            vol.mkdir(d)
        names = [f"{d}/f{i}" for d in ("/a", "/b", "/a/c", "") for i in range(12)]
        for _ in range(rng.randrange(20, 80)):
            _random_op(vol, rng, names)
        journal = vol._journal
        if seed % 2:        # a checkpoint to copy unchanged rows from, then more changes
            vol.checkpoint()
            for _ in range(rng.randrange(5, 30)):
                _random_op(vol, rng, names)
        journal._start()
        writer = journal.writer
        assert writer is not None and (writer.copy_from is not None) == bool(seed % 2)
        expected = state_rows(journal.core)
        for _ in range(400):
            _random_op(vol, rng, names)
            if journal.writer is None:
                break
        assert journal.writer is None, "the writer should finish within 400 commits"
        assert journal.generation == writer.generation
        got = _written(journal, writer)
        assert got.state == expected
        assert (got.last_seq, got.log_pos) == (writer.last_seq, writer.log_pos)
        assert not writer.before, "every kept row was packed"
        assert (writer.copied > 0) == bool(seed % 2), "rows unchanged since the checkpoint before are copied"
        # what the one-shot encoder of the same state gives decodes the same
        raw = encode_checkpoint(expected, writer.generation, writer.last_seq, writer.log_pos)
        assert decode_checkpoint(raw, 0) == got
        assert vol.fsck() == []
    finally:
        vol.close()
    # and what was logged since it mounts on top of it
    again = daxfs.open_volume(shm_pool)
    assert again.fsck() == []
    again.close()


def test_a_large_directory_is_packed_a_slice_at_a_time_from_a_copy(slow_writer: None, shm_pool: str) -> None:
    vol = daxfs.mkfs(shm_pool, size=16 << 20, force=True)
    try:
        vol.mkdir("/big")
        for i in range(40):
            vol.open(f"/big/n{i}", "wb").close()
        journal = vol._journal
        journal._start()
        writer = journal.writer
        expected = state_rows(journal.core)
        # the directory is reached, its copy started: names change under it meanwhile
        for i in range(200):
            if journal.writer is None or writer.entries is not None:
                break
            vol.open(f"/big/x{i}", "wb").close()
        assert writer.entries is not None
        for i in range(10):
            vol.unlink(f"/big/n{i}")
        for _ in range(400):
            if journal.writer is None:
                break
            vol.chmod("/big", 0o700)
        assert journal.writer is None
        got = _written(journal, writer)
        assert got.state == expected
    finally:
        vol.close()


def test_a_checkpoint_starts_on_its_own_and_no_commit_writes_it_whole(shm_pool: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With the shipped pacing: checkpoints start as the log fills and each commit does a
    slice of one (far fewer rows than the volume holds), until it is done."""
    slices: list[int] = []
    step = CheckpointWriter.step

    def counting(self: CheckpointWriter, units: int) -> bool:
        slices.append(units)
        return step(self, units)

    monkeypatch.setattr(CheckpointWriter, "step", counting)
    vol = daxfs.mkfs(shm_pool, size=64 << 20, force=True)
    try:
        start = vol._journal.generation
        for i in range(6000):
            vol.open(f"/f{i}", "wb").close()
        assert vol._journal.generation >= start + 2, "checkpoints were written"
        assert slices and max(slices) < 1000, max(slices)
        assert vol.fsck() == []
    finally:
        vol.close()
    again = daxfs.open_volume(shm_pool)
    assert len(again.listdir("/")) == 6000
    again.close()


@pytest.mark.parametrize("seed", [7, 8])
def test_crash_while_a_checkpoint_is_written_in_slices(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint starts every few records and is written a row per commit, so most persist
    points fall inside one; every crash image there mounts to what the oracle allows."""
    monkeypatch.setattr(checkpointer, "FLUSH_BYTES", 64)
    monkeypatch.setattr(journal_module, "MIN_UNITS", 1)
    monkeypatch.setattr(journal_module, "START_AT", 1 / 512)
    rec = CrashRecorder(4 << 20)
    first = rec.vol._journal.generation
    during = 0
    for op in _churn(240, seed):
        rec.run_op(op)
        during += rec.vol._journal.writer is not None
    assert rec.vol._journal.generation >= first + 2, "checkpoints were completed during the workload"
    assert during > 80, "much of the workload ran while a checkpoint was being written"
    seen = rec.check()
    assert seen["between"] > 0 and seen["before"] + seen["after"] > 0, seen
    rec.vol.close()


def test_a_large_volume_keeps_its_metadata_out_of_the_collector_until_it_closes(
        shm_pool: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "FREEZE_FROM", 200)
    monkeypatch.setattr(heap, "FREEZE_STEP", 100)
    gc.unfreeze()
    vol = daxfs.mkfs(shm_pool, size=16 << 20, force=True)
    core = weakref.ref(vol._journal.core)
    for i in range(150):
        vol.open(f"/f{i}", "wb").close()
    assert gc.get_freeze_count() == 0, "a small volume leaves the collector alone"
    for i in range(150, 260):
        vol.open(f"/f{i}", "wb").close()
    frozen = gc.get_freeze_count()
    assert frozen > 0 and vol._journal.heap.next_at == 300
    vol.open("/f260", "wb").close()
    assert gc.get_freeze_count() == frozen, "frozen again only after FREEZE_STEP more inodes"
    vol.close()
    assert gc.get_freeze_count() == 0
    del vol
    gc.collect()
    assert core() is None, "a closed volume's metadata is freed"
    # mounting a volume that large freezes at once; the environment can say no
    again = daxfs.open_volume(shm_pool)
    assert gc.get_freeze_count() > 0
    again.close()
    monkeypatch.setenv("DAXFS_GC_FREEZE", "0")
    again = daxfs.open_volume(shm_pool)
    assert gc.get_freeze_count() == 0
    again.close()


def test_a_checkpoint_that_lists_every_inode_freezes_the_list_out_of_the_collector(
        shm_pool: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first checkpoint after mount has no previous one to copy from: it lists every
    inode number, and that young list must not be walked by the next collection."""
    monkeypatch.setattr(heap, "FREEZE_FROM", 200)
    vol = daxfs.mkfs(shm_pool, size=16 << 20, force=True)
    try:
        for i in range(250):
            vol.open(f"/f{i}", "wb").close()
        gc.unfreeze()
        vol.checkpoint()            # no previous checkpoint's row index: every key listed
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        vol.checkpoint()            # copies from the one before: no list, no freeze
        assert gc.get_freeze_count() == 0
    finally:
        vol.close()


def test_a_deferred_mtime_reaches_a_checkpoint_that_copies_unchanged_rows(shm_pool: str) -> None:
    """An in-place write logs no record (its mtime waits, as with lazytime); the checkpoint that
    takes the waiting mtime must pack that row again, not copy the one from before."""
    vol = daxfs.mkfs(shm_pool, size=16 << 20, force=True)
    with vol.open("/f", "wb") as f:
        f.write(b"a" * 8192)
    vol.utime("/f", ns=(10**18, 10**18))
    vol.checkpoint()                              # the rows a later checkpoint copies from
    with vol.open("/f", "r+b") as f:
        f.pwrite(b"b" * 100, 0)                   # in place: mtime deferred, nothing logged
        mtime = vol.stat("/f").st_mtime_ns
        assert mtime != 10**18
        vol.checkpoint()                          # takes the deferred mtime into its rows
    vol.close()
    again = daxfs.open_volume(shm_pool)
    try:
        assert again.stat("/f").st_mtime_ns == mtime
    finally:
        again.close()


def test_rows_are_not_copied_from_a_previous_checkpoint_whose_bytes_changed(shm_pool: str) -> None:
    """The slot a checkpoint copies unchanged rows from is checked first: a byte changed there
    since it was written (a bad byte the medium did not report) sends every row through
    packing from memory, so nothing wrong is carried on."""
    vol = daxfs.mkfs(shm_pool, size=16 << 20, force=True)
    for i in range(50):
        vol.open(f"/f{i}", "wb").close()
    vol.checkpoint()
    journal = vol._journal
    previous = journal.row_index
    assert previous is not None
    at = previous.body + previous.offsets[10] + 1            # inside a row nobody changes again
    byte = journal.pool.read(at, 1)
    journal.pool.write(at, bytes([byte[0] ^ 0x01]))
    vol.chmod("/f0", 0o600)
    journal._start()
    writer = journal.writer
    assert writer.copy_from is not None and writer.verify is not None
    for _ in range(1000):
        if journal.writer is None:
            break
        journal._finish(writer, 100)
    assert journal.writer is None and writer.copy_from is None and writer.copied == 0
    got = _written(journal, writer)
    assert got.state == state_rows(journal.core)
    vol.close()


def _setattr_batch(ino: int, items: int) -> Batch:
    """One record of ``items`` SetAttr: its encoding grows about 9 bytes an item."""
    return Batch.of(*[SetAttr(ino, 0o600, None, None, None, None, None)] * items)


def test_a_change_that_would_overfill_the_checkpoint_area_is_enospc_and_changes_nothing() -> None:
    """``grow`` (what a change may add to a checkpoint) is held against the area less its 64
    bytes of slack: up to it is taken, a byte more is ENOSPC with nothing logged or applied;
    a change that adds nothing (grow 0: a chmod, an unlink) goes through however full it is."""
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    j = vol._journal
    layout = j.layout
    try:
        with j.lock:
            bound = j.core.checkpoint_bound
            j.layout = dataclasses.replace(layout, checkpoint_size=bound + 100 + 64)    # 100 bytes left
            seq = j.ring.next_seq
            with pytest.raises(OSError) as info:
                j.commit(SetAttr(1, 0o700, None, None, None, None, None), grow=101)
            assert info.value.errno == errno.ENOSPC and "metadata" in str(info.value)
            assert j.ring.next_seq == seq and j.core.inodes[1].mode & 0o7777 != 0o700
            j.commit(SetAttr(1, 0o700, None, None, None, None, None), grow=100)
            assert j.core.inodes[1].mode & 0o7777 == 0o700
            j.layout = dataclasses.replace(layout, checkpoint_size=j.core.checkpoint_bound)    # over full
            j.commit(SetAttr(1, 0o755, None, None, None, None, None))
            assert j.core.inodes[1].mode & 0o7777 == 0o755
    finally:
        j.layout = layout
    assert vol.fsck() == []
    vol.close()


def test_a_change_too_large_for_the_log_is_enospc_and_a_quarter_of_it_is_not() -> None:
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    j = vol._journal
    ring = j.ring
    per_item = (len(ring.encode(_setattr_batch(1, 2000))) - len(ring.encode(_setattr_batch(1, 1000)))) / 1000
    items = int(ring.size // 4 / per_item)
    while len(ring.encode(_setattr_batch(1, items))) > ring.size // 4:
        items -= 1
    fits = _setattr_batch(1, items)
    assert len(ring.encode(fits)) > ring.size // 5
    with j.lock:
        seq = j.ring.next_seq
        with pytest.raises(OSError) as info:
            j.commit(_setattr_batch(1, items + 20))
        assert info.value.errno == errno.ENOSPC and "too large" in str(info.value)
        assert j.ring.next_seq == seq and j.core.inodes[1].mode & 0o7777 != 0o600
        j.commit(fits)                              # the largest change the log takes
        assert j.core.inodes[1].mode & 0o7777 == 0o600
    assert vol.fsck() == []
    vol.close()
    again = Volume.mount(MemoryPool(pool.image()))
    assert again.stat("/").st_mode & 0o7777 == 0o600
    again.close()


def test_the_log_since_the_last_checkpoint_stays_under_half_the_ring() -> None:
    """With changes of every size (small ones, a quarter of the ring at most): after each
    commit the log since the last complete checkpoint is at most half the ring, which with
    the records before it keeps an older slot's replay whole."""
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    j = vol._journal
    ring = j.ring
    rng = random.Random(3)
    start_head, start_gen = ring.head, j.generation
    with vol.open("/f", "wb", buffering=0) as f:
        f.write(b"x")
    for i in range(400):
        with j.lock:
            if i % 5 == 0:
                j.commit(_setattr_batch(1, rng.randrange(100, 5000)))
            else:
                j.commit(_setattr_batch(1, rng.randrange(1, 40)))
        assert ring.head - j.checkpoint_pos <= ring.size // 2, i
    assert ring.head - start_head > 4 * ring.size and j.generation > start_gen + 8     # (it lapped)
    assert vol.fsck() == []
    copy = MemoryPool(pool.image())         # a crash, with the newest checkpoint lost: the older one
    copy.write(j.layout.checkpoint_offsets[j.generation % 2], bytes(64))    # and the log since
    vol.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", daxfs.DamagedVolumeWarning)
        again = Volume.mount(copy)
    assert again.stat("/").st_mode & 0o7777 == 0o600 and again.fsck() == []
    again.close()


def _volume_of_dirs(n: int) -> Volume:
    """A volume on a 4 MiB memory pool holding ``n`` empty directories."""
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    for i in range(n):
        vol.mkdir(f"/d{i}")
    return vol


def test_small_changes_never_force_a_checkpoint_and_start_one_per_three_eighths_of_the_ring() -> None:
    """With the shipped pacing and changes much smaller than the ring: a checkpoint starts once
    the log since the last passes three eighths of the ring and its slices finish it before
    half, so no commit ever checkpoints at once or finishes one in a go; and none starts
    sooner, so there are about as many as laps of three eighths.  (1,500 directories: enough
    rows that a checkpoint takes many slices.)"""
    vol = _volume_of_dirs(1500)
    j = vol._journal
    ring = j.ring
    forced: list[str] = []
    checkpoint, finish = j.checkpoint, j._finish

    def counting_checkpoint() -> None:
        forced.append("checkpoint")
        checkpoint()

    def counting_finish(writer: CheckpointWriter, n: int | None) -> None:
        if n is None:
            forced.append("finish")
        finish(writer, n)

    j.checkpoint, j._finish = counting_checkpoint, counting_finish      # type: ignore[method-assign]
    start_head, start_gen = ring.head, j.generation
    with j.lock:
        for i in range(4000):
            j.commit(_setattr_batch(1, 1 + i % 40))
            assert ring.head - j.checkpoint_pos <= ring.size // 2
    laps = (ring.head - start_head) / ring.size
    assert laps > 3 and forced == []
    assert laps / 0.5 - 1 <= j.generation - start_gen <= laps / 0.375 + 1, (j.generation - start_gen, laps)
    del j.checkpoint, j._finish
    assert vol.fsck() == []
    vol.close()


def test_a_change_that_would_pass_half_the_ring_finishes_the_checkpoint_being_written(
        slow_writer: None) -> None:
    """A checkpoint is being written a slice per commit when a large change comes that would
    take the log since the last one past half the ring: the commit finishes that checkpoint
    first (its superblocks flipped), then logs the change; the state mounts again."""
    vol = _volume_of_dirs(300)
    j = vol._journal
    ring = j.ring
    with j.lock:
        while ring.head - j.checkpoint_pos < ring.size // 4:       # a quarter of the ring logged
            j.commit(_setattr_batch(1, 40))
        j._start()
        writer = j.writer
        assert writer is not None
        j.commit(_setattr_batch(1, 1))                              # one slice: not done yet
        assert j.writer is writer
        big = _setattr_batch(1, 4000)
        assert ring.head - j.checkpoint_pos + 2 * len(ring.encode(big)) > ring.size // 2
        j.commit(big)
        assert j.generation >= writer.generation and j.writer is not writer
        assert ring.head - j.checkpoint_pos <= ring.size // 2
    assert vol.fsck() == []
    vol.close()
    again = Volume.mount(MemoryPool(vol._journal.pool.image()))  # type: ignore[attr-defined]
    assert len(again.listdir("/")) == 300 and again.fsck() == []
    again.close()


def test_a_checkpoint_whose_slot_write_fails_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slice that fails (OSError from the slot's memory): written a slice per commit, the
    commit still succeeds and the checkpoint is dropped (the one forced at half the ring says
    so); asked for at once (``checkpoint``), the error reaches the caller.  Either way the
    volume goes on, and a later checkpoint is written."""
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    j = vol._journal
    generation = j.generation

    def failing(self: CheckpointWriter, units: int) -> bool:
        raise OSError(errno.EIO, "slot write failed (simulated)")

    monkeypatch.setattr(CheckpointWriter, "step", failing)
    with j.lock:
        j._start()
        assert j.writer is not None
        j.commit(_setattr_batch(1, 1))              # a slice: fails, dropped, the change is in
        assert j.writer is None and j.core.inodes[1].mode & 0o7777 == 0o600
        j.commit(_setattr_batch(1, 1))
    with pytest.raises(OSError):
        vol.checkpoint()
    assert j.writer is None and j.generation == generation
    monkeypatch.undo()
    vol.mkdir("/after")
    vol.checkpoint()
    assert j.generation == generation + 1 and vol.fsck() == []
    vol.close()
