"""Permission checks for callers who are not the pool's owner (the arbiter's clients).

Embedded use checks nothing: whoever can open the pool file can read all of it.
The arbiter checks every request against the peer's credentials (from
SO_PEERCRED) with the stored owner, group and mode bits, as Linux's
``generic_permission`` does: root passes (except exec of a file with no x
bit, which daxfs never does); otherwise the owner bits apply to the owner,
the group bits to a member of the group, the other bits to everyone else.
Walking a path needs search (x) on every directory on the way; making or
removing a name needs write and search on its directory, and in a sticky
directory (mode 01000) removing or renaming another user's entry needs
owning the entry or the directory.
"""

from __future__ import annotations

import errno
import stat as st
from typing import NamedTuple

from daxfs.core import Core, Inode
from daxfs.errors import fs_error

R, W, X = 4, 2, 1


class Credentials(NamedTuple):
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()

    @property
    def root(self) -> bool:
        return self.uid == 0

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups


def allowed(node: Inode, creds: Credentials, want: int) -> bool:
    """Whether ``creds`` may ``want`` (R|W|X bits) on ``node``."""
    if creds.root:
        return True
    mode = node.mode
    if creds.uid == node.uid:
        bits = (mode >> 6) & 7
    elif creds.in_group(node.gid):
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return bits & want == want


def require(node: Inode, creds: Credentials, want: int, path: str) -> None:
    if not allowed(node, creds, want):
        raise fs_error(errno.EACCES, path)


def walk(core: Core, path: str, creds: Credentials, follow: bool | None = None) -> None:
    """EACCES unless every directory the path goes through may be searched (those a symlink
    on the way leads through too; the last one as ``Core.resolve`` follows it)."""
    if creds.root:
        return
    searched: list[Inode] = []
    try:
        core.resolve(path, follow, searched)
    except OSError:
        pass                    # ENOENT, ENOTDIR, ELOOP are the operation's to raise
    for node in searched:
        require(node, creds, X, path)


def parent_of(core: Core, path: str) -> Inode | None:
    parent, _name, _ino, _trailing = core.resolve(path)
    return core.inodes.get(parent)


def may_change_name(core: Core, path: str, creds: Credentials) -> None:
    """Making or removing the last name of ``path``: write and search on its directory, and
    the sticky rule for an existing entry."""
    walk(core, path, creds)
    if creds.root:
        return
    try:
        parent_ino, _name, ino, _trailing = core.resolve(path)
    except OSError:
        return
    parent = core.inodes[parent_ino]
    require(parent, creds, W | X, path)
    if ino is not None and parent.mode & st.S_ISVTX:
        node = core.inodes[ino]
        if creds.uid not in (node.uid, parent.uid):
            raise fs_error(errno.EPERM, path)


def node_of(core: Core, path: str, follow: bool | None = True) -> Inode | None:
    try:
        _parent, _name, ino, _trailing = core.resolve(path, follow)
    except OSError:
        return None
    return None if ino is None else core.inodes[ino]


def may_open(core: Core, path: str, creds: Credentials, *, read: bool, write: bool, create: bool) -> None:
    if creds.root:
        return                  # every check below passes for root: no walk to make
    walk(core, path, creds, True)
    node = node_of(core, path)
    if node is None:
        if create:
            may_change_name(core, path, creds)
        return
    want = (R if read else 0) | (W if write else 0)
    if want:
        require(node, creds, want, path)


def may_setattr(core: Core, path: str, creds: Credentials, *, mode: bool = False, owner: tuple[int | None, int | None] = (None, None),
                times: bool = False, touch: bool = False) -> None:
    """chmod and explicit times: the owner or root; chown of the uid: root; of the gid: the
    owner, to a group it is in; utime to now: the owner or anyone who may write."""
    walk(core, path, creds, True)
    node = node_of(core, path)
    if node is None or creds.root:
        return
    uid, gid = owner
    if uid is not None and uid != node.uid:
        raise fs_error(errno.EPERM, path)
    if gid is not None and gid != node.gid and (creds.uid != node.uid or not creds.in_group(gid)):
        raise fs_error(errno.EPERM, path)
    if (mode or times or uid is not None or gid is not None) and creds.uid != node.uid:
        raise fs_error(errno.EPERM, path)
    if touch and creds.uid != node.uid and not allowed(node, creds, W):
        raise fs_error(errno.EACCES, path)


def may_list(core: Core, path: str, creds: Credentials) -> None:
    walk(core, path, creds, True)
    node = node_of(core, path)
    if node is not None and node.entries is not None:
        require(node, creds, R, path)


def pool_access(mode: int, uid: int, gid: int, creds: Credentials) -> int:
    """What ``creds`` may do with the pool file itself: R|W bits of its mode."""
    if creds.root:
        return R | W
    if creds.uid == uid:
        return (mode >> 6) & (R | W)
    if creds.in_group(gid):
        return (mode >> 3) & (R | W)
    return mode & (R | W)
