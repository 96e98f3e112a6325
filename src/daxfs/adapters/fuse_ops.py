"""The FUSE front end's requests: each libfuse 3 high-level callback, answered by the volume.

libfuse's high-level API hands us paths (the kernel has walked them, following symlinks
itself), so every request is a path or an open handle, as the volume's own calls are.
The binding is mfusepy (ctypes; no compiler, no libfuse headers needed to install it):
its ``FUSE`` class registers a callback for each method found here and catches an
``OSError`` into ``-errno``.  We override its per-callback wrappers rather than using
its ``Operations`` layer, for three reasons measured or needed:

- read and write copy straight between the pool and libfuse's buffer (a memoryview over
  the C buffer): one copy each way, no ``bytes`` per request;
- getattr fills ``struct stat`` from the inode directly (no dict per request);
- copy_file_range, lseek (SEEK_DATA/SEEK_HOLE), rename flags (RENAME_NOREPLACE,
  RENAME_EXCHANGE) and UTIME_NOW/UTIME_OMIT reach us as libfuse gives them.

Permissions are the kernel's (``default_permissions``): a request that reaches us is
allowed.  New inodes belong to the calling process (``fuse_get_context``); the kernel
applied its umask already; a set-group-ID directory passes its group (and, to a new
directory, the bit) on, as Linux file systems do.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import stat as st
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if "FUSE_LIBRARY_PATH" not in os.environ:
    # mfusepy loads libfuse 2 when both are installed; daxfs needs 3 (rename flags,
    # copy_file_range, lseek).
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")

import mfusepy  # noqa: E402

from daxfs.adapters.fuse_setid import may_keep_set_id, set_id_to_drop  # noqa: E402
from daxfs.core.namespace import whole  # noqa: E402
from daxfs.core.records import SetAttr  # noqa: E402
from daxfs.errors import fs_error  # noqa: E402
from daxfs.volume.arguments import OpenFlags  # noqa: E402

if TYPE_CHECKING:
    from daxfs.core import Inode
    from daxfs.volume import OpenFile, Volume

_lib = mfusepy._libfuse
_lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_lib.fuse_invalidate_path.restype = ctypes.c_int
_lib.fuse_get_session.argtypes = [ctypes.c_void_p]
_lib.fuse_get_session.restype = ctypes.c_void_p
_lib.fuse_lowlevel_notify_inval_entry.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]
_lib.fuse_lowlevel_notify_inval_entry.restype = ctypes.c_int
#: The root's node id in the FUSE protocol (the only one libfuse's path API lets us know).
FUSE_ROOT_ID = 1

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
SEEK_DATA, SEEK_HOLE = 3, 4
#: What libfuse names a hidden file: ``DIR/.fuse_hiddenXXXXXXXXXXXXXXXX``.
HIDDEN = "/.fuse_hidden"
FUSE_CAP_WRITEBACK_CACHE = 1 << 16
#: Mount options libfuse 3 takes through its config that we honour (``-o direct_io``: every
#: file bypasses the kernel's page cache, and so cannot be mmap'd; ``intr``, ``intr_signal``).
#: ``use_ino``, ``readdir_ino`` and ``hard_remove`` stay as init sets them: the mount needs them.
USER_CONFIG_OPTIONS = frozenset({"direct_io", "intr", "intr_signal"})

#: Marks the threads libfuse runs our callbacks on: changes they make are the mount's own,
#: and the kernel knows of them (only other front ends' changes need invalidating).
requests = threading.local()


class _Enabled:
    """What mfusepy looks for to register a callback: an attribute per operation we answer."""

    use_ns = True

    def __getattr__(self, name: str) -> Any:
        if name in CALLBACKS:
            return True
        raise AttributeError(name)


CALLBACKS = frozenset({
    "getattr", "readlink", "mknod", "mkdir", "unlink", "rmdir", "symlink", "rename", "link", "chmod",
    "chown", "truncate", "open", "read", "write", "statfs", "flush", "release", "fsync", "opendir",
    "readdir", "releasedir", "fsyncdir", "init", "destroy", "create", "utimens", "fallocate",
    "copy_file_range", "lseek",
})


class _Handle:
    """What the volume's sharing calls take for an open file (an object with ``handle``)."""

    __slots__ = ("handle",)

    def __init__(self, handle: "OpenFile") -> None:
        self.handle = handle


