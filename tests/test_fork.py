"""An embedded volume in a child forked from the process that opened it.

The child gets a copy of the volume: its state as of the fork, the pool's mapping, and the
parent's open file description of the pool (with its lock).  The copy is marked closed in
the child: its close() neither checkpoints the parent's state over the parent's log nor
drops the parent's lock (it did both: another process could then open the pool read-write
beside the parent), and every call on it is refused.  The child opens the pool again to use
it (refused while the parent has it open read-write).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

import daxfs


@pytest.fixture
def pool() -> Iterator[str]:
    path = f"/dev/shm/daxfs-fork-{os.getpid()}-{uuid.uuid4().hex}.pool"
    daxfs.mkfs(path, 8 << 20).close()
    yield path
    os.unlink(path)


def _in_child(body: Callable[[], int]) -> int:
    """Run ``body`` in a forked child; its return value is the child's exit status."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = body()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_forked_childs_copy_of_a_volume_is_closed_and_touches_nothing(pool: str) -> None:
    vol = daxfs.open_volume(pool)
    with vol.open("/a", "wb") as f:
        f.write(b"a" * 10000)

    def child() -> int:
        try:
            vol.mkdir("/from-the-child")
        except ValueError:
            pass
        else:
            return 1
        vol.close()                                     # as leaving the parent's `with` would
        with pytest.raises(daxfs.BusyError):
            daxfs.open_volume(pool)                     # the parent still has it read-write
        return 0

    assert _in_child(child) == 0
    with pytest.raises(daxfs.BusyError):
        daxfs.open_volume(pool)                         # the parent's lock was not dropped
    with vol.open("/b", "wb") as f:
        f.write(b"b" * 10000)
    vol.close()
    with daxfs.open_volume(pool) as again:
        assert sorted(again.listdir("/")) == ["a", "b"] and again.fsck() == []


def _reap_within(pid: int, seconds: float) -> int | None:
    """The child's exit status, or None (and the child killed) if it is still running then:
    a hang guard, not a timing claim."""
    import signal
    import time
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_a_child_forked_while_another_thread_holds_the_volume_lock_can_let_go_of_its_copies(pool: str) -> None:
    """A thread in the parent was inside the volume (holding its lock) at the fork; that
    thread does not exist in the child, so its lock would be held there forever.  Letting go
    of the copies of mappings and pins (close, or the collector) must not wait for it (it
    hung: release took the lock)."""
    import threading
    vol = daxfs.open_volume(pool)
    with vol.open("/a", "wb") as f:
        f.write(b"a" * 65536)
    f = vol.open("/a", "rb", buffering=0)
    view = f.map()
    pin = f.pin(0, 4096)
    inside, leave = threading.Event(), threading.Event()

    def busy() -> None:
        with vol._journal.lock:                         # as any operation in progress does
            inside.set()
            leave.wait()

    worker = threading.Thread(target=busy)
    worker.start()
    inside.wait()
    try:
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                view.close()
                pin.release()
                f.close()
                vol.close()
                code = 0
            except BaseException as exc:
                print("child:", repr(exc), flush=True)
            finally:
                os._exit(code)
        status = _reap_within(pid, 30)
    finally:
        leave.set()
        worker.join()
    assert status == 0
    assert bytes(view.buffer[:3]) == b"aaa"                  # the parent's own are untouched
    view.close()
    pin.release()
    f.close()
    vol.close()
