"""A process killed with SIGKILL mid-workload leaves a pool that mounts clean.

The child runs a deterministic workload and reports each finished operation;
the parent kills it at a random moment, mounts the pool, and checks fsck is
clean and the volume holds exactly the operations reported done (plus, at
most, the one that was running: its open may have landed without its write).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import daxfs

CHILD = r"""
import sys, daxfs
vol = daxfs.open_volume(sys.argv[1])
j = 0
while True:
    if j % 4 == 3:
        vol.unlink(f"/f{j - 3}")
    else:
        with vol.open(f"/f{j}", "wb") as f:
            f.write(bytes([j % 251]) * (j * 37 % 20000 + 1))
    print(j, flush=True)
    j += 1
"""


def _expected(done: int) -> dict[str, bytes]:
    """The files after operations 0..done have run."""
    files: dict[str, bytes] = {}
    for j in range(done + 1):
        if j % 4 == 3:
            files.pop(f"/f{j - 3}", None)
        else:
            files[f"/f{j}"] = bytes([j % 251]) * (j * 37 % 20000 + 1)
    return files


def _contents(vol: daxfs.Volume) -> dict[str, bytes]:
    out = {}
    for name in vol.listdir("/"):
        with vol.open("/" + name, "rb") as f:
            out["/" + name] = f.read()
    return out


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1])
def test_sigkill_mid_workload_mounts_clean(delay: float) -> None:
    path = f"/dev/shm/daxfs-kill-{uuid.uuid4().hex}.pool"
    daxfs.mkfs(path, 64 << 20).close()
    try:
        child = subprocess.Popen([sys.executable, "-c", CHILD, path], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        first = child.stdout.readline()         # started and working
        assert first.strip() == "0"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read().split()
        child.wait()
        done = int(rest[-1]) if rest else 0
        assert done > 10, "the child made too little progress to test anything"
        with daxfs.open_volume(path) as vol:
            assert vol.fsck() == []
            got = _contents(vol)
        running = done + 1
        allowed = [_expected(done), _expected(running)]
        if running % 4 != 3:
            # open("wb") and write are two calls: the kill may land between them
            allowed.append({**_expected(done), f"/f{running}": b""})
        assert got in allowed
    finally:
        os.unlink(path)
