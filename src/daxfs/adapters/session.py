"""Session: one client connection of the arbiter, and the requests it may make.

Each connection is a holder: what it opens, maps, pins and prepares belongs
to it, and is released when it disconnects.  If its process is still alive
then (its holder-table lock is held: it may still have pool memory mapped),
the blocks stay held until it dies.  Every request is checked before it
touches the volume: the op must be known, its arguments of the right types
(the volume converts and range-checks them as ``os`` does), and the peer's
credentials must allow it.  A frame that does not decode, or is too large,
drops the connection; an error in a request is its reply, and nothing else.

Threads: one reads requests and runs them; one writes replies and events from
a bounded queue (a client that never reads is dropped, never waited for).
A request that is about to block in a policy wait first hands reading to a
new thread, so the same client's release (and every other client) is still
served while it waits.
"""

from __future__ import annotations

import collections
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daxfs._types import Stat
from daxfs.access.file import File
from daxfs.adapters import wire
from daxfs.volume import arguments, permissions
from daxfs.volume.permissions import Credentials
from daxfs.volume.references import Reference, before_wait

if TYPE_CHECKING:
    from daxfs.adapters.server import Server

MAX_QUEUED = 64 << 20            # bytes of replies and events a client may leave unread
_PEERCRED = struct.Struct("3i")


class SessionHolder:
    """A client (or a named holder inside it) as the volume's reference table sees it."""

    def __init__(self, name: str, pid: int, uid: int) -> None:
        self.name = name
        self.pid = pid
        self.uid = uid
        self.owned: set[Any] = set()

    def __str__(self) -> str:
        return self.name


