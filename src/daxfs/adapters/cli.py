"""The ``daxfs`` command line: format, inspect and copy files in and out of a pool.

Every command maps onto the public volume API; this module parses arguments
and turns errors into one line on stderr.  How ``POOL:PATH`` and sizes are
read is in ``poolpaths``; the commands that move bytes are in ``transfer``,
those on names (ls, mkdir, rm, mv, ...) in ``namespacecmds``.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any, NoReturn

import daxfs
from daxfs.adapters.client import Client
from daxfs.adapters.mediacmds import add_commands as add_media_commands, poisoned_lines
from daxfs.adapters.fusecmds import add_fuse_commands, add_serve_options
from daxfs.adapters.namespacecmds import cmd_ls, cmd_mkdir, cmd_mv, cmd_rm, cmd_rmdir, cmd_stat
from daxfs.adapters.poolpaths import (describe_error, format_size, open_pool, parse_length, parse_offset,
                                      parse_size, split_pool_path)
from daxfs.adapters.transfer import COPY_CHUNK, cmd_cat, cmd_cp, cmd_get, cmd_put
from daxfs.adapters.spacecmds import add_commands as add_space_commands
from daxfs.volume import repair
from daxfs.volume.mount import describe_openers, openers

__all__ = ["main", "build_parser", "parse_size", "parse_offset", "split_pool_path", "format_size", "COPY_CHUNK"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141   # what a shell reports for a writer killed by SIGPIPE


def _version() -> str:
    try:
        return metadata.version("daxfs")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _pid(pid: int) -> str:
    return f"process {pid}" + (" (this process)" if pid == os.getpid() else "")


# ---------------------------------------------------------------- commands


def cmd_mkfs(args: argparse.Namespace) -> int:
    size, block_size = args.size, args.block_size
    if size <= 0:
        raise OSError(errno.EINVAL, "--size must be more than 0 bytes", args.pool)
    # The pool is whole blocks; a tail shorter than one would only be wasted.
    rounded = size - size % block_size if block_size > 0 else size
    if rounded == 0:
        raise OSError(errno.EINVAL, f"--size {size} is less than one block ({block_size} bytes)", args.pool)
    try:
        vol = daxfs.mkfs(args.pool, rounded, block_size=block_size, force=args.force,
                         sparse=args.sparse)
    except OSError as error:
        if error.strerror:                      # the Python API's words, in the command line's
            error.strerror = error.strerror.replace("force=True", "--force")
        raise
    with vol:
        info = vol.info()
    print(f"formatted {args.pool}: {format_size(info['size'])} pool, "
          f"{format_size(info['data_size'])} for data, block size {info['block_size']}, "
          f"uuid {info['uuid']}")
    if rounded != size:
        print(f"--size {size} was rounded down to {rounded} bytes: a whole number of "
              f"{block_size}-byte blocks")
    return EXIT_OK


# What ``daxfs info`` shows: the pool's own properties, not those of the command's handle on it
# (which is read-only, with its own policy and durability).
_INFO_KEYS = ("uuid", "version", "size", "block_size", "data_size", "free", "used", "shared", "busy", "bad",
              "files", "data_offset", "log_size", "log_used", "checkpoint_size", "generation", "sync_mode")
_BYTE_KEYS = frozenset({"size", "data_size", "free", "used", "shared", "busy", "bad", "data_offset",
                        "log_size", "log_used", "checkpoint_size"})


def cmd_info(args: argparse.Namespace) -> int:
    with open_pool(args.pool, readonly=True) as vol:
        info = vol.info()
        fs = vol.statfs()
        served = vol.info_["server_pid"] if isinstance(vol, Client) else None
    known = {**info, "free": fs.free, "used": fs.used, "shared": fs.shared, "busy": fs.busy, "bad": fs.bad,
             "files": fs.files}
    fields: dict[str, Any] = {"pool": args.pool}
    fields.update((key, known[key]) for key in _INFO_KEYS if key in known)
    if served is not None:
        fields["writer"] = f"the arbiter (daxfs serve), {_pid(served)}"
    else:
        writers = [pid for pid, read_write in openers(args.pool) if read_write]
        fields["writer"] = ", ".join(map(_pid, writers)) or "none"
    if info.get("damaged"):
        fields["damaged"] = info["damaged"]
    width = max(map(len, fields))
    for key, value in fields.items():
        shown = f"{value} ({format_size(value)})" if key in _BYTE_KEYS and value >= 1024 else value
        print(f"{key + ':':<{width + 1}} {shown}")
    return EXIT_OK


def cmd_df(args: argparse.Namespace) -> int:
    with open_pool(args.pool, readonly=True) as vol:
        fs = vol.statfs()
    use = f"{100 * fs.used // fs.size}%" if fs.size else "-"
    # Shared bytes are part of Used (counted once however many files share them).  Resident:
    # the pool's memory (metadata too) the medium holds now: less than Size + metadata in a
    # sparse or discarded pool, and free blocks not yet discarded count in it.
    header = ("Pool", "Size", "Used", "Shared", "Free", "Busy", "Bad", "Files", "Use%", "Resident")
    row = (args.pool, format_size(fs.size), format_size(fs.used), format_size(fs.shared),
           format_size(fs.free), format_size(fs.busy), format_size(fs.bad), str(fs.files), use,
           format_size(fs.resident))
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
        # No writer publishes: say who else has the pool, if anyone (the kernel's lock list).
        found = openers(args.pool)
        if not found:
            print("no process holds the pool read-write: nothing is pinned or busy")
        elif any(read_write for _pid, read_write in found):
            print(f"pool is {describe_openers(found)}, which publishes no references")
        else:
            print(f"no process holds the pool read-write; it is {describe_openers(found)}: "
                  f"what read-only openers hold is not published")
        return EXIT_OK
    refs = status["refs"]
    who = "served by the arbiter," if status.get("served") else "held read-write by"
    print(f"{who} {_pid(status['pid'])}: {status['total']} reference(s), busy {format_size(status['busy'])}")
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
                 policy=args.policy, lease_break_s=args.lease_break_s, discard=False if args.no_discard else None,
                 mount=args.mount, mount_options=parse_options(args.options))


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


_POOL_HELP = "the pool: a file or device formatted by daxfs mkfs"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="daxfs", description="A user-space DAX file system on a memory pool.",
                     epilog="POOL:PATH names a path inside a pool, e.g. /dev/shm/p.pool:/a/b; "
                            "a bare POOL means its root directory; a path without POOL: is local. "
                            "'daxfs COMMAND --help' shows a command's options and an example.")
    parser.add_argument("--version", action="version", version=f"daxfs {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], summary: str,
                example: str | None = None, **options: Any) -> argparse.ArgumentParser:
        epilog = f"example:\n  {example}" if example else None
        sub = commands.add_parser(name, help=summary, description=summary, epilog=epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter, **options)
        sub.set_defaults(handler=handler, parser=sub)
        return sub

    sub = command("mkfs", cmd_mkfs, "format a pool (a new file, or an existing file or device)",
                  "daxfs mkfs /dev/shm/data.pool --size 1G")
    sub.add_argument("pool", metavar="POOL", help="the file or device to format (a new file is made)")
    sub.add_argument("--size", type=parse_size, required=True,
                     help="pool size: bytes, or with a suffix (64M, 1G, 1GiB; KB/MB/GB are powers of 1000); "
                          "rounded down to whole blocks")
    sub.add_argument("--block-size", type=parse_size, default=4096, metavar="N",
                     help="bytes per block: a power of two (default 4096)")
    sub.add_argument("--force", action="store_true", help="format over an existing volume or non-empty file")
    sub.add_argument("--sparse", action="store_true",
                     help="do not preallocate the data area: blocks take memory as they are handed out "
                          "(ENOSPC, never SIGBUS, when the file system is full)")

    sub = command("info", cmd_info, "show a pool's properties: size, block size, space, files, layout, "
                                    "sync mode, format version, writer", "daxfs info /dev/shm/data.pool")
    sub.add_argument("pool", metavar="POOL", help=_POOL_HELP)

    sub = command("ls", cmd_ls, "list a directory", "daxfs ls -lh /dev/shm/data.pool:/runs", add_help=False)
    sub.add_argument("target", metavar="POOL[:PATH]", help="the directory (or file) to list; POOL alone: the root")
    sub.add_argument("-l", dest="long", action="store_true", help="long listing: mode, links, size, mtime")
    sub.add_argument("-h", "--human-readable", dest="human", action="store_true",
                     help="with -l, sizes as 1.5K, 12M, 3.0G")
    sub.add_argument("--help", action="help", help="show this help and exit")

    sub = command("mkdir", cmd_mkdir, "make directories", "daxfs mkdir -p /dev/shm/data.pool:/runs/42")
    sub.add_argument("targets", metavar="POOL:PATH", nargs="+", help="a directory to make")
    sub.add_argument("-p", "--parents", action="store_true", help="make parents as needed; no error if it exists")

    sub = command("rmdir", cmd_rmdir, "remove empty directories", "daxfs rmdir /dev/shm/data.pool:/runs/42")
    sub.add_argument("targets", metavar="POOL:PATH", nargs="+", help="an empty directory to remove")

    sub = command("put", cmd_put, "copy local files into a pool (several go into a directory)",
                  "daxfs put weights.bin config.json /dev/shm/data.pool:/runs/42/")
    sub.add_argument("sources", metavar="LOCAL", nargs="+", help="a local file; - reads stdin")
    sub.add_argument("target", metavar="POOL:PATH",
                     help="where it goes; an existing directory (or PATH ending in /) keeps LOCAL's name")

    sub = command("get", cmd_get, "copy files out of a pool (several go into a directory)",
                  "daxfs get /dev/shm/data.pool:/runs/42/weights.bin copy.bin")
    sub.add_argument("sources", metavar="POOL:PATH", nargs="+", help="a file in a pool")
    sub.add_argument("local", metavar="LOCAL",
                     help="the local file to write; an existing directory keeps the name; - writes stdout")

    sub = command("cat", cmd_cat, "write files' bytes to stdout, one after another",
                  "daxfs cat /dev/shm/data.pool:/runs/42/weights.bin | sha256sum")
    sub.add_argument("sources", metavar="POOL:PATH", nargs="+", help="a file in a pool; - reads stdin")

    sub = command("rm", cmd_rm, "remove files (with -r, directory trees)", "daxfs rm -r /dev/shm/data.pool:/runs")
    sub.add_argument("targets", metavar="POOL:PATH", nargs="+", help="a file (with -r, a directory) to remove")
    sub.add_argument("-r", "--recursive", action="store_true", help="remove directories and all they hold")
    sub.add_argument("-f", "--force", action="store_true", help="no error for a path that does not exist")

    sub = command("mv", cmd_mv, "move or rename: inside a pool, or a file into, out of or between pools",
                  "daxfs mv /dev/shm/data.pool:/runs/42 /dev/shm/data.pool:/runs/best")
    sub.add_argument("source", metavar="SRC", help="POOL:PATH, or a local file")
    sub.add_argument("destination", metavar="DST",
                     help="POOL:PATH, or a local path (as in cp); an existing directory keeps SRC's name")

    sub = command("stat", cmd_stat, "show a file's metadata and extents",
                  "daxfs stat /dev/shm/data.pool:/runs/42/weights.bin")
    sub.add_argument("target", metavar="POOL:PATH", help="the file or directory to describe")

    sub = command("df", cmd_df, "show space: size, used, shared, free, busy, bad, files, resident memory",
                  "daxfs df /dev/shm/data.pool")
    sub.add_argument("pool", metavar="POOL", help=_POOL_HELP)

    sub = command("pins", cmd_pins, "say who holds the pool, and list the pins, mappings and leases its "
                                    "writer holds, and busy space", "daxfs pins /dev/shm/data.pool")
    sub.add_argument("pool", metavar="POOL", help=_POOL_HELP)

    sub = command("fsck", cmd_fsck, "check a pool's invariants and list poisoned files; exit 1 if there are "
                                    "problems", "daxfs fsck /dev/shm/data.pool")
    sub.add_argument("pool", metavar="POOL", help=_POOL_HELP)
    sub.add_argument("--repair", action="store_true",
                     help="first make a pool that mounts read-only because of a bad log record writable "
                          "again: keep everything before the record, discard it and the records after it "
                          "(and forget bad metadata memory its badblocks list no longer lists: repaired)")

    sub = command("cp", cmd_cp, "copy files inside a pool (sharing their blocks), between pools, "
                                "or in or out of a pool", "daxfs cp /dev/shm/data.pool:/a /dev/shm/data.pool:/b")
    sub.add_argument("sources", metavar="SRC", nargs="+", help="POOL:PATH, or a local file (- reads stdin)")
    sub.add_argument("destination", metavar="DST",
                     help="POOL:PATH, or a local path (- writes stdout); an existing directory keeps SRC's "
                          "name, and several SRCs need one")
    sub.add_argument("--reflink", choices=("auto", "always", "never"), default="auto",
                     help="inside one pool: auto (default) shares the blocks and copies bytes only "
                          "if that is impossible, always fails instead, never copies bytes "
                          "(always is an error when SRC and DST are not in one pool)")

    sub = command("owners", cmd_owners, "list the files whose data lives in pool bytes "
                                        "[OFFSET, +LENGTH): ino, file offset, length, pool offset, path",
                  "daxfs owners /dev/shm/data.pool 0x8402000 4K")
    sub.add_argument("pool", metavar="POOL", help=_POOL_HELP)
    sub.add_argument("offset", metavar="OFFSET", type=parse_offset,
                     help="pool byte offset: bytes, a suffix (4K, 1M) or hexadecimal (0x1000)")
    sub.add_argument("length", metavar="LENGTH", type=parse_length, nargs="?", default=1,
                     help="bytes from OFFSET (default 1), written like OFFSET")

    sub = command("serve", cmd_serve, "be the pool's one writer and serve other processes "
                                      "(daxfs.connect, and every daxfs command on the pool)",
                  "daxfs serve /dev/shm/data.pool --policy wait &")
    sub.add_argument("pool", metavar="POOL", help=_POOL_HELP)
    add_serve_options(sub)
    sub.add_argument("--mount", metavar="DIR", default=None,
                     help="also mount the volume at DIR (FUSE) while serving; unmounting it stops the server")
    sub.add_argument("-o", dest="options", metavar="OPTS", default=None, help="mount options (see daxfs mount)")

    add_media_commands(command)
    add_space_commands(command)
    add_fuse_commands(command)

    command("demo", cmd_demo, "a timed tour on a scratch pool", "daxfs demo")
    return parser


def _operand(args: argparse.Namespace) -> str | None:
    """What a command is about, to name in an error that names nothing (its first path)."""
    for name in ("target", "targets", "source", "sources", "pool"):
        value = getattr(args, name, None)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, str) and value:
            return value
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one daxfs command; returns the exit status instead of exiting."""
    parser = build_parser()
    args = None
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # Said by the command's own parser, so the hint is 'daxfs CMD --help'.
            args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
        if error.filename is None and args is not None:
            error.filename = _operand(args)     # every error names what it is about
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
