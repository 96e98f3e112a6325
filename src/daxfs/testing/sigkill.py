"""SIGKILL where it hurts: kill a process mid-workload after a random number of acknowledged
operations, then hold the pool it leaves to the crash oracle.

The child (``python -m daxfs.testing.sigkill POOL SEED N``) opens the pool and runs the
extended seeded workload (``Workload(seed, extended=True)``: creates, writes in place
and allocating, appends, truncates, punches, zero_range, fallocate, mkdir/rmdir, unlink,
rename, link, chmod, checkpoints, clone_file, clone_range and the copy-on-write writes
that follow them, write mappings stored through and persisted, truncates under a pin),
printing the index of each operation when it has returned.  ``trial`` starts it, reads
acknowledgements until ``kill_after`` have come, sends SIGKILL, reads what else the child
acknowledged before it died, and mounts the pool: fsck must be clean, nothing busy, and
the volume exactly the state after the last acknowledged operation -- or, for the one
that was running, the state after it, or before it with only bytes it overwrites in place
torn (``daxfs.testing.crash.crash_state_error``).  The expected states come from running
the same workload in this process on a pool in memory.  Timestamps are left out: they
differ between the two runs.

A kill is not a power failure: stores that reached the page cache survive it.  What it
adds over the recording pool is real processes, a real pool file, its lock and owner
record, and the mapping code running when the signal lands.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from typing import Any

from daxfs.testing.crash import crash_state_error, describe
from daxfs.testing.workload import Workload, snapshot

POOL_SIZE = 8 << 20


@functools.lru_cache(maxsize=8)
def expected_states(seed: int, n: int, size: int = POOL_SIZE) -> tuple[list[dict], list[dict]]:
    """The state after each of the first ``n`` operations (``states[0]``: empty), and what
    each operation overwrites in place, from a run in memory."""
    from daxfs.media import MemoryPool
    from daxfs.volume import Volume

    pool = MemoryPool(size)
    Volume.format(pool)
    vol = Volume.mount(pool)
    states, tearable = [snapshot(vol, times=False)], []
    for op in Workload(seed, extended=True).ops(n):
        op.apply(vol)
        states.append(snapshot(vol, times=False))
        tearable.append(dict(op.tearable))
    vol.close()
    return states, tearable


def trial(path: str, seed: int, kill_after: int, n: int) -> dict[str, Any]:
    """One kill: returns ``{"acked": ..., "outcome": "after"|"before"|"torn"|"between"}``;
    raises AssertionError when the pool breaks the contract."""
    import daxfs

    if not 1 <= kill_after < n:
        raise ValueError("kill_after must be in [1, n)")
    daxfs.mkfs(path, POOL_SIZE).close()
    child = subprocess.Popen([sys.executable, "-m", "daxfs.testing.sigkill", path, str(seed), str(n)],
                             stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acked = 0
    try:
        while acked < kill_after:
            line = child.stdout.readline()
            assert line, f"the child died before {kill_after} acknowledgements (rc {child.poll()})"
            assert line.strip() == str(acked), f"acknowledgement {line!r}, expected {acked}"
            acked += 1
        child.send_signal(signal.SIGKILL)
        for line in child.stdout.read().split():
            assert line == str(acked) or line == "done", f"acknowledgement {line!r}, expected {acked}"
            if line != "done":
                acked += 1
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL, f"the child exited with {child.returncode}"
    states, tearable = expected_states(seed, n)
    with daxfs.open_volume(path) as vol:
        problems = vol.fsck()
        assert problems == [], f"seed {seed}, killed after {acked} ops: fsck {problems}"
        assert vol.statfs().busy == 0 and vol.pins() == []
        got = snapshot(vol, times=False)
    where = f"seed {seed}, killed after {acked} acknowledged ops"
    if acked == n:
        assert got == states[n], f"{where} (all): {describe(states[n], got)}"
        return {"acked": acked, "outcome": "between"}
    before, after = states[acked], states[acked + 1]
    error = crash_state_error(before, after, got, tearable[acked])
    assert error is None, f"{where}, inside op {acked}: {error}; {describe(before, got)}"
    outcome = "before" if got == before else "after" if got == after else "torn"
    if before == after:
        outcome = "between"          # the running op changes nothing visible (failed, checkpoint)
    return {"acked": acked, "outcome": outcome}


def _child(path: str, seed: int, n: int) -> None:
    import daxfs

    vol = daxfs.open_volume(path)
    for i, op in enumerate(Workload(seed, extended=True).ops(n)):
        op.apply(vol)
        print(i, flush=True)
    print("done", flush=True)
    sys.stdin.read()                 # wait to be killed: never close (the state is the last op's)
    os._exit(0)


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
