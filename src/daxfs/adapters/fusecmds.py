"""``daxfs mount`` and ``daxfs umount``: the volume as a file system any program can use.

``daxfs mount POOL DIR`` is ``daxfs serve POOL --mount DIR`` run as a daemon: the mounting
process is the pool's one writer and its arbiter, so Python programs ``daxfs.connect`` to
the same volume while shell tools use the mount.  It returns once the mount is up (or
says why it could not be made); ``-f`` stays in the foreground.  The daemon stops, and
closes the volume cleanly, on SIGTERM or when the mount goes (``daxfs umount DIR``).

``daxfs umount DIR`` unmounts and waits until the daemon has closed the pool.  A mount
whose daemon was killed (``Transport endpoint is not connected``) is detached: the pool
itself mounts clean again, as after any crash.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import sys
import time
from collections.abc import Callable

from daxfs.adapters.fuse_mount import parse_options, unmount
from daxfs.adapters.poolpaths import describe_error
from daxfs.errors import fs_error

EXIT_OK, EXIT_ERROR = 0, 1
#: How long ``daxfs umount`` waits for the daemon to close the pool.
UMOUNT_WAIT_S = 60.0


def cmd_mount(args: argparse.Namespace) -> int:
    pool = os.path.abspath(args.pool)
    mountpoint = os.path.abspath(args.mountpoint)
    if not os.path.exists(pool):
        raise fs_error(errno.ENOENT, pool)
    if not os.path.isdir(mountpoint):
        raise fs_error(errno.ENOTDIR, mountpoint, "the mount point must be a directory")
    options = parse_options(args.options)
    run = _server_runner(pool, mountpoint, options, args)
    if args.foreground:
        return run(None)
    return _detached(run)


def _server_runner(pool: str, mountpoint: str, options: dict[str, object],
                   args: argparse.Namespace) -> Callable[[Callable[[], None] | None], int]:
    def run(ready: Callable[[], None] | None) -> int:
        from daxfs.adapters.server import serve
        return serve(pool, socket_path=args.socket, policy=args.policy, lease_break_s=args.lease_break_s,
                     force=args.force, timeout=args.timeout, discard=False if args.no_discard else None,
                     mount=mountpoint, mount_options=options, ready=ready)
    return run


def _detached(run: Callable[[Callable[[], None] | None], int]) -> int:
    """Run ``run`` in a daemon (double fork, new session); return when it says it serves, or
    print why it could not.  Forked before any thread or volume exists in this process."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            said = pipe.read().decode(errors="replace")
        os.waitpid(pid, 0)
        if said.startswith("ok"):
            return EXIT_OK
        print(said.strip() or "daxfs: the mount daemon exited before mounting", file=sys.stderr)
        return EXIT_ERROR
    os.close(read_end)
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        os.chdir("/")           # the daemon keeps no directory busy

        def ready() -> None:
            os.write(write_end, b"ok\n")
            os.close(write_end)
            quiet = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(quiet, fd)
            os.close(quiet)

        code = run(ready)
    except OSError as error:
        try:
            os.write(write_end, f"daxfs: {describe_error(error)}\n".encode())
        except OSError:
            pass
        code = EXIT_ERROR
    except BaseException as error:   # the daemon's last word, wherever it came from
        try:
            os.write(write_end, f"daxfs: mount daemon failed: {error!r}\n".encode())
        except OSError:
            pass
        code = EXIT_ERROR
    os._exit(code)


def _mounted_source(mountpoint: str) -> str | None:
    """The source (the pool, our fsname) of the FUSE mount at ``mountpoint``, from mountinfo."""
    try:
        with open("/proc/self/mountinfo") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or _unescape(fields[4]) != mountpoint:
            continue
        dash = fields.index("-")
        if fields[dash + 1].startswith("fuse"):
            found = _unescape(fields[dash + 2])         # the last one mounted there wins
    return found


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def cmd_umount(args: argparse.Namespace) -> int:
    mountpoint = os.path.abspath(args.mountpoint)
    pool = _mounted_source(mountpoint)
    if pool is None:
        raise fs_error(errno.EINVAL, mountpoint, "not a FUSE mount point")
    try:
        os.stat(mountpoint)
        alive = True
    except OSError as error:
        alive = error.errno != errno.ENOTCONN       # its daemon is gone
    try:
        unmount(mountpoint, lazy=not alive or args.lazy)
    except OSError as error:
        if error.errno != errno.EBUSY:
            raise
        raise fs_error(errno.EBUSY, mountpoint, "files are open on the mount (-l detaches it now and "
                                                 "the daemon stops when they close)") from None
    if alive and os.path.exists(pool) and not _released(pool, UMOUNT_WAIT_S):
        raise fs_error(errno.EBUSY, pool, "unmounted, but the daemon still holds the pool (clients hold "
                                          "references?)")
    return EXIT_OK


def _released(pool: str, timeout: float) -> bool:
    """Whether the pool's writer lets go of it within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(pool, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
        finally:
            os.close(fd)
        time.sleep(0.05)


def add_fuse_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``mount`` and ``umount`` on the CLI's parser (``command(name, handler, summary)``)."""
    sub = command("mount", cmd_mount, "mount a pool (FUSE) so any program can use it; Python programs "
                                      "connect to the same volume (daxfs.connect)",
                  "daxfs mount /dev/shm/data.pool /mnt/data")
    sub.add_argument("pool", metavar="POOL", help="the pool: a file or device holding a daxfs volume")
    sub.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing directory to mount it on")
    sub.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground (log to stderr)")
    sub.add_argument("-o", dest="options", metavar="OPTS", default=None,
                     help="mount options, passed to libfuse (e.g. attr_timeout=5,ro); read_ahead_kb=N "
                          "sets the mount's readahead")
    add_serve_options(sub)

    sub = command("umount", cmd_umount, "unmount a daxfs mount and wait until its daemon has closed the "
                                        "pool (a dead mount is detached)", "daxfs umount /mnt/data")
    sub.add_argument("mountpoint", metavar="MOUNTPOINT", help="where the pool is mounted")
    sub.add_argument("-l", "--lazy", action="store_true", help="detach now even while files are open there")


def add_serve_options(sub: argparse.ArgumentParser) -> None:
    """The arbiter's options, shared by ``daxfs serve`` and ``daxfs mount``."""
    sub.add_argument("--socket", metavar="PATH", default=None,
                     help="where the arbiter listens (default: POOL.sock next to the pool; "
                          "/run/daxfs/NAME.sock for a device)")
    sub.add_argument("--policy", choices=("defer", "wait", "break", "refuse"), default="defer",
                     help="pin policy for changes that meet a pinned or mapped range (default defer)")
    sub.add_argument("--lease-break-s", type=float, default=45.0, metavar="S",
                     help="how long a lease holder has to let go before it is revoked (default 45)")
    sub.add_argument("--force", action="store_true",
                     help="on SIGTERM/SIGINT, stop even while clients hold references: break leases, "
                          "revoke mappings, wait for pins up to --timeout")
    sub.add_argument("--timeout", type=float, default=None, metavar="S",
                     help="with --force, how long to wait for pins to be released")
    sub.add_argument("--no-discard", action="store_true",
                     help="keep freed blocks' memory until `daxfs trim` (by default a pool in memory "
                          "gives it back as blocks are freed)")


__all__ = ["add_fuse_commands", "cmd_mount", "cmd_umount"]
