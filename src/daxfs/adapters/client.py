"""daxfs.connect(): the Volume API in another process, served by ``daxfs serve``.

The client gets the pool's descriptor once and maps it, so it reads file data
straight from the pool (checking the arbiter's change counters, so it never
returns bytes of a block the file no longer owns), lays out its mappings and
pins itself from the extents the arbiter returns after registering them, and
copies large writes straight into blocks the arbiter prepared.  Only
metadata and small writes cross the socket.  Its memory holds its open files'
extents, never the volume's metadata.  This module holds the connection and its
lifetime (requests and replies, events, the holder slot, close, fork); the calls of
the Volume API themselves are ``VolumeCalls`` (client_calls.py).

Errors are the embedded volume's exceptions with the same errno.  If the
arbiter goes away, every call raises ``ServerLost`` (a ConnectionError);
mappings are migrated to private memory (arrays stay valid, detached) and the
client's holder-table slot keeps only its pins, which a restarted arbiter
honours until they are released.
"""

from __future__ import annotations

import errno
import itertools
import mmap
import os
import queue
import select
import socket
import stat as st
import threading
import time
import weakref
from typing import Any

from daxfs.adapters import wire
from daxfs.adapters.client_calls import VolumeCalls
from daxfs.adapters.client_files import ClientFile
from daxfs.adapters.client_refs import ClientMapping, ClientPin
from daxfs.adapters.wire import ServerLost
from daxfs.errors import BusyError
from daxfs.volume import arguments
from daxfs.volume.changes import ChangeTable
from daxfs.volume.exiting import ClosesOnExit
from daxfs.volume.holders import HolderTable, drop_slot_lock, take_slot_lock
from daxfs.volume.pathnames import PathNames

BUSY_S = 0.01       # a client that made a call this recently is busy: its callers read the socket

__all__ = ["Client", "connect", "ServerLost"]

#: Clients connected in this process: a child forked from it gets copies it must never use.
_CLIENTS: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _disown_after_fork() -> None:
    for client in list(_CLIENTS):
        client._disown()


os.register_at_fork(after_in_child=_disown_after_fork)


def connect(pool_or_socket: object, *, name: str | None = None) -> "Client":
    """Connect to the arbiter of a pool (its path) or at a socket (its path)."""
    path = os.fspath(pool_or_socket)  # type: ignore[call-overload]
    path = os.fsdecode(path)
    try:
        is_socket = st.S_ISSOCK(os.stat(path).st_mode)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such pool or socket", path) from None
    return Client(path if is_socket else wire.default_socket(path), name=name)


class _Pending:
    """A reply being waited for: ``wait`` blocks until ``set`` (a lock is cheaper than an Event)."""

    __slots__ = ("_lock", "status", "body")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.status = ""
        self.body: Any = None

    def set(self, status: str, body: Any) -> None:
        self.status, self.body = status, body
        self._lock.release()

    def is_set(self) -> bool:
        return self.status != ""

    def wait(self, timeout: float) -> None:
        if self._lock.acquire(timeout=timeout):
            self._lock.release()


