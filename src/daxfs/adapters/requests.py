"""The requests a client of the arbiter may make, each checked before it touches the volume.

Every ``op_NAME(rid, *args)`` converts its arguments (wrong types are TypeError, sent
back as the reply), checks the peer's credentials against the mode bits
(``volume.permissions``) under the volume's lock, and calls the volume.  What a
request returns is its reply; ``_REPLIED`` means it replied itself (a mapping's reply
goes out under the volume's lock, so no event about it can overtake it; a closing write
answers before it closes its file).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from daxfs._types import Stat
from daxfs.adapters import wire
from daxfs.access.file import File
from daxfs.volume import arguments, permissions
from daxfs.volume.poison import poisoned_runs
from daxfs.volume.references import Reference

# The Session this module serves: not imported, as session.py imports this module.
Session = Any


_REPLIED = object()


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

    def fence(self, offset: int, length: int) -> bool:
        """Memory under the reference failed: the client fences its own pages and tells its
        holder (``on_poison``); ranges are file offsets."""
        base = self._ref.first_block * self._ref.block_size
        self._session.event(["poison", self._rid, base + offset, length])
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
    return stat.fields()


class Requests:
    """The operations of one session, by name (``ops``)."""

    def __init__(self, session: "Session") -> None:
        self.session = session
        self.vol = session.vol
        self.creds = session.creds
        self.files: dict[int, File] = session.files
        self.refs: dict[int, Reference] = session.refs
        self.prepared = session.prepared
        self.ops = {name[3:]: getattr(self, name) for name in dir(self) if name.startswith("op_")}

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
            return self.session.holder
        key = _str(name, "holder name")[:200]
        found = self.session.holders.get(key)
        if found is None:
            found = self.session.holders[key] = SessionHolder(key, self.session.pid, self.session.uid)
        return found

    def _creator(self, umask: object) -> tuple[int, int, int]:
        return self.session.uid, self.session.gid, arguments.integer(umask) & 0o777

    def _writable(self, path: str | None = None) -> None:
        if self.session.readonly:
            raise OSError(30, "read-only: this user may not write the pool", path)

    def _layout(self, f: File) -> dict[str, Any]:
        """What a client caches of an open file: the change counter, stat and extents."""
        journal = self.vol._journal
        node = journal.node(f.ino)
        core = journal.core
        # Poisoned runs go with the extents, so the client refuses to read them (EIO) as the
        # embedded volume does, without asking.
        poisoned = [[f, n, p] for f, n, p in poisoned_runs(core, node, 0, node.extents.end)] \
            if core.bad and node.extents is not None else []
        return {"counter": self.session.server.changes.get(f.ino), "stat": _stat_list(journal.stat_of(node)),
                "extents": node.extents.to_flat() if node.extents is not None else [],
                "poisoned": poisoned, "data_offset": journal.layout.data_offset}

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

    def op_scandir(self, rid: int, path: object) -> Any:
        p = _str(path, "path")
        with self.vol.lock:
            permissions.may_list(self.vol._journal.core, p, self.creds)
            return [[name, _stat_list(st)] for name, st in self.vol._scan(p)]

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

    # ---- symlinks and special files (issue 13)

    def op_lstat(self, rid: int, path: object) -> Any:
        p = _str(path, "path")
        with self.vol.lock:
            permissions.walk(self.vol._journal.core, p, self.creds, False)
            return _stat_list(self.vol.lstat(p))

    def op_readlink(self, rid: int, path: object) -> Any:
        p = _str(path, "path")
        with self.vol.lock:
            permissions.walk(self.vol._journal.core, p, self.creds, False)
            return self.vol.readlink(p)

    def op_symlink(self, rid: int, target: object, path: object) -> Any:
        t, p = _str(target, "target"), _str(path, "path")
        self._writable(p)
        with self.vol.lock:
            permissions.may_change_name(self.vol._journal.core, p, self.creds)
            self.vol.namespace.symlink(t, p, creator=self._creator(0))

    def op_mknod(self, rid: int, path: object, mode: object, device: object, umask: object) -> Any:
        p = _str(path, "path")
        m, dev = arguments.integer(mode), arguments.integer(device)
        self._writable(p)
        if m & 0o170000 in (0o020000, 0o060000) and not self.creds.root:
            raise PermissionError(1, "only root may make device nodes", p)     # as CAP_MKNOD
        with self.vol.lock:
            permissions.may_change_name(self.vol._journal.core, p, self.creds)
            self.vol.namespace.mknod(p, m, dev, creator=self._creator(umask))

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

    def op_trim(self, rid: int) -> Any:
        # Giving free memory back changes no byte anyone can read: whoever may write the
        # pool may ask (it costs the arbiter time, as a checkpoint does).
        self._writable()
        return self.vol.trim()

    def _admin(self) -> None:
        """Reporting and clearing bad memory is for root and the pool's owner (as ndctl is)."""
        server = self.session.server
        if not self.creds.root and self.creds.uid != server.pool_uid:
            raise PermissionError(1, "only root or the pool's owner may report or clear bad memory",
                                  server.pool_path)

    def op_memory_failure(self, rid: int, pool_offset: object, length: object) -> Any:
        self._admin()
        return [list(o) for o in self.vol.memory_failure(pool_offset, length)]  # type: ignore[arg-type]

    def op_clear_badblocks(self, rid: int, pool_offset: object, length: object) -> Any:
        self._admin()
        self.vol.clear_badblocks(pool_offset, length)  # type: ignore[arg-type]

    def op_badblocks(self, rid: int) -> Any:
        return [list(run) for run in self.vol.badblocks()]

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

    def op_open(self, rid: int, path: object, mode: object, holder: object, umask: object,
                follow: object = True, layout: object = True) -> Any:
        """Open a file; the reply carries its layout unless ``layout`` is False (a client
        opening for writing only asks for it when it first needs it: one stat fewer here,
        one decode fewer there, on every create)."""
        p = _str(path, "path")
        flags = arguments.open_flags(mode)
        if type(follow) is not bool:
            raise TypeError("follow must be a bool")
        if type(layout) is not bool:
            raise TypeError("layout must be a bool")
        if flags.writable or flags.create:
            self._writable(p)
        vol = self.vol
        with vol.lock:
            permissions.may_open(vol._journal.core, p, self.creds, read=flags.readable, write=flags.writable,
                                 create=flags.create)
            handle = vol.namespace.open(p, mode, flags, self._sub_holder(holder),  # type: ignore[arg-type]
                                        creator=self._creator(umask), follow=follow)
            f = File(vol, handle)
            self._unless_gone(f.close)
            h = self.session.next_id()
            self.files[h] = f
            return {"h": h, "ino": f.ino, "start": handle.start, "layout": self._layout(f) if layout else None}

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

    def op_pwrite(self, rid: int, h: object, data: object, offset: object, close: object = False) -> Any:
        """A write; with ``close``, the last one of a file being closed: the file is closed
        with it, whether the write succeeded or not (as ``close()`` closes the file when its
        flush fails), after the reply where it can be, so the close is off the client's path."""
        if type(close) is not bool:
            raise TypeError("close must be a bool")
        f = self._file(h)
        if not close:
            return self._pwrite(f, data, offset)
        try:
            result = self._pwrite(f, data, offset)
        except Exception as exc:
            status, body = "err", wire.encode_error(exc)
        else:
            status, body = "ok", result
        # Answered first, unless the write waited and the loop went on in another thread: the
        # client's next request may be running already, so the file is closed before the reply.
        # Otherwise this thread serves the client's next request only after the close.
        waited = self.session.server._loop_owner is not threading.current_thread()
        if waited:
            self._close_after_write(h, f)
        if rid:
            self.session.reply(rid, status, body)
        if not waited:
            self._close_after_write(h, f)
        return _REPLIED

    def _close_after_write(self, h: object, f: File) -> None:
        if self.files.pop(h, None) is f:  # type: ignore[call-overload]
            try:
                f.close()
            except Exception:   # as with a close sent alone: nobody waits for its reply
                pass

    def _pwrite(self, f: File, data: object, offset: object) -> Any:
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes")
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
            self._unless_gone(lambda: vol.data.abort_write(pieces))
            token = self.session.next_id()
            self.prepared[token] = (h, off, n, pieces)  # type: ignore[assignment]
            self.session._track(-token, pieces)
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
        try:
            # (the handle may have been closed by another thread meanwhile: the blocks go too)
            f = self._file(h)
            return self.vol.data.commit_write(f.ino, off, n, pieces)
        except BaseException:
            self.vol.data.abort_write(pieces)
            raise
        finally:
            self.session._forget(-token)  # type: ignore[operator]

    def op_abort(self, rid: int, token: object) -> Any:
        entry = self.prepared.pop(token, None) if isinstance(token, int) else None
        if entry is not None:
            self.vol.data.abort_write(entry[3])
            self.session._forget(-token)  # type: ignore[operator]

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
            self._unless_gone(lambda: vol.references.release(ref, unmapped=True))   # (never sent)
            r = self.session.next_id()
            self.refs[r] = ref
            ref.view = RemoteView(self.session, r, ref)
            ref.on_break = lambda: self.session.event(["break", r])
            ref.on_let_go = lambda _held: self.session._forget(r)
            self.session._track(r, ref)
            layout = vol._journal.layout
            # Replied under the lock: an event about this reference cannot overtake the reply.
            self.session.reply(rid, "ok", {"r": r, "offset": ref.offset, "length": ref.length,
                                           "poisoned": [list(run) for run in ref.poisoned],
                                   "first_block": ref.first_block, "end_block": ref.end_block,
                                   "pieces": [[fb, k, po] for fb, k, po in ref.pieces],
                                   "zero": [[fb, k] for fb, k in ref.zero_blocks],
                                   "pool_size": layout.pool_size})
        return _REPLIED

    def _unless_gone(self, undo: Callable[[], object]) -> None:
        """A request that may have waited (the volume's lock let go) got something for its
        client: if the client disconnected meanwhile, ``undo`` it (nobody else would ever let
        it go) and end the request; else the caller records it as the client's."""
        if self.session.released:
            undo()
            raise EOFError("the client disconnected while its request waited")

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
