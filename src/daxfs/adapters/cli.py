"""The ``daxfs`` command line: format, inspect and copy files in and out of a pool.

Every command maps onto the public volume API; this module parses arguments
and turns errors into one line on stderr.  How ``POOL:PATH`` and sizes are
read is in ``poolpaths``; the commands that move bytes are in ``transfer``.
"""

from __future__ import annotations

import argparse
import errno
import os
import posixpath
import stat as stat_mode
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

import daxfs
from daxfs.adapters.poolpaths import (describe_error, format_size, is_dir, open_pool, parse_length, parse_offset,
                                      parse_size, same_file, split_pool_path, target_in_dir)
from daxfs.adapters.transfer import COPY_CHUNK, cmd_cat, cmd_cp, cmd_get, cmd_put
from daxfs.adapters.client import Client
from daxfs.adapters.mediacmds import add_commands as add_media_commands, poisoned_lines
from daxfs.adapters.fusecmds import add_fuse_commands
from daxfs.volume import repair

if TYPE_CHECKING:
    from daxfs._types import Stat

__all__ = ["main", "parse_size", "parse_offset", "split_pool_path", "format_size", "COPY_CHUNK"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141   # what a shell reports for a writer killed by SIGPIPE

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


# ---------------------------------------------------------------- commands


def cmd_mkfs(args: argparse.Namespace) -> int:
    with daxfs.mkfs(args.pool, args.size, block_size=args.block_size, force=args.force) as vol:
        info = vol.info()
    print(f"formatted {args.pool}: {format_size(info['size'])} pool, "
          f"{format_size(info['data_size'])} for data, block size {info['block_size']}, "
          f"uuid {info['uuid']}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    with open_pool(args.pool, readonly=True) as vol:
        info = vol.info()
    width = max(map(len, info), default=0)
    for key, value in info.items():
        shown = f"{value} ({format_size(value)})" if _is_byte_count(key, value) else value
        print(f"{key + ':':<{width + 1}} {shown}")
    return EXIT_OK


def _is_byte_count(key: str, value: object) -> bool:
    # block_size is a unit, not an amount; a human form of it would only add noise.
    return isinstance(value, int) and not isinstance(value, bool) and key != "block_size" and (
        key == "size" or key.endswith("_size") or key.endswith("_offset"))


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


def _remove_tree(vol: daxfs.Volume, path: str) -> None:
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
            with vol.open(path, "rb") as f:
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


def cmd_df(args: argparse.Namespace) -> int:
    with open_pool(args.pool, readonly=True) as vol:
        fs = vol.statfs()
    use = f"{100 * fs.used // fs.size}%" if fs.size else "-"
    # Shared bytes are part of Used (counted once however many files share them).
    header = ("Pool", "Size", "Used", "Shared", "Free", "Busy", "Bad", "Files", "Use%")
    row = (args.pool, format_size(fs.size), format_size(fs.used), format_size(fs.shared),
           format_size(fs.free), format_size(fs.busy), format_size(fs.bad), str(fs.files), use)
    widths = [max(len(h), len(v)) for h, v in zip(header, row)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return EXIT_OK


def cmd_pins(args: argparse.Namespace) -> int:
    """List what the pool's writer holds (an arbiter: every client's): pins, mappings, leases, busy space."""
    with open_pool(args.pool, readonly=True) as vol:
        if isinstance(vol, Client):
            refs = vol.pins()
            status = {"pid": vol.info_["server_pid"], "total": len(refs), "refs": refs,
                      "busy": vol.statfs().busy, "served": True}
        else:
            status = vol.published()
    if status is None:
        print("no process holds the pool read-write: nothing is pinned or busy")
        return EXIT_OK
    refs = status["refs"]
    who = "served by the arbiter, pid" if status.get("served") else "held by pid"
    print(f"{who} {status['pid']}: {status['total']} reference(s), busy {format_size(status['busy'])}")
    if refs:
        header = ("HOLDER", "PID", "UID", "KIND", "INO", "OFFSET", "LENGTH", "SINCE", "PATH")
        rows = [(r.holder, "-" if r.pid is None else str(r.pid), "-" if r.uid is None else str(r.uid), r.kind,
                 str(r.ino), str(r.offset), format_size(r.length), time.strftime("%H:%M:%S", time.localtime(r.since)),
                 r.path if r.path is not None else "(unlinked)")
                for r in refs]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        for row in [header, *rows]:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    if status["total"] > len(refs):
        print(f"... and {status['total'] - len(refs)} more")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the arbiter in the foreground until SIGTERM/SIGINT stop it."""
    from daxfs.adapters.server import serve
    from daxfs.adapters.fuse_mount import parse_options
    return serve(args.pool, socket_path=args.socket, force=args.force, timeout=args.timeout,
                 policy=args.policy, lease_break_s=args.lease_break_s, mount=args.mount,
                 mount_options=parse_options(args.options))


def cmd_fsck(args: argparse.Namespace) -> int:
    if args.repair:
        try:
            actions = repair(args.pool)
        except OSError as error:
            if error.filename is None:
                error.filename = args.pool
            raise
        for action in actions:
            print(f"repaired: {action}")
    with warnings.catch_warnings():
        # A volume read-only because of a bad log record is a problem fsck lists, not a warning.
        warnings.simplefilter("ignore", daxfs.DamagedVolumeWarning)
        vol = open_pool(args.pool, readonly=True)
    with vol:
        problems = ([vol.damaged] if vol.damaged else []) + vol.fsck()
        # data lost to bad memory is a finding too (through the arbiter: from a mount of our own)
        problems += poisoned_lines(args.pool if isinstance(vol, Client) else vol)
    for problem in problems:
        print(problem)
    if problems:
        return EXIT_ERROR
    print("clean")
    return EXIT_OK


# errnos with which a clone cannot be made although a byte copy could: --reflink=auto falls
# back on them (as cp does when FICLONE fails), any other error is the copy's own.
def cmd_owners(args: argparse.Namespace) -> int:
    """Who owns pool bytes [OFFSET, +LENGTH): one line per owner, from the reverse map."""
    with open_pool(args.pool, readonly=True) as vol:
        owners = vol.owners(args.offset, args.length)
    if not owners:
        print("no owner")
        return EXIT_OK
    rows = [(str(o.ino), str(o.file_offset), str(o.length), f"{o.pool_offset:#x}",
             o.path if o.path is not None else "(unlinked)") for o in owners]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join([*(v.rjust(w) for v, w in zip(row, widths)), row[4]]))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from daxfs.adapters.demo import run_demo
    return run_demo(sys.stdout)


# ---------------------------------------------------------------- parsing


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one ``daxfs: ...`` line, like every other daxfs error."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("daxfs").strip()
        where = f"{command}: " if command else ""
        hint = f"daxfs {command} --help" if command else "daxfs --help"
        self.exit(EXIT_USAGE, f"daxfs: {where}{message}; try '{hint}'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="daxfs", description="A user-space DAX file system on a memory pool.",
                     epilog="POOL:PATH names a path inside a pool, e.g. /dev/shm/p.pool:/a/b; "
                            "a bare POOL means its root directory.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("mkfs", cmd_mkfs, "format a pool (a new file, or an existing file or device)")
    sub.add_argument("pool", metavar="POOL")
    sub.add_argument("--size", type=parse_size, required=True,
                     help="pool size: bytes, or with a suffix (64M, 1G, 1GiB; KB/MB/GB are powers of 1000)")
    sub.add_argument("--block-size", type=parse_size, default=4096, metavar="N")
    sub.add_argument("--force", action="store_true", help="format over an existing volume")

    sub = command("info", cmd_info, "show a pool's superblock: version, layout, generation")
    sub.add_argument("pool", metavar="POOL")

    sub = command("ls", cmd_ls, "list a directory")
    sub.add_argument("target", metavar="POOL[:PATH]")
    sub.add_argument("-l", dest="long", action="store_true", help="long listing: mode, links, size, mtime")

    sub = command("mkdir", cmd_mkdir, "make a directory")
    sub.add_argument("target", metavar="POOL:PATH")
    sub.add_argument("-p", "--parents", action="store_true", help="make parents as needed; no error if it exists")

    sub = command("put", cmd_put, "copy a local file into a pool")
    sub.add_argument("local", metavar="LOCAL")
    sub.add_argument("target", metavar="POOL:PATH")

    sub = command("get", cmd_get, "copy a file out of a pool")
    sub.add_argument("source", metavar="POOL:PATH")
    sub.add_argument("local", metavar="LOCAL")

    sub = command("cat", cmd_cat, "write a file's bytes to stdout")
    sub.add_argument("source", metavar="POOL:PATH")

    sub = command("rm", cmd_rm, "remove a file (or, with -r, a directory tree)")
    sub.add_argument("target", metavar="POOL:PATH")
    sub.add_argument("-r", "--recursive", action="store_true")

    sub = command("mv", cmd_mv, "rename within a pool; DST may omit the POOL: prefix")
    sub.add_argument("source", metavar="POOL:SRC")
    sub.add_argument("destination", metavar="DST")

    sub = command("stat", cmd_stat, "show a file's metadata and extents")
    sub.add_argument("target", metavar="POOL:PATH")

    sub = command("df", cmd_df, "show space: size, used, shared, free, busy, bad, files")
    sub.add_argument("pool", metavar="POOL")

    sub = command("pins", cmd_pins, "list the pins, mappings and leases the pool's writer holds, and busy space")
    sub.add_argument("pool", metavar="POOL")

    sub = command("fsck", cmd_fsck, "check a pool's invariants and list poisoned files; exit 1 if there are "
                                    "problems")
    sub.add_argument("pool", metavar="POOL")
    sub.add_argument("--repair", action="store_true",
                     help="first make a pool that mounts read-only because of a bad log record writable "
                          "again: keep everything before the record, discard it and the records after it "
                          "(and forget bad metadata memory its badblocks list no longer lists: repaired)")

    sub = command("cp", cmd_cp, "copy a file inside a pool (sharing its blocks), between pools, "
                                "or in or out of a pool")
    sub.add_argument("source", metavar="SRC", help="POOL:PATH, or a local file")
    sub.add_argument("destination", metavar="DST",
                     help="POOL:PATH, or a local path; an existing directory keeps SRC's name")
    sub.add_argument("--reflink", choices=("auto", "always", "never"), default="auto",
                     help="inside one pool: auto (default) shares the blocks and copies bytes only "
                          "if that is impossible, always fails instead, never copies bytes "
                          "(always is an error when SRC and DST are not in one pool)")

    sub = command("owners", cmd_owners, "list the files whose data lives in pool bytes "
                                        "[OFFSET, +LENGTH): ino, file offset, length, pool offset, path")
    sub.add_argument("pool", metavar="POOL")
    sub.add_argument("offset", metavar="OFFSET", type=parse_offset,
                     help="pool byte offset: bytes, a suffix (4K, 1M) or hexadecimal (0x1000)")
    sub.add_argument("length", metavar="LENGTH", type=parse_length, nargs="?", default=1,
                     help="bytes from OFFSET (default 1), written like OFFSET")

    sub = command("serve", cmd_serve, "be the pool's one writer and serve other processes "
                                      "(daxfs.connect, and every daxfs command on the pool)")
    sub.add_argument("pool", metavar="POOL")
    sub.add_argument("--socket", metavar="PATH", default=None,
                     help="where to listen (default: POOL.sock next to the pool; /run/daxfs/NAME.sock "
                          "for a device)")
    sub.add_argument("--policy", choices=("defer", "wait", "break", "refuse"), default="defer",
                     help="pin policy for changes that meet a pinned or mapped range (default defer)")
    sub.add_argument("--lease-break-s", type=float, default=45.0, metavar="S",
                     help="how long a lease holder has to let go before it is revoked (default 45)")
    sub.add_argument("--force", action="store_true",
                     help="on SIGTERM/SIGINT, stop even while clients hold references: break leases, "
                          "revoke mappings, wait for pins up to --timeout")
    sub.add_argument("--timeout", type=float, default=None, metavar="S",
                     help="with --force, how long to wait for pins to be released")
    sub.add_argument("--mount", metavar="DIR", default=None,
                     help="also mount the volume at DIR (FUSE) while serving; unmounting it stops the server")
    sub.add_argument("-o", dest="options", metavar="OPTS", default=None, help="mount options (see daxfs mount)")

    add_media_commands(command)
    add_fuse_commands(command)

    command("demo", cmd_demo, "a timed tour on a scratch pool")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one daxfs command; returns the exit status instead of exiting."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return handler(args)
    except SystemExit as exit_request:
        # argparse exits for --help and usage errors; callers of main() want a status.
        code = exit_request.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_ERROR)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`daxfs cat ... | head`); send what Python would still flush
        # at exit to /dev/null so no second error is printed.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as error:
        print(f"daxfs: {describe_error(error)}", file=sys.stderr)
        return EXIT_ERROR


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """A warning (a pool mounted read-only because it is damaged) as one line, like errors."""
    print(f"daxfs: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        # stdout is not a real descriptor (captured in tests): nothing will be flushed to a pipe.
        pass
