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
from collections.abc import Callable

from daxfs.media import _holes
from daxfs.media._forks import children_may_show
from daxfs.media._view import PoolView
from daxfs.media.pool import Buffer, Pool

_MADV_POPULATE_WRITE = 23   # Linux 5.14+: fault pages in, writable, in one call
_MAP_SHARED_VALIDATE = 0x03
_MAP_SYNC = 0x80000
_MAP_NORESERVE = 0x4000
_FRESH_BY_FILE = 64 * 1024    # smaller fresh stores are cheaper through the mapping than a syscall
_PAGE = mmap.PAGESIZE


_TMPFS = 0x01021994          # tmpfs, and memfd
_HUGETLBFS = 0x958458F6
_MEMORY_FS = {_TMPFS, _HUGETLBFS}     # memory itself, no backing store


def _fs_type(fd: int) -> tuple[int, int]:
    """``(f_type, f_bsize)`` of the file system ``fd`` lives on; (0, 0) if unknown.

    On tmpfs and hugetlbfs (the memory file systems) a store through a shared
    mapping is already in the only copy there is: it survives the process,
    nothing survives the machine, and msync has nothing to write back — so
    persist can skip the syscall.  hugetlbfs gives memory in huge pages, its
    f_bsize, which is therefore also the least it can give back.
    """
    buf = ctypes.create_string_buffer(128)      # struct statfs: f_type, then f_bsize
    if _fstatfs(fd, buf) != 0:
        return 0, 0
    words = (ctypes.c_long * 2).from_buffer(buf)
    return words[0], words[1]


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
                 exclusive_create: bool = False, lock: bool = False, preallocate: bool = True,
                 locked_check: Callable[[], None] | None = None) -> None:
        """Open and map ``path``; ``create_size`` creates or resizes a regular file to it
        (``exclusive_create``: creates it, or FileExistsError; removed again if this fails).

        With ``lock`` the exclusive writer lock is taken first, before the file
        is resized, so a pool someone else holds is never changed under them;
        BlockingIOError when it is held; ``locked_check`` then runs, and what it
        raises leaves the file as it was.  ``preallocate=False`` leaves a new
        size sparse (the volume reserves memory as it hands blocks out).
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
                if locked_check is not None:
                    locked_check()
            if create_size is not None and stat.S_ISREG(os.fstat(fd).st_mode):
                if not preallocate:
                    os.ftruncate(fd, 0)         # sparse: no page of an old file survives
                    os.ftruncate(fd, create_size)
                else:
                    if os.fstat(fd).st_size > create_size:
                        os.ftruncate(fd, create_size)
                    # Reserve the memory now: a pool that runs out of tmpfs pages later would
                    # SIGBUS on a store instead of giving ENOSPC.  (It also grows the file, and
                    # a fallocate too big for the file system fails before it changes it.)
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
        fs_type, fs_block = _fs_type(fd)
        self._fs_type = fs_type
        self._mmap, self.sync_mode = self._map(fd, size, readonly, noreserve=fs_type == _HUGETLBFS)
        self._memory_only = self.sync_mode == "msync" and fs_type in _MEMORY_FS
        if self._memory_only:
            self.sync_mode = "memory"
        self._regular = stat.S_ISREG(os.fstat(fd).st_mode)
        # Only a regular file can give pages back (device-dax has no hole punching, and
        # punching a block device would drop its page cache under our mapping).
        if readonly or not self._regular:
            self.discard_granularity = 0
        elif fs_type == _HUGETLBFS:
            self.discard_granularity = max(_PAGE, fs_block)
        else:
            self.discard_granularity = max(_PAGE, os.fstat(fd).st_blksize if not self._memory_only else _PAGE)
        self.discards_durable = self._memory_only
        self.discard_default = self._memory_only and self.discard_granularity > 0
        # hugetlbfs has no write(2) (EINVAL): its pages are filled through the mapping only.
        self.fresh_write_min = (_FRESH_BY_FILE if self._memory_only and fs_type == _TMPFS
                                and not readonly else 0)
        self._fd = fd
        self._populate = True
        self.size = size
        self._view = memoryview(self._mmap)
        # One ctypes export gives the base address for memset; it is dropped
        # before unmapping (an export would make mmap.close raise BufferError).
        self._anchor = None if readonly else ctypes.c_char.from_buffer(self._mmap)
        self._base = 0 if self._anchor is None else ctypes.addressof(self._anchor)

    @staticmethod
    def _map(fd: int, size: int, readonly: bool, *, noreserve: bool = False) -> tuple[mmap.mmap, str]:
        prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
        # Asked read-only too: it changes nothing for loads, and sync_mode then says what the
        # medium gives a writer (``daxfs info`` reports the pool, not its own mapping).
        if not noreserve:
            try:
                return mmap.mmap(fd, size, flags=_MAP_SHARED_VALIDATE | _MAP_SYNC, prot=prot), "map_sync"
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP):
                    raise
        # On hugetlbfs a shared mapping would reserve a huge page for every page of the
        # pool at once (ENOMEM for a sparse pool bigger than the free huge pages): the
        # volume reserves blocks itself (fallocate) before it hands them out.
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED | (_MAP_NORESERVE if noreserve else 0), prot=prot), "msync"

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

    def discard(self, offset: int, length: int) -> None:
        if self.readonly:
            raise PermissionError(errno.EROFS, "pool is read-only", self.name)
        if not self.discard_granularity:
            super().discard(offset, length)
        self.check_range(offset, length)
        _holes.punch(self._fd, offset, length, self.name)

    def sync_discards(self) -> None:
        # A hole punched in a file on disk is a change of its file system's metadata,
        # durable at the next fdatasync; on tmpfs and hugetlbfs it is done on return.
        if not self._memory_only and not self.readonly and self._regular:
            os.fdatasync(self._fd)

    def write_fresh(self, offset: int, data: Buffer) -> None:
        if not self.fresh_write_min or len(data) < self.fresh_write_min:
            self.write(offset, data)
            return
        if self.readonly:
            raise PermissionError(errno.EROFS, "pool is read-only", self.name)
        # Through the file, tmpfs copies into pages it does not zero first when they are
        # new (a fault from a store through the mapping would); twice as fast on fresh memory.
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)

    def reserve(self, offset: int, length: int) -> None:
        if not self._regular or self.readonly or length <= 0:
            return
        try:
            # Allocates the pages (tmpfs does not zero them until first use), or ENOSPC now.
            os.posix_fallocate(self._fd, offset, length)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot reserve memory for pool bytes [{offset:#x}, "
                          f"+{length:#x}): {os.strerror(exc.errno or 0)}", self.name) from None

    def backing(self, offset: int, length: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        if not self._regular or self.readonly:
            return [], []
        if self._fs_type == _HUGETLBFS:
            # hugetlbfs cannot tell holes (no SEEK_HOLE): nothing is known zero, and any
            # page may be missing.
            return [], [(offset, length)]
        holes = _holes.holes(self._fd, offset, offset + length)
        st = os.fstat(self._fd)
        if st.st_blocks * 512 >= st.st_size:
            # Every page is allocated: the "holes" are pages fallocate'd and not yet written
            # (tmpfs calls them holes, mincore absent), which read as zeros but have memory.
            # (Reserving them again would zero-fill them for nothing.)
            return holes, []
        return holes, holes

    def resident(self) -> int | None:
        if self._fd < 0:
            return None
        st = os.fstat(self._fd)
        return st.st_blocks * 512 if stat.S_ISREG(st.st_mode) else self.size

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
        if self._locked and not children_may_show():
            # (a child forked while views were mapped shares this lock: left to it, the pool
            # stays closed to other writers until the blocks it shows cannot be reused)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = -1
