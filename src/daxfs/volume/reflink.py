"""Sharing blocks: clone, dedupe, copy_file_range, copy-on-write, and the reverse map.

A mixin of ``Volume`` (it uses the volume's lock, commit and policies).

- ``clone_range`` maps the source's data blocks into the destination with the
  record's SHARE flag: no data moves, O(extents).  Linux's FICLONERANGE rules:
  block-aligned offsets and length (the length may end unaligned at the
  source's EOF), no overlap within one file.
- A shared block is never written in place.  Every write path first gives the
  writing file private copies of the shared blocks it will touch
  (``_unshare``): a record of its own that changes no byte the file shows, so
  the write stays all-or-nothing.  The other owners never see the write.
- A source range under a live *write* mapping or write pin cannot be shared:
  stores through it would land in every clone.  That is refused (BusyError),
  or waited for under the ``wait`` policy.
- ``owners`` answers from the core's reverse map in O(log n + owners).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from typing import TYPE_CHECKING, Any

from daxfs._types import Owner
from daxfs.core import UNWRITTEN
from daxfs.core.extents import SHARE
from daxfs.core.namespace import fspath
from daxfs.core.records import Batch, Create, SetExtents
from daxfs.errors import fs_error

if TYPE_CHECKING:
    from daxfs.core.state import Inode

_COPY_CHUNK = 4 * 1024 * 1024
_ATOMIC_COPY_LIMIT = 64 * 1024 * 1024     # larger unaligned copies go in chunks


def _umask() -> int:
    from daxfs.volume.volume import _process_umask
    return _process_umask()
_GROW_RUN = 80


class ReflinkOps:
    """clone_range, clone_file, dedupe_range, copy_file_range, owners (mixed into Volume)."""

    # ---- arguments

    def _file_arg(self: Any, arg: object, *, write: bool) -> "Inode":
        """The inode a path or File names, checked as Linux checks the fds of a clone."""
        from daxfs.access.file import File

        if isinstance(arg, File):
            if arg._vol is not self:
                raise fs_error(errno.EXDEV, arg.name, "files are on different volumes")
            if arg.closed:
                raise ValueError("I/O operation on closed file")
            if (write and not arg._writable) or (not write and not arg._readable):
                raise fs_error(errno.EBADF, arg.name, "file not open for " + ("writing" if write else "reading"))
            if write and arg._append:
                raise fs_error(errno.EBADF, arg.name, "an O_APPEND file cannot be a clone or copy target")
            return self._node(arg._ino)
        path, node = self._lookup(fspath(arg))
        if node.entries is not None:
            raise fs_error(errno.EISDIR, path)
        return node

    def _check_share_source(self: Any, node: "Inode", first: int, end: int) -> None:
        """No live write mapping or write pin may cover a range about to be shared."""
        writers = [r for r in self._references(node.ino, first, end) if r.writable]
        if writers:
            if self.policy == "wait":
                self._wait_until(lambda: not [r for r in self._references(node.ino, first, end) if r.writable],
                                 None)
                return
            raise self._busy_error("cannot share blocks a write mapping or write pin can still change", writers)

    # ---- copy on write

    def _unshare(self: Any, node: "Inode", first: int, end: int, grows_to: int | None = None, *,
                 commit: bool = True, zero_past_eof: bool = False) -> list[tuple[int, int, int, int]]:
        """Give the file private copies of the shared written blocks in ``[first, end)`` (and of
        its last block if the size is about to grow over it), before anything writes them.

        With ``commit`` the swap is a record of its own (it changes no byte the file shows);
        without, the copies are made and persisted and their map entries returned for the
        caller's own record, so a write into them lands all-or-nothing with the swap.
        """
        rmap = self._core.rmap
        if not rmap.shared_blocks:
            return []
        bs = self._bs
        ranges = [(first, end)] if end > first else []
        if grows_to is not None and node.size % bs and grows_to > node.size:
            ranges.append((node.size // bs, node.size // bs + 1))
        victims: list[tuple[int, int, int]] = []       # (fblk, n, old pblk)
        for lo, hi in ranges:
            for f, k, p, fl in node.extents.slice(lo, hi - lo):  # type: ignore[union-attr]
                for sp, sk in rmap.shared_parts(p, k):
                    if not any(v[0] == f + sp - p for v in victims):
                        victims.append((f + sp - p, sk, sp))
        if not victims:
            return []
        self._settle(node.ino, min(v[0] for v in victims), max(v[0] + v[1] for v in victims), None,
                     "copy on write")
        core = self._core
        plan = core.plan_blocks(sum(k for _f, k, _p in victims))
        pool = self._pool
        stores: list[tuple[int, int]] = []
        mapping: list[tuple[int, int, int, int]] = []
        targets = self._assign([(f, k) for f, k, _p in victims], plan, 0)
        sources = {f: p for f, _k, p in victims}
        for f, k, newp, _fl in targets:
            # which victim does this piece come from (pieces may split a victim)
            vf = max(v for v in sources if v <= f)
            oldp = sources[vf] + (f - vf)
            src = self._data_offset + oldp * bs
            dst = self._data_offset + newp * bs
            pool.write(dst, pool.view(src, k * bs))
            stores.append((dst, k * bs))
            eof = node.size
            if zero_past_eof and f * bs < eof < (f + k) * bs:
                # the size is about to grow over the stale bytes past EOF: zero them in the copy
                # (never in the shared original, whose other owners may show them)
                pool.zero(dst + eof - f * bs, (f + k) * bs - eof)
            run = node.extents.lookup(f)  # type: ignore[union-attr]
            mapping.append((f, k, newp, run[3] & UNWRITTEN if run else 0))
        self._prefault(plan)
        self._persist(stores)
        if commit:
            self._commit(SetExtents(node.ino, [], [x for m in mapping for x in m], None, None),
                         _GROW_RUN * (len(targets) + 1))
        return mapping

    # ---- the operations

    def clone_range(self: Any, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        """Share ``src``'s blocks at ``[src_offset, +length)`` into ``dst`` at ``dst_offset``
        (FICLONERANGE).  ``length`` 0 means to the source's EOF.  Returns bytes cloned."""
        with self._lock:
            self._check_writable()
            snode = self._file_arg(src, write=False)
            dnode = self._file_arg(dst, write=True)
            return self._clone(snode, src_offset, dnode, dst_offset, length)

    def _clone(self: Any, snode: "Inode", so: int, dnode: "Inode", do: int, length: int) -> int:
        bs = self._bs
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
        self._check_share_source(snode, sf0, sf0 + nblk)
        if self._settle(dnode.ino, df0, df0 + nblk, None, "clone into"):
            return self._clone(snode, so, dnode, do, length)        # waited: look again
        new_size = do + length if do + length > dnode.size else None
        self._unshare(dnode, 0, 0, grows_to=new_size)
        stores: list[tuple[int, int]] = []
        if new_size is not None:
            self._zero_tail_for_growth(dnode, new_size, stores)
            self._persist(stores)
        record = self._clone_record(snode, sf0, dnode.ino, df0, nblk, new_size)
        self._commit(record, _GROW_RUN * (len(record.map) // 4 + 2))
        return length

    def _clone_record(self: Any, snode: "Inode", sf0: int, dino: int, df0: int, nblk: int,
                      new_size: int | None, exclude: list[tuple[int, int]] | None = None) -> SetExtents:
        """The record that makes ``dino``'s blocks ``df0..`` share ``snode``'s ``sf0..``.

        Written blocks are shared; unwritten ones get fresh unwritten blocks of their
        own, so a block is never both shared and written into in place.
        """
        runs = snode.extents.slice(sf0, nblk)  # type: ignore[union-attr]
        unwritten = [(df0 + f - sf0, k) for f, k, _p, fl in runs if fl & UNWRITTEN]
        fresh = self._assign(unwritten, self._core.plan_blocks(sum(k for _f, k in unwritten), None, exclude),
                             UNWRITTEN) if unwritten else []
        mapping = [x for f, k, p, fl in runs if not fl & UNWRITTEN for x in (df0 + f - sf0, k, p, SHARE)]
        mapping += [x for piece in fresh for x in piece]
        return SetExtents(dino, [df0, nblk], mapping, new_size, time.time_ns())

    def clone_file(self: Any, src: object, dst: object) -> None:
        """Make ``dst`` a copy of ``src`` that shares all its blocks (``cp --reflink``)."""
        with self._lock:
            self._check_writable()
            snode = self._file_arg(src, write=False)
            try:
                if self._file_arg(dst, write=True) is snode:
                    raise fs_error(errno.EINVAL, message="source and destination are the same file")
            except FileNotFoundError:
                pass
            bs = self._bs
            nblk = -(-snode.size // bs)
            self._check_share_source(snode, 0, nblk)    # before dst is touched
            path = fspath(dst)
            parent, name, ino, trailing = self._core.resolve(path)
            if ino is not None:
                dnode = self._file_arg(dst, write=True)
                if self._settle(dnode.ino, 0, None, None, "clone over"):
                    return self.clone_file(src, dst)     # waited: look again
                # one record: all of dst goes, src's blocks come, the size follows
                record = self._clone_record(snode, 0, dnode.ino, 0, nblk, snode.size)
                record = record._replace(unmap=[0, -1])
                self._commit(record, _GROW_RUN * (len(record.map) // 4 + 2))
                return
            if name is None or trailing:
                raise fs_error(errno.EISDIR, path)
            # a new name: create it and share the blocks in one record
            new_ino = self._core.next_ino
            create = Create(new_ino, parent, name, stat.S_IFREG | (0o666 & ~_umask()), os.getuid(), os.getgid(),
                            time.time_ns())
            share = self._clone_record(snode, 0, new_ino, 0, nblk, snode.size)
            self._commit(Batch.of(create, share), 256 + 4 * len(name) + _GROW_RUN * (len(share.map) // 4 + 2))

    def dedupe_range(self: Any, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        """Share blocks of ``dst`` whose bytes equal ``src``'s (FIDEDUPERANGE); never changes
        what either file reads.  Returns the bytes now shared."""
        with self._lock:
            self._check_writable()
            snode = self._file_arg(src, write=False)
            dnode = self._file_arg(dst, write=True)
            bs = self._bs
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
            self._check_share_source(snode, sf0, sf0 + nblk)
            self._check_share_source(dnode, df0, df0 + nblk)
            self._settle(dnode.ino, df0, df0 + nblk, None, "dedupe into")
            pool = self._pool
            pieces: list[tuple[int, int, int]] = []     # (dst fblk, n, src pblk)
            shared = 0
            for i in range(nblk):
                sp = _written_pblk(snode, sf0 + i)
                dp = _written_pblk(dnode, df0 + i)
                if sp is None or dp is None or sp == dp:
                    continue
                n = min(bs, length - i * bs)
                a = pool.view(self._data_offset + sp * bs, n)
                b = pool.view(self._data_offset + dp * bs, n)
                if a != b:
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
                self._commit(SetExtents(dnode.ino, [], mapping, None, None), _GROW_RUN * (len(pieces) + 1))
            return shared

    def copy_file_range(self: Any, src: object, src_offset: int, dst: object, dst_offset: int,
                        length: int) -> int:
        """Copy bytes, sharing whole blocks where both offsets line up; returns bytes copied.

        One record, so all-or-nothing: the shared middle and the copied edges (written into
        fresh blocks) land together.  Only an unaligned copy of more than 64 MiB goes in
        chunks, each all-or-nothing, as Linux's copy_file_range may stop short.
        """
        with self._lock:
            self._check_writable()
            snode = self._file_arg(src, write=False)
            dnode = self._file_arg(dst, write=True)
            if src_offset < 0 or dst_offset < 0 or length < 0:
                raise fs_error(errno.EINVAL, message="negative offset or length")
            n = max(0, min(length, snode.size - src_offset))
            if n == 0:
                return 0
            if snode is dnode and src_offset < dst_offset + n and dst_offset < src_offset + n:
                raise fs_error(errno.EINVAL, message="source and destination ranges overlap")
            bs = self._bs
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
            if self._settle(dnode.ino, dst_offset // bs, -(-(dst_offset + n) // bs), None, "copy into"):
                return self.copy_file_range(src, src_offset, dst, dst_offset, length)   # waited
            end = dst_offset + n
            new_size = end if end > dnode.size else None
            self._unshare(dnode, 0, 0, grows_to=new_size)      # the old last block, before its tail
            stores: list[tuple[int, int]] = []
            if new_size is not None:
                self._zero_tail_for_growth(dnode, new_size, stores)
            pieces: list[tuple[int, int, int, int]] = []
            for lo, hi in copied:
                if hi > lo:
                    data = self._read_locked(snode.ino, None, hi - lo, src_offset + lo)
                    pieces += self._write_fresh(dnode, dst_offset + lo, data, pieces, stores)
            self._persist(stores)
            mapping = [x for piece in pieces for x in piece]
            unmap: list[int] = []
            if clone is not None:
                share = self._clone_record(snode, (src_offset + clone[0]) // bs, dnode.ino,
                                           (dst_offset + clone[0]) // bs, -(-clone[1] // bs), None,
                                           exclude=[(p, k) for _f, k, p, _fl in pieces])
                unmap, mapping = share.unmap, share.map + mapping
            self._commit(SetExtents(dnode.ino, unmap, mapping, new_size, time.time_ns()),
                         _GROW_RUN * (len(mapping) // 4 + 2))
            return n

    def _write_fresh(self: Any, node: "Inode", offset: int, data: bytes,
                     promised: list[tuple[int, int, int, int]], stores: list[tuple[int, int]]
                     ) -> list[tuple[int, int, int, int]]:
        """Write ``data`` at ``offset`` into fresh blocks (the file's bytes around it copied in),
        returning their map pieces for the caller's record: a write that is all-or-nothing."""
        bs = self._bs
        end = offset + len(data)
        f0, f1 = offset // bs, -(-end // bs)
        plan = self._core.plan_blocks(f1 - f0, None, [(p, k) for _f, k, p, _fl in promised])
        targets = self._assign([(f0, f1 - f0)], plan, 0)
        pool = self._pool
        size = node.size
        for f, k, p, _fl in targets:
            for i in range(k):
                fb = f + i
                lo, hi = max(fb * bs, offset), min((fb + 1) * bs, end)
                old = _written_pblk(node, fb)
                if old is not None and (lo > fb * bs or hi < (fb + 1) * bs):
                    block = bytearray(pool.view(self._data_offset + old * bs, bs))
                    if size < (fb + 1) * bs:        # past the old EOF the bytes are stale
                        block[max(0, size - fb * bs):] = bytes(bs - max(0, size - fb * bs))
                else:
                    block = bytearray(bs)
                block[lo - fb * bs:hi - fb * bs] = data[lo - offset:hi - offset]
                pool.write(self._data_offset + (p + i) * bs, block)
            stores.append((self._data_offset + p * bs, k * bs))
        self._prefault(plan)
        return targets

    def _clone_fits(self: Any, snode: "Inode", so: int, dnode: "Inode", do: int, length: int) -> bool:
        """Whether clone's rules allow sharing this range (else it is copied)."""
        bs = self._bs
        if length % bs and do + length < dnode.size:
            return False
        nblk = -(-length // bs)
        if snode is dnode and so // bs < do // bs + nblk and do // bs < so // bs + nblk:
            return False
        return not [r for r in self._references(snode.ino, so // bs, so // bs + nblk) if r.writable]

    def _copy_bytes(self: Any, snode: "Inode", so: int, dnode: "Inode", do: int, n: int) -> None:
        pos = 0
        while pos < n:
            chunk = min(_COPY_CHUNK, n - pos)
            data = self._read_locked(snode.ino, None, chunk, so + pos)
            self._pwrite(dnode.ino, memoryview(data), do + pos)
            pos += chunk

    # ---- the reverse map

    def owners(self: Any, pool_offset: int, length: int = 1) -> list[Owner]:
        """Every (file, offset) whose data lives in pool bytes ``[pool_offset, +length)``."""
        if pool_offset < 0 or length <= 0:
            raise ValueError("owners() needs pool_offset >= 0 and length > 0")
        with self._lock:
            self._check_open()
            bs = self._bs
            start = max(pool_offset, self._data_offset)
            end = min(pool_offset + length, self._data_offset + self._core.data_blocks * bs)
            if start >= end:
                return []
            first = (start - self._data_offset) // bs
            last = -(-(end - self._data_offset) // bs)
            out = []
            found = self._core.rmap.owners(first, last - first)
            paths = self._paths_of({ino for ino, _f, _p, _n in found})
            for ino, fblk, pblk, n in found:
                lo = max(start, self._data_offset + pblk * bs)
                hi = min(end, self._data_offset + (pblk + n) * bs)
                file_offset = fblk * bs + lo - (self._data_offset + pblk * bs)
                out.append(Owner(ino, paths[ino], file_offset, hi - lo, lo))
            out.sort(key=lambda o: (o.pool_offset, o.ino, o.file_offset))
            return out


def _written_pblk(node: "Inode", fblk: int) -> int | None:
    run = node.extents.lookup(fblk)  # type: ignore[union-attr]
    if run is None or run[3] & UNWRITTEN:
        return None
    return run[2] + fblk - run[0]
