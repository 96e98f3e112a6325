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

from daxfs.core.badblocks import BlockRuns, apply_bad_metadata, apply_clear, apply_quarantine, load_bad, merge_runs
from daxfs.core.busy import BusyList
from daxfs.core.extents import SHARE, UNWRITTEN, ExtentMap
from daxfs.core.rmap import OwnerMap
from daxfs.core.namespace import check_name, split_path
from daxfs.core.records import (FILE_TYPES, ID_MAX, INO_MAX, MAX_FILE_SIZE, PERM_BITS, TIME_MAX, TIME_MIN,
                                Batch, BadMetadata, ClearQuarantine, Create, Link, Quarantine, Reclaim, Record,
                                Rename, SetAttr, SetExtents, Unlink, valid_name)
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
        self.max_blocks = MAX_FILE_SIZE // block_size if block_size > 0 else 0   # blocks in the largest file
        self.inodes: dict[int, Inode] = {}
        self.next_ino = ROOT_INO + 1
        self.space = FreeSpace(data_blocks, align=align_blocks)
        self.busy = BusyList()  # in memory only: holds by mappings and pins
        self.rmap = OwnerMap()  # derived: data block -> owners (the reflink refcounts)
        #: bad data blocks (memory_failure): never free, never busy; owned ones read as poisoned.
        #: An empty dict, so "is anything bad?" costs the hot paths one truth test.
        self.bad = BlockRuns()
        self.bad_metadata = BlockRuns()     # bad pool byte ranges outside the data area
        self.runs = 0           # extent runs over all files
        self.name_chars = 0     # characters over all directory entries
        self._apply = {
            Create: self._create, Link: self._link, Unlink: self._unlink, Rename: self._rename,
            SetAttr: self._setattr, SetExtents: self._setextents, Reclaim: self._reclaim,
            Batch: self._batch, Quarantine: self._quarantine, ClearQuarantine: self._clear_quarantine,
            BadMetadata: self._bad_metadata,
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
        if self.bad or self.bad_metadata:      # (a third field: checkpoints without it still load)
            return [self.next_ino, out, [self.bad.to_flat(), self.bad_metadata.to_flat()]]
        return [self.next_ino, out]

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
        core = cls(block_size, data_blocks, align_blocks=align_blocks)
        try:
            core._load_rows(obj)
        except CorruptVolumeError:
            raise
        except Exception as exc:    # a case the checks below missed: still corrupt, never a crash
            raise CorruptVolumeError(f"checkpoint contents do not form a volume ({exc!r})") from None
        return core

    def _load_rows(self, obj: object) -> None:
        if type(obj) is not list or len(obj) not in (2, 3):
            raise _bad_checkpoint(f"top level is {_show(obj)}, not [next_ino, inodes(, bad memory)]")
        next_ino, rows = obj[0], obj[1]
        if len(obj) == 3:
            load_bad(self, obj[2])
        if type(next_ino) is not int or not ROOT_INO < next_ino <= INO_MAX + 1:
            raise _bad_checkpoint(f"next inode number is {_show(next_ino)}, not an int from 2 to {INO_MAX + 1}")
        if type(rows) is not list:
            raise _bad_checkpoint(f"inode table is {_show(rows)}, not a list")
        self.next_ino = next_ino
        bs = self.block_size
        data_blocks = self.data_blocks
        max_blocks = MAX_FILE_SIZE // bs
        inodes = self.inodes
        owned: list[tuple[int, int, int, int]] = []
        dirs: list[tuple[Inode, list[object]]] = []
        runs = 0
        for i, row in enumerate(rows):
            if type(row) is not list or len(row) != 10:
                raise _bad_checkpoint(f"inode row {i} is {_show(row)}, not a list of 10 fields")
            ino, mode, uid, gid, size, atime, mtime, ctime, ext, entries = row
            if not (type(ino) is int and 0 < ino < next_ino):
                raise _bad_checkpoint(f"inode row {i}: inode number {_show(ino)} is not an int from 1 to "
                                      f"{next_ino - 1} (below next_ino)")
            if ino in inodes:
                raise _bad_checkpoint(f"inode {ino} is stored twice")
            if not (type(mode) is int and type(uid) is int and type(gid) is int and type(size) is int
                    and type(atime) is int and type(mtime) is int and type(ctime) is int
                    and (mode & ~PERM_BITS) in FILE_TYPES and 0 <= uid <= ID_MAX and 0 <= gid <= ID_MAX
                    and 0 <= size <= MAX_FILE_SIZE and TIME_MIN <= atime <= TIME_MAX
                    and TIME_MIN <= mtime <= TIME_MAX and TIME_MIN <= ctime <= TIME_MAX):
                raise _bad_checkpoint(_attr_problem(ino, mode, uid, gid, size, atime, mtime, ctime))
            node = Inode(ino, mode, uid, gid, size, atime, mtime, ctime)
            inodes[ino] = node
            if node.entries is not None:
                if ext is not None or type(entries) is not list or len(entries) & 1:
                    raise _bad_checkpoint(f"directory {ino}: entries {_show(entries)} are not a flat "
                                          f"[name, ino, ...] list (with extents {_show(ext)}, not None)")
                node.nlink = 1
                dirs.append((node, entries))
                continue
            if entries is not None or type(ext) is not list or len(ext) & 3:
                raise _bad_checkpoint(f"file {ino}: extents {_show(ext)} are not a flat [fblk, nblk, pblk, "
                                      f"flags, ...] list (with entries {_show(entries)}, not None)")
            if ext:
                _check_runs(ino, ext, size, bs, data_blocks, max_blocks)
                emap = ExtentMap.from_flat(ext)
                node.extents = emap
                runs += len(emap)
                owned.extend((r[2], r[1], ino, r[0]) for r in emap)
        chars = 0
        for node, flat in dirs:
            entries_dict = node.entries
            for i in range(0, len(flat), 2):
                name = flat[i]
                child_ino = flat[i + 1]
                if not valid_name(name):
                    raise _bad_checkpoint(f"directory {node.ino}: entry {i // 2} has an invalid name {_show(name)}")
                child = inodes.get(child_ino) if type(child_ino) is int else None
                if child is None:
                    raise _bad_checkpoint(f"directory {node.ino}: entry {name!r} points to {_show(child_ino)}, "
                                          f"not an inode in the checkpoint")
                if child_ino == ROOT_INO:
                    raise _bad_checkpoint(f"directory {node.ino}: entry {name!r} names the root")
                if name in entries_dict:  # type: ignore[operator]
                    raise _bad_checkpoint(f"directory {node.ino}: name {name!r} appears twice")
                entries_dict[name] = child_ino  # type: ignore[index]
                chars += len(name)
                child.nlink += 1
                if child.entries is not None:
                    if child.parent:
                        raise _bad_checkpoint(f"directory {child_ino} has two parents "
                                              f"({child.parent} and {node.ino})")
                    child.parent = node.ino
                    node.nlink += 1
        root = inodes.get(ROOT_INO)
        if root is None or root.entries is None:
            raise _bad_checkpoint("the root (inode 1) is missing or not a directory")
        root.parent = ROOT_INO
        root.nlink += 1
        # Every directory hangs off the root: one parent each is not enough (a cycle of
        # directories away from the root has that too).
        reached = 1
        stack = [root]
        while stack:
            for child_ino in stack.pop().entries.values():  # type: ignore[union-attr]
                child = inodes[child_ino]
                if child.entries is not None:
                    reached += 1
                    stack.append(child)
        if reached != len(dirs):
            lost = sorted(n.ino for n, _f in dirs if not _reaches_root(inodes, n))
            raise _bad_checkpoint(f"directories {lost[:10]} are not connected to the root")
        self.runs = runs
        self.name_chars = chars
        self.rmap = OwnerMap.build(owned)
        used = merge_runs(self.rmap.covered(), self.bad.runs()) if self.bad else self.rmap.covered()
        self.space = FreeSpace.from_used(data_blocks, used, align=self.space.align)

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
        return 256 + _CKPT_INODE * inodes + _CKPT_RUN * (self.runs + len(self.bad) + len(self.bad_metadata)) + \
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
        pnode = self.inodes.get(parent)
        entries = None if pnode is None else pnode.entries
        # Inode numbers are never reused (next_ino is above every inode): a lower one
        # exists already, or is a number a handle may still remember.
        if entries is None or name in entries or ino < self.next_ino:
            pnode = self._dir(parent, f"create of {name!r}")
            raise CorruptVolumeError(f"create of {name!r} in {parent} as inode {ino}: the name exists, or the "
                                     f"inode number is below the next one ({self.next_ino})")
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
        self.next_ino = ino + 1

    def _link(self, ino: int, parent: int, name: str, time_ns: int) -> None:
        pnode = self._dir(parent, f"link of {ino} as {name!r}")
        node = self.inodes.get(ino)
        if node is None or node.entries is not None or name in pnode.entries:  # type: ignore[operator]
            raise CorruptVolumeError(f"link of {ino} as {name!r} in {parent}: the inode is missing or a "
                                     f"directory, or the name exists")
        pnode.entries[name] = ino  # type: ignore[index]
        self.name_chars += len(name)
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
        if node.nlink == 0 and reclaim:
            self._free_inode(node)

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
        max_blocks = self.max_blocks
        bad = self.bad
        for i in range(0, len(map), 4):
            if map[i] + map[i + 1] > max_blocks:
                raise CorruptVolumeError(f"inode {ino} maps file block {map[i] + map[i + 1]}, past the largest file")
            if bad and bad.overlaps(map[i + 2], map[i + 1]):
                # a bad block never gains an owner: only the files it failed under keep it
                raise CorruptVolumeError(f"inode {ino} maps bad data blocks {map[i + 2]}..{map[i + 2] + map[i + 1]}")
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
        if emap.last_written_end() > -(-new_size // self.block_size):
            raise CorruptVolumeError(f"inode {ino} holds written blocks past its size {new_size}")

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


# ---- checkpoint checks: the messages say which inode and which field, and why

def _bad_checkpoint(what: str) -> CorruptVolumeError:
    return CorruptVolumeError(f"checkpoint: {what}")


def _show(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _attr_problem(ino: int, mode: object, uid: object, gid: object, size: object,
                  atime: object, mtime: object, ctime: object) -> str:
    """What is wrong with an inode's attributes (the caller found something)."""
    if type(mode) is not int or (mode & ~PERM_BITS) not in FILE_TYPES:
        return f"inode {ino}: mode {_show(mode)} is not a regular file or directory with permission bits"
    for name, value, low, high in (("uid", uid, 0, ID_MAX), ("gid", gid, 0, ID_MAX),
                                   ("size", size, 0, MAX_FILE_SIZE), ("atime", atime, TIME_MIN, TIME_MAX),
                                   ("mtime", mtime, TIME_MIN, TIME_MAX), ("ctime", ctime, TIME_MIN, TIME_MAX)):
        if type(value) is not int or not low <= value <= high:  # type: ignore[operator]
            return f"inode {ino}: {name} {_show(value)} is not an int from {low} to {high}"
    return f"inode {ino}: attributes out of range"


def _check_runs(ino: int, flat: list[object], size: int, bs: int, data_blocks: int, max_blocks: int) -> None:
    """A file's stored runs: ints, sorted and disjoint, nblk > 0, inside the data area and the
    largest file, flags 0 or UNWRITTEN (SHARE lives only in records), written ones below the size."""
    size_blocks = -(-size // bs)
    prev_end = 0
    for i in range(0, len(flat), 4):
        f, n, p, fl = flat[i], flat[i + 1], flat[i + 2], flat[i + 3]
        if (type(f) is int and type(n) is int and type(p) is int and type(fl) is int
                and prev_end <= f and 0 < n and f + n <= max_blocks and 0 <= p and p + n <= data_blocks  # type: ignore[operator]
                and (fl == 0 and f + n <= size_blocks or fl == UNWRITTEN)):  # type: ignore[operator]
            prev_end = f + n  # type: ignore[operator]
            continue
        where = f"file {ino}: run {i // 4} {flat[i:i + 4]!r}"
        if not all(type(x) is int for x in (f, n, p, fl)):
            raise _bad_checkpoint(f"{where} is not four ints")
        if fl not in (0, UNWRITTEN):
            raise _bad_checkpoint(f"{where} has unknown flags {fl:#x}")  # type: ignore[str-format]
        if n <= 0:  # type: ignore[operator]
            raise _bad_checkpoint(f"{where} has a length of {n}")
        if f < prev_end:  # type: ignore[operator]
            raise _bad_checkpoint(f"{where} starts before the previous run ends (block {prev_end}): "
                                  f"runs must be sorted and disjoint")
        if f + n > max_blocks:  # type: ignore[operator]
            raise _bad_checkpoint(f"{where} ends past the largest file ({max_blocks} blocks)")
        if p < 0 or p + n > data_blocks:  # type: ignore[operator]
            raise _bad_checkpoint(f"{where} lies outside the data area ({data_blocks} blocks)")
        raise _bad_checkpoint(f"{where} holds written blocks past the file size {size}")


def _reaches_root(inodes: dict[int, Inode], node: Inode) -> bool:
    """Whether following ``parent`` from ``node`` ends at the root (a bounded walk)."""
    for _ in range(len(inodes) + 1):
        if node.ino == ROOT_INO:
            return True
        parent = inodes.get(node.parent)
        if parent is None:
            return False
        node = parent
    return False


__all__ = ["Core", "Inode", "ROOT_INO", "UNWRITTEN"]
