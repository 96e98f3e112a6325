"""A FUSE mount of a volume: libfuse 3's loop on a thread of its own, beside the volume's other
front ends (the arbiter's sessions), and the kernel's caches kept true to their changes.

``FuseMount(volume, mountpoint).start()`` mounts; ``stop()`` unmounts (lazily if files are
still open there, then aborts the connection if they stay) and returns when libfuse's loop
has ended and every file it opened is closed.  An unmount from outside (``daxfs umount``,
``fusermount3 -u``) ends the loop too, and calls ``on_end``.

Caching.  The kernel caches attributes and names for ``attr_timeout``/``entry_timeout``
(1 s unless ``-o`` says otherwise), and file pages while a file is open.  A change that does
not come through the mount (a Python client of the arbiter, or the volume used in this
process) bumps the journal's change table before it applies; the mount watches those
bumps and has libfuse drop what the kernel caches of each inode it has shown the kernel
(attributes and pages, ``fuse_invalidate_path``), on a thread of its own so no request or
commit ever waits for the kernel.  Names are served by path, so a name a client removed
or replaced answers for what the volume holds now; and the kernel's cached name goes too
(``Handlers.forget_name``), or it would take a name a client removed for the old file until
``entry_timeout``: an ``open(O_CREAT)`` or ``mkdir`` of the free name would fail.
Writeback caching stays off: with it the kernel keeps its own size and mtime of a file
over the volume's.  Stores through a
client's mapping reach no log: the mount sees them at the file's next open (close-to-open,
as NFS), as every open drops the file's cached pages.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daxfs.errors import fs_error
from daxfs.volume.changes import ChangeTable

if TYPE_CHECKING:
    from daxfs.adapters.fuse_ops import Handlers
    from daxfs.volume import Volume

#: What a mount gets unless ``-o`` says otherwise (libfuse's own options, passed through).
DEFAULT_OPTIONS = {"default_permissions": True, "attr_timeout": 1.0, "entry_timeout": 1.0,
                   "negative_timeout": 0.0, "subtype": "daxfs", "max_threads": 16, "max_idle_threads": 16}
#: Readahead for the mount (KiB): 1 MiB, so sequential reads arrive as 1 MiB requests.
READ_AHEAD_KB = 1024
MNT_DETACH = 2


def fuse_available() -> str | None:
    """Why a FUSE mount cannot be made here (None: it can): /dev/fuse, libfuse 3, mfusepy."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse (load the fuse module, or give the container the device)"
    try:
        importlib.import_module("daxfs.adapters.fuse_ops")     # loads libfuse through mfusepy
    except ImportError:
        return "the mfusepy package is missing (python -m pip install mfusepy)"
    except (OSError, AttributeError) as exc:
        return f"libfuse 3 is missing (Debian: apt-get install fuse3): {exc}"
    return None


def parse_options(text: str | None) -> dict[str, Any]:
    """``-o a=b,c`` as libfuse's options (``{"a": "b", "c": True}``)."""
    out: dict[str, Any] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if item:
            key, eq, value = item.partition("=")
            out[key] = value if eq else True
    return out


class _WatchedChanges(ChangeTable):
    """The journal's change table, seen by the mount: each bump not made by the mount itself
    is an inode whose kernel caches must go.  It maps the same counters as the table it
    stands in for, so the arbiter's clients read the same memory."""

    def __init__(self, table: ChangeTable | None, changed: Callable[[int, bool], None]) -> None:
        from daxfs.adapters.fuse_ops import requests

        self._own = table is None
        super().__init__(None if table is None else table.fd)
        self.original = table
        self._changed = changed
        self._requests = requests

    def bump(self, ino: int) -> None:
        super().bump(ino)
        self._changed(ino, getattr(self._requests, "fuse", False))

    def close(self) -> None:
        if self._own:
            super().close()
            return
        try:
            self._counts.release()
            self._mm.close()
        except BufferError:
            pass


