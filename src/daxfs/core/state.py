"""Core: the volume's metadata as a pure state machine (no I/O at all).

``Core.apply(record)`` is the only way state changes, for live operations
and for replay at mount alike.  Queries (``resolve``, ``plan_blocks``, ...)
never change state.  Invariants kept here and checked by ``invariants``:
every data block is free or owned by exactly one file block; directories
form one tree under the root; link counts equal the names pointing at an
inode (plus ``.``/``..`` for directories); written blocks lie below the
file size.  Free space and link counts are derived at load, not stored.
``inodes`` iterates in ascending inode number (a create takes ``next_ino``, a
load sorts), which lets a checkpoint be written a slice at a time.
"""

from __future__ import annotations

import errno
import stat as st
from builtins import map as _map
from operator import add

from daxfs.core.badblocks import BlockRuns, apply_bad_metadata, apply_clear, apply_quarantine
from daxfs.core.busy import BusyList
from daxfs.core.extents import NO_EXTENTS, SHARE, UNWRITTEN, ExtentMap
from daxfs.core.fastpaths import check_map, replace_in_run, share_into_empty
from daxfs.core import chunked
from daxfs.core.chunked import ChunkedTable
from daxfs.core.rmap import OwnerMap
from daxfs.core.pathwalk import MAX_SYMLINKS, ROOT_INO, resolve_path
from daxfs.core.fields import MAX_FILE_SIZE, target_size
from daxfs.core.records import (Batch, BadMetadata, ClearQuarantine, Create, CreateNode, Link, Quarantine, Reclaim,
                                Record, Rename, SetAttr, SetExtents, Unlink, batch_records)
from daxfs.core.space import FreeSpace
from daxfs.errors import CorruptVolumeError, describe_bytes, fs_error


# Upper bounds, in bytes, of what each thing costs in a checkpoint (msgpack
# ints take at most 9 bytes), so the volume can refuse an operation whose
# state could no longer be checkpointed instead of failing later.
_CKPT_INODE = 128
_CKPT_RUN = 40
_CKPT_ENTRY = 16
_CKPT_CHAR = 4




class Inode:
    """One inode.  ``entries`` is None but for directories, ``extents`` None but for regular
    files; a symlink has its ``target`` (else None), a device node its ``rdev``."""

    __slots__ = ("ino", "mode", "nlink", "uid", "gid", "size", "atime_ns", "mtime_ns", "ctime_ns",
                 "extents", "entries", "parent", "target", "rdev")

    def __init__(self, ino: int, mode: int, uid: int, gid: int, size: int,
                 atime_ns: int, mtime_ns: int, ctime_ns: int) -> None:
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.atime_ns = atime_ns
        self.mtime_ns = mtime_ns
        self.ctime_ns = ctime_ns
        self.nlink = 0
        self.parent = 0
        self.target: str | None = None
        self.rdev = 0
        kind = mode & 0o170000          # (st.S_IFMT, without two calls: mount makes millions)
        if kind == st.S_IFDIR:
            self.entries: dict[str, int] | None = {}
            self.extents: ExtentMap | None = None
        elif kind == st.S_IFREG:
            self.entries = None
            self.extents = NO_EXTENTS       # (shared until its first blocks: _setextents)
        else:                       # a symlink or special file: no blocks
            self.entries = None
            self.extents = None

    @property
    def is_dir(self) -> bool:
        return self.entries is not None


