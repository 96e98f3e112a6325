"""The reference table's arithmetic and bookkeeping at its edges (found by a mutation run
over ``volume/references.py``): each test pins down one thing a slip there would get
wrong while every other test still passed.

- ``persist``: a mapping's persist makes exactly the pool bytes under the asked range of
  the view durable, piece by piece, for a mapping that starts inside a block of a file
  whose blocks are scattered in the pool.
- ``wait_for_writers``: only a write mapping over the range being shared is in the way (one
  past it is not); one in the way is a BusyError naming it, or under ``wait`` a wait
  after which the clone looks at its source again (it grew meanwhile: the clone has all
  of it).
- ``revoke``: an invalidated mapping's memory is inaccessible (the kernel gets EFAULT
  copying from it), a migrated one still reads; a view that says its memory is detached
  later (another process's: ``False``) keeps the blocks held until ``release_blocks``, any
  other answer (or no view at all) lets them go at once.  Until then such a reference
  still counts as showing its file's blocks: a clone that owns them alone is copied on
  write, not changed under it.
- ``show``: a pin's CPU view made after memory under it failed fences exactly the bad
  block, for a pin that starts past the file's first block; a view that cannot fence (the
  ``View`` protocol lets one lack ``fence``) is still shown everything else.
- ``lay_out``: a write mapping's blocks are faulted in as they are laid (MAP_POPULATE: its
  stores never fault); a read mapping's are not.
- ``settle`` under ``wait``: a change waits only for references over its own range (a pin
  past it neither holds it up nor is named when it times out).
- ``sealed``: a punch or zero_range inside a block just past a mapping copies that block
  on write (as with no mapping at all); only a block the mapping shows is zeroed in place.
- ``held_by_others``: a released pin whose CPU view is still exported (an array into it
  lives) keeps showing its file's old bytes when the clone that now owns those blocks
  alone is written; once the export goes, the reference is forgotten.  A block held for
  another file right after a run being written is no part of that run: the write still
  copies the shared block of the file's next run (a clone keeps its bytes).
- ``settle`` under ``break``: only leases over the changed range are broken (a lease
  taken past it is not told, nor revoked); a change that waited for a lease to let go
  looks at its files again (the destination of a clone, unlinked meanwhile, is gone: the
  clone is FileNotFoundError, not a record for a reclaimed inode).
- ``admit``: while a change waits, a pin it does not refuse leaves the writer's pool lock
  exclusive (only a read-only follower takes the shared one); each refusal (a waiting
  change's range, a forced close under way, a follower beside a writer) says why and
  names the file.
- ``show_filled``: a write into a hole lays its blocks into every reference that showed
  zeros there, whatever references without zeros the file also has; a hole and an
  unwritten block filled by one write are each shown once.
- ``infos`` for the status page: it lists no more than ``PUBLISHED_REFS`` references
  (listing more would only stall the writer), and counts them all.
- ``busy_error``: names the first five references and counts the rest.
- ``force_out``: a forced close with a timeout gives an unresponsive lease no longer than
  the timeout, however long ``lease_break_s`` is; one that times out on a pin says so,
  naming it, and leaves the volume open.

Nothing sleeps: threads are ordered by ``before_wait`` and events.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import daxfs
from daxfs.media import MemoryPool
from daxfs.volume import Volume
from daxfs.volume.status import PUBLISHED_REFS

from _small_volume import JOIN, BS, distinct, pool_and_volume, read_file, small_volume, start_waiting, write_file



def _scattered(blocks: int) -> tuple[MemoryPool, Volume, bytes]:
    """A volume whose file ``f`` has ``blocks`` one-block extents, none next to another (a
    one-block file ``g<i>`` sits after each), and ``f``'s bytes."""
    pool, vol = pool_and_volume()
    data = distinct(7, blocks * BS)
    for i in range(blocks):
        with vol.open("f", "ab", buffering=0) as f:
            f.write(data[i * BS:(i + 1) * BS])
        with vol.open(f"g{i}", "wb", buffering=0) as g:
            g.write(distinct(100 + i, BS))
    with vol.open("f", "rb", buffering=0) as f:
        extents = f.extents()
    assert len(extents) == blocks, "f's blocks should be scattered"
    return pool, vol, data


