"""Badblock sources: where the list of a pool's bad memory comes from.

The kernel keeps a list of known-bad ranges for every pmem namespace (found by
address range scrub, or by a machine check), in the badblocks format: one
``first-sector count`` line per range, in 512-byte sectors.

- A whole pmem block device ``/dev/pmemN`` (or a partition of one): the
  device's ``badblocks`` attribute in sysfs, relative to the device (for a
  partition, the parent's list less the partition's ``start``).
- A device-dax device ``/dev/daxX.Y``: the nd region's ``badblocks``, relative
  to the region; the device's own ``resource`` (physical start) less the
  region's says where the device lies in it.
- A pool in a regular file: a *side file* next to it, ``POOL.badblocks``, in
  the same format.  ``daxfs inject-error`` appends to it, so an admin or a test
  can drive the whole path on any machine, as ``ndctl inject-error`` does on
  real pmem.

``BadblockSource.read`` gives pool byte ranges; ``stamp`` changes whenever the
list may have (the volume polls it while mounted).  Nothing here knows what a
range holds: the volume decides that.
"""

from __future__ import annotations

import errno
import os
import stat as st
from dataclasses import dataclass, field

SECTOR = 512
SIDE_SUFFIX = ".badblocks"


def parse_badblocks(text: str) -> tuple[list[tuple[int, int]], list[str]]:
    """``(ranges, problems)``: byte ranges ``(offset, length)`` from ``first-sector count``
    lines (blank lines and ``#`` comments skipped), and the lines that are not that."""
    ranges: list[tuple[int, int]] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            first, count = (int(w, 10) for w in words)
        except ValueError:
            problems.append(f"line {number}: {line.strip()!r} is not 'first-sector count'")
            continue
        if first < 0 or count <= 0:
            problems.append(f"line {number}: {line.strip()!r} needs a sector >= 0 and a count > 0")
            continue
        ranges.append((first * SECTOR, count * SECTOR))
    return ranges, problems


