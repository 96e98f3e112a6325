"""What every part of the suite shares: helpers, the ``remount`` fixture, the fsck check.

A front end's test class provides two fixtures: ``volume`` (a fresh, empty,
read-write volume of 8 to 32 MiB of data area) and ``reopen`` (``reopen(vol)
-> vol``: close it and mount the same pool again).
"""

from __future__ import annotations

import os
import stat as st
from collections.abc import Callable
from typing import Any

import pytest

from daxfs.testing.workload import walk

SEEK_DATA = getattr(os, "SEEK_DATA", 3)
SEEK_HOLE = getattr(os, "SEEK_HOLE", 4)

# ---------------------------------------------------------------- helpers


def write_file(vol: Any, path: str, data: bytes, mode: str = "wb") -> None:
    with vol.open(path, mode) as f:
        assert f.write(data) == len(data)


def read_file(vol: Any, path: str) -> bytes:
    with vol.open(path, "rb") as f:
        return f.read()


def allocated(vol: Any, path: str) -> int:
    """Bytes allocated to a file (st_blocks is in 512-byte units)."""
    return vol.stat(path).st_blocks * 512


def pattern(n: int, seed: int = 1) -> bytes:
    """``n`` bytes that differ from block to block and contain no zero byte."""
    unit = bytes((i * 7 + seed) % 251 + 1 for i in range(4099))
    return (unit * (n // len(unit) + 1))[:n]


def errno_of(excinfo: pytest.ExceptionInfo) -> int | None:
    return getattr(excinfo.value, "errno", None)


def tree_state(vol: Any) -> dict[str, tuple]:
    """Every path with what a user sees of it: type, mode, nlink, size, blocks, mtime, bytes."""
    out: dict[str, tuple] = {}
    for path, s in walk(vol):
        if st.S_ISDIR(s.st_mode):
            out[path] = ("dir", s.st_mode, s.st_nlink, s.st_mtime_ns)
        elif st.S_ISLNK(s.st_mode):
            out[path] = ("link", s.st_nlink, vol.readlink(path))
        elif not st.S_ISREG(s.st_mode):
            out[path] = ("node", s.st_mode, s.st_nlink, s.st_mtime_ns)
        else:
            out[path] = ("file", s.st_mode, s.st_nlink, s.st_size, s.st_blocks, s.st_mtime_ns,
                         s.st_ino, read_file(vol, path))
    return out


class Remount:
    """``remount(vol) -> vol``: fsck, reopen through the front end, fsck again; remembers
    the volume left mounted so the suite can check it after the test."""

    def __init__(self, volume: Any, reopen: Callable[[Any], Any]) -> None:
        self.current = volume
        self._reopen = reopen

    def __call__(self, vol: Any) -> Any:
        assert vol is self.current, "remount the volume the test holds now"
        assert vol.fsck() == [], "unclean before reopen"
        self.current = self._reopen(vol)
        assert self.current.fsck() == [], "unclean after reopen"
        return self.current


# ---------------------------------------------------------------- the suite


class SuiteBase:
    """The fixtures every part of the suite uses, and what the front end can do.

    ``supports`` names the capabilities a front end has (zarr's ``supports_*``): tests
    of one it lacks skip through ``require``.  The embedded volume and the arbiter's client
    have them all; a FUSE mount has none (its files are plain descriptors).
    """

    supports: frozenset[str] = frozenset({"mappings", "pins", "reflink"})

    def require(self, capability: str) -> None:
        if capability not in self.supports:
            pytest.skip(f"this front end does not support {capability}")

    @pytest.fixture
    def remount(self, volume: Any, reopen: Callable[[Any], Any]) -> Remount:
        return Remount(volume, reopen)

    @pytest.fixture(autouse=True)
    def _fsck_clean_after_test(self, remount: Remount):  # type: ignore[no-untyped-def]
        yield
        vol = remount.current
        if not getattr(vol, "closed", False):
            assert vol.fsck() == [], "fsck after the test"