class RemoteView:
    """Memory in the client's process: blocks to show and revocations become events."""

    def __init__(self, session: "Session", rid: int, ref: Reference) -> None:
        self._session = session
        self._rid = rid
        self._ref = ref

    def map_pool(self, offset: int, length: int, pool_offset: int, *, populate: bool = False) -> None:
        session = self._session
        session.held.setdefault(self._rid, []).append((pool_offset, length))
        session.publish_slot()                     # recorded before the client can use them
        session.event(["fill", self._rid, self._ref.first_block + offset // self._ref.block_size,
                       length // self._ref.block_size, pool_offset])

    def map_zero(self, offset: int, length: int) -> None:
        return None                                # the reply described the zeros already

    def migrate(self) -> bool:
        self._session.event(["revoke", self._rid, "migrate"])
        return False                               # held until the client says it let go

    def invalidate(self) -> bool:
        self._session.event(["revoke", self._rid, "invalidate"])
        return False


def _str(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"{what} must be str, not {type(value).__name__}")


def _opt_str(value: object, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _bool(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"{what} must be bool, not {type(value).__name__}")


def _stat_list(stat: Stat) -> list[int]:
    return list(stat)


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
        self.creds = Credentials(uid, gid, frozenset(_groups(pid)))
        self.holder = SessionHolder(f"pid {pid}", pid, uid)
        self.holders: dict[str, SessionHolder] = {}
        self.files: dict[int, File] = {}
        self.refs: dict[int, Reference] = {}
        self.prepared: dict[int, tuple[int, int, int, list[tuple[int, int, int, int]]]] = {}
        self.held: dict[int, list[tuple[int, int]]] = {}    # rid or -token -> pool byte runs
        self.slot = -1
        self.readonly = True
        self._next = 1
        self._out: collections.deque[bytes] = collections.deque()
        self._out_bytes = 0
        self._out_cond = threading.Condition()
        self._writing = False                  # the writer thread is sending (outside the lock)
        self._closed = False
        self._reader: threading.Thread | None = None
        self.ops: dict[str, Callable[..., Any]] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("op_")}

    # ---------------------------------------------------------------- lifetime

    def start(self) -> None:
        threading.Thread(target=self._write_loop, name=f"daxfs-session-{self.sid}-out", daemon=True).start()
        self._spawn_reader()

    def _spawn_reader(self) -> None:
        thread = threading.Thread(target=self._read_loop, name=f"daxfs-session-{self.sid}-in", daemon=True)
        self._reader = thread
        thread.start()

    def _hand_over(self) -> None:
        """This reader is about to block in a policy wait: let a new thread read on."""
        if self._reader is threading.current_thread() and not self._closed:
            self._spawn_reader()

    def _read_loop(self) -> None:
        me = threading.current_thread()
        try:
            if self.slot < 0:
                self._hello()
            while self._reader is me and not self._closed:
                message = self._frames.next()
                self._handle(message)
        except (EOFError, OSError, wire.ProtocolError) as exc:
            if self._reader is me:
                self.server.log(f"client {self.holder} (pid {self.pid}, uid {self.uid}) "
                                f"{'disconnected' if isinstance(exc, EOFError) else f'dropped: {exc}'}")
                self.close()
        finally:
            before_wait(None)

    def _hello(self) -> None:
        message = self._frames.next()
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
        table_fd = os.open(server.holders.path, os.O_RDWR | os.O_CLOEXEC)  # its own open: its own lock
        try:
            journal = self.vol._journal
            wire.send(self.sock, [message[0], "ok", {
                "version": 1, "slot": self.slot, "readonly": self.readonly,
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
        except TypeError as exc:
            self.reply(rid, "err", wire.encode_error(exc))
        except (OSError, ValueError, OverflowError, KeyError, IndexError, RuntimeError, NotImplementedError) as exc:
            self.reply(rid, "err", wire.encode_error(exc))
        else:
            if result is not _REPLIED:
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
        self.sock.close()
        self.server.session_ended(self)

    # ---------------------------------------------------------------- the holder slot

    def publish_slot(self) -> None:
        """Write what this client holds to its holder-table slot (before it may use it)."""
        if self.slot >= 0:
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

    # ---------------------------------------------------------------- argument helpers

    def _file(self, h: object) -> File:
        f = self.files.get(h) if isinstance(h, int) else None
        if f is None:
            raise OSError(9, "bad file handle")
        return f

    def _target(self, arg: object, write: bool) -> object:
        """A clone/copy argument: a path (checked against the peer) or ``{"h": handle}``."""
        if isinstance(arg, dict) and set(arg) == {"h"}:
            return self._file(arg["h"])
        path = _str(arg, "path")
        core = self.vol._journal.core
        permissions.may_open(core, path, self.creds, read=not write, write=write, create=False)
        return path

    def _sub_holder(self, name: object) -> SessionHolder:
        if name is None:
            return self.holder
        key = _str(name, "holder name")[:200]
        found = self.holders.get(key)
        if found is None:
            found = self.holders[key] = SessionHolder(key, self.pid, self.uid)
        return found

    def _creator(self, umask: object) -> tuple[int, int, int]:
        return self.uid, self.gid, arguments.integer(umask) & 0o777

    def _writable(self, path: str | None = None) -> None:
        if self.readonly:
            raise OSError(30, "read-only: this user may not write the pool", path)

    def _layout(self, f: File) -> dict[str, Any]:
        """What a client caches of an open file: the change counter, stat and extents."""
        journal = self.vol._journal
        node = journal.node(f.ino)
        return {"counter": self.server.changes.get(f.ino), "stat": _stat_list(journal.stat_of(node)),
                "extents": node.extents.to_flat() if node.extents is not None else []}

    # ---------------------------------------------------------------- namespace

    def op_stat(self, rid: int, path: object) -> Any:
        p = _str(path, "path")
        with self.vol.lock:
            permissions.walk(self.vol._journal.core, p, self.creds)
            return _stat_list(self.vol.stat(p))

    def op_listdir(self, rid: int, path: object) -> Any:
        p = _str(path, "path")
        with self.vol.lock:
            permissions.may_list(self.vol._journal.core, p, self.creds)
            return self.vol.listdir(p)

    def op_mkdir(self, rid: int, path: object, mode: object, parents: object, exist_ok: object, umask: object) -> Any:
        p = _str(path, "path")
        self._writable(p)
        with self.vol.lock:
            permissions.may_change_name(self.vol._journal.core, p, self.creds)
            self.vol.namespace.mkdir(p, arguments.mode_bits(mode), parents=_bool(parents, "parents"),
                                     exist_ok=_bool(exist_ok, "exist_ok"), creator=self._creator(umask))

    def op_rmdir(self, rid: int, path: object) -> Any:
        p = _str(path, "path")
        self._writable(p)
        with self.vol.lock:
            permissions.may_change_name(self.vol._journal.core, p, self.creds)
            self.vol.rmdir(p)

    def op_unlink(self, rid: int, path: object, policy: object) -> Any:
        p = _str(path, "path")
        self._writable(p)
        with self.vol.lock:
            permissions.may_change_name(self.vol._journal.core, p, self.creds)
            self.vol.unlink(p, policy=_opt_str(policy, "policy"))

    def op_rename(self, rid: int, src: object, dst: object, replace: object) -> Any:
        s, d = _str(src, "src"), _str(dst, "dst")
        self._writable(s)
        with self.vol.lock:
            core = self.vol._journal.core
            permissions.may_change_name(core, s, self.creds)
            permissions.may_change_name(core, d, self.creds)
            self.vol.rename(s, d, replace=_bool(replace, "replace"))

    def op_link(self, rid: int, src: object, dst: object) -> Any:
        s, d = _str(src, "src"), _str(dst, "dst")
        self._writable(s)
        with self.vol.lock:
            core = self.vol._journal.core
            permissions.walk(core, s, self.creds)
            permissions.may_change_name(core, d, self.creds)
            self.vol.link(s, d)

    def op_chmod(self, rid: int, path: object, mode: object) -> Any:
        p = _str(path, "path")
        self._writable(p)
        with self.vol.lock:
            permissions.may_setattr(self.vol._journal.core, p, self.creds, mode=True)
            self.vol.chmod(p, mode)  # type: ignore[arg-type]

    def op_chown(self, rid: int, path: object, uid: object, gid: object) -> Any:
        p = _str(path, "path")
        self._writable(p)
        u, g = arguments.owner_id(uid, "uid"), arguments.owner_id(gid, "gid")
        with self.vol.lock:
            permissions.may_setattr(self.vol._journal.core, p, self.creds, owner=(u, g))
            self.vol.chown(p, -1 if u is None else u, -1 if g is None else g)

    def op_utime(self, rid: int, path: object, ns: object) -> Any:
        p = _str(path, "path")
        self._writable(p)
        times = None if ns is None else arguments.times_ns(tuple(ns) if isinstance(ns, list) else ns)
        with self.vol.lock:
            permissions.may_setattr(self.vol._journal.core, p, self.creds, times=times is not None,
                                    touch=times is None)
            self.vol.utime(p, times)

    def op_statfs(self, rid: int) -> Any:
        return list(self.vol.statfs())

    def op_fsck(self, rid: int) -> Any:
        return self.vol.fsck()

    def op_info(self, rid: int) -> Any:
        return self.vol.info()

    def op_pins(self, rid: int) -> Any:
        return [list(info) for info in self.vol.pins()]

    def op_checkpoint(self, rid: int) -> Any:
        self._writable()
        self.vol.checkpoint()

    def op_owners(self, rid: int, pool_offset: object, length: object) -> Any:
        return [list(o) for o in self.vol.owners(pool_offset, length)]  # type: ignore[arg-type]

    def op_clone_range(self, rid: int, src: object, so: object, dst: object, do: object, n: object) -> Any:
        self._writable()
        with self.vol.lock:
            return self.vol.clone_range(self._target(src, False), so, self._target(dst, True), do, n)  # type: ignore[arg-type]

    def op_clone_file(self, rid: int, src: object, dst: object, umask: object) -> Any:
        self._writable()
        with self.vol.lock:
            source = self._target(src, False)
            if isinstance(dst, str):
                core = self.vol._journal.core
                permissions.may_open(core, dst, self.creds, read=False, write=True, create=True)
                target: object = dst
            else:
                target = self._target(dst, True)
            self.vol.sharing.clone_file(source, target, creator=self._creator(umask))

    def op_dedupe_range(self, rid: int, src: object, so: object, dst: object, do: object, n: object) -> Any:
        self._writable()
        with self.vol.lock:
            return self.vol.dedupe_range(self._target(src, False), so, self._target(dst, True), do, n)  # type: ignore[arg-type]

    def op_copy_file_range(self, rid: int, src: object, so: object, dst: object, do: object, n: object) -> Any:
        self._writable()
        with self.vol.lock:
            return self.vol.copy_file_range(self._target(src, False), so, self._target(dst, True), do, n)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- files

    def op_open(self, rid: int, path: object, mode: object, holder: object, umask: object) -> Any:
        p = _str(path, "path")
        flags = arguments.open_flags(mode)
        if flags.writable or flags.create:
            self._writable(p)
        vol = self.vol
        with vol.lock:
            permissions.may_open(vol._journal.core, p, self.creds, read=flags.readable, write=flags.writable,
                                 create=flags.create)
            handle = vol.namespace.open(p, mode, flags, self._sub_holder(holder),  # type: ignore[arg-type]
                                        creator=self._creator(umask))
            f = File(vol, handle)
            h = self._next
            self._next += 1
            self.files[h] = f
            return {"h": h, "ino": f.ino, "start": handle.start, "layout": self._layout(f)}

    def op_close(self, rid: int, h: object) -> Any:
        f = self._file(h)
        del self.files[h]  # type: ignore[arg-type]
        f.close()

    def op_layout(self, rid: int, h: object) -> Any:
        f = self._file(h)
        with self.vol.lock:
            return self._layout(f)

    def op_pread(self, rid: int, h: object, n: object, offset: object) -> Any:
        return self._file(h).pread(n, offset)  # type: ignore[arg-type]

    def op_pwrite(self, rid: int, h: object, data: object, offset: object) -> Any:
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes")
        f = self._file(h)
        if offset is None:
            if not f.handle.append:
                raise TypeError("offset must be an int")
            return list(self.vol.data.append(f.ino, memoryview(data)))
        return f.pwrite(data, offset)  # type: ignore[arg-type]

    def op_prepare(self, rid: int, h: object, offset: object, length: object) -> Any:
        """Blocks for a large write the client copies itself (see DataPath.prepare_write)."""
        f = self._file(h)
        off = arguments.offset(offset)
        n = arguments.integer(length)
        if n <= 0:
            raise ValueError("a prepared write needs length > 0")
        arguments.byte_range(off, n)
        f._check_write()
        if f.handle.append:
            raise OSError(22, "an O_APPEND file is written at its end: send the data", f.name)
        vol = self.vol
        with vol.lock:
            pieces = vol.data.prepare_write(f.ino, off, n)
            token = self._next
            self._next += 1
            self.prepared[token] = (h, off, n, pieces)  # type: ignore[assignment]
            self._track(-token, pieces)
            bs = vol.block_size
            layout = vol._journal.layout
            segments = []
            for fb, k, p, _fl in pieces:
                lo, hi = max(fb * bs, off), min((fb + k) * bs, off + n)
                segments.append([lo, hi - lo, layout.block_offset(p) + lo - fb * bs])
            return [token, segments]

    def op_commit(self, rid: int, token: object) -> Any:
        entry = self.prepared.pop(token, None) if isinstance(token, int) else None
        if entry is None:
            raise ValueError("no such prepared write")
        h, off, n, pieces = entry
        f = self._file(h)
        try:
            return self.vol.data.commit_write(f.ino, off, n, pieces)
        except BaseException:
            self.vol.data.abort_write(pieces)
            raise
        finally:
            self._forget(-token)  # type: ignore[operator]

    def op_abort(self, rid: int, token: object) -> Any:
        entry = self.prepared.pop(token, None) if isinstance(token, int) else None
        if entry is not None:
            self.vol.data.abort_write(entry[3])
            self._forget(-token)  # type: ignore[operator]

    def op_truncate(self, rid: int, h: object, size: object, policy: object, timeout: object) -> Any:
        return self._file(h).truncate(size, policy=_opt_str(policy, "policy"), timeout=timeout)  # type: ignore[arg-type]

    def op_fallocate(self, rid: int, h: object, offset: object, length: object, keep_size: object) -> Any:
        self._file(h).fallocate(offset, length, keep_size=_bool(keep_size, "keep_size"))  # type: ignore[arg-type]

    def op_punch_hole(self, rid: int, h: object, offset: object, length: object, policy: object,
                      timeout: object) -> Any:
        self._file(h).punch_hole(offset, length, policy=_opt_str(policy, "policy"), timeout=timeout)  # type: ignore[arg-type]

    def op_zero_range(self, rid: int, h: object, offset: object, length: object, keep_size: object) -> Any:
        self._file(h).zero_range(offset, length, keep_size=_bool(keep_size, "keep_size"))  # type: ignore[arg-type]

    def op_fsync(self, rid: int, h: object) -> Any:
        self._file(h).fsync()

    def op_fstat(self, rid: int, h: object) -> Any:
        return _stat_list(self._file(h).stat())

    def op_extents(self, rid: int, h: object) -> Any:
        return [[e.file_offset, e.length, e.pool_offset, sorted(e.flags)] for e in self._file(h).extents()]

    def op_seek_data(self, rid: int, h: object, offset: object, hole: object) -> Any:
        f = self._file(h)
        return self.vol.data.seek_data(f.ino, arguments.integer(offset), _bool(hole, "hole"))

    # ---------------------------------------------------------------- references

    def op_map(self, rid: int, h: object, offset: object, length: object, write: object, lease: object,
               holder: object) -> Any:
        return self._reference(rid, "mapping", h, offset, length, write, lease, holder)

    def op_pin(self, rid: int, h: object, offset: object, length: object, write: object, holder: object) -> Any:
        return self._reference(rid, "pin", h, offset, length, write, False, holder)

    def _reference(self, rid: int, kind: str, h: object, offset: object, length: object, write: object,
                   lease: object, holder: object) -> Any:
        f = self._file(h)
        w, leased = _bool(write, "write"), _bool(lease, "lease")
        off = arguments.integer(offset)
        n = None if length is None else arguments.integer(length)
        flags = f.handle.flags
        if (kind == "mapping" and not flags.readable) or (w and not flags.writable) or \
                (kind == "pin" and not w and not flags.readable):
            raise PermissionError(13, f"a {'write ' if w else ''}{kind} needs the file open for "
                                      f"{'writing' if w else 'reading'}", f.name)
        if off < 0 or (n is not None and (n < 0 or (kind == "pin" and n == 0))):
            raise ValueError(f"{kind} offset and length must be non-negative")
        if kind == "pin" and n is None:
            raise TypeError("a pin needs a length")
        vol = self.vol
        with vol.lock:
            ref = vol.data.reference(f.ino, f.name, off, n, kind=kind, write=w, lease=leased,
                                     holder=self._sub_holder(holder))
            r = self._next
            self._next += 1
            self.refs[r] = ref
            ref.view = RemoteView(self, r, ref)
            ref.on_break = lambda: self.event(["break", r])
            ref.on_let_go = lambda _held: self._forget(r)
            self._track(r, ref)
            layout = vol._journal.layout
            # Replied under the lock: an event about this reference cannot overtake the reply.
            self.reply(rid, "ok", {"r": r, "offset": ref.offset, "length": ref.length,
                                   "first_block": ref.first_block, "end_block": ref.end_block,
                                   "pieces": [[fb, k, po] for fb, k, po in ref.pieces],
                                   "zero": [[fb, k] for fb, k in ref.zero_blocks],
                                   "pool_size": layout.pool_size})
        return _REPLIED

    def op_release(self, rid: int, r: object, unmapped: object) -> Any:
        ref = self.refs.get(r) if isinstance(r, int) else None
        if ref is None:
            raise ValueError("no such reference")
        table = self.vol.references
        with table.lock:
            table.release(ref, unmapped=_bool(unmapped, "unmapped"))
            if ref.held is None:
                del self.refs[r]  # type: ignore[arg-type]

    def op_release_blocks(self, rid: int, r: object) -> Any:
        """The client's memory of a reference is gone (its last export died, or it migrated)."""
        ref = self.refs.pop(r, None) if isinstance(r, int) else None
        if ref is not None:
            self.vol.references.release_blocks(ref)

    def op_bye(self, rid: int) -> Any:
        return None

    # ---------------------------------------------------------------- end of the connection

    def release_all(self, alive: bool) -> list[Any]:
        """Let go of everything; returns what must stay held while the process lives."""
        vol = self.vol
        table = vol.references
        keep: list[Any] = []
        with vol.lock:
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


_REPLIED = object()


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

