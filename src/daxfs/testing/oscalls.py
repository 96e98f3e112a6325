"""The Volume API through ``os`` calls on a mounted directory, for the VolumeSuite.

``OsVolume(root, served)`` answers the suite's calls the way any program on a mount makes
them: ``os.mkdir``, ``os.rename`` (``renameat2`` for ``replace=False``), ``os.open`` and
``pread``/``pwrite``, ``fallocate(2)`` for space operations, ``lseek`` for SEEK_DATA and
SEEK_HOLE, ``copy_file_range(2)``.  What ``os`` cannot say — ``fsck``, ``statfs``'s busy
and bad bytes, a file's extents, the live references — comes from ``served``, the volume
behind the mount (a client of its arbiter: the test's process makes syscalls on a mount
another process serves, as users do), read after the call through the mount.

Files are ``FileBase``s whose primitives are syscalls on a real descriptor, so the
suite's argument checks are the same; pin policies cannot be passed through a mount (the
volume's own policy applies), and mappings, pins and reflinks of the daxfs API have no
syscall (``supports`` is empty).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat as st
import time
from typing import Any

from daxfs._types import Extent, Stat, StatFS
from daxfs.access import buffered
from daxfs.access.filebase import FileBase
from daxfs.volume import arguments
from daxfs.volume.pathnames import PathNames, names_like

FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2), raising OSError with errno as ``os`` does."""
    if _libc.fallocate(fd, mode, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def renameat2(src: str, dst: str, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), src, None, dst)


def to_stat(s: os.stat_result) -> Stat:
    return Stat(s.st_mode, s.st_ino, s.st_dev, s.st_nlink, s.st_uid, s.st_gid, s.st_size,
                s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns, s.st_blocks, s.st_blksize, s.st_rdev)


_OS_FLAGS = {
    "rb": os.O_RDONLY, "r+b": os.O_RDWR, "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "w+b": os.O_RDWR | os.O_CREAT | os.O_TRUNC, "xb": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "x+b": os.O_RDWR | os.O_CREAT | os.O_EXCL, "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "a+b": os.O_RDWR | os.O_CREAT | os.O_APPEND,
}


class _Open:
    closed = False


class OsFile(FileBase):
    """A file opened with ``os.open`` on the mount."""

    def __init__(self, volume: "OsVolume", path: str, mode: str) -> None:
        flags = arguments.open_flags(mode)          # the same modes (and refusals) as vol.open
        canonical = "".join(c for c in "rwxa+b" if c in mode)
        self._fd = os.open(volume.full(path), _OS_FLAGS[canonical] | os.O_CLOEXEC, 0o666)
        if st.S_ISDIR(os.fstat(self._fd).st_mode):         # as open() refuses, after the syscall
            os.close(self._fd)
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        self.handle = _Open()
        volume.files.add(self)
        super().__init__()
        self._vol = volume
        self._path = path
        self._mode = mode
        self._readable = flags.readable
        self._writable = flags.writable
        self._append = flags.append
        self._pos = os.fstat(self._fd).st_size if flags.append else 0

    @property
    def ino(self) -> int:
        return os.fstat(self._fd).st_ino

    @property
    def holder(self) -> object:
        return None                 # the process: a descriptor has no other owner

    def _do_pread(self, dest: memoryview | None, n: int, offset: int) -> bytes | int:
        if dest is None:
            out = bytearray(n)
            got = self._do_pread(memoryview(out), n, offset)
            return bytes(out[:got])     # type: ignore[index]
        done = 0
        while done < n:
            k = os.preadv(self._fd, [dest[done:n]], offset + done)
            if k == 0:
                break
            done += k
        return done

    def _do_pwrite(self, view: memoryview, offset: int) -> int:
        done = 0
        while done < view.nbytes:
            done += os.pwrite(self._fd, view[done:], offset + done)
        return done

    def _do_append(self, view: memoryview) -> tuple[int, int]:
        n = os.write(self._fd, view)
        return n, os.fstat(self._fd).st_size

    def _do_size(self) -> int:
        return os.fstat(self._fd).st_size

    def _do_seek_data(self, offset: int, hole: bool) -> int:
        return os.lseek(self._fd, offset, os.SEEK_HOLE if hole else os.SEEK_DATA)

    def _do_truncate(self, size: int, policy: str | None, timeout: float | None) -> None:
        if policy is not None or timeout is not None:
            raise NotImplementedError("a pin policy cannot be passed through a mount")
        os.ftruncate(self._fd, size)

    def _do_fallocate(self, offset: int, length: int, keep_size: bool) -> None:
        fallocate(self._fd, FALLOC_FL_KEEP_SIZE if keep_size else 0, offset, length)

    def _do_punch_hole(self, offset: int, length: int, policy: str | None, timeout: float | None) -> None:
        if policy is not None or timeout is not None:
            raise NotImplementedError("a pin policy cannot be passed through a mount")
        fallocate(self._fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)

    def _do_zero_range(self, offset: int, length: int, keep_size: bool) -> None:
        fallocate(self._fd, FALLOC_FL_ZERO_RANGE | (FALLOC_FL_KEEP_SIZE if keep_size else 0), offset, length)

    def _do_fsync(self) -> None:
        os.fsync(self._fd)

    def _do_stat(self) -> Stat:
        return to_stat(os.fstat(self._fd))

    def _do_extents(self) -> list[Extent]:
        with self._vol.served.open(self._path, "rb") as f:      # the volume's view of the same file
            return f.extents()

    def _do_map(self, *args: Any) -> Any:
        raise NotImplementedError("mappings are the daxfs API's, not a mount's")

    _do_pin = _do_map

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.closed = True
            self._vol.files.discard(self)
            served = self._vol.served
            was_open = served.info()["open_files"]
            os.close(self._fd)
            # The kernel sends FUSE's RELEASE after close(2) returns; a program cannot see the
            # difference, but the suite's next statfs through the arbiter could.  Wait for it.
            for _ in range(30_000):                     # a hang detector bounded by a count, not by the clock
                if served.info()["open_files"] < was_open:
                    break
                time.sleep(0.001)
        self.closed = True
        super().close()


