"""Metadata at scale (issue 12): create latency while a volume grows, checkpoints, mount, memory.

Each measure runs in a fresh interpreter (``python _scale_metadata.py PROBE ...`` prints one
JSON object), so no heap, cache or GC state carries from one to the next.

* ``grow N``: a volume (a sparse pool on /dev/shm) and a /dev/shm directory grow from 0 to N
  empty files, 1,000 per directory, created and closed one at a time, interleaved in blocks
  of 1,000 (daxfs block, os block, ...).  Reports p50 / p99 / max of one create in wall time
  and in the thread's CPU time (which a busy machine's preemptions do not inflate), the
  longest CPU time one operation spent on checkpoint work (the stop-the-world part: starting a
  checkpoint, slices of one being written, and any whole checkpoint), the longest cyclic-GC pause met on
  the way, then a whole checkpoint of the grown volume (µs per file).
* ``mount N``: mounting that volume in a fresh process (s), and the private memory it takes
  (RssAnon growth, KiB per file), beside an ``os.scandir`` walk with ``stat`` of the same tree.
* ``small N``: create + 4 KiB write + close, in interleaved rounds of N files, both sides
  unlinking their files after each round (fresh pages on both sides).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import daxfs
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import daxfs

PER_DIR = 1000
OS_CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY


def _percentiles(ns: list[int]) -> dict[str, float]:
    ns = sorted(ns)
    n = len(ns)
    return {"p50_us": ns[n // 2] / 1e3, "p99_us": ns[n * 99 // 100] / 1e3, "max_ms": ns[-1] / 1e6}


def _pool_size(files: int) -> int:
    # the checkpoint area is a 64th of the pool: room for each file's row, twice over
    return max(1 << 30, files * 16 * 1024)


def probe_grow(files: int, where: Path) -> dict[str, object]:
    from daxfs.volume.journal import Journal

    longest = [0]
    finish, checkpoint = Journal._finish, Journal.checkpoint
    gc_pause = [0, 0, 0, 0]      # longest, when the current one started, all of them, at which file

    # Checkpoint work is timed in CPU time (this thread's), less any collection that ran
    # inside it (the GC's, counted apart): what daxfs does, without the machine's noise.
    cpu = time.thread_time_ns

    def timed(method: Callable[..., None]) -> Callable[..., None]:
        def run(self: Journal, *args: Any) -> None:
            t, paused = cpu(), gc_pause[2]
            try:
                method(self, *args)
            finally:
                longest[0] = max(longest[0], cpu() - t - (gc_pause[2] - paused))
        return run

    start_writer = Journal._start
    Journal._finish = timed(finish)                 # type: ignore[method-assign]
    Journal.checkpoint = timed(checkpoint)          # type: ignore[method-assign]
    Journal._start = timed(start_writer)            # type: ignore[method-assign]
    made = [0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_pause[1] = cpu()
            return
        took = cpu() - gc_pause[1]
        gc_pause[2] += took
        if took > gc_pause[0]:
            gc_pause[0], gc_pause[3] = took, made[0]

    gc.callbacks.append(on_gc)
    pool = where / "grow.pool"
    tree = where / "grow.tree"
    tree.mkdir()
    vol = daxfs.mkfs(str(pool), size=_pool_size(files), sparse=True)
    ours: list[int] = []
    ours_cpu: list[int] = []
    theirs: list[int] = []
    theirs_cpu: list[int] = []
    clock = time.perf_counter_ns
    for start in range(0, files, PER_DIR):
        d = start // PER_DIR
        vol.mkdir(f"/d{d}")
        os.mkdir(tree / f"d{d}")
        for i in range(start, min(files, start + PER_DIR)):
            name = f"/d{d}/f{i}"
            made[0] = i
            c, t = cpu(), clock()
            vol.open(name, "wb", buffering=0).close()
            ours.append(clock() - t)
            ours_cpu.append(cpu() - c)
        base = str(tree / f"d{d}")
        for i in range(start, min(files, start + PER_DIR)):
            name = f"{base}/f{i}"
            c, t = cpu(), clock()
            os.close(os.open(name, OS_CREATE_FLAGS, 0o644))
            theirs.append(clock() - t)
            theirs_cpu.append(cpu() - c)
    gc.callbacks.remove(on_gc)
    in_op_checkpoint = longest[0]
    Journal._finish, Journal.checkpoint, Journal._start = finish, checkpoint, start_writer  # type: ignore[method-assign]
    t = clock()
    vol.checkpoint()
    whole = clock() - t
    vol.close()
    return {"daxfs": _percentiles(ours), "os": _percentiles(theirs),
            "daxfs_cpu": _percentiles(ours_cpu), "os_cpu": _percentiles(theirs_cpu),
            "checkpoint_in_op_ms": in_op_checkpoint / 1e6, "gc_pause_ms": gc_pause[0] / 1e6,
            "gc_pause_at": gc_pause[3],
            "whole_checkpoint_us_per_file": whole / 1e3 / files}


def _rss_anon_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon in /proc/self/status")


def probe_mount(files: int, where: Path) -> dict[str, object]:
    before = _rss_anon_kib()
    t = time.perf_counter_ns()
    vol = daxfs.open_volume(str(where / "grow.pool"))
    took = time.perf_counter_ns() - t
    gc.collect()
    grown = _rss_anon_kib() - before
    assert len(vol.listdir("/")) == -(-files // PER_DIR)
    vol.close()
    t = time.perf_counter_ns()
    seen = 0
    stack = [str(where / "grow.tree")]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                entry.stat(follow_symlinks=False)
                seen += 1
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    walk = time.perf_counter_ns() - t
    return {"mount_s": took / 1e9, "walk_s": walk / 1e9, "rss_kib_per_file": grown / files}


def probe_small(files: int, where: Path) -> dict[str, object]:
    vol = daxfs.mkfs(str(where / "small.pool"), size=1 << 30)
    tree = where / "small.tree"
    tree.mkdir()
    payload = b"x" * 4096
    ours: list[float] = []
    theirs: list[float] = []
    clock = time.perf_counter_ns
    for rnd in range(7):
        for side in (("daxfs", "os") if rnd % 2 else ("os", "daxfs")):
            if side == "daxfs":
                t = clock()
                for i in range(files):
                    with vol.open(f"/f{i}", "wb", buffering=0) as f:
                        f.write(payload)
                took = clock() - t
                for i in range(files):
                    vol.unlink(f"/f{i}")
                ours.append(took / files)
            else:
                base = str(tree)
                t = clock()
                for i in range(files):
                    fd = os.open(f"{base}/f{i}", OS_CREATE_FLAGS, 0o644)
                    os.write(fd, payload)
                    os.close(fd)
                took = clock() - t
                for i in range(files):
                    os.unlink(f"{base}/f{i}")
                theirs.append(took / files)
    vol.close()
    ours.sort()
    theirs.sort()
    return {"daxfs_us": ours[3] / 1e3, "os_us": theirs[3] / 1e3}


PROBES = {"grow": probe_grow, "mount": probe_mount, "small": probe_small}


def metadata_rows(sizes: list[int], small_files: int, where: Path) -> tuple[list[Any], list[str]]:
    """Issue 12's metadata rows for volumes of each size in ``sizes``, and notes."""
    from _table import Row, Target, absolute_row, latency_row

    rows: list[Row] = []
    notes: list[str] = []
    for files in sizes:
        scratch = where / f"meta-{files}"
        scratch.mkdir()
        try:
            grow = run_probe("grow", files, scratch)
            mount = run_probe("mount", files, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        ours, theirs = grow["daxfs_cpu"], grow["os_cpu"]
        label = f"{files:,} files"
        rows += [
            absolute_row(f"create, slowest (CPU) growing to {label}", "ms", ours["max_ms"], theirs["max_ms"],
                         Target.max_value(10.0)),
            absolute_row(f"create, slowest (wall) growing to {label}", "ms", grow["daxfs"]["max_ms"],
                         grow["os"]["max_ms"], Target.none()),
            latency_row(f"create, p99 (wall) growing to {label}", grow["daxfs"]["p99_us"] * 1e3,
                        grow["os"]["p99_us"] * 1e3, Target.none()),
            latency_row(f"create, p50 (wall) growing to {label}", grow["daxfs"]["p50_us"] * 1e3,
                        grow["os"]["p50_us"] * 1e3, Target.none()),
            absolute_row(f"checkpoint work in one operation, {label}", "ms", grow["checkpoint_in_op_ms"], None,
                         Target.max_value(10.0)),
            absolute_row(f"whole checkpoint per file, {label}", "µs", grow["whole_checkpoint_us_per_file"],
                         None, Target.none()),
            absolute_row(f"mount per file, {label} (os: scandir+stat walk)", "µs",
                         mount["mount_s"] * 1e6 / files, mount["walk_s"] * 1e6 / files, Target.max_value(2.0)),
            absolute_row(f"private memory per file after mount, {label}", "KiB", mount["rss_kib_per_file"],
                         None, Target.max_value(0.5)),
        ]
        notes.append(f"{label}: longest cyclic-GC pause {grow['gc_pause_ms']:.1f} ms (CPU) at file "
                     f"{grow['gc_pause_at']:,}; mount {mount['mount_s']:.2f} s, os walk {mount['walk_s']:.2f} s")
    scratch = where / "meta-small"
    scratch.mkdir()
    try:
        small = run_probe("small", small_files, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows.append(latency_row("create + 4 KiB write + close (both unlink each round)", small["daxfs_us"] * 1e3,
                            small["os_us"] * 1e3, Target.max_ratio(1.5)))
    notes.append("create rows: empty files, 1,000 per directory, daxfs and os interleaved a directory at a "
                 "time; CPU time is the thread's (time.thread_time), which preemption by other "
                 "processes does not inflate; each size measured in a fresh interpreter")
    return rows, notes


def run_probe(name: str, files: int, where: Path) -> dict[str, object]:
    """``name``'s figures, measured in a fresh interpreter."""
    done = subprocess.run([sys.executable, __file__, name, str(files), str(where)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)     # type: ignore[no-any-return]


if __name__ == "__main__":
    print(json.dumps(PROBES[sys.argv[1]](int(sys.argv[2]), Path(sys.argv[3]))))
