"""Sharing blocks between files: clone, dedupe, copy_file_range, and the reverse map.

- ``clone_range`` maps the source's data blocks into the destination with the
  record's SHARE flag: no data moves, O(extents).  Linux's FICLONERANGE rules:
  block-aligned offsets and length (the length may end unaligned at the
  source's EOF), no overlap within one file.
- A shared block is never written in place (``DataPath.unshare`` gives the
  writer a private copy first), so the other owners never see a write.
- A source range under a live *write* mapping or write pin cannot be shared:
  stores through it would land in every clone.  That is refused (BusyError),
  or waited for under the ``wait`` policy.
- Unwritten (fallocated) extents are never shared: a clone gives the
  destination fresh unwritten blocks of its own.
- ``owners`` answers from the core's reverse map in O(log n + owners).
- A poisoned block (on bad memory) is never shared, compared or copied:
  clone and copy_file_range refuse it (PoisonError), dedupe skips it.
- A call that waited for references to go (the lock let go meanwhile) starts over
  from its arguments (``_again``): a file it named by path may be gone by then, and
  what it found of sizes and blocks before the wait is stale.
"""

from __future__ import annotations

import errno
import stat
import time
from collections.abc import Callable
from itertools import chain, repeat
from operator import itemgetter
from typing import TypeVar

from daxfs._types import Owner
from daxfs.core import UNWRITTEN, Inode
from daxfs.core.extents import SHARE
from daxfs.core.inode_paths import paths_of
from daxfs.core.records import Batch, Create, SetExtents
from daxfs.errors import fs_error
from daxfs.volume import poison
from daxfs.volume.datapath import GROW_RUN, Piece
from daxfs.volume.namespace import Namespace, OpenFile
from daxfs.volume.waits import LookAgain, start_over

_COPY_CHUNK = 4 * 1024 * 1024
_ATOMIC_COPY_LIMIT = 64 * 1024 * 1024     # larger unaligned copies go in chunks
_T = TypeVar("_T")


