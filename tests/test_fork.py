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