def format_badblocks(ranges: list[tuple[int, int]]) -> str:
    """``first-sector count`` lines for byte ranges (each rounded out to whole sectors)."""
    lines = []
    for offset, length in ranges:
        first = offset // SECTOR
        last = -(-(offset + length) // SECTOR)
        lines.append(f"{first} {last - first}\n")
    return "".join(lines)


@dataclass
class BadblockSource:
    """One list of bad ranges: ``path`` in badblocks format, ``base`` bytes before the pool
    in the address space the list counts from, ``size`` bytes of the pool."""

    path: str
    kind: str                    # "side file" or "device"
    base: int = 0
    size: int | None = None
    problems: list[str] = field(default_factory=list)   # lines of the last read that were not ranges

    @property
    def writable(self) -> bool:
        """Whether daxfs may change the list (a side file; a device's list is the kernel's)."""
        return self.kind == "side file"

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever the list may have changed (None: there is no list now)."""
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def read(self) -> list[tuple[int, int]]:
        """The pool byte ranges listed as bad (clipped to the pool); [] when there is no list."""
        try:
            with open(self.path, encoding="ascii", errors="replace") as fh:
                text = fh.read()
        except FileNotFoundError:
            return []
        ranges, self.problems = parse_badblocks(text)
        out = []
        for offset, length in ranges:
            lo, hi = offset - self.base, offset - self.base + length
            if self.size is not None:
                lo, hi = max(lo, 0), min(hi, self.size)
            else:
                lo = max(lo, 0)
            if lo < hi:
                out.append((lo, hi - lo))
        return out

    def append(self, offset: int, length: int) -> tuple[int, int]:
        """List pool bytes ``[offset, +length)`` as bad (a side file only); returns the range
        listed, rounded out to whole sectors."""
        self._check_writable()
        first = offset // SECTOR * SECTOR
        end = -(-(offset + length) // SECTOR) * SECTOR
        with open(self.path, "a", encoding="ascii") as fh:
            fh.write(format_badblocks([(first, end - first)]))
            fh.flush()
            os.fsync(fh.fileno())
        return first, end - first

    def remove(self, offset: int, length: int) -> None:
        """No longer list pool bytes ``[offset, +length)`` (a side file only: the simulated
        repair); the rest of each line stays.  Replaced atomically (rename)."""
        self._check_writable()
        try:
            with open(self.path, encoding="ascii", errors="replace") as fh:
                ranges, _problems = parse_badblocks(fh.read())
        except FileNotFoundError:
            return
        end = offset + length
        kept: list[tuple[int, int]] = []
        for lo, n in ranges:
            hi = lo + n
            if hi <= offset or lo >= end:
                kept.append((lo, n))
                continue
            if lo < offset:
                kept.append((lo, offset - lo))
            if hi > end:
                kept.append((end, hi - end))
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(format_badblocks(kept))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def _check_writable(self) -> None:
        if not self.writable:
            raise OSError(errno.EOPNOTSUPP, "the device's badblocks list is the kernel's: use "
                                            "`ndctl inject-error` / `ndctl clear-errors`", self.path)


def side_file(pool_path: str) -> str:
    return pool_path + SIDE_SUFFIX


def source_for(pool_path: str, pool_size: int | None = None, *, sysfs: str = "/sys") -> BadblockSource | None:
    """The badblock source of the pool at ``pool_path``: the side file of a regular file, the
    kernel's list of a pmem or device-dax device; None for anything else (a memfd, a device
    the kernel keeps no list for)."""
    try:
        info = os.stat(pool_path)
    except (OSError, ValueError):
        return None
    if st.S_ISREG(info.st_mode):
        return BadblockSource(side_file(pool_path), "side file", 0, pool_size)
    if st.S_ISBLK(info.st_mode):
        return _block_source(info, pool_size, sysfs)
    if st.S_ISCHR(info.st_mode):
        return _dax_source(info, pool_size, sysfs)
    return None


def _read_int(path: str, base: int = 10) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().strip(), base)
    except (OSError, ValueError):
        return None


def _block_source(info: os.stat_result, size: int | None, sysfs: str) -> BadblockSource | None:
    """``/sys/dev/block/MAJ:MIN``: a whole disk has ``badblocks``; a partition has ``start``
    (sectors) and its disk — the directory above — has the list."""
    node = os.path.realpath(os.path.join(sysfs, "dev", "block", f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"))
    if os.path.exists(os.path.join(node, "badblocks")):
        return BadblockSource(os.path.join(node, "badblocks"), "device", 0, size)
    start = _read_int(os.path.join(node, "start"))
    parent = os.path.dirname(node)
    if start is not None and os.path.exists(os.path.join(parent, "badblocks")):
        return BadblockSource(os.path.join(parent, "badblocks"), "device", start * SECTOR, size)
    return None


def _dax_source(info: os.stat_result, size: int | None, sysfs: str) -> BadblockSource | None:
    """``/sys/dev/char/MAJ:MIN`` of a device-dax device: the nd region above it has
    ``badblocks`` and ``resource``; the device's ``resource`` (or its parent's) is its start."""
    node = os.path.realpath(os.path.join(sysfs, "dev", "char", f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"))
    start = _read_int(os.path.join(node, "resource"), 16)
    if start is None:
        start = _read_int(os.path.join(os.path.dirname(node), "resource"), 16)
    up = node
    for _ in range(8):
        up = os.path.dirname(up)
        if up in ("/", "") or not up.startswith(os.path.realpath(sysfs)):
            break
        region_start = _read_int(os.path.join(up, "resource"), 16)
        if os.path.exists(os.path.join(up, "badblocks")) and region_start is not None and start is not None:
            return BadblockSource(os.path.join(up, "badblocks"), "device", start - region_start, size)
    return None


__all__ = ["BadblockSource", "source_for", "side_file", "parse_badblocks", "format_badblocks", "SECTOR",
           "SIDE_SUFFIX"]