class FuseMount:
    """One mount of ``volume`` at ``mountpoint``."""

    def __init__(self, volume: "Volume", mountpoint: str, *, options: dict[str, Any] | None = None,
                 on_end: Callable[[], None] | None = None) -> None:
        why = fuse_available()
        if why is not None:
            raise fs_error(errno.ENODEV, mountpoint, f"cannot mount: {why}")
        self.volume = volume
        self.mountpoint = os.path.abspath(mountpoint)
        given = dict(options or {})
        self.read_ahead_kb = int(given.pop("read_ahead_kb", READ_AHEAD_KB))
        self.options = {**DEFAULT_OPTIONS, "fsname": volume.path, **given}
        if os.geteuid() == 0:
            self.options.setdefault("allow_other", True)    # other users, as on any disk; modes decide
        self.on_end = on_end
        self.handlers: Handlers | None = None
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.ended = threading.Event()
        self._stopping = False          # the invalidation thread ends
        self._stop_requested = False    # stop() was called: the end is ours, not an unmount's
        self._pending: set[int] = set()
        self._inflight: set[int] = set()       # taken by the invalidation thread, not yet done
        lock = threading.Lock()
        self._wake = threading.Condition(lock)      # the invalidation thread waits for work
        self._settled = threading.Condition(lock)   # an open waits for its inode's invalidation
        self._invalidator: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self._dev: int | None = None

    # ---------------------------------------------------------------- start

    def start(self, timeout: float = 30.0) -> "FuseMount":
        """Mount, and return once the kernel has sent its first request (INIT)."""
        if not os.path.isdir(self.mountpoint):
            raise fs_error(errno.ENOTDIR, self.mountpoint, "the mount point must be a directory")
        journal = self.volume._journal
        self._watched = _WatchedChanges(journal.changes, self._changed)
        journal.changes = self._watched
        self._thread = threading.Thread(target=self._run, name="daxfs-fuse", daemon=True)
        self._thread.start()
        if not self.ready.wait(timeout) or self.error is not None or self.ended.is_set():
            self._restore()
            error = self.error
            if isinstance(error, OSError):
                raise error
            raise fs_error(errno.EIO, self.mountpoint, f"mount failed: {error or 'libfuse gave up (see above)'}")
        try:
            self._dev = os.stat(self.mountpoint).st_dev
        except OSError:
            self._dev = None
        self._tune_readahead()
        return self

    def _run(self) -> None:
        from daxfs.adapters.fuse_ops import Handlers
        try:
            Handlers(self.volume, self.mountpoint, options=self.options, on_init=self._initialized,
                     on_destroy=self._destroyed)
        except BaseException as exc:    # mount refused (libfuse said why on stderr), or a crash
            self.error = exc
        finally:
            self._restore()
            self.ended.set()
            self.ready.set()
            if self.on_end is not None and not self._stop_requested:
                self.on_end()

    def _initialized(self, handlers: "Handlers") -> None:
        self.handlers = handlers
        handlers.settle = self._settle
        self._invalidator = threading.Thread(target=self._invalidate, name="daxfs-fuse-inval", daemon=True)
        self._invalidator.start()
        self.ready.set()

    def _destroyed(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._invalidator is not None and self._invalidator is not threading.current_thread():
            self._invalidator.join(5)
        if self.handlers is not None:
            self.handlers.fuse_ptr = None

    def _restore(self) -> None:
        journal = self.volume._journal
        watched = getattr(self, "_watched", None)
        if watched is not None and journal.changes is watched:
            journal.changes = watched.original
            watched.close()

    def _tune_readahead(self) -> None:
        """Sequential reads come as requests of the readahead window: widen it (root only)."""
        if self._dev is None or self.read_ahead_kb <= 0:
            return
        try:
            with open(f"/sys/class/bdi/{os.major(self._dev)}:{os.minor(self._dev)}/read_ahead_kb", "w") as fh:
                fh.write(str(self.read_ahead_kb))
        except OSError:
            pass        # not root: the kernel's default (128 KiB) stays

    # ---------------------------------------------------------------- invalidation

    def _changed(self, ino: int, own: bool) -> None:
        """A change to ``ino`` is about to apply (under the volume's lock).  One the mount made
        itself matters only to a file's other names (hard links: other inodes to the kernel)."""
        if own:
            node = self.volume._journal.core.inodes.get(ino)
            if node is None or node.nlink < 2 or node.extents is None:
                return
        with self._wake:
            self._pending.add(ino)
            self._wake.notify()

    def _invalidate(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                inos, self._pending = self._pending, set()
                self._inflight = inos
            handlers = self.handlers
            try:
                if handlers is not None:
                    shown = [(ino, path) for ino in inos
                             for path in (list(handlers.links.get(ino) or ()) or [handlers.known.get(ino)])
                             if path is not None]
                    with self.volume.lock:      # (let go before the kernel is called)
                        stale = [path for ino, path in shown if not self._names(path, ino)]
                    for _ino, path in shown:
                        handlers.invalidate(path)
                    for path in stale:
                        handlers.forget_name(path)
            finally:
                with self._wake:
                    self._inflight = set()
                    self._settled.notify_all()
            if handlers is not None and len(handlers.known) > 1 << 18:
                # Bounded memory: what the kernel still caches of a forgotten inode expires
                # within attr_timeout instead.
                handlers.known.clear()
                handlers.links.clear()

    def _names(self, path: str, ino: int) -> bool:
        """Whether ``path`` still names ``ino`` (the name was not removed or replaced)."""
        try:
            return self.volume.namespace.lookup(path, False)[1].ino == ino
        except OSError:
            return False

    def _settle(self, ino: int) -> None:
        """Before an open of ``ino`` returns to the kernel: what it caches of the file's
        names, changed since by a client or through another of its names (a hard link is
        another inode to the kernel), is dropped first — a write through one name and a
        close, then a read through another, sees the write.  Bounded by ``attr_timeout``:
        the cache expires then anyway."""
        deadline = time.monotonic() + float(self.options.get("attr_timeout", 1.0))
        with self._settled:
            while (ino in self._pending or ino in self._inflight) and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._settled.wait(left)

    # ---------------------------------------------------------------- stop

    @property
    def mounted(self) -> bool:
        return self.ready.is_set() and not self.ended.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        """Unmount and wait for libfuse's loop to end (files still open there: lazily, then
        the connection is aborted after ``timeout`` so the volume can close)."""
        self._stop_requested = True
        if self._thread is None or self.ended.is_set():
            return
        unmount(self.mountpoint, lazy=True)
        self._thread.join(min(timeout, 2.0))
        if self._thread.is_alive() and self._dev is not None:
            _abort_connection(self._dev)
        self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        return self.ended.wait(timeout)


def _abort_connection(dev: int) -> None:
    """End a FUSE connection whose files stay open (root: fusectl, mounted if it is not)."""
    control = "/sys/fs/fuse/connections"
    if not os.path.exists(f"{control}/{dev}"):
        subprocess.run(["mount", "-t", "fusectl", "none", control], capture_output=True, check=False)
    try:
        with open(f"{control}/{dev}/abort", "w") as fh:
            fh.write("1")
    except OSError:
        pass


def unmount(mountpoint: str, *, lazy: bool = False) -> None:
    """Unmount a FUSE mount point: umount2 as root, fusermount3 otherwise.  ``lazy``
    detaches it even while files are open there (or its daemon is dead)."""
    path = os.path.abspath(mountpoint)
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.umount2(path.encode(), MNT_DETACH if lazy else 0) != 0:
            code = ctypes.get_errno()
            raise fs_error(code, path, os.strerror(code) + (" (files are open there)" if code == errno.EBUSY else ""))
        return
    result = subprocess.run(["fusermount3", "-u", *(["-z"] if lazy else []), path], capture_output=True, text=True)
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "fusermount3 failed"
        code = errno.EBUSY if "busy" in message.lower() else errno.EINVAL if "not found" in message else errno.EPERM
        raise fs_error(code, path, message)


__all__ = ["FuseMount", "DEFAULT_OPTIONS", "fuse_available", "parse_options", "unmount"]
