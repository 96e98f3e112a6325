"""PoolView: one contiguous virtual range laid out of pool ranges and zero pages.

A file made of scattered extents becomes one view: an anonymous Python
``mmap`` reserves the range (so Python tracks the buffers exported from it
and refuses to unmap it while any live), aligned to 2 MiB inside a slightly
larger reservation so huge-page-aligned extents can be backed by huge pages,
then each piece is laid over its part with ``MAP_FIXED``.  Holes map a
private read-only zero page: never pool memory that belongs to someone else.

``migrate`` swaps the whole range for private anonymous memory holding the
same bytes (same addresses: every array into it stays valid and stops being
the file); ``invalidate`` swaps it for inaccessible memory.  ``fence`` swaps
pages over bad memory for inaccessible memory (after a memory failure: a touch
faults instead of reading bad bytes as data); migrate copies around fences and
keeps them.  Unmapping is the
Python mmap's: when it is closed, or when the last export of it is gone.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import weakref
from typing import Any

from daxfs.media import _forks
from daxfs.media._forks import Forked

_libc = ctypes.CDLL(None, use_errno=True)
_c_mmap = _libc.mmap
_c_mmap.restype = ctypes.c_void_p
_c_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_c_msync = _libc.msync
_c_msync.restype = ctypes.c_int
_c_msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_c_mprotect = _libc.mprotect
_c_mprotect.restype = ctypes.c_int
_c_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_c_munmap = _libc.munmap
_c_munmap.restype = ctypes.c_int
_c_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_c_mremap = _libc.mremap
_c_mremap.restype = ctypes.c_void_p
_c_mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
_MREMAP_MAYMOVE = 1
_MREMAP_FIXED = 2

_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_SHARED = 0x01
_MAP_PRIVATE = 0x02
_MAP_FIXED = 0x10
_MAP_ANONYMOUS = 0x20
_MAP_POPULATE = 0x8000
_MS_SYNC = 4
_PROT_NONE = 0
_PROT_READ = 1
_PROT_WRITE = 2
PAGE = mmap.PAGESIZE
HUGE = 2 * 1024 * 1024


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


class _Reservation(mmap.mmap):
    """The anonymous mmap behind a view; once its owner let go while buffers exported from
    it live, it keeps the view (``lingers``) so a memory failure can still fence it."""

    view: Any = None


class PoolView:
    """A reserved virtual range into which pool ranges are mapped."""

    def __init__(self, fd: int, length: int, *, writable: bool) -> None:
        self.length = length
        self.writable = writable
        self._fd = fd
        self._span = _round_up(max(length, 1), PAGE)
        align = HUGE if self._span >= HUGE else PAGE
        self._mm: _Reservation | None = _Reservation(
            -1, self._span + align - PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
            prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self._lingering: weakref.ref[_Reservation] | None = None
        anchor = ctypes.c_char.from_buffer(self._mm)
        start = ctypes.addressof(anchor)
        del anchor      # an export would keep the mmap from ever closing
        self._skew = -start % align
        #: address of the view's first byte (2 MiB-aligned for views of 2 MiB or more)
        self.address = start + self._skew
        #: page-aligned ``(offset, length)`` ranges fenced off (inaccessible), in order
        self.fenced: list[tuple[int, int]] = []
        #: forks made while the view was mapped: their children show what it showed then
        #: (the owner keeps this list to let the blocks go only once they are gone)
        self.forks: list[Forked] = []
        _forks.mapped.add(self)

    def is_mapped(self) -> bool:
        return self._mapped() is not None

    def _mapped(self) -> mmap.mmap | None:
        """The reservation while it is mapped (kept alive by the caller while it uses it)."""
        mm = self._mm if self._mm is not None else self._lingering() if self._lingering is not None else None
        return None if mm is None or mm.closed else mm

    def _fixed(self, offset: int, length: int, prot: int, flags: int, fd: int, pool_offset: int) -> None:
        if offset < 0 or offset % PAGE or offset + length > self._span:
            raise ValueError(f"view range {offset:#x}+{length:#x} is not page-aligned inside the view")
        mm = self._mapped()
        if mm is None:
            return      # unmapped: those addresses may be someone else's now
        got = _c_mmap(self.address + offset, length, prot, flags | _MAP_FIXED, fd, pool_offset)
        if got == _MAP_FAILED or got is None:
            err = ctypes.get_errno()
            raise OSError(err, f"mmap into view failed: {os.strerror(err)}")

    def map_pool(self, offset: int, length: int, pool_offset: int, *, populate: bool = False) -> None:
        """Show pool bytes ``[pool_offset, +length)`` at view ``offset`` (shared, same memory)."""
        prot = _PROT_READ | _PROT_WRITE if self.writable else _PROT_READ
        self._fixed(offset, _round_up(length, PAGE), prot,
                    _MAP_SHARED | (_MAP_POPULATE if populate else 0), self._fd, pool_offset)

    def map_zero(self, offset: int, length: int) -> None:
        """Show zeros at view ``offset`` (a hole: private, read-only, no pool memory)."""
        self._fixed(offset, _round_up(length, PAGE), _PROT_READ, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)

    def buffer(self, start: int, length: int) -> memoryview:
        """A memoryview of view bytes ``[start, start+length)``; read-only unless writable."""
        view = memoryview(self.reservation)[self._skew + start:self._skew + start + length]
        return view if self.writable else view.toreadonly()

    def fence(self, offset: int, length: int) -> bool:
        """Make view bytes ``[offset, offset+length)`` (rounded out to pages) inaccessible:
        a touch is a segmentation fault, never a read of bad memory.  Returns True (fenced
        here, in this process)."""
        start = offset - offset % PAGE
        end = min(self._span, _round_up(offset + length, PAGE))
        if end <= start:
            return True
        self._fixed(start, end - start, _PROT_NONE, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
        merged: list[tuple[int, int]] = []
        for s, n in sorted(self.fenced + [(start, end - start)]):
            if merged and s <= merged[-1][0] + merged[-1][1]:
                ms, mn = merged[-1]
                merged[-1] = (ms, max(ms + mn, s + n) - ms)
            else:
                merged.append((s, n))
        self.fenced = merged
        return True

    def _accessible(self) -> list[tuple[int, int]]:
        """The view's ``(offset, length)`` ranges that are not fenced."""
        out = []
        pos = 0
        for s, n in self.fenced + [(self._span, 0)]:
            if s > pos:
                out.append((pos, s - pos))
            pos = s + n
        return out

    def migrate(self) -> None:
        """Replace the pool memory with private memory holding the same bytes, same addresses
        (fenced pages stay fenced: their bytes were never the file's).

        The copy is made in memory of its own, then moved over the whole view in one
        ``mremap``: a thread reading through the view meanwhile sees the pool's bytes or
        the copy, never a page in between (zeros).  A store made while the copy is taken
        may miss it, as a store racing any revoke may."""
        mm = self._mapped()
        if mm is None:
            return          # unmapped already: nothing shows the pool any more
        span = self._span
        fresh = _c_mmap(None, span, _PROT_READ | _PROT_WRITE, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
        if fresh == _MAP_FAILED or fresh is None:
            err = ctypes.get_errno()
            raise OSError(err, f"mmap for a migrated view failed: {os.strerror(err)}")
        try:
            for s, n in self._accessible():
                ctypes.memmove(fresh + s, self.address + s, n)
            for s, n in self.fenced:
                if _c_mprotect(fresh + s, n, _PROT_NONE) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"mprotect of a migrated view's fence failed: {os.strerror(err)}")
            got = _c_mremap(fresh, span, span, _MREMAP_MAYMOVE | _MREMAP_FIXED, self.address)
            if got == _MAP_FAILED or got is None:
                err = ctypes.get_errno()
                raise OSError(err, f"mremap of a migrated view failed: {os.strerror(err)}")
        except BaseException:
            _c_munmap(fresh, span)
            raise

    def invalidate(self) -> None:
        """Make the range inaccessible: a touch is a segmentation fault (documented)."""
        self._fixed(0, self._span, _PROT_NONE, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)

    def persist(self, offset: int, length: int) -> None:
        """msync the view's pool pages in ``[offset, offset+length)``."""
        start = offset - offset % PAGE
        end = min(self._span, _round_up(offset + length, PAGE))
        if end > start and _c_msync(self.address + start, end - start, _MS_SYNC) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"msync failed: {os.strerror(err)}")

    def release(self) -> bool:
        """Unmap now; False (nothing done) while buffers exported from the view still live:
        then the view lingers — the reservation keeps it (for ``fence`` and ``migrate``)
        until the last export goes, and it no longer keeps the reservation."""
        mm = self._mapped()
        if mm is None:
            return True
        try:
            mm.close()
        except BufferError:
            mm.view = self
            self._lingering = weakref.ref(mm)
            self._mm = None
            return False
        _forks.mapped.discard(self)
        return True

    @property
    def reservation(self) -> mmap.mmap:
        """The Python mmap behind the view: alive, and mapped, while any export of it lives."""
        if self._mm is not None:
            return self._mm
        mm = self._lingering() if self._lingering is not None else None
        if mm is None:
            raise ValueError("the view is unmapped")
        return mm


__all__ = ["PoolView", "PAGE", "HUGE"]
