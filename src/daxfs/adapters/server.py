"""The arbiter: ``daxfs serve POOL`` — the pool's one writer, serving other processes.

It opens the pool read-write (an embedded ``open_volume`` elsewhere then gets
BusyError naming it), listens on a Unix socket (``POOL.sock`` by default,
created no more open than the pool itself) and gives each client a session
(``session.py``): the pool's descriptor once, so the client maps extents
itself and bulk data never crosses the socket; a change table, so the client
reads files without asking; and a slot in the holder table, where the
arbiter records what the client holds before handing it out.

A client that goes away while its process still lives (its slot lock held)
keeps its blocks held until the process dies (a zombie, checked every 10 ms).
At start the arbiter honours the slots a previous arbiter left with a live
lock: those blocks stay busy until the lock goes (seed 002).

Stopping (SIGTERM, SIGINT) is ``vol.close``: refused while clients hold
references, unless ``force`` (leases broken, mappings revoked, pins waited
for up to ``timeout``).
"""

from __future__ import annotations

import os
import signal
import socket
import stat as st
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import daxfs
from daxfs.adapters import wire
from daxfs.adapters.session import Session
from daxfs.errors import BusyError
from daxfs.volume.changes import ChangeTable
from daxfs.volume.holders import HolderTable, holders_path

ZOMBIE_CHECK_S = 0.01


