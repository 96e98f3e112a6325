"""Discard benchmark: sparse and discarded pools, deleting with discard on and off, memory held.

Prints one table, measured in one run, with a row per operation:

* fresh 1 GiB write (GB/s): create a file, write 1 GiB with 1 MiB ``pwrite``s, close — into
  a freshly made preallocated pool (``mkfs``), a sparse pool (``mkfs(sparse=True)``), and a
  pool whose blocks were written, deleted and discarded just before; beside ``os.write`` of
  the same chunks to a fresh file in /dev/shm.  A fresh pool is made every round (not
  timed), so every round writes memory the pool has never handed out.  Target: each pool
  at least 0.5× os (as the foundation bench's sequential write).  The sparse and discarded
  pools are also shown beside the preallocated one, reported only: its mkfs took the memory
  beforehand (a row times that mkfs beside a sparse one), where the others take it as
  blocks are handed out, as os.write does;
* deleting a 1 GiB file (ms): ``vol.unlink`` of a 1 GiB file with online discard on, beside
  the same with it off: the caller's cost (the discard runs on the volume's thread).  Target:
  on at most 1.5× off.  One more row times the whole of it with discard on: the unlink and
  the wait until the pool file gave its memory back (``vol.flush_discards()``), reported;
* memory held after deleting 90% of the data (MiB): fill a pool with 20 files, delete 18 of
  them, and read how much of the pool file the file system holds (``st_blocks``): with
  online discard on, beside the same files in a /dev/shm directory (target: at most 1.2×
  plus the pool's metadata), and with discard off (reported: nothing is given back) and
  then after ``vol.trim()`` (reported).

Rounds of the sides of a row are interleaved (who goes first alternates); every timed row
reports the median of its rounds after one warm-up round.  Pools and os files live in a
temporary directory under /dev/shm that is removed at the end, even on error.

Usage::

    python bench/bench_discard.py               # full run, about a minute on 2 cores
    python bench/bench_discard.py --quick       # smoke run, a few seconds (128 MiB)
    python bench/bench_discard.py --markdown    # the table as Markdown
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _table
from _table import GiB, MiB, Row, Target, size_text

try:
    import daxfs
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import daxfs

CHUNK = 1 * MiB
WRITE_VS_OS_MIN = 0.5
UNLINK_ON_VS_OFF_MAX = 1.5
HELD_VS_TMPFS_MAX = 1.2


@dataclass(frozen=True)
class BenchConfig:
    """How much work each row does; ``--quick`` picks the smaller one."""

    rounds: int              # measured rounds per timed row (plus one warm-up round)
    write_bytes: int         # the fresh write, and the deleted file
    held_files: int          # files filling the pool of the memory row
    held_file_bytes: int

    @property
    def pool_bytes(self) -> int:
        return _table.round_up(max(self.write_bytes, self.held_files * self.held_file_bytes) * 9 // 8
                               + 64 * MiB, 64 * MiB)


FULL_CONFIG = BenchConfig(rounds=5, write_bytes=1 * GiB, held_files=20, held_file_bytes=48 * MiB)
QUICK_CONFIG = BenchConfig(rounds=2, write_bytes=128 * MiB, held_files=20, held_file_bytes=6 * MiB)


def _allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


class DiscardBench:
    """Runs every row in a scratch directory."""

    def __init__(self, config: BenchConfig, scratch_dir: Path, cleanup: contextlib.ExitStack):
        self.config = config
        self.dir = scratch_dir
        self.cleanup = cleanup
        self.notes: list[str] = []
        self.chunk = memoryview(os.urandom(CHUNK))
        self.metadata = 0

    # -- helpers -----------------------------------------------------------------------

    def _pool(self, name: str, **options: Any) -> Any:
        path = str(self.dir / name)
        if os.path.exists(path):
            os.unlink(path)
        vol = daxfs.mkfs(path, self.config.pool_bytes, **options)
        self.cleanup.callback(_table.close_volume_quietly, vol, name)
        self.metadata = vol.statfs().metadata_size
        return vol

    def _drop(self, vol: Any) -> None:
        path = vol.path
        vol.close()
        os.unlink(path)

    def _fill(self, vol: Any, path: str, size: int) -> None:
        with vol.open(path, "wb") as f:
            pwrite, chunk = f.pwrite, self.chunk
            for offset in range(0, size, CHUNK):
                pwrite(chunk, offset)

    def _samples(self, contenders: dict[str, Callable[[int], float]]) -> dict[str, float]:
        samples = _table.interleaved_rounds(self.config.rounds, contenders, warmup_rounds=1)
        return {name: _table.median(values) for name, values in samples.items()}

    # -- fresh writes ------------------------------------------------------------------

    def fresh_write_rows(self) -> list[Row]:
        size = self.config.write_bytes

        def into(kind: str) -> Callable[[int], float]:
            def run(round_index: int) -> float:
                options = {"sparse": True} if kind == "sparse" else {}
                started = time.perf_counter_ns()
                vol = self._pool(f"{kind}-{round_index}.pool", **options)
                mkfs_ns.get(kind, []).append(time.perf_counter_ns() - started)
                if kind == "discarded":
                    self._fill(vol, "/old", size)
                    vol.unlink("/old")
                    vol.flush_discards()
                took = _table.elapsed_ns(lambda: self._fill(vol, "/fresh", size))
                self._drop(vol)
                return size / took

            return run

        def os_write(round_index: int) -> float:
            path = str(self.dir / f"os-{round_index}.bin")

            def write() -> None:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                try:
                    for _ in range(0, size, CHUNK):
                        os.write(fd, self.chunk)
                finally:
                    os.close(fd)

            took = _table.elapsed_ns(write)
            os.unlink(path)
            return size / took

        mkfs_ns: dict[str, list[int]] = {"preallocated": [], "sparse": []}
        _table.log(f"fresh {size_text(size)} writes: {self.config.rounds}+1 rounds × 4 sides")
        got = self._samples({"preallocated": into("preallocated"), "sparse": into("sparse"),
                             "discarded": into("discarded"), "os": os_write})
        label = f"fresh {size_text(size)} write, 1 MiB pwrites"
        rows = [_table.throughput_row(f"{label}: {kind} pool vs os", got[kind], got["os"],
                                      Target.min_ratio(WRITE_VS_OS_MIN))
                for kind in ("preallocated", "sparse", "discarded")]
        rows += [_table.Row(f"{label}: {kind} vs preallocated pool", "GB/s", got[kind], got["preallocated"],
                            got[kind] / got["preallocated"], Target.none())
                 for kind in ("sparse", "discarded")]
        pool = size_text(self.config.pool_bytes)
        rows.append(_table.absolute_row(f"mkfs of the {pool} pool: sparse vs preallocated", "ms",
                                        _table.median(mkfs_ns["sparse"][1:]) / 1e6,
                                        _table.median(mkfs_ns["preallocated"][1:]) / 1e6, Target.none()))
        return rows

    # -- deleting ----------------------------------------------------------------------

    def delete_rows(self) -> list[Row]:
        size = self.config.write_bytes
        on = self._pool("delete-on.pool")
        off = self._pool("delete-off.pool", discard=False)
        whole: list[float] = []

        def unlink(vol: Any, discard: bool) -> Callable[[int], float]:
            def run(round_index: int) -> float:
                path = f"/big-{round_index}"
                self._fill(vol, path, size)
                vol.flush_discards()                    # quiet: nothing queued from before
                pool = vol.path
                held = _allocated(pool)
                started = time.perf_counter_ns()
                vol.unlink(path)
                took = time.perf_counter_ns() - started
                if discard:
                    vol.flush_discards()                # waits for (or does) what is queued
                    whole.append(time.perf_counter_ns() - started)
                    if held - _allocated(pool) < size * 9 // 10:
                        raise AssertionError("deleting with online discard did not give the memory back")
                return took

            return run

        _table.log(f"unlink of a {size_text(size)} file: {self.config.rounds}+1 rounds, discard on and off")
        got = self._samples({"on": unlink(on, True), "off": unlink(off, False)})
        self._drop(on)
        self._drop(off)
        return [
            _table.Row(f"unlink a {size_text(size)} file: online discard on vs off", "ms", got["on"] / 1e6,
                       got["off"] / 1e6, got["on"] / got["off"], Target.max_ratio(UNLINK_ON_VS_OFF_MAX)),
            _table.absolute_row(f"unlink a {size_text(size)} file until its memory is back (discard on)", "ms",
                                _table.median(whole[1:]) / 1e6, got["off"] / 1e6, Target.none()),
        ]

    # -- memory held -------------------------------------------------------------------

    def held_rows(self) -> list[Row]:
        config = self.config
        n, each = config.held_files, config.held_file_bytes
        kept = n // 10

        def fill_and_delete(vol: Any) -> None:
            for i in range(n):
                self._fill(vol, f"/f{i}", each)
            for i in range(kept, n):
                vol.unlink(f"/f{i}")
            vol.flush_discards()

        _table.log(f"memory held after deleting {n - kept} of {n} files of {size_text(each)}")
        on = self._pool("held-on.pool", sparse=True)
        fill_and_delete(on)
        held_on = _allocated(on.path)
        self._drop(on)
        off = self._pool("held-off.pool", sparse=True, discard=False)
        fill_and_delete(off)
        held_off = _allocated(off.path)
        off.trim()
        held_trimmed = _allocated(off.path)
        self._drop(off)
        shm = self.dir / "held-os"
        shm.mkdir()
        for i in range(n):
            fd = os.open(str(shm / f"f{i}"), os.O_CREAT | os.O_WRONLY, 0o644)
            for _ in range(0, each, CHUNK):
                os.write(fd, self.chunk)
            os.close(fd)
        for i in range(kept, n):
            os.unlink(str(shm / f"f{i}"))
        held_os = sum(_allocated(str(shm / f"f{i}")) for i in range(kept))
        limit = HELD_VS_TMPFS_MAX * held_os + self.metadata
        self.notes.append(f"memory row target: at most {HELD_VS_TMPFS_MAX}× the tmpfs files plus the "
                          f"pool's metadata ({size_text(self.metadata)}): ≤ {limit / MiB:,.0f} MiB")
        label = f"pool memory after deleting 90% of {size_text(n * each)}"
        return [
            _table.absolute_row(f"{label}: online discard vs tmpfs files", "MiB", held_on / MiB, held_os / MiB,
                                Target.max_value(limit / MiB)),
            _table.absolute_row(f"{label}: discard off vs tmpfs files", "MiB", held_off / MiB, held_os / MiB,
                                Target.none()),
            _table.absolute_row(f"{label}: discard off, then trim, vs tmpfs files", "MiB", held_trimmed / MiB,
                                held_os / MiB, Target.none()),
        ]

    # -- the whole run -----------------------------------------------------------------

    def run(self) -> list[Row]:
        rows = self.fresh_write_rows()
        rows += self.delete_rows()
        rows += self.held_rows()
        return rows


def _notes(config: BenchConfig, bench_notes: Sequence[str], total_s: float) -> list[str]:
    size = size_text(config.write_bytes)
    return [
        _table.environment_line() + f"; whole run {total_s:.0f} s",
        f"timed rows: median of {config.rounds} rounds after 1 warm-up round, the sides' rounds "
        "interleaved (who goes first rotates).",
        f"fresh write: a new {size_text(config.pool_bytes)} pool each round (its mkfs is not in the "
        "write's time; the mkfs row times it): "
        "preallocated = mkfs (posix_fallocate of the whole file), sparse = mkfs(sparse=True), "
        f"discarded = mkfs, then a {size} file written, unlinked and discarded (not timed). "
        f"Timed: open(new, 'wb') + {size} of 1 MiB pwrites + close (durable on return). "
        "os: os.open(O_CREAT|O_EXCL) + os.write of the same chunks + close, a fresh /dev/shm "
        "file each round. The 'vs preallocated' rows divide the pools' own numbers.",
        f"unlink: vol.unlink of a {size} file alone is timed (it is written just before); "
        "'until its memory is back' adds vol.flush_discards(), which returns once the pool "
        "file no longer holds the file's memory (checked).",
        "memory: st_blocks of the pool file (metadata included) after the deletes and "
        "flush_discards(); tmpfs files: the sum of st_blocks of the files kept in /dev/shm.",
        *bench_notes,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return _table.run_bench(
        argv, description=__doc__.split("\n\n")[0],
        quick_help="smoke run: 128 MiB writes, 2 rounds",
        dir_help="where the pools and the os files go (default: /dev/shm)",
        scratch_prefix="daxfs-bench-discard-", full_config=FULL_CONFIG, quick_config=QUICK_CONFIG,
        make_bench=DiscardBench, notes=_notes, header=_table.BASELINE_TABLE_HEADER)


if __name__ == "__main__":
    sys.exit(main())
