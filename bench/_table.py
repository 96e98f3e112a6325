"""Shared helpers for daxfs benchmarks: timing, interleaved rounds, and the results table.

A benchmark measures each operation twice, once through daxfs and once through a baseline
(usually ``os`` on /dev/shm), in interleaved rounds so that machine noise hits both sides
alike, then reports one :class:`Row` per operation with the ratio and whether it meets its
:class:`Target`.  :func:`format_table` renders the rows as an aligned text table or as
Markdown.  A row whose target is :meth:`Target.none` is reported only: "—" as its target
and result.  :func:`run_bench` is the ``main()`` every benchmark script shares: it parses
``--quick``/``--markdown``/``--dir``, runs the bench in a scratch directory that is removed
at the end, and prints the table and the notes.

Typical use::

    samples = interleaved_rounds(5, {"daxfs": run_daxfs_round, "os": run_os_round})
    row = latency_row("stat", median(samples["daxfs"]) / n, median(samples["os"]) / n,
                      Target.max_ratio(3.0))
    print(format_table([row]))

Everything here is timed with :func:`time.perf_counter_ns`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

__all__ = [
    "Row",
    "Target",
    "elapsed_ns",
    "environment_line",
    "format_table",
    "interleaved_rounds",
    "latency_row",
    "log",
    "median",
    "absolute_row",
    "throughput_row",
    "round_up",
    "size_text",
    "close_quietly",
    "close_volume_quietly",
    "scratch_directory",
    "parse_arguments",
    "run_bench",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

BASELINE_MISSING = "—"

TargetKind = Literal["max_ratio", "min_ratio", "max_value", "none"]


@dataclass(frozen=True)
class Target:
    """What a row must achieve to PASS.

    ``max_ratio``: daxfs/baseline must be at most ``limit`` (latency: lower is better).
    ``min_ratio``: daxfs/baseline must be at least ``limit`` (throughput: higher is better).
    ``max_value``: the daxfs value itself must be at most ``limit`` (in the row's unit).
    ``none``: the row is reported only; its target and result cells read "—".
    """

    kind: TargetKind
    limit: float

    @classmethod
    def max_ratio(cls, limit: float) -> Target:
        return cls("max_ratio", limit)

    @classmethod
    def min_ratio(cls, limit: float) -> Target:
        return cls("min_ratio", limit)

    @classmethod
    def max_value(cls, limit: float) -> Target:
        return cls("max_value", limit)

    @classmethod
    def none(cls) -> Target:
        return cls("none", float("nan"))

    def describe(self, unit: str) -> str:
        if self.kind == "none":
            return BASELINE_MISSING
        if self.kind == "max_ratio":
            return f"≤ {self.limit:g}×"
        if self.kind == "min_ratio":
            return f"≥ {self.limit:g}×"
        return f"≤ {self.limit:g} {unit}"

    def is_met(self, daxfs_value: float, ratio: float | None) -> bool:
        if self.kind == "none":
            return True                  # nothing to miss; the table shows "—", not PASS
        if self.kind == "max_value":
            return daxfs_value <= self.limit
        if ratio is None:
            return False
        if self.kind == "max_ratio":
            return ratio <= self.limit
        return ratio >= self.limit


@dataclass(frozen=True)
class Row:
    """One measured operation: daxfs beside its baseline."""

    label: str
    unit: str
    daxfs_value: float
    baseline_value: float | None
    ratio: float | None          # daxfs / baseline, whichever way the target reads it
    target: Target

    @property
    def passed(self) -> bool:
        return self.target.is_met(self.daxfs_value, self.ratio)


def _ratio(daxfs_value: float, baseline_value: float | None) -> float | None:
    if baseline_value is None or baseline_value <= 0:
        return None
    return daxfs_value / baseline_value


def latency_row(label: str, daxfs_ns_per_op: float, baseline_ns_per_op: float,
                target: Target) -> Row:
    """A per-operation latency row, shown in µs; ratio is daxfs time / baseline time."""
    return Row(label, "µs", daxfs_ns_per_op / 1e3, baseline_ns_per_op / 1e3,
               _ratio(daxfs_ns_per_op, baseline_ns_per_op), target)


def throughput_row(label: str, daxfs_bytes_per_ns: float, baseline_bytes_per_ns: float,
                   target: Target) -> Row:
    """A throughput row in GB/s (bytes per ns == GB/s); ratio is daxfs / baseline."""
    return Row(label, "GB/s", daxfs_bytes_per_ns, baseline_bytes_per_ns,
               _ratio(daxfs_bytes_per_ns, baseline_bytes_per_ns), target)


def absolute_row(label: str, unit: str, daxfs_value: float, baseline_value: float | None,
                 target: Target) -> Row:
    """A row judged on the daxfs value alone; the baseline (if any) is for reference."""
    return Row(label, unit, daxfs_value, baseline_value, _ratio(daxfs_value, baseline_value),
               target)


def elapsed_ns(action: Callable[[], object]) -> int:
    """Run ``action`` once and return how long it took, in nanoseconds."""
    started_ns = time.perf_counter_ns()
    action()
    return time.perf_counter_ns() - started_ns


def interleaved_rounds(rounds: int, contenders: Mapping[str, Callable[[int], float]],
                       *, warmup_rounds: int = 0) -> dict[str, list[float]]:
    """Run every contender once per round, alternating who goes first, and collect samples.

    Each contender is called with the round index (warm-up rounds included, numbered first,
    so a contender can use it to pick fresh names) and returns its measurement for that
    round (typically elapsed ns).  The first ``warmup_rounds`` measurements are discarded.
    Rotating the starting contender each round spreads drift (thermal, cache, page-cache
    growth) evenly over all of them.
    """
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup_rounds + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            measurement = contenders[name](round_index)
            if round_index >= warmup_rounds:
                samples[name].append(measurement)
    return samples


def median(values: Iterable[float]) -> float:
    return float(statistics.median(values))


def _format_value(value: float | None) -> str:
    if value is None:
        return BASELINE_MISSING
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _format_ratio(ratio: float | None) -> str:
    return BASELINE_MISSING if ratio is None else f"{ratio:.2f}×"


TABLE_HEADER = ("operation", "unit", "daxfs", "os", "ratio", "target", "result")
# For benches whose baseline is not always ``os`` (a Python loop, the same call unpinned, ...).
BASELINE_TABLE_HEADER = ("operation", "unit", "daxfs", "baseline", "ratio", "target", "result")


def _result(row: Row) -> str:
    if row.target.kind == "none":
        return BASELINE_MISSING
    return "PASS" if row.passed else "MISS"


def _cells(row: Row) -> tuple[str, ...]:
    return (row.label, row.unit, _format_value(row.daxfs_value),
            _format_value(row.baseline_value), _format_ratio(row.ratio),
            row.target.describe(row.unit), _result(row))


def format_table(rows: Sequence[Row], *, markdown: bool = False,
                 header: Sequence[str] = TABLE_HEADER) -> str:
    """Render rows as an aligned plain-text table, or as a Markdown table."""
    body = [_cells(row) for row in rows]
    numeric_columns = {2, 3, 4}
    if markdown:
        alignments = ["---:" if index in numeric_columns else "---" for index in range(len(header))]
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(alignments) + " |"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(cells[index]) for cells in [tuple(header), *body])
              for index in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        parts = [cell.rjust(width) if index in numeric_columns else cell.ljust(width)
                 for index, (cell, width) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(header), rule, *(render(cells) for cells in body)])


def environment_line() -> str:
    """One line naming the machine the numbers came from."""
    cpus = os.cpu_count() or 0
    return (f"Python {platform.python_version()} ({platform.python_implementation()}), "
            f"{platform.system()} {platform.release()}, {cpus} CPU(s), {platform.machine()}")


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print(message, file=sys.stderr, flush=True)


# -- what every benchmark script shares ------------------------------------------------


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def size_text(size: int) -> str:
    """A whole number of GiB, else of MiB: "1 GiB", "128 MiB"."""
    return f"{size // GiB} GiB" if size % GiB == 0 else f"{size // MiB} MiB"


def close_quietly(closeable: Any, what: str) -> None:
    """Cleanup that must not mask the error that got us here."""
    try:
        closeable.close()
    except Exception as error:  # noqa: BLE001 - cleanup path, report and go on
        log(f"warning: closing {what} failed: {error!r}")


def close_volume_quietly(volume: Any, what: str) -> None:
    """Like :func:`close_quietly`, forcing a volume shut that something still holds open."""
    # Imported here, not at the top: the benchmark calling this has already made daxfs
    # importable (installed, or src/ put on sys.path), and this module does not need it.
    import daxfs

    try:
        volume.close()
    except daxfs.BusyError:
        with contextlib.suppress(Exception):
            volume.close(force=True)
    except Exception as error:  # noqa: BLE001 - cleanup path, report and go on
        log(f"warning: closing {what} failed: {error!r}")


@contextlib.contextmanager
def scratch_directory(prefix: str, parent: str) -> Iterator[Path]:
    """A fresh directory under ``parent``, removed at the end even on error."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def parse_arguments(argv: Sequence[str] | None, *, description: str, quick_help: str,
                    dir_help: str) -> argparse.Namespace:
    """The flags every benchmark takes: --quick, --markdown and --dir (default /dev/shm)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--dir", default="/dev/shm", help=dir_help)
    return parser.parse_args(argv)


class Bench(Protocol):
    """What :func:`run_bench` needs of a benchmark: its rows, then its extra notes."""

    notes: list[str]

    def run(self) -> list[Row]: ...


ConfigT = TypeVar("ConfigT")


def run_bench(argv: Sequence[str] | None, *, description: str, quick_help: str,
              dir_help: str, scratch_prefix: str, full_config: ConfigT, quick_config: ConfigT,
              make_bench: Callable[[ConfigT, Path, contextlib.ExitStack], Bench],
              notes: Callable[[ConfigT, Sequence[str], float], list[str]],
              header: Sequence[str] = TABLE_HEADER) -> int:
    """A benchmark script's ``main()``: parse the flags, run the bench, print table and notes.

    ``make_bench(config, scratch_dir, cleanup)`` builds the bench; what it registers on
    ``cleanup`` (an ExitStack) runs before the scratch directory is removed.
    ``notes(config, bench_notes, total_s)`` gives the lines printed under the table.
    """
    arguments = parse_arguments(argv, description=description, quick_help=quick_help,
                                dir_help=dir_help)
    config = quick_config if arguments.quick else full_config
    started_ns = time.perf_counter_ns()
    with (scratch_directory(scratch_prefix, arguments.dir) as scratch_dir,
          contextlib.ExitStack() as cleanup):
        bench = make_bench(config, scratch_dir, cleanup)
        rows = bench.run()
        bench_notes = bench.notes
    total_s = (time.perf_counter_ns() - started_ns) / 1e9
    print(format_table(rows, markdown=arguments.markdown, header=header))
    print()
    for note in notes(config, bench_notes, total_s):
        print(f"- {note}" if arguments.markdown else note)
    return 0
