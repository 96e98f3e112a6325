"""FilePool: a pool over a file or device, mapped MAP_SHARED.

It first asks for MAP_SHARED_VALIDATE|MAP_SYNC (a synchronous DAX mapping,
where a store plus a cache flush is durable); kernels and files that cannot
give that refuse it, and the pool falls back to MAP_SHARED with msync as the
persist primitive.  ``sync_mode`` records which one it got.  Persist always
uses msync: it is correct for both (on DAX it flushes CPU caches), and
Python has no cache-flush instruction of its own.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import stat

from daxfs.media._view import PoolView
from daxfs.media.pool import Buffer, Pool

_MADV_POPULATE_WRITE = 23   # Linux 5.14+: fault pages in, writable, in one call
_MAP_SHARED_VALIDATE = 0x03
_MAP_SYNC = 0x80000
_PAGE = mmap.PAGESIZE


_MEMORY_FS = {0x01021994, 0x958458F6}     # tmpfs (and memfd), hugetlbfs: memory, no backing store


def _on_memory_fs(fd: int) -> bool:
    """Whether ``fd`` lives on a file system that is memory itself (tmpfs, hugetlbfs).

    There a store through a shared mapping is already in the only copy there
    is: it survives the process, nothing survives the machine, and msync has
    nothing to write back — so persist can skip the syscall.
    """
    buf = ctypes.create_string_buffer(128)      # struct statfs; f_type is its first word
    if _fstatfs(fd, buf) != 0:
        return False
    return ctypes.c_long.from_buffer(buf).value in _MEMORY_FS


_libc = ctypes.CDLL(None, use_errno=True)
_fstatfs = _libc.fstatfs
_fstatfs.argtypes = [ctypes.c_int, ctypes.c_char_p]
_fstatfs.restype = ctypes.c_int


def _device_size(fd: int) -> int:
    """Bytes in the file or device behind ``fd``."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    return os.lseek(fd, 0, os.SEEK_END)


def flock_holders(path: str) -> list[tuple[int, bool]] | None:
    """Who holds a ``flock`` on ``path``: ``(pid, exclusive)`` per lock, read from
    /proc/locks (a pool's writer holds it exclusive, a read-only opener that maps
    or pins shared); None where that list cannot be read."""
    try:
        info = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    want = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    found = []
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 29207 00:1b:822912 0 EOF"; waiters read "1: -> FLOCK ..."
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == want and fields[4].isdigit():
            found.append((int(fields[4]), fields[3] == "WRITE"))
    return found


class FilePool(Pool):
    """A memory-mapped file or device (``/dev/shm/x``, ``/dev/dax0.0``, a plain file)."""

    def __init__(self, path: str, *, readonly: bool = False, create_size: int | None = None,
                 exclusive_create: bool = False, lock: bool = False) -> None:
        """Open and map ``path``; ``create_size`` creates or resizes a regular file to it
        (``exclusive_create``: creates it, or FileExistsError; removed again if this fails).

        With ``lock`` the exclusive writer lock is taken first, before the file
        is resized, so a pool someone else holds is never changed under them;
        BlockingIOError when it is held.
        """
        self._locked = False
        flags = os.O_RDONLY if readonly else os.O_RDWR
        if create_size is not None:
            flags |= os.O_CREAT | (os.O_EXCL if exclusive_create else 0)
        fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
        try:
            if lock:
                # flock locks belong to the open file description, so a second
                # open of the same pool in this very process conflicts too.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._locked = True
            if create_size is not None and stat.S_ISREG(os.fstat(fd).st_mode):
                if os.fstat(fd).st_size > create_size:
                    os.ftruncate(fd, create_size)
                # Reserve the memory now: a pool that runs out of tmpfs pages
                # later would SIGBUS on a store instead of giving ENOSPC.
                os.posix_fallocate(fd, 0, create_size)
            self._attach(fd, path, readonly)
        except BaseException:
            os.close(fd)
            if exclusive_create:
                os.unlink(path)         # the file this call created (O_EXCL): nobody else's
            raise

    def _attach(self, fd: int, name: str, readonly: bool) -> None:
        """Map the open ``fd`` (the pool takes it over)."""
        self.name = name
        self.readonly = readonly
        size = _device_size(fd)
        if size <= 0:
            raise OSError(errno.EINVAL, "pool is empty", name)
        self._mmap, self.sync_mode = self._map(fd, size, readonly)
        self._memory_only = self.sync_mode == "msync" and _on_memory_fs(fd)
        if self._memory_only:
            self.sync_mode = "memory"
        self._fd = fd
        self._populate = True
        self.size = size
        self._view = memoryview(self._mmap)
        # One ctypes export gives the base address for memset; it is dropped
        # before unmapping (an export would make mmap.close raise BufferError).
        self._anchor = None if readonly else ctypes.c_char.from_buffer(self._mmap)
        self._base = 0 if self._anchor is None else ctypes.addressof(self._anchor)

    @staticmethod
    def _map(fd: int, size: int, readonly: bool) -> tuple[mmap.mmap, str]:
        prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
        # Asked read-only too: it changes nothing for loads, and sync_mode then says what the
        # medium gives a writer (``daxfs info`` reports the pool, not its own mapping).
        try:
            return mmap.mmap(fd, size, flags=_MAP_SHARED_VALIDATE | _MAP_SYNC, prot=prot), "map_sync"
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP):
                raise
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=prot), "msync"

    @property
    def fileno(self) -> int:
        return self._fd

    def read(self, offset: int, length: int) -> bytes:
        return self._mmap[offset:offset + length]

    def view(self, offset: int, length: int) -> memoryview:
        return self._view[offset:offset + length]

    def write(self, offset: int, data: Buffer) -> None:
        if self.readonly:
            raise PermissionError(errno.EROFS, "pool is read-only", self.name)
        if isinstance(data, memoryview) and data.format != "B":
            data = data.cast("B")
        self._view[offset:offset + len(data)] = data

    def prefault(self, offset: int, length: int) -> None:
        # One populate call maps hundreds of pages for the price of a few
        # page faults; kernels without it just fault on first touch.
        if self._populate and not self.readonly:
            start = offset - offset % _PAGE
            try:
                self._mmap.madvise(_MADV_POPULATE_WRITE, start, min(self.size, offset + length) - start)
            except OSError:
                self._populate = False

    def zero(self, offset: int, length: int) -> None:
        if self.readonly:
            raise PermissionError(errno.EROFS, "pool is read-only", self.name)
        self.check_range(offset, length)
        ctypes.memset(self._base + offset, 0, length)

    def persist(self, offset: int, length: int) -> None:
        if self.readonly or length <= 0 or self._memory_only:
            return
        start = offset - offset % _PAGE
        end = min(self.size, offset + length)
        self._mmap.flush(start, end - start)

    def share_lock(self) -> bool:
        """Take a shared lock on the pool (readers holding its memory); False while a
        writer holds the exclusive one.  Taking it again converts, never stacks."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def share_unlock(self) -> None:
        if self._fd >= 0 and not self._locked:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def map_view(self, length: int, *, writable: bool) -> "PoolView":
        """A fresh contiguous view of ``length`` bytes to lay pool ranges into (see PoolView)."""
        return PoolView(self._fd, length, writable=writable and not self.readonly)

    def close(self) -> None:
        if self._fd < 0:
            return
        self._anchor = None
        self._view.release()
        self._mmap.close()
        if self._locked:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = -1
