"""Pin benchmark: what pins cost daxfs (``File.pin``, truncate over a pin, ``vol.pins()``).

Prints one table, measured in one run, with a row per operation:

* pin + release of a 4 KiB range (µs per pair): ``p = f.pin(off, 4096); p.release()`` at
  random 4 KiB-aligned offsets of a populated 64 MiB file.  Target: at most 10 µs (absolute).
  The baseline column is a reference only: ``os.pread`` of 4 KiB at the same offsets of a
  same-sized /dev/shm file;
* truncate to 0 of a pinned file (µs): ``f.truncate(0, policy="defer")`` of a populated file
  with a 4 KiB pin in its middle, beside the same truncate of an identical unpinned file, for
  64 MiB, 256 MiB and 1 GiB files.  Target: pinned at most 1.5× unpinned.  One more row puts
  the pinned 1 GiB truncate beside the pinned 64 MiB one: the cost must follow the number of
  extents, not the bytes (at most 1.5×);
* ``vol.pins()`` with 10,000 live pins (ms per call), beside building a list of 10,000 small
  tuples in Python (a reference only).  Reported, no target;
* pin + release again, while those 10,000 pins (on other files) are live: the first row's
  measurement repeated, to show what live pins add.  Reported, no target.

Rounds of the two sides of a row are interleaved (who goes first alternates) so that noise
hits both; every row reports the median of its rounds after one warm-up round (the truncate
rows have three times as many rounds: one truncate a round is a short, noisy sample).  The pool and
the /dev/shm reference file live in a temporary directory under /dev/shm that is removed at
the end, even on error.

Usage::

    python bench/bench_pins.py               # full run, well under 2 minutes on 2 cores
    python bench/bench_pins.py --quick       # smoke run, a few seconds
    python bench/bench_pins.py --markdown    # the table as Markdown
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _table
from _table import GiB, KiB, MiB, Row, Target, size_text

try:
    import daxfs
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import daxfs

PIN_BYTES = 4 * KiB
FILL_CHUNK_BYTES = 1 * MiB
OS_CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_RDWR

PIN_RELEASE_MAX_US = 10.0
TRUNCATE_MAX_RATIO = 1.5
SIZE_INDEPENDENCE_MAX_RATIO = 1.5


@dataclass(frozen=True)
class BenchConfig:
    """How much work each row does; ``--quick`` picks the smaller one."""

    rounds: int                       # measured rounds per row (plus one warm-up round)
    truncate_rounds: int              # the same for the truncate rows (one truncate a round)
    pin_file_bytes: int               # the populated file pinned at random offsets
    pins_per_round: int               # pin+release pairs per round
    truncate_sizes: tuple[int, ...]   # file sizes of the truncate rows, smallest first
    live_pins: int                    # pins alive while vol.pins() is timed
    live_pin_files: int               # spread over this many files
    listings_per_round: int           # vol.pins() calls per round

    @property
    def pool_bytes(self) -> int:
        # One truncate file at a time (a contender creates, truncates and unlinks its own),
        # the pinned file, the live-pin files, and room for metadata (mkfs keeps some 4%).
        live = self.live_pins * PIN_BYTES
        needed = (max(self.truncate_sizes) + self.pin_file_bytes + live) * 5 // 4 + 256 * MiB
        return _table.round_up(needed, 64 * MiB)


FULL_CONFIG = BenchConfig(
    rounds=7, truncate_rounds=21, pin_file_bytes=64 * MiB, pins_per_round=20_000,
    truncate_sizes=(64 * MiB, 256 * MiB, 1 * GiB),
    live_pins=10_000, live_pin_files=100, listings_per_round=10,
)
QUICK_CONFIG = BenchConfig(
    rounds=3, truncate_rounds=3, pin_file_bytes=16 * MiB, pins_per_round=2_000,
    truncate_sizes=(16 * MiB, 64 * MiB, 128 * MiB),
    live_pins=10_000, live_pin_files=100, listings_per_round=2,
)


def _release_all(pins: Sequence[Any]) -> None:
    for pin in pins:
        if not pin.released:
            pin.release()


class PinsBench:
    """Runs every row; owns the scratch directory, the pool and the volume opened on it."""

    def __init__(self, config: BenchConfig, scratch_dir: Path, cleanup: contextlib.ExitStack):
        self.config = config
        self.scratch_dir = scratch_dir
        self.cleanup = cleanup
        self.notes: list[str] = []
        self.volume: Any = None
        self.chunk = os.urandom(FILL_CHUNK_BYTES)
        self.pin_release_contenders: dict[str, Callable[[int], float]] = {}

    # -- set-up ------------------------------------------------------------------------

    def open_volume(self) -> None:
        pool_path = self.scratch_dir / "pins.pool"
        _table.log(f"mkfs {pool_path} ({self.config.pool_bytes / GiB:.2f} GiB)")
        self.volume = daxfs.mkfs(str(pool_path), self.config.pool_bytes)
        self.cleanup.callback(_table.close_volume_quietly, self.volume, "the volume")

    def _fill(self, file: Any, size: int) -> None:
        """Write ``size`` bytes of the random chunk, 1 MiB at a time (the file is populated)."""
        pwrite, chunk = file.pwrite, self.chunk
        for offset in range(0, size, len(chunk)):
            pwrite(chunk[:min(len(chunk), size - offset)], offset)

    def _samples(self, contenders: dict[str, Callable[[int], float]],
                 rounds: int | None = None) -> dict[str, float]:
        rounds = self.config.rounds if rounds is None else rounds
        samples = _table.interleaved_rounds(rounds, contenders, warmup_rounds=1)
        return {name: _table.median(values) for name, values in samples.items()}

    # -- pin + release -----------------------------------------------------------------

    def pin_release_row(self) -> Row:
        """pin(off, 4 KiB) + release() at random offsets vs os.pread of 4 KiB at the same."""
        config = self.config
        size = config.pin_file_bytes
        daxfs_path = "/pinned.bin"
        os_path = str(self.scratch_dir / "pread.bin")
        _table.log(f"pin + release: filling a {size_text(size)} file on each side")
        daxfs_file = self.volume.open(daxfs_path, "x+b")
        self.cleanup.callback(_table.close_quietly, daxfs_file, daxfs_path)
        self._fill(daxfs_file, size)
        fd = os.open(os_path, OS_CREATE_FLAGS, 0o644)
        self.cleanup.callback(os.close, fd)
        for offset in range(0, size, len(self.chunk)):
            os.pwrite(fd, self.chunk, offset)

        with daxfs_file.pin(0, PIN_BYTES) as check:
            if bytes(check.buffer) != self.chunk[:PIN_BYTES]:
                raise AssertionError("a daxfs pin shows different bytes than were written")
        if self.volume.pins():
            raise AssertionError("a released pin is still listed by vol.pins()")

        blocks = size // PIN_BYTES
        rng = random.Random(20240601)
        offsets_per_round = [[rng.randrange(blocks) * PIN_BYTES
                              for _ in range(config.pins_per_round)]
                             for _ in range(config.rounds + 1)]

        def daxfs_pin(round_index: int) -> float:
            pin = daxfs_file.pin
            offsets = offsets_per_round[round_index]
            started_ns = time.perf_counter_ns()
            for offset in offsets:
                pin(offset, PIN_BYTES).release()
            return (time.perf_counter_ns() - started_ns) / len(offsets)

        def os_pread(round_index: int) -> float:
            pread = os.pread
            offsets = offsets_per_round[round_index]
            started_ns = time.perf_counter_ns()
            for offset in offsets:
                pread(fd, PIN_BYTES, offset)
            return (time.perf_counter_ns() - started_ns) / len(offsets)

        self.pin_release_contenders = {"daxfs": daxfs_pin, "os": os_pread}
        _table.log(f"pin + release: {config.rounds}+1 rounds × {config.pins_per_round} pairs")
        medians = self._samples(self.pin_release_contenders)
        if self.volume.pins():
            raise AssertionError("pins are still listed after releasing them all")
        label = f"pin + release 4 KiB (random, {size_text(size)} file)"
        return _table.absolute_row(label, "µs", medians["daxfs"] / 1e3, medians["os"] / 1e3,
                                   Target.max_value(PIN_RELEASE_MAX_US))

    # -- truncate over a pin -----------------------------------------------------------

    def truncate_rows(self) -> list[Row]:
        """truncate(0) of a pinned file vs an identical unpinned one, per file size."""
        config = self.config
        volume = self.volume
        extents_seen: dict[tuple[int, bool], set[int]] = {}

        def contender(size: int, pinned: bool) -> Callable[[int], float]:
            tag = "pinned" if pinned else "plain"

            def run(round_index: int) -> float:
                path = f"/trunc-{tag}-{size // MiB}m-{round_index}.bin"
                file = volume.open(path, "x+b")
                pin = None
                try:
                    self._fill(file, size)
                    extents_seen.setdefault((size, pinned), set()).add(len(file.extents()))
                    pin_offset = (size // 2) // PIN_BYTES * PIN_BYTES
                    if pinned:
                        pin = file.pin(pin_offset, PIN_BYTES)
                    started_ns = time.perf_counter_ns()
                    file.truncate(0, policy="defer")
                    elapsed = time.perf_counter_ns() - started_ns
                    if file.stat().st_size != 0:
                        raise AssertionError(f"{path}: truncate(0) left a non-empty file")
                    if pin is not None and round_index == 0:
                        self._check_deferred(pin, pin_offset)
                finally:
                    if pin is not None:
                        pin.release()
                    file.close()
                    volume.unlink(path)
                return elapsed

            return run

        contenders = {}
        for size in config.truncate_sizes:
            contenders[f"pinned {size}"] = contender(size, True)
            contenders[f"plain {size}"] = contender(size, False)
        _table.log(f"truncate: {config.truncate_rounds}+1 rounds × {len(contenders)} files "
                   f"({', '.join(size_text(s) for s in config.truncate_sizes)}; "
                   "pinned and plain)")
        medians = self._samples(contenders, config.truncate_rounds)
        if volume.statfs().busy != 0:
            raise AssertionError("busy blocks remain after every pin was released")

        rows = []
        for size in config.truncate_sizes:
            extents = sorted(extents_seen[(size, True)] | extents_seen[(size, False)])
            extent_text = "/".join(str(n) for n in extents)
            plural = "" if extents == [1] else "s"
            rows.append(_table.latency_row(
                f"truncate→0, pinned vs plain {size_text(size)} ({extent_text} extent{plural})",
                medians[f"pinned {size}"], medians[f"plain {size}"],
                Target.max_ratio(TRUNCATE_MAX_RATIO)))
        smallest, largest = config.truncate_sizes[0], config.truncate_sizes[-1]
        rows.append(_table.latency_row(
            f"truncate→0 pinned, {size_text(largest)} vs {size_text(smallest)}",
            medians[f"pinned {largest}"], medians[f"pinned {smallest}"],
            Target.max_ratio(SIZE_INDEPENDENCE_MAX_RATIO)))
        return rows

    def _check_deferred(self, pin: Any, pin_offset: int) -> None:
        """After truncate(0) under policy defer the pinned block is busy and keeps its data."""
        statfs = self.volume.statfs()
        if statfs.busy < PIN_BYTES:
            raise AssertionError(f"truncate over a pin left {statfs.busy} busy bytes")
        chunk_offset = pin_offset % len(self.chunk)
        expected = self.chunk[chunk_offset:chunk_offset + PIN_BYTES]
        if bytes(pin.buffer) != expected:
            raise AssertionError("a pinned range changed when its file was truncated")

    # -- vol.pins() --------------------------------------------------------------------

    def live_pins_rows(self) -> list[Row]:
        """With N pins live: vol.pins() vs building a list of N small tuples, and pin + release
        again (beside os.pread again, as in the first row)."""
        config = self.config
        volume = self.volume
        per_file = -(-config.live_pins // config.live_pin_files)
        file_bytes = per_file * PIN_BYTES
        _table.log(f"vol.pins(): taking {config.live_pins:,} pins over "
                   f"{config.live_pin_files} files")
        files = []
        pins: list[Any] = []
        for index in range(config.live_pin_files):
            path = f"/live/f{index:03d}.bin"
            if index == 0:
                volume.mkdir("/live")
            file = volume.open(path, "x+b")
            self.cleanup.callback(_table.close_quietly, file, path)
            self._fill(file, file_bytes)
            files.append(file)
        self.cleanup.callback(_release_all, pins)        # runs before the files close (LIFO)
        for index in range(config.live_pins):
            pins.append(files[index % len(files)].pin((index // len(files)) * PIN_BYTES,
                                                      PIN_BYTES))
        listing = volume.pins()
        if len(listing) != config.live_pins or {info.kind for info in listing} != {"pin"}:
            raise AssertionError(f"vol.pins() listed {len(listing)} references, "
                                 f"expected {config.live_pins} pins")
        if listing[0].path is None or not listing[0].path.startswith("/live/"):
            raise AssertionError(f"vol.pins() gave the path {listing[0].path!r}")

        count = config.live_pins
        calls = config.listings_per_round
        names = [f"/live/f{index % config.live_pin_files:03d}.bin" for index in range(count)]
        now = time.time()

        def daxfs_list(round_index: int) -> float:
            list_pins = volume.pins
            started_ns = time.perf_counter_ns()
            for _ in range(calls):
                list_pins()
            return (time.perf_counter_ns() - started_ns) / calls

        def tuple_list(round_index: int) -> float:
            started_ns = time.perf_counter_ns()
            for _ in range(calls):
                [("pid", index, name, index * PIN_BYTES, PIN_BYTES, "pin", now)
                 for index, name in enumerate(names)]
            return (time.perf_counter_ns() - started_ns) / calls

        _table.log(f"vol.pins(): {config.rounds}+1 rounds × {calls} calls")
        listing_medians = self._samples({"daxfs": daxfs_list, "python": tuple_list})
        _table.log(f"pin + release with {count:,} other pins live: {config.rounds}+1 rounds × "
                   f"{config.pins_per_round} pairs")
        pin_medians = self._samples(self.pin_release_contenders)
        if len(volume.pins()) != count:
            raise AssertionError("pin + release changed the number of live pins")
        _release_all(pins)
        if volume.pins():
            raise AssertionError("pins are still listed after releasing them all")
        return [
            _table.absolute_row(f"vol.pins(), {count:,} live pins", "ms",
                                listing_medians["daxfs"] / 1e6, listing_medians["python"] / 1e6,
                                Target.none()),
            _table.absolute_row(f"pin + release 4 KiB, {count:,} other pins live", "µs",
                                pin_medians["daxfs"] / 1e3, pin_medians["os"] / 1e3, Target.none()),
        ]

    # -- the whole run -----------------------------------------------------------------

    def run(self) -> list[Row]:
        self.open_volume()
        rows = [self.pin_release_row()]
        rows += self.truncate_rows()
        rows += self.live_pins_rows()
        return rows


def _notes(config: BenchConfig, bench_notes: Sequence[str], total_s: float) -> list[str]:
    sizes = ", ".join(size_text(s) for s in config.truncate_sizes)
    return [
        _table.environment_line() + f"; whole run {total_s:.0f} s",
        f"every row: median of {config.rounds} rounds ({config.truncate_rounds} for the "
        "truncate rows) after 1 warm-up round, the sides' rounds interleaved (who goes first "
        "rotates); ratio = daxfs / baseline.",
        f"pin + release: mean of {config.pins_per_round:,} `f.pin(off, 4096).release()` per "
        f"round at random 4 KiB-aligned offsets of a populated {size_text(config.pin_file_bytes)} "
        "file (read pin, no CPU view made). Baseline (a reference only, the target is "
        "absolute): os.pread(fd, 4096, off) at the same offsets of a same-sized /dev/shm file.",
        f"truncate: f.truncate(0, policy='defer') alone is timed ({sizes}); the file is created "
        "and filled with 1 MiB pwrites just before, a fresh one each round, then closed and "
        "unlinked. daxfs = the file with a 4 KiB read pin in its middle (released after the "
        "truncate), baseline = an identical file without a pin. The extent count of the files "
        "is in the label. The last truncate row compares the pinned largest file with the "
        "pinned smallest one.",
        f"vol.pins(): {config.live_pins:,} live read pins of 4 KiB spread over "
        f"{config.live_pin_files} files; ms per call (mean of {config.listings_per_round} per "
        "round). Baseline (a reference only): a list comprehension building "
        f"{config.live_pins:,} 7-tuples (the fields of a PinInfo). Reported, no target.",
        f"pin + release with {config.live_pins:,} other pins live: the first row again (same "
        "file, offsets and baseline) while those pins are live (on other files). Reported, "
        "no target: it shows what the live pins add (the volume republishes its status page, "
        "listing every live reference, at most every 0.2 s after a change).",
        *bench_notes,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return _table.run_bench(
        argv, description=__doc__.split("\n\n")[0],
        quick_help="smoke run: smaller files, 3 rounds, fewer pins",
        dir_help="where the pool and the reference file go (default: /dev/shm)",
        scratch_prefix="daxfs-bench-pins-", full_config=FULL_CONFIG, quick_config=QUICK_CONFIG,
        make_bench=PinsBench, notes=_notes,
        header=_table.BASELINE_TABLE_HEADER)


if __name__ == "__main__":
    sys.exit(main())
