"""Core: the volume's metadata as a pure state machine (no I/O at all).

``Core.apply(record)`` is the only way state changes, for live operations
and for replay at mount alike.  Queries (``resolve``, ``plan_blocks``, ...)
never change state.  Invariants kept here and checked by ``invariants``:
every data block is free or owned by exactly one file block; directories
form one tree under the root; link counts equal the names pointing at an
inode (plus ``.``/``..`` for directories); written blocks lie below the
file size.  Free space and link counts are derived at load, not stored.
"""

from __future__ import annotations

import errno
import stat as st

from daxfs.core.busy import BusyList
from daxfs.core.extents import SHARE, UNWRITTEN, ExtentMap
from daxfs.core.rmap import OwnerMap
from daxfs.core.namespace import check_name, split_path
from daxfs.core.records import (Batch, Create, Link, Reclaim, Record, Rename, SetAttr, SetExtents,
                                Unlink)
from daxfs.core.space import FreeSpace
from daxfs.errors import CorruptVolumeError, fs_error

ROOT_INO = 1

# Upper bounds, in bytes, of what each thing costs in a checkpoint (msgpack
# ints take at most 9 bytes), so the volume can refuse an operation whose
# state could no longer be checkpointed instead of failing later.
_CKPT_INODE = 128
_CKPT_RUN = 40
_CKPT_ENTRY = 16
_CKPT_CHAR = 4


class Inode:
    """One file or directory.  ``entries`` is None for files, ``extents`` None for directories."""

    __slots__ = ("ino", "mode", "nlink", "uid", "gid", "size", "atime_ns", "mtime_ns", "ctime_ns",
                 "extents", "entries", "parent")

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
        if st.S_ISDIR(mode):
            self.entries: dict[str, int] | None = {}
            self.extents: ExtentMap | None = None
        else:
            self.entries = None
            self.extents = ExtentMap()

    @property
    def is_dir(self) -> bool:
        return self.entries is not None


