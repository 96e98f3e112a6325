"""Mapping benchmark: daxfs's direct access (``File.map``) beside ``mmap``/``read`` on /dev/shm.

Prints one table, measured in one run, with a row per operation:

* map a 1 GiB file read-only, touch one byte, close (µs per op), beside reading the whole
  same-sized /dev/shm file with ``os.readv`` into a preallocated bytearray: daxfs must be at
  least 1000× faster;
* fresh write of 1 GiB through a write mapping (GB/s): ``f.map(0, 1 GiB, write=True)`` on a new
  empty file, ``np.copyto`` into its array, ``persist()``, beside create + ``ftruncate`` +
  ``mmap`` + ``np.copyto`` + ``flush()`` of a fresh /dev/shm file: at least 0.8× the baseline;
* rewrite through a mapping (GB/s): ``np.copyto`` into the array of an already-populated write
  mapping, beside ``np.copyto`` between two ordinary NumPy arrays: at least 0.9×;
* map + close of a 4 KiB file (µs per op), beside ``mmap.mmap(fd, 4096)`` + close of a 4 KiB
  /dev/shm file: reported, no target.

daxfs and baseline rounds are interleaved (who goes first alternates) so that noise hits both;
every row reports the median of its rounds after one warm-up round.  The pool and the
baseline files live in a temporary directory under /dev/shm that is removed at the end, even
on error; each 1 GiB baseline file is deleted as soon as its row is done.

Usage::

    python bench/bench_mapping.py               # full run, well under 3 minutes on 2 cores
    python bench/bench_mapping.py --quick       # smoke run, a few seconds
    python bench/bench_mapping.py --markdown    # the table as Markdown
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import _table
from _table import GiB, KiB, MiB, Row, Target, size_text

try:
    import daxfs
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import daxfs

SMALL_FILE_BYTES = 4 * KiB
FILL_CHUNK_BYTES = 1 * MiB
OS_CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_RDWR

MAP_READ_MIN_SPEEDUP = 1000.0       # daxfs map+touch+close ≥ 1000× faster than reading it all
FRESH_WRITE_MIN_RATIO = 0.8
REWRITE_MIN_RATIO = 0.9


@dataclass(frozen=True)
class BenchConfig:
    """How much work each row does; ``--quick`` picks the smaller one."""

    big_bytes: int                # the mapped file, the fresh write and the rewrite
    rounds: int                   # measured rounds per row (plus one warm-up round)
    big_maps_per_round: int       # map+touch+close of the big file per daxfs round
    small_maps_per_round: int     # map+close of the 4 KiB file per round

    @property
    def pool_bytes(self) -> int:
        # The big read file and one fresh-write file at a time, plus room for metadata
        # (mkfs keeps about 4% of the pool for it) and the small file.
        needed = 2 * self.big_bytes + self.big_bytes // 4 + 256 * MiB
        return _table.round_up(needed, 64 * MiB)


FULL_CONFIG = BenchConfig(big_bytes=1 * GiB, rounds=5, big_maps_per_round=200,
                          small_maps_per_round=2000)
QUICK_CONFIG = BenchConfig(big_bytes=128 * MiB, rounds=3, big_maps_per_round=50,
                           small_maps_per_round=300)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _read_all_into(fd: int, buffer: memoryview) -> int:
    """Read the file from offset 0 into ``buffer`` until it is full or the file ends."""
    got = 0
    total = len(buffer)
    while got < total:
        n = os.preadv(fd, [buffer[got:]], got)
        if n == 0:
            break
        got += n
    return got


class MappingBench:
    """Runs every row; owns the scratch directory, the pool and the volume opened on it."""

    def __init__(self, config: BenchConfig, scratch_dir: Path, cleanup: contextlib.ExitStack):
        self.config = config
        self.scratch_dir = scratch_dir
        self.cleanup = cleanup
        self.notes: list[str] = []
        self.volume: Any = None

    # -- set-up ------------------------------------------------------------------------

    def open_volume(self) -> None:
        pool_path = self.scratch_dir / "mapping.pool"
        _table.log(f"mkfs {pool_path} ({self.config.pool_bytes / GiB:.2f} GiB)")
        self.volume = daxfs.mkfs(str(pool_path), self.config.pool_bytes)
        self.cleanup.callback(_table.close_volume_quietly, self.volume, "the volume")

    def make_source(self) -> np.ndarray:
        """The bytes every row writes: a random 1 MiB block repeated (incompressible enough)."""
        size = self.config.big_bytes
        _table.log(f"source: {size_text(size)} uint8 array")
        block = np.frombuffer(os.urandom(FILL_CHUNK_BYTES), dtype=np.uint8)
        source = np.empty(size, dtype=np.uint8)
        source.reshape(-1, FILL_CHUNK_BYTES)[:] = block
        source[:8] = np.frombuffer(b"daxfs-bm", dtype=np.uint8)   # a marker to check for
        return source

    def _fill_daxfs(self, path: str, source: np.ndarray) -> None:
        file = self.volume.open(path, "xb")
        try:
            data = memoryview(source)
            for offset in range(0, len(source), FILL_CHUNK_BYTES):
                file.pwrite(data[offset:offset + FILL_CHUNK_BYTES], offset)
        finally:
            file.close()

    def _fill_os(self, path: str, source: np.ndarray) -> None:
        fd = os.open(path, OS_CREATE_FLAGS, 0o644)
        try:
            data = memoryview(source)
            for offset in range(0, len(source), FILL_CHUNK_BYTES):
                os.pwrite(fd, data[offset:offset + FILL_CHUNK_BYTES], offset)
        finally:
            os.close(fd)

    def _samples(self, daxfs_round: Callable[[int], float],
                 os_round: Callable[[int], float]) -> tuple[float, float]:
        samples = _table.interleaved_rounds(
            self.config.rounds, {"daxfs": daxfs_round, "os": os_round}, warmup_rounds=1)
        return _table.median(samples["daxfs"]), _table.median(samples["os"])

    # -- map a big file read-only ------------------------------------------------------

    def map_read_row(self, source: np.ndarray) -> Row:
        """f.map() + touch one byte + close, vs reading the whole file into a bytearray."""
        config = self.config
        size = config.big_bytes
        daxfs_path = "/big.bin"
        os_path = str(self.scratch_dir / "big.bin")
        _table.log(f"map read: filling a {size_text(size)} file on each side")
        self._fill_daxfs(daxfs_path, source)
        self._fill_os(os_path, source)
        expected_byte = int(source[0])

        daxfs_file = self.volume.open(daxfs_path, "rb")
        self.cleanup.callback(_table.close_quietly, daxfs_file, daxfs_path)
        buffer = bytearray(size)                 # preallocated and touched: readinto target
        view = memoryview(buffer)
        try:
            def daxfs_map(round_index: int) -> float:
                map_file = daxfs_file.map
                touched = 0
                started_ns = time.perf_counter_ns()
                for _ in range(config.big_maps_per_round):
                    mapping = map_file()
                    touched += mapping.buffer[0]
                    mapping.close()
                elapsed = time.perf_counter_ns() - started_ns
                if touched != expected_byte * config.big_maps_per_round:
                    raise AssertionError("daxfs mapping showed a different first byte")
                return elapsed / config.big_maps_per_round

            def os_read(round_index: int) -> float:
                started_ns = time.perf_counter_ns()
                fd = os.open(os_path, os.O_RDONLY)
                try:
                    got = _read_all_into(fd, view)
                finally:
                    os.close(fd)
                elapsed = time.perf_counter_ns() - started_ns
                if got != size or buffer[0] != expected_byte:
                    raise AssertionError(f"os read got {got} bytes, expected {size}")
                return elapsed

            _table.log(f"map read: {config.rounds}+1 rounds × {config.big_maps_per_round} "
                       f"daxfs maps / 1 os read of {size_text(size)}")
            daxfs_ns, os_ns = self._samples(daxfs_map, os_read)
        finally:
            view.release()
            del buffer
            _unlink_quietly(os_path)            # 1 GiB of tmpfs: give it back now
        label = f"map {size_text(size)} ro, touch 1 B, close (speed-up)"
        # A speed-up target: here the ratio is os time / daxfs time (higher is better), so
        # "≥ 1000× faster" reads as "≥ 1000×" instead of a ratio that rounds to 0.00×.
        return Row(label, "µs", daxfs_ns / 1e3, os_ns / 1e3, os_ns / daxfs_ns,
                   Target.min_ratio(MAP_READ_MIN_SPEEDUP))

    # -- fresh write through a write mapping -------------------------------------------

    def fresh_write_row(self, source: np.ndarray) -> Row:
        """create + map(write=True) + copyto + persist vs create + ftruncate + mmap + copyto + flush."""
        config = self.config
        volume = self.volume
        size = config.big_bytes
        warmup: dict[str, float] = {}

        def daxfs_fresh(round_index: int) -> float:
            path = f"/fresh{round_index}.bin"
            started_ns = time.perf_counter_ns()
            file = volume.open(path, "x+b")
            try:
                mapping = file.map(0, size, write=True)
                np.copyto(mapping.array(), source)
                mapping.persist()
                elapsed = time.perf_counter_ns() - started_ns
                if round_index == 0:
                    if bytes(mapping.buffer[:8]) != b"daxfs-bm":
                        raise AssertionError("daxfs write mapping lost the copied bytes")
                mapping.close()
            finally:
                file.close()
            file_size = volume.stat(path).st_size
            if round_index == 0:
                reader = volume.open(path, "rb")
                try:
                    if reader.pread(8, 0) != b"daxfs-bm":
                        raise AssertionError("daxfs file does not hold what its mapping was given")
                finally:
                    reader.close()
            volume.unlink(path)
            if file_size != size:
                raise AssertionError(f"daxfs {path}: st_size {file_size}, expected {size}")
            if round_index == 0:
                warmup["daxfs"] = size / elapsed
            return size / elapsed

        def os_fresh(round_index: int) -> float:
            path = str(self.scratch_dir / f"fresh{round_index}.bin")
            try:
                started_ns = time.perf_counter_ns()
                fd = os.open(path, OS_CREATE_FLAGS, 0o644)
                try:
                    os.ftruncate(fd, size)
                    mapped = mmap.mmap(fd, size)
                    array = np.frombuffer(mapped, dtype=np.uint8)
                    np.copyto(array, source)
                    mapped.flush()
                    elapsed = time.perf_counter_ns() - started_ns
                    del array
                    mapped.close()
                finally:
                    os.close(fd)
            finally:
                _unlink_quietly(path)
            if round_index == 0:
                warmup["os"] = size / elapsed
            return size / elapsed

        _table.log(f"fresh write: {config.rounds}+1 rounds × {size_text(size)}")
        daxfs_rate, os_rate = self._samples(daxfs_fresh, os_fresh)
        self.notes.append(
            f"fresh write, warm-up round (first touch of the pool's pages, not in the median): "
            f"daxfs {warmup['daxfs']:.2f} GB/s, os {warmup['os']:.2f} GB/s.")
        return _table.throughput_row(f"fresh write {size_text(size)} via mapping",
                                     daxfs_rate, os_rate, Target.min_ratio(FRESH_WRITE_MIN_RATIO))

    # -- rewrite through a populated write mapping -------------------------------------

    def rewrite_row(self, source: np.ndarray) -> Row:
        """np.copyto into a populated write mapping's array vs between two NumPy arrays."""
        config = self.config
        size = config.big_bytes
        file = self.volume.open("/big.bin", "r+b")        # written by the map-read row
        self.cleanup.callback(_table.close_quietly, file, "/big.bin (rewrite)")
        mapping = file.map(0, size, write=True)
        self.cleanup.callback(_table.close_quietly, mapping, "the rewrite mapping")
        target = mapping.array()
        plain = np.zeros(size, dtype=np.uint8)
        plain.fill(1)                                      # touch every page before timing
        try:
            def daxfs_copy(round_index: int) -> float:
                started_ns = time.perf_counter_ns()
                np.copyto(target, source)
                return size / (time.perf_counter_ns() - started_ns)

            def numpy_copy(round_index: int) -> float:
                started_ns = time.perf_counter_ns()
                np.copyto(plain, source)
                return size / (time.perf_counter_ns() - started_ns)

            _table.log(f"rewrite: {config.rounds}+1 rounds × {size_text(size)}")
            daxfs_rate, os_rate = self._samples(daxfs_copy, numpy_copy)
            if not np.array_equal(target[:FILL_CHUNK_BYTES], source[:FILL_CHUNK_BYTES]):
                raise AssertionError("rewrite mapping does not hold what was copied")
        finally:
            del target, plain
        mapping.close()
        file.close()
        return _table.throughput_row(f"rewrite {size_text(size)} via mapping (copyto)",
                                     daxfs_rate, os_rate, Target.min_ratio(REWRITE_MIN_RATIO))

    # -- small-file map + close --------------------------------------------------------

    def small_map_row(self) -> Row:
        """f.map() + close on a 4 KiB file vs mmap.mmap(fd, 4096) + close."""
        config = self.config
        payload = os.urandom(SMALL_FILE_BYTES)
        daxfs_path = "/small.bin"
        os_path = str(self.scratch_dir / "small.bin")
        writer = self.volume.open(daxfs_path, "xb")
        try:
            writer.write(payload)
        finally:
            writer.close()
        fd = os.open(os_path, OS_CREATE_FLAGS, 0o644)
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
        daxfs_file = self.volume.open(daxfs_path, "rb")
        self.cleanup.callback(_table.close_quietly, daxfs_file, daxfs_path)
        os_fd = os.open(os_path, os.O_RDONLY)
        self.cleanup.callback(os.close, os_fd)
        with daxfs_file.map() as check:
            if bytes(check.buffer) != payload:
                raise AssertionError("daxfs 4 KiB mapping shows different bytes than written")

        def daxfs_map(round_index: int) -> float:
            map_file = daxfs_file.map
            started_ns = time.perf_counter_ns()
            for _ in range(config.small_maps_per_round):
                map_file().close()
            return (time.perf_counter_ns() - started_ns) / config.small_maps_per_round

        def os_map(round_index: int) -> float:
            new_mmap, read_only = mmap.mmap, mmap.ACCESS_READ
            started_ns = time.perf_counter_ns()
            for _ in range(config.small_maps_per_round):
                new_mmap(os_fd, SMALL_FILE_BYTES, access=read_only).close()
            return (time.perf_counter_ns() - started_ns) / config.small_maps_per_round

        _table.log(f"small map: {config.rounds}+1 rounds × {config.small_maps_per_round} maps")
        daxfs_ns, os_ns = self._samples(daxfs_map, os_map)
        return _table.latency_row("map + close, 4 KiB file", daxfs_ns, os_ns, Target.none())

    # -- the whole run -----------------------------------------------------------------

    def run(self) -> list[Row]:
        self.open_volume()
        source = self.make_source()
        try:
            rows = [self.map_read_row(source), self.fresh_write_row(source),
                    self.rewrite_row(source), self.small_map_row()]
        finally:
            del source
        return rows


