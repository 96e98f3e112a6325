"""An operation that waited for references to go looks at its files again.

Under the ``wait`` pin policy an operation waits (``settle``, ``wait_for_writers``, or a
copy on write inside it) for a pin or mapping to be let go, and lets the volume's lock go
meanwhile: another thread may unlink a file the operation named by path, grow it or cut
it.  After the wait the operation starts over from its arguments (``LookAgain``), so it
behaves as if it came after whatever ran meanwhile.  Before, these went on with what they
had found before the wait:

- a clone, copy_file_range or dedupe into a file unlinked meanwhile logged a block map
  change for an inode that no longer existed: the core refused the record after it was
  durable, the volume went read-only and every mount after said the volume was corrupt;
- a truncate that grows a file, or an arbiter client's prepared write that grows it, over
  a shared last block logged its size after another write had grown the file further:
  the file would hold blocks past its size (refused the same way);
- a clone_file whose source grew meanwhile took the new size and the old blocks: the
  clone read zeros where the source had data.

Each test stands a wait that runs "what another thread did meanwhile" and then returns as
a wait does (as test_datapath's copy-on-write cases do); each fails on the code before but
copy_file_range's own wait, which started over already.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from typing import Any

import pytest

from daxfs.media import MemoryPool
from daxfs.volume import Volume
from daxfs.volume.waits import before_wait

from _small_volume import distinct, pool_and_volume, read_file, write_file

BS = 4096


def _volume() -> tuple[MemoryPool, Volume]:
    return pool_and_volume()


def _on_first_wait(vol: Volume, kind: str, what: str | None, meanwhile: Callable[[], object]) -> list[str]:
    """Make the first ``kind`` wait (``settle`` whose ``what`` is ``what``, or
    ``wait_for_writers``) run ``meanwhile`` and return True, as a wait that let the lock go
    does.  The list returned records that it happened."""
    table = vol.data.references
    assert vol.sharing.references is table and vol.ranges.references is table
    real = getattr(table, kind)
    waited: list[str] = []

    def wait(ino: int, first: int, end: int | None, *args: Any, **kwargs: Any) -> bool:
        name = args[1] if kind == "settle" else None
        if not waited and (what is None or name == what):
            waited.append(kind)
            meanwhile()
            return True
        return real(ino, first, end, *args, **kwargs)  # type: ignore[no-any-return]

    setattr(table, kind, wait)
    return waited


def _still_sound(pool: MemoryPool, vol: Volume) -> None:
    """The volume takes changes, checks clean, and its log mounts again without complaint."""
    assert not vol._journal.readonly, vol._journal.damaged
    assert vol.fsck() == []
    vol.close()
    again = Volume.mount(MemoryPool(pool.image()))
    try:
        assert not again._journal.readonly and again.fsck() == []
    finally:
        again.close()


# (name, the operation, the wait it makes) — each into "dst", named by path, which another
# thread unlinks while the operation waits
_INTO_UNLINKED = [
    ("clone_range", lambda vol: vol.clone_range("src", 0, "dst", 0, 2 * BS), "settle", "clone into"),
    ("dedupe_range", lambda vol: vol.dedupe_range("src", 0, "dst", 0, 2 * BS), "settle", "dedupe into"),
    ("clone_range, waiting for the source's writers",
     lambda vol: vol.clone_range("src", 0, "dst", 0, 2 * BS), "wait_for_writers", None),
]


@pytest.mark.parametrize("name, operation, kind, what", _INTO_UNLINKED, ids=[c[0] for c in _INTO_UNLINKED])
def test_sharing_into_a_file_unlinked_while_waiting_finds_it_gone(
        name: str, operation: Callable[[Volume], object], kind: str, what: str | None) -> None:
    pool, vol = _volume()
    data = distinct(1, 2 * BS)
    write_file(vol, "src", data)
    write_file(vol, "dst", data)            # (the same bytes: dedupe would share them)
    waited = _on_first_wait(vol, kind, what, lambda: vol.unlink("dst", policy="defer"))
    with pytest.raises(FileNotFoundError):
        operation(vol)
    assert waited and vol.listdir("/") == ["src"] and read_file(vol, "src") == data
    _still_sound(pool, vol)


@pytest.mark.parametrize("what", ["copy into", "copy on write"])
def test_copy_file_range_into_a_file_unlinked_while_waiting_finds_it_gone(what: str) -> None:
    """Its own wait, and the copy on write of the destination's shared last block before
    the copy grows the file over it."""
    pool, vol = _volume()
    data = distinct(11, BS + 100)
    write_file(vol, "src", data)
    vol.clone_file("src", "dst")                # dst's partial last block is shared
    waited = _on_first_wait(vol, "settle", what, lambda: vol.unlink("dst", policy="defer"))
    with pytest.raises(FileNotFoundError):
        vol.copy_file_range("src", 0, "dst", 2 * BS, BS + 100)
    assert waited and vol.listdir("/") == ["src"] and read_file(vol, "src") == data
    _still_sound(pool, vol)


def test_clone_file_over_a_file_takes_the_source_as_it_is_after_the_wait() -> None:
    pool, vol = _volume()
    old, more = distinct(2, 2 * BS), distinct(3, 3 * BS + 100)
    write_file(vol, "src", old)
    write_file(vol, "dst", distinct(4, BS))

    def grow_source() -> None:
        with vol.open("src", "ab", buffering=0) as f:
            f.write(more)

    waited = _on_first_wait(vol, "wait_for_writers", None, grow_source)
    vol.clone_file("src", "dst")
    assert waited
    assert read_file(vol, "dst") == read_file(vol, "src") == old + more
    _still_sound(pool, vol)


def test_clone_range_of_a_source_cut_short_while_waiting_is_refused() -> None:
    pool, vol = _volume()
    data = distinct(5, 3 * BS)
    write_file(vol, "src", data)
    write_file(vol, "dst", b"")
    waited = _on_first_wait(vol, "wait_for_writers", None, lambda: vol.truncate("src", BS))
    with pytest.raises(OSError) as caught:
        vol.clone_range("src", 0, "dst", 0, 3 * BS)
    assert caught.value.errno == errno.EINVAL       # the range runs past the source's EOF now
    assert waited and read_file(vol, "dst") == b"" and read_file(vol, "src") == data[:BS]
    _still_sound(pool, vol)


def test_a_growing_truncate_that_waited_comes_after_the_write_made_meanwhile() -> None:
    pool, vol = _volume()
    data = distinct(6, BS + 100)            # a partial last block, shared with a clone
    write_file(vol, "f", data)
    vol.clone_file("f", "g")
    far = distinct(7, 50)
    with vol.open("f", "r+b", buffering=0) as f:
        waited = _on_first_wait(vol, "settle", "copy on write", lambda: f.pwrite(far, 5 * BS))
        f.truncate(3 * BS)                  # grows over the shared last block: copies it first
        assert waited
    # the truncate came after the write: the file is cut to its size, the write's bytes gone
    assert read_file(vol, "f") == data + bytes(3 * BS - len(data))
    assert read_file(vol, "g") == data
    _still_sound(pool, vol)


def test_a_prepared_write_that_waited_keeps_the_size_a_write_meanwhile_gave() -> None:
    pool, vol = _volume()
    data = distinct(8, BS + 100)            # a partial last block, shared with a clone
    write_file(vol, "f", data)
    vol.clone_file("f", "g")
    dp = vol.data
    with vol.open("f", "r+b", buffering=0) as f:
        ino = f.stat().st_ino
        mine = distinct(9, BS)
        pieces = dp.prepare_write(ino, 2 * BS, BS)      # past EOF, not over the last block
        for fblk, _n, pblk, _fl in pieces:
            dp.pool.write(dp.data_offset + pblk * BS, mine)
            dp.pool.persist(dp.data_offset + pblk * BS, BS)
            assert fblk == 2
        far = distinct(10, 50)
        waited = _on_first_wait(vol, "settle", "copy on write", lambda: f.pwrite(far, 5 * BS))
        assert dp.commit_write(ino, 2 * BS, BS, pieces) == BS
        assert waited
    want = data + bytes(2 * BS - len(data)) + mine + bytes(2 * BS) + far
    assert read_file(vol, "f") == want and read_file(vol, "g") == data
    _still_sound(pool, vol)


def test_a_clone_waiting_on_a_pin_finds_its_destination_unlinked_meanwhile() -> None:
    """The same with real threads and a real pin: the clone waits for the destination's pin
    (policy 'wait'); meanwhile the destination is unlinked (its blocks stay busy for the pin)
    and the pin let go; the clone then finds no destination."""
    pool, vol = pool_and_volume(policy="wait")
    data = distinct(12, 2 * BS)
    write_file(vol, "src", data)
    write_file(vol, "dst", distinct(13, 2 * BS))
    with vol.open("dst", "rb") as f:
        pin = f.pin(0, 2 * BS)
    waiting = threading.Event()
    outcome: list[BaseException | int] = []

    def clone() -> None:
        before_wait(waiting.set)
        try:
            outcome.append(vol.clone_range("src", 0, "dst", 0, 2 * BS))
        except BaseException as exc:    # (reported by the main thread's asserts)
            outcome.append(exc)
        finally:
            before_wait(None)

    thread = threading.Thread(target=clone)
    thread.start()
    try:
        assert waiting.wait(30), "the clone never waited for the pin"
        vol.unlink("dst", policy="defer")       # runs once the clone's wait lets the lock go
        pin.release()
    finally:
        thread.join(30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], FileNotFoundError), outcome
    assert vol.listdir("/") == ["src"] and read_file(vol, "src") == data
    _still_sound(pool, vol)


# -- a volume closed while a change waited ------------------------------------------------
#
# A change that breaks a lease ('break') or waits for a write mapping before sharing
# ('wait') lets the lock go, and a forced close may run meanwhile (here: the lease holder's
# own callback, or the thread's hook just before it blocks, closes it — the same lock
# hand-over, deterministic).  Before, truncate and a handle's truncate, punch_hole and
# zero_range went on after a lease break and logged their record into the closed volume,
# after its clean mark (on a file pool: a write to an unmapped pool).  unlink and the
# clone started over, which refuses: they are here so that stays so.


def _unchanged_after_close(pool: MemoryPool, vol: Volume, path: str, data: bytes) -> None:
    """The volume was closed clean and nothing was logged after: the file is as it was."""
    assert vol.closed
    again = Volume.mount(MemoryPool(pool.image()))
    try:
        assert read_file(again, path) == data
        assert again.fsck() == []
    finally:
        again.close()


def _through_a_handle(change: Callable[[Any], object]) -> Callable[[Volume], object]:
    def run(vol: Volume) -> None:
        with vol.open("f", "r+b", buffering=0) as f:
            change(f)
    return run


_LEASE_BREAKING_CHANGES: dict[str, Callable[[Volume], object]] = {
    "truncate": lambda vol: vol.truncate("f", BS),
    "ftruncate": _through_a_handle(lambda f: f.truncate(BS)),
    "punch_hole": _through_a_handle(lambda f: f.punch_hole(0, 2 * BS)),
    "zero_range": _through_a_handle(lambda f: f.zero_range(BS, BS, keep_size=True)),
    "unlink": lambda vol: vol.unlink("f"),
}


@pytest.mark.parametrize("change", sorted(_LEASE_BREAKING_CHANGES))
def test_a_change_that_broke_a_lease_refuses_once_the_volume_closed_meanwhile(change: str) -> None:
    pool, vol = pool_and_volume(policy="break", lease_break_s=30.0)
    data = distinct(21, 4 * BS)
    write_file(vol, "f", data)
    holder = vol.open("f", "rb")

    def let_go_and_close(mapping: Any) -> None:
        mapping.close()
        holder.close()
        vol.close()

    holder.map(0, 4 * BS, lease=True, on_break=let_go_and_close)
    with pytest.raises(ValueError, match="closed (volume|file)"):
        _LEASE_BREAKING_CHANGES[change](vol)
    _unchanged_after_close(pool, vol, "f", data)


def test_a_clone_that_waited_for_a_write_mapping_refuses_once_the_volume_closed_meanwhile() -> None:
    pool, vol = pool_and_volume(policy="wait")
    data = distinct(22, 2 * BS)
    write_file(vol, "src", data)
    write_file(vol, "dst", distinct(23, 2 * BS))
    dst_before = read_file(vol, "dst")
    holder = vol.open("src", "r+b")
    writer = holder.map(0, 2 * BS, write=True)

    def close_meanwhile() -> None:
        writer.close()
        holder.close()
        vol.close()

    before_wait(close_meanwhile)
    try:
        with pytest.raises(ValueError, match="closed volume"):
            vol.clone_range("src", 0, "dst", 0, 2 * BS)
    finally:
        before_wait(None)
    _unchanged_after_close(pool, vol, "dst", dst_before)


def test_two_forced_closes_waiting_on_the_same_pin_close_once(shm_pool: str) -> None:
    """Two threads close a volume with ``force`` while a pin is held: both wait for it
    (letting the lock go). Once it is let go, one closes; the other finds it closed and
    returns. Before, the second went on to checkpoint a closed pool (ValueError from its
    released memory)."""
    import daxfs

    vol = daxfs.open_volume(shm_pool)
    data = distinct(24, 4 * BS)
    with vol.open("f", "wb") as f:
        f.write(data)
    holder = vol.open("f", "rb")
    pin = holder.pin(0, BS)
    outcomes: dict[str, BaseException | None] = {}

    def close(name: str, waiting: threading.Event) -> None:
        before_wait(waiting.set)
        try:
            vol.close(force=True, timeout=60)
            outcomes[name] = None
        except BaseException as exc:    # (reported by the main thread's asserts)
            outcomes[name] = exc
        finally:
            before_wait(None)

    waits = {name: threading.Event() for name in ("first", "second")}
    threads = {name: threading.Thread(target=close, args=(name, waits[name])) for name in waits}
    for name, thread in threads.items():
        thread.start()
        assert waits[name].wait(30), f"the {name} close never waited for the pin"
    pin.release()
    for thread in threads.values():
        thread.join(60)
        assert not thread.is_alive()
    assert outcomes == {"first": None, "second": None}
    assert vol.closed
    with daxfs.open_volume(shm_pool) as again:
        with again.open("f", "rb") as f:
            assert f.read() == data
        assert again.fsck() == []


def test_a_lease_taken_while_another_is_broken_is_told_before_its_range_changes() -> None:
    """Under 'break' a truncate tells each lease over the range and waits (the lock let go);
    a lease taken meanwhile over the same range is told too before the truncate goes on.
    Before, the truncate went on once the first lease went: the second lease's range was cut
    under it, and its holder was never told."""
    pool, vol = pool_and_volume(policy="break", lease_break_s=30.0)
    data = distinct(25, 4 * BS)
    write_file(vol, "f", data)
    holder = vol.open("f", "rb")
    told: list[str] = []
    later: list[Any] = []

    def second_let_go(mapping: Any) -> None:
        told.append("second")
        mapping.close()

    def first_let_go(mapping: Any) -> None:
        told.append("first")
        later.append(holder.map(0, 4 * BS, lease=True, on_break=second_let_go))   # "meanwhile"
        mapping.close()

    holder.map(0, 4 * BS, lease=True, on_break=first_let_go)
    vol.truncate("f", BS)
    assert told == ["first", "second"]
    assert later[0].closed and vol.pins() == []
    holder.close()
    assert read_file(vol, "f") == data[:BS]
    _still_sound(pool, vol)


# -- a file whose last handle was closed while a call on it waited ------------------------
#
# "g", a clone of "f" (their blocks shared), unlinked while two handles keep it; a call on
# the writing handle must copy a shared block first and waits ('wait') for the other
# handle's mapping.  Meanwhile another thread (here: the hook this thread runs just before
# it blocks) drops the mapping and closes both handles: the orphan is freed, and "f" alone
# owns the blocks.  Before, each of these went on with the freed inode: the write mapping
# was laid over "f"'s block (stores through it changed "f"), the write pin held it, and
# punch_hole logged a change to an inode that no longer existed — the volume went
# read-only, "corrupt" at every mount after.  Now the call looks again: ESTALE.

_CALLS_THAT_COPY_SHARED_BLOCKS: dict[str, Callable[[Any], object]] = {
    "write mapping": lambda g: g.map(0, BS, write=True),
    "write pin": lambda g: g.pin(0, BS, write=True),
    "fallocate": lambda g: g.fallocate(0, 4 * BS),
    "punch_hole": lambda g: g.punch_hole(BS // 2, BS, policy="defer"),
    "zero_range": lambda g: g.zero_range(BS // 2, BS),
}


@pytest.mark.parametrize("call", sorted(_CALLS_THAT_COPY_SHARED_BLOCKS))
def test_a_call_whose_file_went_while_it_waited_is_stale(call: str) -> None:
    pool, vol = pool_and_volume(policy="wait")
    data = distinct(26, 4 * BS)
    write_file(vol, "f", data)
    vol.clone_file("f", "g")
    writer = vol.open("g", "r+b", buffering=0)
    reader = vol.open("g", "rb", buffering=0)
    mapping = reader.map(0, 4 * BS)
    vol.unlink("g", policy="defer")

    def close_everything_meanwhile() -> None:
        mapping.close()
        reader.close()
        writer.close()

    used_by_f = vol.statfs().used
    before_wait(close_everything_meanwhile)
    try:
        with pytest.raises(OSError) as exc:
            _CALLS_THAT_COPY_SHARED_BLOCKS[call](writer)
    finally:
        before_wait(None)
    assert exc.value.errno == errno.ESTALE
    assert mapping.closed and vol.pins() == []
    assert vol.listdir("/") == ["f"] and read_file(vol, "f") == data
    assert vol.statfs().used == used_by_f and vol.statfs().busy == 0
    _still_sound(pool, vol)
