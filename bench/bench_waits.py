"""Waits benchmark: how long the pin policies' waits, timeouts and lease breaks take.

These are the elapsed-time expectations tests/test_pins.py used to assert; the tests now
check only what happens and in what order, and the times are measured here, where a slow
or noisy machine gives a MISS in a table instead of a failed test.  One row per case, the
median of the rounds (``--quick``: fewer rounds):

* ``truncate(policy="wait", timeout=T)`` under a pin that stays: BusyError after T.  The
  baseline is T; target at most 1.5× (and never before T: a round that returns earlier is
  an error, the benchmark fails);
* ``close(force=True, timeout=T)`` with a pin that stays: the same;
* a lease whose holder does not answer, ``lease_break_s=L``: ``truncate(policy="break")``
  returns after L (revoked).  Baseline L, target at most 1.5× (never before L);
* the same with an ``on_break`` callback that raises: the holder still gets L;
* a lease whose holder closes it in ``on_break``, ``lease_break_s`` = 1 hour: the
  truncate goes ahead at once.  Target at most 10 ms;
* ``policy="refuse"`` under a pin: BusyError at once.  Target at most 1 ms;
* ``policy="break"`` with only a plain mapping and a pin (nothing to break),
  ``lease_break_s`` = 1 hour: the truncate at once.  Target at most 10 ms;
* a truncate waiting on a pin, from the release to the truncate's return.  Target at most
  10 ms;
* a waiting truncate: a pin asked for inside its range is refused at once (the seed-004
  deadlock case).  Target at most 1 ms.

Usage::

    python bench/bench_waits.py               # full run, about 20 s
    python bench/bench_waits.py --quick       # smoke run, a few seconds
    python bench/bench_waits.py --markdown    # the table as Markdown
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
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

BS = 4096
TIMEOUT_S = 0.3
LEASE_BREAK_S = 0.2
HOUR = 3600.0
MAX_LATE_RATIO = 1.5


@dataclass(frozen=True)
class BenchConfig:
    rounds: int


FULL_CONFIG = BenchConfig(rounds=7)
QUICK_CONFIG = BenchConfig(rounds=2)


def _seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


class WaitsBench:
    def __init__(self, config: BenchConfig, scratch_dir: Path, cleanup: contextlib.ExitStack):
        self.config = config
        self.path = str(scratch_dir / "waits.pool")
        self.notes: list[str] = []
        daxfs.mkfs(self.path, 64 * MiB).close()

    def _volume(self, **options: Any) -> Any:
        return daxfs.open_volume(self.path, **options)

    def _file(self, vol: Any, name: str, blocks: int = 8) -> Any:
        f = vol.open(name, "w+b")
        f.pwrite(b"w" * blocks * BS, 0)
        return f

    def _median(self, one_round: Callable[[], float], *, at_least: float | None = None) -> float:
        samples = [one_round() for _ in range(self.config.rounds)]
        if at_least is not None and min(samples) < at_least:
            raise AssertionError(f"a wait of {at_least} s returned after {min(samples):.4f} s")
        return _table.median(samples)

    # -- rows ---------------------------------------------------------------------------

    def wait_timeout(self) -> Row:
        def one() -> float:
            with self._volume() as vol:
                f = self._file(vol, "t")
                p = f.pin(6 * BS, BS)

                def call() -> None:
                    try:
                        f.truncate(BS, policy="wait", timeout=TIMEOUT_S)
                    except daxfs.BusyError:
                        return
                    raise AssertionError("the wait did not time out")
                took = _seconds(call)
                p.release()
                f.close()
                return took
        return _table.absolute_row(f"truncate wait, timeout {TIMEOUT_S} s, pin stays", "s",
                                   self._median(one, at_least=TIMEOUT_S), TIMEOUT_S,
                                   Target.max_ratio(MAX_LATE_RATIO))

    def close_timeout(self) -> Row:
        def one() -> float:
            vol = self._volume()
            f = self._file(vol, "c")
            p = f.pin(0, BS)

            def call() -> None:
                try:
                    vol.close(force=True, timeout=TIMEOUT_S)
                except daxfs.BusyError:
                    return
                raise AssertionError("the close did not time out")
            took = _seconds(call)
            p.release()
            f.close()
            vol.close()
            return took
        return _table.absolute_row(f"close(force), timeout {TIMEOUT_S} s, pin stays", "s",
                                   self._median(one, at_least=TIMEOUT_S), TIMEOUT_S,
                                   Target.max_ratio(MAX_LATE_RATIO))

    def lease_break(self, raising: bool) -> Row:
        def one() -> float:
            with self._volume(lease_break_s=LEASE_BREAK_S) as vol:
                f = self._file(vol, "l")

                def on_break(_m: Any) -> None:
                    if raising:
                        raise RuntimeError("a holder's callback that fails")
                m = f.map(2 * BS, 4 * BS, lease=True, on_break=on_break)
                took = _seconds(lambda: f.truncate(BS, policy="break"))
                if not m.revoked:
                    raise AssertionError("the unresponsive lease was not revoked")
                m.close()
                f.close()
                return took
        what = "on_break raises" if raising else "holder does not answer"
        return _table.absolute_row(f"lease break, {what}, lease_break_s {LEASE_BREAK_S}", "s",
                                   self._median(one, at_least=LEASE_BREAK_S), LEASE_BREAK_S,
                                   Target.max_ratio(MAX_LATE_RATIO))

    def cooperative_lease(self) -> Row:
        def one() -> float:
            with self._volume(lease_break_s=HOUR) as vol:
                f = self._file(vol, "k")
                f.map(0, 2 * BS, lease=True, on_break=lambda m: m.close())
                took = _seconds(lambda: f.truncate(0, policy="break"))
                f.close()
                return took
        return _table.absolute_row("lease break, holder closes in on_break", "ms",
                                   self._median(one) * 1e3, None, Target.max_value(10))

    def refuse(self) -> Row:
        def one() -> float:
            with self._volume(policy="refuse") as vol:
                f = self._file(vol, "r")
                p = f.pin(5 * BS, 100)

                def call() -> None:
                    try:
                        f.truncate(2 * BS)
                    except daxfs.BusyError:
                        return
                    raise AssertionError("refuse did not refuse")
                took = _seconds(call)
                p.release()
                f.close()
                return took
        return _table.absolute_row("policy refuse under a pin: BusyError", "ms",
                                   self._median(one) * 1e3, None, Target.max_value(1))

    def break_without_leases(self) -> Row:
        def one() -> float:
            with self._volume(policy="break", lease_break_s=HOUR) as vol:
                f = self._file(vol, "b")
                p = f.pin(4 * BS, BS)
                m = f.map(6 * BS, 2 * BS)
                took = _seconds(lambda: f.truncate(0))
                m.close()
                p.release()
                f.close()
                return took
        return _table.absolute_row("policy break, nothing to break", "ms",
                                   self._median(one) * 1e3, None, Target.max_value(10))

    def _waiting_truncate(self, vol: Any, f: Any) -> tuple[threading.Thread, list[float]]:
        done: list[float] = []

        def truncate() -> None:
            with vol.open("w", "r+b") as g:
                g.truncate(4 * BS, policy="wait", timeout=60)
            done.append(time.perf_counter())
        t = threading.Thread(target=truncate, daemon=True)
        t.start()
        for _ in range(10_000):                      # until the truncate is waiting
            try:
                f.pin(12 * BS, 1).release()
            except daxfs.BusyError:
                break
            time.sleep(0.0005)
        return t, done

    def wake_after_release(self) -> Row:
        def one() -> float:
            with self._volume() as vol:
                f = self._file(vol, "w", 16)
                p = f.pin(10 * BS, BS)
                t, done = self._waiting_truncate(vol, f)
                released = time.perf_counter()
                p.release()
                t.join(60)
                f.close()
                return done[0] - released
        return _table.absolute_row("waiting truncate: release to return", "ms",
                                   self._median(one) * 1e3, None, Target.max_value(10))

    def refused_inside_a_wait(self) -> Row:
        def one() -> float:
            with self._volume() as vol:
                f = self._file(vol, "w", 16)
                p = f.pin(10 * BS, BS)
                t, _done = self._waiting_truncate(vol, f)

                def call() -> None:
                    try:
                        f.pin(12 * BS, BS)
                    except daxfs.BusyError:
                        return
                    raise AssertionError("a pin inside a waiting range was not refused")
                took = _seconds(call)
                p.release()
                t.join(60)
                f.close()
                return took
        return _table.absolute_row("pin inside a waiting truncate: BusyError", "ms",
                                   self._median(one) * 1e3, None, Target.max_value(1))

    def run(self) -> list[Row]:
        steps = [self.wait_timeout, self.close_timeout, lambda: self.lease_break(False),
                 lambda: self.lease_break(True), self.cooperative_lease, self.refuse,
                 self.break_without_leases, self.wake_after_release, self.refused_inside_a_wait]
        rows = []
        for step in steps:
            rows.append(step())
            _table.log(f"{rows[-1].label}: {rows[-1].daxfs_value:.4g} {rows[-1].unit}")
        return rows


def _notes(config: BenchConfig, bench_notes: Sequence[str], total_s: float) -> list[str]:
    return [
        _table.environment_line() + f"; whole run {total_s:.0f} s",
        f"every row: median of {config.rounds} rounds, each on a fresh open of one pool in the "
        "scratch directory. The s rows' baseline is the timeout or lease_break_s asked for "
        "(ratio = elapsed / asked; every round also returned no earlier than asked); the ms "
        "rows are judged on their own value.",
        *bench_notes,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return _table.run_bench(
        argv, description=__doc__.split("\n\n")[0],
        quick_help="smoke run: 2 rounds a row",
        dir_help="where the pool goes (default: /dev/shm)",
        scratch_prefix="daxfs-bench-waits-", full_config=FULL_CONFIG, quick_config=QUICK_CONFIG,
        make_bench=WaitsBench, notes=_notes, header=_table.BASELINE_TABLE_HEADER)


if __name__ == "__main__":
    sys.exit(main())