def _pool_ranges(extents: list[daxfs.Extent], lo: int, hi: int) -> list[tuple[int, int]]:
    """The pool byte ranges under file bytes ``[lo, hi)``, in file order."""
    out = []
    for e in extents:
        a, b = max(lo, e.file_offset), min(hi, e.file_offset + e.length)
        if a < b:
            out.append((e.pool_offset + a - e.file_offset, b - a))
    return out


def test_a_mapping_persists_exactly_the_pool_bytes_under_the_asked_range() -> None:
    pool, vol, _ = _scattered(5)
    persisted: list[tuple[int, int]] = []
    real = pool.persist_mapped

    def record(offset: int, length: int) -> None:
        if length:          # (an empty persist is a no-op on every pool)
            persisted.append((offset, length))
        real(offset, length)

    pool.persist_mapped = record  # type: ignore[method-assign]
    start = BS + 100          # inside file block 1: the view starts at block 1, 100 bytes in
    with vol.open("f", "r+b", buffering=0) as f:
        extents = f.extents()
        mapping = f.map(start, 3 * BS, write=True)
        for offset, length in ((0, 3 * BS), (10, BS), (0, BS - 100), (BS - 100, 1), (BS - 99, BS),
                               (2 * BS, BS), (3 * BS - 1, 1), (5, 0), (BS, BS - 100)):
            persisted.clear()
            mapping.persist(offset, length)
            expected = _pool_ranges(extents, start + offset, start + offset + length)
            assert persisted == expected, (offset, length)
        mapping.close()
    assert vol.fsck() == []
    vol.close()


SHARE_WHAT = "cannot share blocks a write mapping or write pin can still change"


