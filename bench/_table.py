"""Shared helpers for daxfs benchmarks: timing, interleaved rounds, and the results table.

A benchmark measures each operation twice, once through daxfs and once through a baseline
(usually ``os`` on /dev/shm), in interleaved rounds so that machine noise hits both sides
alike, then reports one :class:`Row` per operation with the ratio and whether it meets its
:class:`Target`.  :func:`format_table` renders the rows as an aligned text table or as
Markdown.

Typical use::

    samples = interleaved_rounds(5, {"daxfs": run_daxfs_round, "os": run_os_round})
    row = latency_row("stat", median(samples["daxfs"]) / n, median(samples["os"]) / n,
                      Target.max_ratio(3.0))
    print(format_table([row]))

Everything here is timed with :func:`time.perf_counter_ns`.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

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
]

BASELINE_MISSING = "—"

TargetKind = Literal["max_ratio", "min_ratio", "max_value"]


@dataclass(frozen=True)
class Target:
    """What a row must achieve to PASS.

    ``max_ratio``: daxfs/baseline must be at most ``limit`` (latency: lower is better).
    ``min_ratio``: daxfs/baseline must be at least ``limit`` (throughput: higher is better).
    ``max_value``: the daxfs value itself must be at most ``limit`` (in the row's unit).
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

    def describe(self, unit: str) -> str:
        if self.kind == "max_ratio":
            return f"≤ {self.limit:g}×"
        if self.kind == "min_ratio":
            return f"≥ {self.limit:g}×"
        return f"≤ {self.limit:g} {unit}"

    def is_met(self, daxfs_value: float, ratio: float | None) -> bool:
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


def _cells(row: Row) -> tuple[str, ...]:
    return (row.label, row.unit, _format_value(row.daxfs_value),
            _format_value(row.baseline_value), _format_ratio(row.ratio),
            row.target.describe(row.unit), "PASS" if row.passed else "MISS")


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