class Client(VolumeCalls, ClosesOnExit, PathNames):
    """A connection to an arbiter, with the ``Volume`` API."""

    def __init__(self, socket_path: str, *, name: str | None = None) -> None:
        self.socket_path = socket_path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(socket_path)
        except FileNotFoundError:
            sock.close()
            raise ServerLost(errno.ECONNREFUSED, "no arbiter serves this pool (daxfs serve POOL)",
                             socket_path) from None
        except PermissionError:
            sock.close()
            raise PermissionError(errno.EACCES, "permission denied: the arbiter's socket is no more open "
                                  "than its pool", socket_path) from None
        except OSError as exc:
            sock.close()
            raise ServerLost(exc.errno or errno.ECONNREFUSED, f"cannot reach the arbiter: {exc.strerror}",
                             socket_path) from None
        self._sock = sock
        self.name = name or f"pid {os.getpid()}"
        wire.send(sock, [1, "hello", {"name": self.name}])
        self._frames = wire.FrameReader(sock, wire.MAX_REPLY, wire.SPIN_REPLY_S)
        try:
            hello, fds = wire.recv_with_fds(sock, self._frames, 3)
        except (EOFError, OSError, wire.ProtocolError) as exc:
            sock.close()
            raise ServerLost(errno.ECONNRESET, f"the arbiter closed the connection ({exc})", socket_path) from None
        if not (isinstance(hello, list) and len(hello) == 3):
            sock.close()
            raise ServerLost(errno.EPROTO, "the arbiter's greeting does not decode", socket_path)
        if hello[1] == "err":
            for fd in fds:
                os.close(fd)
            sock.close()
            raise wire.decode_error(hello[2])
        info = hello[2]
        pool_fd, changes_fd, table_fd = fds
        if info.get("server_pid") == os.getpid():
            self._frames.spin_s = 0.0     # the arbiter runs on threads here: polling would take its GIL
        self.info_ = info
        # Version 2 closes a file with its last write (pwrite's ``close``) and opens for
        # writing without the layout; with an older arbiter neither is asked for.
        version = info.get("version")
        self.version = version if type(version) is int else 1
        self.readonly = bool(info["readonly"])
        self.block_size = int(info["block_size"])
        self.data_offset = int(info["data_offset"])
        self.sync_mode = str(info["sync_mode"])
        self.path = str(info["pool"])
        self.pool_fd = pool_fd
        prot = mmap.PROT_READ if self.readonly else mmap.PROT_READ | mmap.PROT_WRITE
        self._pool_map = mmap.mmap(pool_fd, int(info["pool_size"]), flags=mmap.MAP_SHARED, prot=prot)
        self.pool = memoryview(self._pool_map)
        self.changes = ChangeTable(changes_fd)
        self._slot = int(info["slot"])
        self._table = HolderTable.__new__(HolderTable)
        self._table.path, self._table.fd = "", table_fd
        if not take_slot_lock(table_fd, self._slot):
            self.pool.release()
            self._pool_map.close()
            self.changes.close()
            for fd in (pool_fd, table_fd):
                os.close(fd)
            sock.close()
            raise ServerLost(errno.EPROTO, "the holder slot the arbiter gave is taken", socket_path)
        # Ours until its lock is dropped; after that another process may be given the slot,
        # so nothing here may write or clear it again.
        self._slot_held = True
        # Two locks, neither ever held across a call to the arbiter (a reply may need
        # another thread to read it): ``lock`` guards the tables of files and references,
        # ``view_lock`` the views and extents of each reference (fills are laid in by
        # whichever thread reads them).
        self.lock = threading.RLock()
        self.view_lock = threading.RLock()
        self._early_fills: dict[int, list[tuple[int, int, int]]] = {}
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()      # whoever holds it reads the socket
        self._count_lock = threading.Lock()
        self._callers = 0                       # calls waiting for replies (they read the socket)
        self._last_call = 0.0                   # time.monotonic() of the last call's start
        self._ids = itertools.count(2)
        self._pending: dict[int, _Pending] = {}
        self._events: queue.Queue[Any] = queue.Queue()
        self.refs: dict[int, ClientMapping | ClientPin] = {}
        self._exported = 0                      # closed references whose memory is still mapped
        self._copying: dict[int, list[tuple[int, int]]] = {}   # prepared writes being copied: pool runs
        self._copies_done = threading.Condition(self.lock)
        self.files: set[ClientFile] = set()
        self.lost = False
        self.closed = False
        self._closing = False           # a close() under way: no new reference or copy may start
        self._close_when_idle = False   # left by an exception while pinned: close at the last release
        _CLIENTS.add(self)
        self._reader = threading.Thread(target=self._read_loop, name="daxfs-client-in", daemon=True)
        self._reader.start()
        self._event_thread = threading.Thread(target=self._event_loop, name="daxfs-client-events", daemon=True)
        self._event_thread.start()

    # ---------------------------------------------------------------- calls

    def call(self, op: str, *args: Any) -> Any:
        """One request, its reply (raising the error it carries)."""
        if self.lost:
            raise ServerLost(errno.ECONNRESET, "the arbiter went away", self.socket_path)
        if self.closed:
            raise ValueError("I/O operation on closed volume")
        rid = next(self._ids)
        self._last_call = time.monotonic()
        pending = _Pending()
        self._pending[rid] = pending
        with self._count_lock:
            self._callers += 1         # the background reader leaves the socket to callers
        try:
            try:
                with self._send_lock:
                    self._sock.sendall(wire.pack([rid, op, list(args)]))
            except OSError:
                self._pending.pop(rid, None)
                self._lose()
                raise ServerLost(errno.ECONNRESET, "the arbiter went away", self.socket_path) from None
            self._await(pending)
        finally:
            with self._count_lock:
                self._callers -= 1
        if pending.status == "ok":
            return pending.body
        if pending.status == "lost" or (not pending.is_set() and not self.closed):
            raise ServerLost(errno.ECONNRESET, "the arbiter went away", self.socket_path)
        if not pending.is_set():    # another thread closed the client while this call waited
            raise ValueError("I/O operation on closed volume")
        raise wire.decode_error(pending.body)

    def send_only(self, op: str, *args: Any) -> None:
        """A request whose reply nobody waits for (from finalizers and the event thread)."""
        if self.lost or self.closed or self._sock.fileno() < 0:
            return
        try:
            with self._send_lock:
                self._sock.sendall(wire.pack([0, op, list(args)]))
        except OSError:
            self._lose()

    def _await(self, pending: _Pending) -> None:
        """Wait for a reply, reading the socket ourselves when no other thread is (a thread
        hand-off per call costs more than the call)."""
        while not pending.is_set():
            if not self._recv_lock.acquire(blocking=False):
                # Another thread reads and will hand us the reply if it reads it; if it
                # stops reading first, we take over (so a reply is never left unread).
                pending.wait(0.002)
                continue
            try:
                if not pending.is_set():
                    self._read_one()
            except (EOFError, OSError, wire.ProtocolError):
                self._recv_lock.release()
                if not self.closed:
                    self._lose()
                return
            else:
                self._recv_lock.release()

    def _read_one(self) -> None:
        """Read one frame and deliver it (with the receive lock held)."""
        message = self._frames.next()
        if not (isinstance(message, list) and len(message) == 3):
            raise wire.ProtocolError("reply is not [id, status, body]")
        rid, status, body = message
        if rid == 0:
            if status == "event":
                if isinstance(body, list) and body and body[0] == "fill":
                    self._fill(body)            # laid in now: a write's reply comes after it
                else:
                    self._events.put(body)
            return
        pending = self._pending.pop(rid, None)
        if pending is not None:
            pending.set(status, body)

    def _fill(self, event: list[Any]) -> None:
        """Blocks a write put where a reference showed zeros: show them (or keep them for a
        reference whose reply its caller has not yet turned into an object)."""
        _kind, r, fblk, nblk, pool_offset = event
        with self.view_lock:
            if self.lost:
                return      # (read just as the arbiter was lost: the slot, rewritten, lists none of it)
            ref = self.refs.get(r)
            if ref is None:
                self._early_fills.setdefault(r, []).append((fblk, nblk, pool_offset))
                return
            ref._fill(fblk, nblk, pool_offset)

    def register(self, ref: ClientMapping | ClientPin) -> None:
        """A new reference: from now on events reach it (fills that came first are laid in).
        ValueError, the reference let go at once, once a close has begun: the close has
        counted the references it waits for, and its "bye" lets the arbiter free the rest.
        ServerLost, likewise, once the arbiter is lost: the slot, which ``_lose`` rewrote,
        does not list it, and the next arbiter frees what a slot does not list."""
        with self.view_lock:
            with self.lock:
                if self.lost:
                    ref._drop_unregistered()
                    self._early_fills.pop(ref.r, None)
                    raise ServerLost(errno.ECONNRESET, "the arbiter went away", self.socket_path)
                if self._closing or self.closed:
                    ref._drop_unregistered()
                    self._early_fills.pop(ref.r, None)
                    self.send_only("release", ref.r, True)
                    raise ValueError("I/O operation on closed volume")
                self.refs[ref.r] = ref
            for fill in self._early_fills.pop(ref.r, ()):
                ref._fill(*fill)

    def _read_loop(self) -> None:
        """Between calls, read what the arbiter sends unasked (events, late replies)."""
        poller = select.poll()
        poller.register(self._sock, select.POLLIN | select.POLLHUP | select.POLLERR)
        try:
            while not self.closed and not self.lost:
                if self._callers or time.monotonic() - self._last_call < BUSY_S:
                    # Callers read what arrives meanwhile.  While calls come one after
                    # another, stay off the socket: a reply would wake this thread too, and
                    # the GIL passing between it and the caller costs more than the call.
                    time.sleep(0.005)
                    continue
                if not (self._frames.pending() or poller.poll(50)) or self._callers:
                    continue
                if self._recv_lock.acquire(blocking=False):
                    try:
                        # a caller may have read it meanwhile: look again without waiting
                        if self._frames.pending() or poller.poll(0):
                            self._read_one()
                    finally:
                        self._recv_lock.release()
        except (EOFError, OSError, wire.ProtocolError, ValueError):
            pass
        if not self.closed:
            self._lose()

    def _lose(self) -> None:
        """The arbiter is gone: fail every call, detach mappings, keep only pins in the slot."""
        with self.view_lock, self.lock:
            if self.lost:
                return
            # Mappings first: ``lost`` (which fails every call at once) and the lost replies
            # come only once they are migrated, so a caller told ServerLost finds them revoked.
            try:
                for ref in list(self.refs.values()):
                    if isinstance(ref, ClientMapping):
                        ref._detach_lost()
                self._publish_pins()
            finally:
                self.lost = True
                for pending in list(self._pending.values()):
                    pending.set("lost", None)
                self._pending.clear()
        self._events.put(None)

    def _publish_pins(self) -> None:
        """After the arbiter is lost: the slot lists the pool memory this process may still
        store into, nothing else — pins, released pins and closed mappings whose buffers
        are still exported (each stays in ``refs`` until its view is unmapped), references
        a child forked while they were mapped still shows, and writes copying into
        prepared blocks.  (Live mappings were migrated.)"""
        if not self._slot_held:
            return
        runs = [(p, n) for ref in self.refs.values()
                if isinstance(ref, ClientPin) or (ref.closed and not ref.revoked) or ref.shown_in_children()
                for _f, n, p in ref.pool_runs()]
        runs += [run for copying in self._copying.values() for run in copying]
        if runs or self._exported:
            self._table.write(self._slot, os.getpid(), os.getuid(), os.getgid(), self.name, runs)
        else:
            self._release_slot()

    def _release_slot(self) -> None:
        self._table.clear(self._slot)
        drop_slot_lock(self._table.fd, self._slot)
        self._slot_held = False

    def _event_loop(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            try:
                kind, r = event[0], event[1]
                ref = self.refs.get(r)
                if ref is None:
                    continue
                if kind == "break" and isinstance(ref, ClientMapping):
                    ref._notify_break()
                elif kind == "revoke" and isinstance(ref, ClientMapping):
                    ref._revoked_by_server(event[2])
                elif kind == "poison":
                    ref._poison(event[2], event[3])
            except Exception:        # a holder's callback failing must not stop the events
                pass

    def republish(self) -> None:
        """What the slot lists changed (a forked child that showed a reference is gone)."""
        with self.lock:
            if self.lost or self.closed:
                self._publish_pins()

    def ref_done(self, ref: ClientMapping | ClientPin) -> None:
        """A reference's memory is gone: forget it (and, with no arbiter or no connection to
        it, the slot keeps only what is left, or goes)."""
        with self.lock:
            self.refs.pop(ref.r, None)
            if self.lost or self.closed:
                self._publish_pins()
        self._close_if_idle()

    def copying(self, token: int, runs: list[tuple[int, int]] | None) -> None:
        """A prepared write's blocks (pool offset, length) this process stores into until
        ``copying(token, None)``: the arbiter lists them in the slot, and if it is lost
        before the copy ends, the slot must go on listing them, so that the next arbiter
        gives them to no one while the stores may still land."""
        with self.lock:
            if runs is not None:
                # (lost or closed since the blocks were prepared: no slot or session keeps them)
                if self.lost:
                    raise ServerLost(errno.ECONNRESET, "the arbiter went away", self.socket_path)
                if self.closed or self._closing:
                    raise ValueError("I/O operation on closed volume")
                self._copying[token] = runs
                return
            self._copying.pop(token, None)
            self._copies_done.notify_all()
            if self.lost:
                self._publish_pins()

    def export_pending(self, delta: int) -> None:
        with self.lock:
            self._exported += delta
            if self.lost or self.closed:
                self._publish_pins()
        self._close_if_idle()

    # ---------------------------------------------------------------- lifetime

    def close(self, *, force: bool = False, timeout: float | None = None) -> None:
        """Disconnect.  BusyError while mappings or pins live, unless ``force`` (mappings are
        migrated to private memory; pins, never revoked, are waited for up to ``timeout``).
        Large writes under way in other threads end first (their stores, then their commit),
        waited for up to ``timeout`` too (BusyError then, the client still open);
        once a close has begun, no new mapping, pin or large write may start, and a second
        close waits for the first one's outcome."""
        timeout = arguments.timeout(timeout)
        with self._copies_done:
            while self._closing:
                self._copies_done.wait()
            if self.closed:
                return
            live = [ref for ref in self.refs.values() if ref.live]
            if live and not force:
                raise BusyError("volume has live references: " + ", ".join(repr(r) for r in live[:5]),
                                holders=[self.name], filename=self.path)
            self._closing = True
        try:
            # What may make the close give up is waited for first, so that a close that gives
            # up has changed nothing: pins (never revoked) and other threads' large writes (none
            # starts once a close has begun), each up to the timeout.  Then mappings migrate.
            deadline = None if timeout is None else time.monotonic() + timeout
            while any(isinstance(ref, ClientPin) and ref.live for ref in list(self.refs.values())):
                if deadline is not None and time.monotonic() >= deadline:
                    raise BusyError("pins still held after the close timeout", holders=[self.name],
                                    filename=self.path)
                time.sleep(0.01)
            if deadline is not None:
                with self._copies_done:
                    if not self._copies_done.wait_for(lambda: not self._copying,
                                                      max(0.0, deadline - time.monotonic())):
                        raise BusyError("a large write in another thread still copies into the pool "
                                        "after the close timeout", holders=[self.name], filename=self.path)
            for ref in live:
                if isinstance(ref, ClientMapping):
                    ref.revoke("migrate")
            for f in list(self.files):
                f._detach()
            with self._copies_done:
                # A large write in another thread (stores into prepared blocks, then its
                # commit) ends first: "bye" (or, with the arbiter lost, clearing the slot)
                # lets those blocks go to other files.
                self._copies_done.wait_for(lambda: not self._copying)
                self.closed = True
                if not self.lost:
                    self._say_bye()
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._sock.close()
                self._events.put(None)
                # (a child forked while views were mapped shares the slot's lock: unlocked,
                # it would be unlocked for the child too; it goes with the last such child)
                if not self._exported and self._slot_held and \
                        not any(ref.shown_in_children() for ref in self.refs.values()):
                    self._release_slot()
                self.changes.close()
        finally:
            with self._copies_done:
                self._closing = False
                self._copies_done.notify_all()

    def _say_bye(self) -> None:
        # Not send_only: on a broken socket it would treat the arbiter as lost, taking the
        # view lock while ``lock`` is held, the reverse of register()'s order.  An arbiter
        # gone meanwhile frees this connection's holds when it sees the socket close, or its
        # successor reads them in the slot.
        try:
            with self._send_lock:
                self._sock.sendall(wire.pack([0, "bye", []]))
        except OSError:
            pass

    def _disown(self) -> None:
        """In a child forked from this client's process: this copy shares the parent's
        socket, holder slot lock and views.  It is closed without a word: nothing sent
        (its finalizers' releases would free the parent's blocks), no shutdown of the
        shared socket, no unlock or clear of the parent's slot.  Locks a parent thread
        held at the fork are made again (that thread does not exist here)."""
        self.lock = threading.RLock()
        self.view_lock = threading.RLock()
        self._copies_done = threading.Condition(self.lock)
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.closed = True
        self._slot_held = False
        self._copying.clear()
        for f in list(self.files):
            f._detach()

    def _defer_close(self) -> None:
        with self.lock:
            self._close_when_idle = True
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        with self.lock:
            if not self._close_when_idle or self.closed or any(ref.live for ref in self.refs.values()):
                return
            self._close_when_idle = False
        self._close_in_background()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("lost" if self.lost else ("ro" if self.readonly else "rw"))
        return f"<daxfs.Client {self.name!r} of {self.path!r} {state}>"
