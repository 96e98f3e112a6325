"""Volume: one mounted pool, the public face of the volume layer.

A Volume is made of collaborators, each owning one job:

- ``Journal`` (journal.py): the lock, the core state and the log; every change
  is validate -> record -> persist -> apply through ``journal.commit``.
- ``ReferenceTable`` (references.py): live mappings, pins and leases, open
  inodes, seals, waiters and the pin policies.
- ``DataPath`` (datapath.py): reading and writing file data, copy-on-write,
  taking references; ``RangeOps`` (ranges.py): truncate, fallocate, punch, zero.
- ``Namespace`` (namespace.py): the tree, attributes, open and close.
- ``Sharing`` (sharing.py): clone, dedupe, copy_file_range, owners.
- ``StatusPage`` (status.py): what other processes see of the references.
- ``BadMemory`` (badmemory.py): memory failures — quarantine, fencing, clearing,
  metadata regions, the badblock source and its watcher.
- ``MediaSpace`` (discard.py): giving free blocks' memory back (online discard, trim),
  blocks known to read as zeros, reserving memory before blocks are handed out.

This module converts and range-checks the public API's arguments
(``arguments``) and hands each call to its collaborator.  Open files and
holders are made by the access layer, wired in with ``bind_handles`` at the
package face, so nothing here imports a layer above.
"""

from __future__ import annotations

import os
import stat as st
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from daxfs._types import Owner, PinInfo, Stat, StatFS
from daxfs.core import check
from daxfs.core.records import Reclaim
from daxfs.errors import DamagedVolumeWarning
from daxfs.format.layout import OWNER_OFFSET, Layout
from daxfs.format.superblock import encode_owner
from daxfs.media import Pool
from daxfs.volume import arguments
from daxfs.volume.badmemory import BadMemory
from daxfs.volume.datapath import DataPath
from daxfs.volume.discard import MediaSpace
from daxfs.volume.journal import Journal
from daxfs.volume.mount import format_pool, load
from daxfs.volume.namespace import Namespace, OpenFile
from daxfs.volume.exiting import ClosesOnExit
from daxfs.volume.pathnames import PathNames, names_like
from daxfs.volume.ranges import RangeOps
from daxfs.volume.references import ReferenceTable, check_policy
from daxfs.volume.sharing import Sharing
from daxfs.volume.status import StatusPage, read_status

DURABILITIES = ("sync", "lazy")

#: Volumes open in this process: a child forked from it gets copies it must never use.
_OPEN_VOLUMES: "weakref.WeakSet[Volume]" = weakref.WeakSet()


def _disown_after_fork() -> None:
    """In a forked child: each volume copied from the parent is marked closed, so nothing
    here writes its pool (a checkpoint of the parent's state, as of the fork, over the
    parent's log) or drops the parent's lock on the pool file (the child shares its open
    file description).  The child opens the pool again to use it."""
    for vol in list(_OPEN_VOLUMES):
        vol._journal.closed = True
        vol.references.after_fork()


os.register_at_fork(after_in_child=_disown_after_fork)


