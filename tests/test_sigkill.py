"""A process killed with SIGKILL mid-workload leaves a pool that mounts clean and exact.

The child runs the extended seeded workload (every operation kind: writes in place and
allocating, truncate, punch, rename, mkdir, unlink, link, clone_file and clone_range with
the copy-on-write writes after them, write mappings stored through and persisted,
truncates under a pin, checkpoints) and acknowledges each operation; the parent kills it
after a random number of acknowledgements and holds the pool to the crash oracle: fsck
clean, nothing busy, every acknowledged operation present exactly, the running one
all-or-nothing (bytes it overwrote in place excepted).  See daxfs.testing.sigkill;
stress/sigkill_stress.py runs hundreds of these.
"""

from __future__ import annotations

import os
import random
import uuid

import pytest

from daxfs.testing.sigkill import trial

N_OPS = 150


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_sigkill_after_a_random_number_of_acknowledged_operations(seed: int) -> None:
    path = f"/dev/shm/daxfs-kill-{uuid.uuid4().hex}.pool"
    kill_after = random.Random(seed).randrange(1, N_OPS)
    try:
        result = trial(path, seed, kill_after, N_OPS)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    assert result["acked"] >= kill_after
