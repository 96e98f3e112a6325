"""Thread chaos, hundreds of trials: many threads change, share, map and pin the same files
at once, and no file may ever show another file's bytes (see daxfs.testing.chaos).

Usage::

    python stress/thread_chaos.py                      # 20 trials, 4 threads, 400 ops each
    python stress/thread_chaos.py --trials 200 --threads 6 --seed 7
    python stress/thread_chaos.py --front client       # threads as clients of `daxfs serve`
    python stress/thread_chaos.py --front client --kill-clients 2   # and clients SIGKILLed
    python stress/thread_chaos.py --front client --kill-server      # and the arbiter, half way

Prints one line per failure (with the seed to replay it) and a summary; exits 1 on any.
The memory failures it reports print their fences on stderr (``2>/dev/null`` hides them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from daxfs.testing.chaos_trial import trial
except ModuleNotFoundError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from daxfs.testing.chaos_trial import trial


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--ops", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--front", choices=["embedded", "client", "mount"], default="embedded",
                    help="client: each thread a client of `daxfs serve` in another process; mount: "
                         "half of them tools on its FUSE mount instead")
    ap.add_argument("--close-during", action="store_true",
                    help="half way through, close(force=True) races the threads (embedded)")
    ap.add_argument("--follower", action="store_true",
                    help="a read-only opener in another process reads every file all along")
    ap.add_argument("--kill-clients", type=int, default=0,
                    help="(client front) that many client processes beside the threads, each killed "
                         "with SIGKILL after a random number of operations and replaced")
    ap.add_argument("--kill-server", action="store_true",
                    help="(client front) half way through, SIGKILL the arbiter under the threads, start "
                         "another and churn with new clients while the old ones still hold their pins")
    ap.add_argument("--wait-s", type=float, default=0.01, help="timeout of the `wait` policy's calls")
    args = ap.parse_args()
    failures = 0
    totals: dict[str, int] = {}
    for t in range(args.trials):
        seed = args.seed * 100_003 + t
        try:
            counts = trial(seed, args.threads, args.ops, args.wait_s, front=args.front,
                           close_during=args.close_during, follower=args.follower,
                           kill_clients=args.kill_clients, kill_server=args.kill_server)
        except Exception as exc:  # noqa: BLE001 — one line a failure, then go on
            failures += 1
            print(f"FAIL seed={seed} threads={args.threads} ops={args.ops}: {exc}", flush=True)
            continue
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
    done = sum(v for k, v in totals.items() if ":" not in k and not k.startswith("follower"))
    refused = sum(v for k, v in totals.items() if ":" in k)
    print(f"{args.trials} trials, {failures} failed; {done} operations done, {refused} refused or lost a race")
    for k in sorted(totals):
        print(f"  {k}: {totals[k]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
