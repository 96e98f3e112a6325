"""Session: one client connection of the arbiter, and the requests it may make.

Each connection is a holder: what it opens, maps, pins and prepares belongs
to it, and is released when it disconnects.  If its process is still alive
then (its holder-table lock is held: it may still have pool memory mapped),
the blocks stay held until it dies.  Every request is checked before it
touches the volume: the op must be known, its arguments of the right types
(the volume converts and range-checks them as ``os`` does), and the peer's
credentials must allow it.  A frame that does not decode, or is too large,
drops the connection; an error in a request is its reply, and nothing else.

Threads: the arbiter's loop reads requests of every session and runs them
(``readable``); replies and events go out at once when the socket takes them,
else a thread of the session's own (started then) sends them from a bounded
queue (a client that never reads is dropped, never waited for).  A request
that is about to block in a policy wait first hands the loop to a new thread,
so the same client's release (and every other client) is still served while
it waits.
"""

from __future__ import annotations

import collections
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from daxfs.access.file import File
from daxfs.adapters import wire
from daxfs.adapters.requests import _REPLIED, Requests, SessionHolder
from daxfs.volume import permissions
from daxfs.volume.permissions import Credentials
from daxfs.volume.references import Reference
from daxfs.volume.waits import before_wait

# The Server this module serves: not imported, as server.py imports this module.
Server = Any


MAX_QUEUED = 64 << 20            # bytes of replies and events a client may leave unread
_PEERCRED = struct.Struct("3i")