class Sharing:
    """clone_range, clone_file, dedupe_range, copy_file_range and owners of one volume."""

    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.data = namespace.data
        self.journal = namespace.journal
        self.references = namespace.references
        self.lock = namespace.lock
        self.bs = namespace.journal.block_size

    # ---------------------------------------------------------------- arguments

    def _file_arg(self, arg: object, *, write: bool) -> Inode:
        """The inode a path or an open file names, checked as Linux checks the fds of a clone."""
        handle = OpenFile.of(arg)
        if handle is not None:
            if handle.journal is not self.journal:
                raise fs_error(errno.EXDEV, handle.path, "files are on different volumes")
            if handle.closed:
                raise ValueError("I/O operation on closed file")
            if (write and not handle.writable) or (not write and not handle.readable):
                raise fs_error(errno.EBADF, handle.path, "file not open for " + ("writing" if write else "reading"))
            if write and handle.append:
                raise fs_error(errno.EBADF, handle.path, "an O_APPEND file cannot be a clone or copy target")
            return self.journal.node(handle.ino)
        path, node = self.namespace.lookup(arg)
        if node.entries is not None:
            raise fs_error(errno.EISDIR, path)
        if node.extents is None:        # a special file (symlinks were followed): as Linux's remap
            raise fs_error(errno.EINVAL, path, "not a regular file")
        return node

    # ---------------------------------------------------------------- clone

    def clone_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        """Share ``src``'s blocks at ``[src_offset, +length)`` into ``dst`` at ``dst_offset``
        (FICLONERANGE).  ``length`` 0 means to the source's EOF.  Returns bytes cloned."""
        return self._again(self._clone_range, src, src_offset, dst, dst_offset, length)

    def _again(self, operation: Callable[..., _T], *args: object) -> _T:
        """``operation(*args)`` under the lock, from the start again after each wait that let
        the lock go (``LookAgain``): a file named by path may be gone or another one by then,
        and sizes and blocks found before it may have changed."""
        with self.lock:
            return start_over(operation, *args)

    def _clone_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        self.journal.check_writable()
        snode = self._file_arg(src, write=False)
        dnode = self._file_arg(dst, write=True)
        return self._clone(snode, src_offset, dnode, dst_offset, length)

    def _clone(self, snode: Inode, so: int, dnode: Inode, do: int, length: int) -> int:
        bs = self.bs
        if so < 0 or do < 0 or length < 0:
            raise fs_error(errno.EINVAL, message="negative offset or length")
        if length == 0:
            if so > snode.size:
                raise fs_error(errno.EINVAL, message="clone starts past the source's end of file")
            length = snode.size - so
            if length == 0:
                return 0
        if so + length > snode.size:
            raise fs_error(errno.EINVAL, message="clone range runs past the source's end of file")
        at_eof = so + length == snode.size
        if so % bs or do % bs or (length % bs and not at_eof):
            raise fs_error(errno.EINVAL, message=f"clone offsets and length must be multiples of {bs} "
                           "(the length may end at the source's EOF)")
        if length % bs and do + length < dnode.size:
            raise fs_error(errno.EINVAL, message="an unaligned clone must end at or past the destination's EOF")
        nblk = -(-length // bs)
        sf0, df0 = so // bs, do // bs
        if snode is dnode and sf0 < df0 + nblk and df0 < sf0 + nblk:
            raise fs_error(errno.EINVAL, message="source and destination ranges overlap")
        if self.references.wait_for_writers(snode.ino, sf0, sf0 + nblk,
                                            "cannot share blocks a write mapping or write pin can still change") \
                or self.references.settle(dnode.ino, df0, df0 + nblk, None, "clone into"):
            raise LookAgain
        new_size = do + length if do + length > dnode.size else None
        data = self.data
        data.unshare(dnode, 0, 0, grows_to=new_size)
        stores: list[tuple[int, int]] = []
        if new_size is not None:
            data.zero_tail_for_growth(dnode, new_size, stores)
            data.persist(stores)
        record = self._clone_record(snode, sf0, dnode.ino, df0, nblk, new_size)
        self.journal.deferred.pop(dnode.ino, None)      # (an in-place write's older mtime: superseded)
        self.journal.commit(record, GROW_RUN * (len(record.map) // 4 + 2))
        return length

    def _clone_record(self, snode: Inode, sf0: int, dino: int, df0: int, nblk: int,
                      new_size: int | None, exclude: list[tuple[int, int]] | None = None) -> SetExtents:
        """The record that makes ``dino``'s blocks ``df0..`` share ``snode``'s ``sf0..``.

        Written blocks are shared; unwritten ones get fresh unwritten blocks of their
        own, so a block is never both shared and written into in place.
        """
        runs = snode.extents.slice(sf0, nblk)  # type: ignore[union-attr]
        core = self.journal.core
        if core.bad:
            bad = poison.poisoned_runs(core, snode, sf0, nblk)
            if bad:     # a bad block never gains an owner
                raise poison.poison_error(core, snode, bad, self.data.data_offset, "a reflink")
        if UNWRITTEN not in map(itemgetter(3), runs):
            # Every run written (the usual clone): the map is the source's runs, flat, with
            # SHARE flags and moved to the destination, in C-level passes, no step per run.
            mapping = list(chain.from_iterable(runs))
            mapping[3::4] = repeat(SHARE, len(runs))
            if df0 != sf0:
                mapping[0::4] = [f + df0 - sf0 for f in mapping[0::4]]
            return SetExtents(dino, [df0, nblk], mapping, new_size, time.time_ns())
        unwritten = [(df0 + f - sf0, k) for f, k, _p, fl in runs if fl & UNWRITTEN]
        fresh = self.data.assign(unwritten, self.journal.plan_blocks(sum(k for _f, k in unwritten), None,
                                                                         exclude), UNWRITTEN) if unwritten else []
        mapping = [x for f, k, p, fl in runs if not fl & UNWRITTEN for x in (df0 + f - sf0, k, p, SHARE)]
        mapping += [x for piece in fresh for x in piece]
        return SetExtents(dino, [df0, nblk], mapping, new_size, time.time_ns())

    def clone_file(self, src: object, dst: object, creator: tuple[int, int, int] | None = None) -> None:
        """Make ``dst`` a copy of ``src`` that shares all its blocks (``cp --reflink``)."""
        self._again(self._clone_file, src, dst, creator)

    def _clone_file(self, src: object, dst: object, creator: tuple[int, int, int] | None) -> None:
        journal = self.journal
        journal.check_writable()
        snode = self._file_arg(src, write=False)
        try:
            if self._file_arg(dst, write=True) is snode:
                raise fs_error(errno.EINVAL, message="source and destination are the same file")
        except FileNotFoundError:
            pass
        nblk = -(-snode.size // self.bs)
        if self.references.wait_for_writers(snode.ino, 0, nblk,    # before dst is touched
                                            "cannot share blocks a write mapping or write pin can still change"):
            raise LookAgain
        handle = OpenFile.of(dst)
        if handle is not None:      # an open file (checked above): clone over it, as FICLONE
            ino: int | None = handle.ino
        else:
            path = self.namespace.path_arg(dst)
            parent, name, ino, trailing = journal.core.resolve(path, True)
        if ino is not None:
            dnode = self._file_arg(dst, write=True)
            if self.references.settle(dnode.ino, 0, None, None, "clone over"):
                raise LookAgain
            # one record: all of dst goes, src's blocks come, the size follows
            record = self._clone_record(snode, 0, dnode.ino, 0, nblk, snode.size)
            record = record._replace(unmap=[0, -1])
            journal.deferred.pop(dnode.ino, None)
            journal.commit(record, GROW_RUN * (len(record.map) // 4 + 2))
            return
        if name is None or trailing:
            raise fs_error(errno.EISDIR, path)
        # a new name: create it and share the blocks in one record
        new_ino = journal.core.next_ino
        uid, gid, umask = self.namespace.creator(creator)
        create = Create(new_ino, parent, name, stat.S_IFREG | (0o666 & ~umask), uid, gid, time.time_ns())
        share = self._clone_record(snode, 0, new_ino, 0, nblk, snode.size)
        journal.commit(Batch.of(create, share), 256 + 4 * len(name) + GROW_RUN * (len(share.map) // 4 + 2))

    # ---------------------------------------------------------------- dedupe

    def dedupe_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        """Share blocks of ``dst`` whose bytes equal ``src``'s (FIDEDUPERANGE); never changes
        what either file reads.  Returns the bytes now shared."""
        return self._again(self._dedupe_range, src, src_offset, dst, dst_offset, length)

    def _dedupe_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        self.journal.check_writable()
        snode = self._file_arg(src, write=False)
        dnode = self._file_arg(dst, write=True)
        bs = self.bs
        if src_offset < 0 or dst_offset < 0 or length < 0:
            raise fs_error(errno.EINVAL, message="negative offset or length")
        if src_offset % bs or dst_offset % bs:
            raise fs_error(errno.EINVAL, message=f"dedupe offsets must be multiples of {bs}")
        if src_offset + length > snode.size or dst_offset + length > dnode.size:
            raise fs_error(errno.EINVAL, message="dedupe range runs past end of file")
        if length == 0:
            return 0
        nblk = -(-length // bs)
        sf0, df0 = src_offset // bs, dst_offset // bs
        if snode is dnode and sf0 < df0 + nblk and df0 < sf0 + nblk:
            raise fs_error(errno.EINVAL, message="source and destination ranges overlap")
        table = self.references
        what = "cannot share blocks a write mapping or write pin can still change"
        if table.wait_for_writers(snode.ino, sf0, sf0 + nblk, what) \
                or table.wait_for_writers(dnode.ino, df0, df0 + nblk, what) \
                or table.settle(dnode.ino, df0, df0 + nblk, None, "dedupe into"):
            raise LookAgain
        pool = self.data.pool
        base = self.data.data_offset
        written = self.data.written_pblk
        pieces: list[tuple[int, int, int]] = []     # (dst fblk, n, src pblk)
        shared = 0
        for i in range(nblk):
            sp = written(snode, sf0 + i)
            dp = written(dnode, df0 + i)
            if sp is None or dp is None or sp == dp or poison.is_bad(self.journal.core, sp) or \
                    poison.is_bad(self.journal.core, dp):
                continue        # (bad memory is never compared: it may not even read)
            n = min(bs, length - i * bs)
            if pool.view(base + sp * bs, n) != pool.view(base + dp * bs, n):
                continue
            if n < bs and dst_offset + length < dnode.size:
                continue        # a partial last block: its tail differs in what dst shows
            if pieces and pieces[-1][0] + pieces[-1][1] == df0 + i and pieces[-1][2] + pieces[-1][1] == sp:
                f, k, p = pieces[-1]
                pieces[-1] = (f, k + 1, p)
            else:
                pieces.append((df0 + i, 1, sp))
            shared += n
        if pieces:
            mapping = [x for f, k, p in pieces for x in (f, k, p, SHARE)]
            self.journal.commit(SetExtents(dnode.ino, [], mapping, None, None), GROW_RUN * (len(pieces) + 1))
        return shared

    # ---------------------------------------------------------------- copy_file_range

    def copy_file_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        """Copy bytes, sharing whole blocks where both offsets line up; returns bytes copied.

        One record, so all-or-nothing: the shared middle and the copied edges (written into
        fresh blocks) land together.  Only an unaligned copy of more than 64 MiB goes in
        chunks, each all-or-nothing, as Linux's copy_file_range may stop short.
        """
        return self._again(self._copy_file_range, src, src_offset, dst, dst_offset, length)

    def _copy_file_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        journal = self.journal
        data = self.data
        journal.check_writable()
        snode = self._file_arg(src, write=False)
        dnode = self._file_arg(dst, write=True)
        if src_offset < 0 or dst_offset < 0 or length < 0:
            raise fs_error(errno.EINVAL, message="negative offset or length")
        n = max(0, min(length, snode.size - src_offset))
        if n == 0:
            return 0
        if snode is dnode and src_offset < dst_offset + n and dst_offset < src_offset + n:
            raise fs_error(errno.EINVAL, message="source and destination ranges overlap")
        bs = self.bs
        clone: tuple[int, int] | None = None          # (offset into the range, length) shared
        if src_offset % bs == dst_offset % bs:
            head = (-src_offset) % bs
            aligned = max(0, (n - head) // bs * bs)
            eof = [n - head] if src_offset + n == snode.size and n - head > aligned else []
            for middle in eof + [aligned]:
                if middle > 0 and self._clone_fits(snode, src_offset + head, dnode, dst_offset + head, middle):
                    clone = (head, middle)
                    break
        copied = [(0, n)] if clone is None else [(0, clone[0]), (clone[0] + clone[1], n)]
        if clone is None and n > _ATOMIC_COPY_LIMIT:
            self._copy_bytes(snode, src_offset, dnode, dst_offset, n)
            return n
        if self.references.settle(dnode.ino, dst_offset // bs, -(-(dst_offset + n) // bs), None, "copy into"):
            raise LookAgain
        end = dst_offset + n
        new_size = end if end > dnode.size else None
        data.unshare(dnode, 0, 0, grows_to=new_size)     # the old last block, before its tail
        stores: list[tuple[int, int]] = []
        if new_size is not None:
            data.zero_tail_for_growth(dnode, new_size, stores)
        pieces: list[Piece] = []
        for lo, hi in copied:
            if hi > lo:
                chunk = data.read_locked(snode.ino, None, hi - lo, src_offset + lo)
                pieces += self._write_fresh(dnode, dst_offset + lo, chunk, pieces, stores)  # type: ignore[arg-type]
        data.persist(stores)
        mapping = [x for piece in pieces for x in piece]
        unmap: list[int] = []
        if clone is not None:
            share = self._clone_record(snode, (src_offset + clone[0]) // bs, dnode.ino,
                                       (dst_offset + clone[0]) // bs, -(-clone[1] // bs), None,
                                       exclude=[(p, k) for _f, k, p, _fl in pieces])
            unmap, mapping = share.unmap, share.map + mapping
        journal.deferred.pop(dnode.ino, None)
        journal.commit(SetExtents(dnode.ino, unmap, mapping, new_size, time.time_ns()),
                       GROW_RUN * (len(mapping) // 4 + 2))
        return n

    def _write_fresh(self, node: Inode, offset: int, chunk: bytes, promised: list[Piece],
                     stores: list[tuple[int, int]]) -> list[Piece]:
        """Write ``chunk`` at ``offset`` into fresh blocks (the file's bytes around it copied in),
        returning their map pieces for the caller's record: a write that is all-or-nothing."""
        bs = self.bs
        data = self.data
        end = offset + len(chunk)
        f0, f1 = offset // bs, -(-end // bs)
        plan = self.journal.plan_blocks(f1 - f0, None, [(p, k) for _f, k, p, _fl in promised])
        targets = data.assign([(f0, f1 - f0)], plan, 0)
        pool = data.pool
        base = data.data_offset
        size = node.size
        for f, k, p, _fl in targets:
            for i in range(k):
                fb = f + i
                lo, hi = max(fb * bs, offset), min((fb + 1) * bs, end)
                old = data.written_pblk(node, fb)
                if old is not None and poison.is_bad(self.journal.core, old) and \
                        (lo > fb * bs or hi < min((fb + 1) * bs, max(size, end))):
                    raise poison.poison_error(self.journal.core, node, [(fb, 1, old)], base,
                                              "a copy covering them in part")
                if old is not None and poison.is_bad(self.journal.core, old):
                    block = bytearray(bs)       # covered whole: the copy replaces it
                elif old is not None and (lo > fb * bs or hi < (fb + 1) * bs):
                    block = bytearray(pool.view(base + old * bs, bs))
                    if size < (fb + 1) * bs:        # past the old EOF the bytes are stale
                        block[max(0, size - fb * bs):] = bytes(bs - max(0, size - fb * bs))
                else:
                    block = bytearray(bs)
                block[lo - fb * bs:hi - fb * bs] = chunk[lo - offset:hi - offset]
                pool.write(base + (p + i) * bs, block)
            stores.append((base + p * bs, k * bs))
        data.prefault(plan)
        return targets

    def _clone_fits(self, snode: Inode, so: int, dnode: Inode, do: int, length: int) -> bool:
        """Whether clone's rules allow sharing this range (else it is copied)."""
        bs = self.bs
        if length % bs and do + length < dnode.size:
            return False
        nblk = -(-length // bs)
        if snode is dnode and so // bs < do // bs + nblk and do // bs < so // bs + nblk:
            return False
        return not self.references.writers_over(snode.ino, so // bs, so // bs + nblk)

    def _copy_bytes(self, snode: Inode, so: int, dnode: Inode, do: int, n: int) -> None:
        pos = 0
        data = self.data
        while pos < n:
            chunk = min(_COPY_CHUNK, n - pos)
            got = data.read_locked(snode.ino, None, chunk, so + pos)
            data.pwrite(dnode.ino, memoryview(got), do + pos)  # type: ignore[arg-type]
            pos += chunk

    # ---------------------------------------------------------------- the reverse map

    def owners(self, pool_offset: int, length: int = 1) -> list[Owner]:
        """Every (file, offset) whose data lives in pool bytes ``[pool_offset, +length)``."""
        if pool_offset < 0 or length <= 0:
            raise ValueError("owners() needs pool_offset >= 0 and length > 0")
        with self.lock:
            self.journal.check_open()
            bs = self.bs
            data_offset = self.data.data_offset
            core = self.journal.core
            start = max(pool_offset, data_offset)
            end = min(pool_offset + length, data_offset + core.data_blocks * bs)
            if start >= end:
                return []
            first = (start - data_offset) // bs
            last = -(-(end - data_offset) // bs)
            out = []
            found = core.rmap.owners(first, last - first)
            paths = paths_of(core, {ino for ino, _f, _p, _n in found})
            for ino, fblk, pblk, n in found:
                lo = max(start, data_offset + pblk * bs)
                hi = min(end, data_offset + (pblk + n) * bs)
                file_offset = fblk * bs + lo - (data_offset + pblk * bs)
                out.append(Owner(ino, paths[ino], file_offset, hi - lo, lo))
            out.sort(key=lambda o: (o.pool_offset, o.ino, o.file_offset))
            return out
