"""SIGKILL stress: hundreds of kills after random numbers of acknowledged operations.

Each trial formats a pool in /dev/shm, runs the extended seeded workload (every operation
kind: writes in place and allocating, truncate, punch, zero_range, fallocate, mkdir, rmdir,
unlink, rename, link, chmod, checkpoints, clone_file, clone_range and the copy-on-write
writes after them, write mappings stored through and persisted, truncates under a pin) in a
child process, kills it with SIGKILL once a random number of operations has been
acknowledged, and holds the pool to the crash oracle (daxfs.testing.sigkill.trial): fsck
clean, nothing busy, every acknowledged operation present exactly, the running one
all-or-nothing (bytes it overwrote in place excepted).

Usage::

    python stress/sigkill_stress.py                  # 250 trials
    python stress/sigkill_stress.py --trials 1000 --seed 7

Prints one line per failure and a summary; exits 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import time
import traceback
import uuid
from pathlib import Path

try:
    from daxfs.testing.sigkill import trial
except ModuleNotFoundError:  # a checkout without `pip install -e .`
    src = str(Path(__file__).resolve().parent.parent / "src")
    sys.path.insert(0, src)
    os.environ["PYTHONPATH"] = src + os.pathsep + os.environ.get("PYTHONPATH", "")
    from daxfs.testing.sigkill import trial


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=250)
    ap.add_argument("--ops", type=int, default=300, help="operations in each workload")
    ap.add_argument("--seeds", type=int, default=25, help="distinct workloads the trials draw from")
    ap.add_argument("--seed", type=int, default=0, help="seeds the choice of workloads and kill points")
    ap.add_argument("--dir", default="/dev/shm")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    outcomes: collections.Counter = collections.Counter()
    kinds_killed: collections.Counter = collections.Counter()
    failures = []
    started = time.monotonic()
    from daxfs.testing import Workload
    for i in range(args.trials):
        seed = rng.randrange(args.seeds)
        kill_after = rng.randrange(1, args.ops)
        path = os.path.join(args.dir, f"daxfs-sigkill-{uuid.uuid4().hex}.pool")
        try:
            result = trial(path, seed, kill_after, args.ops)
            outcomes[result["outcome"]] += 1
            if result["acked"] < args.ops:
                running = list(Workload(seed, extended=True).ops(result["acked"] + 1))[-1]
                kinds_killed[running.kind] += 1
        except AssertionError as exc:
            failures.append((seed, kill_after, str(exc)))
            print(f"FAIL trial {i}: seed {seed}, kill after {kill_after}: {exc}", flush=True)
        except Exception:                       # noqa: BLE001 - report and go on
            failures.append((seed, kill_after, traceback.format_exc()))
            print(f"ERROR trial {i}: seed {seed}, kill after {kill_after}:\n{traceback.format_exc()}", flush=True)
        finally:
            if os.path.exists(path):
                os.unlink(path)
    took = time.monotonic() - started
    print(f"{args.trials} trials in {took:.0f} s: {len(failures)} failed; outcomes {dict(outcomes)}")
    print(f"operation running at the kill: {dict(sorted(kinds_killed.items()))}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
