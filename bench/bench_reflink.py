"""Reflink benchmark: what sharing blocks costs daxfs (``clone_file``, copy-on-write, ``owners``).

Prints one table, measured in one run, with a row per operation:

* ``vol.clone_file`` of a 1 GiB file (ms) beside copying it byte by byte through daxfs
  (read it and write a new daxfs file in 4 MiB chunks).  Target: the clone at least 100×
  faster than the copy.  Three sources: one written in 1 MiB pwrites (1 extent), and two
  fragmented ones made by interleaving writes to two files (1 MiB pieces: 1,024 extents;
  64 KiB pieces: 16,384 extents).  Clone cost follows the extent count, copy cost the bytes;
* the daxfs byte copy beside ``shutil.copyfile`` of a 1 GiB file on /dev/shm (a reference
  only, no target);
* the first 4 KiB pwrite into a freshly cloned 1 GiB file, which copies that one block
  (copy-on-write), beside a 4 KiB pwrite into a private (never cloned) 1 GiB file (µs; no
  target);
* ``vol.owners(pool_offset, 4096)`` on a block shared by 1,000 files (µs per call; it must
  return 1,000 owners), beside building a 1,000-element list of Owner tuples in a Python loop
  (a reference only; no target).

Rounds of the two sides of a row are interleaved (who goes first rotates) so that noise hits
both; every row reports the median of its rounds after one warm-up round.  The pool and the
/dev/shm reference files live in a temporary directory under /dev/shm that is removed at the
end, even on error.

Usage::

    python bench/bench_reflink.py               # full run, about a minute on 2 cores
    python bench/bench_reflink.py --quick       # smoke run, a few seconds
    python bench/bench_reflink.py --markdown    # the table as Markdown
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
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

BLOCK = 4 * KiB
WRITE_CHUNK_BYTES = 1 * MiB          # how the sources are written
COPY_CHUNK_BYTES = 4 * MiB           # how the daxfs byte copy moves data
SHARERS = 1000                       # files sharing the block owners() is asked about

CLONE_MIN_SPEEDUP = 100.0


@dataclass(frozen=True)
class BenchConfig:
    """How much work each row does; ``--quick`` picks the smaller one."""

    big_bytes: int                    # the cloned / copied files
    rounds: int                       # measured rounds per row (plus one warm-up round)
    fragment_pieces: tuple[int, ...]  # interleave piece sizes of the fragmented sources
    cows_per_round: int               # fresh clones (one first write each) per COW round
    owners_calls_per_round: int

    @property
    def pool_bytes(self) -> int:
        # At most three big files live at once (a fragmented pair and a copy of one of them),
        # plus the 1,000 small files and room for metadata (mkfs keeps some 4%).
        needed = 3 * self.big_bytes * 9 // 8 + 256 * MiB
        return _table.round_up(needed, 64 * MiB)


FULL_CONFIG = BenchConfig(big_bytes=1 * GiB, rounds=5, fragment_pieces=(1 * MiB, 64 * KiB),
                          cows_per_round=50, owners_calls_per_round=10)
QUICK_CONFIG = BenchConfig(big_bytes=128 * MiB, rounds=3, fragment_pieces=(1 * MiB, 64 * KiB),
                           cows_per_round=20, owners_calls_per_round=3)


class ReflinkBench:
    """Runs every row; owns the scratch directory, the pool and the volume opened on it."""

    def __init__(self, config: BenchConfig, scratch_dir: Path, cleanup: contextlib.ExitStack):
        self.config = config
        self.scratch_dir = scratch_dir
        self.cleanup = cleanup
        self.notes: list[str] = []
        self.volume: Any = None
        self.chunk = os.urandom(WRITE_CHUNK_BYTES)
        self.copy_buffer = bytearray(COPY_CHUNK_BYTES)     # touched once, reused by every copy
        self.samples_checked: set[str] = set()

    # -- set-up ------------------------------------------------------------------------

    def open_volume(self) -> None:
        pool_path = self.scratch_dir / "reflink.pool"
        _table.log(f"mkfs {pool_path} ({self.config.pool_bytes / GiB:.2f} GiB)")
        self.volume = daxfs.mkfs(str(pool_path), self.config.pool_bytes)
        self.cleanup.callback(_table.close_volume_quietly, self.volume, "the volume")

    def _samples(self, contenders: dict[str, Callable[[int], float]]) -> dict[str, float]:
        """Medians of the measured rounds; the warm-up round's values go to ``self.warmup``."""
        self.warmup: dict[str, float] = {}

        def keeping_warmup(name: str, contender: Callable[[int], float]) -> Callable[[int], float]:
            def run(round_index: int) -> float:
                value = contender(round_index)
                if round_index == 0:
                    self.warmup[name] = value
                return value
            return run

        samples = _table.interleaved_rounds(
            self.config.rounds, {name: keeping_warmup(name, c) for name, c in contenders.items()},
            warmup_rounds=1)
        return {name: _table.median(values) for name, values in samples.items()}

    def write_source(self, path: str) -> None:
        """A big file written in 1 MiB pwrites (the allocator places it in one run)."""
        size = self.config.big_bytes
        with self.volume.open(path, "xb") as file:
            pwrite, chunk = file.pwrite, self.chunk
            for offset in range(0, size, len(chunk)):
                pwrite(chunk, offset)

    def write_interleaved(self, path: str, other: str, piece: int) -> None:
        """Two big files written in alternating ``piece``-sized pwrites: each ends up in
        size/piece extents, the other file's pieces between them."""
        size = self.config.big_bytes
        data = self.chunk[:piece]
        with self.volume.open(path, "xb") as first, self.volume.open(other, "xb") as second:
            for offset in range(0, size, piece):
                first.pwrite(data, offset)
                second.pwrite(data, offset)

    def _extent_count(self, path: str) -> int:
        with self.volume.open(path, "rb") as file:
            return len(file.extents())

    def _check_same_bytes(self, source: str, copy: str) -> None:
        """The copy or clone reads like the source (size, and a few spread-out blocks)."""
        volume = self.volume
        size = volume.stat(source).st_size
        if volume.stat(copy).st_size != size:
            raise AssertionError(f"{copy}: size {volume.stat(copy).st_size}, expected {size}")
        with volume.open(source, "rb") as a, volume.open(copy, "rb") as b:
            for offset in (0, size // 3 // BLOCK * BLOCK, size - BLOCK):
                if a.pread(BLOCK, offset) != b.pread(BLOCK, offset):
                    raise AssertionError(f"{copy} differs from {source} at {offset}")

    # -- clone vs copy -----------------------------------------------------------------

    def _daxfs_copy(self, source: str, destination: str) -> None:
        """What a copy without reflink does: read the source and write a new file, 4 MiB at a time."""
        view = memoryview(self.copy_buffer)
        with self.volume.open(source, "rb") as src, self.volume.open(destination, "xb") as dst:
            readinto, write = src.readinto, dst.write
            while count := readinto(view):
                write(view[:count])

    def clone_contenders(self, source: str, tag: str) -> dict[str, Callable[[int], float]]:
        volume = self.volume
        size = self.config.big_bytes

        def clone(round_index: int) -> float:
            path = f"/clone-{tag}-{round_index}"
            started_ns = time.perf_counter_ns()
            volume.clone_file(source, path)
            elapsed = time.perf_counter_ns() - started_ns
            if round_index == 0:
                self._check_same_bytes(source, path)
                shared = volume.statfs().shared
                if shared < size:
                    raise AssertionError(f"after clone_file statfs().shared is {shared}, "
                                         f"expected ≥ {size}")
            volume.unlink(path)
            return elapsed / 1e6

        def copy(round_index: int) -> float:
            path = f"/copy-{tag}-{round_index}"
            started_ns = time.perf_counter_ns()
            self._daxfs_copy(source, path)
            elapsed = time.perf_counter_ns() - started_ns
            if round_index == 0:
                self._check_same_bytes(source, path)
            volume.unlink(path)
            return elapsed / 1e6

        return {"clone": clone, "copy": copy}

    def _clone_row(self, label: str, medians: dict[str, float]) -> Row:
        # A speed-up target: the ratio is copy time / clone time (higher is better).
        clone_ms, copy_ms = medians["clone"], medians["copy"]
        return Row(label, "ms", clone_ms, copy_ms, copy_ms / clone_ms,
                   Target.min_ratio(CLONE_MIN_SPEEDUP))

    def contiguous_rows(self) -> list[Row]:
        """clone_file vs daxfs copy vs os copyfile of the 1-extent source."""
        config = self.config
        size = config.big_bytes
        source = "/source.bin"
        _table.log(f"clone vs copy: writing a {size_text(size)} source in 1 MiB pwrites")
        self.write_source(source)
        extents = self._extent_count(source)

        os_source = str(self.scratch_dir / "os-source.bin")
        with open(os_source, "wb") as out:
            for _ in range(0, size, len(self.chunk)):
                out.write(self.chunk)

        def os_copy(round_index: int) -> float:
            path = str(self.scratch_dir / f"os-copy-{round_index}.bin")
            started_ns = time.perf_counter_ns()
            shutil.copyfile(os_source, path)
            elapsed = time.perf_counter_ns() - started_ns
            if os.path.getsize(path) != size:
                raise AssertionError("shutil.copyfile made a file of the wrong size")
            os.unlink(path)
            return elapsed / 1e6

        contenders = self.clone_contenders(source, "contiguous")
        contenders["os"] = os_copy
        _table.log(f"clone vs copy: {config.rounds}+1 rounds of clone_file, daxfs copy and "
                   "shutil.copyfile")
        try:
            medians = self._samples(contenders)
        finally:
            os.unlink(os_source)
        self.notes.append(
            f"warm-up round of the 1-extent rows (not in the table): clone {self.warmup['clone']:.3f} ms, "
            f"daxfs copy {self.warmup['copy']:,.0f} ms (its first touch of fresh pool pages in this "
            f"mount; later copies reuse the pages the previous copy freed), os copyfile "
            f"{self.warmup['os']:,.0f} ms.")
        clone_row = self._clone_row(
            f"clone_file {size_text(size)}, {extents:,} extent{'s' if extents != 1 else ''} "
            "(vs daxfs copy)", medians)
        copy_row = Row(f"byte copy {size_text(size)}: daxfs (4 MiB chunks) vs os copyfile", "ms",
                       medians["copy"], medians["os"], medians["copy"] / medians["os"],
                       Target.none())
        return [clone_row, copy_row]

    def fragmented_row(self, piece: int) -> Row:
        """clone_file vs daxfs copy of a source fragmented by interleaved writes."""
        config = self.config
        size = config.big_bytes
        volume = self.volume
        source, other = f"/frag-{piece}.bin", f"/frag-{piece}-partner.bin"
        piece_text = f"{piece // MiB} MiB" if piece % MiB == 0 else f"{piece // KiB} KiB"
        _table.log(f"fragmented: two {size_text(size)} files in alternating {piece_text} pwrites")
        self.write_interleaved(source, other, piece)
        extents = self._extent_count(source)
        contenders = self.clone_contenders(source, f"frag{piece}")
        _table.log(f"fragmented ({extents:,} extents): {config.rounds}+1 rounds of clone_file "
                   "and daxfs copy")
        medians = self._samples(contenders)
        volume.unlink(source)
        volume.unlink(other)
        return self._clone_row(f"clone_file {size_text(size)}, {extents:,} extents "
                               f"({piece_text} interleave)", medians)

    # -- copy on write -----------------------------------------------------------------

    def cow_row(self) -> Row:
        """First 4 KiB pwrite into a fresh clone vs a 4 KiB pwrite into a private file."""
        config = self.config
        volume = self.volume
        size = config.big_bytes
        source, private = "/source.bin", "/private.bin"
        _table.log(f"copy on write: writing a private {size_text(size)} file")
        self.write_source(private)
        volume.mkdir("/cow")
        rng = random.Random(20240601)
        blocks = size // BLOCK
        offsets_per_round = [[rng.randrange(blocks) * BLOCK for _ in range(config.cows_per_round)]
                             for _ in range(config.rounds + 1)]
        payload = os.urandom(BLOCK)
        private_file = volume.open(private, "r+b")
        self.cleanup.callback(private_file.close)

        def first_write(round_index: int) -> float:
            total_ns = 0
            for index, offset in enumerate(offsets_per_round[round_index]):
                path = f"/cow/r{round_index}-{index}"
                volume.clone_file(source, path)
                with volume.open(path, "r+b") as clone:
                    pwrite = clone.pwrite
                    started_ns = time.perf_counter_ns()
                    pwrite(payload, offset)
                    total_ns += time.perf_counter_ns() - started_ns
                    if round_index == 0 and index == 0:
                        self._check_cow(source, clone, offset, payload)
                volume.unlink(path)
            return total_ns / len(offsets_per_round[round_index])

        def private_write(round_index: int) -> float:
            pwrite = private_file.pwrite
            total_ns = 0
            for offset in offsets_per_round[round_index]:
                started_ns = time.perf_counter_ns()
                pwrite(payload, offset)
                total_ns += time.perf_counter_ns() - started_ns
            return total_ns / len(offsets_per_round[round_index])

        _table.log(f"copy on write: {config.rounds}+1 rounds × {config.cows_per_round} fresh clones")
        medians = self._samples({"cow": first_write, "private": private_write})
        self.notes.append(f"warm-up round of the COW row (not in the table): COW "
                          f"{self.warmup['cow'] / 1e3:.1f} µs, private {self.warmup['private'] / 1e3:.1f} µs.")
        private_file.close()
        volume.unlink(private)
        volume.unlink(source)
        return _table.latency_row(f"first 4 KiB pwrite into a fresh {size_text(size)} clone "
                                  "(COW) vs private", medians["cow"], medians["private"],
                                  Target.none())

    def _check_cow(self, source: str, clone: Any, offset: int, payload: bytes) -> None:
        """The write went to the clone only, and only its one block stopped being shared."""
        volume = self.volume
        if clone.pread(BLOCK, offset) != payload:
            raise AssertionError("the clone does not read what was written into it")
        with volume.open(source, "rb") as original:
            if original.pread(BLOCK, offset) != self.chunk[offset % len(self.chunk):][:BLOCK]:
                raise AssertionError("a write into a clone changed its source")
        shared = volume.statfs().shared
        if shared != self.config.big_bytes - BLOCK:
            raise AssertionError(f"after one 4 KiB COW statfs().shared is {shared}, expected "
                                 f"{self.config.big_bytes - BLOCK}: more than one block was copied")

    # -- owners ------------------------------------------------------------------------

    def owners_row(self) -> Row:
        """owners() of a block shared by 1,000 files vs a 1,000-element Python loop."""
        config = self.config
        volume = self.volume
        volume.mkdir("/owners")
        original = "/owners/f0000"
        with volume.open(original, "xb") as file:
            file.write(self.chunk[:BLOCK])
        _table.log(f"owners: cloning a 4 KiB file {SHARERS - 1} times")
        started_ns = time.perf_counter_ns()
        for index in range(1, SHARERS):
            volume.clone_file(original, f"/owners/f{index:04d}")
        clone_us = (time.perf_counter_ns() - started_ns) / 1e3 / (SHARERS - 1)
        self.notes.append(f"owners: the {SHARERS - 1} clone_file calls of the 4 KiB file took "
                          f"{clone_us:.0f} µs each.")
        with volume.open(original, "rb") as file:
            (extent,) = file.extents()
        pool_offset = extent.pool_offset

        found = volume.owners(pool_offset, BLOCK)
        expected_paths = {f"/owners/f{index:04d}" for index in range(SHARERS)}
        if (len(found) != SHARERS or {o.path for o in found} != expected_paths
                or len({o.ino for o in found}) != SHARERS
                or any((o.file_offset, o.length, o.pool_offset) != (0, BLOCK, pool_offset)
                       for o in found)):
            raise AssertionError(f"owners() returned {len(found)} owners, expected {SHARERS} "
                                 "distinct files at file offset 0, 4 KiB each")
        reference_fields = [(o.ino, o.path, o.file_offset, o.length, o.pool_offset) for o in found]
        owner_type = type(found[0])
        calls = config.owners_calls_per_round

        def owners(round_index: int) -> float:
            lookup = volume.owners
            started_ns = time.perf_counter_ns()
            for _ in range(calls):
                lookup(pool_offset, BLOCK)
            return (time.perf_counter_ns() - started_ns) / calls

        def python_loop(round_index: int) -> float:
            started_ns = time.perf_counter_ns()
            for _ in range(calls):
                [owner_type(*fields) for fields in reference_fields]
            return (time.perf_counter_ns() - started_ns) / calls

        _table.log(f"owners: {config.rounds}+1 rounds × {calls} calls")
        medians = self._samples({"owners": owners, "loop": python_loop})
        return _table.latency_row(f"owners() of a block shared by {SHARERS:,} files",
                                  medians["owners"], medians["loop"], Target.none())

    # -- the whole run -----------------------------------------------------------------

    def run(self) -> list[Row]:
        self.open_volume()
        rows = self.contiguous_rows()
        cow = self.cow_row()
        rows[1:1] = [self.fragmented_row(piece) for piece in self.config.fragment_pieces]
        rows.append(cow)
        rows.append(self.owners_row())
        problems = self.volume.fsck()
        if problems:
            raise AssertionError(f"fsck after the run: {problems[:5]}")
        return rows


def _notes(config: BenchConfig, bench_notes: Sequence[str], total_s: float) -> list[str]:
    size = size_text(config.big_bytes)
    return [
        _table.environment_line() + f"; whole run {total_s:.0f} s",
        f"every row: median of {config.rounds} rounds after 1 warm-up round, the sides' rounds "
        "interleaved (who goes first rotates).",
        f"clone_file rows: ratio = copy time / clone time (the speed-up, higher is better). "
        f"daxfs = vol.clone_file(src, new) of a {size} file; baseline = the daxfs byte copy: "
        "open src 'rb' and new 'xb', readinto a 4 MiB buffer + write until EOF, close both. "
        "Unlinking the clone or copy is not timed. The 1-extent source was written in 1 MiB "
        "pwrites; the fragmented ones by alternating pwrites of the piece size to two files.",
        f"byte copy row: ratio = daxfs copy time / shutil.copyfile time of a {size} file on "
        "/dev/shm (a reference only, no target).",
        f"COW row: ratio = COW / private. daxfs = the first f.pwrite(4 KiB) at a random "
        f"4 KiB-aligned offset into a just-cloned {size} file (mean of {config.cows_per_round} "
        "fresh clones a round; the clone_file, open, close and unlink around it are not timed); "
        f"baseline = f.pwrite(4 KiB) at the same offsets of a private {size} file written in "
        "1 MiB pwrites (an overwrite in place). No target.",
        f"owners row: vol.owners(pool_offset, 4096) of the one block of a 4 KiB file cloned "
        f"{SHARERS - 1} times ({SHARERS:,} owners, checked); baseline (a reference only) = "
        f"building a list of {SHARERS:,} Owner tuples from prepared fields in a Python loop. "
        "No target.",
        *bench_notes,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return _table.run_bench(
        argv, description=__doc__.split("\n\n")[0],
        quick_help="smoke run: 128 MiB files, 3 rounds, fewer clones",
        dir_help="where the pool and the os files go (default: /dev/shm)",
        scratch_prefix="daxfs-bench-reflink-", full_config=FULL_CONFIG, quick_config=QUICK_CONFIG,
        make_bench=ReflinkBench, notes=_notes,
        header=_table.BASELINE_TABLE_HEADER)


if __name__ == "__main__":
    sys.exit(main())