class Volume(ClosesOnExit, PathNames):
    """A mounted daxfs volume (see ``daxfs.open_volume``)."""

    # The access layer's handle classes, bound at the package face (daxfs/__init__.py).
    _make_file: Callable[["Volume", OpenFile], Any] | None = None
    _make_holder: Callable[["Volume", str], Any] | None = None
    _wrap_file: Callable[..., Any] | None = None
    _check_options: Callable[..., int] | None = None

    @classmethod
    def bind_handles(cls, *, file: Callable[["Volume", OpenFile], Any], holder: Callable[["Volume", str], Any],
                     wrap: Callable[..., Any], check_options: Callable[..., int]) -> None:
        """Say what ``open`` and ``holder`` return: the access layer's File (buffered and
        text as ``open()`` makes them: ``wrap``, after ``check_options``) and Holder."""
        cls._make_file = file
        cls._make_holder = holder
        cls._wrap_file = wrap
        cls._check_options = check_options

    def __init__(self, journal: Journal, *, policy: str, durability: str, lease_break_s: float,
                 discard: bool | None = None) -> None:
        self._journal = journal
        self.policy = policy
        self.durability = durability
        self.lease_break_s = lease_break_s
        self.path = journal.pool.name
        self.space = MediaSpace(journal, discard=discard)     # before DataPath: it prefaults by it
        self._status = StatusPage(journal)
        self._close_when_idle = False       # left by an exception while pinned: close at the last release
        self.references = ReferenceTable(journal, policy=policy, lease_break_s=lease_break_s,
                                         reclaim=self._reclaim, changed=self._references_changed)
        self._status.references = self.references
        self.data = DataPath(journal, self.references, durability=durability)
        self.ranges = RangeOps(self.data)
        self.namespace = Namespace(self.data, self.ranges)
        self.sharing = Sharing(self.namespace)
        self.badmemory = BadMemory(self.data)

    def _reclaim(self, ino: int) -> None:
        self.namespace.reclaim(ino)

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def format(cls, pool: Pool, *, block_size: int = 4096) -> None:
        """Write an empty volume onto ``pool``."""
        format_pool(pool, block_size=block_size)

    @classmethod
    def mount(cls, pool: Pool, *, readonly: bool = False, policy: str = "defer",
              durability: str = "sync", lease_break_s: float = 45.0, discard: bool | None = None) -> "Volume":
        """Mount the volume on ``pool``: newest valid checkpoint, then replay the log after it.

        A log record that does not decode or apply stops the replay before it: the volume
        then mounts read-only whatever was asked (writes raise EROFS saying why), ``damaged``
        says why, and a DamagedVolumeWarning is issued.  ``daxfs fsck --repair`` (``repair``)
        makes it writable again, keeping everything before the bad record.
        """
        loaded = load(pool, check_damage=True)
        damaged = loaded.bad_record
        journal = Journal(pool, loaded, readonly=readonly or damaged is not None)
        if damaged is not None:
            # Mounted read-only with the state before the bad record: nothing can be appended
            # after it, nor followed past it.  ``daxfs fsck --repair`` makes it writable.
            journal.damaged = damaged
            journal.follow = False
            warnings.warn(f"{pool.name}: {damaged}", DamagedVolumeWarning, stacklevel=3)
        vol = cls(journal, policy=policy, durability=durability, lease_break_s=lease_break_s, discard=discard)
        bad_metadata = vol.badmemory.mounted()
        if bad_metadata is not None and not journal.readonly:
            journal.readonly = True
            journal.damaged = bad_metadata
            journal.follow = False
            warnings.warn(f"{pool.name}: {bad_metadata}", DamagedVolumeWarning, stacklevel=3)
        if not journal.readonly:
            journal.mark_clean(False)       # before anything is logged
            if journal.meta_ok(OWNER_OFFSET, 64):
                pool.write(OWNER_OFFSET, encode_owner(os.getpid(), time.time_ns()))
                pool.persist(OWNER_OFFSET, 64)
            with journal.lock:
                for ino in journal.core.orphans():      # left by a crash: nobody can hold them now
                    journal.commit(Reclaim(ino))
                vol._status.publish()     # other processes see the writer (``daxfs pins``) from now on
            vol.badmemory.watch(pool.name)              # what the device lists as bad, now and later
        _OPEN_VOLUMES.add(vol)
        return vol

    def close(self, *, force: bool = False, timeout: float | None = None) -> None:
        """Flush what is pending, checkpoint, and unmount.  Open files are closed with it.

        While mappings or pins live (their memory is the pool's) this raises
        BusyError naming them.  With ``force``: leases are broken (their
        holders get ``on_break`` and up to ``lease_break_s``, or ``timeout`` if
        shorter), every mapping is revoked (migrated to private memory), and
        pins — never revoked — are waited for up to ``timeout`` seconds, then
        BusyError if any remain (the volume stays open).
        """
        timeout = arguments.timeout(timeout)
        journal = self._journal
        table = self.references
        if journal.closed:
            return      # (without the lock: a forked child's copy may hold it for good)
        with journal.lock:
            if journal.closed:
                return
            live = table.live()
            if live and not force:
                raise table.busy_error("volume has live references", live)
        self.badmemory.stop()       # outside the lock: the watcher may be waiting for it
        self.space.stop()           # (so may the discarder)
        try:
            self._close_locked(force, timeout)
        finally:
            if not journal.closed:
                self.badmemory.resume()     # still open (BusyError): keep watching
                self.space.resume()

    def _close_locked(self, force: bool, timeout: float | None) -> None:
        journal = self._journal
        table = self.references
        with journal.lock:
            if journal.closed:
                return
            live = table.live()
            if live and not force:
                raise table.busy_error("volume has live references", live)
            if live:
                table.force_out(None if timeout is None else time.monotonic() + timeout)
                if journal.closed:
                    return      # another close ran while this one waited (the lock let go)
            table.detach_lingering()
            self.namespace.detach_all()
            if not journal.readonly:
                self.data.flush(None)
                for ino in table.clear_inodes():
                    node = journal.core.inodes.get(ino)
                    if node is not None and node.nlink == 0:
                        journal.commit(Reclaim(ino))
                self.space.flush()      # what was freed and not yet given back
                journal.checkpoint()
                self._status.clear()
                if journal.meta_ok(OWNER_OFFSET, 64):
                    journal.pool.write(OWNER_OFFSET, bytes(64))
                    journal.pool.persist(OWNER_OFFSET, 64)
                journal.mark_clean(True)        # last: nothing after it may fail and log more
            journal.closed = True
            journal.drop_views()
            journal.pool.close()
            journal.heap.release()

    def _defer_close(self) -> None:
        with self._journal.lock:
            self._close_when_idle = True
        self._references_changed()

    def _references_changed(self) -> None:
        self._status.changed()
        if self._close_when_idle and not self._journal.closed and not self.references.live():
            self._close_when_idle = False
            self._close_in_background()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("ro" if self.readonly else "rw")
        return f"<daxfs.Volume {self.path!r} {state}>"

    @property
    def closed(self) -> bool:
        return self._journal.closed

    @property
    def readonly(self) -> bool:
        return self._journal.readonly

    @property
    def damaged(self) -> str | None:
        """Why the volume is read-only against its opener's wish (a bad log record), or None."""
        return self._journal.damaged

    @property
    def block_size(self) -> int:
        return self._journal.block_size

    @property
    def lock(self) -> Any:
        """The volume's lock (re-entrant): every operation runs under it."""
        return self._journal.lock

    @property
    def pool(self) -> Pool:
        return self._journal.pool

    # The journal's state under its historical names (tests look at them).
    @property
    def _core(self) -> Any:
        return self._journal.core

    @property
    def _ring(self) -> Any:
        return self._journal.ring

    @property
    def _layout(self) -> Layout:
        return self._journal.layout

    @property
    def _generation(self) -> int:
        return self._journal.generation

    @property
    def _checkpoint_pos(self) -> int:
        return self._journal.checkpoint_pos

    def _publish(self) -> None:
        with self._journal.lock:
            self._status.publish()

    def checkpoint(self) -> None:
        """Write a checkpoint now (mount then replays nothing)."""
        with self._journal.lock:
            self._journal.check_writable()
            self._journal.checkpoint()

    # ---------------------------------------------------------------- whole-volume queries

    def statfs(self) -> StatFS:
        journal = self._journal
        with journal.lock:
            journal.check_open()
            core = journal.core
            bs = journal.block_size
            size = core.data_blocks * bs
            free = core.space.free * bs
            busy = core.busy.blocks * bs
            bad = core.bad.total * bs       # owned or not: the data there is lost either way
            shared = core.rmap.shared_blocks
            for start, n in core.bad.runs() if core.bad else ():
                shared -= sum(k for _s, k in core.rmap.shared_parts(start, n))   # part of bad, not used
            if journal.follow:
                # blocks busy in the writer are free in the log we follow
                status = read_status(journal)
                if status is not None:
                    busy = min(free, int(status.get("busy", 0)))
                    free -= busy
            return StatFS(size=size, block_size=bs, free=free, used=size - free - busy - bad, busy=busy, bad=bad,
                          files=len(core.inodes), metadata_size=journal.layout.data_offset,
                          sync_mode=journal.pool.sync_mode, shared=shared * bs, resident=self.space.resident())

    def info(self) -> dict[str, Any]:
        """Identity and geometry of the volume (``daxfs info``)."""
        journal = self._journal
        with journal.lock:
            journal.check_open()
            lay = journal.layout
            sb = journal.superblock
            return {
                "path": self.path, "uuid": str(sb.uuid), "version": sb.version,
                "block_size": lay.block_size, "size": lay.pool_size, "data_offset": lay.data_offset,
                "data_size": lay.data_size, "log_size": lay.log_size,
                "checkpoint_size": lay.checkpoint_size, "generation": journal.generation,
                "log_used": journal.ring.head - journal.ring.tail, "sync_mode": journal.pool.sync_mode,
                "readonly": journal.readonly, "policy": self.policy, "durability": self.durability,
                "damaged": journal.damaged, "discard": self.space.error or self.space.mode(),
                "resident": self.space.resident(), "open_files": len(self.namespace.open_files),
            }

    def trim(self) -> int:
        """Give the memory of every free block back to the system (like fstrim); returns the
        bytes discarded.  Busy and bad blocks and metadata are never discarded.  EOPNOTSUPP
        where the medium cannot (device-dax, a block device) or the mount is read-only."""
        return self.space.trim()

    def flush_discards(self) -> int:
        """Do the online discards queued so far now, in this thread (they otherwise run on the
        volume's discard thread shortly after the blocks are freed); returns bytes discarded."""
        self._journal.check_open()
        return self.space.flush()

    def fsck(self) -> list[str]:
        """Problems in the volume's metadata; [] means clean."""
        journal = self._journal
        with journal.lock:
            journal.check_open()
            # A read-only mount cannot see who holds an orphan: the writer may.
            held = journal.core.orphans() if journal.readonly else self.references.held_inodes()
            return check(journal.core, held)

    # ---------------------------------------------------------------- namespace

    def stat(self, path: object) -> Stat:
        return self.namespace.stat(path)

    def exists(self, path: object) -> bool:
        try:
            self.stat(path)
        except (OSError, ValueError):
            if self.closed:
                raise
            return False
        return True

    def listdir(self, path: object = "/") -> list[Any]:
        return names_like(path, self.namespace.listdir(path))

    def _scan(self, path: object) -> list[tuple[str, Stat]]:
        return self.namespace.scan(path)

    def mkdir(self, path: object, mode: int = 0o755, *, parents: bool = False, exist_ok: bool = False) -> None:
        self.namespace.mkdir(path, arguments.mode_bits(mode), parents=parents, exist_ok=exist_ok)

    def rmdir(self, path: object) -> None:
        self.namespace.rmdir(path)

    def unlink(self, path: object, *, policy: str | None = None) -> None:
        if policy is not None:
            check_policy(policy)
        self.namespace.unlink(path, policy)

    def rename(self, src: object, dst: object, *, replace: bool = True) -> None:
        self.namespace.rename(src, dst, replace=replace)

    def link(self, src: object, dst: object) -> None:
        self.namespace.link(src, dst)

    def chmod(self, path: object, mode: int) -> None:
        self.namespace.setattr(path, mode=arguments.mode_bits(mode))

    def chown(self, path: object, uid: int, gid: int) -> None:
        """Change owner and group; -1 leaves either as it is (as ``os.chown``)."""
        self.namespace.setattr(path, uid=arguments.owner_id(uid, "uid"), gid=arguments.owner_id(gid, "gid"))

    def utime(self, path: object, ns: tuple[int, int] | None = None) -> None:
        """Set access and modification times in nanoseconds (None: now), as ``os.utime(ns=)``."""
        if ns is None:
            self.namespace.setattr(path, touch=True)
        else:
            self.namespace.setattr(path, times=arguments.times_ns(ns))

    # ---- symlinks and special files (issue 13)

    def symlink(self, target: object, path: object) -> None:
        """Make ``path`` a symbolic link to ``target`` (as ``os.symlink``).  An absolute target
        is resolved from the volume's root when the volume follows it (from the host's root
        through a FUSE mount, as any symlink there)."""
        self.namespace.symlink(target, path)

    def readlink(self, path: object) -> str:
        """The target of the symlink ``path`` (EINVAL for anything else)."""
        return self.namespace.readlink(path)

    def lstat(self, path: object) -> Stat:
        """``stat`` of a symlink itself rather than what it points at."""
        return self.namespace.stat(path, follow=False)

    def mknod(self, path: object, mode: int = 0o600 | st.S_IFIFO, device: int = 0) -> None:
        """Make a FIFO, socket or device node (as ``os.mknod``; the umask applies).  Such a
        file can be listed, stat'ed, renamed and removed; opening it through the volume is
        ENXIO (through a FUSE mount the kernel serves it, as on tmpfs)."""
        self.namespace.mknod(path, arguments.integer(mode), arguments.integer(device))

    # ---------------------------------------------------------------- files and holders

    def open(self, path: object, mode: str = "rb", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None, *, holder: object = None,
             follow_symlinks: bool = True) -> Any:
        """Open a file as ``open()`` does: buffered by default (``buffering=0`` gives the raw
        ``daxfs.File``), text modes through ``io.TextIOWrapper``; see ``access.buffered``.
        ``follow_symlinks`` False is O_NOFOLLOW: a symlink in the last place is ELOOP."""
        flags, text, binary = arguments.parse_mode(mode)
        cls = type(self)
        make, wrap = cls._make_file, cls._wrap_file
        if make is None or wrap is None or cls._check_options is None:
            raise RuntimeError("daxfs.volume used without the access layer: import daxfs")
        buffering = cls._check_options(text, buffering, encoding, errors, newline)
        handle = self.namespace.open(path, binary, flags, holder if holder is not None else
                                     self.references.process_holder, follow=bool(follow_symlinks))
        try:
            raw = make(self, handle)
        except BaseException:
            self.namespace.close_file(handle)
            raise
        return wrap(raw, flags, text, mode, buffering, encoding, errors, newline)

    def holder(self, name: str) -> Any:
        """A named owner: what is opened, mapped or pinned through it, its close() releases."""
        self._journal.check_open()
        make = type(self)._make_holder
        if make is None:
            raise RuntimeError("daxfs.volume used without the access layer: import daxfs")
        return make(self, str(name))

    def pins(self) -> list[PinInfo]:
        """Every live pin, mapping and lease: who holds which file range since when."""
        with self._journal.lock:
            self._journal.check_open()
            return self.references.infos()

    def published(self) -> dict[str, Any] | None:
        """What the pool's read-write opener last published (pid, time, busy bytes, refs as
        PinInfo, total), or None when no live process has published anything."""
        with self._journal.lock:
            self._journal.check_open()
            return read_status(self._journal)

    # ---------------------------------------------------------------- sharing blocks

    def clone_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        """Share ``src``'s blocks at ``[src_offset, +length)`` into ``dst`` (FICLONERANGE);
        ``length`` 0 means to the source's EOF.  Returns bytes cloned."""
        so, do, n = _offsets(src_offset, dst_offset, length)
        return self.sharing.clone_range(src, so, dst, do, n)

    def clone_file(self, src: object, dst: object) -> None:
        """Make ``dst`` a copy of ``src`` that shares all its blocks (``cp --reflink``)."""
        self.sharing.clone_file(src, dst)

    def dedupe_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        """Share blocks of ``dst`` whose bytes equal ``src``'s (FIDEDUPERANGE); returns bytes shared."""
        so, do, n = _offsets(src_offset, dst_offset, length)
        return self.sharing.dedupe_range(src, so, dst, do, n)

    def copy_file_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        """Copy bytes, sharing whole blocks where both offsets line up; returns bytes copied."""
        so, do, n = _offsets(src_offset, dst_offset, length)
        return self.sharing.copy_file_range(src, so, dst, do, n)

    def owners(self, pool_offset: int, length: int = 1) -> list[Owner]:
        """Every (file, offset) whose data lives in pool bytes ``[pool_offset, +length)``."""
        return self.sharing.owners(arguments.integer(pool_offset), arguments.integer(length))

    # ---------------------------------------------------------------- media errors

    def memory_failure(self, pool_offset: int, length: int) -> list[Owner]:
        """Pool bytes ``[pool_offset, +length)`` are bad memory: record it durably and act on
        every owner, mapping, pin and metadata region there (see ``volume.badmemory``);
        returns the owners of the bad data.  Rounded out to whole blocks (a
        MediaErrorWarning says so); reporting a range again changes nothing."""
        return self.badmemory.memory_failure(arguments.integer(pool_offset), arguments.integer(length))

    def badblocks(self) -> list[tuple[int, int]]:
        """Every quarantined range ``(pool_offset, length)``: bad metadata pages and data blocks."""
        return self.badmemory.badblocks()

    def clear_badblocks(self, pool_offset: int, length: int) -> None:
        """The memory is repaired: return bad blocks to free space (zeroed).  BusyError while
        a file owns them or a pin or mapping holds them; EINVAL for bytes that are not bad."""
        self.badmemory.clear_badblocks(arguments.integer(pool_offset), arguments.integer(length))

    def badblock_report(self) -> list[tuple[int, int, str, list[Owner]]]:
        """``(pool_offset, length, region, owners)`` for each bad range (``daxfs badblocks``)."""
        return self.badmemory.report()

    def poisoned(self) -> list[Owner]:
        """Every poisoned file range: file data on bad memory, which reads raise EIO for."""
        return self.badmemory.poisoned()


def _offsets(src_offset: object, dst_offset: object, length: object) -> tuple[int, int, int]:
    """Two offsets and a length as ints that fit off_t (their ranges are the operation's to check)."""
    out = []
    for value, what in ((src_offset, "source offset"), (dst_offset, "destination offset"), (length, "length")):
        n = arguments.integer(value)
        if abs(n) > (1 << 63) - 1:
            raise OverflowError(f"{what} {n} is too large to convert to C off_t")
        out.append(n)
    return out[0], out[1], out[2]


__all__ = ["Volume", "DURABILITIES"]
