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

from _forked_child import child_reading_later, reap  # noqa: E402


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


# ---------------------------------------------------------------- views a forked child shows
#
# A child made by fork gets a copy of every mapping of its parent: a view of pool blocks
# goes on showing them there whatever the parent does with its own.  Those blocks must go
# to no other file until the child is gone (they did: the parent let go, unlinked, and
# the next file's bytes showed through the child's arrays).

def _volume_with_a(pool: str) -> tuple["daxfs.Volume", object]:
    """The pool opened, ``/a`` holding 64 KiB of ``A``, and ``/a`` open for reading."""
    vol = daxfs.open_volume(pool)
    with vol.open("/a", "wb") as f:
        f.write(b"A" * 65536)
    return vol, vol.open("/a", "rb", buffering=0)


def _fill(vol: object) -> list[str]:
    names = []
    try:
        while True:
            name = f"/fill{len(names)}"
            with vol.open(name, "wb") as g:  # type: ignore[attr-defined]
                g.write(b"F" * 65536)
            names.append(name)
    except OSError as exc:
        assert exc.errno == 28
    return names


def _eventually(check: Callable[[], bool], tries: int = 2000) -> bool:
    """Poll ``check`` a bounded number of times (the outcome is asserted, never a duration)."""
    import time
    for _ in range(tries):
        if check():
            return True
        time.sleep(0.005)
    return check()


@pytest.mark.parametrize("kind", ["mapping", "pin"])
def test_blocks_a_forked_child_still_shows_go_to_no_other_file_until_it_is_gone(pool: str, kind: str) -> None:
    vol, f = _volume_with_a(pool)
    ref = f.map() if kind == "mapping" else f.pin(0, 65536)
    buffer = ref.buffer
    pid, go = child_reading_later(buffer, ord("A"))
    del buffer                                  # the parent's own arrays are gone
    ref.close() if kind == "mapping" else ref.release()  # type: ignore[union-attr]
    f.close()
    vol.unlink("/a")
    assert vol.statfs().busy == 65536           # the child shows them
    _fill(vol)
    assert reap(pid, go) == 0                  # and they are still /a's bytes there
    # the child gone, so are they (let go by the thread that sees its pipe end, soon after)
    assert _eventually(lambda: vol.statfs().busy == 0)
    assert vol.fsck() == []
    vol.close()


def test_a_volume_closed_while_a_forked_child_shows_a_view_stays_closed_to_other_writers(pool: str) -> None:
    # The child shares the pool file's lock: left to it, no other writer can hand the
    # blocks it shows to another file until it is gone.
    vol, f = _volume_with_a(pool)
    mapping = f.map()
    pid, go = child_reading_later(mapping.buffer, ord("A"))
    vol.close(force=True)                       # revokes the parent's mapping
    with pytest.raises(daxfs.BusyError):
        daxfs.open_volume(pool)
    assert reap(pid, go) == 0
    vol = daxfs.open_volume(pool)
    assert vol.fsck() == []
    vol.close()


def test_a_child_forked_without_views_mapped_keeps_nothing(pool: str) -> None:
    vol = daxfs.open_volume(pool)
    with vol.open("/a", "wb") as f:
        f.write(b"A" * 65536)
    pid, go = child_reading_later(memoryview(b"A"), ord("A"))
    try:
        vol.close()
        daxfs.open_volume(pool).close()         # the parent let go of the lock for both
    finally:
        assert reap(pid, go) == 0


def test_a_process_with_descriptors_numbered_past_1024_lets_go_of_views_after_a_fork(pool: str) -> None:
    # (select() cannot take such a descriptor: the close raised ValueError half done)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.fail(f"the test needs 1,200 descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        vol, f = _volume_with_a(pool)
        mapping = f.map()
        pid, go = child_reading_later(mapping.buffer, ord("A"))
        mapping.close()
        f.close()
        vol.unlink("/a")
        assert vol.statfs().busy == 65536
        assert reap(pid, go) == 0
        assert _eventually(lambda: vol.statfs().busy == 0)
        vol.close()
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_forks_from_several_threads_at_once_each_keep_what_their_child_shows(pool: str) -> None:
    # The fork hooks are Python code: another thread may fork between one thread's hooks
    # (one shared pipe lost forks and leaked descriptors)
    import sys
    import threading
    from daxfs.media import _forks
    vol, f = _volume_with_a(pool)
    mapping = f.map()
    before = len(os.listdir("/proc/self/fd"))
    children: list[tuple[int, int]] = []
    lock = threading.Lock()

    def forker() -> None:
        for _ in range(25):
            child = child_reading_later(mapping.buffer, ord("A"))
            with lock:
                children.append(child)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=forker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    view = mapping._ref.view
    assert len([forked for forked in view.forks if not forked.done]) == 100   # one per child, all alive
    mapping.close()
    f.close()
    vol.unlink("/a")
    assert vol.statfs().busy == 65536
    for pid, go in children:
        assert reap(pid, go) == 0
    assert _eventually(lambda: vol.statfs().busy == 0)
    assert not [forked for forked in _forks._pending if not forked.done]
    # no pipe left over (each witness thread closes its end once it sees the EOF)
    assert _eventually(lambda: len(os.listdir("/proc/self/fd")) <= before)
    vol.close()
