"""Scale benchmark: the metadata costs of issue 12 (create latency while a volume grows,
checkpoints, mount, memory per file, ``vol.pins()``, ``f.map()``, followers, clone,
copy-on-write), each beside its baseline, in one run.

The rows are a list of row functions (:data:`ROWS`); each takes the config and a scratch
directory, builds a fresh pool there, measures, checks what it measured came out right, and
returns its :class:`_table.Row` objects plus the notes that say how.

* volumes of 10,000 / 100,000 / 1,000,000 files (``--quick``: 10,000), each grown and
  mounted in fresh interpreters (``_scale_metadata.py`` says how): the slowest create in CPU
  time while growing (target: at most 10 ms; ``os`` creating the same tree beside it), wall
  p50 / p99 / max; the longest checkpoint work inside one operation (at most 10 ms); a whole
  checkpoint per file; mount per file (at most 2 µs: a million files in 2 s; ``os``: a
  scandir + stat walk of the same tree); private memory per file after mount (at most
  0.5 KiB); create + 4 KiB write + close beside ``os`` (at most 1.5×);

* ``vol.pins()`` with 10,000 live pins (ms per call).  Target: at most 5 ms.  Baseline (a
  reference only): building a list of 10,000 9-tuples in Python;
* ``f.map()`` of a 512 MiB file after a quiet moment (µs): every map comes 0.3 s after the
  last reference change (longer than the status page's publish interval).  Target: at most
  40 µs.  Baseline (a reference only): ``mmap.mmap`` of a 512 MiB /dev/shm file; and the
  threads started per reference change while doing it (target: none);
* a read-only follower's ``stat`` and 4 KiB ``pread`` beside the writer's own (µs per op,
  the writer's volume open on the same pool all along).  Target: at most 1.5× the writer;
* ``clone_file`` of a 16,384-extent file (µs per extent).  Target: at most 0.5 µs.
  Baseline (a reference only): a daxfs byte copy of the same file, per extent;
* the first 4 KiB pwrite into a fresh clone (copy-on-write) beside the same pwrite into a
  private file (µs).  Target: at most 3×.

Rounds of the two sides of a row are interleaved (who goes first rotates) so that noise hits
both; every row reports the median of its rounds after one warm-up round.  Pools live in a
temporary directory under /dev/shm that is removed at the end, even on error.

Usage::

    python bench/bench_scale.py               # full run, about five minutes on 2 cores
    python bench/bench_scale.py --quick       # smoke run, smaller files, fewer rounds
    python bench/bench_scale.py --markdown    # the table as Markdown
    BENCH_ROWS=map_rows,cow_row python bench/bench_scale.py   # only those rows' functions
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
from daxfs.media._view import PoolView  # the view f.map() builds: its two mmaps, timed alone

BLOCK = 4 * KiB
QUIET_S = 0.3                       # longer than the status page's publish interval (0.2 s)
WARM_MAPS = 200                     # back-to-back maps a round


@dataclass(frozen=True)
class BenchConfig:
    """How much work each row does; ``--quick`` picks the smaller one."""

    rounds: int                 # measured rounds per row (plus one warm-up round)
    live_pins: int              # pins alive while vol.pins() is timed
    map_bytes: int              # the file f.map() maps
    quiet_maps: int             # maps a round, each after a quiet moment
    follower_ops: int           # stats / preads a round
    clone_extents: int          # extents of the cloned file
    clone_piece: int            # bytes per extent of the cloned file
    cow_bytes: int              # the cloned (1 extent) and the private file of the COW row
    cows_per_round: int         # fresh clones (one first write each) a round
    volume_files: tuple[int, ...] = (10_000, 100_000, 1_000_000)    # the metadata rows' volumes
    small_files: int = 2_000    # create + 4 KiB write + close, files a round


FULL_CONFIG = BenchConfig(rounds=5, live_pins=10_000, map_bytes=512 * MiB, quiet_maps=5,
                          follower_ops=20_000, clone_extents=16_384, clone_piece=16 * KiB,
                          cow_bytes=1 * GiB, cows_per_round=30)
QUICK_CONFIG = BenchConfig(rounds=3, live_pins=10_000, map_bytes=512 * MiB, quiet_maps=2,
                           follower_ops=5_000, clone_extents=16_384, clone_piece=4 * KiB,
                           cow_bytes=128 * MiB, cows_per_round=10, volume_files=(10_000,), small_files=500)


@contextlib.contextmanager
def fresh_volume(scratch: Path, name: str, size: int) -> Iterator[Any]:
    """A new pool of ``size`` bytes, its volume closed (forced) and the pool removed at the end."""
    path = scratch / f"{name}.pool"
    volume = daxfs.mkfs(str(path), _table.round_up(size, 64 * MiB))
    try:
        yield volume
    finally:
        _table.close_volume_quietly(volume, name)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def samples(config: BenchConfig, contenders: dict[str, Callable[[int], float]]) -> dict[str, float]:
    """Medians of ``config.rounds`` interleaved rounds after one warm-up round."""
    found = _table.interleaved_rounds(config.rounds, contenders, warmup_rounds=1)
    return {name: _table.median(values) for name, values in found.items()}


def fill(file: Any, size: int, chunk: bytes) -> None:
    for offset in range(0, size, len(chunk)):
        file.pwrite(chunk[:min(len(chunk), size - offset)], offset)


RowResult = tuple[list[Row], list[str]]


# -- vol.pins() -----------------------------------------------------------------------------


def pins_row(config: BenchConfig, scratch: Path) -> RowResult:
    count = config.live_pins
    files_count = 100
    per_file = -(-count // files_count)
    with fresh_volume(scratch, "pins", count * BLOCK * 2 + 256 * MiB) as volume:
        volume.mkdir("/live")
        files = []
        pins: list[Any] = []
        try:
            for index in range(files_count):
                file = volume.open(f"/live/f{index:03d}.bin", "x+b")
                files.append(file)
                fill(file, per_file * BLOCK, b"p" * (per_file * BLOCK))
            for index in range(count):
                pins.append(files[index % files_count].pin((index // files_count) * BLOCK, BLOCK))
            listing = volume.pins()
            if len(listing) != count or {info.kind for info in listing} != {"pin"} or \
                    not all(info.path and info.path.startswith("/live/") for info in listing):
                raise AssertionError(f"vol.pins() listed {len(listing)} references, expected {count} pins")
            names = [f"/live/f{index % files_count:03d}.bin" for index in range(count)]
            now = time.time()
            calls = 10

            def daxfs_list(round_index: int) -> float:
                # One pin taken and released first: the listing is asked after a change,
                # not only again and again over the same references.
                files[0].pin(0, BLOCK).release()
                started_ns = time.perf_counter_ns()
                for _ in range(calls):
                    volume.pins()
                return (time.perf_counter_ns() - started_ns) / calls

            def tuple_list(round_index: int) -> float:
                started_ns = time.perf_counter_ns()
                for _ in range(calls):
                    [("pid", index, name, index * BLOCK, BLOCK, "pin", now, 1, 0)
                     for index, name in enumerate(names)]
                return (time.perf_counter_ns() - started_ns) / calls

            medians = samples(config, {"daxfs": daxfs_list, "python": tuple_list})
        finally:
            for pin in pins:
                pin.release()
            for file in files:
                file.close()
    row = _table.absolute_row(f"vol.pins(), {count:,} live pins", "ms", medians["daxfs"] / 1e6,
                              medians["python"] / 1e6, Target.max_value(5.0))
    note = (f"vol.pins(): {count:,} live 4 KiB read pins over {files_count} files; ms per call, mean "
            f"of {calls} calls a round after one pin + release. Baseline (a reference only): a list "
            f"comprehension building {count:,} 9-tuples (the fields of a PinInfo).")
    return [row], [note]


# -- f.map() after a quiet moment ----------------------------------------------------------


class _ThreadStarts:
    """Counts ``threading.Thread.start`` calls while it is entered."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> "_ThreadStarts":
        self._original = original = threading.Thread.start

        def counting_start(thread: threading.Thread) -> None:
            self.count += 1
            original(thread)

        threading.Thread.start = counting_start  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        threading.Thread.start = self._original  # type: ignore[method-assign]