class OsVolume(PathNames):
    """The Volume API on a mounted directory (see the module's docstring); the ``os``
    names (``scandir``, ``walk``, ``remove``, ...) are ``PathNames``' over these calls."""

    def __init__(self, root: str, served: Any) -> None:
        self.root = root
        self.served = served
        self.closed = False
        self.files: set[OsFile] = set()
        #: descriptors of files left open when the volume closed: dead once the mount goes
        self.orphaned: list[int] = []

    def full(self, path: object) -> str:
        p = os.fsdecode(path)  # type: ignore[arg-type]
        return os.path.join(self.root, p.lstrip("/")) if p.strip("/") else self.root + ("/" if p else "")

    # ---- namespace, through the mount

    def stat(self, path: object) -> Stat:
        return to_stat(os.stat(self.full(path)))

    def lstat(self, path: object) -> Stat:
        return to_stat(os.lstat(self.full(path)))

    def exists(self, path: object) -> bool:
        return os.path.lexists(self.full(path)) and os.path.exists(self.full(path))

    def listdir(self, path: object = "/") -> list[Any]:
        return names_like(path, os.listdir(self.full(path)))

    def mkdir(self, path: object, mode: int = 0o755, *, parents: bool = False, exist_ok: bool = False) -> None:
        if parents:
            os.makedirs(self.full(path), mode, exist_ok=exist_ok)
            return
        try:
            os.mkdir(self.full(path), mode)
        except FileExistsError:
            if not (exist_ok and os.path.isdir(self.full(path))):
                raise

    def rmdir(self, path: object) -> None:
        os.rmdir(self.full(path))

    def unlink(self, path: object, *, policy: str | None = None) -> None:
        if policy is not None:
            raise NotImplementedError("a pin policy cannot be passed through a mount")
        os.unlink(self.full(path))

    def rename(self, src: object, dst: object, *, replace: bool = True) -> None:
        if replace:
            os.rename(self.full(src), self.full(dst))
        else:
            renameat2(self.full(src), self.full(dst), RENAME_NOREPLACE)

    def link(self, src: object, dst: object) -> None:
        os.link(self.full(src), self.full(dst))

    def symlink(self, target: object, path: object) -> None:
        os.symlink(os.fsdecode(target), self.full(path))  # type: ignore[arg-type]

    def readlink(self, path: object) -> str:
        return os.readlink(self.full(path))

    def chmod(self, path: object, mode: int) -> None:
        os.chmod(self.full(path), arguments.mode_bits(mode))

    def chown(self, path: object, uid: int, gid: int) -> None:
        os.chown(self.full(path), uid, gid)

    def utime(self, path: object, ns: tuple[int, int] | None = None) -> None:
        os.utime(self.full(path), ns=ns) if ns is not None else os.utime(self.full(path))

    def _scan(self, path: object) -> list[tuple[str, Stat]]:
        with os.scandir(self.full(path)) as it:
            return [(entry.name, to_stat(entry.stat(follow_symlinks=False))) for entry in it]

    def open(self, path: object, mode: str = "rb", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None) -> Any:
        flags, text, binary = arguments.parse_mode(mode)
        buffering = buffered.check_options(text, buffering, encoding, errors, newline)
        raw = OsFile(self, os.fsdecode(path), binary)  # type: ignore[arg-type]
        return buffered.wrap(raw, flags, text, mode, buffering, encoding, errors, newline)

    def copy_file_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        with self.open(src, "rb", buffering=0) as s, self.open(dst, "r+b", buffering=0) as d:
            return os.copy_file_range(s._fd, d._fd, length, src_offset, dst_offset)

    # ---- what only the volume behind the mount can say

    def statfs(self) -> StatFS:
        return self.served.statfs()

    def fsck(self) -> list[str]:
        return self.served.fsck()

    def pins(self) -> list[Any]:
        return self.served.pins()

    def close(self) -> None:
        """As a volume's close closes its files: their handles say closed now; their
        descriptors stay open (the mount must cope with a file open as it goes) until
        ``drop_orphaned`` after the mount has gone."""
        self.closed = True
        for f in self.files:
            f.handle.closed = f.closed = True
            self.orphaned.append(f._fd)
        self.files.clear()

    def drop_orphaned(self) -> None:
        for fd in self.orphaned:
            try:
                os.close(fd)
            except OSError:
                pass
        self.orphaned.clear()


__all__ = ["OsFile", "OsVolume", "fallocate", "renameat2", "to_stat", "RENAME_EXCHANGE", "RENAME_NOREPLACE"]
