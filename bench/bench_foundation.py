"""Foundation benchmark: daxfs's basic file operations beside ``os`` on /dev/shm.

Prints one table, measured in one run, with a row per operation:

* create + 4 KiB write + close, stat, 4 KiB random pread, unlink (µs per op): daxfs must be
  within 3× of the same call through ``os`` on a /dev/shm directory;
* sequential pwrite of 1 GiB in 1 MiB chunks (GB/s): daxfs must reach half of ``os``;
* mounting a volume that holds 100,000 files (s): at most 2 s.  The ``os`` column there is
  a reference, an ``os.scandir`` walk (with ``entry.stat()``) of the same tree on /dev/shm.

daxfs and ``os`` rounds are interleaved (who goes first alternates) so that noise hits both;
latency rows report the median of the rounds after one warm-up round, throughput the median
of its rounds, mount time the best of its rounds.  Pools and trees live in a temporary
directory under /dev/shm that is removed at the end, even on error.

Usage::

    python bench/bench_foundation.py               # full run, under a minute on 2 cores
    python bench/bench_foundation.py --quick       # smoke run, a few seconds
    python bench/bench_foundation.py --markdown    # the table as Markdown
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

SMALL_WRITE_BYTES = 4 * KiB
PREAD_BYTES = 4 * KiB
SEQUENTIAL_CHUNK_BYTES = 1 * MiB
MOUNT_FILE_PAYLOAD = b"hello, daxfs\n"
OS_CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY

LATENCY_MAX_RATIO = 3.0
THROUGHPUT_MIN_RATIO = 0.5
MOUNT_MAX_SECONDS = 2.0


@dataclass(frozen=True)
class BenchConfig:
    """How much work each row does; ``--quick`` picks the smaller one."""

    ops_per_round: int            # creates, stats, preads and unlinks per round
    latency_rounds: int           # measured rounds per latency row (plus one warm-up)
    pread_file_bytes: int
    sequential_bytes: int
    sequential_rounds: int
    mount_directories: int
    mount_files_per_directory: int
    mount_rounds: int

    @property
    def mount_files(self) -> int:
        return self.mount_directories * self.mount_files_per_directory

    @property
    def main_pool_bytes(self) -> int:
        small_files = (self.latency_rounds + 1) * self.ops_per_round * SMALL_WRITE_BYTES
        needed = 2 * self.sequential_bytes + self.pread_file_bytes + small_files + 256 * MiB
        return _table.round_up(max(needed, 512 * MiB), 64 * MiB)

    @property
    def mount_pool_bytes(self) -> int:
        # One block per file plus generous room for inodes, directories and the log.
        needed = self.mount_files * 12 * KiB + 256 * MiB
        return _table.round_up(needed, 64 * MiB)


FULL_CONFIG = BenchConfig(
    ops_per_round=2000, latency_rounds=5, pread_file_bytes=64 * MiB,
    sequential_bytes=1 * GiB, sequential_rounds=5,
    mount_directories=1000, mount_files_per_directory=100, mount_rounds=3,
)
QUICK_CONFIG = BenchConfig(
    ops_per_round=300, latency_rounds=3, pread_file_bytes=16 * MiB,
    sequential_bytes=128 * MiB, sequential_rounds=3,
    mount_directories=100, mount_files_per_directory=100, mount_rounds=3,
)


class FoundationBench:
    """Runs every row; owns the scratch directory, the pools and the volume opened on them."""

    def __init__(self, config: BenchConfig, scratch_dir: Path, cleanup: contextlib.ExitStack):
        self.config = config
        self.scratch_dir = scratch_dir
        self.os_root = scratch_dir / "os"
        self.os_root.mkdir()
        self.cleanup = cleanup
        self.notes: list[str] = []
        self.volume: Any = None

    # -- set-up ------------------------------------------------------------------------

    def open_main_volume(self) -> None:
        pool_path = self.scratch_dir / "main.pool"
        _table.log(f"mkfs {pool_path} ({self.config.main_pool_bytes / GiB:.2f} GiB)")
        self.volume = daxfs.mkfs(str(pool_path), self.config.main_pool_bytes)
        self.cleanup.callback(_table.close_volume_quietly, self.volume, "the main volume")

    # -- small-operation latency rows --------------------------------------------------

    def small_file_rows(self) -> list[Row]:
        """create+write+close, stat and unlink on per-round directories of fresh files."""
        config = self.config
        volume = self.volume
        total_rounds = config.latency_rounds + 1          # round 0 is the warm-up
        payload = os.urandom(SMALL_WRITE_BYTES)
        daxfs_paths: list[list[str]] = []
        os_paths: list[list[str]] = []
        for round_index in range(total_rounds):
            directory = f"r{round_index}"
            volume.mkdir("/" + directory)
            (self.os_root / directory).mkdir()
            names = [f"f{op:05d}" for op in range(config.ops_per_round)]
            daxfs_paths.append([f"/{directory}/{name}" for name in names])
            os_paths.append([str(self.os_root / directory / name) for name in names])

        def daxfs_create(round_index: int) -> float:
            paths = daxfs_paths[round_index]
            open_file = volume.open
            started_ns = time.perf_counter_ns()
            for path in paths:
                file = open_file(path, "xb")
                file.write(payload)
                file.close()
            return (time.perf_counter_ns() - started_ns) / len(paths)

        def os_create(round_index: int) -> float:
            paths = os_paths[round_index]
            os_open, os_write, os_close = os.open, os.write, os.close
            started_ns = time.perf_counter_ns()
            for path in paths:
                fd = os_open(path, OS_CREATE_FLAGS, 0o644)
                os_write(fd, payload)
                os_close(fd)
            return (time.perf_counter_ns() - started_ns) / len(paths)

        def daxfs_stat(round_index: int) -> float:
            return _per_op_ns(volume.stat, daxfs_paths[round_index])

        def os_stat(round_index: int) -> float:
            return _per_op_ns(os.stat, os_paths[round_index])

        def daxfs_unlink(round_index: int) -> float:
            return _per_op_ns(volume.unlink, daxfs_paths[round_index])

        def os_unlink(round_index: int) -> float:
            return _per_op_ns(os.unlink, os_paths[round_index])

        _table.log(f"create/stat/unlink: {config.latency_rounds}+1 rounds × "
                   f"{config.ops_per_round} files")
        create = self._latency_samples(daxfs_create, os_create)
        stat = self._latency_samples(daxfs_stat, os_stat)
        self._check_small_file(daxfs_paths[1][0], SMALL_WRITE_BYTES)
        pread_row = self.pread_row()              # between stat and unlink, as a user would
        unlink = self._latency_samples(daxfs_unlink, os_unlink)
        limit = Target.max_ratio(LATENCY_MAX_RATIO)
        return [
            _table.latency_row("create + 4 KiB write + close", *create, limit),
            _table.latency_row("stat", *stat, limit),
            pread_row,
            _table.latency_row("unlink", *unlink, limit),
        ]

    def _latency_samples(self, daxfs_round: Callable[[int], float],
                         os_round: Callable[[int], float]) -> tuple[float, float]:
        samples = _table.interleaved_rounds(
            self.config.latency_rounds, {"daxfs": daxfs_round, "os": os_round},
            warmup_rounds=1)
        return _table.median(samples["daxfs"]), _table.median(samples["os"])

    def _check_small_file(self, path: str, expected_size: int) -> None:
        size = self.volume.stat(path).st_size
        if size != expected_size:
            raise AssertionError(f"daxfs {path}: st_size {size}, expected {expected_size}")

    def pread_row(self) -> Row:
        """Random 4 KiB-aligned 4 KiB preads on an open file."""
        config = self.config
        volume = self.volume
        chunk = os.urandom(SEQUENTIAL_CHUNK_BYTES)
        daxfs_path = "/pread.bin"
        os_path = str(self.os_root / "pread.bin")
        _table.log(f"pread: filling a {config.pread_file_bytes // MiB} MiB file on each side")
        writer = volume.open(daxfs_path, "xb")
        try:
            for offset in range(0, config.pread_file_bytes, len(chunk)):
                writer.pwrite(chunk, offset)
        finally:
            writer.close()
        fd = os.open(os_path, OS_CREATE_FLAGS, 0o644)
        try:
            for offset in range(0, config.pread_file_bytes, len(chunk)):
                os.pwrite(fd, chunk, offset)
        finally:
            os.close(fd)

        blocks = config.pread_file_bytes // PREAD_BYTES
        rng = random.Random(20240601)
        offsets_per_round = [
            [rng.randrange(blocks) * PREAD_BYTES for _ in range(config.ops_per_round)]
            for _ in range(config.latency_rounds + 1)
        ]
        daxfs_file = volume.open(daxfs_path, "rb")
        self.cleanup.callback(_table.close_quietly, daxfs_file, daxfs_path)
        os_fd = os.open(os_path, os.O_RDONLY)
        self.cleanup.callback(os.close, os_fd)
        expected = chunk[:PREAD_BYTES]
        if daxfs_file.pread(PREAD_BYTES, 0) != expected:
            raise AssertionError("daxfs pread returned different bytes than were written")

        def daxfs_pread(round_index: int) -> float:
            pread = daxfs_file.pread
            offsets = offsets_per_round[round_index]
            started_ns = time.perf_counter_ns()
            for offset in offsets:
                pread(PREAD_BYTES, offset)
            return (time.perf_counter_ns() - started_ns) / len(offsets)

        def os_pread(round_index: int) -> float:
            pread = os.pread
            offsets = offsets_per_round[round_index]
            started_ns = time.perf_counter_ns()
            for offset in offsets:
                pread(os_fd, PREAD_BYTES, offset)
            return (time.perf_counter_ns() - started_ns) / len(offsets)

        daxfs_ns, os_ns = self._latency_samples(daxfs_pread, os_pread)
        label = f"4 KiB pread (random, {config.pread_file_bytes // MiB} MiB file)"
        return _table.latency_row(label, daxfs_ns, os_ns, Target.max_ratio(LATENCY_MAX_RATIO))

    # -- sequential throughput row -----------------------------------------------------

    def sequential_write_row(self) -> Row:
        """pwrite N MiB in 1 MiB chunks into a fresh file; close/fsync/unlink not timed."""
        config = self.config
        volume = self.volume
        chunk = os.urandom(SEQUENTIAL_CHUNK_BYTES)
        offsets = list(range(0, config.sequential_bytes, len(chunk)))

        def daxfs_sequential(round_index: int) -> float:
            path = f"/sequential{round_index}.bin"
            file = volume.open(path, "xb")
            try:
                pwrite = file.pwrite
                started_ns = time.perf_counter_ns()
                for offset in offsets:
                    pwrite(chunk, offset)
                elapsed = time.perf_counter_ns() - started_ns
            finally:
                file.close()
            size = volume.stat(path).st_size
            volume.unlink(path)
            if size != config.sequential_bytes:
                raise AssertionError(f"daxfs {path}: st_size {size}, "
                                     f"expected {config.sequential_bytes}")
            return config.sequential_bytes / elapsed

        def os_sequential(round_index: int) -> float:
            path = str(self.os_root / f"sequential{round_index}.bin")
            fd = os.open(path, OS_CREATE_FLAGS, 0o644)
            try:
                pwrite = os.pwrite
                started_ns = time.perf_counter_ns()
                for offset in offsets:
                    pwrite(fd, chunk, offset)
                elapsed = time.perf_counter_ns() - started_ns
            finally:
                os.close(fd)
            os.unlink(path)
            return config.sequential_bytes / elapsed

        _table.log(f"sequential pwrite: {config.sequential_rounds}+1 rounds × "
                   f"{size_text(config.sequential_bytes)}")
        samples = _table.interleaved_rounds(
            config.sequential_rounds, {"daxfs": daxfs_sequential, "os": os_sequential},
            warmup_rounds=1)
        label = f"seq pwrite {size_text(config.sequential_bytes)}, 1 MiB chunks"
        return _table.throughput_row(label, _table.median(samples["daxfs"]),
                                     _table.median(samples["os"]),
                                     Target.min_ratio(THROUGHPUT_MIN_RATIO))

    # -- mount row ---------------------------------------------------------------------

    def mount_row(self) -> Row:
        """open_volume of a pool holding many small files, beside a scandir walk of the same."""
        config = self.config
        pool_path = str(self.scratch_dir / "mount.pool")
        os_tree = self.os_root / "mount"
        directory_names = [f"d{index:04d}" for index in range(config.mount_directories)]
        file_names = [f"f{index:03d}" for index in range(config.mount_files_per_directory)]

        _table.log(f"mount: building {config.mount_files:,} files "
                   f"({config.mount_pool_bytes / GiB:.2f} GiB pool)")
        build_started_ns = time.perf_counter_ns()
        volume = daxfs.mkfs(pool_path, config.mount_pool_bytes)
        try:
            for directory in directory_names:
                volume.mkdir("/" + directory)
                for name in file_names:
                    file = volume.open(f"/{directory}/{name}", "xb")
                    file.write(MOUNT_FILE_PAYLOAD)
                    file.close()
        finally:
            volume.close()
        daxfs_build_s = (time.perf_counter_ns() - build_started_ns) / 1e9

        build_started_ns = time.perf_counter_ns()
        os_tree.mkdir()
        for directory in directory_names:
            (os_tree / directory).mkdir()
            for name in file_names:
                fd = os.open(str(os_tree / directory / name), OS_CREATE_FLAGS, 0o644)
                os.write(fd, MOUNT_FILE_PAYLOAD)
                os.close(fd)
        os_build_s = (time.perf_counter_ns() - build_started_ns) / 1e9
        self.notes.append(
            f"mount: building the {config.mount_files:,}-file volume took {daxfs_build_s:.1f} s "
            f"({daxfs_build_s * 1e6 / config.mount_files:.0f} µs/file incl. mkdirs; "
            f"os on /dev/shm: {os_build_s:.1f} s)")

        def daxfs_mount(round_index: int) -> float:
            started_ns = time.perf_counter_ns()
            mounted = daxfs.open_volume(pool_path)
            elapsed_s = (time.perf_counter_ns() - started_ns) / 1e9
            try:
                if round_index == 0:
                    self._check_mounted(mounted, directory_names, file_names)
            finally:
                mounted.close()
            return elapsed_s

        def os_walk(round_index: int) -> float:
            started_ns = time.perf_counter_ns()
            found = _scandir_walk(str(os_tree))
            elapsed_s = (time.perf_counter_ns() - started_ns) / 1e9
            if found != config.mount_files + config.mount_directories:
                raise AssertionError(f"os walk found {found} entries")
            return elapsed_s

        _table.log(f"mount: {config.mount_rounds} rounds of open_volume")
        samples = _table.interleaved_rounds(
            config.mount_rounds, {"daxfs": daxfs_mount, "os": os_walk})
        return _table.absolute_row(f"mount, {config.mount_files:,} files", "s",
                                   min(samples["daxfs"]), min(samples["os"]),
                                   Target.max_value(MOUNT_MAX_SECONDS))

    def _check_mounted(self, mounted: Any, directory_names: Sequence[str],
                       file_names: Sequence[str]) -> None:
        inodes = mounted.statfs().files
        expected = self.config.mount_files + len(directory_names)
        if inodes < expected:
            raise AssertionError(f"mounted volume has {inodes} inodes, expected ≥ {expected}")
        sample = f"/{directory_names[-1]}/{file_names[-1]}"
        if mounted.stat(sample).st_size != len(MOUNT_FILE_PAYLOAD):
            raise AssertionError(f"mounted volume: {sample} has the wrong size")

    # -- the whole run -----------------------------------------------------------------

    def run(self) -> list[Row]:
        self.open_main_volume()
        rows = self.small_file_rows()
        rows.append(self.sequential_write_row())
        rows.append(self.mount_row())
        return rows


def _per_op_ns(operation: Callable[[str], object], paths: Sequence[str]) -> float:
    started_ns = time.perf_counter_ns()
    for path in paths:
        operation(path)
    return (time.perf_counter_ns() - started_ns) / len(paths)


def _scandir_walk(root: str) -> int:
    """Visit every entry under root, stat()ing each, the way a mount must load every inode."""
    visited = 0
    pending = [root]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                entry.stat(follow_symlinks=False)
                visited += 1
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
    return visited


def _notes(config: BenchConfig, bench_notes: Sequence[str], total_s: float) -> list[str]:
    return [
        _table.environment_line() + f"; whole run {total_s:.0f} s",
        "ratio = daxfs time / os time for µs rows, daxfs GB/s / os GB/s for the GB/s row; "
        "os = the same calls on a /dev/shm directory.",
        f"latency rows: median of {config.latency_rounds} rounds × {config.ops_per_round} ops "
        "after 1 warm-up round, daxfs and os rounds interleaved.",
        f"seq pwrite: median of {config.sequential_rounds} rounds (after 1 warm-up) into a "
        "fresh file each; neither "
        "close nor fsync is timed (daxfs durability='sync': data durable when pwrite returns).",
        f"mount: best of {config.mount_rounds} daxfs.open_volume() (close not timed); os column "
        "= os.scandir walk of the same tree on /dev/shm with entry.stat() per entry "
        "(a reference only; the target is absolute).",
        *bench_notes,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return _table.run_bench(
        argv, description=__doc__.split("\n\n")[0],
        quick_help="smoke run: fewer ops, 128 MiB sequential write, 10,000 files",
        dir_help="where pools and the os tree go (default: /dev/shm)",
        scratch_prefix="daxfs-bench-", full_config=FULL_CONFIG, quick_config=QUICK_CONFIG,
        make_bench=FoundationBench, notes=_notes)


if __name__ == "__main__":
    sys.exit(main())
