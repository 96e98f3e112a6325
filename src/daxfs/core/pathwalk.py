"""Walking a path to its inode: ``Core.resolve`` (this module's ``resolve_path``).

Components come from ``namespace.split_path``; symlinks on the way are followed as
Linux follows them, at most ``MAX_SYMLINKS`` in one walk.  It only reads the state.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from daxfs.core.namespace import check_name, split_path
from daxfs.errors import fs_error

if TYPE_CHECKING:
    from daxfs.core.state import Core, Inode

ROOT_INO = 1
#: Symlinks followed in one path walk before ELOOP (Linux's MAXSYMLINKS).
MAX_SYMLINKS = 40


def resolve_path(core: "Core", path: str, follow: bool | None = None,
                 searched: list["Inode"] | None = None) -> tuple[int, str | None, int | None, bool]:
    """``(parent ino, last name, ino or None, trailing slash)`` for a path.

    The last name is None when the path ends in ``/``, ``.`` or ``..``
    (it then names an existing directory, given as ``ino``).
    Raises ENOENT/ENOTDIR for a missing or non-directory prefix.

    Symlinks on the way are followed (an absolute target starts again at the volume's
    root).  One in the last place is followed as Linux does: with ``follow`` True (stat,
    open), with False only when the path ends in ``/`` (lstat), with None never (what
    makes or removes the name: unlink, rmdir, rename, link, mkdir).  Followed, the
    result names what the link points at (a dangling link gives its target's parent and
    name with ino None, which is where O_CREAT creates).  More than MAX_SYMLINKS links
    in one walk is ELOOP.  ``searched`` collects every directory looked in, for the
    permission check.
    """
    components, trailing = split_path(path)
    inodes = core.inodes
    cur = inodes[ROOT_INO]
    links = 0
    i = 0
    last = len(components) - 1
    while i <= last:
        name = components[i]
        entries = cur.entries
        if entries is None:
            raise fs_error(errno.ENOTDIR, path)
        if searched is not None:
            searched.append(cur)
        if name == ".":
            if i == last:
                return cur.ino, None, cur.ino, True
            i += 1
            continue
        if name == "..":
            parent = inodes[cur.parent]
            if i == last:
                return parent.ino, None, parent.ino, True
            cur = parent
            i += 1
            continue
        if len(name) > 63:
            check_name(name, path)
        child = entries.get(name)
        if i == last:
            if child is None or not (follow or trailing and follow is not None) \
                    or inodes[child].target is None:
                return cur.ino, name, child, trailing
            node = inodes[child]
        elif child is None:
            raise fs_error(errno.ENOENT, path)
        else:
            node = inodes[child]
            if node.target is None:
                cur = node
                i += 1
                continue
        # a symlink to follow: its target's components take its place
        links += 1
        if links > MAX_SYMLINKS:
            raise fs_error(errno.ELOOP, path)
        target = node.target
        more, slash = split_path(target)    # type: ignore[arg-type]
        if target.startswith("/"):          # type: ignore[union-attr]
            cur = inodes[ROOT_INO]
        if i == last:
            trailing = trailing or slash
        components = more + components[i + 1:]
        i = 0
        last = len(components) - 1
    return cur.ino if cur.ino == ROOT_INO else cur.parent, None, cur.ino, True


__all__ = ["resolve_path", "ROOT_INO", "MAX_SYMLINKS"]