class Session:
    """One connection: its holder, handles, references and prepared writes."""

    def __init__(self, server: "Server", sock: socket.socket, sid: int) -> None:
        self.server = server
        self.vol = server.volume
        self.sock = sock
        self._frames = wire.FrameReader(sock, wire.MAX_REQUEST)
        self.sid = sid
        pid, uid, gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        self.pid, self.uid, self.gid = pid, uid, gid
        self.local = pid == os.getpid()         # a client on threads of the arbiter's process
        self.creds = Credentials(uid, gid, frozenset(_groups(pid)))
        self.holder = SessionHolder(f"pid {pid}", pid, uid)
        self.holders: dict[str, SessionHolder] = {}
        self.files: dict[int, File] = {}
        self.refs: dict[int, Reference] = {}
        self.prepared: dict[int, tuple[int, int, int, list[tuple[int, int, int, int]]]] = {}
        self.held: dict[int, list[tuple[int, int]]] = {}    # rid or -token -> pool byte runs
        self.slot = -1
        self.readonly = True
        self._next = 1                         # handle, reference and token numbers
        self._out: collections.deque[bytes] = collections.deque()
        self._out_bytes = 0
        self._out_cond = threading.Condition()
        self._writing = False                  # the writer thread is sending (outside the lock)
        self._writer: threading.Thread | None = None
        self._closed = False
        #: what it held was let go (it disconnected): a request of it that was waiting
        #: (the volume's lock let go) undoes what it gets after (``Requests._unless_gone``)
        self.released = False
        self.ops: dict[str, Callable[..., Any]] = Requests(self).ops

    # ---------------------------------------------------------------- lifetime

    def _hand_over(self) -> None:
        """This request is about to block in a policy wait: the loop goes on in a new thread."""
        if not self._closed:
            self.server.hand_over(self)

    def readable(self, owner: Any) -> None:
        """The loop saw data on the socket: read it and run the requests it completes."""
        try:
            try:
                chunk = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            if not chunk:
                raise EOFError("peer closed the connection")
            self._frames.feed(chunk)
        except (EOFError, OSError) as exc:
            self._drop(exc)
            return
        self.run_frames(owner)

    def run_frames(self, owner: Any) -> None:
        """Run the whole requests buffered, while ``owner`` still owns the loop (after a
        hand-over the new owner runs the rest)."""
        server = self.server
        try:
            while server._loop_owner is owner and not self._closed:
                message = self._frames.pop()
                if message is wire.NOTHING:
                    return
                if self.slot < 0:
                    self._hello(message)
                else:
                    self._handle(message)
        except Exception as exc:        # EOF, a broken socket, garbage, or a bug outside any request
            self._drop(exc)

    def _drop(self, exc: BaseException) -> None:
        if self._closed:
            return
        self.server.log(f"client {self.holder} (pid {self.pid}, uid {self.uid}) "
                        f"{'disconnected' if isinstance(exc, EOFError) else f'dropped: {exc}'}")
        self.close()

    def _hello(self, message: Any) -> None:
        if not (isinstance(message, list) and len(message) == 3 and message[1] == "hello"
                and isinstance(message[2], dict)):
            raise wire.ProtocolError("the first frame must be a hello")
        name = message[2].get("name")
        if isinstance(name, str) and name:
            self.holder.name = name[:200]
        server = self.server
        access = permissions.pool_access(server.pool_mode, server.pool_uid, server.pool_gid, self.creds)
        if not access & permissions.R:
            wire.send(self.sock, [message[0], "err", wire.encode_error(
                PermissionError(13, "permission denied: the pool is not readable by this user", server.pool_path))])
            raise EOFError("peer may not read the pool")
        self.readonly = not access & permissions.W or self.vol.readonly
        self.slot = server.take_slot(self)
        pool_fd = os.open(server.pool_path, (os.O_RDONLY if self.readonly else os.O_RDWR) | os.O_CLOEXEC)
        table_fd = server.holders.reopen()      # its own open: its own lock
        try:
            journal = self.vol._journal
            wire.send(self.sock, [message[0], "ok", {
                "version": 2, "slot": self.slot, "readonly": self.readonly,
                "block_size": journal.block_size, "data_offset": journal.layout.data_offset,
                "pool_size": journal.pool.size, "sync_mode": journal.pool.sync_mode,
                "durability": self.vol.durability, "policy": self.vol.policy,
                "server_pid": os.getpid(), "pool": server.pool_path}],
                fds=[pool_fd, server.changes.fd, table_fd])
        finally:
            os.close(pool_fd)
            os.close(table_fd)
        server.log(f"client {self.holder} (pid {self.pid}, uid {self.uid}) connected, slot {self.slot}")

    def _handle(self, message: Any) -> None:
        if not (isinstance(message, list) and len(message) == 3 and isinstance(message[0], int)
                and isinstance(message[1], str) and isinstance(message[2], list)):
            raise wire.ProtocolError("a request is [id, op, [args]]")
        rid, op, args = message
        handler = self.ops.get(op)
        if handler is None:
            self.reply(rid, "err", wire.encode_error(ValueError(f"unknown operation {op!r}")))
            return
        before_wait(self._hand_over)
        try:
            result = handler(rid, *args)
        except Exception as exc:
            # An error is the request's reply, whatever raised it: a bug in one request must
            # not take the connection (and the client waiting on it) down with it.
            if rid:
                self.reply(rid, "err", wire.encode_error(exc))
        else:
            # Request 0 waits for no reply (a close, a release from a finalizer): sending one
            # would only wake the client to drop it.
            if rid and result is not _REPLIED:
                self.reply(rid, "ok", result)
        finally:
            before_wait(None)

    def reply(self, rid: int, status: str, body: Any) -> None:
        self._enqueue(wire.pack([rid, status, body]))

    def event(self, body: list[Any]) -> None:
        self._enqueue(wire.pack([0, "event", body]))

    def _enqueue(self, data: bytes) -> None:
        with self._out_cond:
            if self._closed:
                return
            if not self._out and not self._writing:
                # The common case: send now from this thread (no hand-off to the writer).
                try:
                    sent = self.sock.send(data, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._shutdown_socket()
                    return
                if sent == len(data):
                    return
                data = data[sent:]
            if self._out_bytes + len(data) > MAX_QUEUED:
                self.server.log(f"client {self.holder} (pid {self.pid}) does not read its replies: dropped")
                self._shutdown_socket()
                return
            self._out.append(data)
            self._out_bytes += len(data)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name=f"daxfs-session-{self.sid}-out",
                                                daemon=True)
                self._writer.start()
            self._out_cond.notify()

    def _write_loop(self) -> None:
        while True:
            with self._out_cond:
                while not self._out and not self._closed:
                    self._out_cond.wait()
                if not self._out:
                    return
                data = self._out.popleft()
                self._out_bytes -= len(data)
                self._writing = True
            try:
                self.sock.sendall(data)
            except OSError:
                self._shutdown_socket()
                return
            finally:
                with self._out_cond:
                    self._writing = False

    def _shutdown_socket(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        """The client went away: release what it held (or keep it held while it lives)."""
        with self._out_cond:
            if self._closed:
                return
            self._closed = True
            self._out_cond.notify_all()
        self._shutdown_socket()
        self.server.unwatch(self.sock)
        self.sock.close()
        self.server.session_ended(self)

    def next_id(self) -> int:
        n = self._next
        self._next += 1
        return n

    # ---------------------------------------------------------------- the holder slot

    def publish_slot(self) -> None:
        """Write what this client holds to its holder-table slot (before it may use it).  Not
        once the connection ended: the slot is then the living client's own to rewrite (it
        lists less as it lets go), or the arbiter clears it when the client is gone."""
        if self.slot >= 0 and not self.released:
            runs = [run for runs in self.held.values() for run in runs]
            self.server.holders.write(self.slot, self.pid, self.uid, self.gid, self.holder.name, runs)

    def _track(self, key: int, ref_or_pieces: Any) -> None:
        layout = self.vol._journal.layout
        if isinstance(ref_or_pieces, Reference):
            runs = [(layout.block_offset(p), k * layout.block_size) for p, k in ref_or_pieces.held or ()]
        else:
            runs = [(layout.block_offset(p), k * layout.block_size) for _f, k, p, _fl in ref_or_pieces]
        self.held[key] = runs
        self.publish_slot()

    def _forget(self, key: int) -> None:
        if self.held.pop(key, None) is not None:
            self.publish_slot()

    # ---------------------------------------------------------------- end of the connection

    def release_all(self, alive: bool) -> list[Any]:
        """Let go of everything; returns what must stay held while the process lives."""
        vol = self.vol
        table = vol.references
        keep: list[Any] = []
        with vol.lock:
            self.released = True
            for r, ref in list(self.refs.items()):
                table.release(ref, unmapped=not alive)
                if ref.held is not None:
                    if alive:
                        keep.append(ref)
                    else:
                        table.release_blocks(ref)
            self.refs.clear()
            for token, (_h, _off, _n, pieces) in list(self.prepared.items()):
                if alive:
                    keep.append(pieces)
                else:
                    vol.data.abort_write(pieces)
            self.prepared.clear()
            for f in list(self.files.values()):
                try:
                    f.close()
                except (OSError, ValueError):
                    pass
            self.files.clear()
        return keep




def _groups(pid: int) -> list[int]:
    """The supplementary groups of process ``pid`` (from /proc), for the group permission bits."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("Groups:"):
                    return [int(g) for g in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []

