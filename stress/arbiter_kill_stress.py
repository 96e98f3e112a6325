"""Arbiter kill stress: clients killed with SIGKILL at random moments while holding pins,
mappings, leases and prepared writes; now and then the arbiter itself.

One arbiter (``daxfs serve``) serves a pool in /dev/shm.  Each trial starts a client
process that runs a seeded random mix — pins (read and write), mappings (plain, write,
leases), inline and prepared (large) writes, truncates and punches under its own references,
clones, unlinks of files it still maps — and reports each acknowledged operation on stdout.
After a random number of acknowledgements the trial kills it with SIGKILL, then a checker
client requires, once the arbiter has noticed:

- no reference of the dead client is left (``vol.pins()``), nothing is busy;
- ``free + used + busy + bad == size`` and ``fsck()`` is clean;
- every file the dead client finished writing reads back exactly (acknowledged = durable).

Every ``--server-every`` trials the arbiter is killed too (mid-workload), restarted, and the
same checks run on the restarted one.

Usage::

    python stress/arbiter_kill_stress.py                 # 250 trials
    python stress/arbiter_kill_stress.py --trials 50 --seed 3

Prints one line per failure and a summary; exits 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = SRC + os.pathsep + os.environ.get("PYTHONPATH", "")

import daxfs  # noqa: E402

CLIENT = r'''
import json, random, sys
import daxfs
pool, seed, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(seed)
c = daxfs.connect(pool, name=f"victim-{tag}")
held = []
files = []
def ack(kind, **info):
    print(json.dumps([kind, info]), flush=True)
for step in range(400):
    kind = rng.choice(["write", "bigwrite", "pin", "wpin", "map", "wmap", "lease", "release", "truncate",
                       "punch", "clone", "unlink"])
    if kind in ("write", "bigwrite"):
        name = f"/{tag}-{step}"
        data = bytes([step % 251 + 1]) * (rng.randrange(1, 9000) if kind == "write" else rng.randrange(70000, 300000))
        with c.open(name, "wb") as f:
            f.write(data)
        files.append(name)
        ack(kind, path=name, byte=data[0], size=len(data))
    elif not files:
        continue
    elif kind in ("pin", "wpin", "map", "wmap", "lease"):
        path = rng.choice(files)
        f = c.open(path, "r+b")
        size = f.stat().st_size
        if size == 0:
            f.close(); continue
        off = rng.randrange(0, size)
        n = rng.randrange(1, size - off + 1)
        if kind == "pin":
            held.append(f.pin(off, n))
        elif kind == "wpin":
            held.append(f.pin(off, n, write=True))
        elif kind == "map":
            held.append(f.map(off, n))
        elif kind == "wmap":
            m = f.map(off, n, write=True)
            m.persist()
            held.append(m)
        else:
            held.append(f.map(off, n, lease=True))
        held.append(f)
        ack(kind, path=path)
    elif kind == "release" and held:
        thing = held.pop(rng.randrange(len(held)))
        (thing.release if hasattr(thing, "release") else thing.close)()
        ack(kind)
    elif kind == "truncate":
        path = rng.choice(files)
        ack("begin", path=path)                # a kill during it leaves the file either way
        with c.open(path, "r+b") as f:
            f.truncate(rng.randrange(0, f.stat().st_size + 1))
        files.remove(path)                     # its content is no longer the written one
        ack(kind, path=path)
    elif kind == "punch":
        path = rng.choice(files)
        ack("begin", path=path)
        with c.open(path, "r+b") as f:
            size = f.stat().st_size
            if size:
                f.punch_hole(rng.randrange(0, size), rng.randrange(1, 9000))
        files.remove(path)
        ack(kind, path=path)
    elif kind == "clone":
        path = rng.choice(files)
        try:
            c.clone_file(path, path + "-clone")
        except daxfs.BusyError:          # a write pin or write mapping of its own covers it
            continue
        ack(kind, path=path)
    elif kind == "unlink":
        path = rng.choice(files)
        ack("begin", path=path)
        c.unlink(path)
        files.remove(path)
        ack(kind, path=path)
ack("end")
sys.stdin.read()
'''


class Arbiter:
    def __init__(self, pool: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "daxfs", "serve", pool, "--lease-break-s", "0.2"],
                                     stderr=subprocess.DEVNULL)
        for _ in range(3000):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(pool + ".sock")
                return
            except OSError:
                time.sleep(0.01)
            finally:
                probe.close()
        raise RuntimeError("daxfs serve did not start")


def check(pool: str, written: dict[str, tuple[int, int]], victim: str) -> list[str]:
    problems = []
    with daxfs.connect(pool, name="checker") as vol:
        for _ in range(2000):
            left = [i for i in vol.pins() if i.holder == victim]
            if not left and vol.statfs().busy == 0:
                break
            time.sleep(0.005)
        else:
            problems.append(f"references left: {vol.pins()}, busy {vol.statfs().busy}")
        fs = vol.statfs()
        if fs.free + fs.used + fs.busy + fs.bad != fs.size:
            problems.append(f"space does not add up: {fs}")
        problems += vol.fsck()
        for path, (byte, size) in written.items():
            try:
                with vol.open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                problems.append(f"{path}: acknowledged write lost")
                continue
            if data != bytes([byte]) * size:
                problems.append(f"{path}: acknowledged bytes differ ({len(data)} vs {size})")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--server-every", type=int, default=10, help="kill the arbiter too every N trials")
    ap.add_argument("--dir", default="/dev/shm")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    pool = os.path.join(args.dir, f"daxfs-arbiter-stress-{uuid.uuid4().hex}.pool")
    daxfs.mkfs(pool, 512 << 20).close()
    arbiter = Arbiter(pool)
    failures = 0
    kinds: collections.Counter = collections.Counter()
    started = time.monotonic()
    try:
        for t in range(args.trials):
            tag = f"t{t}"
            kill_after = rng.randrange(1, 120)
            child = subprocess.Popen([sys.executable, "-c", CLIENT, pool, str(rng.randrange(1 << 30)), tag],
                                     stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
            written: dict[str, tuple[int, int]] = {}
            acks = 0

            def account(line: str) -> str:
                kind, info = json.loads(line)
                if kind in ("write", "bigwrite"):
                    written[info["path"]] = (info["byte"], info["size"])
                elif kind in ("begin", "truncate", "punch", "unlink"):
                    # begun: whether it landed before the kill is unknown, so is the file
                    written.pop(info["path"], None)
                if kind != "begin":
                    kinds[kind] += 1
                return kind

            for line in child.stdout:  # type: ignore[union-attr]
                kind = account(line)
                acks += kind != "begin"
                if acks >= kill_after or kind == "end":
                    break
            kill_server = args.server_every and t % args.server_every == args.server_every - 1
            if kill_server:
                arbiter.proc.kill()                  # mid-workload, the client still alive
            child.kill()
            child.wait()
            for line in child.stdout:  # type: ignore[union-attr]
                account(line)          # what it finished (and began) before the kill landed
            child.stdout.close()  # type: ignore[union-attr]
            child.stdin.close()  # type: ignore[union-attr]
            if kill_server:
                arbiter.proc.wait()
                arbiter = Arbiter(pool)
                kinds["arbiter killed"] += 1
            problems = check(pool, written, f"victim-{tag}")
            if problems:
                failures += 1
                print(f"trial {t} (killed after {acks} acks{', arbiter too' if kill_server else ''}): "
                      + "; ".join(problems[:5]), flush=True)
    finally:
        arbiter.proc.send_signal(signal.SIGTERM)
        arbiter.proc.wait(30)
        for leftover in (pool, pool + ".sock", pool + ".holders"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    took = time.monotonic() - started
    print(f"{args.trials} trials, {failures} failed, {took:.0f} s; acknowledged operations by kind: "
          + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