class Core:
    """Inodes, directories, extent maps and free space of one volume."""

    def __init__(self, block_size: int, data_blocks: int, *, align_blocks: int = 1) -> None:
        self.block_size = block_size
        self.data_blocks = data_blocks
        self.inodes: dict[int, Inode] = {}
        self.next_ino = ROOT_INO + 1
        self.space = FreeSpace(data_blocks, align=align_blocks)
        self.busy = BusyList()  # in memory only: holds by mappings and pins
        self.rmap = OwnerMap()  # derived: data block -> owners (the reflink refcounts)
        self.runs = 0           # extent runs over all files
        self.name_chars = 0     # characters over all directory entries
        self._apply = {
            Create: self._create, Link: self._link, Unlink: self._unlink, Rename: self._rename,
            SetAttr: self._setattr, SetExtents: self._setextents, Reclaim: self._reclaim,
            Batch: self._batch,
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
        """The whole state as plain lists (the checkpoint codec packs them)."""
        out = []
        for node in self.inodes.values():
            if node.entries is not None:
                flat: list[object] = []
                for name, child in node.entries.items():
                    flat.append(name)
                    flat.append(child)
                out.append([node.ino, node.mode, node.uid, node.gid, node.size,
                            node.atime_ns, node.mtime_ns, node.ctime_ns, None, flat])
            else:
                out.append([node.ino, node.mode, node.uid, node.gid, node.size,
                            node.atime_ns, node.mtime_ns, node.ctime_ns, node.extents.to_flat(), None])  # type: ignore[union-attr]
        return [self.next_ino, out]

    @classmethod
    def from_checkpoint(cls, obj: object, block_size: int, data_blocks: int, *,
                        align_blocks: int = 1) -> "Core":
        """Rebuild the state a checkpoint holds; CorruptVolumeError if it does not hold together."""
        core = cls(block_size, data_blocks, align_blocks=align_blocks)
        try:
            next_ino, rows = obj  # type: ignore[misc]
            core.next_ino = int(next_ino)
            inodes = core.inodes
            owned: list[tuple[int, int, int, int]] = []
            dirs: list[tuple[Inode, list[object]]] = []
            runs = 0
            for ino, mode, uid, gid, size, atime, mtime, ctime, ext, entries in rows:
                node = Inode(ino, mode, uid, gid, size, atime, mtime, ctime)
                if ino in inodes:
                    raise CorruptVolumeError(f"inode {ino} stored twice in checkpoint")
                inodes[ino] = node
                if node.entries is not None:
                    node.nlink = 1
                    dirs.append((node, entries))
                else:
                    emap = ExtentMap.from_flat(ext)
                    node.extents = emap
                    runs += len(emap)
                    owned.extend((r[2], r[1], ino, r[0]) for r in emap)
            chars = 0
            for node, flat in dirs:
                entries_dict = node.entries
                for i in range(0, len(flat), 2):
                    name = flat[i]
                    child = inodes[flat[i + 1]]  # type: ignore[index]
                    entries_dict[name] = child.ino  # type: ignore[index]
                    chars += len(name)  # type: ignore[arg-type]
                    child.nlink += 1
                    if child.entries is not None:
                        if child.parent:
                            raise CorruptVolumeError(f"directory {child.ino} has two parents")
                        child.parent = node.ino
                        node.nlink += 1
            root = inodes[ROOT_INO]
            if root.entries is None or root.parent:
                raise CorruptVolumeError("root is not a directory or has a parent")
            root.parent = ROOT_INO
            root.nlink += 1
            core.runs = runs
            core.name_chars = chars
            core.rmap = OwnerMap.build(owned)
            core.space = FreeSpace.from_used(data_blocks, core.rmap.covered(), align=align_blocks)
        except CorruptVolumeError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CorruptVolumeError(f"checkpoint contents do not form a volume ({exc!r})") from None
        return core

    # ------------------------------------------------------------------ queries

    def resolve(self, path: str) -> tuple[int, str | None, int | None, bool]:
        """``(parent ino, last name, ino or None, trailing slash)`` for a path.

        The last name is None when the path ends in ``/``, ``.`` or ``..``
        (it then names an existing directory, given as ``ino``).
        Raises ENOENT/ENOTDIR for a missing or non-directory prefix.
        """
        components, trailing = split_path(path)
        inodes = self.inodes
        cur = inodes[ROOT_INO]
        last = len(components) - 1
        for i, name in enumerate(components):
            entries = cur.entries
            if entries is None:
                raise fs_error(errno.ENOTDIR, path)
            if name == ".":
                if i == last:
                    return cur.ino, None, cur.ino, True
                continue
            if name == "..":
                parent = inodes[cur.parent]
                if i == last:
                    return parent.ino, None, parent.ino, True
                cur = parent
                continue
            if len(name) > 63:
                check_name(name, path)
            child = entries.get(name)
            if i == last:
                return cur.ino, name, child, trailing
            if child is None:
                raise fs_error(errno.ENOENT, path)
            cur = inodes[child]
        return ROOT_INO, None, ROOT_INO, True

    def plan_blocks(self, n: int, goal: int | None = None,
                    exclude: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
        """Free blocks for a request of ``n`` (see ``FreeSpace.plan``); takes nothing.

        ``exclude``: runs already promised to the same operation (planned, not yet applied).
        """
        if not exclude:
            return self.space.plan(n, goal)
        for start, k in exclude:
            self.space.take(start, k)
        try:
            return self.space.plan(n, goal)
        finally:
            for start, k in exclude:
                self.space.release(start, k)

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
        return 256 + _CKPT_INODE * inodes + _CKPT_RUN * self.runs + \
            _CKPT_ENTRY * inodes + _CKPT_CHAR * self.name_chars

    def paths_of(self, inos: set[int], hints: dict[int, str] | None = None) -> dict[int, str | None]:
        """A current name of each inode (None for an orphan), in one walk of the tree.

        ``hints``: a path each inode was known by; used when it still names that inode
        (so a file with several names is listed under the one its user gave).
        """
        out: dict[int, str | None] = {}
        wanted = set()
        inodes = self.inodes
        for ino in inos:
            node = inodes.get(ino)
            if node is None or node.nlink == 0:
                out[ino] = None
                continue
            hint = hints.get(ino) if hints else None
            if hint is not None:
                try:
                    if self.resolve(hint)[2] == ino:
                        components = split_path(hint)[0]
                        if ".." not in components and "." not in components:
                            out[ino] = "/" + "/".join(components)
                            continue
                except (OSError, ValueError):
                    pass
            wanted.add(ino)
        stack = [("", inodes[ROOT_INO])]
        while stack and wanted:
            prefix, d = stack.pop()
            for name, child in d.entries.items():  # type: ignore[union-attr]
                if child in wanted:
                    out[child] = prefix + "/" + name
                    wanted.discard(child)
                cnode = inodes[child]
                if cnode.entries is not None:
                    stack.append((prefix + "/" + name, cnode))
        for ino in wanted:
            out[ino] = None
        return out

    def orphans(self) -> list[int]:
        """Files with no names left (kept alive by open handles, or left by a crash)."""
        return [ino for ino, node in self.inodes.items() if node.nlink == 0]

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
        """A file gave up these blocks: free, or busy while something holds them."""
        if not self.busy.holds:
            self.space.release(pblk, n)
            return
        for start, k in self.busy.park(pblk, n):
            self.space.release(start, k)

    # ------------------------------------------------------------------ apply

    def apply(self, record: Record) -> None:
        """Make the change ``record`` describes.  The volume validated it first."""
        self._apply[type(record)](*record)

    def _touch_dir(self, node: Inode, time_ns: int) -> None:
        node.mtime_ns = node.ctime_ns = time_ns

    def _create(self, ino: int, parent: int, name: str, mode: int, uid: int, gid: int, time_ns: int) -> None:
        pnode = self.inodes[parent]
        if name in pnode.entries or ino in self.inodes:  # type: ignore[operator]
            raise CorruptVolumeError(f"create of {name!r} in {parent} over an existing name or inode {ino}")
        node = Inode(ino, mode, uid, gid, 0, time_ns, time_ns, time_ns)
        if node.entries is not None:
            node.nlink = 2
            node.parent = parent
            pnode.nlink += 1
        else:
            node.nlink = 1
        self.inodes[ino] = node
        pnode.entries[name] = ino  # type: ignore[index]
        self.name_chars += len(name)
        self._touch_dir(pnode, time_ns)
        if ino >= self.next_ino:
            self.next_ino = ino + 1

    def _link(self, ino: int, parent: int, name: str, time_ns: int) -> None:
        pnode = self.inodes[parent]
        node = self.inodes[ino]
        if name in pnode.entries or node.entries is not None:  # type: ignore[operator]
            raise CorruptVolumeError(f"link of {ino} as {name!r} in {parent} is invalid")
        pnode.entries[name] = ino  # type: ignore[index]
        self.name_chars += len(name)
        node.nlink += 1
        node.ctime_ns = time_ns
        self._touch_dir(pnode, time_ns)

    def _drop_name(self, pnode: Inode, name: str, time_ns: int, reclaim: bool) -> None:
        """Remove one name; what it named loses a link (a directory goes entirely)."""
        ino = pnode.entries.pop(name)  # type: ignore[union-attr]
        self.name_chars -= len(name)
        node = self.inodes[ino]
        if node.entries is not None:
            if node.entries:
                raise CorruptVolumeError(f"directory {ino} removed while not empty")
            pnode.nlink -= 1
            node.nlink = 0
            del self.inodes[ino]
            return
        node.nlink -= 1
        node.ctime_ns = time_ns
        if node.nlink == 0 and reclaim:
            self._free_inode(node)

    def _unlink(self, parent: int, name: str, time_ns: int, reclaim: bool) -> None:
        pnode = self.inodes[parent]
        self._drop_name(pnode, name, time_ns, reclaim)
        self._touch_dir(pnode, time_ns)

    def _rename(self, src_parent: int, src_name: str, dst_parent: int, dst_name: str,
                time_ns: int, reclaim: bool) -> None:
        inodes = self.inodes
        spnode = inodes[src_parent]
        dpnode = inodes[dst_parent]
        ino = spnode.entries[src_name]  # type: ignore[index]
        if dst_name in dpnode.entries:  # type: ignore[operator]
            self._drop_name(dpnode, dst_name, time_ns, reclaim)
        del spnode.entries[src_name]  # type: ignore[union-attr]
        dpnode.entries[dst_name] = ino  # type: ignore[index]
        self.name_chars += len(dst_name) - len(src_name)
        node = inodes[ino]
        if node.entries is not None and src_parent != dst_parent:
            spnode.nlink -= 1
            dpnode.nlink += 1
            node.parent = dst_parent
        node.ctime_ns = time_ns
        self._touch_dir(spnode, time_ns)
        self._touch_dir(dpnode, time_ns)

    def _setattr(self, ino: int, mode: int | None, uid: int | None, gid: int | None,
                 atime_ns: int | None, mtime_ns: int | None, ctime_ns: int | None) -> None:
        node = self.inodes[ino]
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
        node = self.inodes[ino]
        emap = node.extents
        if emap is None:
            raise CorruptVolumeError(f"block map change on directory {ino}")
        rmap = self.rmap
        before = len(emap)
        if not unmap and len(map) == 4 and not map[3] & SHARE and emap.is_hole(map[0], map[1]):
            # The common write: fresh blocks into a hole (appends, new files).
            fblk, nblk, pblk, flags = map
            self.space.take(pblk, nblk)
            rmap.add(pblk, nblk, ino, fblk)
            emap.insert(fblk, nblk, pblk, flags)
            self.runs += len(emap) - before
            if size is not None:
                node.size = size
            if time_ns is not None:
                node.mtime_ns = node.ctime_ns = time_ns
            return
        unowned: list[tuple[int, int]] = []     # blocks this record leaves with no owner
        for i in range(0, len(unmap), 2):
            fblk, nblk = unmap[i], unmap[i + 1]
            if nblk < 0:
                nblk = max(0, emap.end - fblk)
            for f, n, p, _fl in emap.remove(fblk, nblk):
                unowned.extend(rmap.remove(p, n, ino, f))
        taken: list[tuple[int, int]] = []       # blocks this record takes from free space
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

    def _free_inode(self, node: Inode) -> None:
        if node.extents is not None:
            for f, n, p, _fl in node.extents:
                for start, k in self.rmap.remove(p, n, node.ino, f):
                    self._release(start, k)
            self.runs -= len(node.extents)
        del self.inodes[node.ino]

    def _batch(self, items: list[list[object]]) -> None:
        for record in Batch(items).records():
            self.apply(record)

    def _reclaim(self, ino: int) -> None:
        node = self.inodes[ino]
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


__all__ = ["Core", "Inode", "ROOT_INO", "UNWRITTEN"]
