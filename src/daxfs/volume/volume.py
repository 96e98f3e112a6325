"""Volume: one mounted pool.  Every change is validate -> record -> persist -> apply.

One lock orders every operation.  A metadata change is validated against the
core state (raising the error Linux would give, with nothing changed), its
data stores are made and persisted, its record is appended to the log and
persisted, and only then applied to the core: so it is durable when the call
returns, and a crash at any point leaves it all-or-nothing.

Data rules that make that true:
- Blocks a file gains are fully written or zeroed, and persisted, before the
  record that gives them to the file; fallocate'd blocks are marked unwritten
  and read as zeros instead.
- Bytes past EOF inside the last block may hold stale data; whenever the size
  grows over them they are zeroed first (before the record).
- Punch and zero of a partial block copy it to a fresh block (COW) so the
  record swaps it in atomically; if no block is free they zero in place.
- Overwrites of blocks a file already owns go in place and are not atomic
  per byte, as on any DAX file system.
Timestamps from data writes that need no record (in-place overwrites) are
kept in memory and logged at fsync/close/checkpoint, like ``lazytime``.
"""

from __future__ import annotations

import errno
import gc
import os
import stat as st
import threading
import time
import uuid as uuidlib
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from daxfs._types import Extent, PinInfo, Stat, StatFS
from daxfs.core import UNWRITTEN, Core, Inode, ROOT_INO, check
from daxfs.core.namespace import fspath, split_path
from daxfs.core.records import Create, Link, Reclaim, Record, Rename, SetAttr, SetExtents, Unlink
from daxfs.errors import BusyError, CorruptVolumeError, DamagedVolumeWarning, fs_error
from daxfs.format.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint, peek_checkpoint
from daxfs.format.layout import (HEADER_SIZE, HUGE_PAGE, OWNER_OFFSET, STATUS_OFFSET, STATUS_SIZE,
                                 SUPERBLOCK_OFFSETS, Layout)
from daxfs.format.log import BadRecordError
from daxfs.format.status import decode_status, encode_status
from daxfs.format.superblock import (SUPERBLOCK_BYTES, Superblock, decode_owner, decode_superblock,
                                     encode_owner, has_magic)
from daxfs.media import FilePool, Pool
from daxfs.volume.log import LogRing
from daxfs.volume.reflink import ReflinkOps

if TYPE_CHECKING:
    from daxfs.access.file import File
    from daxfs.access.holder import Holder
    from daxfs.access.mapping import Mapping
    from daxfs.access.pin import Pin

POLICIES = ("defer", "wait", "break", "refuse")
_PUBLISHED_REFS = 300           # references listed in the status page (the total is always there)
DURABILITIES = ("sync", "lazy")
MAX_FILE_SIZE = 1 << 62

# Upper bound of how much a record can grow the checkpoint (see Core.checkpoint_bound).
_GROW_INODE = 256
_GROW_RUN = 80


def _now() -> int:
    return time.time_ns()


_umask_seen = os.umask(0o022)
os.umask(_umask_seen)


def _process_umask() -> int:
    """The process umask now, for a create (os.mkdir applies it; so do we).

    os.umask can only be read by setting it.  Setting it to the value last
    seen leaves it unchanged whenever nobody has changed it since, so a
    thread creating files at that moment is unaffected; only right after a
    change is there a window of one syscall where it sees the older mask.
    """
    global _umask_seen
    current = os.umask(_umask_seen)
    if current != _umask_seen:
        os.umask(current)
        _umask_seen = current
    return current


def check_policy(policy: str | None) -> None:
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"unknown pin policy {policy!r}; expected one of {', '.join(POLICIES)}")


