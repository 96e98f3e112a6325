"""``daxfs demo``: a timed tour of a volume on a scratch pool, removed at the end.

Each step prints how long it took and what it found, and every byte written
is read back and checked, so the tour doubles as a smoke test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from typing import TextIO

import daxfs

__all__ = ["run_demo", "format_duration"]

MiB = 1024 * 1024
POOL_SIZE = 256 * MiB
BIG_FILE_SIZE = 64 * MiB
CHUNK_SIZE = 1 * MiB


class DemoCheckFailed(Exception):
    """The volume gave back something other than what the tour put in."""


def format_duration(seconds: float) -> str:
    """``seconds`` in the unit that keeps it readable: µs, ms or s."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _throughput(n_bytes: int, seconds: float) -> str:
    return f"{n_bytes / MiB / seconds:,.0f} MB/s" if seconds > 0 else "-"


def _scratch_root() -> str:
    # /dev/shm is memory, which is what a DAX pool is; elsewhere fall back to the temp dir.
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class _Timer:
    """Wall time of one ``with`` block, in seconds."""

    seconds: float = 0.0

    def __enter__(self) -> _Timer:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self._started


class _Tour:
    """Prints one aligned line per step: name, time, result."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def report(self, name: str, timer: _Timer, result: str) -> None:
        self.out.write(f"  {name:<36} {format_duration(timer.seconds):>10}   {result}\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.out.write(f"{text}\n")
        self.out.flush()


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise DemoCheckFailed(what)


def _big_chunk(index: int, pattern: bytes) -> bytes:
    # Stamping the chunk number makes a chunk read back at the wrong offset fail the check.
    return index.to_bytes(8, "little") + pattern[8:]


def run_demo(out: TextIO = sys.stdout) -> int:
    """Run the tour, printing to ``out``; returns 0 when every check passed, 1 otherwise."""
    tour = _Tour(out)
    scratch = tempfile.mkdtemp(prefix="daxfs-demo-", dir=_scratch_root())
    pool_path = os.path.join(scratch, "demo.pool")
    try:
        _tour(tour, pool_path)
    except DemoCheckFailed as failure:
        tour.note(f"FAILED: {failure}")
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    tour.note("all checks passed; scratch pool removed")
    return 0


def _tour(tour: _Tour, pool_path: str) -> None:
    tour.note(f"daxfs demo on {pool_path}")
    with _Timer() as timer:
        vol = daxfs.mkfs(pool_path, POOL_SIZE)
    info = vol.info()
    tour.report("mkfs 256 MiB", timer, f"block size {info['block_size']}, "
                f"{info['data_size'] // MiB} MiB for data, persist by {info['sync_mode']}")
    tour.note(f"    ({SYNC_MODES.get(info['sync_mode'], info['sync_mode'])})")
    try:
        _namespace_and_data(tour, vol)
        _sparse_file(tour, vol)
        _headline_features(tour, vol)
        with _Timer() as timer:
            fs = vol.statfs()
        tour.report("df (statfs)", timer, f"used {fs.used // MiB} MiB, free {fs.free // MiB} MiB, "
                    f"busy {fs.busy}, bad {fs.bad}, {fs.files} files")
        _check(fs.free + fs.used + fs.busy + fs.bad == fs.size, "statfs does not add up to its size")
        _fsck(tour, vol, "fsck")
    finally:
        with _Timer() as timer:
            vol.close()
        tour.report("close (unmount)", timer, "")

    with _Timer() as timer:
        vol = daxfs.open_volume(pool_path)
    with vol:
        tour.report("open_volume (mount)", timer, f"generation {vol.info()['generation']}")
        with _Timer() as timer:
            names = sorted(vol.listdir("/data"))
            big_size = vol.stat("/data/big.bin").st_size
            with vol.open("/data/raw/hello.txt", "rb") as f:
                hello = f.read()
        tour.report("check files after remount", timer,
                    f"/data holds {names}, big.bin {big_size // MiB} MiB, hello.txt {hello!r}")
        _check(names == ["big.bin", "raw", "sparse.bin"], f"after remount /data holds {names}")
        _check(big_size == BIG_FILE_SIZE and hello == HELLO, "file contents changed across remount")
        _fsck(tour, vol, "fsck after remount")


def _fsck(tour: _Tour, vol: daxfs.Volume, name: str) -> None:
    with _Timer() as timer:
        problems = vol.fsck()
    tour.report(name, timer, "clean" if not problems else f"{len(problems)} problems, first: {problems[0]}")
    _check(not problems, f"{name} found {problems}")


HELLO = b"hello, daxfs\n"

#: what "persist by ..." means: how a durable write reaches the medium
SYNC_MODES = {
    "memory": "persist by memory: the pool is RAM (/dev/shm), so a store is as durable as it "
              "gets; nothing to flush",
    "msync": "persist by msync: the pool is a file; a durable write ends with msync of its range",
    "map_sync": "persist by map_sync: persistent memory mapped MAP_SYNC; a durable write ends "
                "with a CPU cache flush",
}


def _namespace_and_data(tour: _Tour, vol: daxfs.Volume) -> None:
    with _Timer() as timer:
        vol.mkdir("/data/raw", parents=True)
    tour.report("mkdir -p /data/raw", timer, f"/ holds {sorted(vol.listdir('/'))}")

    with _Timer() as timer, vol.open("/data/hello.txt", "wb") as f:
        f.write(HELLO)
    tour.report("write /data/hello.txt", timer, f"{len(HELLO)} bytes")

    pattern = os.urandom(CHUNK_SIZE)
    chunks = [_big_chunk(index, pattern) for index in range(BIG_FILE_SIZE // CHUNK_SIZE)]
    expected = hashlib.sha256(b"".join(chunks)).digest()
    with _Timer() as timer, vol.open("/data/big.bin", "wb") as f:
        for chunk in chunks:
            f.write(chunk)
    tour.report(f"write /data/big.bin ({len(chunks)} x 1 MiB)", timer,
                f"{BIG_FILE_SIZE // MiB} MiB at {_throughput(BIG_FILE_SIZE, timer.seconds)}")
    del chunks

    readback = bytearray(BIG_FILE_SIZE)
    view = memoryview(readback)
    filled = 0
    with _Timer() as timer, vol.open("/data/big.bin", "rb") as f:
        while filled < BIG_FILE_SIZE:
            count = f.readinto(view[filled:filled + CHUNK_SIZE])
            if not count:
                break
            filled += count
    view.release()
    tour.report("read /data/big.bin (1 MiB reads)", timer,
                f"{filled // MiB} MiB at {_throughput(filled, timer.seconds)}")
    _check(filled == BIG_FILE_SIZE, f"read {filled} bytes of {BIG_FILE_SIZE}")
    with _Timer() as timer:
        matches = hashlib.sha256(readback).digest() == expected
    tour.report("verify sha256", timer, "match" if matches else "MISMATCH")
    _check(matches, "big.bin read back differs from what was written")
    del readback

    with _Timer() as timer, vol.open("/data/hello.txt", "rb") as f:
        hello = f.read()
    tour.report("read /data/hello.txt", timer, repr(hello))
    _check(hello == HELLO, f"hello.txt reads {hello!r}")

    with _Timer() as timer:
        names = sorted(vol.listdir("/data"))
    tour.report("listdir /data", timer, str(names))
    _check(names == ["big.bin", "hello.txt", "raw"], f"/data holds {names}")

    with _Timer() as timer:
        st = vol.stat("/data/big.bin")
    tour.report("stat /data/big.bin", timer,
                f"size {st.st_size}, {st.st_blocks} blocks of 512, ino {st.st_ino}, nlink {st.st_nlink}")
    _check(st.st_size == BIG_FILE_SIZE and st.is_file(), "big.bin has the wrong size or type")

    with _Timer() as timer:
        vol.rename("/data/hello.txt", "/data/raw/hello.txt")
    moved = not vol.exists("/data/hello.txt") and vol.exists("/data/raw/hello.txt")
    tour.report("rename hello.txt -> raw/hello.txt", timer, "moved" if moved else "NOT MOVED")
    _check(moved, "rename did not move the name")


def _sparse_file(tour: _Tour, vol: daxfs.Volume) -> None:
    length = 4 * MiB
    hole_offset, hole_length = 1 * MiB, 2 * MiB
    with vol.open("/data/sparse.bin", "w+b") as f:
        with _Timer() as timer:
            f.pwrite(b"\xab" * length, 0)
        blocks_before = f.stat().st_blocks
        tour.report("pwrite sparse.bin (4 MiB of 0xab)", timer, f"{blocks_before} blocks of 512")
        with _Timer() as timer:
            f.punch_hole(hole_offset, hole_length)
        st = f.stat()
        tour.report("punch_hole 1 MiB..3 MiB", timer, f"size {st.st_size}, {st.st_blocks} blocks of 512")
        _check(st.st_size == length, "punch_hole changed the file size")
        _check(st.st_blocks * 512 == blocks_before * 512 - hole_length, "punch_hole freed the wrong amount")
        with _Timer() as timer:
            extents = f.extents()
        tour.report("extents()", timer, ", ".join(
            f"[{e.file_offset // MiB}, {(e.file_offset + e.length) // MiB}) MiB" for e in extents))
        _check(all(e.file_offset + e.length <= hole_offset or e.file_offset >= hole_offset + hole_length
                   for e in extents), "an extent still covers the punched hole")
        _check(sum(e.length for e in extents) == length - hole_length, "extents do not cover the data")
        with _Timer() as timer:
            data = f.pread(length, 0)
        zeros = data[hole_offset:hole_offset + hole_length].count(0)
        tour.report("pread across the hole", timer, f"{zeros // MiB} MiB of zeros in the hole")
        _check(data == b"\xab" * hole_offset + bytes(hole_length) + b"\xab" * (length - hole_offset - hole_length),
               "the punched file reads back wrong")


def _headline_features(tour: _Tour, vol: daxfs.Volume) -> None:
    """The three things a plain file system does not give: a NumPy array that *is* the file's
    memory, a pin that a truncate cannot pull the memory from under, and a clone that copies
    nothing."""
    import numpy as np      # a dependency, imported only when the tour gets here

    vol.mkdir("/features")
    with vol.open("/data/big.bin", "rb") as f:
        with _Timer() as timer:
            mapping = f.map()
            array = mapping.array(np.uint64)
        first = int(array[0])
        tour.report("map big.bin as a NumPy array", timer,
                    f"{array.nbytes // MiB} MiB, zero-copy: array[0] = chunk {first}, no bytes copied")
        _check(first == 0 and int(array[CHUNK_SIZE // 8]) == 1, "the array does not show the file")
        del array
        mapping.close()

    with vol.open("/features/dma.bin", "w+b") as f:
        f.write(b"\x5a" * MiB)
        f.flush()
        pin = f.pin(0, 64 * 1024)
        with _Timer() as timer:
            f.truncate(0)               # policy "defer": the file shrinks, the pinned blocks wait
        busy = vol.statfs().busy
        still = bytes(pin.buffer[:4])
        tour.report("truncate a file a pin holds", timer,
                    f"size now {f.stat().st_size}; the pinned 64 KiB is busy ({busy} bytes), "
                    f"still reads {still!r}")
        _check(busy == 64 * 1024 and still == b"\x5a" * 4, "the pinned blocks were not kept")
        with _Timer() as timer:
            pin.release()
        freed = vol.statfs().busy
        tour.report("release the pin", timer, f"busy {freed} bytes: freed only now")
        _check(freed == 0, "releasing the pin did not free its blocks")

    used = vol.statfs().used
    with _Timer() as timer:
        vol.clone_file("/data/big.bin", "/features/clone.bin")
    after = vol.statfs()
    tour.report("clone_file big.bin (reflink)", timer,
                f"{(after.used - used) // MiB} MiB more used, {after.shared // MiB} MiB shared")
    _check(after.used == used and after.shared == BIG_FILE_SIZE, "the clone copied data")
    with vol.open("/features/clone.bin", "r+b") as f:
        with _Timer() as timer:
            f.pwrite(b"changed!", 0)
        with vol.open("/data/big.bin", "rb") as original:
            kept = original.pread(8, 0)
        tour.report("write into the clone (copy-on-write)", timer,
                    f"the clone reads {f.pread(8, 0)!r}, big.bin still {kept!r}")
        _check(kept == bytes(8), "a write into the clone changed the original")
    vol.unlink("/features/clone.bin")
