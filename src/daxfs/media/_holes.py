"""Holes in a pool file: punching them and finding them.

- ``punch``: fallocate(PUNCH_HOLE | KEEP_SIZE) — the kernel frees the pages (on
  tmpfs and hugetlbfs the memory goes back to the system at once; on a disk file
  the blocks go back to its file system) and the range reads as zeros.
- ``holes``: SEEK_HOLE/SEEK_DATA — ranges that read as zeros.  On tmpfs a page
  that ``posix_fallocate`` reserved but nothing wrote is reported as a hole too
  (and mincore calls it absent): it reads as zeros, which is all "known zero"
  needs, but whether memory stands behind it cannot be told — so every hole is
  taken as possibly unbacked, and reserved again before use.
"""

from __future__ import annotations

import ctypes
import errno
import os

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_fallocate.restype = ctypes.c_int

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def punch(fd: int, offset: int, length: int, name: str) -> None:
    """Free ``[offset, +length)`` of the file behind ``fd``; it reads as zeros after."""
    if _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot discard pool bytes [{offset:#x}, +{length:#x}): {os.strerror(err)}", name)


def holes(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """Byte ranges ``(offset, length)`` inside ``[start, end)`` that are holes (read as zeros);
    [] where the file system cannot tell."""
    out: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        try:
            hole = os.lseek(fd, pos, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.EINVAL, errno.EOPNOTSUPP):
                break
            raise
        if hole >= end:
            break
        try:
            data = os.lseek(fd, hole, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:     # ENXIO: no data after the hole at all
                raise
            data = end
        out.append((hole, min(data, end) - hole))
        pos = data
    return out


__all__ = ["punch", "holes"]
