"""The command that gives a pool's free memory back: ``daxfs trim`` (as fstrim).

On a served pool it asks the arbiter (which holds the pool read-write); otherwise
it mounts the pool here.  Busy blocks (pinned or mapped), bad blocks and metadata
are never discarded; a device that cannot give memory back (device-dax) is an
error that says so.
"""

from __future__ import annotations

import argparse

from daxfs.adapters.poolpaths import format_size, open_pool

EXIT_OK = 0


def cmd_trim(args: argparse.Namespace) -> int:
    """Discard every free block of the pool; say how much memory that returned."""
    with open_pool(args.pool) as vol:
        returned = vol.trim()
        st = vol.statfs()
    print(f"trimmed {args.pool}: {format_size(returned)} returned; resident now {format_size(st.resident)} "
          f"of {format_size(st.size + st.metadata_size)} ({format_size(st.free)} free)")
    return EXIT_OK


def add_commands(command: object) -> None:
    """Register the commands with the CLI's ``command(name, handler, summary)``."""
    sub = command("trim", cmd_trim, "give the memory of a pool's free blocks back to the system "  # type: ignore[operator]
                  "(as fstrim); never busy or bad blocks", "daxfs trim /dev/shm/data.pool")
    sub.add_argument("pool", metavar="POOL", help="the pool: a file or device holding a daxfs volume")


__all__ = ["cmd_trim", "add_commands"]