def _buffer(pointer: Any, size: int) -> memoryview:
    """libfuse's buffer as a writable byte memoryview (no copy)."""
    address = ctypes.cast(pointer, ctypes.c_void_p).value
    return memoryview((ctypes.c_char * size).from_address(address)).cast("B")  # type: ignore[arg-type]


def _text(path: bytes | None) -> str:
    if path is None:
        raise fs_error(errno.ENOENT, message="no path for a removed file")
    return path.decode("utf-8", "surrogateescape")


class Handlers(mfusepy.FUSE):  # type: ignore[misc]
    """libfuse's callbacks on one volume.  Constructing it mounts and runs libfuse's loop
    (multi-threaded, foreground) until the mount goes away; ``FuseMount`` runs it on a
    thread of its own."""

    def __init__(self, volume: "Volume", mountpoint: str, *, options: dict[str, Any],
                 on_init: Callable[["Handlers"], None], on_destroy: Callable[[], None]) -> None:
        self.vol = volume
        self.journal = volume._journal
        self.namespace = volume.namespace
        self.data = volume.data
        self.ranges = volume.ranges
        self.holder = volume.references.process_holder
        self.files: dict[int, OpenFile] = {}
        self.dirs: dict[int, list[tuple[bytes, int, int]]] = {}
        self._ids = itertools.count(1)
        #: a path the kernel reached each inode by (to invalidate what it caches of it)
        self.known: dict[int, str] = {}
        #: libfuse's hidden names of unlinked open files -> their inodes
        self.hidden: dict[str, int] = {}
        #: the paths of files with several names: libfuse shows the kernel one inode per
        #: name, so a change through one name must drop what the kernel caches of the others
        self.links: dict[int, set[str]] = {}
        self.fuse_ptr: int | None = None
        #: called with an inode before its open returns (``FuseMount``: its pending
        #: invalidations are done first)
        self.settle: Callable[[int], None] = lambda ino: None
        self.max_write = 0
        #: ``-o direct_io``: every write bypasses the kernel's page cache, which then leaves
        #: clearing set-user-ID and set-group-ID bits to us
        self.all_direct = False
        self.counts: dict[str, int] = {}
        self._on_init = on_init
        self._on_destroy = on_destroy
        super().__init__(_Enabled(), mountpoint, raw_fi=True, foreground=True, nothreads=False, **options)

    # ---------------------------------------------------------------- plumbing

    def _wrapper(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        requests.fuse = True
        whole.paths = True
        counts = self.counts
        name = func.__name__
        counts[name] = counts.get(name, 0) + 1
        return super()._wrapper(func, *args, **kwargs)

    def _handle(self, fip: Any) -> "OpenFile":
        handle = self.files.get(fip.contents.fh) if fip else None
        if handle is None:
            raise fs_error(errno.EBADF)
        return handle

    def _node(self, path: bytes | None, fip: Any = None) -> "Inode":
        """The inode a request names: its open handle's, else its path's (not followed)."""
        if fip and fip.contents.fh in self.files:
            return self.journal.node(self.files[fip.contents.fh].ino)
        p = _text(path)
        if HIDDEN in p:
            ino = self.hidden.get(p)
            if ino is None:
                raise fs_error(errno.ENOENT, p)
            return self.journal.node(ino)
        node = self.namespace.lookup(p, False)[1]
        self.known[node.ino] = p
        if node.nlink > 1 and node.entries is None:
            self.links.setdefault(node.ino, set()).add(p)
        return node

    def _others(self, ino: int, *but: str) -> None:
        """Drop what the kernel caches of ``ino``'s other names (hard links), now: a stat through
        another name must show this change.  Never the name the request came through (the
        kernel may hold that inode's pages locked for it)."""
        paths = self.links.get(ino)
        if paths:
            for path in list(paths):
                if path not in but:
                    self.invalidate(path)

    def _creator(self, path: str, directory: bool = False) -> tuple[tuple[int, int, int], int]:
        """``((uid, gid, umask), extra mode bits)`` for a new inode at ``path``."""
        uid, gid, _pid = mfusepy.fuse_get_context()
        extra = 0
        core = self.journal.core
        try:
            parent = core.inodes[core.resolve(path)[0]]
        except (OSError, KeyError):
            parent = None
        if parent is not None and parent.mode & st.S_ISGID:
            gid = parent.gid
            if directory:
                extra = st.S_ISGID
        return (uid, gid, 0), extra

    def _remember(self, path: str) -> None:
        try:
            self.known[self.namespace.lookup(path, False)[1].ino] = path
        except OSError:
            pass

    # ---------------------------------------------------------------- lifetime

    def init_fuse_3(self, conn: Any, config: Any) -> None:
        c = config.contents
        c.use_ino = 1           # st_ino is the volume's inode number
        c.readdir_ino = 0
        # libfuse "hides" a file still open through the mount that is unlinked or renamed
        # over: it renames it to .fuse_hiddenXXXX and unlinks that name at the last close.
        # We make that rename a real unlink (the open handle keeps the volume's orphan, as
        # an embedded handle would) and serve the hidden name from its inode, so fstat of
        # an unlinked open file works (with hard_remove libfuse has no path for it: ESTALE)
        # and no hidden name ever shows in a listing.
        c.hard_remove = 0
        c.nullpath_ok = 1       # reads, writes and the like go by handle, without a path
        c.kernel_cache = 0
        c.auto_cache = 0
        # libfuse 3 takes some mount options through this config (mfusepy keeps them aside;
        # its own init, which we replace, would set them): the ones a user may choose.
        chosen = getattr(self, "_libfuse2_options_moved_into_libfuse3_config", {})
        for key in USER_CONFIG_OPTIONS & set(chosen):
            setattr(c, key, chosen[key])
        self.all_direct = bool(chosen.get("direct_io"))
        info = conn.contents
        # Writeback caching stays off: with it the kernel trusts its own size and mtime of a
        # cached file over ours, so a file a Python client grows would not grow here.
        info.want &= ~FUSE_CAP_WRITEBACK_CACHE
        self.max_write = info.max_write
        self.fuse_ptr = _lib.fuse_get_context().contents.fuse
        self._on_init(self)

    def destroy(self, private_data: Any) -> None:
        self._on_destroy()
        with self.vol.lock:
            for handle in list(self.files.values()):
                self.namespace.close_file(handle)
            self.files.clear()

    def invalidate(self, path: str) -> None:
        """Drop what the kernel caches of ``path`` (attributes and data); no-op if uncached."""
        if self.fuse_ptr:
            _lib.fuse_invalidate_path(self.fuse_ptr, path.encode("utf-8", "surrogateescape"))

    def forget_name(self, path: str) -> None:
        """Drop the kernel's cached name ``path`` (its dentry): another front end removed or
        replaced it.  Until then the kernel would take the name for the old inode for up to
        ``entry_timeout``, and an ``open(O_CREAT)``, ``mkdir`` or ``O_EXCL`` create of it would
        fail (ENOENT, EEXIST) where the name is free.  libfuse's path API gives no node id
        but the root's, so below the root the top directory's name goes, and with it every
        name the kernel caches under it (looked up again on their next use)."""
        if not self.fuse_ptr:
            return
        top = path.strip("/").split("/", 1)[0].encode("utf-8", "surrogateescape")
        if top:
            session = _lib.fuse_get_session(self.fuse_ptr)
            _lib.fuse_lowlevel_notify_inval_entry(session, FUSE_ROOT_ID, top, len(top))

    # ---------------------------------------------------------------- attributes

    def fgetattr(self, path: bytes | None, buf: Any, fip: Any) -> int:
        with self.vol.lock:
            self.journal.check_open()
            node = self._node(path, fip)
            s = self.journal.stat_of(node)
            out = buf.contents
            out.st_ino = s.st_ino
            out.st_mode = s.st_mode
            out.st_nlink = s.st_nlink
            out.st_uid = s.st_uid
            out.st_gid = s.st_gid
            out.st_size = s.st_size
            out.st_blocks = s.st_blocks
            out.st_blksize = s.st_blksize
            out.st_rdev = node.rdev
            out.st_atimespec.tv_sec, out.st_atimespec.tv_nsec = divmod(s.st_atime_ns, 1_000_000_000)
            out.st_mtimespec.tv_sec, out.st_mtimespec.tv_nsec = divmod(s.st_mtime_ns, 1_000_000_000)
            out.st_ctimespec.tv_sec, out.st_ctimespec.tv_nsec = divmod(s.st_ctime_ns, 1_000_000_000)
        return 0

    def _setattr(self, path: bytes | None, fip: Any, *, mode: int | None = None, uid: int | None = None,
                 gid: int | None = None, atime: int | None = None, mtime: int | None = None) -> int:
        with self.vol.lock:
            journal = self.journal
            journal.check_writable()
            node = self._node(path, fip)
            if mtime is not None:
                journal.deferred.pop(node.ino, None)
            journal.commit(SetAttr(node.ino, mode, uid, gid, atime, mtime, time.time_ns()))
        if node.nlink > 1:
            self._others(node.ino, _text(path) if path is not None else "")
        return 0

    def chmod_fuse_3(self, path: bytes | None, mode: int, fip: Any) -> int:
        return self._setattr(path, fip, mode=mode & 0o7777)

    def chown_fuse_3(self, path: bytes | None, uid: int, gid: int, fip: Any) -> int:
        keep = (1 << 32) - 1        # (uid_t)-1: leave it
        return self._setattr(path, fip, uid=None if uid == keep else uid, gid=None if gid == keep else gid)

    def utimens_fuse_3(self, path: bytes | None, times: Any, fip: Any) -> int:
        now = time.time_ns()
        values: list[int | None] = []
        for ts in (times.contents.actime, times.contents.modtime) if times else ():
            values.append(now if ts.tv_nsec == UTIME_NOW else None if ts.tv_nsec == UTIME_OMIT
                          else ts.tv_sec * 1_000_000_000 + ts.tv_nsec)
        atime, mtime = values if values else (now, now)
        return self._setattr(path, fip, atime=atime, mtime=mtime)

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        with self.vol.lock:
            node = self._node(path, fip)
        self.ranges.truncate(node.ino, length)
        if node.nlink > 1:
            self._others(node.ino, _text(path) if path is not None else "")
        return 0

    def statfs(self, path: bytes, buf: Any) -> int:
        fs = self.vol.statfs()
        core = self.journal.core
        out = buf.contents
        bs = fs.block_size
        out.f_bsize = out.f_frsize = bs
        out.f_blocks = fs.size // bs
        out.f_bfree = out.f_bavail = fs.free // bs
        spare = max(0, (self.journal.layout.checkpoint_size - core.checkpoint_bound) // 400)
        out.f_files = fs.files + spare
        out.f_ffree = out.f_favail = spare
        out.f_namemax = 255
        return 0

    # ---------------------------------------------------------------- names

    def mkdir(self, path: bytes, mode: int) -> int:
        p = _text(path)
        creator, extra = self._creator(p, directory=True)
        self.namespace.mkdir(p, (mode | extra) & 0o7777, parents=False, exist_ok=False, creator=creator)
        self._remember(p)
        return 0

    def mknod(self, path: bytes, mode: int, dev: int) -> int:
        p = _text(path)
        creator, _extra = self._creator(p)
        if st.S_ISREG(mode):        # mknod(2) of a regular file: an empty one
            flags = OpenFlags(False, True, True, True, False, False)
            self.namespace.close_file(self.namespace.open(p, "xb", flags, self.holder, creator=creator,
                                                          perm=mode & 0o7777))
        else:
            self.namespace.mknod(p, mode, dev, creator=creator)
        self._remember(p)
        return 0

    def symlink(self, target: bytes, path: bytes) -> int:
        p = _text(path)
        creator, _extra = self._creator(p)
        self.namespace.symlink(_text(target), p, creator=creator)
        self._remember(p)
        return 0

    def readlink(self, path: bytes, buf: Any, size: int) -> int:
        target = self.namespace.readlink(_text(path)).encode("utf-8", "surrogateescape")[:size - 1]
        ctypes.memmove(buf, target + b"\0", len(target) + 1)
        return 0

    def unlink(self, path: bytes) -> int:
        p = _text(path)
        if self.hidden.pop(p, None) is None:            # a hidden name: its file is gone already
            self._unlink(p)
        return 0

    def _unlink(self, p: str) -> int:
        """Unlink ``p`` (the volume's pin policy decides); its other names' nlink changes."""
        with self.vol.lock:
            node = self.namespace.lookup(p, False)[1]
            self.namespace.unlink(p, None)
        paths = self.links.get(node.ino)
        if paths is not None:
            paths.discard(p)
            self._others(node.ino, p)
        return node.ino

    def rmdir(self, path: bytes) -> int:
        self.namespace.rmdir(_text(path))
        return 0

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        s, d = _text(old), _text(new)
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
            raise fs_error(errno.EINVAL, s)
        if HIDDEN in d and not flags:          # libfuse hides an open file: unlink it, keep its inode
            self.hidden[d] = self._unlink(s)
            for handle in self.files.values():
                if handle.path == s:
                    handle.path = d
            return 0
        if flags & RENAME_EXCHANGE:
            self.namespace.exchange(s, d)
        else:
            with self.vol.lock:
                core = self.journal.core
                target = core.resolve(d)[2]
                replaced = core.inodes[target] if target is not None else None
                self.namespace.rename(s, d, replace=not flags & RENAME_NOREPLACE)
            if replaced is not None and replaced.ino in self.links:
                self.links[replaced.ino].discard(d)
                self._others(replaced.ino, d)
        for ino, paths in self.links.items():
            if s in paths:
                paths.discard(s)
                paths.add(d)
        for handle in self.files.values():        # so a write never invalidates its own name
            if handle.path == s or handle.path.startswith(s + "/"):
                handle.path = d + handle.path[len(s):]
        self._remember(d)
        return 0

    def link(self, source: bytes, target: bytes) -> int:
        s, d = _text(source), _text(target)
        with self.vol.lock:
            self.namespace.link(s, d)
            ino = self.namespace.lookup(d, False)[1].ino
        self.links.setdefault(ino, set()).update((s, d))
        self._others(ino, d)        # the kernel shows the new name with fresh attributes
        return 0

    # ---------------------------------------------------------------- open files

    def _open(self, path: bytes, fip: Any, create: bool, perm: int = 0o666) -> int:
        fi = fip.contents
        p = _text(path)
        flags = fi.flags
        access = flags & os.O_ACCMODE
        want = OpenFlags(access != os.O_WRONLY, access != os.O_RDONLY, create, bool(create and flags & os.O_EXCL),
                         bool(flags & os.O_TRUNC) and access != os.O_RDONLY, bool(flags & os.O_APPEND))
        creator = self._creator(p)[0] if create else None
        handle = self.namespace.open(p, "fuse", want, self.holder, creator=creator, perm=perm)
        fh = next(self._ids)
        self.files[fh] = handle
        self.known[handle.ino] = p
        fi.fh = fh
        if want.truncate and self.journal.node(handle.ino).mode & (st.S_ISUID | st.S_ISGID):
            # libfuse takes O_TRUNC into the open (atomic_o_trunc), and the kernel then leaves
            # the truncate's clearing of set-ID bits to us, as for a direct write.
            self._drop_set_id(handle.ino)
        if access != os.O_RDWR:
            # No FLUSH at this descriptor's close: ours does nothing (writes are write-through;
            # POSIX locks are the kernel's own), so the close costs no round trip.  Not for a
            # read-write descriptor, the only kind a shared writable mapping is made from: a
            # close that flushes first writes the file's dirty pages back, so a client reading
            # the volume after the close of the descriptor a mapping was made from sees its
            # stores (else they reach it at munmap, msync, fsync or the file's next open).
            fi.noflush = 1
        self.settle(handle.ino)
        return 0

    def open(self, path: bytes, fip: Any) -> int:
        return self._open(path, fip, False)

    def create(self, path: bytes, mode: int, fip: Any) -> int:
        return self._open(path, fip, True, mode & 0o7777)

    def read(self, path: bytes | None, buf: Any, size: int, offset: int, fip: Any) -> int:
        handle = self._handle(fip)
        with _buffer(buf, size) as dest:
            return self.data.pread(handle.ino, dest, size, offset)  # type: ignore[return-value]

    def write(self, path: bytes | None, buf: Any, size: int, offset: int, fip: Any) -> int:
        handle = self._handle(fip)
        if self.all_direct and self.journal.node(handle.ino).mode & (st.S_ISUID | st.S_ISGID):
            self._drop_set_id(handle.ino)
        with _buffer(buf, size) as data:
            if handle.append:       # at the volume's EOF, whatever the kernel thinks it is
                return self.data.append(handle.ino, data)[0]
            return self.data.pwrite(handle.ino, data, offset)

    def _drop_set_id(self, ino: int) -> None:
        """Before a write that bypasses the kernel's page cache (and at an O_TRUNC open), what
        the kernel does before a write through it (``fuse_setid``) — or a program another user
        rewrote would keep running with its owner's ids."""
        if may_keep_set_id(mfusepy.fuse_get_context()[2]):
            return
        with self.vol.lock:
            journal = self.journal
            mode = journal.node(ino).mode
            drop = set_id_to_drop(mode)
            if drop:
                journal.check_writable()
                journal.commit(SetAttr(ino, mode & 0o7777 & ~drop, None, None, None, None, time.time_ns()))

    def flush(self, path: bytes | None, fip: Any) -> int:
        return 0

    def fsync(self, path: bytes | None, datasync: int, fip: Any) -> int:
        self.data.fsync(self._handle(fip).ino)
        return 0

    def release(self, path: bytes | None, fip: Any) -> int:
        handle = self.files.pop(fip.contents.fh, None)
        if handle is not None:
            self.namespace.close_file(handle)
        return 0

    def fallocate(self, path: bytes | None, mode: int, offset: int, length: int, fip: Any) -> int:
        ino = self._handle(fip).ino
        keep = bool(mode & FALLOC_FL_KEEP_SIZE)
        kind = mode & ~FALLOC_FL_KEEP_SIZE
        if kind == 0:
            self.ranges.fallocate(ino, offset, length, keep)
        elif kind == FALLOC_FL_PUNCH_HOLE and keep:
            self.ranges.punch_hole(ino, offset, length)
        elif kind == FALLOC_FL_ZERO_RANGE:
            self.ranges.zero_range(ino, offset, length, keep)
        else:                   # collapse, insert, unshare: not on tmpfs either
            raise fs_error(errno.EOPNOTSUPP)
        return 0

    def lseek(self, path: bytes | None, offset: int, whence: int, fip: Any) -> int:
        if whence not in (SEEK_DATA, SEEK_HOLE):
            raise fs_error(errno.EINVAL)
        return self.data.seek_data(self._handle(fip).ino, offset, whence == SEEK_HOLE)

    def copy_file_range(self, path_in: bytes | None, fi_in: Any, off_in: int, path_out: bytes | None,
                        fi_out: Any, off_out: int, size: int, flags: int) -> int:
        if flags:
            raise fs_error(errno.EINVAL)
        src, dst = _Handle(self._handle(fi_in)), _Handle(self._handle(fi_out))
        return self.vol.sharing.copy_file_range(src, off_in, dst, off_out, size)

    # ---------------------------------------------------------------- directories

    def opendir(self, path: bytes, fip: Any) -> int:
        p = _text(path)
        with self.vol.lock:
            self.journal.check_open()
            node = self.namespace.lookup(p)[1]
            if node.entries is None:
                raise fs_error(errno.ENOTDIR, p)
            inodes = self.journal.core.inodes
            parent = inodes[node.parent]
            # A snapshot: offsets into it stay valid however the directory changes meanwhile.
            listing = [(b".", node.ino, st.S_IFDIR), (b"..", parent.ino, st.S_IFDIR)]
            listing += [(name.encode("utf-8", "surrogateescape"), ino, st.S_IFMT(inodes[ino].mode))
                        for name, ino in node.entries.items()]
        fh = next(self._ids)
        self.dirs[fh] = listing
        fip.contents.fh = fh
        return 0

    def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any, flags: int) -> int:
        listing = self.dirs.get(fip.contents.fh)
        if listing is None:
            raise fs_error(errno.EBADF)
        stat = mfusepy.c_stat()
        for i in range(offset, len(listing)):
            name, ino, kind = listing[i]
            stat.st_ino = ino
            stat.st_mode = kind
            if filler(buf, name, stat, i + 1, 0):
                break
        return 0

    def releasedir(self, path: bytes | None, fip: Any) -> int:
        self.dirs.pop(fip.contents.fh, None)
        return 0

    def fsyncdir(self, path: bytes | None, datasync: int, fip: Any) -> int:
        return 0        # metadata is durable when each call returns