@pytest.mark.parametrize("op", ["clone_range", "clone_file", "dedupe_range"])
def test_sharing_under_a_write_mapping_is_refused_naming_it(op: str) -> None:
    vol = small_volume()
    data = distinct(11, 4 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", data)
    call = {"clone_range": lambda: vol.clone_range("a", 0, "b", 0, 2 * BS),
            "clone_file": lambda: vol.clone_file("a", "b"),
            "dedupe_range": lambda: vol.dedupe_range("a", 0, "b", 0, 2 * BS)}[op]
    with vol.holder("mapper") as holder, holder.open("a", "r+b", buffering=0) as f:
        mapping = f.map(BS, BS, write=True)
        with pytest.raises(daxfs.BusyError) as info:
            call()
        assert info.value.errno == errno.EBUSY
        assert SHARE_WHAT in str(info.value) and "mapping on a [4096, +4096) by mapper" in str(info.value)
        assert info.value.holders == ["mapper"]
        mapping.close()
    assert read_file(vol, "b") == data and vol.fsck() == []
    vol.close()


def test_a_write_mapping_past_the_shared_range_is_not_in_the_way() -> None:
    vol = small_volume()
    data = distinct(12, 4 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", bytes(4 * BS))
    with vol.open("a", "r+b", buffering=0) as f:
        mapping = f.map(2 * BS, BS, write=True)            # block 2: past [0, 2)
        vol.clone_range("a", 0, "b", 0, 2 * BS)
        assert vol.dedupe_range("a", 3 * BS, "b", 3 * BS, BS) == 0     # block 3: differs, nothing shared
        mapping.close()
    assert read_file(vol, "b") == data[:2 * BS] + bytes(2 * BS)
    assert vol.fsck() == []
    vol.close()


def test_a_clone_that_waited_for_a_write_mapping_clones_what_the_source_grew_to_meanwhile() -> None:
    vol = small_volume(policy="wait")
    data = distinct(13, 2 * BS)
    more = distinct(14, 2 * BS)
    write_file(vol, "a", data)
    with vol.open("a", "r+b", buffering=0) as f:
        mapping = f.map(0, BS, write=True)
        thread, errors = start_waiting(lambda: vol.clone_file("a", "b"))
        f.pwrite(more, 2 * BS)                  # a grows past the mapping while the clone waits
        mapping.close()
        thread.join(JOIN)
        assert not thread.is_alive() and errors == []
    assert read_file(vol, "b") == data + more
    assert vol.fsck() == []
    vol.close()


def test_a_forced_close_gives_an_unresponsive_lease_no_more_than_its_timeout() -> None:
    vol = small_volume(lease_break_s=3600.0)
    write_file(vol, "f", distinct(15, 2 * BS))
    told: list[str] = []
    f = vol.open("f", "rb", buffering=0)
    lease = f.map(0, 2 * BS, lease=True, on_break=lambda m: told.append(m.path))
    errors: list[BaseException] = []

    def close() -> None:
        try:
            vol.close(force=True, timeout=0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=close, daemon=True)
    thread.start()
    thread.join(JOIN)
    hung = thread.is_alive()
    if hung:                    # let a close that waits for the lease finish before failing
        lease.close()
        thread.join(JOIN)
    assert not hung, "the forced close waited for lease_break_s, past its timeout"
    assert errors == [] and vol.closed
    assert told == ["f"] and lease.revoked
    assert lease.buffer[:BS] == distinct(15, 2 * BS)[:BS]       # migrated: still readable
    lease.close()


def _kernel_reads(buffer: memoryview) -> bytes | int:
    """What the kernel copies out of ``buffer`` (through a pipe), or the errno it gets
    (EFAULT: the memory is inaccessible; touching it here would be a segmentation fault)."""
    r, w = os.pipe()
    try:
        try:
            os.write(w, buffer)
        except OSError as exc:
            return exc.errno or -1
        return os.read(r, len(buffer))
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("mode", ["migrate", "invalidate"])
def test_a_revoked_mapping_keeps_its_bytes_only_when_migrated(mode: str) -> None:
    vol = small_volume()
    data = distinct(16, 2 * BS)
    write_file(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        mapping = f.map(0, 2 * BS)
        assert _kernel_reads(mapping.buffer[:BS]) == data[:BS]
        mapping.revoke(mode)
        assert mapping.revoked
        expected = data[:BS] if mode == "migrate" else errno.EFAULT
        assert _kernel_reads(mapping.buffer[:BS]) == expected
        f.truncate(0)
        assert vol.statfs().busy == 0, "a revoked mapping lets its blocks go"
        mapping.close()
    assert vol.fsck() == []
    vol.close()


class _Answering:
    """A view that answers revoke with ``answer`` (``False``: its memory lives in another
    process that detaches it later), after doing what the real view does."""

    def __init__(self, view: object, answer: bool | None) -> None:
        self._view = view
        self._answer = answer

    def migrate(self) -> bool | None:
        self._view.migrate()  # type: ignore[attr-defined]
        return self._answer

    def invalidate(self) -> bool | None:  # pragma: no cover - revoke migrates here
        self._view.invalidate()  # type: ignore[attr-defined]
        return self._answer


@pytest.mark.parametrize("answer", [None, True, False, "no view"])
def test_a_revoke_lets_the_blocks_go_unless_the_view_detaches_later(answer: object) -> None:
    vol = small_volume()
    write_file(vol, "f", distinct(17, 2 * BS))
    table = vol.references
    with vol.open("f", "r+b", buffering=0) as f:
        mapping = f.map(0, 2 * BS)
        ref = mapping.reference
        let_go: list[list[tuple[int, int]]] = []
        ref.on_let_go = let_go.append
        with vol.lock:
            ref.view = None if answer == "no view" else _Answering(ref.view, answer)  # type: ignore[arg-type]
        held = list(ref.held or ())
        assert sum(k for _p, k in held) == 2
        mapping.revoke("migrate")
        f.truncate(0)
        later = answer is False
        assert vol.statfs().busy == (2 * BS if later else 0)
        assert let_go == ([] if later else [held])
        if later:
            table.release_blocks(ref)       # the other process says its memory is gone
            assert vol.statfs().busy == 0 and let_go == [held]
        mapping.close()
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


def test_a_waiting_punch_waits_only_for_the_pin_over_its_range() -> None:
    vol = small_volume()
    data = distinct(18, 8 * BS)
    write_file(vol, "f", data)
    with vol.holder("inside") as inside, vol.holder("past") as past, \
            inside.open("f", "rb", buffering=0) as fi, past.open("f", "rb", buffering=0) as fp:
        held = fi.pin(2 * BS, BS)
        beyond = fp.pin(6 * BS, BS)
        with vol.open("f", "r+b", buffering=0) as f:
            with pytest.raises(daxfs.BusyError) as info:
                f.punch_hole(2 * BS, 2 * BS, policy="wait", timeout=0)
            assert info.value.holders == ["inside"]
            assert str(info.value) == ("[Errno 16] punch_hole still held after waiting 0.0 s: "
                                "pin on f [8192, +4096) by inside: '<memory>'")
            thread, errors = start_waiting(lambda: f.punch_hole(2 * BS, 2 * BS, policy="wait", timeout=JOIN))
            held.release()
            thread.join(JOIN)
            hung = thread.is_alive()
            beyond.release()
            thread.join(JOIN)
            assert not hung, "the punch waited for a pin past its range"
            assert errors == []
    assert read_file(vol, "f") == data[:2 * BS] + bytes(2 * BS) + data[4 * BS:]
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("count", [5, 6, 7])
def test_a_refusal_names_five_references_and_counts_the_rest(count: int) -> None:
    vol = small_volume(policy="refuse")
    write_file(vol, "f", distinct(19, 8 * BS))
    names = [f"h{i}" for i in range(count)]
    holders = [vol.holder(name) for name in names]
    for i, holder in enumerate(holders):
        holder.open("f", "rb", buffering=0).pin(i * BS, BS)
    with pytest.raises(daxfs.BusyError) as info:
        vol.truncate("f", 0)
    message = str(info.value)
    assert message.startswith("[Errno 16] truncate refused: pin on f [")
    assert message.count("pin on f [") == 5 and message.count(", pin on f [") == 4
    if count > 5:
        assert message.endswith(f" and {count - 5} more: '<memory>'"), message
    else:
        assert " more" not in message, message
    assert info.value.holders == names
    for holder in holders:
        holder.close()
    assert vol.stat("f").st_size == 8 * BS and vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("op", ["punch_hole", "zero_range"])
@pytest.mark.parametrize("mapped", [2, 3])
def test_only_a_block_a_mapping_shows_is_zeroed_in_place(op: str, mapped: int) -> None:
    vol = small_volume()
    data = distinct(20, 4 * BS)
    write_file(vol, "f", data)
    with vol.open("f", "r+b", buffering=0) as f:
        before = _pools(f)
        mapping = f.map(0, mapped * BS)          # file blocks [0, mapped)
        getattr(f, op)(2 * BS + 10, 100)          # inside block 2
        after = _pools(f)
        in_place = mapped > 2
        assert (after[2] == before[2]) == in_place, (before, after)
        assert after[:2] == before[:2] and after[3] == before[3]
        assert bytes(mapping.buffer[:2 * BS]) == data[:2 * BS]
        mapping.close()
    assert read_file(vol, "f") == data[:2 * BS + 10] + bytes(100) + data[2 * BS + 110:]
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


def _pools(f: daxfs.File) -> list[int]:
    """The pool offset of each block of ``f``."""
    return [e.pool_offset + i for e in f.extents() for i in range(0, e.length, BS)]


def test_a_lingering_view_of_another_file_keeps_its_bytes_when_the_clone_is_written() -> None:
    vol = small_volume()
    data = distinct(21, 2 * BS)
    write_file(vol, "a", data)
    vol.clone_file("a", "b")
    with vol.open("a", "rb", buffering=0) as a:
        pin = a.pin(0, 2 * BS)
        array = np.frombuffer(pin.buffer, dtype="u1")
        pin.release()                       # released; its memory still shown (the array)
    assert len(vol.references.lingering()) == 1
    vol.truncate("a", 0)                    # b alone owns the blocks now; the view still holds them
    assert vol.statfs().busy == 0
    with vol.open("b", "r+b", buffering=0) as b:
        b.pwrite(b"new bytes", 10)
    assert bytes(array) == data, "a write to b changed the blocks an old view of a shows"
    assert read_file(vol, "b") == data[:10] + b"new bytes" + data[19:]
    del array                               # the view goes: its blocks, and the reference
    assert vol.references.lingering() == []
    vol.unlink("b")
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


def test_break_tells_and_revokes_only_the_leases_over_the_changed_range() -> None:
    vol = small_volume(policy="break", lease_break_s=0.0)
    data = distinct(22, 8 * BS)
    write_file(vol, "f", data)
    told: list[int] = []
    with vol.open("f", "r+b", buffering=0) as f:
        inside = f.map(2 * BS, BS, lease=True, on_break=lambda m: told.append(m.offset))
        past = f.map(6 * BS, BS, lease=True, on_break=lambda m: told.append(m.offset))
        f.punch_hole(2 * BS, 2 * BS)
        assert told == [2 * BS]
        assert inside.revoked and not past.revoked
        assert bytes(past.buffer) == data[6 * BS:7 * BS]
        inside.close()
        past.close()
    assert read_file(vol, "f") == data[:2 * BS] + bytes(2 * BS) + data[4 * BS:]
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


def test_a_clone_that_waited_for_a_lease_finds_its_destination_unlinked_meanwhile() -> None:
    vol = small_volume(policy="break", lease_break_s=JOIN)
    write_file(vol, "s", distinct(23, 2 * BS))
    write_file(vol, "d", distinct(24, 2 * BS))
    told = threading.Event()
    holder = vol.holder("leaser")
    d = holder.open("d", "rb", buffering=0)
    lease = d.map(0, BS, lease=True, on_break=lambda m: told.set())
    errors: list[BaseException] = []

    def meanwhile() -> None:        # the lease holder, told: d goes, then the lease
        try:
            assert told.wait(JOIN), "the lease was never broken"
            vol.unlink("d", policy="defer")
            d.close()
            lease.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=meanwhile, daemon=True)
    thread.start()
    with pytest.raises(FileNotFoundError):
        vol.clone_range("s", 0, "d", 0, BS)
    thread.join(JOIN)
    assert not thread.is_alive() and errors == []
    holder.close()
    assert not vol.readonly and not vol.exists("d")
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


def test_a_pin_view_made_after_a_memory_failure_fences_exactly_the_bad_block() -> None:
    vol = small_volume()
    data = distinct(25, 4 * BS)
    write_file(vol, "f", data)
    with vol.open("f", "rb", buffering=0) as f:
        base = f.extents()[0].pool_offset
        pin = f.pin(2 * BS, 2 * BS)                 # file blocks 2 and 3; no CPU view yet
        told = vol.memory_failure(base + 3 * BS, BS)
        assert [(o.file_offset, o.length) for o in told] == [(3 * BS, BS)]
        assert list(pin.poisoned) == [(3 * BS, BS)]
        buffer = pin.buffer                         # the view is made now
        assert _kernel_reads(buffer[:BS]) == data[2 * BS:3 * BS]
        assert _kernel_reads(buffer[BS:]) == errno.EFAULT
        del buffer
        pin.release()
    assert vol.badblocks() == [(base + 3 * BS, BS)] and vol.fsck() == []
    vol.close()


def test_a_write_next_to_another_files_pinned_block_still_copies_its_shared_blocks() -> None:
    vol = small_volume()
    b0, x0, b1 = distinct(26, BS), distinct(27, BS), distinct(28, BS)
    write_file(vol, "b", b0)
    write_file(vol, "x", x0)                # right after b's first block in the pool
    with vol.open("b", "ab", buffering=0) as f:
        f.write(b1)                         # b's second block: elsewhere
    with vol.open("b", "rb", buffering=0) as f, vol.open("x", "rb", buffering=0) as g:
        pb, px = _pools(f), _pools(g)
    assert px == [pb[0] + BS] and pb[1] != pb[0] + BS, (pb, px)
    write_file(vol, "c", b"")
    vol.clone_range("b", BS, "c", 0, BS)    # c shares b's second block
    with vol.open("b", "r+b", buffering=0) as f, vol.open("x", "rb", buffering=0) as g:
        own = f.pin(0, BS)                  # (a hold on b's first run: its blocks are looked at)
        other = g.pin(0, BS)                # x's block, next to that run
        f.pwrite(b"n" * 2 * BS, 0)
        assert bytes(other.buffer) == x0
        own.release()
        other.release()
    assert read_file(vol, "c") == b1, "b's write went into the block c shares"
    assert read_file(vol, "b") == b"n" * 2 * BS and read_file(vol, "x") == x0
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


def _locked_elsewhere(path: str, how: int) -> bool:
    """Whether another open file of ``path`` is refused the ``how`` flock now."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)        # (and with it any lock it took)
    return False


def test_a_pin_admitted_beside_a_waiting_change_leaves_the_writer_lock_exclusive(tmp_path: Path) -> None:
    path = str(tmp_path / "pool")
    daxfs.mkfs(path, 4 << 20).close()
    vol = daxfs.open_volume(path, policy="wait")
    write_file(vol, "f", distinct(29, 8 * BS))
    assert _locked_elsewhere(path, fcntl.LOCK_SH)
    with vol.open("f", "r+b", buffering=0) as f:
        held = f.pin(2 * BS, BS)
        thread, errors = start_waiting(lambda: f.punch_hole(2 * BS, BS, timeout=JOIN))
        beside = f.pin(6 * BS, BS)          # admitted: not in the waiting range
        assert _locked_elsewhere(path, fcntl.LOCK_SH), "the writer's lock went shared"
        with pytest.raises(daxfs.BusyError) as info:
            f.pin(2 * BS, BS)
        assert (info.value.strerror, info.value.filename) == \
            ("a change waiting on this range refuses new pins and mappings", "f")
        beside.release()
        held.release()
        thread.join(JOIN)
        assert not thread.is_alive() and errors == []
    assert _locked_elsewhere(path, fcntl.LOCK_SH)
    with daxfs.open_volume(path, readonly=True) as follower, follower.open("f", "rb", buffering=0) as g:
        with pytest.raises(daxfs.BusyError) as info:
            g.pin(0, BS)                    # the writer could reuse the blocks under it
        assert info.value.filename == "f" and info.value.strerror == (
            "the pool's writer could reuse blocks a read-only opener maps or pins: "
            "map or pin through the writer, or when no process writes")
    assert vol.fsck() == []
    vol.close()
    assert not _locked_elsewhere(path, fcntl.LOCK_EX)


def test_while_a_forced_close_waits_for_a_pin_a_new_pin_is_refused_naming_the_file() -> None:
    vol = small_volume()
    write_file(vol, "f", distinct(34, 2 * BS))
    f = vol.open("f", "rb", buffering=0)
    held = f.pin(0, BS)
    with pytest.raises(daxfs.BusyError) as timed_out:
        vol.close(force=True, timeout=0)
    assert timed_out.value.strerror == \
        f"pins still held after the close timeout: pin on f [0, +{BS}) by pid {os.getpid()}"
    assert not vol.closed
    thread, errors = start_waiting(lambda: vol.close(force=True, timeout=JOIN))
    with pytest.raises(daxfs.BusyError) as info:
        f.pin(BS, BS)
    assert (info.value.strerror, info.value.filename) == ("volume is closing: no new mappings or pins", "f")
    held.release()
    thread.join(JOIN)
    assert not thread.is_alive() and errors == [] and vol.closed


def test_a_write_into_a_hole_shows_in_every_reference_that_showed_zeros() -> None:
    vol = small_volume()
    data = distinct(30, 2 * BS)
    new = distinct(31, BS)
    with vol.open("f", "w+b", buffering=0) as f:
        f.write(data)
        f.truncate(3 * BS)                  # block 2: a hole
        # (eight of each, in a set of references: a pass that stopped at the first one
        # without zeros would miss some of those with zeros but once in 12870 orders)
        over_data = [f.map(0, BS) for _ in range(8)]
        over_hole = [f.map(2 * BS, BS) for _ in range(8)]
        assert all(bytes(m.buffer) == bytes(BS) for m in over_hole)
        f.pwrite(new, 2 * BS)
        assert [bytes(m.buffer) == new for m in over_hole] == [True] * 8
        assert all(bytes(m.buffer) == data[:BS] for m in over_data)
        for m in over_data + over_hole:
            m.close()
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


def test_a_hole_and_an_unwritten_block_filled_by_one_write_are_each_shown_once() -> None:
    vol = small_volume()
    new = distinct(32, 2 * BS)
    with vol.open("f", "w+b", buffering=0) as f:
        f.truncate(3 * BS)
        f.fallocate(BS, BS)                 # block 0: a hole; block 1: unwritten
        pin = f.pin(0, 2 * BS)
        assert [pool for _o, _n, pool in pin.segments] == [None, None]
        f.pwrite(new, 0)
        assert pin.segments == [(e.file_offset, e.length, e.pool_offset) for e in f.extents()]
        assert len(pin.segments) == 2
        assert bytes(pin.buffer) == new
        pin.release()
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


def test_the_status_page_lists_a_bounded_number_of_references_and_counts_all() -> None:
    vol = small_volume()
    write_file(vol, "f", distinct(33, 4 * BS))
    extra = 20
    with vol.open("f", "rb", buffering=0) as f:
        pins = [f.pin((i % 4) * BS, BS) for i in range(PUBLISHED_REFS + extra)]
        vol._publish()
        status = vol.published()
        assert status is not None and status["total"] == PUBLISHED_REFS + extra
        listed = status["refs"]
        assert len(listed) == PUBLISHED_REFS
        every = vol.pins()
        assert len(every) == PUBLISHED_REFS + extra
        assert all(info in every for info in listed)
        for pin in pins:
            pin.release()
    assert vol.statfs().busy == 0
    vol.close()


class _Elsewhere:
    """A view in another process that has not yet detached its memory when revoked (the
    arbiter's RemoteView): revoke answers False and the memory still shows the pool."""

    def __init__(self, view: object) -> None:
        self.view = view

    def migrate(self) -> bool:
        return False

    def invalidate(self) -> bool:  # pragma: no cover - revoke migrates here
        return False


def test_a_revoked_reference_still_shown_elsewhere_keeps_its_files_bytes() -> None:
    vol = small_volume()
    data = distinct(35, 2 * BS)
    write_file(vol, "a", data)
    vol.clone_file("a", "b")
    table = vol.references
    with vol.open("a", "rb", buffering=0) as a:
        mapping = a.map(0, 2 * BS)
        ref = mapping.reference
        with vol.lock:
            ref.view = _Elsewhere(ref.view)  # type: ignore[assignment]
        mapping.revoke("migrate")
        assert mapping.revoked
    assert table.lingering() == [ref]
    vol.truncate("a", 0)                    # b alone owns the blocks the revoked view shows
    with vol.open("b", "r+b", buffering=0) as b:
        b.pwrite(b"new bytes", 10)
    assert bytes(mapping.buffer) == data, "a write to b changed what a revoked view of a shows"
    assert read_file(vol, "b") == data[:10] + b"new bytes" + data[19:]
    table.release_blocks(ref)               # the other process detached its memory
    assert table.lingering() == []
    mapping.close()
    vol.unlink("b")
    assert vol.statfs().busy == 0 and vol.fsck() == []
    vol.close()


class _Recording:
    """A view that records what is laid into it and forwards everything to ``view``."""

    def __init__(self, view: object) -> None:
        self._view = view
        self.laid: list[tuple[int, int, int, bool]] = []

    def map_pool(self, offset: int, length: int, pool_offset: int, *, populate: bool = False) -> None:
        self.laid.append((offset, length, pool_offset, populate))
        self._view.map_pool(offset, length, pool_offset, populate=populate)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._view, name)


@pytest.mark.parametrize("write", [False, True])
def test_only_a_write_mapping_is_faulted_in_as_it_is_laid(write: bool) -> None:
    pool, vol = pool_and_volume()
    write_file(vol, "f", distinct(36, 3 * BS))
    views: list[_Recording] = []
    real = pool.map_view

    def recording(length: int, *, writable: bool) -> _Recording:
        views.append(_Recording(real(length, writable=writable)))
        return views[-1]

    pool.map_view = recording  # type: ignore[method-assign]
    with vol.open("f", "r+b", buffering=0) as f:
        extents = f.extents()
        mapping = f.map(BS, 2 * BS, write=write)
        assert [v.laid for v in views] == [[(0, 2 * BS, extents[0].pool_offset + BS, write)]]
        mapping.close()
    assert vol.fsck() == []
    vol.close()


class _Unfenced:
    """A view without ``fence``: it records what is laid into it."""

    def __init__(self) -> None:
        self.laid: list[tuple[str, int, int]] = []

    def map_pool(self, offset: int, length: int, pool_offset: int, *, populate: bool = False) -> None:
        self.laid.append(("pool", offset, length))

    def map_zero(self, offset: int, length: int) -> None:
        self.laid.append(("zero", offset, length))


def test_a_view_that_cannot_fence_is_shown_everything_but_bad_memory_stays_told() -> None:
    vol = small_volume()
    with vol.open("f", "w+b", buffering=0) as f:
        f.write(distinct(37, 2 * BS))
        f.truncate(4 * BS)                  # blocks 2, 3: a hole
        base = f.extents()[0].pool_offset
        pin = f.pin(BS, 3 * BS)             # file blocks 1..3
        vol.memory_failure(base + BS, BS)   # block 1 fails
        assert list(pin.poisoned) == [(BS, BS)]
        ref = pin.reference
        view = _Unfenced()
        with vol.lock:
            vol.references.show(ref, view)  # type: ignore[arg-type]
            assert ref.view is view
            ref.view = None
        assert view.laid == [("zero", BS, 2 * BS), ("pool", 0, BS)]
        pin.release()
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("unmapped", [True, False])
def test_a_holder_letting_go_of_a_reference_revoked_meanwhile_lets_its_blocks_go(unmapped: bool) -> None:
    # An arbiter's client closes a lease mapping just as the lease runs out: the revoke
    # keeps the blocks held until the client's memory goes, and the client, closed, never
    # answers the revoke itself — its release saying the memory is unmapped is that answer
    # (found by the chaos stress with killed clients: the blocks stayed busy for as long as
    # the client stayed connected)
    vol = small_volume()
    write_file(vol, "f", distinct(37, 2 * BS))
    table = vol.references
    with vol.open("f", "r+b", buffering=0) as f:
        mapping = f.map(0, 2 * BS)
        ref = mapping.reference
        with vol.lock:
            ref.view = _Elsewhere(ref.view)  # type: ignore[assignment]
        mapping.revoke("migrate")           # the lease ran out: held until the memory goes
        assert table.lingering() == [ref]
        with vol.lock:
            table.release(ref, unmapped=unmapped)   # ... and the client's close comes in
        f.truncate(0)
        if unmapped:
            assert table.lingering() == [] and ref.held is None and vol.statfs().busy == 0
        else:                               # its memory is still exported: held until it goes
            assert table.lingering() == [ref] and vol.statfs().busy == 2 * BS
            table.release_blocks(ref)
        assert vol.statfs().busy == 0
        mapping.close()
    assert vol.fsck() == []
    vol.close()
