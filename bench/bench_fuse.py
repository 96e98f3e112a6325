"""FUSE benchmark: a ``daxfs mount`` beside tmpfs, driven by another process's system calls.

Prints one table, measured in one run, with a row per operation.  The mount is the one
``daxfs mount`` makes (libfuse 3 through mfusepy, the same options and readahead), served
by this process on a sparse pool in a scratch directory under /dev/shm; the baseline is a
directory on /dev/shm itself (tmpfs).  Every operation runs in a child Python process that
makes plain ``os`` calls on one side and times itself, as any program on the mount would:

* sequential write (GB/s): create a file and ``os.write`` it in 1 MiB requests, close;
  target at least 0.5× tmpfs;
* sequential read (GB/s): open the file just written and ``os.readv`` it into a 1 MiB
  buffer to the end; target at least 0.5× tmpfs (each open drops the kernel's cached pages of
  a daxfs file, so the reads reach the volume);
* the same two with ``O_DIRECT`` on both sides (a page-aligned buffer; tmpfs takes O_DIRECT
  too): the kernel hands the daemon the program's own pages instead of copying them through
  the mount's page cache; target at least 0.5× tmpfs;
* create + 4 KiB write + close, stat, readdir of the directory, unlink (µs per file, ms per
  listing) for N files in one directory: reported;
* ``cp`` of the big file to a new name (GB/s, GNU cp: ``copy_file_range`` first): reported,
  with the kernel requests the mount saw per cp (reads, writes, copy_file_range) and the
  bytes per read or write request.

Both sides write fresh pages: every round deletes what it made (tmpfs frees the pages; the
pool is sparse and discards freed blocks online, so its next write takes new memory too).
Rounds alternate which side goes first; each row is the median of its rounds after one
warm-up round.

Usage::

    python bench/bench_fuse.py               # full run: 1 GiB, 10,000 files, 3 rounds (~2 min)
    python bench/bench_fuse.py --quick       # smoke run: 64 MiB, 1,000 files, 1 round
    python bench/bench_fuse.py --markdown    # the table as Markdown

Needs /dev/fuse, libfuse 3 (Debian's fuse3) and root (or fusermount3).  Not run by the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _table  # noqa: E402
from _table import MiB, Row, Target, absolute_row, latency_row, throughput_row  # noqa: E402

import daxfs  # noqa: E402
from daxfs.adapters.fuse_mount import FuseMount, fuse_available  # noqa: E402

#: The child: one operation on one side, timed by itself; prints a JSON number (ns).
CHILD = r"""
import json, os, sys, time
op, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
big, chunk = os.path.join(root, "big"), 1 << 20
names = [os.path.join(root, "many", f"f{i:05d}") for i in range(n)]
t = time.perf_counter_ns()
if op == "write":
    block = b"w" * chunk
    fd = os.open(big, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(n):
        os.write(fd, block)
    os.close(fd)
elif op == "read":
    buf = bytearray(chunk)
    fd = os.open(big, os.O_RDONLY)
    while os.readv(fd, [buf]):
        pass
    os.close(fd)
elif op == "write_direct":      # O_DIRECT: no page cache on either side, a page-aligned buffer
    import mmap
    block = mmap.mmap(-1, chunk)
    block.write(b"d" * chunk)
    fd = os.open(big, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    for _ in range(n):
        os.write(fd, block)
    os.close(fd)
elif op == "read_direct":
    import mmap
    buf = mmap.mmap(-1, chunk)
    fd = os.open(big, os.O_RDONLY | os.O_DIRECT)
    while os.readv(fd, [buf]):
        pass
    os.close(fd)
elif op == "cp":
    import subprocess
    subprocess.run(["cp", big, big + ".copy"], check=True)
elif op == "create":
    data = b"c" * 4096
    for name in names:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
elif op == "stat":
    for name in names:
        os.stat(name)
elif op == "readdir":
    for _ in range(5):
        assert len(os.listdir(os.path.join(root, "many"))) == n
elif op == "unlink_big":
    for name in (big, big + ".copy"):
        if os.path.exists(name):
            os.unlink(name)
elif op == "unlink":
    for name in names:
        os.unlink(name)
print(json.dumps(time.perf_counter_ns() - t))
"""


@dataclass(frozen=True)
class Config:
    big_mib: int
    files: int
    rounds: int


FULL_CONFIG = Config(big_mib=1024, files=10_000, rounds=3)
QUICK_CONFIG = Config(big_mib=64, files=1_000, rounds=1)


def child(op: str, root: str, n: int) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, op, root, str(n)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{op} on {root} failed: {done.stderr.strip()[-500:]}")
    return float(json.loads(done.stdout))


class FuseBench:
    def __init__(self, config: Config, scratch: Path, cleanup: contextlib.ExitStack) -> None:
        why = fuse_available()
        if why is not None:
            raise SystemExit(f"bench_fuse: {why}")
        self.config = config
        self.notes: list[str] = []
        self.tmpfs = scratch / "tmpfs"
        self.mnt = scratch / "mnt"
        self.tmpfs.mkdir()
        self.mnt.mkdir()
        size = (3 * config.big_mib + 256) * MiB + config.files * 8192
        self.volume = daxfs.mkfs(str(scratch / "bench.pool"), size, sparse=True)
        cleanup.callback(_table.close_volume_quietly, self.volume, "the pool")
        self.daemon_write_ns = [0, 0]       # (time, requests) in the mount's write handler
        _time_writes(self.daemon_write_ns)
        self.mount = FuseMount(self.volume, str(self.mnt)).start()
        cleanup.callback(self.mount.stop)
        self.sides = {"daxfs": str(self.mnt), "tmpfs": str(self.tmpfs)}
        for root in self.sides.values():
            os.mkdir(os.path.join(root, "many"))

    def _counts(self) -> dict[str, int]:
        assert self.mount.handlers is not None
        return dict(self.mount.handlers.counts)

    def _timed(self, ops: Sequence[str], n: dict[str, int]) -> dict[str, dict[str, list[float]]]:
        """``ops`` in order on each side per round (the last cleans up); the sides alternate."""
        samples: dict[str, dict[str, list[float]]] = {op: {side: [] for side in self.sides} for op in ops}

        def one_round(side: str, index: int) -> float:
            for op in ops:
                took = child(op, self.sides[side], n[op])
                if index > 0:
                    samples[op][side].append(took)
            return 0.0

        _table.interleaved_rounds(self.config.rounds + 1, {
            side: (lambda index, side=side: one_round(side, index)) for side in self.sides})
        return samples

    def run(self) -> list[Row]:
        cfg = self.config
        big = cfg.big_mib * MiB
        rows: list[Row] = []
        seq = self._timed(["write", "read", "cp", "unlink_big"], {"write": cfg.big_mib, "read": 0, "cp": 0,
                                                                    "unlink_big": 0})
        med = {op: {side: _table.median(v) for side, v in sides.items()} for op, sides in seq.items()}
        self._where_write_time_goes(cfg, seq)
        rows.append(throughput_row(f"sequential write, {cfg.big_mib} MiB in 1 MiB requests",
                                   big / med["write"]["daxfs"], big / med["write"]["tmpfs"], Target.min_ratio(0.5)))
        rows.append(throughput_row(f"sequential read, {cfg.big_mib} MiB in 1 MiB requests",
                                   big / med["read"]["daxfs"], big / med["read"]["tmpfs"], Target.min_ratio(0.5)))
        rows.append(throughput_row(f"cp of the {cfg.big_mib} MiB file (GNU cp)",
                                   big / med["cp"]["daxfs"], big / med["cp"]["tmpfs"], Target.none()))
        direct = self._timed(["write_direct", "read_direct", "unlink_big"],
                             {"write_direct": cfg.big_mib, "read_direct": 0, "unlink_big": 0})
        dmed = {op: {side: _table.median(v) for side, v in sides.items()} for op, sides in direct.items()}
        rows.append(throughput_row(f"sequential write, O_DIRECT on both sides, {cfg.big_mib} MiB in 1 MiB requests",
                                   big / dmed["write_direct"]["daxfs"], big / dmed["write_direct"]["tmpfs"],
                                   Target.min_ratio(0.5)))
        rows.append(throughput_row(f"sequential read, O_DIRECT on both sides, {cfg.big_mib} MiB in 1 MiB requests",
                                   big / dmed["read_direct"]["daxfs"], big / dmed["read_direct"]["tmpfs"],
                                   Target.min_ratio(0.5)))
        rows.extend(self._requests_per_cp(big))
        meta = self._timed(["create", "stat", "readdir", "unlink"], {op: cfg.files for op in
                                                                     ("create", "stat", "readdir", "unlink")})
        per = {op: {side: _table.median(v) for side, v in sides.items()} for op, sides in meta.items()}
        for op, label in (("create", "create + 4 KiB write + close"), ("stat", "stat"), ("unlink", "unlink")):
            rows.append(latency_row(f"{label} ({cfg.files:,} files)", per[op]["daxfs"] / cfg.files,
                                    per[op]["tmpfs"] / cfg.files, Target.none()))
        rows.append(absolute_row(f"readdir of {cfg.files:,} entries", "ms", per["readdir"]["daxfs"] / 5 / 1e6,
                                 per["readdir"]["tmpfs"] / 5 / 1e6, Target.none()))
        problems = self.volume.fsck()
        self.notes.append(f"fsck after the run: {'clean' if not problems else problems}")
        return rows

    def _where_write_time_goes(self, cfg: Config, seq: dict[str, dict[str, list[float]]]) -> None:
        """A note: how much of a 1 MiB write() on the mount the daemon spent, beside tmpfs's."""
        spent, requests = self.daemon_write_ns
        if not requests:
            return
        runs = len(seq["write"]["daxfs"]) + 1       # (and the warm-up round)
        per_write = _table.median(seq["write"]["daxfs"]) / cfg.big_mib / 1e3
        daemon = spent / requests / 1e3
        tmpfs = _table.median(seq["write"]["tmpfs"]) / cfg.big_mib / 1e3
        self.notes.append(
            f"sequential write, per 1 MiB write(): {per_write:.0f} µs on the mount, of which {daemon:.0f} µs in "
            f"the daemon's write handler (blocks, the one copy into the pool, the record; mean of {requests:,} "
            f"requests over {runs} writes of the file), {per_write - daemon:.0f} µs outside it (the kernel "
            f"copying the program's bytes into the mount's page cache, then the request's round trip and "
            f"libfuse's copy of it); tmpfs: {tmpfs:.0f} µs for its one copy. Writes are write-through (no "
            f"writeback cache: it would hide a client's size changes), so the kernel's copy and the "
            f"daemon's run one after the other")

    def _requests_per_cp(self, big: int) -> list[Row]:
        """One more cp on the mount, counting what the kernel asked of the daemon."""
        child("write", self.sides["daxfs"], self.config.big_mib)
        before = self._counts()
        child("cp", self.sides["daxfs"], 0)
        after = self._counts()
        child("unlink_big", self.sides["daxfs"], 0)
        asked = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        rows = []
        for name in ("read", "write", "copy_file_range"):
            rows.append(absolute_row(f"kernel {name} requests per cp", "requests", asked.get(name, 0), None,
                                     Target.none()))
        io = asked.get("read", 0) + asked.get("write", 0)
        if io:
            self.notes.append(f"cp: {io} read/write requests, {big / io / MiB:.2f} MiB each on average")
        self.notes.append("every request the mount saw during that cp: "
                          + ", ".join(f"{k} {v}" for k, v in sorted(asked.items()) if v))
        return rows


def _time_writes(total: list[int]) -> None:
    """Count the mount's write handler's time into ``total`` (``[ns, requests]``): patched on
    the class before the mount registers its callbacks, for this benchmark only."""
    from daxfs.adapters import fuse_ops

    write = fuse_ops.Handlers.write

    def timed(self: Any, path: Any, buf: Any, size: int, offset: int, fip: Any) -> int:
        t = time.perf_counter_ns()
        try:
            return write(self, path, buf, size, offset, fip)
        finally:
            total[0] += time.perf_counter_ns() - t
            total[1] += 1

    timed.__name__ = write.__name__
    fuse_ops.Handlers.write = timed


def _notes(config: Config, bench_notes: Sequence[str], total_s: float) -> list[str]:
    return [
        _table.environment_line(),
        "daxfs: this process serves a daxfs mount (FuseMount, as `daxfs mount` does) of a sparse pool "
        "in /dev/shm; tmpfs: a directory in /dev/shm. A child process makes the os calls on each side.",
        "both sides on fresh pages: each round removes its files (tmpfs frees the pages; the pool "
        "discards freed blocks online).",
        f"{config.rounds} rounds after one warm-up, sides alternating; medians.",
        *bench_notes,
        f"total {total_s:.0f} s",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return _table.run_bench(
        argv, description=__doc__.split("\n\n")[0],
        quick_help="smoke run: 64 MiB, 1,000 files, 1 round",
        dir_help="where the pool and the tmpfs side go (default: /dev/shm)",
        scratch_prefix="daxfs-bench-fuse-", full_config=FULL_CONFIG, quick_config=QUICK_CONFIG,
        make_bench=FuseBench, notes=_notes, header=_table.BASELINE_TABLE_HEADER)


if __name__ == "__main__":
    sys.exit(main())

