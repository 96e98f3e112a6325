"""Small in-memory volumes and file helpers shared by the data-path tests (test_ranges,
test_datapath)."""

from __future__ import annotations

import dataclasses
import errno
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from daxfs.media import MemoryPool
from daxfs.volume import Volume
from daxfs.volume.waits import before_wait

BS = 4096


def small_volume(size: int = 4 << 20, **options: Any) -> Volume:
    """A fresh volume on a ``size``-byte pool in memory (``options``: ``Volume.mount``'s)."""
    return pool_and_volume(size, **options)[1]


def pool_and_volume(size: int = 4 << 20, **options: Any) -> tuple[MemoryPool, Volume]:
    """``small_volume`` and its pool (to mount its image again)."""
    pool = MemoryPool(size)
    Volume.format(pool)
    return pool, Volume.mount(pool, **options)


def distinct(seed: int, n: int) -> bytes:
    """``n`` bytes no other seed gives."""
    return random.Random(seed).randbytes(n)


def write_file(vol: Volume, path: str, data: bytes) -> None:
    with vol.open(path, "wb", buffering=0) as f:
        f.write(data)


def read_file(vol: Volume, path: str) -> bytes:
    with vol.open(path, "rb", buffering=0) as f:
        return f.read()


def check_checkpoint_room(make: Callable[[], Volume], op: Callable[[Any], object], room: int, name: str,
                          span: int, says: str = "") -> None:
    """``op`` on file ``f`` of a volume ``make`` returns: with one byte less checkpoint room
    than ``room`` it is ENOSPC (its message holding ``says``) and nothing changed (the first
    ``span`` bytes, size, extents, statfs, the log); with ``room`` it commits."""
    for give, fits in ((room - 1, False), (room, True)):
        vol = make()
        j = vol._journal
        layout = j.layout
        with vol.open("f", "r+b", buffering=0) as f:
            def state() -> tuple[object, ...]:
                return f.pread(span, 0), f.stat().st_size, f.extents(), vol.statfs()

            before = state()
            seq = j.ring.next_seq
            j.layout = dataclasses.replace(layout, checkpoint_size=j.core.checkpoint_bound + give + 64)
            try:
                if fits:
                    op(f)
                else:
                    with pytest.raises(OSError) as info:
                        op(f)
                    assert info.value.errno == errno.ENOSPC and says in str(info.value), info.value
            finally:
                j.layout = layout
            if not fits:
                assert j.ring.next_seq == seq and state() == before, f"{name}: changed on ENOSPC"
            else:
                assert j.ring.next_seq > seq
        assert vol.fsck() == []
        vol.close()


def file_between_free_blocks() -> tuple[Volume, int]:
    """A volume whose file ``b`` (one block) has two free blocks before it and two right
    after it, and ``b``'s pool offset: where an allocator that continues a file's run puts
    its next blocks, and one that takes the first free gap does not."""
    vol = small_volume()
    for name in "abcd":
        write_file(vol, name, b"x" * BS * (2 if name == "a" else 1))
    with vol.open("b", "rb", buffering=0) as f:
        b_block = f.extents()[0].pool_offset
    for name in "acd":
        vol.unlink(name)
    return vol, b_block


def scatter_free_space(vol: Volume) -> dict[str, bytes]:
    """Fill ``vol`` with one-block files until ENOSPC and delete every other one: free space
    is then single blocks between files (an allocation of several blocks gets several runs).
    Returns the files left and their bytes, to check nothing wrote into them."""
    made: dict[str, bytes] = {}
    for i in range(100_000):
        data = distinct(1_000 + i, BS)
        try:
            write_file(vol, f"scatter{i}", data)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            break
        made[f"scatter{i}"] = data
    for name in list(made)[1::2]:
        vol.unlink(name)
        del made[name]
    return made


def clock_past(ns: int) -> None:
    """Return once ``time.time_ns()`` is past ``ns``, so that a time taken next is later than
    ``ns`` (polled a bounded number of times; asserts rather than assumes it moved)."""
    for _ in range(10_000):
        if time.time_ns() > ns:
            return
        time.sleep(0.0001)
    assert time.time_ns() > ns, "the clock did not move"


JOIN = 60.0         # a thread still running after this is hung


def start_waiting(op: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``op`` in a thread and return once it is about to block in a policy wait."""
    waiting = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        before_wait(waiting.set)
        try:
            op()
        except BaseException as exc:  # pragma: no cover - reported by the caller
            errors.append(exc)
        finally:
            before_wait(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert waiting.wait(JOIN), "the call never waited"
    return thread, errors
