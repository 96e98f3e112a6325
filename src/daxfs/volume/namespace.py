"""Namespace: names and inodes — mkdir, rmdir, unlink, rename, link, attributes, open.

Each operation resolves its paths against the core, raises the error Linux
would give (in Linux's order: both parents of a rename or link are walked
before either name is looked at), and commits one record.  Unlink of the last
name of a file that is open, mapped or pinned leaves it as an orphan: the
name goes now, the inode and its blocks when its last reference does (the
seeds' "a pin holds an inode reference"); otherwise it is freed at once.
Removing the last name of a referenced file follows the pin policy first.
"""

from __future__ import annotations

import errno
import os
import stat as st
import time
from typing import Any

from daxfs._types import Stat
from daxfs.core import ROOT_INO, Inode
from daxfs.core.namespace import fspath, split_path
from daxfs.core.fields import valid_target
from daxfs.core.records import Batch, Create, CreateNode, Link, Reclaim, Rename, SetAttr, Unlink
from daxfs.errors import fs_error
from daxfs.volume.arguments import OpenFlags
from daxfs.volume.datapath import DataPath
from daxfs.volume.ranges import RangeOps

# Upper bound of how much a new inode can grow the checkpoint (see Core.checkpoint_bound).
GROW_INODE = 256

_umask_seen = os.umask(0o022)
os.umask(_umask_seen)


def process_umask() -> int:
    """The process umask now, for a create (os.mkdir applies it; so do we).

    os.umask can only be read by setting it.  Setting it to the value last
    seen leaves it unchanged whenever nobody has changed it since, so a
    thread creating files at that moment is unaffected; only right after a
    change is there a window of one syscall where it sees the older mask.
    """
    global _umask_seen
    current = os.umask(_umask_seen)
    if current != _umask_seen:
        os.umask(current)
        _umask_seen = current
    return current


class OpenFile:
    """An open file as the volume sees it: the inode it holds and what it may do.

    The access layer's ``File`` wraps one (as its ``handle``); the volume marks it
    closed when it unmounts, so the handle dies with it.
    """

    __slots__ = ("journal", "ino", "path", "mode", "flags", "holder", "closed", "start", "wrapper")

    def __init__(self, journal: object, ino: int, path: str, mode: str, flags: OpenFlags, holder: object,
                 start: int) -> None:
        self.journal = journal
        self.ino = ino
        self.path = path
        self.mode = mode            # as the caller wrote it ("rb+" stays "rb+", as open() keeps it)
        self.flags = flags
        self.holder = holder
        self.closed = False
        self.start = start          # the first position: EOF for an append handle, as open() does
        self.wrapper: Any = None    # a weak reference to what wraps this (the access layer's File)

    def mark_closed(self) -> None:
        """Closed, by its own close or the volume's; the wrapper's ``closed`` is a plain
        attribute (io's buffered files read it on every call), so it is told too."""
        self.closed = True
        wrapper = self.wrapper() if self.wrapper is not None else None
        if wrapper is not None:
            wrapper.closed = True

    @property
    def readable(self) -> bool:
        return self.flags.readable

    @property
    def writable(self) -> bool:
        return self.flags.writable

    @property
    def append(self) -> bool:
        return self.flags.append

    @staticmethod
    def of(arg: object) -> "OpenFile | None":
        """The OpenFile behind a file object (anything with a ``handle``, or a buffered or text
        file over one: its buffer is flushed first), or None for a path."""
        for _ in range(3):             # text -> buffered -> raw
            handle = getattr(arg, "handle", None)
            if isinstance(handle, OpenFile):
                return handle
            inner = getattr(arg, "buffer", None) or getattr(arg, "raw", None)
            if inner is None or not callable(getattr(arg, "flush", None)):
                return None
            arg.flush()  # type: ignore[attr-defined]
            arg = inner
        return None