def map_rows(config: BenchConfig, scratch: Path) -> RowResult:
    size = config.map_bytes
    chunk = os.urandom(4 * MiB)
    os_path = scratch / "map-os.bin"
    with fresh_volume(scratch, "map", size * 5 // 4 + 256 * MiB) as volume, \
            volume.open("/big", "x+b") as file:
        fill(file, size, chunk)
        with open(os_path, "wb") as out:
            for _ in range(0, size, len(chunk)):
                out.write(chunk)
        fd = os.open(os_path, os.O_RDWR)
        changes = 0
        try:
            def daxfs_map(round_index: int) -> float:
                nonlocal changes
                total = 0
                for _ in range(config.quiet_maps):
                    time.sleep(QUIET_S)
                    started_ns = time.perf_counter_ns()
                    mapping = file.map()
                    total += time.perf_counter_ns() - started_ns
                    if round_index == 0 and mapping.buffer[:16] != chunk[:16]:
                        raise AssertionError("the mapping does not show the file's bytes")
                    mapping.close()
                    changes += 2
                return total / config.quiet_maps

            def os_map(round_index: int) -> float:
                total = 0
                for _ in range(config.quiet_maps):
                    time.sleep(QUIET_S)
                    started_ns = time.perf_counter_ns()
                    mapped = mmap.mmap(fd, size)
                    total += time.perf_counter_ns() - started_ns
                    mapped.close()
                return total / config.quiet_maps

            def view_map(round_index: int) -> float:
                # what f.map() costs the kernel: its two mmaps (a reservation, then the pool
                # range laid over it), here over the os file, after the same pause
                total = 0
                for _ in range(config.quiet_maps):
                    time.sleep(QUIET_S)
                    started_ns = time.perf_counter_ns()
                    view = PoolView(fd, size, writable=False)
                    view.map_pool(0, size, 0)
                    total += time.perf_counter_ns() - started_ns
                    view.release()
                return total / config.quiet_maps

            def daxfs_warm(round_index: int) -> float:
                started_ns = time.perf_counter_ns()
                for _ in range(WARM_MAPS):
                    file.map().close()
                return (time.perf_counter_ns() - started_ns) / WARM_MAPS

            def os_warm(round_index: int) -> float:
                started_ns = time.perf_counter_ns()
                for _ in range(WARM_MAPS):
                    mmap.mmap(fd, size).close()
                return (time.perf_counter_ns() - started_ns) / WARM_MAPS

            daxfs_map(-1)       # the volume's first reference change (a flusher may start once)
            changes = 0
            with _ThreadStarts() as starts:
                medians = samples(config, {"daxfs": daxfs_map, "os": os_map, "view": view_map})
            warm = samples(config, {"daxfs": daxfs_warm, "os": os_warm})
        finally:
            os.close(fd)
            os_path.unlink()
    rows = [
        _table.absolute_row(f"f.map() of a {size_text(size)} file after a quiet moment", "µs",
                            medians["daxfs"] / 1e3, medians["os"] / 1e3, Target.max_value(40.0)),
        _table.absolute_row("  its two mmaps alone (reservation + MAP_FIXED), same pause", "µs",
                            medians["view"] / 1e3, medians["os"] / 1e3, Target.none()),
        _table.absolute_row("  threads started per reference change (map, close)", "threads",
                            starts.count / changes, None, Target.max_value(0.0)),
        _table.absolute_row("  f.map() + close, back to back", "µs", warm["daxfs"] / 1e3,
                            warm["os"] / 1e3, Target.none()),
    ]
    note = (f"f.map(): the whole {size_text(size)} file (written in 4 MiB pwrites, one extent), "
            f"each map {QUIET_S} s after the last reference change, mean of {config.quiet_maps} a "
            "round; the close after it is not timed. Baseline (a reference only): mmap.mmap of a "
            f"{size_text(size)} /dev/shm file after the same pause. Threads: Thread.start calls "
            "during the measured rounds over map + close calls (each one a reference change), "
            f"after one untimed map + close. Back to back: {WARM_MAPS} × (map + close) a round with "
            "no pause, beside mmap.mmap + close (reported only: what the pause adds is the "
            "machine's, e.g. caches and idle CPUs, and shows in the os column too). Its two "
            "mmaps alone: the PoolView f.map() builds (an anonymous reservation, then the range "
            "laid over it with MAP_FIXED) over the os file, after the same pause, no daxfs "
            "bookkeeping: the floor under the first row.")
    return rows, [note]


# -- a read-only follower ------------------------------------------------------------------


def follower_rows(config: BenchConfig, scratch: Path) -> RowResult:
    size = 64 * MiB
    rng = random.Random(12)
    with fresh_volume(scratch, "follow", 256 * MiB) as writer:
        with writer.open("/data", "x+b") as file:
            fill(file, size, os.urandom(MiB))
        writer.mkdir("/small")
        names = [f"/small/f{index}" for index in range(200)]
        for name in names:
            with writer.open(name, "xb") as small:
                small.write(b"s" * 100)
        follower = daxfs.open_volume(writer.path, readonly=True)
        wfile = writer.open("/data", "rb", buffering=0)
        ffile = follower.open("/data", "rb", buffering=0)
        try:
            ops = config.follower_ops
            stat_names = (names * (ops // len(names) + 1))[:ops]
            offsets = [rng.randrange(size // BLOCK) * BLOCK for _ in range(ops)]
            if ffile.pread(BLOCK, offsets[0]) != wfile.pread(BLOCK, offsets[0]):
                raise AssertionError("the follower reads other bytes than the writer")

            def stat_of(volume: Any) -> Callable[[int], float]:
                def run(round_index: int) -> float:
                    stat = volume.stat
                    started_ns = time.perf_counter_ns()
                    for name in stat_names:
                        stat(name)
                    return (time.perf_counter_ns() - started_ns) / ops
                return run

            def pread_of(handle: Any) -> Callable[[int], float]:
                def run(round_index: int) -> float:
                    pread = handle.pread
                    started_ns = time.perf_counter_ns()
                    for offset in offsets:
                        pread(BLOCK, offset)
                    return (time.perf_counter_ns() - started_ns) / ops
                return run

            stats = samples(config, {"follower": stat_of(follower), "writer": stat_of(writer)})
            preads = samples(config, {"follower": pread_of(ffile), "writer": pread_of(wfile)})
        finally:
            ffile.close()
            wfile.close()
            follower.close()
    rows = [
        _table.latency_row("follower stat vs the writer's", stats["follower"], stats["writer"],
                           Target.max_ratio(1.5)),
        _table.latency_row("follower 4 KiB pread vs the writer's", preads["follower"],
                           preads["writer"], Target.max_ratio(1.5)),
    ]
    note = (f"follower rows: a second daxfs.open_volume(pool, readonly=True) in the same process while "
            f"the writer's volume stays open on it; nothing is written meanwhile. stat: vol.stat of "
            f"200 small files by path, {ops:,} a round; pread: f.pread(4096, off) at random "
            f"4 KiB-aligned offsets of a 64 MiB file (buffering=0), {ops:,} a round. Baseline = the "
            "same calls on the writer's own volume and handle.")
    return rows, [note]


# -- clone and copy-on-write ---------------------------------------------------------------


def _copy(volume: Any, source: str, destination: str, buffer: memoryview) -> None:
    with volume.open(source, "rb") as src, volume.open(destination, "xb") as dst:
        while count := src.readinto(buffer):
            dst.write(buffer[:count])


def clone_row(config: BenchConfig, scratch: Path) -> RowResult:
    extents, piece = config.clone_extents, config.clone_piece
    size = extents * piece
    with fresh_volume(scratch, "clone", 3 * size * 9 // 8 + 256 * MiB) as volume:
        data = os.urandom(piece)
        with volume.open("/src", "xb") as first, volume.open("/partner", "xb") as second:
            for offset in range(0, size, piece):       # interleaved: one extent per piece
                first.pwrite(data, offset)
                second.pwrite(data, offset)
        with volume.open("/src", "rb") as source:
            found = len(source.extents())
        if found != extents:
            raise AssertionError(f"the source has {found} extents, expected {extents}")
        buffer = memoryview(bytearray(4 * MiB))

        def clone(round_index: int) -> float:
            path = f"/clone-{round_index}"
            started_ns = time.perf_counter_ns()
            volume.clone_file("/src", path)
            elapsed = time.perf_counter_ns() - started_ns
            if round_index == 0:
                with volume.open(path, "rb") as made, volume.open("/src", "rb") as source:
                    if len(made.extents()) != extents or made.pread(size, 0) != source.pread(size, 0):
                        raise AssertionError("the clone does not read like its source")
            volume.unlink(path)
            return elapsed / extents

        def copy(round_index: int) -> float:
            path = f"/copy-{round_index}"
            started_ns = time.perf_counter_ns()
            _copy(volume, "/src", path, buffer)
            elapsed = time.perf_counter_ns() - started_ns
            volume.unlink(path)
            return elapsed / extents

        medians = samples(config, {"clone": clone, "copy": copy})
        if volume.fsck():
            raise AssertionError(f"fsck after the clone row: {volume.fsck()[:3]}")
    row = _table.absolute_row(f"clone_file, {extents:,} extents ({size_text(size)})", "µs/extent",
                              medians["clone"] / 1e3, medians["copy"] / 1e3, Target.max_value(0.5))
    note = (f"clone row: vol.clone_file(src, new) of a {size_text(size)} file of {extents:,} extents "
            f"(written by alternating {piece // KiB} KiB pwrites with another file), per extent; the "
            "unlink after it is not timed. Baseline (a reference only): a daxfs byte copy of the "
            "same file (readinto a 4 MiB buffer, write to a new file), per extent.")
    return [row], [note]


def cow_row(config: BenchConfig, scratch: Path) -> RowResult:
    size = config.cow_bytes
    rng = random.Random(20240601)
    with fresh_volume(scratch, "cow", 2 * size * 9 // 8 + 256 * MiB) as volume:
        chunk = os.urandom(4 * MiB)
        for path in ("/src", "/private"):
            with volume.open(path, "xb") as file:
                fill(file, size, chunk)
        volume.mkdir("/cow")
        payload = os.urandom(BLOCK)
        offsets = [[rng.randrange(size // BLOCK) * BLOCK for _ in range(config.cows_per_round)]
                   for _ in range(config.rounds + 1)]

        def first_write(round_index: int) -> float:
            total = 0
            for index, offset in enumerate(offsets[round_index]):
                path = f"/cow/r{round_index}-{index}"
                volume.clone_file("/src", path)
                with volume.open(path, "r+b", buffering=0) as clone:
                    started_ns = time.perf_counter_ns()
                    clone.pwrite(payload, offset)
                    total += time.perf_counter_ns() - started_ns
                    if index == 0 and (clone.pread(BLOCK, offset) != payload or
                                       volume.statfs().shared != size - BLOCK):
                        raise AssertionError("the COW write did not copy exactly its one block")
                volume.unlink(path)
            return total / len(offsets[round_index])

        def private_write(round_index: int) -> float:
            total = 0
            for offset in offsets[round_index]:
                with volume.open("/private", "r+b", buffering=0) as private:
                    started_ns = time.perf_counter_ns()
                    private.pwrite(payload, offset)
                    total += time.perf_counter_ns() - started_ns
            return total / len(offsets[round_index])

        medians = samples(config, {"cow": first_write, "private": private_write})
        with volume.open("/src", "rb") as source:
            if source.pread(len(chunk), 0) != chunk:
                raise AssertionError("a write into a clone changed its source")
    row = _table.latency_row(f"first 4 KiB pwrite into a fresh {size_text(size)} clone vs private",
                             medians["cow"], medians["private"], Target.max_ratio(3.0))
    note = (f"COW row: daxfs = the first f.pwrite(4 KiB) at a random 4 KiB-aligned offset of a "
            f"just-cloned {size_text(size)} file (one extent), opened 'r+b' unbuffered; the clone, "
            f"open, close and unlink around it are not timed; mean of {config.cows_per_round} a "
            "round. Baseline = the same pwrite at the same offsets into a private file of the same "
            "size (an overwrite in place), opened just before in the same way.")
    return [row], [note]


def metadata_rows(config: BenchConfig, scratch: Path) -> RowResult:
    """Create latency while a volume grows, checkpoints, mount, memory per file, create +
    write + close: each volume size measured in fresh interpreters (``_scale_metadata``)."""
    import _scale_metadata

    return _scale_metadata.metadata_rows(list(config.volume_files), config.small_files, scratch)


#: The rows, in table order: each ``(config, scratch directory) -> (rows, notes)``.
ROWS: list[Callable[[BenchConfig, Path], RowResult]] = [
    metadata_rows, pins_row, map_rows, follower_rows, clone_row, cow_row,
]


class ScaleBench:
    def __init__(self, config: BenchConfig, scratch_dir: Path, cleanup: contextlib.ExitStack):
        self.config = config
        self.scratch_dir = scratch_dir
        self.notes: list[str] = []

    def run(self) -> list[Row]:
        rows: list[Row] = []
        only = [name for name in os.environ.get("BENCH_ROWS", "").split(",") if name]
        unknown = set(only) - {row_function.__name__ for row_function in ROWS}
        if unknown:
            raise SystemExit(f"BENCH_ROWS: no such row function: {', '.join(sorted(unknown))}")
        for row_function in ROWS:
            if only and row_function.__name__ not in only:
                continue
            _table.log(f"{row_function.__name__} ...")
            # Each row in a fresh interpreter, as the issue measured them: what one row leaves
            # behind (such as 10,000 pins' objects for the collector to walk) must not slow the next.
            with multiprocessing.get_context("spawn").Pool(1) as fresh:
                made, notes = fresh.apply(row_function, (self.config, self.scratch_dir))
            rows += made
            self.notes += notes
        return rows


def _notes(config: BenchConfig, bench_notes: Sequence[str], total_s: float) -> list[str]:
    return [
        _table.environment_line() + f"; whole run {total_s:.0f} s",
        f"every row: median of {config.rounds} rounds after 1 warm-up round, the sides' rounds "
        "interleaved (who goes first rotates); a fresh pool and a fresh interpreter per row.",
        *bench_notes,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return _table.run_bench(
        argv, description=__doc__.split("\n\n")[0],
        quick_help="smoke run: smaller files, fewer rounds",
        dir_help="where the pools go (default: /dev/shm)",
        scratch_prefix="daxfs-bench-scale-", full_config=FULL_CONFIG, quick_config=QUICK_CONFIG,
        make_bench=ScaleBench, notes=_notes, header=_table.BASELINE_TABLE_HEADER)


if __name__ == "__main__":
    sys.exit(main())
