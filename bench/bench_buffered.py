"""Buffered and text files: ``vol.open()`` as Python's ``open()`` gives them, against ``open()``.

Prints one table, measured in one run, with a row per operation:

* 20,000 writes of 16 bytes, then close (ms): ``vol.open(p, "wb")`` (an io.BufferedWriter over
  daxfs's File) beside ``open(p, "wb")`` on a /dev/shm file.  Target: at most 3×;
* the same writes through the raw File (``buffering=0``) beside the buffered ones: what the
  buffer saves (reported, no target);
* iterating the lines of a 320 KB file (10,000 lines of 32 bytes) in ``"rb"`` (ms), beside
  ``open(p, "rb")``.  Target: at most 3×;
* the same in text mode ``"r"`` (utf-8) beside ``open(p, "r")``.  Target: at most 3×.

Both sides work on fresh files: each round creates its file and removes it after (the write
rows), or reads a file written once before the rounds (the read rows); rounds of the two sides
interleave, who goes first alternating, and each row is the median of its rounds after one
warm-up round.  The pool and the /dev/shm files live in a temporary directory under /dev/shm
that is removed at the end, even on error.

Usage::

    python bench/bench_buffered.py               # full run, well under a minute on 2 cores
    python bench/bench_buffered.py --quick       # smoke run
    python bench/bench_buffered.py --markdown    # the table as Markdown
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _table
from _table import MiB, Row, Target

try:
    import daxfs
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import daxfs

MAX_RATIO = 3.0
RECORD = b"0123456789abcde\n"       # 16 bytes
LINE = b"x" * 31 + b"\n"            # 32 bytes


@dataclass(frozen=True)
class BenchConfig:
    rounds: int
    writes: int
    lines: int
    pool_bytes: int = 64 * MiB


FULL_CONFIG = BenchConfig(rounds=15, writes=20_000, lines=10_000)
QUICK_CONFIG = BenchConfig(rounds=3, writes=5_000, lines=2_500)


class BufferedBench:
    """Runs every row; owns the scratch directory, the pool and the volume opened on it."""

    def __init__(self, config: BenchConfig, scratch_dir: Path, cleanup: contextlib.ExitStack):
        self.config = config
        self.scratch_dir = scratch_dir
        self.cleanup = cleanup
        self.notes: list[str] = []
        self.volume: Any = daxfs.mkfs(str(scratch_dir / "buffered.pool"), config.pool_bytes)
        cleanup.callback(_table.close_volume_quietly, self.volume, "the volume")

    def _samples(self, contenders: dict[str, Callable[[int], float]]) -> dict[str, float]:
        samples = _table.interleaved_rounds(self.config.rounds, contenders, warmup_rounds=1)
        return {name: _table.median(values) for name, values in samples.items()}

    def _writes(self, opener: Callable[[str], Any], path: Callable[[int], str],
                remove: Callable[[str], None]) -> Callable[[int], float]:
        writes = self.config.writes

        def one_round(index: int) -> float:
            name = path(index)

            def work() -> None:
                with opener(name) as f:
                    write = f.write
                    for _ in range(writes):
                        write(RECORD)
            elapsed = _table.elapsed_ns(work)
            remove(name)
            return elapsed
        return one_round

    def write_rows(self) -> list[Row]:
        vol, real = self.volume, str(self.scratch_dir)
        contenders = {
            "daxfs": self._writes(lambda p: vol.open(p, "wb"), lambda i: f"/w{i}", vol.unlink),
            "raw": self._writes(lambda p: vol.open(p, "wb", buffering=0), lambda i: f"/r{i}", vol.unlink),
            "os": self._writes(lambda p: open(p, "wb"), lambda i: f"{real}/w{i}", os.unlink),
        }
        _table.log(f"writes: {self.config.rounds}+1 rounds × {self.config.writes:,} writes of 16 B")
        ns = self._samples(contenders)
        label = f"{self.config.writes:,} writes of 16 B + close"
        return [
            Row(f"{label}, buffered vs open()", "ms", ns["daxfs"] / 1e6, ns["os"] / 1e6,
                ns["daxfs"] / ns["os"], Target.max_ratio(MAX_RATIO)),
            Row(f"{label}: raw File (buffering=0) vs buffered", "ms", ns["raw"] / 1e6, ns["daxfs"] / 1e6,
                ns["raw"] / ns["daxfs"], Target.none()),
        ]

    def read_rows(self) -> list[Row]:
        vol, real = self.volume, str(self.scratch_dir / "lines.txt")
        body = LINE * self.config.lines
        with vol.open("/lines.txt", "wb") as f:
            f.write(body)
        with open(real, "wb") as f:
            f.write(body)

        def lines(opener: Callable[[], Any]) -> Callable[[int], float]:
            def one_round(_index: int) -> float:
                def work() -> None:
                    with opener() as f:
                        count = sum(1 for _ in f)
                    assert count == self.config.lines
                return _table.elapsed_ns(work)
            return one_round

        rows = []
        size_kb = len(body) // 1000
        for mode, kwargs in (("rb", {}), ("r", {"encoding": "utf-8"})):
            _table.log(f"lines, mode {mode!r}: {self.config.rounds}+1 rounds")
            ns = self._samples({
                "daxfs": lines(lambda: vol.open("/lines.txt", mode, **kwargs)),
                "os": lines(lambda: open(real, mode, **kwargs)),
            })
            rows.append(Row(f"iterate lines of a {size_kb} KB file, mode {mode!r}", "ms", ns["daxfs"] / 1e6,
                            ns["os"] / 1e6, ns["daxfs"] / ns["os"], Target.max_ratio(MAX_RATIO)))
        return rows

    def run(self) -> list[Row]:
        return self.write_rows() + self.read_rows()


def _notes(config: BenchConfig, bench_notes: Sequence[str], total_s: float) -> list[str]:
    return [
        _table.environment_line() + f"; whole run {total_s:.0f} s",
        f"every row: median of {config.rounds} rounds after 1 warm-up round, the sides' rounds "
        "interleaved (who goes first rotates); ratio = daxfs / baseline.",
        "writes: a fresh file each round on each side (daxfs: a new name in the volume; os: a new "
        "file in the same /dev/shm directory), removed after the round; open, the writes and "
        "close are timed. daxfs's buffer is 128 KiB, open()'s 8 KiB (io.DEFAULT_BUFFER_SIZE).",
        "lines: one file written once on each side before the rounds; open, iterate and close "
        "are timed.",
        *bench_notes,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return _table.run_bench(
        argv, description=__doc__.split("\n\n")[0],
        quick_help="smoke run: fewer writes and lines, 3 rounds",
        dir_help="where the pool and the reference files go (default: /dev/shm)",
        scratch_prefix="daxfs-bench-buffered-", full_config=FULL_CONFIG, quick_config=QUICK_CONFIG,
        make_bench=BufferedBench, notes=_notes,
        header=_table.BASELINE_TABLE_HEADER)


if __name__ == "__main__":
    sys.exit(main())