class Namespace:
    """The directory tree and inode attributes of one volume."""

    def __init__(self, data: DataPath, ranges: RangeOps) -> None:
        self.data = data
        self.ranges = ranges
        self.journal = data.journal
        self.references = data.references
        self.lock = data.lock
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.open_files: set[OpenFile] = set()

    # ---------------------------------------------------------------- lookups

    @staticmethod
    def path_arg(path: object) -> str:
        return path if type(path) is str else fspath(path)

    def lookup(self, path: object, follow: bool = True) -> tuple[str, Inode]:
        """The inode a path names (ENOENT, ENOTDIR, ELOOP as Linux gives them); a symlink in
        the last place is followed unless ``follow`` is False (lstat)."""
        p = self.path_arg(path)
        core = self.journal.core
        _parent, _name, ino, trailing = core.resolve(p, follow)
        if ino is None:
            raise fs_error(errno.ENOENT, p)
        node = core.inodes[ino]
        if trailing and node.entries is None:
            raise fs_error(errno.ENOTDIR, p)
        return p, node

    def stat(self, path: object, follow: bool = True) -> Stat:
        with self.lock:
            self.journal.check_open()
            return self.journal.stat_of(self.lookup(path, follow)[1])

    def listdir(self, path: object) -> list[str]:
        with self.lock:
            self.journal.check_open()
            p, node = self.lookup(path)
            if node.entries is None:
                raise fs_error(errno.ENOTDIR, p)
            return list(node.entries)

    def scan(self, path: object) -> list[tuple[str, Stat]]:
        """Each entry of a directory with its stat, at one moment (one lock)."""
        with self.lock:
            self.journal.check_open()
            p, node = self.lookup(path)
            if node.entries is None:
                raise fs_error(errno.ENOTDIR, p)
            inodes, stat_of = self.journal.core.inodes, self.journal.stat_of
            return [(name, stat_of(inodes[ino])) for name, ino in node.entries.items()]

    def _new_name(self, path: str) -> tuple[int, str]:
        """``(parent, name)`` for a name about to be created; EEXIST if taken."""
        parent, name, ino, _trailing = self.journal.core.resolve(path)
        if name is None or ino is not None:
            raise fs_error(errno.EEXIST, path)
        return parent, name

    def _is_ancestor(self, ancestor: int, ino: int) -> bool:
        """Whether directory ``ancestor`` is ``ino`` or lies above it."""
        inodes = self.journal.core.inodes
        while True:
            if ino == ancestor:
                return True
            if ino == ROOT_INO:
                return False
            ino = inodes[ino].parent

    # ---------------------------------------------------------------- directories

    def creator(self, creator: tuple[int, int, int] | None) -> tuple[int, int, int]:
        """``(uid, gid, umask)`` a new inode gets: this process's, or a caller's (the arbiter
        creates for its clients with theirs)."""
        return creator if creator is not None else (self.uid, self.gid, process_umask())

    def mkdir(self, path: object, mode: int, *, parents: bool, exist_ok: bool,
              creator: tuple[int, int, int] | None = None) -> None:
        p = self.path_arg(path)
        with self.lock:
            self.journal.check_writable(p)
            core = self.journal.core
            if parents:
                components, _ = split_path(p)
                prefix = ""
                for comp in components[:-1]:
                    prefix += "/" + comp
                    _par, _nm, ino, _t = core.resolve(prefix, True)
                    if ino is None:
                        self._mkdir_one(prefix, 0o777, creator)
                    elif core.inodes[ino].entries is None:
                        raise fs_error(errno.ENOTDIR, p)
            try:
                self._mkdir_one(p, mode, creator)
            except FileExistsError:
                _par, _nm, ino, _t = core.resolve(p, True)
                if not (exist_ok and ino is not None and core.inodes[ino].entries is not None):
                    raise

    def _mkdir_one(self, path: str, mode: int, creator: tuple[int, int, int] | None) -> None:
        parent, name = self._new_name(path)
        uid, gid, umask = self.creator(creator)
        self.journal.commit(Create(self.journal.core.next_ino, parent, name,
                                   st.S_IFDIR | (mode & 0o7777 & ~umask), uid, gid,
                                   time.time_ns()), GROW_INODE + 4 * len(name))

    def rmdir(self, path: object) -> None:
        p = self.path_arg(path)
        with self.lock:
            self.journal.check_writable(p)
            core = self.journal.core
            parent, name, ino, _trailing = core.resolve(p)
            if name is None:
                last = split_path(p)[0][-1:] or ["/"]
                raise fs_error({".": errno.EINVAL, "..": errno.ENOTEMPTY}.get(last[0], errno.EBUSY), p)
            if ino is None:
                raise fs_error(errno.ENOENT, p)
            node = core.inodes[ino]
            if node.entries is None:
                raise fs_error(errno.ENOTDIR, p)
            if node.entries:
                raise fs_error(errno.ENOTEMPTY, p)
            self.journal.commit(Unlink(parent, name, time.time_ns(), True))

    # ---------------------------------------------------------------- names

    def unlink(self, path: object, policy: str | None) -> None:
        p = path if type(path) is str else fspath(path)
        with self.lock:
            self.journal.check_writable(p)
            core = self.journal.core
            parent, name, ino, trailing = core.resolve(p)
            if name is None:
                raise fs_error(errno.EISDIR, p)
            if ino is None:
                raise fs_error(errno.ENOENT, p)
            node = core.inodes[ino]
            if node.entries is not None:
                raise fs_error(errno.EISDIR, p)
            if trailing:
                raise fs_error(errno.ENOTDIR, p)
            if node.nlink == 1 and self.references.settle(ino, 0, None, policy, "unlink"):
                return self.unlink(path, policy)     # waited: look again
            reclaim = node.nlink == 1 and not self.references.inode_held(ino)
            if reclaim:
                self.data.forget(ino)
            self.journal.commit(Unlink(parent, name, time.time_ns(), reclaim))

    def rename(self, src: object, dst: object, *, replace: bool) -> None:
        s = self.path_arg(src)
        d = self.path_arg(dst)
        with self.lock:
            self.journal.check_writable(s)
            core = self.journal.core
            # Linux walks both parents before looking at either name.
            sparent, sname, sino, strailing = core.resolve(s)
            dparent, dname, dino, dtrailing = core.resolve(d)
            if sname is None:
                raise fs_error(errno.EBUSY, s)
            if sino is None:
                raise fs_error(errno.ENOENT, s)
            if dname is None:
                raise fs_error(errno.EBUSY, d)
            snode = core.inodes[sino]
            if (strailing or dtrailing) and snode.entries is None:
                raise fs_error(errno.ENOTDIR, s)
            if dino is not None and not replace:
                raise fs_error(errno.EEXIST, d)
            if dino == sino:
                return      # two names of one inode (or the same name): POSIX says do nothing
            if snode.entries is not None and self._is_ancestor(sino, dparent):
                raise fs_error(errno.EINVAL, s, "cannot move a directory into itself")
            if dino is not None and self._is_ancestor(dino, sparent):
                raise fs_error(errno.ENOTEMPTY, d)      # the target contains the source
            reclaim = False
            if dino is not None:
                dnode = core.inodes[dino]
                if snode.entries is not None:
                    if dnode.entries is None:
                        raise fs_error(errno.ENOTDIR, d)
                    if dnode.entries:
                        raise fs_error(errno.ENOTEMPTY, d)
                elif dnode.entries is not None:
                    raise fs_error(errno.EISDIR, d)
                else:
                    if dnode.nlink == 1 and self.references.settle(dino, 0, None, None, "rename over"):
                        return self.rename(src, dst, replace=replace)     # waited: look again
                    reclaim = dnode.nlink == 1 and not self.references.inode_held(dino)
                    if reclaim:
                        self.data.forget(dino)
            self.journal.commit(Rename(sparent, sname, dparent, dname, time.time_ns(), reclaim),
                                4 * max(0, len(dname) - len(sname)))

    def link(self, src: object, dst: object) -> None:
        s = self.path_arg(src)
        d = self.path_arg(dst)
        with self.lock:
            self.journal.check_writable(s)
            core = self.journal.core
            _sp, _sname, sino, strailing = core.resolve(s)
            if sino is None:
                raise fs_error(errno.ENOENT, s)
            snode = core.inodes[sino]
            if strailing and snode.entries is None:
                raise fs_error(errno.ENOTDIR, s)
            # then the new name, as Linux: its parent, whether it exists ...
            dparent, dname = self._new_name(d)
            if split_path(d)[1]:
                raise fs_error(errno.ENOENT, d)
            # ... and only then whether the source may have another name at all
            if snode.entries is not None:
                raise fs_error(errno.EPERM, s)
            self.journal.commit(Link(sino, dparent, dname, time.time_ns()), GROW_INODE + 4 * len(dname))

    def exchange(self, src: object, dst: object) -> None:
        """Swap two names atomically (RENAME_EXCHANGE): both must exist.  One record: a batch
        of three renames through a temporary name no entry has, so a crash shows either both
        names as they were or both swapped."""
        s = self.path_arg(src)
        d = self.path_arg(dst)
        with self.lock:
            self.journal.check_writable(s)
            core = self.journal.core
            sparent, sname, sino, _st = core.resolve(s)
            dparent, dname, dino, _dt = core.resolve(d)
            if sname is None or dname is None:
                raise fs_error(errno.EBUSY, s if sname is None else d)
            if sino is None or dino is None:
                raise fs_error(errno.ENOENT, s if sino is None else d)
            if sino == dino:
                return
            if self._is_ancestor(sino, dparent) or self._is_ancestor(dino, sparent):
                raise fs_error(errno.EINVAL, s, "cannot exchange a directory with one inside it")
            entries = core.inodes[sparent].entries
            spare = f".daxfs-exchange-{sino}"
            while spare in entries:  # type: ignore[operator]
                spare += "~"
            now = time.time_ns()
            self.journal.commit(Batch.of(Rename(sparent, sname, sparent, spare, now, False),
                                         Rename(dparent, dname, sparent, sname, now, False),
                                         Rename(sparent, spare, dparent, dname, now, False)),
                                4 * (len(spare) + len(sname) + len(dname)))

    # ---------------------------------------------------------------- symlinks and special files

    def symlink(self, target: object, path: object, creator: tuple[int, int, int] | None = None) -> None:
        """A symbolic link ``path`` -> ``target`` (stored as given, resolved when followed)."""
        t = self.path_arg(target)
        p = self.path_arg(path)
        if not valid_target(t):
            raise fs_error(errno.ENOENT if not t else errno.ENAMETOOLONG if "\0" not in t else errno.EINVAL, p)
        self._make_node(p, stat_mode=st.S_IFLNK | 0o777, rdev=0, target=t, creator=creator, umask=False)

    def mknod(self, path: object, mode: int, rdev: int, creator: tuple[int, int, int] | None = None) -> None:
        """A FIFO, socket, or character or block device node (``mode`` holds the type)."""
        kind = st.S_IFMT(mode)
        if kind not in (st.S_IFIFO, st.S_IFSOCK, st.S_IFCHR, st.S_IFBLK):
            raise fs_error(errno.EINVAL, self.path_arg(path), "mknod makes FIFOs, sockets and device nodes")
        self._make_node(self.path_arg(path), stat_mode=mode & (st.S_IFMT(mode) | 0o7777),
                        rdev=rdev if kind in (st.S_IFCHR, st.S_IFBLK) else 0, target="", creator=creator,
                        umask=True)

    def _make_node(self, path: str, *, stat_mode: int, rdev: int, target: str,
                   creator: tuple[int, int, int] | None, umask: bool) -> None:
        with self.lock:
            self.journal.check_writable(path)
            parent, name = self._new_name(path)
            if split_path(path)[1]:
                raise fs_error(errno.ENOENT, path)
            uid, gid, mask = self.creator(creator)
            mode = stat_mode & ~mask if umask else stat_mode
            self.journal.commit(CreateNode(self.journal.core.next_ino, parent, name, mode, uid, gid,
                                           time.time_ns(), rdev, target),
                                GROW_INODE + 4 * (len(name) + len(target)))

    def readlink(self, path: object) -> str:
        with self.lock:
            self.journal.check_open()
            p, node = self.lookup(path, False)
            if node.target is None:
                raise fs_error(errno.EINVAL, p)
            return node.target

    # ---------------------------------------------------------------- attributes

    def setattr(self, path: object, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, times: tuple[int, int] | None = None, touch: bool = False,
                follow: bool = True) -> None:
        """chmod, chown and utime (of a symlink itself with ``follow`` False, as lchown): the
        values are already checked (``arguments``)."""
        with self.lock:
            self.journal.check_writable(self.path_arg(path))
            _p, node = self.lookup(path, follow)
            now = time.time_ns()
            atime = mtime = None
            if times is not None:
                atime, mtime = times
            elif touch:
                atime = mtime = now
            if mtime is not None:
                self.journal.deferred.pop(node.ino, None)
            self.journal.commit(SetAttr(node.ino, mode, uid, gid, atime, mtime, now))

    # ---------------------------------------------------------------- open files

    def open(self, path: object, mode: str, flags: OpenFlags, holder: object,
             creator: tuple[int, int, int] | None = None, follow: bool = True,
             perm: int = 0o666) -> OpenFile:
        """Resolve (creating or truncating as ``flags`` say) and hold the inode.

        A symlink in the last place is followed (a dangling one: O_CREAT creates its
        target), but not with O_CREAT|O_EXCL (EEXIST) nor without ``follow`` (O_NOFOLLOW:
        ELOOP).  A special file cannot be opened through the volume (ENXIO, as a socket).
        A new file gets ``perm`` less the umask (open(2)'s mode argument)."""
        p = path if type(path) is str else fspath(path)
        journal = self.journal
        with self.lock:
            if flags.writable or flags.create:
                journal.check_writable(p)
            else:
                journal.check_open()
            core = journal.core
            parent, name, ino, trailing = core.resolve(p, None if flags.exclusive else follow)
            if flags.create and trailing:
                raise fs_error(errno.EISDIR, p)     # O_CREAT never makes a directory
            if ino is None:
                if not flags.create:
                    raise fs_error(errno.ENOENT, p)
                ino = core.next_ino
                uid, gid, umask = self.creator(creator)
                journal.commit(Create(ino, parent, name, st.S_IFREG | (perm & 0o7777 & ~umask),  # type: ignore[arg-type]
                                      uid, gid, time.time_ns()), GROW_INODE + 4 * len(name))  # type: ignore[arg-type]
            else:
                if flags.exclusive:
                    raise fs_error(errno.EEXIST, p)
                node = core.inodes[ino]
                if node.entries is not None:
                    raise fs_error(errno.EISDIR, p)
                if trailing:
                    raise fs_error(errno.ENOTDIR, p)
                if node.extents is None:
                    raise fs_error(errno.ELOOP if node.target is not None else errno.ENXIO, p)
                if flags.truncate and (node.size or node.extents):
                    if self.references.settle(ino, 0, None, None, "open with truncation"):
                        return self.open(path, mode, flags, holder, creator, follow, perm)     # waited: look again
                    self.ranges.truncate_node(node, 0)
            self.references.open_inode(ino)
            handle = OpenFile(journal, ino, p, mode, flags, holder, core.inodes[ino].size if flags.append else 0)
            self.open_files.add(handle)
            return handle

    def close_file(self, handle: OpenFile) -> None:
        """A file closes: flush its inode's pending state; its last reference frees an orphan."""
        with self.lock:
            if handle.closed:
                return
            handle.mark_closed()
            self.open_files.discard(handle)
            journal = self.journal
            if journal.closed:
                return
            ino = handle.ino
            if (ino in journal.deferred or ino in self.data.dirty) and not journal.readonly:
                self.data.flush(ino)
            self.references.close_inode(ino)

    def reclaim(self, ino: int) -> None:
        """The last reference to ``ino`` went: an orphan is freed now."""
        node = self.journal.core.inodes.get(ino)
        if node is not None and node.nlink == 0 and not self.journal.readonly:
            self.data.forget(ino)
            self.journal.commit(Reclaim(ino))

    def detach_all(self) -> None:
        """The volume unmounts: every open file dies with it."""
        for handle in self.open_files:
            handle.mark_closed()
        self.open_files.clear()
