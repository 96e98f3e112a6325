"""The bad-memory commands: ``daxfs badblocks``, ``daxfs inject-error``, and fsck's poison list.

``badblocks`` and fsck read the volume through a read-only mount of their own:
it follows the pool's writer (an embedded process or ``daxfs serve``), so it
sees what the writer quarantined.  ``inject-error`` only appends to the pool's
badblocks side file, as ``ndctl inject-error`` adds to a device's list; a
volume open on the pool acts on it within a second, any other at its next
mount.
"""

from __future__ import annotations

import argparse
import errno
import os
import warnings

import daxfs
from daxfs._types import Owner
from daxfs.adapters.poolpaths import format_size
from daxfs.media.badblocks import source_for

EXIT_OK = 0
EXIT_ERROR = 1


def _local(pool: str) -> daxfs.Volume:
    """A read-only mount here (beside a writer it follows the writer's log)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", daxfs.DamagedVolumeWarning)     # the caller says what is wrong
        return daxfs.open_volume(pool, readonly=True)


def _owner(o: Owner) -> str:
    name = o.path if o.path is not None else f"(orphan, inode {o.ino})"
    return f"{name} [{o.file_offset}, +{o.length})"


def cmd_badblocks(args: argparse.Namespace) -> int:
    """Each bad range of the pool: where, how long, which region, and who owns it."""
    with _local(args.pool) as vol:
        report = vol.badblock_report()
        damaged = vol.damaged
    if not report:
        print("no bad blocks")
    for offset, length, region, owners in report:
        who = f": {len(owners)} owner(s)" if owners else (": quarantined, no owner" if region == "data" else "")
        print(f"{offset:#014x}  {format_size(length):>8}  {region}{who}")
        for o in owners:
            print(f"    {_owner(o)}")
    if damaged:
        print(f"volume is read-only: {damaged}")
    return EXIT_OK


def cmd_inject_error(args: argparse.Namespace) -> int:
    """List pool bytes as bad in the pool's badblocks side file (a simulated media error)."""
    pool = args.pool
    size = os.stat(pool).st_size
    source = source_for(pool, size)
    if source is None:
        raise OSError(errno.EOPNOTSUPP, "this pool has no badblocks list daxfs can add to", pool)
    if args.length <= 0:
        raise OSError(errno.EINVAL, f"length must be positive, not {args.length}", pool)
    if source.writable and args.offset + args.length > size:
        raise OSError(errno.EINVAL, f"pool bytes [{args.offset}, +{args.length}) are not inside the pool "
                      f"({size} bytes)", pool)
    first, length = source.append(args.offset, args.length)
    rounded = "" if (first, length) == (args.offset, args.length) else " (rounded out to 512-byte sectors)"
    print(f"listed pool bytes [{first:#x}, +{length}) as bad in {source.path}{rounded}; a volume open on "
          f"the pool acts on it within a second, any other at its next mount")
    return EXIT_OK


def poisoned_lines(pool: str | daxfs.Volume) -> list[str]:
    """fsck's list of poisoned file ranges: file data lost to bad memory (``pool``: a path,
    mounted read-only here, or a volume already mounted)."""
    if isinstance(pool, str):
        with _local(pool) as vol:
            found = vol.poisoned()
    else:
        found = pool.poisoned()
    lines = [f"poisoned: {_owner(o)} (bad memory at pool offset {o.pool_offset:#x})" for o in found]
    if lines:
        lines.append(f"{len(found)} poisoned file range(s): their data is lost; write whole blocks, "
                     f"zero_range, punch or remove them")
    return lines


def add_commands(command: object) -> None:
    """Register the commands with the CLI's ``command(name, handler, summary, example)``."""
    from daxfs.adapters.poolpaths import parse_length, parse_offset

    sub = command("badblocks", cmd_badblocks, "list a pool's bad memory: each range, its region, and "  # type: ignore[operator]
                  "the files that own it", "daxfs badblocks /dev/shm/data.pool")
    sub.add_argument("pool", metavar="POOL", help="the pool: a file or device formatted by daxfs mkfs")
    sub = command("inject-error", cmd_inject_error, "simulate a media error: list pool bytes "  # type: ignore[operator]
                  "[OFFSET, +LENGTH) as bad in the pool's badblocks side file (as ndctl inject-error)",
                  "daxfs inject-error /dev/shm/data.pool 0x8402000 4K")
    sub.add_argument("pool", metavar="POOL", help="the pool: a file or device formatted by daxfs mkfs")
    sub.add_argument("offset", metavar="OFFSET", type=parse_offset,
                     help="pool byte offset: bytes, a suffix (4K, 1M) or hexadecimal (0x1000)")
    sub.add_argument("length", metavar="LENGTH", type=parse_length, nargs="?", default=512,
                     help="bytes from OFFSET (default 512: one sector), written like OFFSET")


__all__ = ["cmd_badblocks", "cmd_inject_error", "poisoned_lines", "add_commands"]