class Core:
    """Inodes, directories, extent maps and free space of one volume."""

    def __init__(self, block_size: int, data_blocks: int, *, align_blocks: int = 1) -> None:
        self.block_size = block_size
        self.data_blocks = data_blocks
        self.max_blocks = MAX_FILE_SIZE // block_size if block_size > 0 else 0   # blocks in the largest file
        #: in inode order (checkpoints rely on it); a dict, a ChunkedTable from CHUNKED_FROM on
        self.inodes: dict[int, Inode] | ChunkedTable[Inode] = {}
        self.next_ino = ROOT_INO + 1
        self.space = FreeSpace(data_blocks, align=align_blocks)
        self.busy = BusyList()  # in memory only: holds by mappings and pins
        self.rmap = OwnerMap()  # derived: data block -> owners (the reflink refcounts)
        #: bad data blocks (memory_failure): never free, never busy; owned ones read as poisoned.
        #: An empty dict, so "is anything bad?" costs the hot paths one truth test.
        self.bad = BlockRuns()
        self.bad_metadata = BlockRuns()     # bad pool byte ranges outside the data area
        #: files with no name left (orphans: held open, or left by a crash), kept as links
        #: drop to 0 so that mount need not look at every inode to find them
        self.unnamed: set[int] = set()
        self.runs = 0           # extent runs over all files
        self.name_chars = 0     # characters over all directory entries
        self.target_chars = 0   # characters over all symlink targets
        self._apply = {
            Create: self._create, Link: self._link, Unlink: self._unlink, Rename: self._rename,
            SetAttr: self._setattr, SetExtents: self._setextents, Reclaim: self._reclaim,
            Batch: self._batch, Quarantine: self._quarantine, ClearQuarantine: self._clear_quarantine,
            BadMetadata: self._bad_metadata, CreateNode: self._create_node,
        }

    # ------------------------------------------------------------------ build

    @classmethod
    def new(cls, block_size: int, data_blocks: int, *, time_ns: int, uid: int, gid: int,
            align_blocks: int = 1) -> "Core":
        core = cls(block_size, data_blocks, align_blocks=align_blocks)
        core.space.release(0, data_blocks)
        root = Inode(ROOT_INO, st.S_IFDIR | 0o755, uid, gid, 0, time_ns, time_ns, time_ns)
        root.nlink = 2
        root.parent = ROOT_INO
        core.inodes[ROOT_INO] = root
        return core

    def to_checkpoint(self) -> list[object]:
        """The whole state as plain lists (the checkpoint codec packs them; see ``rows``)."""
        from daxfs.core.rows import state_rows     # (rows reads Inodes: imported here, not at the top)

        return state_rows(self)

    @classmethod
    def from_checkpoint(cls, obj: object, block_size: int, data_blocks: int, *,
                        align_blocks: int = 1) -> "Core":
        """Rebuild the state a checkpoint holds.

        Every field of every row is checked for type and range, and the whole for
        what fsck checks (unique inodes below ``next_ino``, runs sorted, disjoint and
        inside the data area, written blocks below the size, valid unique names that
        point at existing inodes, one tree under a directory root): anything else is a
        CorruptVolumeError saying what and which inode, never another exception.
        """
        from daxfs.core.loading import load_rows    # (it builds Inodes: imported here, not at the top)

        core = cls(block_size, data_blocks, align_blocks=align_blocks)
        try:
            load_rows(core, obj)
        except CorruptVolumeError:
            raise
        except Exception as exc:    # a case the checks below missed: still corrupt, never a crash
            raise CorruptVolumeError(f"checkpoint contents do not form a volume ({exc!r})") from None
        return core

    # ------------------------------------------------------------------ queries

    resolve = resolve_path     # (a function of the path walk's module, called as a method: no extra call)

    def plan_blocks(self, n: int, goal: int | None = None,
                    exclude: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
        """Free blocks for a request of ``n`` (see ``FreeSpace.plan``); takes nothing.

        ``exclude``: runs already promised to the same operation (planned, not yet applied).
        """
        try:
            return self.space.plan_excluding(n, goal, exclude) if exclude else self.space.plan(n, goal)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            # In bytes, which is what the caller asked for (a block count means nothing to it).
            raise fs_error(errno.ENOSPC, message=f"no space left on device: asked for "
                           f"{describe_bytes(n * self.block_size)}, {describe_bytes(self.space.free * self.block_size)} "
                           f"free") from None

    def goal_after(self, node: Inode, fblk: int) -> int | None:
        """The data block that would continue the file's run just before ``fblk``."""
        if fblk == 0 or node.extents is None:
            return None
        pblk = node.extents.pblk_of(fblk - 1)
        return None if pblk is None else pblk + 1

    @property
    def checkpoint_bound(self) -> int:
        """An upper bound, in bytes, of this state's checkpoint."""
        inodes = len(self.inodes)
        return 256 + _CKPT_INODE * inodes + _CKPT_RUN * (self.runs + len(self.bad) + len(self.bad_metadata)) + \
            _CKPT_ENTRY * inodes + _CKPT_CHAR * (self.name_chars + self.target_chars)

    def orphans(self) -> list[int]:
        """Files with no names left (kept alive by open handles, or left by a crash)."""
        return sorted(self.unnamed)

    # ------------------------------------------------------------------ holds

    def hold(self, pblk: int, n: int) -> None:
        """A mapping or pin now points at data blocks ``[pblk, pblk+n)``."""
        self.busy.hold(pblk, n)

    def unhold(self, pblk: int, n: int) -> None:
        """It let go: busy blocks nobody holds any more become free."""
        for start, k in self.busy.unhold(pblk, n):
            self.space.release(start, k)

    def adopt_hold(self, pblk: int, n: int) -> None:
        """Something outside the volume's own references holds data blocks ``[pblk, pblk+n)``
        (blocks reserved for a write being prepared, or pinned by a client of an earlier
        arbiter): hold them, and make the free ones busy so nothing allocates them."""
        self.busy.hold(pblk, n)
        for start, k in self.space.free_parts(pblk, n):
            self.space.take(start, k)
            self.busy.park(start, k)

    def _release(self, pblk: int, n: int) -> None:
        """A file gave up these blocks: free, or busy while something holds them; bad ones
        stay quarantined."""
        if self.bad and self.bad.overlaps(pblk, n):
            for start, k in self.bad.outside(pblk, n):
                self._release(start, k)
            return
        if not self.busy.holds:
            self.space.release(pblk, n)
            return
        for start, k in self.busy.park(pblk, n):
            self.space.release(start, k)

    release_blocks = _release

    # ------------------------------------------------------------------ apply

    def apply(self, record: Record) -> None:
        """Make the change ``record`` describes.  The volume validated it first.

        Each handler checks that the record fits the state (the inodes and names it
        touches exist, or do not; blocks it takes are free) and raises CorruptVolumeError
        if not, so a damaged record that passed its checksum and its field checks cannot
        leave a state fsck would reject.  Most checks come before any change; where one
        can only be made after (a multi-run block map, a batch), the state is left
        half-changed and the caller must rebuild it (mount replays up to the record
        before; a live volume treats it as the bug it is).
        """
        self._apply[type(record)](*record)

    def _dir(self, ino: int, what: str) -> Inode:
        """Directory ``ino``, which record ``what`` needs."""
        node = self.inodes.get(ino)
        if node is None or node.entries is None:
            raise CorruptVolumeError(f"{what}: {ino} is not a directory" if node is not None else
                                     f"{what}: directory {ino} does not exist")
        return node

    def _touch_dir(self, node: Inode, time_ns: int) -> None:
        node.mtime_ns = node.ctime_ns = time_ns

    def _create(self, ino: int, parent: int, name: str, mode: int, uid: int, gid: int, time_ns: int) -> None:
        self._add_inode(Inode(ino, mode, uid, gid, 0, time_ns, time_ns, time_ns), parent, name, time_ns)

    def _create_node(self, ino: int, parent: int, name: str, mode: int, uid: int, gid: int, time_ns: int,
                     rdev: int, target: str) -> None:
        node = Inode(ino, mode, uid, gid, target_size(target) if target else 0, time_ns, time_ns, time_ns)
        if target:
            node.target = target
            self.target_chars += len(target)
        node.rdev = rdev
        self._add_inode(node, parent, name, time_ns)

    def _add_inode(self, node: Inode, parent: int, name: str, time_ns: int) -> None:
        """Link a new inode as ``parent/name`` (a create)."""
        ino = node.ino
        pnode = self.inodes.get(parent)
        entries = None if pnode is None else pnode.entries
        # Inode numbers are never reused (next_ino is above every inode): a lower one
        # exists already, or is a number a handle may still remember.
        if entries is None or name in entries or ino < self.next_ino:
            pnode = self._dir(parent, f"create of {name!r}")
            raise CorruptVolumeError(f"create of {name!r} in {parent} as inode {ino}: the name exists, or the "
                                     f"inode number is below the next one ({self.next_ino})")
        if node.entries is not None:
            node.nlink = 2
            node.parent = parent
            pnode.nlink += 1
        else:
            node.nlink = 1
        inodes = self.inodes
        inodes[ino] = node
        if len(inodes) >= chunked.CHUNKED_FROM and type(inodes) is dict:
            self.inodes = ChunkedTable.adopt(inodes)      # (no dict resize of a million entries later)
        pnode.entries[name] = ino  # type: ignore[index]
        self.name_chars += len(name)
        self._touch_dir(pnode, time_ns)
        self.next_ino = ino + 1

    def _link(self, ino: int, parent: int, name: str, time_ns: int) -> None:
        pnode = self._dir(parent, f"link of {ino} as {name!r}")
        node = self.inodes.get(ino)
        if node is None or node.entries is not None or name in pnode.entries:  # type: ignore[operator]
            raise CorruptVolumeError(f"link of {ino} as {name!r} in {parent}: the inode is missing or a "
                                     f"directory, or the name exists")
        pnode.entries[name] = ino  # type: ignore[index]
        self.name_chars += len(name)
        if node.nlink == 0:
            self.unnamed.discard(ino)      # (an orphan named again)
        node.nlink += 1
        node.ctime_ns = time_ns
        self._touch_dir(pnode, time_ns)

    def _named(self, pnode: Inode, name: str, what: str) -> Inode:
        """The inode ``pnode/name`` names, which may be removed (an empty directory or a file)."""
        ino = pnode.entries.get(name)  # type: ignore[union-attr]
        if ino is None:
            raise CorruptVolumeError(f"{what}: no {name!r} in directory {pnode.ino}")
        node = self.inodes.get(ino)
        if node is None:
            raise CorruptVolumeError(f"{what}: {name!r} in directory {pnode.ino} names missing inode {ino}")
        return node

    def _drop_name(self, pnode: Inode, name: str, time_ns: int, reclaim: bool) -> None:
        """Remove one name; what it named loses a link (a directory goes entirely).

        The caller checked the name exists and, for a directory, that it is empty."""
        ino = pnode.entries.pop(name)  # type: ignore[union-attr]
        self.name_chars -= len(name)
        node = self.inodes[ino]
        if node.entries is not None:
            pnode.nlink -= 1
            node.nlink = 0
            del self.inodes[ino]
            return
        node.nlink -= 1
        node.ctime_ns = time_ns
        if node.nlink == 0:
            if reclaim:
                self._free_inode(node)
            else:
                self.unnamed.add(node.ino)

    def _unlink(self, parent: int, name: str, time_ns: int, reclaim: bool) -> None:
        inodes = self.inodes
        pnode = inodes.get(parent)
        entries = None if pnode is None else pnode.entries
        node = None if entries is None else inodes.get(entries.get(name))  # type: ignore[arg-type]
        if node is None or node.entries:
            node = self._named(self._dir(parent, f"unlink of {name!r}"), name, "unlink")
            raise CorruptVolumeError(f"directory {node.ino} removed while not empty")
        self._drop_name(pnode, name, time_ns, reclaim)  # type: ignore[arg-type]
        self._touch_dir(pnode, time_ns)

    def _rename(self, src_parent: int, src_name: str, dst_parent: int, dst_name: str,
                time_ns: int, reclaim: bool) -> None:
        what = f"rename of {src_name!r} in {src_parent} to {dst_name!r} in {dst_parent}"
        spnode = self._dir(src_parent, what)
        dpnode = self._dir(dst_parent, what)
        node = self._named(spnode, src_name, what)
        ino = node.ino
        is_dir = node.entries is not None
        target = dpnode.entries.get(dst_name)  # type: ignore[union-attr]
        if target is not None:
            tnode = self._named(dpnode, dst_name, what)
            # The volume logs none of these (POSIX: same inode does nothing; a directory
            # replaces only an empty directory, a file only a file).
            if target == ino or (tnode.entries is not None) != is_dir or tnode.entries:
                raise CorruptVolumeError(f"{what}: the target is the same inode, of another type, or a "
                                         f"directory that is not empty")
        if is_dir:
            # A directory may not move under itself: that would cut it off from the root.
            up = dst_parent
            for _ in range(len(self.inodes) + 1):
                if up == ino:
                    raise CorruptVolumeError(f"{what}: moves directory {ino} inside itself")
                if up == ROOT_INO:
                    break
                up = self.inodes[up].parent
        if target is not None:
            self._drop_name(dpnode, dst_name, time_ns, reclaim)
        del spnode.entries[src_name]  # type: ignore[union-attr]
        dpnode.entries[dst_name] = ino  # type: ignore[index]
        self.name_chars += len(dst_name) - len(src_name)
        if is_dir and src_parent != dst_parent:
            spnode.nlink -= 1
            dpnode.nlink += 1
            node.parent = dst_parent
        node.ctime_ns = time_ns
        self._touch_dir(spnode, time_ns)
        self._touch_dir(dpnode, time_ns)

    def _setattr(self, ino: int, mode: int | None, uid: int | None, gid: int | None,
                 atime_ns: int | None, mtime_ns: int | None, ctime_ns: int | None) -> None:
        node = self.inodes.get(ino)
        if node is None:
            raise CorruptVolumeError(f"attribute change of missing inode {ino}")
        if mode is not None:
            node.mode = (node.mode & st.S_IFMT(0o177777)) | (mode & 0o7777)
        if uid is not None:
            node.uid = uid
        if gid is not None:
            node.gid = gid
        if atime_ns is not None:
            node.atime_ns = atime_ns
        if mtime_ns is not None:
            node.mtime_ns = mtime_ns
        if ctime_ns is not None:
            node.ctime_ns = ctime_ns

    def _setextents(self, ino: int, unmap: list[int], map: list[int], size: int | None,
                    time_ns: int | None) -> None:
        node = self.inodes.get(ino)
        emap = None if node is None else node.extents
        if emap is None:
            raise CorruptVolumeError(f"block map change on {'missing inode' if node is None else 'directory'} {ino}")
        if emap is NO_EXTENTS:
            emap = node.extents = ExtentMap()     # the file's own map from now on (the shared one never changes)
        rmap = self.rmap
        before = len(emap)
        new_size = node.size if size is None else size
        if not unmap and len(map) == 4 and not map[3] & SHARE and emap.is_hole(map[0], map[1]):
            # The common write: fresh blocks into a hole (appends, new files).  Checked before
            # any change: the new run (its last block starts below the size unless unwritten),
            # and on a shrink the written blocks the file keeps.
            fblk, nblk, pblk, flags = map
            end = fblk + nblk
            if (end > self.max_blocks or ((end - 1) * self.block_size >= new_size and not flags & UNWRITTEN)
                    or new_size < node.size and emap.last_written_end() > -(-new_size // self.block_size)):
                raise CorruptVolumeError(f"inode {ino} would hold written blocks past its size {new_size} "
                                         f"(mapping {fblk}..{end}) or past the largest file")
            self.space.take(pblk, nblk)     # refuses blocks that are not free, before any change
            rmap.add(pblk, nblk, ino, fblk)
            emap.insert(fblk, nblk, pblk, flags)
            self.runs += len(emap) - before
            if size is not None:
                node.size = size
            if time_ns is not None:
                node.mtime_ns = node.ctime_ns = time_ns
            return
        if len(map) == 4 and not unmap and size is None and replace_in_run(self, ino, emap, map, time_ns):
            return                              # (done: a copy-on-write's fresh blocks inside a run)
        if map and max(_map(add, map[0::4], map[1::4])) > self.max_blocks or self.bad:
            check_map(self, ino, map)
        unowned: list[tuple[int, int]] = []     # blocks this record leaves with no owner
        for i in range(0, len(unmap), 2):
            fblk, nblk = unmap[i], unmap[i + 1]
            if nblk < 0:
                nblk = max(0, emap.end - fblk)
            for f, n, p, _fl in emap.remove(fblk, nblk):
                unowned.extend(rmap.remove(p, n, ino, f))
        taken: list[tuple[int, int]] = []       # blocks this record takes from free space
        if not emap and len(map) > 4 and share_into_empty(self.rmap, ino, emap, map):
            map = []                            # (done: a clone of whole extents into an empty map)
        for i in range(0, len(map), 4):
            fblk, nblk, pblk, flags = map[i], map[i + 1], map[i + 2], map[i + 3]
            if not emap.is_hole(fblk, nblk):
                for f, n, p, _fl in emap.remove(fblk, nblk):
                    unowned.extend(rmap.remove(p, n, ino, f))
            if flags & SHARE:
                if not rmap.is_owned(pblk, nblk):
                    raise CorruptVolumeError(f"inode {ino} shares data blocks {pblk}..{pblk + nblk} nobody owns")
            else:
                taken.append((pblk, nblk))
            rmap.add(pblk, nblk, ino, fblk)
            emap.insert(fblk, nblk, pblk, flags & UNWRITTEN)
        if unowned:
            # A block given back and taken again in one record (unwritten <-> written)
            # never left the file: it must not pass through free or busy.
            for p, n in _subtract(unowned, taken):
                self._release(p, n)
            taken = _subtract(taken, unowned)
        space = self.space
        for p, n in taken:
            space.take(p, n)
        self.runs += len(emap) - before
        if size is not None:
            node.size = size
        if time_ns is not None:
            node.mtime_ns = node.ctime_ns = time_ns
        if emap.last_written_end() > -(-new_size // self.block_size):
            raise CorruptVolumeError(f"inode {ino} holds written blocks past its size {new_size}")

    def _free_inode(self, node: Inode) -> None:
        if node.target is not None:
            self.target_chars -= len(node.target)
        if node.extents is not None:
            for f, n, p, _fl in node.extents:
                for start, k in self.rmap.remove(p, n, node.ino, f):
                    self._release(start, k)
            self.runs -= len(node.extents)
        del self.inodes[node.ino]
        self.unnamed.discard(node.ino)

    def _batch(self, items: list[list[object]]) -> None:
        for record in batch_records(items):     # (a Batch record's items, checked when it was made)
            self.apply(record)

    def _quarantine(self, pblk: int, nblk: int) -> None:
        apply_quarantine(self, pblk, nblk)

    def _clear_quarantine(self, pblk: int, nblk: int) -> None:
        apply_clear(self, pblk, nblk)

    def _bad_metadata(self, offset: int, length: int, bad: bool) -> None:
        apply_bad_metadata(self, offset, length, bad)

    def _reclaim(self, ino: int) -> None:
        node = self.inodes.get(ino)
        if node is None or node.entries is not None:
            raise CorruptVolumeError(f"reclaim of {'missing inode' if node is None else 'directory'} {ino}")
        if node.nlink != 0:
            raise CorruptVolumeError(f"reclaim of inode {ino} that still has {node.nlink} names")
        self._free_inode(node)


def _subtract(runs: list[tuple[int, int]], minus: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of block ``runs`` outside every run of ``minus``."""
    out = runs
    for m_start, m_len in minus:
        m_end = m_start + m_len
        kept: list[tuple[int, int]] = []
        for start, n in out:
            end = start + n
            if end <= m_start or start >= m_end:
                kept.append((start, n))
                continue
            if start < m_start:
                kept.append((start, m_start - start))
            if end > m_end:
                kept.append((m_end, end - m_end))
        out = kept
    return out


__all__ = ["Core", "Inode", "ROOT_INO", "UNWRITTEN", "MAX_SYMLINKS"]

