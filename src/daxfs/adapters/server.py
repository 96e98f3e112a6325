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

import collections
import os
import selectors
import signal
import socket
import stat as st
import sys
import threading
import time
from collections.abc import Callable
from time import perf_counter
from typing import Any, TextIO

from daxfs.adapters import wire
from daxfs.adapters.session import Session
from daxfs.core.badblocks import BlockRuns
from daxfs.errors import BusyError
from daxfs.volume.changes import ChangeTable
from daxfs.volume.holders import SLOTS, HolderTable, holders_path
from daxfs.volume.opening import open_keeping_holders

ZOMBIE_CHECK_S = 0.01
SPIN_REQUEST_S = 100e-6 if wire.SPIN_REPLY_S else 0.0     # how long the loop looks for a client's next request
# A sched_yield that came back this late gave the CPU to another task (more runnable tasks
# than CPUs: clients, often): the loop stops looking and sleeps, leaving the CPU to them.
YIELDED_S = 20e-6
LOG_BACKLOG = 10_000             # log lines kept while stderr is not drained


class Server:
    """One arbiter: a volume, a listening socket and its sessions."""

    def __init__(self, pool: str, *, socket_path: str | None = None, policy: str = "defer",
                 durability: str = "sync", lease_break_s: float = 45.0, log: TextIO | None = sys.stderr,
                 discard: bool | None = None, mount: str | None = None,
                 mount_options: dict[str, Any] | None = None) -> None:
        self.pool_path = os.path.abspath(pool)
        self.socket_path = socket_path or wire.default_socket(self.pool_path)
        self._log = log
        self._log_lines: collections.deque[str] = collections.deque()
        self._log_cond = threading.Condition()
        self._log_thread: threading.Thread | None = None
        self._log_queued = self._log_written = self._log_dropped = 0
        # Online discard starts only after _inherit: blocks the mount frees (orphans) may be
        # pinned by a live client of an earlier arbiter until they are held again.
        self.volume = open_keeping_holders(self.pool_path, policy=policy, durability=durability,
                                           lease_break_s=lease_break_s, discard=False)
        try:
            info = os.stat(self.pool_path)
            self.pool_mode, self.pool_uid, self.pool_gid = st.S_IMODE(info.st_mode), info.st_uid, info.st_gid
            self.changes = ChangeTable()
            self.volume._journal.changes = self.changes
            os.makedirs(os.path.dirname(holders_path(self.pool_path)), exist_ok=True)
            self.holders = HolderTable(holders_path(self.pool_path), create=True, like=info)
            self._lock = threading.Lock()
            self._sessions: dict[int, Session] = {}
            self._slots: set[int] = set()
            self._zombies: list[tuple[int, list[Any]]] = []    # (slot, references or runs held)
            self._zombie_wake = threading.Event()
            self._next_sid = 1
            self._stopping = False
            # The request loop (serve_forever): one thread at a time owns it.
            self._selector = selectors.DefaultSelector()
            self._selector_lock = threading.Lock()      # register/unregister from any thread
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._loop_owner: threading.Thread | None = None
            self._backlog: collections.deque[Session] = collections.deque()   # frames buffered, unrun
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
            for name in ("_selector", "_wake_r", "_wake_w"):
                if hasattr(self, name):
                    getattr(self, name).close()
            self.volume.close(force=True, timeout=0)
            self.flush_log(1.0)
            raise

    def log(self, line: str) -> None:
        """One line to the log, written by a thread of its own: a stderr nobody drains (a
        full pipe) must never stop the loop that serves every client.  Past LOG_BACKLOG
        unwritten lines, new ones are counted and dropped."""
        if self._log is None:
            return
        with self._log_cond:
            if len(self._log_lines) >= LOG_BACKLOG:
                self._log_dropped += 1
                return
            self._log_lines.append(f"daxfs serve: {line}")
            self._log_queued += 1
            self._log_cond.notify()
            if self._log_thread is None:
                self._log_thread = threading.Thread(target=self._write_log, name="daxfs-serve-log", daemon=True)
                self._log_thread.start()

    def _write_log(self) -> None:
        out = self._log
        while True:
            with self._log_cond:
                while not self._log_lines:
                    self._log_cond.wait()
                line = self._log_lines.popleft()
                dropped, self._log_dropped = self._log_dropped, 0
            try:
                if dropped:
                    print(f"daxfs serve: ({dropped} log line(s) dropped: the log was not read)", file=out)
                print(line, file=out, flush=True)
            except (OSError, ValueError):
                pass
            with self._log_cond:
                self._log_written += 1
                self._log_cond.notify_all()

    def flush_log(self, timeout: float = 5.0) -> None:
        """Wait (a while) for the lines logged so far to be written."""
        with self._log_cond:
            self._log_cond.wait_for(lambda: self._log_written >= self._log_queued, timeout)

    # ---------------------------------------------------------------- start

    def _inherit(self) -> None:
        """Keep busy what live clients of an earlier arbiter still hold; forget dead slots."""
        journal = self.volume._journal
        layout = journal.layout
        bs = layout.block_size
        with journal.lock:
            for slot in range(SLOTS):
                found = self.holders.read(slot)     # (once: a read checks the slot's CRC)
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
        # No more open than the pool: connecting needs write access to the socket file.  The
        # file is changed through a descriptor of what was checked to be a socket, never by
        # path: whoever may write the directory could have put a link to another file there
        # since the bind, to have it given away (the arbiter often runs as root).
        try:
            node = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            sock.close()
            raise
        try:
            info = os.fstat(node)
            if not st.S_ISSOCK(info.st_mode) or info.st_nlink != 1:
                sock.close()
                raise BusyError("the arbiter's socket was replaced while it was made", filename=path)
            here = f"/proc/self/fd/{node}"
            try:
                os.chown(here, self.pool_uid, self.pool_gid)
            except PermissionError:
                pass
            os.chmod(here, self.pool_mode & 0o666)
        finally:
            os.close(node)
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
        """Serve clients until ``stop`` succeeds (SIGTERM/SIGINT call it).

        One thread runs every client's requests, in turn as they arrive: passing the GIL
        between a thread per client costs a wake-up per request, more than most requests.
        A request about to block in a policy wait first hands the loop to a new thread
        (``hand_over``); this call then returns once that request is done, and ``stopped``
        tells when the arbiter has stopped."""
        self.log(f"serving {self.pool_path} on {self.socket_path} (pid {os.getpid()})")
        self._listener.setblocking(False)
        with self._selector_lock:
            self._selector.register(self._listener, selectors.EVENT_READ, None)
            self._selector.register(self._wake_r, selectors.EVENT_READ, self._wake_r)
        self._loop_owner = threading.current_thread()
        self._run_loop()

    def _run_loop(self) -> None:
        me = threading.current_thread()
        selector = self._selector
        served = False
        try:
            while not self._stopping and self._loop_owner is me:
                while self._backlog and self._loop_owner is me:
                    self._backlog.popleft().run_frames(me)
                events = selector.select(0)
                if not events and served:
                    # A client just answered usually asks again within microseconds: look
                    # for it a while before sleeping (see wire.SPIN_REPLY_S), yielding the
                    # CPU to anything runnable (on a busy machine, the client itself).
                    t0 = now = perf_counter()
                    while not events and now - t0 < SPIN_REQUEST_S:
                        os.sched_yield()
                        then, now = now, perf_counter()
                        if now - then > YIELDED_S:
                            break       # the yield gave the CPU away: it is wanted, sleep below
                        events = selector.select(0)
                if not events:
                    events = selector.select(0.5)
                served = False
                for key, _mask in events:
                    if self._loop_owner is not me or self._stopping:
                        break
                    if key.data is None:
                        self._accept()
                    elif key.data is self._wake_r:
                        self._drain_wake()
                    else:
                        key.data.readable(me)
                        served = not key.data.local     # (spinning would take a local client's GIL)
        finally:
            if self._stopping and self._loop_owner is me:
                self._close_loop()

    def _accept(self) -> None:
        try:
            conn, _addr = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            if self._stopping:
                return
            raise
        conn.settimeout(None)
        with self._lock:
            sid = self._next_sid
            self._next_sid += 1
            session = Session(self, conn, sid)
            self._sessions[sid] = session
        with self._selector_lock:
            self._selector.register(conn, selectors.EVENT_READ, session)

    def unwatch(self, sock: socket.socket) -> None:
        """Stop reading ``sock`` (before it is closed: its number may be reused at once)."""
        with self._selector_lock:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass

    def hand_over(self, session: Session) -> None:
        """The loop's thread is about to block in ``session``'s request: a new thread takes
        the loop (and the frames of that session already read), so the requests that would
        end the wait are still served."""
        if self._loop_owner is not threading.current_thread() or self._stopping:
            return
        if session._frames.pending():
            self._backlog.append(session)
        thread = threading.Thread(target=self._run_loop, name="daxfs-serve", daemon=True)
        self._loop_owner = thread
        thread.start()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _close_loop(self) -> None:
        with self._selector_lock:
            self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

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
                    self._let_go(self._unlisted(slot, held))
                    continue
                self._let_go(held)
                with self._lock:
                    self._zombies.remove(entry)
                    self.holders.clear(slot)
                    self._slots.discard(slot)
                self.log(f"holder in slot {slot} exited: {len(held)} held run(s) or reference(s) let go")
            time.sleep(ZOMBIE_CHECK_S)

    def _unlisted(self, slot: int, held: list[Any]) -> list[Any]:
        """What a living zombie's slot lists no more, taken out of ``held`` (to let go of now,
        not when it exits).  A client that lost its arbiter rewrites its slot as it lets go
        of pins and views, and a slot lists at least what its process may still touch; a
        slot that cannot be read lists the whole pool."""
        found, trusted = self.holders.read_checked(slot)
        if not trusted:
            return []       # (an older client's slot: kept whole until it exits, as before)
        layout = self.volume._journal.layout
        bs, base = layout.block_size, layout.data_offset
        listed = BlockRuns()                             # every data block a listed byte is in
        for off, n in found[3] if found is not None else ():
            lo, hi = max(0, (off - base) // bs), min(layout.data_blocks, -(-(off + n - base) // bs))
            if hi > lo:
                listed.add(lo, hi - lo)
        kept: list[Any] = []
        gone: list[Any] = []
        for thing in held:
            if isinstance(thing, tuple):                 # inherited blocks (pblk, n): split, exactly
                kept += listed.parts(*thing)
                gone += listed.outside(*thing)
                continue
            if isinstance(thing, list):                  # a prepared write's pieces
                runs = [(p, k) for _f, k, p, _fl in thing]
            else:                                        # a reference
                runs = list(thing.held or ())
            touched = any(listed.overlaps(p, k) for p, k in runs)
            (kept if touched else gone).append(thing)
        if gone:
            with self._lock:
                held[:] = kept
        return gone

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
        self.unwatch(self._listener)
        if self._loop_owner is None:    # never served
            self._close_loop()
        else:
            self._wake()                # the loop sees _stopping and ends
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
        self.flush_log()
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
