"""The namespace commands: ``ls``, ``mkdir``, ``rmdir``, ``rm``, ``mv``, ``stat``.

A command given several paths checks them all before it changes anything (a
typo in one changes nothing), then acts on them in order.  ``mv`` inside one
pool is a rename; into, out of or between pools it copies the file (whole or
not at all, see ``transfer.replacing``) and then removes the source, as ``mv``
does across file systems.  A DST without ``POOL:`` is a local path, in ``mv``
as in ``cp``.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import posixpath
import stat as stat_mode
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from daxfs.adapters.poolpaths import is_dir, open_pool, pool_spec, same_file, split_pool_path, target_in_dir
from daxfs.adapters.transfer import copy

if TYPE_CHECKING:
    from daxfs._types import Stat

__all__ = ["cmd_ls", "cmd_mkdir", "cmd_rmdir", "cmd_rm", "cmd_mv", "cmd_stat", "human_size", "open_pools"]

EXIT_OK = 0


@contextmanager
def open_pools(specs: list[str], *, readonly: bool = False) -> Iterator[list[tuple[str, Any, str]]]:
    """``(spec, volume, path)`` for each ``POOL:PATH``, each pool opened once however it is spelled."""
    with ExitStack() as stack:
        opened: dict[object, Any] = {}
        items = []
        for spec in specs:
            pool, path = split_pool_path(spec)
            try:
                info = os.stat(pool)
                key: object = (info.st_dev, info.st_ino)
            except OSError:
                key = pool              # opening it reports what is wrong
            if key not in opened:
                opened[key] = stack.enter_context(open_pool(pool, readonly=readonly))
            items.append((spec, opened[key], path))
        yield items


def _key(path: str) -> str:
    """A path inside a volume in one spelling (relative paths start at the root)."""
    return posixpath.normpath("/" + path.lstrip("/"))


def _is_root(path: str) -> bool:
    return _key(path) == "/"


def _under(path: str, trees: list[str]) -> bool:
    key = _key(path)
    return any(key == tree or key.startswith(tree.rstrip("/") + "/") for tree in trees)


# ---------------------------------------------------------------- ls, stat


def human_size(n: int) -> str:
    """A size as ``ls -h`` writes it: ``999``, ``1.5K``, ``12M`` (powers of 1024, rounded up)."""
    if n < 1024:
        return str(n)
    value = float(n)
    for unit in "KMGTPE":
        value /= 1024
        shown = math.ceil(value * 10) / 10
        if shown >= 10:
            shown = math.ceil(value)
        if shown < 1024 or unit == "E":
            break
    return f"{shown:.1f}{unit}" if shown < 10 else f"{int(shown)}{unit}"


def cmd_ls(args: argparse.Namespace) -> int:
    pool, path = split_pool_path(args.target)
    with open_pool(pool, readonly=True) as vol:
        if is_dir(vol, path):
            names = sorted(vol.listdir(path))
            entries = [(name, vol.stat(posixpath.join(path, name)) if args.long else None) for name in names]
        else:
            # ls of a file lists just that file, as coreutils does; stat raises ENOENT if it is missing.
            entries = [(path, vol.stat(path))]
    if not args.long:
        for name, _ in entries:
            print(name)
        return EXIT_OK
    size_of = human_size if args.human else str
    rows = [(stat_mode.filemode(st.st_mode), str(st.st_nlink), size_of(st.st_size),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime_ns // 1_000_000_000)), name)
            for name, st in entries if st is not None]
    link_width = max((len(row[1]) for row in rows), default=1)
    size_width = max((len(row[2]) for row in rows), default=1)
    for mode, links, size, mtime, name in rows:
        print(f"{mode} {links:>{link_width}} {size:>{size_width}} {mtime} {name}")
    return EXIT_OK


def _format_time(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    local = time.localtime(seconds)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', local)}.{fraction:09d} {time.strftime('%z', local)}"


def _file_type(mode: int) -> str:
    if stat_mode.S_ISDIR(mode):
        return "directory"
    if stat_mode.S_ISREG(mode):
        return "regular file"
    if stat_mode.S_ISLNK(mode):
        return "symbolic link"
    return "other"


def cmd_stat(args: argparse.Namespace) -> int:
    pool, path = split_pool_path(args.target)
    with open_pool(pool, readonly=True) as vol:
        st = vol.stat(path)
        extents = []
        if st.is_file():
            with vol.open(path, "rb", buffering=0) as f:
                extents = f.extents()
    _print_stat(path, st)
    if st.is_file():
        print(f"Extents: {len(extents)}")
        for extent in extents:
            flags = ",".join(sorted(extent.flags)) or "-"
            print(f"  file {extent.file_offset:>14} +{extent.length:<14} pool {extent.pool_offset:#014x}  {flags}")
    return EXIT_OK


def _print_stat(path: str, st: Stat) -> None:
    print(f"  File: {path}")
    print(f"  Type: {_file_type(st.st_mode)}")
    print(f"  Size: {st.st_size:<14} Blocks: {st.st_blocks:<10} IO Block: {st.st_blksize}")
    print(f" Inode: {st.st_ino:<14} Links: {st.st_nlink}")
    print(f"Access: ({stat_mode.S_IMODE(st.st_mode):04o}/{stat_mode.filemode(st.st_mode)})  "
          f"Uid: {st.st_uid}  Gid: {st.st_gid}")
    print(f"Access: {_format_time(st.st_atime_ns)}")
    print(f"Modify: {_format_time(st.st_mtime_ns)}")
    print(f"Change: {_format_time(st.st_ctime_ns)}")


# ---------------------------------------------------------------- mkdir, rmdir, rm


def cmd_mkdir(args: argparse.Namespace) -> int:
    with open_pools(args.targets) as items:
        todo = []
        for _spec, vol, path in items:
            if vol.exists(path):
                if args.parents and is_dir(vol, path):
                    continue
                raise FileExistsError(errno.EEXIST, "already exists" + (
                    " (and is not a directory)" if args.parents else ""), path)
            if args.parents:
                _check_ancestors(vol, path)
            else:
                parent = posixpath.dirname(_key(path))
                if not vol.exists(parent):
                    raise FileNotFoundError(errno.ENOENT, f"no directory {parent} to make it in "
                                            f"(mkdir -p makes parents)", path)
                if not is_dir(vol, parent):
                    raise NotADirectoryError(errno.ENOTDIR, f"{parent} is not a directory", path)
            todo.append((vol, path))
        for vol, path in todo:
            vol.mkdir(path, parents=args.parents, exist_ok=args.parents)
    return EXIT_OK


def _check_ancestors(vol: Any, path: str) -> None:
    """ENOTDIR when a part of ``path`` that exists is not a directory (mkdir -p could not go on)."""
    parts = [part for part in _key(path).split("/") if part]
    for depth in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:depth])
        if not vol.exists(ancestor):
            return
        if not is_dir(vol, ancestor):
            raise NotADirectoryError(errno.ENOTDIR, f"{ancestor} is not a directory", path)


def cmd_rmdir(args: argparse.Namespace) -> int:
    with open_pools(args.targets) as items:
        going: list[str] = []
        for _spec, vol, path in items:
            st = vol.stat(path)
            if not st.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "is not a directory (rm removes files)", path)
            if _is_root(path):
                raise OSError(errno.EBUSY, "cannot remove the root directory", path)
            # empty once the directories named before it (rmdir a/b a) are gone
            left = [name for name in vol.listdir(path) if not _under(posixpath.join(path, name), going)]
            if left:
                raise OSError(errno.ENOTEMPTY, f"directory not empty ({len(left)} entries; rm -r "
                              f"removes a tree)", path)
            going.append(_key(path))
        for _spec, vol, path in items:
            vol.rmdir(path)
    return EXIT_OK


def _remove_tree(vol: Any, path: str) -> None:
    for name in vol.listdir(path):
        child = posixpath.join(path, name)
        if vol.stat(child).is_dir():
            _remove_tree(vol, child)
        else:
            vol.unlink(child)
    vol.rmdir(path)


# with -f these say "nothing there to remove", as rm -f takes them
_GONE = (errno.ENOENT, errno.ENOTDIR)


def cmd_rm(args: argparse.Namespace) -> int:
    with open_pools(args.targets) as items:
        todo = []
        for _spec, vol, path in items:
            try:
                st = vol.stat(path)
            except OSError as error:
                if args.force and error.errno in _GONE:
                    continue
                raise
            if st.is_dir():
                if not args.recursive:
                    raise IsADirectoryError(errno.EISDIR, "is a directory (rm -r removes it and all "
                                            "in it; rmdir an empty one)", path)
                if _is_root(path):
                    raise OSError(errno.EPERM, "refusing to remove the root directory", path)
            todo.append((vol, path, st.is_dir()))
        removed: list[str] = []
        for vol, path, tree in todo:
            if _under(path, removed):
                continue                # inside a tree removed before it (rm -r d d/x)
            try:
                if tree:
                    _remove_tree(vol, path)
                else:
                    vol.unlink(path)
            except OSError as error:
                if not (args.force and error.errno in _GONE):
                    raise
            if tree:
                removed.append(_key(path))
    return EXIT_OK


# ---------------------------------------------------------------- mv


def cmd_mv(args: argparse.Namespace) -> int:
    source, destination = pool_spec(args.source), pool_spec(args.destination)
    if source is None and destination is None:
        raise OSError(errno.EINVAL, "neither SRC nor DST is POOL:PATH: daxfs mv moves inside, "
                      "between, into or out of pools", args.destination)
    if source is not None and destination is not None and (
            source[0] == destination[0] or same_file(source[0], destination[0])):
        with open_pool(source[0]) as vol:
            path = target_in_dir(vol, destination[1], posixpath.basename(source[1].rstrip("/")))
            vol.rename(source[1], path)
        return EXIT_OK
    # Across a pool's edge: copy the file, then remove the source (directories stay put).
    where = "between pools" if source and destination else ("out of a pool" if source else "into a pool")
    refused = f"cannot move a directory {where} (mv moves directories only inside one pool)"
    if source is None:
        if os.path.isdir(args.source):
            raise IsADirectoryError(errno.EISDIR, refused, args.source)
        copy(args.source, args.destination)
        os.unlink(args.source)
        return EXIT_OK
    # Opened read-write first: a source that cannot be removed (a pool another process
    # writes) is refused before anything is copied.
    with open_pool(source[0]) as vol:
        if vol.stat(source[1]).is_dir():
            raise IsADirectoryError(errno.EISDIR, refused, source[1])
        copy(args.source, args.destination)
        vol.unlink(source[1])
    return EXIT_OK
