"""Memory-failure benchmark: what ``memory_failure`` costs, and what its checks cost when nothing is bad.

Prints one table, measured in one run, with a row per operation:

* ``vol.memory_failure(pool_offset, 4096)`` on a block shared by 10, 100 and 1,000 files
  (ms per call: it finds every owner in the reverse map, logs the quarantine and acts on
  every reference over the block), beside ``vol.owners`` of the same block (the reverse-map
  lookup alone; a reference, no target);
* how it grows with owners: the 1,000-owner time over the 10-owner time (target: no worse
  than linear, ≤ 100×);
* 4 KiB ``pread`` at random offsets of a 4 MiB file, and ``map`` + ``close`` of a 4 KiB
  file, on a volume with no bad blocks: this code beside the code before memory failures
  were handled (``--baseline-src``, e.g. a worktree of main at 99c069f), each in a worker
  process of its own, their rounds interleaved.  Target: ≤ 1.05× (the poison check on those
  hot paths is one truth test of an empty dict);
* the same pread with one bad block elsewhere on the volume, beside none (this code only;
  a reference, no target);
* an error injected into the pool's badblocks side file (as ``daxfs inject-error`` does) until
  the open volume has acted on it (the mapping's ``on_poison`` runs): ms, target ≤ 1,000.

Usage::

    git worktree add /tmp/wt-base 99c069f
    python bench/bench_memfail.py --baseline-src /tmp/wt-base/src     # full run
    python bench/bench_memfail.py --quick                              # smoke run (no baseline rows)
    python bench/bench_memfail.py --markdown ...
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _table
from _table import KiB, MiB, Row, Target

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
BLOCK = 4 * KiB
OWNER_COUNTS = (10, 100, 1000)
READ_FILE = 4 * MiB       # small: the rows time the code path, not TLB misses over a big file
HOT_PATH_LIMIT = 1.05
DETECT_LIMIT_MS = 1000.0


@dataclass(frozen=True)
class BenchConfig:
    rounds: int                 # measured rounds per memory_failure row (plus one warm-up)
    failures_per_count: int     # memory_failure calls per owner count and round
    hot_rounds: int             # measured rounds per hot-path row: many short ones, so that the
    reads_per_round: int        # median shrugs off bursts from other processes on the machine
    maps_per_round: int
    injections: int


FULL_CONFIG = BenchConfig(rounds=7, failures_per_count=3, hot_rounds=41, reads_per_round=5_000,
                          maps_per_round=500, injections=5)
QUICK_CONFIG = BenchConfig(rounds=3, failures_per_count=1, hot_rounds=5, reads_per_round=2_000,
                           maps_per_round=200, injections=2)


# ---------------------------------------------------------------- the hot-path worker

def worker(src: str, scratch: str, seed: int) -> int:
    """One side of the hot-path rows: a volume of the daxfs found in ``src``, timing on command.

    Reads commands on stdin (``pread N``, ``map N``, ``poison``, ``quit``) and answers each
    with one JSON line (ns per operation), so the parent can interleave two workers' rounds.
    """
    sys.path.insert(0, src)
    import daxfs

    # Every worker on the same CPU: they take turns (the parent interleaves them), so each
    # round meets the same core, caches and clock as the other side's.
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})

    pool = os.path.join(scratch, f"hot-{os.getpid()}.pool")
    vol = daxfs.mkfs(pool, READ_FILE + 64 * MiB)
    with vol.open("/big", "wb") as f:
        chunk = os.urandom(MiB)
        for off in range(0, READ_FILE, MiB):
            f.pwrite(chunk, off)
    with vol.open("/small", "wb") as f:
        f.write(os.urandom(BLOCK))
    with vol.open("/other", "wb") as f:
        f.write(os.urandom(BLOCK))
    rng = random.Random(seed)
    offsets = [rng.randrange(READ_FILE // BLOCK) * BLOCK for _ in range(4096)]
    big = vol.open("/big", "rb")
    small = vol.open("/small", "rb")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "poison":         # one bad block elsewhere on the volume
            with vol.open("/other", "rb") as f:
                vol.memory_failure(f.extents()[0].pool_offset, BLOCK)
            print(json.dumps({"ok": True}), flush=True)
            continue
        n = int(words[1])
        if words[0] == "pread":
            pread = big.pread
            offs = (offsets * (n // len(offsets) + 1))[:n]
            started = time.perf_counter_ns()
            for off in offs:
                pread(BLOCK, off)
            elapsed = time.perf_counter_ns() - started
        else:
            mapper = small.map
            started = time.perf_counter_ns()
            for _ in range(n):
                mapper().close()
            elapsed = time.perf_counter_ns() - started
        print(json.dumps({"ns": elapsed / n}), flush=True)
    big.close()
    small.close()
    vol.close()
    os.unlink(pool)
    return 0


class Worker:
    """A worker process over the daxfs in ``src``."""

    def __init__(self, src: Path, scratch: Path, seed: int) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", str(src), str(scratch), str(seed)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ask(None)

    def ask(self, command: str | None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.args} died")
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.write("quit\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        self.proc.wait(timeout=60)


# ---------------------------------------------------------------- the bench

class MemfailBench:
    def __init__(self, config: BenchConfig, scratch: Path, cleanup: contextlib.ExitStack,
                 baseline: Path | None) -> None:
        self.config = config
        self.scratch = scratch
        self.cleanup = cleanup
        self.baseline = baseline
        self.notes: list[str] = []

    def _rounds(self, contenders: dict[str, Any]) -> dict[str, float]:
        samples = _table.interleaved_rounds(self.config.hot_rounds, contenders, warmup_rounds=1)
        return {name: _table.median(values) for name, values in samples.items()}

    # -- memory_failure and owners -----------------------------------------------------

    def failure_rows(self) -> list[Row]:
        import daxfs

        vol = daxfs.mkfs(str(self.scratch / "fail.pool"), 256 * MiB)
        self.cleanup.callback(_table.close_volume_quietly, vol, "the volume")
        per_count: dict[int, tuple[float, float]] = {}
        payload = os.urandom(BLOCK)
        serial = 0
        for count in OWNER_COUNTS:
            fail_ns: list[float] = []
            owners_ns: list[float] = []
            for _round in range(self.config.rounds + 1):
                for _ in range(self.config.failures_per_count):
                    serial += 1
                    base = f"/s{serial}"
                    vol.mkdir(base)
                    with vol.open(f"{base}/f0", "xb") as f:
                        f.write(payload)
                        offset = f.extents()[0].pool_offset
                    for i in range(1, count):
                        vol.clone_file(f"{base}/f0", f"{base}/f{i}")
                    vol.owners(offset, BLOCK)            # both timed calls then find the tree warm
                    found: list[Any] = []
                    # (as timeit does: a collection the 1,000 clones made due must not land in one side)
                    gc.collect()
                    gc.disable()
                    try:
                        owners_ns.append(_table.elapsed_ns(lambda: vol.owners(offset, BLOCK)))
                        fail_ns.append(_table.elapsed_ns(lambda: found.extend(vol.memory_failure(offset, BLOCK))))
                    finally:
                        gc.enable()
                    if len(found) != count:
                        raise AssertionError(f"memory_failure found {len(found)} owners, expected {count}")
                    for i in range(count):
                        vol.unlink(f"{base}/f{i}")
                    vol.rmdir(base)
                    vol.clear_badblocks(offset, BLOCK)
            skip = self.config.failures_per_count          # the warm-up round
            per_count[count] = (_table.median(fail_ns[skip:]), _table.median(owners_ns[skip:]))
        problems = vol.fsck()
        if problems:
            raise AssertionError(f"fsck after the memory_failure rows: {problems[:3]}")
        rows = [Row(f"memory_failure, block shared by {count:,} files (vs owners())", "ms", f / 1e6, o / 1e6,
                    f / o, Target.none()) for count, (f, o) in per_count.items()]
        low, high = per_count[OWNER_COUNTS[0]][0], per_count[OWNER_COUNTS[-1]][0]
        rows.append(Row(f"memory_failure growth: {OWNER_COUNTS[-1]:,} vs {OWNER_COUNTS[0]} owners", "ms",
                        high / 1e6, low / 1e6, high / low, Target.max_ratio(OWNER_COUNTS[-1] / OWNER_COUNTS[0])))
        return rows

    # -- the hot paths, this code vs the baseline ----------------------------------------

    def hot_rows(self) -> list[Row]:
        config = self.config
        rows: list[Row] = []
        here = Worker(SRC, self.scratch, 7)
        self.cleanup.callback(here.close)
        if self.baseline is not None:
            base = Worker(self.baseline, self.scratch, 7)
            self.cleanup.callback(base.close)
            for what, n, label in (("pread", config.reads_per_round, "4 KiB pread (random, 4 MiB file), "
                                    "no bad blocks: this vs before"),
                                   ("map", config.maps_per_round, "map + close, 4 KiB file, no bad blocks: "
                                    "this vs before")):
                medians = self._rounds({"this": lambda _r, w=here, c=f"{what} {n}": w.ask(c)["ns"],
                                        "base": lambda _r, w=base, c=f"{what} {n}": w.ask(c)["ns"]})
                rows.append(_table.latency_row(label, medians["this"], medians["base"],
                                               Target.max_ratio(HOT_PATH_LIMIT)))
        else:
            self.notes.append("no --baseline-src: the this-vs-before rows were not measured.")
        bad = Worker(SRC, self.scratch, 7)
        self.cleanup.callback(bad.close)
        bad.ask("poison")
        command = f"pread {config.reads_per_round}"
        medians = self._rounds({"bad": lambda _r: bad.ask(command)["ns"], "clean": lambda _r: here.ask(command)["ns"]})
        rows.append(_table.latency_row("4 KiB pread, one bad block elsewhere vs none (this code)",
                                       medians["bad"], medians["clean"], Target.none()))
        return rows

    # -- detection of an injected error ------------------------------------------------

    def detect_row(self) -> Row:
        import daxfs
        from daxfs.media.badblocks import BadblockSource

        path = str(self.scratch / "watch.pool")
        vol = daxfs.mkfs(path, 64 * MiB)
        self.cleanup.callback(_table.close_volume_quietly, vol, "the watched volume")
        source = BadblockSource(path + ".badblocks", "side file")
        took: list[float] = []
        for i in range(self.config.injections):
            with vol.open(f"/v{i}", "wb") as f:
                f.write(os.urandom(BLOCK))
            f = vol.open(f"/v{i}", "rb")
            told = threading.Event()
            m = f.map(on_poison=lambda *_a: told.set())
            offset = f.extents()[0].pool_offset
            started = time.perf_counter_ns()
            source.append(offset, BLOCK)
            if not told.wait(30):
                raise AssertionError("the injected error was never acted on")
            took.append((time.perf_counter_ns() - started) / 1e6)
            m.close()
            f.close()
        self.notes.append(f"injection to on_poison, each (ms): {', '.join(f'{t:.0f}' for t in took)}; the "
                          f"watcher polls every 0.25 s.")
        return _table.absolute_row("injected error (side file) until acted on, worst", "ms", max(took), None,
                                   Target.max_value(DETECT_LIMIT_MS))

    def run(self) -> list[Row]:
        return self.failure_rows() + self.hot_rows() + [self.detect_row()]


def _notes(config: BenchConfig, bench_notes: Sequence[str], total_s: float, baseline: Path | None) -> list[str]:
    return [
        _table.environment_line() + f"; whole run {total_s:.0f} s",
        f"memory_failure rows: median of {config.rounds} rounds × {config.failures_per_count} calls after a "
        "warm-up round; each call on a fresh 4 KiB block shared by N clone_file copies (cloning, unlinking "
        "and clear_badblocks are not timed), the cyclic GC off while timing; baseline = vol.owners() of "
        "the same block just before (a reference: the lookup alone).  Growth row: ratio = 1,000-owner time / 10-owner time (≤ 100× = "
        "no worse than linear).",
        f"hot-path rows: worker processes, this code and {baseline or 'the baseline'}, each with its own "
        f"pool in the scratch directory; median of {config.hot_rounds} interleaved rounds after a warm-up "
        f"round, each round {config.reads_per_round:,} preads (the same random offsets) or "
        f"{config.maps_per_round:,} map+close; ratio = this / before (≤ 1.05×).",
        "bad-elsewhere row: two workers of this code, one after memory_failure on a block of another file, "
        "their rounds interleaved; a reference, no target.",
        *bench_notes,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker(argv[1], argv[2], int(argv[3]))
    # This checkout's daxfs, whatever else is installed (a worker imports its own: see worker).
    sys.path.insert(0, str(SRC))
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--baseline-src", type=Path, default=None)
    known, rest = parser.parse_known_args(argv)
    baseline = known.baseline_src.resolve() if known.baseline_src else None
    return _table.run_bench(
        rest, description=__doc__.split("\n\n")[0],
        quick_help="smoke run: fewer rounds and calls",
        dir_help="where the pools go (default: /dev/shm)",
        scratch_prefix="daxfs-bench-memfail-", full_config=FULL_CONFIG, quick_config=QUICK_CONFIG,
        make_bench=lambda config, scratch, cleanup: MemfailBench(config, scratch, cleanup, baseline),
        notes=lambda config, notes, total: _notes(config, notes, total, baseline),
        header=_table.BASELINE_TABLE_HEADER)


if __name__ == "__main__":
    sys.exit(main())