class Volume(ReflinkOps):
    """A mounted daxfs volume (see ``daxfs.open_volume``)."""

    #: Why the volume mounted read-only against the caller's wish (a log record that does
    #: not apply; see ``mount``), or None.
    damaged: str | None = None

    def __init__(self, pool: Pool, superblock: Superblock, core: Core, ring: LogRing, *,
                 generation: int, checkpoint_pos: int, readonly: bool, policy: str,
                 durability: str, lease_break_s: float) -> None:
        self._pool = pool
        self._sb = superblock
        self._layout = superblock.layout
        self._core = core
        self._ring = ring
        self._generation = generation
        self._checkpoint_pos = checkpoint_pos
        self.readonly = readonly
        self.policy = policy
        self.durability = durability
        self.lease_break_s = lease_break_s
        self.path = pool.name
        self._lock = threading.RLock()
        self._bs = self._layout.block_size
        self._data_offset = self._layout.data_offset
        self._refs: dict[int, int] = {}                 # ino -> open files + mappings holding it
        self._seals: dict[int, set[Mapping | Pin]] = {}  # ino -> live mappings and pins over it
        self._changed = threading.Condition(self._lock)  # a reference let go (for waiters)
        self._waiting: list[tuple[int, int, int]] = []    # (ino, first, end block) a 'wait' holds
        self._own_name = f"pid {os.getpid()}"             # this process, as a holder
        self._closing = False                             # a forced close is under way
        self._reader_refs = 0                             # a follower's references (shared lock)
        self._published = 0.0                             # when the status page was last written
        self._publish_timer: threading.Timer | None = None
        self._handles: set[File] = set()
        self._pending_mtime: dict[int, int] = {}        # ino -> mtime from in-place writes
        self._dirty: dict[int, list[tuple[int, int]]] = {}  # lazy durability: unpersisted data
        self._faulted: set[int] = set()                  # data chunks prefaulted this mount
        self._chunk_shift = max(0, (HUGE_PAGE // self._bs).bit_length() - 1)
        self._uid = os.getuid()
        self._gid = os.getgid()
        self._closed = False
        # A read-only mount of a shared pool follows the writer's log (see _refresh).
        self._follow = readonly and isinstance(pool, FilePool)

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def format(cls, pool: Pool, *, block_size: int = 4096) -> None:
        """Write an empty volume onto ``pool`` (superblocks last, so a crash leaves no half-volume)."""
        layout = Layout.compute(pool.size, block_size)
        for off in SUPERBLOCK_OFFSETS:
            pool.zero(off, SUPERBLOCK_BYTES)
        pool.persist(0, HEADER_SIZE)
        pool.zero(HEADER_SIZE, layout.checkpoint_offsets[1] + layout.checkpoint_size - HEADER_SIZE)
        pool.persist(HEADER_SIZE, layout.checkpoint_offsets[1] + layout.checkpoint_size - HEADER_SIZE)
        core = Core.new(block_size, layout.data_blocks, time_ns=_now(), uid=os.getuid(), gid=os.getgid(),
                        align_blocks=layout.align_blocks)
        generation = 1
        data = encode_checkpoint(core.to_checkpoint(), generation, -1, 0)
        slot = layout.checkpoint_offsets[generation % 2]
        pool.write(slot, data)
        pool.persist(slot, len(data))
        sb = Superblock(uuidlib.uuid4(), layout, generation)
        raw = sb.encode()
        for off in SUPERBLOCK_OFFSETS:
            pool.write(off, raw)
            pool.persist(off, len(raw))

    @classmethod
    def mount(cls, pool: Pool, *, readonly: bool = False, policy: str = "defer",
              durability: str = "sync", lease_break_s: float = 45.0) -> "Volume":
        """Mount the volume on ``pool``: newest valid checkpoint, then replay the log after it.

        A log record that does not decode or apply stops the replay before it: the volume
        then mounts read-only whatever was asked (writes raise EROFS saying why), ``damaged``
        says why, and a DamagedVolumeWarning is issued.  ``daxfs fsck --repair`` (``repair``)
        makes it writable again, keeping everything before the bad record.
        """
        loaded = _load(pool, check_damage=True)
        damaged = loaded.bad_record
        readonly = readonly or damaged is not None
        vol = cls(pool, loaded.superblock, loaded.core, loaded.ring, generation=loaded.generation,
                  checkpoint_pos=loaded.checkpoint_pos, readonly=readonly, policy=policy,
                  durability=durability, lease_break_s=lease_break_s)
        if damaged is not None:
            vol.damaged = damaged
            vol._follow = False     # nothing can be appended after the bad record, nor followed past it
            warnings.warn(f"{pool.name}: {damaged}", DamagedVolumeWarning, stacklevel=3)
        if not readonly:
            pool.write(OWNER_OFFSET, encode_owner(os.getpid(), _now()))
            pool.persist(OWNER_OFFSET, 64)
            with vol._lock:
                for ino in loaded.core.orphans():      # left by a crash: nobody can hold them now
                    vol._commit(Reclaim(ino))
        return vol

    def _refresh(self) -> None:
        """Read-only beside a writer: catch up with the records it appended since.

        Replays new records from our head; when the writer has checkpointed
        twice since (so the ring may have lapped us), reloads from its newest
        checkpoint.  A handle whose inode the writer removed meanwhile goes
        stale (ESTALE on use), as on NFS: without an arbiter the writer cannot
        know it is held.
        """
        ring = self._ring
        try:
            generation = self._read_superblock(self._pool).generation
        except CorruptVolumeError:
            return      # a superblock being rewritten right now: use what we have
        if generation <= self._generation + 1:
            head, seq = LogRing.replay(self._pool, ring.offset, ring.size, ring.volume_id, start=ring.head,
                                       first_seq=ring.next_seq, apply=self._core.apply, check_damage=False)
            ring.head, ring.next_seq = head, seq
            self._generation = max(self._generation, generation)
            return
        for attempt in range(3):
            try:
                loaded = _load(self._pool, check_damage=False)
                break
            except CorruptVolumeError:
                if attempt == 2:     # the writer rewrote the slot under us thrice: give up for now
                    return
        self._sb, self._core, self._ring = loaded.superblock, loaded.core, loaded.ring
        self._generation, self._checkpoint_pos = loaded.generation, loaded.checkpoint_pos

    def _log_moved(self) -> bool:
        """Whether a record has landed at our head since we last caught up (read-only)."""
        ring = self._ring
        return LogRing.peek(self._pool, ring.offset, ring.size, ring.volume_id, ring.head, ring.next_seq)

    @staticmethod
    def _read_superblock(pool: Pool) -> Superblock:
        if pool.size < HEADER_SIZE:
            raise CorruptVolumeError(f"not a daxfs volume: {pool.size} bytes is too small to hold one")
        found: list[Superblock] = []
        errors: list[CorruptVolumeError] = []
        magic_seen = False
        for off in SUPERBLOCK_OFFSETS:
            raw = pool.read(off, SUPERBLOCK_BYTES)
            magic_seen = magic_seen or has_magic(raw)
            try:
                found.append(decode_superblock(raw, off))
            except CorruptVolumeError as exc:
                errors.append(exc)
        if found:
            return max(found, key=lambda sb: sb.generation)
        if not magic_seen:
            raise CorruptVolumeError("not a daxfs volume (no superblock found)")
        versions = [e for e in errors if "version" in e.what]
        raise versions[0] if versions else CorruptVolumeError(
            "both superblocks are damaged: " + "; ".join(e.what for e in errors))

    def close(self, *, force: bool = False, timeout: float | None = None) -> None:
        """Flush what is pending, checkpoint, and unmount.  Open files are closed with it.

        While mappings or pins live (their memory is the pool's) this raises
        BusyError naming them.  With ``force``: leases are broken (their
        holders get ``on_break`` and up to ``lease_break_s``, or ``timeout`` if
        shorter), every mapping is revoked (migrated to private memory), and
        pins — never revoked — are waited for up to ``timeout`` seconds, then
        BusyError if any remain (the volume stays open).
        """
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0")
        with self._lock:
            if self._closed:
                return
            live = self._live_refs()
            if live and not force:
                raise self._busy_error("volume has live references", live)
            if live:
                deadline = None if timeout is None else time.monotonic() + timeout
                self._closing = True        # no new references while the lock is let go below
                try:
                    self._break_leases([r for r in live if r.lease], deadline)
                    for ref in self._live_refs():
                        if ref.kind != "pin":
                            self._revoke_mapping(ref, "migrate")  # type: ignore[arg-type]
                    if not self._wait_until(lambda: not self._live_refs(), deadline):
                        raise self._busy_error("pins still held after the close timeout", self._live_refs())
                finally:
                    self._closing = False
            for handle in list(self._handles):
                handle._detach()
            if not self.readonly:
                self._flush_pending(None)
                for ino, count in list(self._refs.items()):
                    node = self._core.inodes.get(ino)
                    if node is not None and node.nlink == 0:
                        self._commit(Reclaim(ino))
                self._refs.clear()
                self._checkpoint()
                if self._publish_timer is not None:
                    self._publish_timer.cancel()
                self._publish(clear=True)
                self._pool.write(OWNER_OFFSET, bytes(64))
                self._pool.persist(OWNER_OFFSET, 64)
            self._closed = True
            self._pool.close()

    def __enter__(self) -> "Volume":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("ro" if self.readonly else "rw")
        return f"<daxfs.Volume {self.path!r} {state}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def block_size(self) -> int:
        return self._bs

    # ------------------------------------------------------------ commit & checkpoint

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed volume")
        if self._follow:
            self._refresh()

    def _check_writable(self, path: str | None = None) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed volume")
        if self.readonly:
            raise fs_error(errno.EROFS, path, self.damaged and f"Read-only file system: {self.damaged}")

    def _commit(self, record: Record, grow: int = 0) -> None:
        """Log ``record`` durably, then apply it.  ``grow``: how much it may add to a checkpoint."""
        core = self._core
        if grow and core.checkpoint_bound + grow > self._layout.checkpoint_size - 64:
            raise fs_error(errno.ENOSPC, message="no space left for metadata (too many files or extents "
                           "for this pool's checkpoint area)")
        ring = self._ring
        data = ring.encode(record)
        n = len(data)
        if n > ring.size // 4:
            raise fs_error(errno.ENOSPC, message="change too large for the metadata log (free space is "
                           "too fragmented for one write this big)")
        # n + its worst-case lap skip stays under half the ring since the last checkpoint,
        # which with the records before that one keeps the ring from overrunning its tail.
        if ring.head - self._checkpoint_pos + 2 * n > ring.size // 2 or not ring.fits(n):
            self._checkpoint()
            if not ring.fits(n):
                self._checkpoint()
            data = ring.encode(record)
        ring.append(record, data)
        core.apply(record)

    def _checkpoint(self) -> None:
        """Write the whole state to the older slot, flip the superblocks, free the log before it."""
        core = self._core
        for ino, mtime in self._pending_mtime.items():
            if ino in core.inodes:
                core.apply(SetAttr(ino, None, None, None, None, mtime, mtime))
        self._pending_mtime.clear()
        ring = self._ring
        generation = self._generation + 1
        data = encode_checkpoint(core.to_checkpoint(), generation, ring.next_seq - 1, ring.head)
        layout = self._layout
        if len(data) > layout.checkpoint_size:
            raise fs_error(errno.ENOSPC, message="metadata no longer fits the checkpoint area")
        slot = layout.checkpoint_offsets[generation % 2]
        pool = self._pool
        pool.write(slot, data)
        pool.persist(slot, len(data))
        sb = Superblock(self._sb.uuid, layout, generation, self._sb.version, self._sb.flags)
        raw = sb.encode()
        for off in SUPERBLOCK_OFFSETS:
            pool.write(off, raw)
            pool.persist(off, len(raw))
        self._sb = sb
        self._generation = generation
        ring.tail = self._checkpoint_pos
        self._checkpoint_pos = ring.head

    def checkpoint(self) -> None:
        """Write a checkpoint now (mount then replays nothing)."""
        with self._lock:
            self._check_writable()
            self._checkpoint()

    # ------------------------------------------------------------ queries

    def statfs(self) -> StatFS:
        with self._lock:
            self._check_open()
            core = self._core
            bs = self._bs
            size = core.data_blocks * bs
            free = core.space.free * bs
            busy = core.busy.blocks * bs
            if self._follow:
                # blocks busy in the writer are free in the log we follow
                status = decode_status(self._pool.read(STATUS_OFFSET, STATUS_SIZE))
                if status is not None and _alive(status.get("pid")):
                    busy = min(free, int(status.get("busy", 0)))
                    free -= busy
            return StatFS(size=size, block_size=bs, free=free, used=size - free - busy, busy=busy, bad=0,
                          files=len(core.inodes), metadata_size=self._layout.data_offset,
                          sync_mode=self._pool.sync_mode, shared=core.rmap.shared_blocks * bs)

    def info(self) -> dict[str, Any]:
        """Identity and geometry of the volume (``daxfs info``)."""
        with self._lock:
            self._check_open()
            lay = self._layout
            return {
                "path": self.path, "uuid": str(self._sb.uuid), "version": self._sb.version,
                "block_size": lay.block_size, "size": lay.pool_size, "data_offset": lay.data_offset,
                "data_size": lay.data_size, "log_size": lay.log_size,
                "checkpoint_size": lay.checkpoint_size, "generation": self._generation,
                "log_used": self._ring.head - self._ring.tail, "sync_mode": self._pool.sync_mode,
                "readonly": self.readonly, "policy": self.policy, "durability": self.durability,
            }

    def fsck(self) -> list[str]:
        """Problems in the volume's metadata; [] means clean."""
        with self._lock:
            self._check_open()
            # A read-only mount cannot see who holds an orphan: the writer may.
            held = self._core.orphans() if self.readonly else self._refs.keys()
            return check(self._core, held)

    def _lookup(self, path: object) -> tuple[str, Inode]:
        """The inode a path names (ENOENT, ENOTDIR as Linux gives them)."""
        p = fspath(path)
        _parent, _name, ino, trailing = self._core.resolve(p)
        if ino is None:
            raise fs_error(errno.ENOENT, p)
        node = self._core.inodes[ino]
        if trailing and node.entries is None:
            raise fs_error(errno.ENOTDIR, p)
        return p, node

    def _stat(self, node: Inode) -> Stat:
        if node.entries is not None:
            size = 40 + 20 * len(node.entries)     # what tmpfs reports, so tools see the same
            blocks = 0
        else:
            size = node.size
            blocks = node.extents.blocks * (self._bs // 512)  # type: ignore[union-attr]
        mtime = self._pending_mtime.get(node.ino)
        return Stat(node.ino, node.mode, node.nlink, node.uid, node.gid, size, blocks,
                    node.atime_ns, node.mtime_ns if mtime is None else mtime,
                    node.ctime_ns if mtime is None else max(mtime, node.ctime_ns), self._bs)

    def stat(self, path: object) -> Stat:
        with self._lock:
            self._check_open()
            return self._stat(self._lookup(path)[1])

    def exists(self, path: object) -> bool:
        try:
            self.stat(path)
        except (OSError, ValueError):
            if self._closed:
                raise
            return False
        return True

    def listdir(self, path: object = "/") -> list[str]:
        with self._lock:
            self._check_open()
            p, node = self._lookup(path)
            if node.entries is None:
                raise fs_error(errno.ENOTDIR, p)
            return list(node.entries)

    # ------------------------------------------------------------ namespace

    def _new_name(self, path: str) -> tuple[int, str]:
        """``(parent, name)`` for a name about to be created; EEXIST if taken."""
        parent, name, ino, _trailing = self._core.resolve(path)
        if name is None or ino is not None:
            raise fs_error(errno.EEXIST, path)
        return parent, name

    def mkdir(self, path: object, mode: int = 0o755, *, parents: bool = False, exist_ok: bool = False) -> None:
        p = fspath(path)
        with self._lock:
            self._check_writable(p)
            core = self._core
            if parents:
                components, _ = split_path(p)
                prefix = ""
                for comp in components[:-1]:
                    prefix += "/" + comp
                    _par, _nm, ino, _t = core.resolve(prefix)
                    if ino is None:
                        self._mkdir_one(prefix, 0o777)
                    elif core.inodes[ino].entries is None:
                        raise fs_error(errno.ENOTDIR, p)
            try:
                self._mkdir_one(p, mode)
            except FileExistsError:
                _par, _nm, ino, _t = core.resolve(p)
                if not (exist_ok and ino is not None and core.inodes[ino].entries is not None):
                    raise

    def _mkdir_one(self, path: str, mode: int) -> None:
        parent, name = self._new_name(path)
        core = self._core
        self._commit(Create(core.next_ino, parent, name, st.S_IFDIR | (mode & 0o7777 & ~_process_umask()),
                            self._uid, self._gid, _now()), _GROW_INODE + 4 * len(name))

    def rmdir(self, path: object) -> None:
        p = fspath(path)
        with self._lock:
            self._check_writable(p)
            core = self._core
            parent, name, ino, _trailing = core.resolve(p)
            if name is None:
                last = split_path(p)[0][-1:] or ["/"]
                raise fs_error({".": errno.EINVAL, "..": errno.ENOTEMPTY}.get(last[0], errno.EBUSY), p)
            if ino is None:
                raise fs_error(errno.ENOENT, p)
            node = core.inodes[ino]
            if node.entries is None:
                raise fs_error(errno.ENOTDIR, p)
            if node.entries:
                raise fs_error(errno.ENOTEMPTY, p)
            self._commit(Unlink(parent, name, _now(), True))

    def unlink(self, path: object, *, policy: str | None = None) -> None:
        check_policy(policy)
        p = fspath(path)
        with self._lock:
            self._check_writable(p)
            core = self._core
            parent, name, ino, trailing = core.resolve(p)
            if name is None:
                raise fs_error(errno.EISDIR, p)
            if ino is None:
                raise fs_error(errno.ENOENT, p)
            node = core.inodes[ino]
            if node.entries is not None:
                raise fs_error(errno.EISDIR, p)
            if trailing:
                raise fs_error(errno.ENOTDIR, p)
            if node.nlink == 1 and self._settle(ino, 0, None, policy, "unlink"):
                return self.unlink(path, policy=policy)     # waited: look again
            reclaim = node.nlink == 1 and ino not in self._refs
            self._forget_if(reclaim, ino)
            self._commit(Unlink(parent, name, _now(), reclaim))

    def _forget_if(self, reclaim: bool, ino: int) -> None:
        if reclaim:
            self._pending_mtime.pop(ino, None)
            self._dirty.pop(ino, None)

    def rename(self, src: object, dst: object, *, replace: bool = True) -> None:
        s = fspath(src)
        d = fspath(dst)
        with self._lock:
            self._check_writable(s)
            core = self._core
            # Linux walks both parents before looking at either name.
            sparent, sname, sino, strailing = core.resolve(s)
            dparent, dname, dino, dtrailing = core.resolve(d)
            if sname is None:
                raise fs_error(errno.EBUSY, s)
            if sino is None:
                raise fs_error(errno.ENOENT, s)
            if dname is None:
                raise fs_error(errno.EBUSY, d)
            snode = core.inodes[sino]
            if (strailing or dtrailing) and snode.entries is None:
                raise fs_error(errno.ENOTDIR, s)
            if dino is not None and not replace:
                raise fs_error(errno.EEXIST, d)
            if dino == sino:
                return      # two names of one inode (or the same name): POSIX says do nothing
            if snode.entries is not None and self._is_ancestor(sino, dparent):
                raise fs_error(errno.EINVAL, s, "cannot move a directory into itself")
            if dino is not None and self._is_ancestor(dino, sparent):
                raise fs_error(errno.ENOTEMPTY, d)      # the target contains the source
            reclaim = False
            if dino is not None:
                dnode = core.inodes[dino]
                if snode.entries is not None:
                    if dnode.entries is None:
                        raise fs_error(errno.ENOTDIR, d)
                    if dnode.entries:
                        raise fs_error(errno.ENOTEMPTY, d)
                elif dnode.entries is not None:
                    raise fs_error(errno.EISDIR, d)
                else:
                    if dnode.nlink == 1 and self._settle(dino, 0, None, None, "rename over"):
                        return self.rename(src, dst, replace=replace)     # waited: look again
                    reclaim = dnode.nlink == 1 and dino not in self._refs
                    self._forget_if(reclaim, dino)
            self._commit(Rename(sparent, sname, dparent, dname, _now(), reclaim),
                         4 * max(0, len(dname) - len(sname)))

    def _is_ancestor(self, ancestor: int, ino: int) -> bool:
        """Whether directory ``ancestor`` is ``ino`` or lies above it."""
        inodes = self._core.inodes
        while True:
            if ino == ancestor:
                return True
            if ino == ROOT_INO:
                return False
            ino = inodes[ino].parent

    def link(self, src: object, dst: object) -> None:
        s = fspath(src)
        d = fspath(dst)
        with self._lock:
            self._check_writable(s)
            core = self._core
            _sp, _sname, sino, strailing = core.resolve(s)
            if sino is None:
                raise fs_error(errno.ENOENT, s)
            snode = core.inodes[sino]
            if strailing and snode.entries is None:
                raise fs_error(errno.ENOTDIR, s)
            # then the new name, as Linux: its parent, whether it exists ...
            dparent, dname = self._new_name(d)
            if split_path(d)[1]:
                raise fs_error(errno.ENOENT, d)
            # ... and only then whether the source may have another name at all
            if snode.entries is not None:
                raise fs_error(errno.EPERM, s)
            self._commit(Link(sino, dparent, dname, _now()), _GROW_INODE + 4 * len(dname))

    def chmod(self, path: object, mode: int) -> None:
        with self._lock:
            self._check_writable(fspath(path))
            _p, node = self._lookup(path)
            self._commit(SetAttr(node.ino, mode & 0o7777, None, None, None, None, _now()))

    def utime(self, path: object, ns: tuple[int, int] | None = None) -> None:
        with self._lock:
            self._check_writable(fspath(path))
            _p, node = self._lookup(path)
            now = _now()
            atime, mtime = (now, now) if ns is None else (int(ns[0]), int(ns[1]))
            self._pending_mtime.pop(node.ino, None)
            self._commit(SetAttr(node.ino, None, None, None, atime, mtime, now))

    # ------------------------------------------------------------ files

    def open(self, path: object, mode: str = "rb", *, holder: "Holder | None" = None) -> "File":
        File, parse_mode = _file_api()
        p = path if type(path) is str else fspath(path)
        readable, writable, create, exclusive, truncate, append = parse_mode(mode)
        with self._lock:
            if writable or create:
                self._check_writable(p)
            else:
                self._check_open()
            core = self._core
            parent, name, ino, trailing = core.resolve(p)
            if create and trailing:
                raise fs_error(errno.EISDIR, p)     # O_CREAT never makes a directory
            if ino is None:
                if not create:
                    raise fs_error(errno.ENOENT, p)
                ino = core.next_ino
                self._commit(Create(ino, parent, name, st.S_IFREG | (0o666 & ~_process_umask()),  # type: ignore[arg-type]
                                    self._uid, self._gid, _now()), _GROW_INODE + 4 * len(name))  # type: ignore[arg-type]
            else:
                if exclusive:
                    raise fs_error(errno.EEXIST, p)
                node = core.inodes[ino]
                if node.entries is not None:
                    raise fs_error(errno.EISDIR, p)
                if trailing:
                    raise fs_error(errno.ENOTDIR, p)
                if truncate and (node.size or node.extents):
                    if self._settle(ino, 0, None, None, "open with truncation"):
                        return self.open(path, mode, holder=holder)     # waited: look again
                    self._truncate(node, 0)
            self._refs[ino] = self._refs.get(ino, 0) + 1
            handle = File(self, ino, p, mode, readable=readable, writable=writable, append=append)
            if append:
                handle._pos = core.inodes[ino].size     # as open(): an append handle starts at EOF
            handle._holder = holder if holder is not None else self
            if holder is not None:
                holder.owned.add(handle)
            self._handles.add(handle)
            return handle

    def _release_file(self, handle: "File") -> None:
        """A File closes: flush its inode's pending state; reclaim an orphan nobody holds."""
        with self._lock:
            self._handles.discard(handle)
            owner = getattr(handle, "_holder", None)
            if owner is not None and owner is not self:
                owner.owned.discard(handle)
            if self._closed:
                return
            ino = handle._ino
            if (ino in self._pending_mtime or ino in self._dirty) and not self.readonly:
                self._flush_pending(ino)
            self._drop_ref(ino)

    def _drop_ref(self, ino: int) -> None:
        """One holder of the inode lets go; the last one frees an orphan."""
        count = self._refs.get(ino, 0) - 1
        if count > 0:
            self._refs[ino] = count
            return
        self._refs.pop(ino, None)
        node = self._core.inodes.get(ino)
        if node is not None and node.nlink == 0 and not self.readonly:
            self._forget_if(True, ino)
            self._commit(Reclaim(ino))

    # ---- mappings

    def _map(self, ino: int, path: str, offset: int, length: int | None, *, write: bool, lease: bool,
             on_break: Any, holder: object) -> "Mapping":
        Mapping = _access_class("Mapping")
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("mmap offset and length must be non-negative")
        with self._lock:
            if write:
                self._check_writable(path)
            else:
                self._check_open()
            node = self._node(ino)
            size = node.size
            if length is None:
                if offset >= size:
                    raise ValueError("cannot mmap an empty file" if size == 0 else
                                     "mmap offset is at or past the end of the file (give a length)")
                length = size - offset
            if length == 0:
                raise ValueError("cannot mmap an empty range")
            end = offset + length
            if end > MAX_FILE_SIZE:
                raise fs_error(errno.EINVAL, path, "mapping range overflows the largest file size")
            if not write and end > size:
                raise ValueError("mmap length is greater than file size")
            bs = self._bs
            self._check_not_waiting(ino, offset // bs, -(-end // bs), path)
            self._admit_reference(path)
            if write:
                self._populate(node, offset, end)
            bs = self._bs
            f0 = offset // bs
            f1 = -(-end // bs)
            view = self._pool.map_view((f1 - f0) * bs, writable=write)
            mapping = Mapping(self, ino, path, view, offset=offset, length=length, first_block=f0,
                              writable=write, lease=lease, on_break=on_break, holder=holder)
            try:
                for f, k, p, fl in node.extents.pieces(f0, f1 - f0):  # type: ignore[union-attr]
                    if p < 0 or fl & UNWRITTEN:
                        view.map_zero((f - f0) * bs, k * bs)
                        mapping.zero_blocks.append((f, k))
                    else:
                        self._attach_blocks(mapping, f, k, p)
            except BaseException:
                view.release()
                raise
            self._register(mapping)
            return mapping

    def _admit_reference(self, path: str) -> None:
        """May a new mapping or pin be made now?  Not while a forced close is under way; and
        a read-only opener first takes the pool's shared lock: with no writer able to open
        meanwhile, nobody can free the blocks its references point at."""
        if self._closing:
            raise BusyError("volume is closing: no new mappings or pins", filename=path)
        if self._follow and self._reader_refs == 0:
            if not self._pool.share_lock():  # type: ignore[attr-defined]
                raise BusyError("the pool's writer could reuse blocks a read-only opener maps or pins: "
                                "map or pin through the writer, or when no process writes",
                                filename=path)
            self._refresh()            # the writer may have logged changes before leaving

    def _register(self, ref: "Mapping | Pin") -> None:
        """A new live reference: it holds its blocks and its inode, and seals its range."""
        if self._follow:
            self._reader_refs += 1
        else:
            for p, k in ref.held:
                self._core.hold(p, k)
        self._refs[ref.ino] = self._refs.get(ref.ino, 0) + 1
        self._seals.setdefault(ref.ino, set()).add(ref)
        ref.since = time.time()
        holder = ref.holder
        if holder is not self:
            holder.owned.add(ref)  # type: ignore[attr-defined]
        self._status_changed()

    def _attach_blocks(self, mapping: "Mapping | Pin", f: int, k: int, p: int) -> None:
        """Lay data blocks ``p..p+k`` over file blocks ``f..f+k`` of the mapping's view."""
        bs = self._bs
        pool_offset = self._data_offset + p * bs
        if mapping._view is not None:      # a pin makes its CPU view only when asked
            # a write view is faulted in now (MAP_POPULATE): its stores then never fault
            mapping._view.map_pool((f - mapping.first_block) * bs, k * bs, pool_offset,
                                   populate=mapping.writable)
        mapping.held.append((p, k))
        mapping.pieces.append((f, k, pool_offset))

    def _populate(self, node: Inode, offset: int, end: int) -> None:
        """Make ``[offset, end)`` of a file written blocks of its own, zeroed where new, and
        durable (a write mapping's MAP_SYNC|MAP_POPULATE); the size grows to ``end``."""
        bs = self._bs
        f0 = offset // bs
        f1 = -(-end // bs)
        self._unshare(node, f0, f1, grows_to=end)
        mapping = self._fill_plan(node, node.extents.pieces(f0, f1 - f0))  # type: ignore[union-attr]
        grows = end > node.size
        if not mapping and not grows:
            return
        stores: list[tuple[int, int]] = []
        if grows:
            self._zero_tail_for_growth(node, end, stores)
        for _f, k, p, _fl in mapping:
            base = self._data_offset + p * bs
            self._pool.zero(base, k * bs)
            stores.append((base, k * bs))
        self._persist(stores)
        self._commit(SetExtents(node.ino, [], [x for m in mapping for x in m], end if grows else None, _now()))
        self._show_filled(node.ino, mapping)

    def _show_filled(self, ino: int, filled: list[tuple[int, int, int, int]]) -> None:
        """Blocks just written into holes or unwritten ranges: mappings that showed zeros
        there now show the blocks, so reads, writes and mappings stay coherent."""
        maps = self._seals.get(ino)
        if not maps or not filled:
            return
        core = self._core
        for mapping in maps:
            if not mapping.zero_blocks:
                continue
            first, end = mapping.block_range()
            still_zero: list[tuple[int, int]] = []
            for zf, zk in mapping.zero_blocks:
                pos = zf
                for f, k, p, fl in sorted(filled):
                    lo, hi = max(f, zf, first), min(f + k, zf + zk, end)
                    if lo >= hi or fl & UNWRITTEN:
                        continue
                    if lo > pos:
                        still_zero.append((pos, lo - pos))
                    self._attach_blocks(mapping, lo, hi - lo, p + lo - f)
                    if not self._follow:
                        core.hold(p + lo - f, hi - lo)
                    pos = hi
                if pos < zf + zk:
                    still_zero.append((pos, zf + zk - pos))
            mapping.zero_blocks = still_zero

    def _sealed(self, ino: int, fblk: int, nblk: int) -> bool:
        """Whether a live mapping covers any of file blocks ``[fblk, fblk+nblk)``."""
        for mapping in self._seals.get(ino, ()):
            first, end = mapping.block_range()
            if first < fblk + nblk and fblk < end:
                return True
        return False

    def _persist_mapping(self, mapping: "Mapping", start: int, length: int) -> None:
        """Persist view bytes ``[start, start+length)``: the pool ranges under them."""
        bs = self._bs
        end = start + length
        with self._lock:
            for f, k, pool_offset in mapping.pieces:
                lo = (f - mapping.first_block) * bs
                a, b = max(lo, start), min(lo + k * bs, end)
                if a < b:
                    self._pool.persist_mapped(pool_offset + a - lo, b - a)

    def _revoke_mapping(self, mapping: "Mapping", mode: str) -> None:
        with self._lock:
            if mapping.revoked:
                return
            if mode == "migrate":
                mapping.view.migrate()
            else:
                mapping.view.invalidate()
            mapping.revoked = True
            self._let_go(mapping)

    def _release_ref(self, ref: "Mapping | Pin", *, unmapped: bool) -> None:
        """A mapping closed or a pin was released; ``unmapped``: its memory is gone
        too, so its blocks are let go now (else when its last export goes)."""
        with self._lock:
            if ref.revoked:
                return
            if unmapped:
                self._let_go(ref)
            else:
                self._forget_ref(ref)

    def _release_ref_blocks(self, ref: "Mapping | Pin") -> None:
        """The reference's memory is unmapped: its data blocks are no longer held."""
        with self._lock:
            self._unhold(ref)
            self._changed.notify_all()
            self._status_changed()

    def _unhold(self, ref: "Mapping | Pin") -> None:
        if ref.held is None:
            return
        if self._follow:
            self._reader_refs -= 1
            if self._reader_refs == 0 and not self._closed:
                self._pool.share_unlock()  # type: ignore[attr-defined]
        elif not self._closed:
            for p, k in ref.held:
                self._core.unhold(p, k)
        ref.held = None  # type: ignore[assignment]

    def _let_go(self, ref: "Mapping | Pin") -> None:
        self._forget_ref(ref, announce=False)
        self._unhold(ref)
        self._changed.notify_all()
        self._status_changed()

    def _forget_ref(self, ref: "Mapping | Pin", *, announce: bool = True) -> None:
        """The reference no longer seals its range or holds its inode."""
        refs = self._seals.get(ref.ino)
        if refs is None or ref not in refs:
            return
        refs.discard(ref)
        if not refs:
            del self._seals[ref.ino]
        if ref.holder is not self:
            ref.holder.owned.discard(ref)  # type: ignore[attr-defined]
        if not self._closed:
            self._drop_ref(ref.ino)
        if announce:
            self._changed.notify_all()
            self._status_changed()

    # ---- pins

    def _pin(self, ino: int, path: str, offset: int, length: int, *, write: bool, holder: object) -> "Pin":
        Pin = _access_class("Pin")
        if not isinstance(offset, int) or not isinstance(length, int):
            raise TypeError("pin offset and length must be integers")
        if offset < 0 or length <= 0:
            raise ValueError("pin needs offset >= 0 and length > 0")
        with self._lock:
            if write:
                self._check_writable(path)
            else:
                self._check_open()
            node = self._node(ino)
            end = offset + length
            if end > node.size:
                raise ValueError(f"pin [{offset}, {end}) reaches past the end of the file ({node.size} bytes)")
            bs = self._bs
            f0, f1 = offset // bs, -(-end // bs)
            self._check_not_waiting(ino, f0, f1, path)
            self._admit_reference(path)
            if write:
                self._populate(node, offset, end)
            pin = Pin(self, ino, path, offset=offset, length=length, first_block=f0, writable=write,
                      holder=holder)
            for f, k, p, fl in node.extents.pieces(f0, f1 - f0):  # type: ignore[union-attr]
                if p < 0 or fl & UNWRITTEN:
                    pin.zero_blocks.append((f, k))
                else:
                    self._attach_blocks(pin, f, k, p)
            self._register(pin)
            return pin

    def _pin_buffer(self, pin: "Pin") -> memoryview:
        """The pin's CPU view, made on first use."""
        with self._lock:
            if pin._view is None:
                bs = self._bs
                first, end = pin.block_range()
                view = self._pool.map_view((end - first) * bs, writable=pin.writable)
                try:
                    for f, k in pin.zero_blocks:
                        view.map_zero((f - first) * bs, k * bs)
                    for f, k, pool_offset in pin.pieces:
                        view.map_pool((f - first) * bs, k * bs, pool_offset)
                except BaseException:
                    view.release()
                    raise
                pin._view = view
            return pin._view.buffer(pin.offset - pin.first_block * self._bs, pin.length)

    def _pin_segments(self, pin: "Pin") -> list[tuple[int, int, int | None]]:
        with self._lock:
            bs = self._bs
            runs = [(f, k, o) for f, k, o in pin.pieces] + [(f, k, None) for f, k in pin.zero_blocks]
            out: list[tuple[int, int, int | None]] = []
            start, end = pin.offset, pin.offset + pin.length
            for f, k, pool_offset in sorted(runs, key=lambda r: r[0]):
                lo, hi = max(f * bs, start), min((f + k) * bs, end)
                if lo < hi:
                    out.append((lo, hi - lo, None if pool_offset is None else pool_offset + lo - f * bs))
            return out

    # ---- holders, listing

    def holder(self, name: str) -> "Holder":
        """A named owner: what is opened, mapped or pinned through it, its close() releases."""
        from daxfs.access.holder import Holder

        self._check_open()
        return Holder(self, str(name))

    def _close_holder(self, holder: "Holder") -> None:
        with self._lock:
            for thing in list(holder.owned):
                if getattr(thing, "kind", None) == "pin":
                    if not thing.released:
                        thing.release()
                else:
                    thing.close()
            holder.owned.clear()

    def _live_refs(self) -> list["Mapping | Pin"]:
        return [r for refs in self._seals.values() for r in refs]

    def _holder_name(self, holder: object) -> str:
        return self._own_name if holder is self else str(holder)

    def pins(self) -> list[PinInfo]:
        """Every live pin, mapping and lease: who holds which file range since when."""
        with self._lock:
            self._check_open()
            return self._pin_infos()

    def _pin_infos(self, refs: "list[Mapping | Pin] | None" = None) -> list[PinInfo]:
        paths: dict[int, str | None] = {}
        out = []
        for ref in self._live_refs() if refs is None else refs:
            if ref.ino not in paths:
                paths[ref.ino] = self._path_of(ref.ino, ref.path)
            kind = "lease" if ref.lease else ref.kind
            out.append(PinInfo(self._holder_name(ref.holder), ref.ino, paths[ref.ino], ref.offset,
                               ref.length, kind, ref.since))
        out.sort(key=lambda info: (info.since, info.ino, info.offset))
        return out

    def _paths_of(self, inos: set[int]) -> dict[int, str | None]:
        """A current name of each inode (None for orphans), in one walk of the tree."""
        core = self._core
        out: dict[int, str | None] = {}
        wanted = set()
        for ino in inos:
            node = core.inodes.get(ino)
            if node is None or node.nlink == 0:
                out[ino] = None
            else:
                wanted.add(ino)
        stack = [("", core.inodes[ROOT_INO])]
        while stack and wanted:
            prefix, d = stack.pop()
            for name, child in d.entries.items():  # type: ignore[union-attr]
                if child in wanted:
                    out[child] = prefix + "/" + name
                    wanted.discard(child)
                cnode = core.inodes[child]
                if cnode.entries is not None:
                    stack.append((prefix + "/" + name, cnode))
        return out

    def _path_of(self, ino: int, hint: str) -> str | None:
        """A current name of inode ``ino`` (``hint`` first), None for an orphan."""
        core = self._core
        node = core.inodes.get(ino)
        if node is None or node.nlink == 0:
            return None
        try:
            if core.resolve(hint)[2] == ino:
                return "/" + "/".join(split_path(hint)[0]) if hint not in ("", "/") else "/"
        except (OSError, ValueError):
            pass
        stack = [("", core.inodes[ROOT_INO])]
        while stack:
            prefix, d = stack.pop()
            for name, child in d.entries.items():  # type: ignore[union-attr]
                if child == ino:
                    return prefix + "/" + name
                cnode = core.inodes[child]
                if cnode.entries is not None:
                    stack.append((prefix + "/" + name, cnode))
        return None

    def _busy_error(self, what: str, refs: list["Mapping | Pin"]) -> BusyError:
        kinds = ", ".join(f"{'lease' if r.lease else r.kind} on {r.path} [{r.offset}, +{r.length}) "
                          f"by {self._holder_name(r.holder)}" for r in refs[:5])
        more = f" and {len(refs) - 5} more" if len(refs) > 5 else ""
        return BusyError(f"{what}: {kinds}{more}", holders=sorted({self._holder_name(r.holder) for r in refs}),
                         filename=self.path)

    # ---- the status page, for other processes (daxfs pins, daxfs df)

    _PUBLISH_EVERY = 0.2

    def _status_changed(self) -> None:
        """Publish soon: at once if the last publish is old, else once the interval passes."""
        if self.readonly or self._closed:
            return
        now = time.monotonic()
        if now - self._published >= self._PUBLISH_EVERY:
            self._publish()
        elif self._publish_timer is None:
            timer = threading.Timer(self._PUBLISH_EVERY - (now - self._published), self._publish_later)
            timer.daemon = True
            self._publish_timer = timer
            timer.start()

    def _publish_later(self) -> None:
        with self._lock:
            self._publish_timer = None
            if not self._closed:
                self._publish()

    def _publish(self, *, clear: bool = False) -> None:
        self._published = time.monotonic()
        if clear:
            self._pool.write(STATUS_OFFSET, bytes(64))
            return
        live = self._live_refs()
        # The page holds a few hundred; listing more would only stall the writer.
        refs = [list(info) for info in self._pin_infos(live[:_PUBLISHED_REFS])]
        status = {"pid": os.getpid(), "time": time.time(), "busy": self._core.busy.blocks * self._bs,
                  "total": len(live), "refs": refs}
        self._pool.write(STATUS_OFFSET, encode_status(status, STATUS_SIZE))

    def published(self) -> dict[str, Any] | None:
        """What the pool's read-write opener last published (pid, time, busy bytes, refs as
        PinInfo, total), or None when no live process has published anything."""
        with self._lock:
            self._check_open()
            status = decode_status(self._pool.read(STATUS_OFFSET, STATUS_SIZE))
        if status is None or not _alive(status.get("pid", 0)):
            return None
        try:
            status["refs"] = [PinInfo(*ref) for ref in status.get("refs", ())]
        except TypeError:
            return None
        return status

    # ---- policies

    def _references(self, ino: int, first: int, end: int | None) -> list["Mapping | Pin"]:
        """Live references to file blocks ``[first, end)`` (``end`` None: to the end)."""
        out = []
        for ref in self._seals.get(ino, ()):
            rfirst, rend = ref.block_range()
            if rend > first and (end is None or rfirst < end):
                out.append(ref)
        return out

    def _check_not_waiting(self, ino: int, first: int, end: int, path: str) -> None:
        """New references to a range a 'wait' change is waiting on are refused (no starving it)."""
        for wino, wfirst, wend in self._waiting:
            if wino == ino and wfirst < end and (wend < 0 or first < wend):
                raise BusyError("a change waiting on this range refuses new pins and mappings", filename=path)

    def _wait_until(self, done: Any, deadline: float | None) -> bool:
        """Wait (lock released) until ``done()``; False at the deadline."""
        while not done():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._changed.wait(remaining)
        return True

    def _break_leases(self, leases: list["Mapping | Pin"], deadline: float | None = None) -> None:
        """Tell each lease to let go, give it ``lease_break_s``, then revoke (migrate) it."""
        if not leases:
            return
        for lease in leases:
            if not getattr(lease, "breaking", False):
                lease.breaking = True  # type: ignore[union-attr]
                if lease.on_break is not None:  # type: ignore[union-attr]
                    try:
                        lease.on_break(lease)  # type: ignore[union-attr]
                    except Exception:   # a holder's callback failing must not stop the change
                        pass
        limit = time.monotonic() + self.lease_break_s
        if deadline is not None:
            limit = min(limit, deadline)
        self._wait_until(lambda: all(l.closed or l.revoked for l in leases), limit)  # type: ignore[union-attr]
        for lease in leases:
            if not lease.closed and not lease.revoked:  # type: ignore[union-attr]
                self._revoke_mapping(lease, "migrate")  # type: ignore[arg-type]

    def _settle(self, ino: int, first: int, end: int | None, policy: str | None, what: str,
                timeout: float | None = None) -> bool:
        """Apply the pin policy to a change of file blocks ``[first, end)``.

        Returns True when it waited (the lock was released meanwhile, so the
        caller must look at the state again); raises BusyError for 'refuse'
        or a 'wait' that timed out.  'defer' and what 'break' leaves behind go
        ahead: blocks still referenced will be parked on the busy list.
        """
        refs = self._references(ino, first, end)
        if not refs:
            return False
        policy = policy or self.policy
        if policy == "defer":
            return False
        if policy == "refuse":
            raise self._busy_error(f"{what} refused", refs)
        if policy == "break":
            leases = [r for r in refs if r.lease]
            self._break_leases(leases)
            return bool(leases)
        token = (ino, first, -1 if end is None else end)
        self._waiting.append(token)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            if not self._wait_until(lambda: self._closed or not self._references(ino, first, end), deadline):
                raise self._busy_error(f"{what} still held after waiting {timeout} s", self._references(ino, first, end))
        finally:
            self._waiting.remove(token)
            self._changed.notify_all()
        self._check_open()
        return True

    def _flush_pending(self, ino: int | None) -> None:
        """Persist lazily written data and log deferred timestamps (one inode, or all)."""
        inos = list(self._dirty) if ino is None else [ino]
        for i in inos:
            for off, n in self._dirty.pop(i, ()):
                self._pool.persist(off, n)
        inos = list(self._pending_mtime) if ino is None else [ino]
        for i in inos:
            mtime = self._pending_mtime.pop(i, None)
            if mtime is not None and i in self._core.inodes:
                self._commit(SetAttr(i, None, None, None, None, mtime, mtime))

    # ---- data path (called by File with the lock not yet held)

    def _node(self, ino: int) -> Inode:
        node = self._core.inodes.get(ino)
        if node is None:
            # only a read-only follower can lose an inode under an open handle
            raise fs_error(errno.ESTALE, message="file was removed by the pool's writer")
        return node

    def _pread_into(self, ino: int, dest: memoryview | None, n: int, offset: int) -> bytes | int:
        """Read up to ``n`` bytes at ``offset``: into ``dest`` (returns a count) or as bytes."""
        if offset < 0:
            raise fs_error(errno.EINVAL, message="negative offset")
        with self._lock:
            while True:
                self._check_open()
                got = self._read_locked(ino, dest, n, offset)
                # A follower copied bytes the writer may have freed and reused
                # meanwhile: only a record appended during the copy can say so.
                if not self._follow or not self._log_moved():
                    return got

    def _read_locked(self, ino: int, dest: memoryview | None, n: int, offset: int) -> bytes | int:
        """The read itself, under the lock."""
        node = self._node(ino)
        size = node.size
        if offset >= size or n <= 0:
            return b"" if dest is None else 0
        if n > size - offset:
            n = size - offset
        bs = self._bs
        fblk = offset // bs
        emap = node.extents
        run = emap.lookup(fblk)  # type: ignore[union-attr]
        if run is not None and not run[3] & UNWRITTEN and (offset + n - 1) // bs < run[0] + run[1]:
            # Fast path: one written run covers the whole read.
            src = self._data_offset + (run[2] + fblk - run[0]) * bs + offset % bs
            if dest is None:
                return self._pool.read(src, n)
            dest[:n] = self._pool.view(src, n)
            return n
        out = memoryview(bytearray(n)) if dest is None else dest[:n]
        last = (offset + n - 1) // bs
        for f, k, p, fl in emap.pieces(fblk, last - fblk + 1):  # type: ignore[union-attr]
            lo = max(f * bs, offset)
            hi = min((f + k) * bs, offset + n)
            if p < 0 or fl & UNWRITTEN:
                out[lo - offset:hi - offset] = bytes(hi - lo)
            else:
                out[lo - offset:hi - offset] = self._pool.view(self._data_offset + p * bs + lo - f * bs, hi - lo)
        return bytes(out) if dest is None else n

    def _zero_tail_for_growth(self, node: Inode, new_end: int, stores: list[tuple[int, int]]) -> None:
        """Zero the stale bytes past EOF in the last block before the size grows over them."""
        size = node.size
        bs = self._bs
        if new_end <= size or size % bs == 0:
            return
        run = node.extents.lookup(size // bs)  # type: ignore[union-attr]
        if run is None or run[3] & UNWRITTEN:
            return
        blk = size // bs
        start = self._data_offset + (run[2] + blk - run[0]) * bs + size % bs
        length = min(new_end, (blk + 1) * bs) - size
        self._pool.zero(start, length)
        stores.append((start, length))

    def _persist(self, ranges: Iterable[tuple[int, int]]) -> None:
        for off, n in ranges:
            self._pool.persist(off, n)

    def _assign(self, holes: list[tuple[int, int]], plan: list[tuple[int, int]], flags: int
                ) -> list[tuple[int, int, int, int]]:
        """Lay planned data runs over file holes in order: ``(fblk, n, pblk, flags)`` pieces."""
        out: list[tuple[int, int, int, int]] = []
        pi = 0
        pstart, pleft = plan[0] if plan else (0, 0)
        for f, k in holes:
            while k:
                if pleft == 0:
                    pi += 1
                    pstart, pleft = plan[pi]
                take = min(k, pleft)
                out.append((f, take, pstart, flags))
                f += take
                k -= take
                pstart += take
                pleft -= take
        return out

    def _pwrite(self, ino: int, data: memoryview, offset: int | None) -> int:
        """Write ``data`` at ``offset`` (None: at EOF, for O_APPEND)."""
        n = data.nbytes
        with self._lock:
            if self._closed or self.readonly:
                self._check_writable()
            node = self._node(ino)
            if offset is None:
                offset = node.size
            if offset < 0:
                raise fs_error(errno.EINVAL, message="negative offset")
            if n == 0:
                return 0
            end = offset + n
            if end > MAX_FILE_SIZE:
                raise fs_error(errno.EFBIG, message="file too large")
            bs = self._bs
            f0 = offset // bs
            f1 = (end - 1) // bs + 1
            grows = end > node.size
            tail = node.size // bs if grows and node.size % bs else -1
            if tail >= 0 and not f0 <= tail < f1:
                self._unshare(node, 0, 0, grows_to=end)     # the old last block, before zeroing its tail
            # Shared blocks the write covers are copied, and the write goes into the copies,
            # which the write's own record swaps in: all-or-nothing.
            cow = self._unshare(node, f0, f1, commit=False, zero_past_eof=grows)
            emap = node.extents
            run = emap.lookup(f0)  # type: ignore[union-attr]
            if cow:
                pieces = _substitute(emap.pieces(f0, f1 - f0), cow)  # type: ignore[union-attr]
            elif run is not None and not run[3] & UNWRITTEN and run[0] + run[1] >= f1:
                pieces = [(f0, f1 - f0, run[2] + f0 - run[0], 0)]     # all in place: the common rewrite
            elif run is None and emap.is_hole(f0, f1 - f0):  # type: ignore[union-attr]
                if self._append_into_hole(node, data, offset, end, f0, f1 - f0):
                    return n
                pieces = [(f0, f1 - f0, -1, 0)]
            else:
                pieces = emap.pieces(f0, f1 - f0)  # type: ignore[union-attr]
            fills = self._fill_plan(node, pieces, cow)
            mapping = fills + cow           # the copies get the data like any written block, below
            # Nothing has changed so far; from here on the write cannot fail.
            stores: list[tuple[int, int]] = []
            if grows and not any(f <= tail < f + k for f, k, _p, _fl in cow):
                self._zero_tail_for_growth(node, end, stores)
            for f, k, p, _fl in fills:
                self._store_new_blocks(f, k, p, data, offset, end, stores)
            in_place = [x for x in pieces if x[2] >= 0 and not x[3] & UNWRITTEN]
            for f, k, p, _fl in in_place:
                lo = f * bs if f * bs > offset else offset
                hi = (f + k) * bs if (f + k) * bs < end else end
                dst = self._data_offset + p * bs + lo - f * bs
                self._pool.write(dst, data[lo - offset:hi - offset])
                if self.durability == "sync":
                    stores.append((dst, hi - lo))
                else:
                    self._dirty.setdefault(ino, []).append((dst, hi - lo))
            self._persist(stores)
            now = _now()
            if mapping or grows:
                self._pending_mtime.pop(ino, None)
                flat = [x for piece in mapping for x in piece]
                self._commit(SetExtents(ino, [], flat, end if grows else None, now))
                self._show_filled(ino, mapping)
            else:
                self._pending_mtime[ino] = now
            return n

    def _append_into_hole(self, node: Inode, data: memoryview, offset: int, end: int, f0: int,
                          nblk: int) -> bool:
        """The common case of a write into a hole that one free run can fill (appends, new files).

        Does the whole write and returns True; False (nothing done) when the
        blocks would be split over several runs.
        """
        core = self._core
        plan = core.plan_blocks(nblk, core.goal_after(node, f0))
        if len(plan) != 1:
            return False
        if core.checkpoint_bound + 2 * _GROW_RUN > self._layout.checkpoint_size - 64:
            raise fs_error(errno.ENOSPC, message="no space left for metadata")
        self._prefault(plan)
        stores: list[tuple[int, int]] = []
        grows = end > node.size
        if grows and node.size % self._bs:
            self._zero_tail_for_growth(node, end, stores)
        pblk = plan[0][0]
        self._store_new_blocks(f0, nblk, pblk, data, offset, end, stores)
        self._persist(stores)
        self._pending_mtime.pop(node.ino, None)
        self._commit(SetExtents(node.ino, [], [f0, nblk, pblk, 0], end if grows else None, _now()))
        if node.ino in self._seals:
            self._show_filled(node.ino, [(f0, nblk, pblk, 0)])
        return True

    def _prefault(self, plan: list[tuple[int, int]]) -> None:
        """Map in the huge-page chunks new blocks fall in, once per mount (cheaper than a
        page fault per block on first touch)."""
        shift = self._chunk_shift
        faulted = self._faulted
        for pblk, k in plan:
            for chunk in range(pblk >> shift, ((pblk + k - 1) >> shift) + 1):
                if chunk not in faulted:
                    faulted.add(chunk)
                    self._pool.prefault(self._data_offset + (chunk << shift) * self._bs,
                                        (1 << shift) * self._bs)

    def _fill_plan(self, node: Inode, pieces: list[tuple[int, int, int, int]],
                   promised: list[tuple[int, int, int, int]] = ()) -> list[tuple[int, int, int, int]]:  # type: ignore[assignment]
        """Blocks to write ``pieces`` into: fresh ones for holes, the same ones for unwritten
        runs (now written).  ``promised``: pieces already planned for this write (copies).
        ENOSPC, for data or metadata, before anything changes."""
        core = self._core
        holes = [(f, k) for f, k, p, _fl in pieces if p < 0]
        fresh: list[tuple[int, int, int, int]] = []
        if holes:
            plan = core.plan_blocks(sum(k for _f, k in holes), core.goal_after(node, holes[0][0]),
                                    [(p, k) for _f, k, p, _fl in promised])
            fresh = self._assign(holes, plan, 0)
            self._prefault(plan)
        mapping = fresh + [(f, k, p, 0) for f, k, p, fl in pieces if p >= 0 and fl & UNWRITTEN]
        if mapping and core.checkpoint_bound + _GROW_RUN * (len(mapping) + 1) > self._layout.checkpoint_size - 64:
            raise fs_error(errno.ENOSPC, message="no space left for metadata")
        return mapping

    def _store_new_blocks(self, f: int, k: int, p: int, data: memoryview, offset: int, end: int,
                          stores: list[tuple[int, int]]) -> None:
        """Fill blocks a file is about to gain: its data where the write covers them, zeros elsewhere."""
        bs = self._bs
        pool = self._pool
        base = self._data_offset + p * bs
        first, last = f * bs, (f + k) * bs
        lo = first if first > offset else offset
        hi = last if last < end else end
        if lo > first:
            pool.zero(base, lo - first)
        if hi > lo:
            pool.write(base + lo - first, data[lo - offset:hi - offset])
        if hi < last:
            pool.zero(base + max(hi, lo) - first, last - max(hi, lo))
        stores.append((base, k * bs))

    def _truncate(self, node: Inode, size: int) -> None:
        bs = self._bs
        old = node.size
        now = _now()
        if size > old:
            self._unshare(node, 0, 0, grows_to=size)
            stores: list[tuple[int, int]] = []
            self._zero_tail_for_growth(node, size, stores)
            self._persist(stores)
            self._commit(SetExtents(node.ino, [], [], size, now))
            return
        keep = -(-size // bs)
        unmap = [keep, -1] if node.extents.end > keep else []  # type: ignore[union-attr]
        if unmap or size != old:
            self._pending_mtime.pop(node.ino, None)
            self._commit(SetExtents(node.ino, unmap, [], size, now))

    def _ftruncate(self, ino: int, size: int, policy: str | None = None, timeout: float | None = None) -> None:
        if size < 0:
            raise fs_error(errno.EINVAL, message="negative size")
        if size > MAX_FILE_SIZE:
            raise fs_error(errno.EFBIG, message="file too large")
        with self._lock:
            self._check_writable()
            if size < self._node(ino).size:
                self._settle(ino, -(-size // self._bs), None, policy, "truncate", timeout)
            self._truncate(self._node(ino), size)

    def _range_blocks(self, offset: int, length: int) -> None:
        if offset < 0 or length <= 0:
            raise fs_error(errno.EINVAL, message="offset must be >= 0 and length > 0")
        if offset + length > MAX_FILE_SIZE:
            raise fs_error(errno.EFBIG, message="file too large")

    def _fallocate(self, ino: int, offset: int, length: int, keep_size: bool) -> None:
        self._range_blocks(offset, length)
        with self._lock:
            self._check_writable()
            node = self._node(ino)
            bs = self._bs
            core = self._core
            end = offset + length
            f0 = offset // bs
            f1 = -(-end // bs)
            self._unshare(node, f0, f1, grows_to=None if keep_size else end)
            holes = [(f, k) for f, k, p, _fl in node.extents.pieces(f0, f1 - f0) if p < 0]  # type: ignore[union-attr]
            mapping: list[tuple[int, int, int, int]] = []
            if holes:
                plan = core.plan_blocks(sum(k for _f, k in holes), core.goal_after(node, holes[0][0]))
                mapping = self._assign(holes, plan, UNWRITTEN)
            new_size = end if not keep_size and end > node.size else None
            if not mapping and new_size is None:
                return
            stores: list[tuple[int, int]] = []
            if new_size is not None:
                self._zero_tail_for_growth(node, new_size, stores)
                self._persist(stores)
            self._commit(SetExtents(ino, [], [x for m in mapping for x in m], new_size, _now()),
                         _GROW_RUN * (len(mapping) + 1))

    def _cow_zeroed(self, node: Inode, blk: int, lo: int, hi: int, plan: list[tuple[int, int]] | None,
                    stores: list[tuple[int, int]]) -> tuple[int, int, int, int] | None:
        """Zero bytes ``[lo, hi)`` of written file block ``blk``: into a copy when ``plan``
        gives a free block (returned as a mapping piece), else in place."""
        bs = self._bs
        run = node.extents.lookup(blk)  # type: ignore[union-attr]
        if run is None or run[3] & UNWRITTEN:
            return None
        old = self._data_offset + (run[2] + blk - run[0]) * bs
        if plan:
            pblk = plan.pop(0)[0]
            new = self._data_offset + pblk * bs
            block = bytearray(self._pool.view(old, bs))
            block[lo:hi] = bytes(hi - lo)
            self._pool.write(new, block)
            stores.append((new, bs))
            return (blk, 1, pblk, 0)
        self._pool.zero(old + lo, hi - lo)
        stores.append((old + lo, hi - lo))
        return None

    def _partial_edges(self, offset: int, end: int) -> list[tuple[int, int, int]]:
        """Blocks that ``[offset, end)`` covers only partly: ``(blk, lo, hi)`` byte ranges within."""
        bs = self._bs
        first, last = offset // bs, (end - 1) // bs
        edges = []
        if offset % bs or (first == last and end % bs):
            edges.append((first, offset % bs, end - first * bs if first == last else bs))
        if last != first and end % bs:
            edges.append((last, 0, end % bs))
        return edges

    def _edge_plan(self, node: Inode, edges: list[tuple[int, int, int]], extra: int
                   ) -> tuple[list[tuple[int, int]], list[tuple[int, int]] | None]:
        """Plan ``extra`` blocks plus one block per written edge (its COW copy).

        When there is no room for the copies, plan only ``extra`` (edges zero in place).
        """
        cow = [e for e in edges if (r := node.extents.lookup(e[0])) is not None  # type: ignore[union-attr]
               and not r[3] & UNWRITTEN]
        core = self._core
        try:
            plan = core.plan_blocks(extra + len(cow))
            if not cow:
                return plan, None
            # split off single blocks for the copies from the end of the plan
            singles: list[tuple[int, int]] = []
            need = len(cow)
            while need:
                start, k = plan[-1]
                take = min(k, need)
                singles.extend((start + k - 1 - i, 1) for i in range(take))
                plan[-1] = (start, k - take)
                if plan[-1][1] == 0:
                    plan.pop()
                need -= take
            return plan, singles
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not cow:
                raise
            return core.plan_blocks(extra), None

    def _punch(self, ino: int, offset: int, length: int, policy: str | None = None,
               timeout: float | None = None) -> None:
        self._range_blocks(offset, length)
        with self._lock:
            self._check_writable()
            bs = self._bs
            end = offset + length
            self._settle(ino, offset // bs, -(-end // bs), policy, "punch_hole", timeout)
            node = self._node(ino)
            if offset % bs:
                self._unshare(node, offset // bs, offset // bs + 1)
            if end % bs:
                self._unshare(node, end // bs, end // bs + 1)
            w0, w1 = -(-offset // bs), end // bs      # whole blocks
            edges = self._partial_edges(offset, end)
            edges = [e for e in edges if not (w0 <= e[0] < w1)]
            unmap = [w0, w1 - w0] if w1 > w0 and node.extents.slice(w0, w1 - w0) else []  # type: ignore[union-attr]
            # Under a mapping, blocks must not move: partial blocks are zeroed in place.
            sealed = self._sealed(ino, offset // bs, -(-end // bs) - offset // bs)
            _plan, singles = self._edge_plan(node, [] if sealed else edges, 0)
            stores: list[tuple[int, int]] = []
            mapping = [m for blk, lo, hi in edges
                       if (m := self._cow_zeroed(node, blk, lo, hi, singles, stores)) is not None]
            self._persist(stores)
            if unmap or mapping:
                self._commit(SetExtents(ino, unmap, [x for m in mapping for x in m], None, _now()),
                             _GROW_RUN * (len(mapping) + 2))
            elif stores:
                self._pending_mtime[ino] = _now()

    def _zero_range(self, ino: int, offset: int, length: int, keep_size: bool) -> None:
        self._range_blocks(offset, length)
        with self._lock:
            self._check_writable()
            bs = self._bs
            end = offset + length
            # whatever the policy leaves referenced is zeroed in place (below)
            self._settle(ino, offset // bs, -(-end // bs), None, "zero_range")
            node = self._node(ino)
            self._unshare(node, offset // bs, -(-end // bs), grows_to=None if keep_size else end)
            emap = node.extents
            w0, w1 = -(-offset // bs), end // bs
            whole = emap.pieces(w0, w1 - w0) if w1 > w0 else []  # type: ignore[union-attr]
            edges = [e for e in self._partial_edges(offset, end) if not (w0 <= e[0] < w1)]
            edge_holes = [(blk, 1) for blk, _lo, _hi in edges if emap.lookup(blk) is None]  # type: ignore[union-attr]
            holes = sorted([(f, k) for f, k, p, _fl in whole if p < 0] + edge_holes)
            sealed = self._sealed(ino, offset // bs, -(-end // bs) - offset // bs)
            plan, singles = self._edge_plan(node, [] if sealed else edges, sum(k for _f, k in holes))
            mapping = self._assign(holes, plan, UNWRITTEN) if holes else []
            written = [(f, k, p) for f, k, p, fl in whole if p >= 0 and not fl & UNWRITTEN]
            stores: list[tuple[int, int]] = []
            if sealed:
                # a mapping shows these very blocks: zero them where they are
                for _f, k, p in written:
                    self._pool.zero(self._data_offset + p * bs, k * bs)
                    stores.append((self._data_offset + p * bs, k * bs))
            else:
                # same blocks, marked unwritten: they read as zeros from now on
                mapping += [(f, k, p, UNWRITTEN) for f, k, p in written]
            new_size = end if not keep_size and end > node.size else None
            if new_size is not None:
                # before the edge copies below, so they copy zeros, not the stale tail
                self._zero_tail_for_growth(node, new_size, stores)
            mapping += [m for blk, lo, hi in edges
                        if (m := self._cow_zeroed(node, blk, lo, hi, singles, stores)) is not None]
            self._persist(stores)
            if mapping or new_size is not None:
                self._commit(SetExtents(ino, [], [x for m in sorted(mapping) for x in m], new_size, _now()),
                             _GROW_RUN * (len(mapping) + 1))
                self._show_filled(ino, mapping)
            elif stores:
                self._pending_mtime[ino] = _now()

    def _fsync(self, ino: int) -> None:
        with self._lock:
            self._check_open()
            if not self.readonly:
                self._flush_pending(ino)

    def _extents(self, ino: int) -> list[Extent]:
        with self._lock:
            self._check_open()
            node = self._node(ino)
            bs = self._bs
            out = []
            rmap = self._core.rmap
            for f, k, p, fl in node.extents:  # type: ignore[union-attr]
                base = {"unwritten"} if fl & UNWRITTEN else set()
                pos = p
                for sp, sk in rmap.shared_parts(p, k) + [(p + k, 0)]:
                    if sp > pos:
                        out.append(Extent((f + pos - p) * bs, (sp - pos) * bs, self._data_offset + pos * bs,
                                          frozenset(base)))
                    if sk:
                        out.append(Extent((f + sp - p) * bs, sk * bs, self._data_offset + sp * bs,
                                          frozenset(base | {"shared"})))
                    pos = sp + sk
            return out

    def _fstat(self, ino: int) -> Stat:
        with self._lock:
            self._check_open()
            return self._stat(self._node(ino))

    def _seek_data(self, ino: int, offset: int, hole: bool) -> int:
        """SEEK_DATA / SEEK_HOLE: unwritten blocks count as holes, like tmpfs."""
        with self._lock:
            node = self._node(ino)
            size = node.size
            if offset < 0 or offset >= size:
                raise fs_error(errno.ENXIO, message="offset is past the end of the file")
            bs = self._bs
            f0 = offset // bs
            nblk = -(-size // bs) - f0
            for f, k, p, fl in node.extents.pieces(f0, nblk):  # type: ignore[union-attr]
                is_data = p >= 0 and not fl & UNWRITTEN
                if is_data != hole:
                    return min(size, max(offset, f * bs))
            if hole:
                return size
            raise fs_error(errno.ENXIO, message="no data past the offset")


class _Loaded(NamedTuple):
    superblock: Superblock
    core: Core
    ring: LogRing
    generation: int
    checkpoint_pos: int
    #: Why the state stops short of the log's end: record ``bad_seq`` (and all after it)
    #: has a valid checksum but does not decode or apply.  The state is the one before it;
    #: mount it read-only (``repair`` makes it writable).  None when the whole log applied.
    bad_record: str | None = None
    bad_seq: int | None = None
    #: What is wrong with record ``bad_seq`` alone (``bad_record`` adds what it means).
    bad_reason: str | None = None
    #: Why the newest checkpoint was not the one used (the other one plus the log was), or None.
    fallback: str | None = None


def _load(pool: Pool, *, check_damage: bool, stop_before_seq: int | None = None) -> _Loaded:
    """Rebuild a volume's state from its pool: newest valid checkpoint, then the log after it.

    When the newest checkpoint does not form a volume (it does not decode, its
    contents are inconsistent, or the log does not apply to it), the other slot
    plus the log is tried.  When a log record with a valid checksum does not
    decode or apply whichever checkpoint it follows, the state stops before it
    and ``bad_record`` says why: one bad record never costs the whole volume.
    ``stop_before_seq`` stops replay before that record on purpose.
    CorruptVolumeError when no checkpoint yields a state at all.
    """
    sb = Volume._read_superblock(pool)
    layout = sb.layout
    if layout.pool_size > pool.size:
        raise CorruptVolumeError(f"pool is {pool.size} bytes but the volume was made for "
                                 f"{layout.pool_size} (truncated?)")
    slots = layout.checkpoint_offsets
    want = sb.generation
    size = layout.checkpoint_size
    volume_id = int.from_bytes(sb.uuid.bytes[:8], "little")
    # The slot the superblock names, then the other: the checkpoint before it, or a
    # newer one whose superblock flip did not land.  The log holds every record after
    # either one.
    candidates = [(slots[want % 2], (want,)), (slots[(want + 1) % 2], (want - 1, want + 1))]
    first_error: CorruptVolumeError | None = None
    bad: tuple[BadRecordError, Checkpoint, int | None] | None = None   # the furthest a bad record let us get
    for index, (off, generations) in enumerate(candidates):
        try:
            ckpt = decode_checkpoint(pool.view(off, size), off)
            if ckpt.generation not in generations:
                raise CorruptVolumeError(f"checkpoint slot holds generation {ckpt.generation}, "
                                         f"superblock wants {want}" if index == 0 else
                                         f"the other checkpoint slot holds generation {ckpt.generation}, "
                                         f"neither {want - 1} nor {want + 1}", where=off)
            older_pos = None
            if index == 0:
                # The other slot only tells how far back the log is still needed.
                other = peek_checkpoint(pool.view(slots[(want + 1) % 2], size))
                older_pos = other[2] if other is not None and other[0] == want - 1 else None
            core = _core_from(ckpt, layout)
            head, next_seq = LogRing.replay(pool, layout.log_offset, layout.log_size, volume_id,
                                            start=ckpt.log_pos, first_seq=ckpt.last_seq + 1, apply=core.apply,
                                            check_damage=check_damage, stop_before_seq=stop_before_seq)
        except CorruptVolumeError as exc:
            # Kept without its traceback: its frames hold views of the pool, which must
            # not outlive this call (the pool cannot be closed while a view lives).
            exc = exc.with_traceback(None)
            exc.__context__ = None
            if isinstance(exc, BadRecordError) and (bad is None or exc.seq > bad[0].seq):
                bad = (exc, ckpt, older_pos)
            first_error = first_error or exc
            continue
        fallback = None if index == 0 else first_error.strerror  # type: ignore[union-attr]
        return _loaded(pool, sb, core, ckpt, older_pos, head, next_seq, want, volume_id, fallback=fallback)
    if bad is None:
        assert first_error is not None
        raise first_error
    # Both ways stop at a bad record: the state before it, from the checkpoint that got
    # furthest.  apply may have half-changed the state it failed on, so build it again.
    error, ckpt, older_pos = bad
    core = _core_from(ckpt, layout)
    head, next_seq = LogRing.replay(pool, layout.log_offset, layout.log_size, volume_id, start=ckpt.log_pos,
                                    first_seq=ckpt.last_seq + 1, apply=core.apply, check_damage=False,
                                    stop_before_seq=error.seq)
    after = LogRing.count_from(pool, layout.log_offset, layout.log_size, volume_id, start=head,
                               first_seq=error.seq) - 1
    why = (f"{error.strerror}; the volume is read-only with the state before it (through record "
           f"{error.seq - 1}); `daxfs fsck --repair` keeps that state and discards record {error.seq}"
           + (f" and the {after} after it" if after > 0 else ""))
    fallback = None if ckpt.generation == want else first_error.strerror
    return _loaded(pool, sb, core, ckpt, older_pos, head, next_seq, want, volume_id, bad_record=why,
                   bad_seq=error.seq, bad_reason=error.strerror, fallback=fallback)


def _core_from(ckpt: Checkpoint, layout: Layout) -> Core:
    # Building ~10 objects per inode makes the cyclic GC rescan the growing heap
    # over and over; none of them form cycles, so it can wait until the end.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return Core.from_checkpoint(ckpt.state, layout.block_size, layout.data_blocks,
                                    align_blocks=layout.align_blocks)
    finally:
        if gc_was_enabled:
            gc.enable()


def _loaded(pool: Pool, sb: Superblock, core: Core, ckpt: Checkpoint, older_pos: int | None, head: int, next_seq: int,
            want: int, volume_id: int, **notes: Any) -> _Loaded:
    layout = sb.layout
    # The next checkpoint (generation + 1, in slot (generation + 1) % 2) must go over the
    # slot not loaded from: over the one just loaded, a crash while writing it would
    # leave no checkpoint to mount when the other slot is the one that failed.
    generation = want if ckpt.generation == want else max(want + 1, ckpt.generation)
    tail = ckpt.log_pos if older_pos is None or older_pos > ckpt.log_pos else older_pos
    if head - tail > layout.log_size:
        tail = ckpt.log_pos
    ring = LogRing(pool, layout.log_offset, layout.log_size, volume_id, head=head, tail=tail, next_seq=next_seq)
    return _Loaded(sb, core, ring, generation, ckpt.log_pos, **notes)


_FILE_API: tuple[Any, Any] | None = None
_ACCESS_CLASSES: dict[str, Any] = {}


def _access_class(name: str) -> Any:
    """Mapping or Pin, imported on first use (access sits above volume) and cached."""
    cls = _ACCESS_CLASSES.get(name)
    if cls is None:
        from daxfs.access.mapping import Mapping
        from daxfs.access.pin import Pin
        _ACCESS_CLASSES.update(Mapping=Mapping, Pin=Pin)
        cls = _ACCESS_CLASSES[name]
    return cls


def _file_api() -> tuple[Any, Any]:
    """The access layer's File class and mode parser.

    Imported on first use: access sits above volume, so volume may not import
    it at load time; caching keeps the import off the open() hot path.
    """
    global _FILE_API
    if _FILE_API is None:
        from daxfs.access.file import File, parse_mode
        _FILE_API = (File, parse_mode)
    return _FILE_API


def _substitute(pieces: list[tuple[int, int, int, int]], copies: list[tuple[int, int, int, int]]
                ) -> list[tuple[int, int, int, int]]:
    """``pieces`` of a file with the blocks in ``copies`` (fblk, n, new pblk, flags) swapped in."""
    out: list[tuple[int, int, int, int]] = []
    for f, k, p, fl in pieces:
        pos = f
        for cf, ck, cp, _cfl in sorted(copies):
            lo, hi = max(pos, cf), min(f + k, cf + ck)
            if lo >= hi:
                continue
            if lo > pos:
                out.append((pos, lo - pos, p + pos - f if p >= 0 else -1, fl))
            out.append((lo, hi - lo, cp + lo - cf, fl))
            pos = hi
        if pos < f + k:
            out.append((pos, f + k - pos, p + pos - f if p >= 0 else -1, fl))
    return out


def _alive(pid: object) -> bool:
    """Whether process ``pid`` exists (a published status outlives a crashed writer)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _open_pool(path: str, readonly: bool) -> FilePool:
    info = os.stat(path)
    if st.S_ISDIR(info.st_mode):
        raise fs_error(errno.EISDIR, path)
    if st.S_ISREG(info.st_mode) and info.st_size < HEADER_SIZE:
        raise CorruptVolumeError(f"not a daxfs volume: {info.st_size} bytes is too small to hold one",
                                 path=path)
    try:
        return FilePool(path, readonly=readonly, lock=not readonly)
    except BlockingIOError:
        raise _held_elsewhere(path) from None


def _held_elsewhere(path: str) -> BusyError:
    """The BusyError for a pool another opener holds, naming its pid when the owner page has it."""
    try:
        with FilePool(path, readonly=True) as peek:
            pid = decode_owner(peek.read(OWNER_OFFSET, 64)) if peek.size >= HEADER_SIZE else None
    except OSError:
        pid = None
    who = f"process {pid}" if pid else "another process"
    return BusyError(f"pool is open read-write by {who}", holders=[pid] if pid else [], filename=path)


def open_volume(path: object, *, readonly: bool = False, policy: str = "defer", durability: str = "sync",
                lease_break_s: float = 45.0) -> Volume:
    """Mount the volume in the pool at ``path``.

    One process may open a pool read-write at a time (BusyError names the
    holder).  Read-only opens work beside it and follow it: each call first
    catches up with the records the writer has logged, so they see its changes
    as another process on the same mount would.
    """
    check_policy(policy)
    if policy is None:
        raise ValueError("policy must be one of " + ", ".join(POLICIES))
    if durability not in DURABILITIES:
        raise ValueError(f"unknown durability {durability!r}; expected 'sync' or 'lazy'")
    if not lease_break_s >= 0:
        raise ValueError("lease_break_s must be >= 0")
    p = fspath(path)
    pool = _open_pool(p, readonly)
    try:
        return Volume.mount(pool, readonly=readonly, policy=policy, durability=durability,
                            lease_break_s=lease_break_s)
    except BaseException:
        pool.close()
        raise


def mkfs(path: object, size: int | None = None, *, block_size: int = 4096, force: bool = False) -> Volume:
    """Format a pool and return it opened read-write.

    A new path becomes a preallocated file of ``size`` bytes.  An existing
    file or device is formatted in place (``size`` None: all of it); an
    existing daxfs volume, or a non-empty regular file, needs ``force=True``.
    """
    p = fspath(path)
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise fs_error(errno.EINVAL, p, "size must be a positive number of bytes")
    try:
        existing = os.stat(p)
    except FileNotFoundError:
        existing = None
    if existing is None and size is None:
        raise fs_error(errno.EINVAL, p, "size is needed to create a new pool")
    regular = existing is None or st.S_ISREG(existing.st_mode)
    if existing is not None and not force:
        with open(p, "rb") as fh:
            head = fh.read(8)
        if head[:8] == b"DAXFS\x00SB":
            raise fs_error(errno.EEXIST, p, "already a daxfs volume (force=True formats it again)")
        if regular and existing.st_size > 0:
            raise fs_error(errno.EEXIST, p, "file exists and is not empty (force=True formats it)")
    if existing is not None and st.S_ISDIR(existing.st_mode):
        raise fs_error(errno.EISDIR, p)
    target = size if size is not None else existing.st_size  # type: ignore[union-attr]
    if regular:
        Layout.compute(target, block_size)      # EINVAL before anything is created
    try:
        pool = FilePool(p, create_size=target if regular else None, lock=True)
    except BlockingIOError:
        raise _held_elsewhere(p) from None
    try:
        Volume.format(pool, block_size=block_size)
        return Volume.mount(pool)
    except BaseException:
        pool.close()
        if existing is None:
            os.unlink(p)
        raise
