"""Ecosystem benchmark: Arrow, Parquet and fsspec listings on daxfs beside /dev/shm.

Prints one table, measured in one run, with a row per operation:

* read a 1 GiB Arrow IPC file to a usable table: ``daxfs.arrow.read_table`` (zero-copy,
  over a mapping) beside ``pyarrow.ipc`` reading the same file from /dev/shm through
  pyarrow's local file system: daxfs must be at least 100× faster;
* the same IPC file memory-mapped from /dev/shm by pyarrow (``pyarrow.memory_map``): a
  reference only, the other zero-copy route;
* Parquet write + read of a 1 GiB table through ``daxfs://`` URLs (pandas ``to_parquet`` /
  ``read_parquet`` with ``storage_options={"pool": ...}``) beside the same calls on a
  /dev/shm path: at least 0.8× the baseline's throughput; the write and the read are
  also reported apart, and the same through pyarrow alone (``filesystem=``, no pandas);
* ``ls`` of a 10,000-entry directory with ``detail=True`` through fsspec, beside
  ``os.scandir`` + ``entry.stat()`` on /dev/shm (what a detailed listing needs), and beside
  fsspec's own ``LocalFileSystem.ls`` on the same /dev/shm directory: ratios reported.

daxfs and baseline rounds are interleaved (who goes first alternates); every row is the
median of its rounds after one warm-up round.  Everything lives in a temporary directory
under /dev/shm, removed at the end even on error.

Usage::

    python bench/bench_ecosystem.py               # full run, about 2 minutes on 2 cores
    python bench/bench_ecosystem.py --quick       # smoke run, 128 MiB tables
    python bench/bench_ecosystem.py --markdown    # the table as Markdown
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

import _table
from _table import GiB, MiB, Row, Target, size_text

try:
    import daxfs
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import daxfs

import fsspec
from fsspec.implementations.local import LocalFileSystem

from daxfs.adapters.fsspec_fs import DaxFileSystem

COLUMNS = 8                         # float64 columns of the tables
ARROW_MIN_SPEEDUP = 100.0
PARQUET_MIN_RATIO = 0.8


@dataclass(frozen=True)
class BenchConfig:
    table_bytes: int                # bytes of column data in the Arrow and Parquet tables
    rounds: int                     # measured rounds per row (plus one warm-up round)
    arrow_reads_per_round: int      # daxfs zero-copy reads per round (each is microseconds)
    entries: int                    # files in the listed directory
    listings_per_round: int

    @property
    def pool_bytes(self) -> int:
        # The IPC file, one Parquet file at a time (random floats barely compress), the
        # listed directory, and room for metadata (mkfs keeps ~4% of the pool for it).
        needed = 2 * self.table_bytes + self.table_bytes // 2 + 256 * MiB
        return _table.round_up(needed, 64 * MiB)


FULL_CONFIG = BenchConfig(table_bytes=1 * GiB, rounds=5, arrow_reads_per_round=50,
                          entries=10_000, listings_per_round=5)
QUICK_CONFIG = BenchConfig(table_bytes=128 * MiB, rounds=3, arrow_reads_per_round=20,
                           entries=2_000, listings_per_round=3)


def _table_of(size: int) -> pa.Table:
    rows = size // (8 * COLUMNS)
    rng = np.random.default_rng(42)
    return pa.table({f"c{i}": rng.random(rows) for i in range(COLUMNS)})


class EcosystemBench:
    """Runs every row; owns the scratch directory, the pool and the daxfs:// file system."""

    def __init__(self, config: BenchConfig, scratch_dir: Path, cleanup: contextlib.ExitStack):
        self.config = config
        self.scratch_dir = scratch_dir
        self.cleanup = cleanup
        self.notes: list[str] = []
        self.pool = str(scratch_dir / "ecosystem.pool")
        self.fs: Any = None

    def open_pool(self) -> None:
        _table.log(f"mkfs {self.pool} ({self.config.pool_bytes / GiB:.2f} GiB)")
        daxfs.mkfs(self.pool, self.config.pool_bytes).close()
        if "daxfs" not in fsspec.available_protocols():      # a checkout not installed
            fsspec.register_implementation("daxfs", DaxFileSystem)
        self.fs = fsspec.filesystem("daxfs", pool=self.pool)
        self.cleanup.callback(DaxFileSystem.clear_instance_cache)
        self.cleanup.callback(self.fs.close)

    def _samples(self, contenders: dict[str, Any]) -> dict[str, float]:
        samples = _table.interleaved_rounds(self.config.rounds, contenders, warmup_rounds=1)
        return {name: _table.median(values) for name, values in samples.items()}

    # -- Arrow IPC: zero-copy read -----------------------------------------------------

    def arrow_rows(self) -> list[Row]:
        config = self.config
        table = _table_of(config.table_bytes)
        os_path = str(self.scratch_dir / "table.arrow")
        with pa.OSFile(os_path, "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        self.fs.put_file(os_path, "/table.arrow")
        vol = self.fs.volume
        expected = table.column("c3")[12345].as_py()
        file_bytes = os.path.getsize(os_path)
        del table
        gc.collect()
        local = pafs.LocalFileSystem()

        def daxfs_read(round_index: int) -> float:
            allocated = pa.total_allocated_bytes()
            started_ns = time.perf_counter_ns()
            for _ in range(config.arrow_reads_per_round):
                loaded = daxfs.arrow.read_table(vol, "/table.arrow")
            elapsed = time.perf_counter_ns() - started_ns
            if pa.total_allocated_bytes() != allocated:
                raise AssertionError("daxfs.arrow.read_table allocated memory: not zero-copy")
            if loaded.column("c3")[12345].as_py() != expected:
                raise AssertionError("daxfs table reads a different value")
            del loaded
            return elapsed / config.arrow_reads_per_round

        def os_read(round_index: int) -> float:
            started_ns = time.perf_counter_ns()
            with local.open_input_file(os_path) as source:
                loaded = ipc.open_file(source).read_all()
            elapsed = time.perf_counter_ns() - started_ns
            if loaded.column("c3")[12345].as_py() != expected:
                raise AssertionError("pyarrow table reads a different value")
            del loaded
            return elapsed

        def os_mapped(round_index: int) -> float:
            started_ns = time.perf_counter_ns()
            for _ in range(config.arrow_reads_per_round):
                with pa.memory_map(os_path) as source:
                    loaded = ipc.open_file(source).read_all()
            elapsed = time.perf_counter_ns() - started_ns
            if loaded.column("c3")[12345].as_py() != expected:
                raise AssertionError("pyarrow mapped table reads a different value")
            del loaded
            return elapsed / config.arrow_reads_per_round

        _table.log(f"arrow: {config.rounds}+1 rounds, {size_text(config.table_bytes)} IPC file")
        medians = self._samples({"daxfs": daxfs_read, "os": os_read, "mmap": os_mapped})
        os.unlink(os_path)
        gc.collect()
        size = size_text(config.table_bytes)
        self.notes.append(f"Arrow IPC file: {COLUMNS} float64 columns, {file_bytes:,} bytes, "
                          "uncompressed; pa.total_allocated_bytes() checked unchanged by every "
                          "daxfs read.")
        # Speed-up rows: the ratio is baseline time / daxfs time (higher is better).
        return [
            Row(f"read {size} Arrow IPC to a table (speed-up)", "µs", medians["daxfs"] / 1e3,
                medians["os"] / 1e3, medians["os"] / medians["daxfs"],
                Target.min_ratio(ARROW_MIN_SPEEDUP)),
            Row(f"read {size} Arrow IPC: vs pa.memory_map on /dev/shm (speed-up)", "µs",
                medians["daxfs"] / 1e3, medians["mmap"] / 1e3,
                medians["mmap"] / medians["daxfs"], Target.none()),
        ]

    # -- Parquet through daxfs:// ------------------------------------------------------

    def parquet_rows(self) -> list[Row]:
        config = self.config
        frame = _table_of(config.table_bytes).to_pandas()
        nbytes = int(frame.memory_usage(index=False).sum())
        options = {"pool": self.pool}
        timings: dict[str, list[tuple[int, int]]] = {"daxfs": [], "os": []}

        def round_on(side: str, url: str, storage_options: dict[str, Any] | None) -> float:
            started_ns = time.perf_counter_ns()
            frame.to_parquet(url, storage_options=storage_options)
            written_ns = time.perf_counter_ns()
            back = pd.read_parquet(url, storage_options=storage_options)
            read_ns = time.perf_counter_ns()
            if len(back) != len(frame) or back["c5"].iat[777] != frame["c5"].iat[777]:
                raise AssertionError(f"{side}: the Parquet file read back differs")
            del back
            timings[side].append((written_ns - started_ns, read_ns - written_ns))
            return nbytes / (read_ns - started_ns)

        def daxfs_round(round_index: int) -> float:
            url = f"daxfs:///frame{round_index}.parquet"
            try:
                return round_on("daxfs", url, options)
            finally:
                self.fs.rm_file(url)

        def os_round(round_index: int) -> float:
            path = str(self.scratch_dir / f"frame{round_index}.parquet")
            try:
                return round_on("os", path, None)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

        _table.log(f"parquet: {config.rounds}+1 rounds, {size_text(config.table_bytes)} frame")
        medians = self._samples({"daxfs": daxfs_round, "os": os_round})
        del frame
        gc.collect()
        measured = {side: pairs[1:] for side, pairs in timings.items()}   # drop the warm-up
        write = {side: _table.median(w for w, _ in pairs) for side, pairs in measured.items()}
        read = {side: _table.median(r for _, r in pairs) for side, pairs in measured.items()}
        size = size_text(config.table_bytes)
        return [
            _table.throughput_row(f"Parquet write + read {size} via daxfs:// (pandas)",
                                  medians["daxfs"], medians["os"], Target.min_ratio(PARQUET_MIN_RATIO)),
            _table.throughput_row(f"Parquet write only, {size} (same rounds)",
                                  nbytes / write["daxfs"], nbytes / write["os"], Target.none()),
            _table.throughput_row(f"Parquet read only, {size} (same rounds)",
                                  nbytes / read["daxfs"], nbytes / read["os"], Target.none()),
        ]

    def pyarrow_parquet_row(self) -> Row:
        """Parquet through pyarrow alone (no pandas conversions): the I/O path on its own."""
        config = self.config
        table = _table_of(config.table_bytes)
        nbytes = table.nbytes
        local = pafs.LocalFileSystem()
        fs = self.fs

        def one_round(path: str, filesystem: Any) -> float:
            started_ns = time.perf_counter_ns()
            pq.write_table(table, path, filesystem=filesystem)
            back = pq.read_table(path, filesystem=filesystem)
            elapsed = time.perf_counter_ns() - started_ns
            if back.num_rows != table.num_rows or back.column("c2")[99] != table.column("c2")[99]:
                raise AssertionError(f"{path}: the Parquet file read back differs")
            del back
            if filesystem is local:
                local.delete_file(path)
            else:
                fs.rm_file(path)
            return nbytes / elapsed

        _table.log(f"parquet (pyarrow): {config.rounds}+1 rounds, {size_text(config.table_bytes)}")
        medians = self._samples({
            "daxfs": lambda i: one_round(f"/arrow{i}.parquet", fs),
            "os": lambda i: one_round(str(self.scratch_dir / f"arrow{i}.parquet"), local)})
        del table
        gc.collect()
        return _table.throughput_row(
            f"Parquet write + read {size_text(config.table_bytes)} via daxfs:// (pyarrow)",
            medians["daxfs"], medians["os"], Target.none())

    # -- listing a big directory -------------------------------------------------------

    def listing_rows(self) -> list[Row]:
        config = self.config
        vol = self.fs.volume
        os_dir = self.scratch_dir / "many"
        os_dir.mkdir()
        vol.mkdir("/many")
        _table.log(f"ls: making {config.entries:,} files on each side")
        for i in range(config.entries):
            name = f"file-{i:05d}.bin"
            vol.open(f"/many/{name}", "xb").close()
            (os_dir / name).touch()
        local = LocalFileSystem()
        fs = self.fs
        count = config.entries

        def timed(list_once: Any) -> Any:
            def one_round(round_index: int) -> float:
                started_ns = time.perf_counter_ns()
                for _ in range(config.listings_per_round):
                    listed = list_once()
                elapsed = time.perf_counter_ns() - started_ns
                if len(listed) != count:
                    raise AssertionError(f"listed {len(listed)} entries, expected {count}")
                return elapsed / config.listings_per_round
            return one_round

        def scandir_with_stat() -> list[Any]:
            with os.scandir(os_dir) as entries:
                return [(entry.path, entry.stat()) for entry in entries]

        _table.log(f"ls: {config.rounds}+1 rounds × {config.listings_per_round} listings")
        medians = self._samples({"daxfs": timed(lambda: fs.ls("/many", detail=True)),
                                 "scandir": timed(scandir_with_stat),
                                 "local": timed(lambda: local.ls(str(os_dir), detail=True))})
        entries = f"{config.entries:,}-entry dir"
        return [
            absolute_ratio_row(f"fsspec ls {entries}, detail=True vs os.scandir + stat", "ms",
                               medians["daxfs"] / 1e6, medians["scandir"] / 1e6),
            absolute_ratio_row(f"fsspec ls {entries}, detail=True vs fsspec local", "ms",
                               medians["daxfs"] / 1e6, medians["local"] / 1e6),
        ]

    def run(self) -> list[Row]:
        self.open_pool()
        return [*self.arrow_rows(), *self.parquet_rows(), self.pyarrow_parquet_row(),
                *self.listing_rows()]


def absolute_ratio_row(label: str, unit: str, daxfs_value: float, baseline: float) -> Row:
    """A reported-only row whose ratio is daxfs / baseline (lower is better)."""
    return _table.absolute_row(label, unit, daxfs_value, baseline, Target.none())


def _notes(config: BenchConfig, bench_notes: Sequence[str], total_s: float) -> list[str]:
    size = size_text(config.table_bytes)
    return [
        _table.environment_line() + f"; pandas {pd.__version__}, pyarrow {pa.__version__}, "
        f"fsspec {fsspec.__version__}; whole run {total_s:.0f} s",
        "ratio: the speed-up (baseline time / daxfs time, higher is better) for the Arrow rows; "
        "daxfs GB/s / os GB/s for the Parquet rows (higher is better); daxfs time / baseline "
        f"time for the ls rows (lower is better). Every row: median of {config.rounds} rounds "
        "after 1 warm-up round, the sides' rounds interleaved.",
        f"Arrow: daxfs = daxfs.arrow.read_table(vol, path) on an embedded volume (mean of "
        f"{config.arrow_reads_per_round} per round), the table's columns over a read mapping; "
        f"os = pyarrow.ipc.open_file(LocalFileSystem().open_input_file(path)).read_all() of the "
        f"same {size} file on /dev/shm; the reference = the same over pyarrow.memory_map(path).",
        f"Parquet: pandas DataFrame.to_parquet then read_parquet of the same {size} frame "
        "(pyarrow engine, default snappy compression), through daxfs:// with "
        "storage_options={'pool': POOL} vs a /dev/shm path; GB/s of frame bytes over write + "
        "read, a new file each round, removed after it (not timed). The pyarrow row: "
        "pq.write_table then pq.read_table of the same table, filesystem= the daxfs:// "
        "file system vs pyarrow's LocalFileSystem on /dev/shm; GB/s of table bytes.",
        f"ls: DaxFileSystem.ls(dir, detail=True) (name, size, type, mtime, ino, mode, ... per "
        f"entry) vs [(e.path, e.stat()) for e in os.scandir(dir)] vs "
        f"LocalFileSystem().ls(dir, detail=True), {config.entries:,} empty files; mean of "
        f"{config.listings_per_round} listings per round.",
        *bench_notes,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return _table.run_bench(
        argv, description=__doc__.split("\n\n")[0],
        quick_help="smoke run: 128 MiB tables, 2,000 entries, 3 rounds",
        dir_help="where the pool and the baseline files go (default: /dev/shm)",
        scratch_prefix="daxfs-bench-ecosystem-", full_config=FULL_CONFIG,
        quick_config=QUICK_CONFIG, make_bench=EcosystemBench, notes=_notes,
        header=_table.BASELINE_TABLE_HEADER)


if __name__ == "__main__":
    raise SystemExit(main())
