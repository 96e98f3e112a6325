"""The namespace commands: ``ls``, ``mkdir``, ``rm``, ``mv``, ``stat``."""

from __future__ import annotations

import argparse
import errno
import os
import posixpath
import stat as stat_mode
import time
from typing import TYPE_CHECKING, Any

from daxfs.adapters.poolpaths import is_dir, open_pool, same_file, split_pool_path, target_in_dir

if TYPE_CHECKING:
    from daxfs._types import Stat

__all__ = ["cmd_ls", "cmd_mkdir", "cmd_rm", "cmd_mv", "cmd_stat"]

EXIT_OK = 0


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
    rows = [(stat_mode.filemode(st.st_mode), str(st.st_nlink), str(st.st_size),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime_ns // 1_000_000_000)), name)
            for name, st in entries if st is not None]
    link_width = max((len(row[1]) for row in rows), default=1)
    size_width = max((len(row[2]) for row in rows), default=1)
    for mode, links, size, mtime, name in rows:
        print(f"{mode} {links:>{link_width}} {size:>{size_width}} {mtime} {name}")
    return EXIT_OK


def cmd_mkdir(args: argparse.Namespace) -> int:
    pool, path = split_pool_path(args.target)
    with open_pool(pool) as vol:
        vol.mkdir(path, parents=args.parents, exist_ok=args.parents)
    return EXIT_OK


def _remove_tree(vol: Any, path: str) -> None:
    for name in vol.listdir(path):
        child = posixpath.join(path, name)
        if vol.stat(child).is_dir():
            _remove_tree(vol, child)
        else:
            vol.unlink(child)
    vol.rmdir(path)


def cmd_rm(args: argparse.Namespace) -> int:
    pool, path = split_pool_path(args.target)
    with open_pool(pool) as vol:
        if args.recursive and vol.stat(path).is_dir():
            if not [part for part in path.split("/") if part not in ("", ".")]:
                raise OSError(errno.EPERM, "refusing to remove the root directory", args.target)
            _remove_tree(vol, path)
        else:
            vol.unlink(path)
    return EXIT_OK


def cmd_mv(args: argparse.Namespace) -> int:
    pool, source = split_pool_path(args.source)
    destination = args.destination
    if destination.startswith(pool + ":"):
        destination = destination[len(pool) + 1:] or "/"
    else:
        other_pool, other_path = split_pool_path(destination)
        if other_pool != destination and os.path.exists(other_pool):
            if not same_file(pool, other_pool):
                raise OSError(errno.EXDEV, f"cannot move between pools (to {destination})", args.source)
            destination = other_path
    with open_pool(pool) as vol:
        destination = target_in_dir(vol, destination, posixpath.basename(source.rstrip("/")))
        vol.rename(source, destination)
    return EXIT_OK


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