def _notes(config: BenchConfig, bench_notes: Sequence[str], total_s: float) -> list[str]:
    size = size_text(config.big_bytes)
    return [
        _table.environment_line() + f"; whole run {total_s:.0f} s",
        "ratio = daxfs GB/s / os GB/s for GB/s rows (higher is better), daxfs time / os time "
        "for the 4 KiB µs row (lower is better), and os time / daxfs time (the speed-up, higher "
        "is better) for the map-read row; every row: median of "
        f"{config.rounds} rounds after 1 warm-up round, daxfs and os rounds interleaved.",
        f"map read: daxfs = f.map() + mapping.buffer[0] + close() on an open {size} file "
        f"(mean of {config.big_maps_per_round} per round); os = os.open + os.preadv of the whole "
        f"{size} /dev/shm file into a preallocated, already-touched bytearray + os.close.",
        f"fresh write: daxfs = vol.open(new, 'x+b') + f.map(0, {size}, write=True) + "
        "np.copyto(m.array(), src) + m.persist(); os = os.open(O_CREAT|O_EXCL) + ftruncate + "
        "mmap + np.copyto(np.frombuffer(mm), src) + mm.flush() on /dev/shm. Closing, unmapping "
        "and unlinking are not timed. After the warm-up round daxfs reuses pool blocks whose "
        "pages tmpfs has already allocated; the os file gets new pages every round.",
        f"rewrite: np.copyto({size} write mapping already populated and faulted in, src) vs "
        f"np.copyto({size} ordinary array, already touched, src).",
        f"map + close 4 KiB: mean of {config.small_maps_per_round} per round; "
        "os = mmap.mmap(fd, 4096, access=ACCESS_READ) + close on an open /dev/shm file. "
        "Reported only (no target).",
        *bench_notes,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return _table.run_bench(
        argv, description=__doc__.split("\n\n")[0],
        quick_help="smoke run: 128 MiB files, 3 rounds, fewer maps",
        dir_help="where the pool and the os files go (default: /dev/shm)",
        scratch_prefix="daxfs-bench-mapping-", full_config=FULL_CONFIG, quick_config=QUICK_CONFIG,
        make_bench=MappingBench, notes=_notes)


if __name__ == "__main__":
    sys.exit(main())