class Server:
    """One arbiter: a volume, a listening socket and its sessions."""

    def __init__(self, pool: str, *, socket_path: str | None = None, policy: str = "defer",
                 durability: str = "sync", lease_break_s: float = 45.0, log: TextIO | None = sys.stderr,
                 discard: bool | None = None, mount: str | None = None,
                 mount_options: dict[str, Any] | None = None) -> None:
        self.pool_path = os.path.abspath(pool)
        self.socket_path = socket_path or wire.default_socket(self.pool_path)
        self._log = log
        # Online discard starts only after _inherit: blocks the mount frees (orphans) may be
        # pinned by a live client of an earlier arbiter until they are held again.
        self.volume = daxfs.open_volume(self.pool_path, policy=policy, durability=durability,
                                        lease_break_s=lease_break_s, discard=False)
        try:
            info = os.stat(self.pool_path)
            self.pool_mode, self.pool_uid, self.pool_gid = st.S_IMODE(info.st_mode), info.st_uid, info.st_gid
            self.changes = ChangeTable()
            self.volume._journal.changes = self.changes
            os.makedirs(os.path.dirname(holders_path(self.pool_path)), exist_ok=True)
            self.holders = HolderTable(holders_path(self.pool_path), create=True)
            self._lock = threading.Lock()
            self._sessions: dict[int, Session] = {}
            self._slots: set[int] = set()
            self._zombies: list[tuple[int, list[Any]]] = []    # (slot, references or runs held)
            self._zombie_wake = threading.Event()
            self._next_sid = 1
            self._stopping = False
            self.stopped = threading.Event()
            self._inherit()
            self.volume.space.set_online(discard)
            self._listener = self._listen()
            self.fuse: Any = None
            if mount is not None:       # the FUSE front end: another user of the same volume
                self._start_mount(mount, mount_options)
        except BaseException:
            listener = getattr(self, "_listener", None)
            if listener is not None:
                listener.close()
                os.unlink(self.socket_path)
            self.volume.close(force=True, timeout=0)
            raise

    def log(self, line: str) -> None:
        if self._log is not None:
            print(f"daxfs serve: {line}", file=self._log, flush=True)

    # ---------------------------------------------------------------- start

    def _inherit(self) -> None:
        """Keep busy what live clients of an earlier arbiter still hold; forget dead slots."""
        journal = self.volume._journal
        layout = journal.layout
        bs = layout.block_size
        with journal.lock:
            for slot in self.holders.used():
                found = self.holders.read(slot)
                if found is None:
                    continue
                if not self.holders.alive(slot):
                    self.holders.clear(slot)
                    continue
                pid, _uid, name, runs = found
                blocks = []
                for off, n in runs:
                    lo = max(0, (off - layout.data_offset) // bs)
                    hi = min(layout.data_blocks, -(-(off + n - layout.data_offset) // bs))
                    if hi > lo:
                        journal.core.adopt_hold(lo, hi - lo)
                        blocks.append((lo, hi - lo))
                self._slots.add(slot)
                self._zombies.append((slot, blocks))
                self.log(f"pid {pid} ({name}) still holds {len(blocks)} run(s) from an earlier arbiter: "
                         f"kept busy until it lets go")
        if self._zombies:
            self._start_zombie_watch()

    def _listen(self) -> socket.socket:
        path = self.socket_path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)          # left by an arbiter that died
            else:
                probe.close()
                raise BusyError("another arbiter is listening", filename=path)
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)      # never more open than 0600 while it is being set up
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        # No more open than the pool: connecting needs write access to the socket file.
        os.chmod(path, self.pool_mode & 0o666)
        try:
            os.chown(path, self.pool_uid, self.pool_gid)
        except PermissionError:
            pass
        sock.listen(128)
        return sock

    def _start_mount(self, mountpoint: str, options: dict[str, Any] | None) -> None:
        from daxfs.adapters.fuse_mount import FuseMount

        def ended() -> None:
            self.log(f"{mountpoint} was unmounted: stopping")
            self.stop_in_background()

        self.fuse = FuseMount(self.volume, mountpoint, options=options, on_end=ended).start()
        self.log(f"mounted at {self.fuse.mountpoint}")

    # ---------------------------------------------------------------- serving

    def serve_forever(self) -> None:
        """Accept clients until ``stop`` succeeds (SIGTERM/SIGINT call it)."""
        self.log(f"serving {self.pool_path} on {self.socket_path} (pid {os.getpid()})")
        self._listener.settimeout(0.2)
        while not self._stopping:
            try:
                conn, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping:
                    break
                raise
            conn.settimeout(None)
            with self._lock:
                sid = self._next_sid
                self._next_sid += 1
                session = Session(self, conn, sid)
                self._sessions[sid] = session
            session.start()

    def take_slot(self, session: Session) -> int:
        with self._lock:
            slot = self.holders.free_slot(self._slots)
            self._slots.add(slot)
            self.holders.write(slot, session.pid, session.uid, session.gid, session.holder.name, [])
            return slot

    def session_ended(self, session: Session) -> None:
        with self._lock:
            gone = self.holders.fd < 0            # the arbiter has stopped
            alive = not gone and session.slot >= 0 and self.holders.alive(session.slot)
        keep = session.release_all(alive)
        with self._lock:
            if gone or self.holders.fd < 0:
                self._sessions.pop(session.sid, None)
                return
            self._sessions.pop(session.sid, None)
            if keep:
                self._zombies.append((session.slot, keep))
                self.log(f"client {session.holder} (pid {session.pid}) left but lives: "
                         f"{len(keep)} reference(s) stay held until it exits")
            elif session.slot >= 0:
                self.holders.clear(session.slot)
                self._slots.discard(session.slot)
        if keep:
            self._start_zombie_watch()

    def _start_zombie_watch(self) -> None:
        self._zombie_wake.set()
        if getattr(self, "_zombie_thread", None) is None:
            self._zombie_thread = threading.Thread(target=self._watch_zombies, name="daxfs-zombies", daemon=True)
            self._zombie_thread.start()

    def _watch_zombies(self) -> None:
        while not self._stopping:
            with self._lock:
                zombies = list(self._zombies)
            if not zombies:
                self._zombie_wake.clear()
                self._zombie_wake.wait(1.0)
                continue
            for entry in zombies:
                slot, held = entry
                if self.holders.alive(slot):
                    continue
                self._let_go(held)
                with self._lock:
                    self._zombies.remove(entry)
                    self.holders.clear(slot)
                    self._slots.discard(slot)
                self.log(f"holder in slot {slot} exited: {len(held)} held run(s) or reference(s) let go")
            time.sleep(ZOMBIE_CHECK_S)

    def _let_go(self, held: list[Any]) -> None:
        vol = self.volume
        with vol.lock:
            if vol.closed:
                return
            for thing in held:
                if isinstance(thing, tuple):             # inherited blocks (pblk, n)
                    vol._journal.core.unhold(*thing)
                elif isinstance(thing, list):            # a prepared write's pieces
                    vol.data.abort_write(thing)
                else:                                    # a reference
                    vol.references.release_blocks(thing)

    # ---------------------------------------------------------------- stopping

    def stop(self, *, force: bool = False, timeout: float | None = None) -> bool:
        """Close the volume as ``vol.close`` does; False (still serving) if it refused."""
        vol = self.volume
        if self.fuse is not None and self.fuse.mounted:
            with vol.lock:
                live = [] if vol.closed else vol.references.live()
            if live and not force:
                self.log(f"refusing to stop: {len(live)} live reference(s); the mount stays (--force revokes "
                         f"mappings)")
                return False
            self.fuse.stop()
        try:
            vol.close(force=force, timeout=timeout)
        except BusyError as exc:
            self.log(f"refusing to stop: {exc.strerror}" + ("" if force else " (--force revokes mappings)"))
            return False
        self._stopping = True
        self._zombie_wake.set()
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.close()
        try:
            self._listener.close()
        finally:
            if os.path.exists(self.socket_path):
                os.unlink(self.socket_path)
        with self._lock:
            unused = not any(self.holders.alive(slot) for slot in self.holders.used())
            self.holders.close()
        if unused:
            try:
                os.unlink(self.holders.path)
            except OSError:
                pass
        self.log("stopped")
        self.stopped.set()
        return True

    def stop_in_background(self, *, force: bool = False, timeout: float | None = None) -> None:
        threading.Thread(target=self.stop, kwargs={"force": force, "timeout": timeout}, daemon=True).start()


def serve(pool: str, *, socket_path: str | None = None, force: bool = False, timeout: float | None = None,
          policy: str = "defer", lease_break_s: float = 45.0, discard: bool | None = None,
          mount: str | None = None, mount_options: dict[str, Any] | None = None,
          ready: Callable[[], None] | None = None) -> int:
    """``daxfs serve``: run an arbiter in the foreground until SIGTERM/SIGINT stop it; with
    ``mount``, the volume is also mounted there (FUSE) until then.  ``ready`` is called once
    it serves (``daxfs mount`` tells its parent)."""
    started: list[Server] = []

    def on_signal(signum: int, _frame: object) -> None:
        if not started:
            raise KeyboardInterrupt     # still starting: give up
        started[0].log(f"{signal.Signals(signum).name}: stopping")
        started[0].stop_in_background(force=force, timeout=timeout)

    # Ours before libfuse starts: it takes SIGTERM/SIGHUP for itself only where they are unset.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    server = Server(pool, socket_path=socket_path, policy=policy, lease_break_s=lease_break_s, discard=discard,
                    mount=mount, mount_options=mount_options)
    started.append(server)
    if ready is not None:
        ready()
    server.serve_forever()
    server.stopped.wait()
    return 0
