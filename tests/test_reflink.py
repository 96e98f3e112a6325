"""Sharing blocks: clone_range, clone_file, dedupe_range, copy_file_range, copy-on-write, owners().

What is checked, and against what:

* **Differential** (seeded random, ``_SEEDS`` x ``_STEPS`` operations): clone_range,
  clone_file, dedupe_range and copy_file_range mixed with pwrite, truncate,
  punch_hole, zero_range, fallocate, create, unlink (also of a file a handle keeps
  open: an orphan that stays a clone source and destination), checkpoints and
  remounts, on four files, against a pure-Python model that copies bytes.  After
  every step: the same outcome (errno or return value), every file's size and
  bytes, ``fsck() == []``, and the block accounting recomputed by brute force from
  every file's ``extents()``: ``statfs().used`` counts each pool block once,
  ``statfs().shared`` counts blocks with two owners or more, ``st_blocks`` is the
  file's own view, the ``"shared"`` flag is set exactly on blocks with two owners.
  Clones must share every written block (the destination's blocks are the source's
  pool blocks), copy_file_range must share whole blocks where both offsets line up,
  and dedupe must share every equal written block pair and never change a byte.  At the end
  of each sequence: close, remount, compare again, fsck.
* **copy_file_range vs Linux**: the same cases through ``os.copy_file_range`` on
  real files in /dev/shm (results, errnos, resulting bytes); a copy that lines up
  and runs to the source's unaligned EOF shares the partial EOF block too.
* **owners()**: after chains of clones, COWs, truncates, punches and unlinks (one
  file kept as an orphan by an open handle), for every extent and for random
  unaligned pool ranges, the set of ``(ino, file_offset, length, pool_offset)``
  equals a brute-force scan of every file's ``extents()`` (byte exact), with the
  current path, or None for the orphan.
* **Space accounting**: used counts shared blocks once, st_blocks counts each
  file's own view, unlinking one of two sharers frees nothing, the last frees all.
* **Copy-on-write**: pwrite, zero_range, fallocate, punch_hole edges, truncate-up
  over a shared tail, write mappings and write pins give the writer private blocks;
  the other owners, and their mappings and pins, never see the change; cloning
  from a range under a live write mapping or write pin is a BusyError.
* **Bad input**: Linux's errno for every case in the table, and nothing changed
  (contents, extents, statfs).
* **No data copy**: on a recording pool a clone stores nothing in the data area,
  and cloning a 512-block file stores as many bytes as cloning a 1-block file.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import daxfs
from daxfs.media import MemoryPool, RecordingPool
from daxfs.volume import Volume

from _small_volume import read_file as _read, write_file as _write

BS = 4096
POOL = 8 << 20
NAMES = ("a", "b", "c", "d")
MAX_BLOCKS = 10

_SEEDS = 24
_STEPS = 400


def _volume(size: int = POOL) -> tuple[MemoryPool, Volume]:
    pool = MemoryPool(size)
    Volume.format(pool)
    return pool, Volume.mount(pool)


def _errno_of(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except OSError as exc:
        assert exc.errno is not None, f"OSError without errno: {exc!r}"
        return "err", exc.errno


# --------------------------------------------------------------------------- brute force


def _blocks(extents: list[daxfs.Extent]) -> list[tuple[int, int, frozenset[str]]]:
    """``(file block, pool offset, flags)`` for every block a file maps."""
    out = []
    for e in extents:
        assert e.length % BS == 0 and e.file_offset % BS == 0, f"extent not in whole blocks: {e}"
        for i in range(e.length // BS):
            out.append((e.file_offset // BS + i, e.pool_offset + i * BS, e.flags))
    return out


def _check_accounting(vol: Volume, files: dict[Any, daxfs.File]) -> None:
    """statfs used/shared, st_blocks and the "shared" flags, recomputed from every file's extents.

    ``files`` must hold an open handle on every inode with data (names and orphans)."""
    per_file = {key: _blocks(f.extents()) for key, f in files.items()}
    refs: Counter[int] = Counter()
    for blocks in per_file.values():
        for _fb, po, _fl in blocks:
            refs[po] += 1
    sfs = vol.statfs()
    assert sfs.busy == 0
    assert sfs.used == BS * len(refs), f"used {sfs.used} != {len(refs)} distinct owned blocks"
    shared = sum(1 for n in refs.values() if n > 1)
    assert sfs.shared == BS * shared, f"shared {sfs.shared} != {shared} blocks with 2+ owners"
    assert sfs.free + sfs.used + sfs.busy + sfs.bad == sfs.size
    for key, blocks in per_file.items():
        st = files[key].stat()
        assert st.st_blocks == len(blocks) * BS // 512, f"{key}: st_blocks {st.st_blocks} vs {len(blocks)} blocks"
        for fb, po, fl in blocks:
            assert ("shared" in fl) == (refs[po] > 1), f"{key} block {fb} at {po}: flags {fl}, {refs[po]} owners"


def _pool_block(extents: list[daxfs.Extent], fblk: int, *, written: bool = True) -> int | None:
    for e in extents:
        if e.file_offset <= fblk * BS < e.file_offset + e.length:
            if written and "unwritten" in e.flags:
                return None
            return e.pool_offset + fblk * BS - e.file_offset
    return None


# --------------------------------------------------------------------------- the model


class Model:
    """Files as bytearrays, by inode; names map to inodes; orphans live while held."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.data: dict[int, bytearray] = {}
        self._next = 0

    def create(self, name: str) -> None:
        if name in self.names:
            self.data[self.names[name]][:] = b""
            return
        self._next += 1
        self.names[name] = self._next
        self.data[self._next] = bytearray()

    @staticmethod
    def put(buf: bytearray, offset: int, data: bytes) -> None:
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset:offset + len(data)] = data

    @staticmethod
    def resize(buf: bytearray, size: int) -> None:
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))


def _overlap_blocks(so: int, do: int, length: int) -> bool:
    nblk = -(-length // BS)
    return so // BS < do // BS + nblk and do // BS < so // BS + nblk


def _expect_clone(src: bytearray, so: int, dst: bytearray, do: int, length: int, same: bool) -> tuple[str, Any]:
    """FICLONERANGE's outcome (the generator never asks for length 0 past the source's EOF)."""
    ssize, dsize = len(src), len(dst)
    if length == 0:
        length = ssize - so
        if length == 0:
            return "ok", 0
    if so + length > ssize:
        return "err", errno.EINVAL
    at_eof = so + length == ssize
    if so % BS or do % BS or (length % BS and not at_eof):
        return "err", errno.EINVAL
    if length % BS and do + length < dsize:
        return "err", errno.EINVAL
    if same and _overlap_blocks(so, do, length):
        return "err", errno.EINVAL
    return "ok", length


def _expect_dedupe(src: bytearray, so: int, dst: bytearray, do: int, length: int, same: bool) -> tuple[str, Any]:
    if so % BS or do % BS:
        return "err", errno.EINVAL
    if so + length > len(src) or do + length > len(dst):
        return "err", errno.EINVAL
    if length == 0:
        return "ok", 0
    if same and _overlap_blocks(so, do, length):
        return "err", errno.EINVAL
    return "ok", None


def _expect_copy(src: bytearray, so: int, dst: bytearray, do: int, length: int, same: bool) -> tuple[str, Any]:
    n = max(0, min(length, len(src) - so))
    if n == 0:
        return "ok", 0
    if same and so < do + n and do < so + n:
        return "err", errno.EINVAL
    return "ok", n


# --------------------------------------------------------------------------- the differential run


class Differential:
    """One seeded sequence: daxfs beside the model, checked after every step."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.pool, self.vol = _volume()
        self.model = Model()
        self.held: list[tuple[daxfs.File, int]] = []     # (r+b handle, model inode)
        self.log: list[str] = []
        self.stats: Counter[str] = Counter()
        self.patterns = [bytes([k]) * BS for k in (0x11, 0x22)]

    # ---- choosing things

    def _size(self, mid: int) -> int:
        return len(self.model.data[mid])

    def _offset(self, size: int) -> int:
        """Mostly block-aligned and inside (or just past) a file of ``size`` bytes."""
        rng = self.rng
        r = rng.random()
        if r < 0.7:
            return rng.randrange(0, size // BS + 2) * BS
        if r < 0.8:
            return size
        return rng.randrange(0, MAX_BLOCKS * BS)

    def _length(self, so: int, ssize: int) -> int:
        rng = self.rng
        r = rng.random()
        if r < 0.45:
            return rng.randrange(1, 5) * BS
        if r < 0.7:
            return ssize - so if so < ssize else BS      # to the source's EOF, maybe unaligned
        if r < 0.8:
            return 0 if so <= ssize else BS
        return rng.randrange(1, 4 * BS)

    def _file(self) -> tuple[str, Any, int | None]:
        """A file argument: ``(description, path-or-File, model inode or None when missing)``."""
        rng = self.rng
        if self.held and rng.random() < 0.3:
            i = rng.randrange(len(self.held))
            f, mid = self.held[i]
            return f"held[{i}]", f, mid
        name = rng.choice(NAMES)
        return repr(name), name, self.model.names.get(name)

    def _data(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            return rng.choice(self.patterns) * rng.randrange(1, 3)    # equal blocks: dedupe finds them
        n = rng.choice([1, 100, BS - 1, BS, BS + 7, rng.randrange(1, 3 * BS)])
        return bytes([rng.randrange(1, 256)]) * n

    # ---- one step

    def step(self) -> None:
        rng = self.rng
        kind = rng.choices(
            ["pwrite", "truncate", "punch", "zero", "fallocate", "create", "unlink", "clone_range",
             "clone_file", "dedupe", "copy", "hold", "release", "checkpoint", "remount"],
            weights=[6, 2, 2, 2, 1, 1.5, 0.7, 8, 2, 4, 4, 1, 1, 0.4, 0.4])[0]
        getattr(self, "_op_" + kind)()
        self.check()

    def _on_file(self, desc: str, target: Any, mid: int | None, call: str,
                 fn: Callable[[daxfs.File], Any], model: Callable[[bytearray], Any]) -> None:
        self.log.append(f"with vol.open({desc}, 'r+b', buffering=0) as f: f.{call}" if isinstance(target, str)
                        else f"{desc}.{call}")
        if mid is None:
            got = _errno_of(lambda: self.vol.open(target, "r+b", buffering=0))
            assert got == ("err", errno.ENOENT), self.fail(f"{call}: expected ENOENT, got {got}")
            return
        if isinstance(target, str):
            with self.vol.open(target, "r+b", buffering=0) as f:
                got = _errno_of(lambda: fn(f))
        else:
            got = _errno_of(lambda: fn(target))
        assert got[0] == "ok", self.fail(f"{call} failed: {got}")
        model(self.model.data[mid])

    def _op_pwrite(self) -> None:
        desc, target, mid = self._file()
        data, off = self._data(), self._offset(self._size(mid) if mid else 0)
        if self.rng.random() < 0.5:
            data, off = self.rng.choice(self.patterns), off // BS * BS    # a whole block others may equal
        self._on_file(desc, target, mid, f"pwrite({data[:1]!r} * {len(data)}, {off})",
                      lambda f: f.pwrite(data, off), lambda b: Model.put(b, off, data))

    def _op_truncate(self) -> None:
        desc, target, mid = self._file()
        size = self.rng.choice([0, self.rng.randrange(0, MAX_BLOCKS * BS), self.rng.randrange(0, MAX_BLOCKS) * BS])
        self._on_file(desc, target, mid, f"truncate({size})", lambda f: f.truncate(size),
                      lambda b: Model.resize(b, size))

    def _op_punch(self) -> None:
        desc, target, mid = self._file()
        off, n = self._offset(self._size(mid) if mid else 0), self.rng.randrange(1, 3 * BS)

        def model(b: bytearray) -> None:
            end = min(off + n, len(b))
            if end > off:
                b[off:end] = bytes(end - off)
        self._on_file(desc, target, mid, f"punch_hole({off}, {n})", lambda f: f.punch_hole(off, n), model)

    def _op_zero(self) -> None:
        desc, target, mid = self._file()
        off, n, keep = self._offset(self._size(mid) if mid else 0), self.rng.randrange(1, 3 * BS), \
            self.rng.random() < 0.5

        def model(b: bytearray) -> None:
            end = off + n if not keep else min(off + n, len(b))
            if end > off:
                Model.put(b, off, bytes(end - off))
        self._on_file(desc, target, mid, f"zero_range({off}, {n}, keep_size={keep})",
                      lambda f: f.zero_range(off, n, keep_size=keep), model)

    def _op_fallocate(self) -> None:
        desc, target, mid = self._file()
        off, n, keep = self._offset(self._size(mid) if mid else 0), self.rng.randrange(1, 3 * BS), \
            self.rng.random() < 0.5

        def model(b: bytearray) -> None:
            if not keep and off + n > len(b):
                Model.resize(b, off + n)
        self._on_file(desc, target, mid, f"fallocate({off}, {n}, keep_size={keep})",
                      lambda f: f.fallocate(off, n, keep_size=keep), model)

    def _op_create(self) -> None:
        """Create (or truncate) a name and fill it with 0..MAX_BLOCKS blocks of block patterns."""
        rng = self.rng
        name = rng.choice(NAMES)
        data = b"".join(rng.choice(self.patterns) for _ in range(rng.randrange(0, MAX_BLOCKS)))
        if data and rng.random() < 0.5:
            data = data[:-rng.randrange(1, BS)]           # an unaligned EOF
        self.log.append(f"with vol.open({name!r}, 'wb', buffering=0) as f: f.write(<{len(data)} bytes of patterns>)")
        with self.vol.open(name, "wb", buffering=0) as f:
            f.write(data)
        self.model.create(name)
        self.model.data[self.model.names[name]][:] = data

    def _op_unlink(self) -> None:
        name = self.rng.choice(NAMES)
        self.log.append(f"vol.unlink({name!r})")
        got = _errno_of(lambda: self.vol.unlink(name))
        if name in self.model.names:
            assert got == ("ok", None), self.fail(f"unlink: {got}")
            mid = self.model.names.pop(name)
            if not any(m == mid for _f, m in self.held):
                del self.model.data[mid]
        else:
            assert got == ("err", errno.ENOENT), self.fail(f"unlink of a missing name: {got}")

    def _op_hold(self) -> None:
        if len(self.held) >= 2 or not self.model.names:
            return
        name = self.rng.choice(sorted(self.model.names))
        self.log.append(f"held.append(vol.open({name!r}, 'r+b', buffering=0))")
        self.held.append((self.vol.open(name, "r+b", buffering=0), self.model.names[name]))

    def _op_release(self) -> None:
        if not self.held:
            return
        i = self.rng.randrange(len(self.held))
        self.log.append(f"held.pop({i}).close()")
        f, mid = self.held.pop(i)
        f.close()
        if mid not in self.model.names.values() and not any(m == mid for _f, m in self.held):
            del self.model.data[mid]

    def _op_checkpoint(self) -> None:
        self.log.append("vol.checkpoint()")
        self.vol.checkpoint()

    def _op_remount(self) -> None:
        """Close (checkpoint) and mount again, or mount a copy of the live image (log replay)."""
        for f, _mid in self.held:
            f.close()
        self.held.clear()
        live = set(self.model.names.values())
        for mid in list(self.model.data):
            if mid not in live:
                del self.model.data[mid]
        if self.rng.random() < 0.5:
            self.log.append("vol.close(); vol = Volume.mount(pool)")
            self.vol.close()
            self.vol = Volume.mount(self.pool)
        else:
            self.log.append("vol = Volume.mount(MemoryPool(pool.image()))  # replay the log")
            image = self.pool.image()
            self.vol.close()
            self.pool = MemoryPool(image)
            self.vol = Volume.mount(self.pool)

    def _sharing(self, kind: str) -> None:
        rng = self.rng
        sdesc, src, smid = self._file()
        ddesc, dst, dmid = self._file()
        ssize = self._size(smid) if smid else 0
        so = self._offset(ssize)
        length = self._length(so, ssize)
        do = self._offset(self._size(dmid) if dmid else 0)
        dsize = self._size(dmid) if dmid else 0
        if kind == "dedupe" and smid and dmid and rng.random() < 0.7:
            # aim inside both files, so that equal blocks get compared
            so = rng.randrange(0, max(1, ssize // BS + 1)) * BS
            do = rng.randrange(0, max(1, dsize // BS + 1)) * BS
            length = max(0, min(ssize - so, dsize - do, rng.randrange(1, 5) * BS))
            if rng.random() < 0.3 and ssize - so == dsize - do:
                length = ssize - so                      # both at EOF: the partial block counts
        elif kind != "dedupe" and smid and dmid and ssize and rng.random() < 0.6:
            # a valid clone: aligned, inside the source, an unaligned end only at both EOFs
            so = rng.randrange(0, -(-ssize // BS)) * BS
            length = rng.choice([min(rng.randrange(1, 4) * BS, ssize - so), ssize - so, 0])
            n = length or ssize - so
            lo = max(0, dsize - n) if n % BS else 0
            do = rng.randrange(-(-lo // BS), max(MAX_BLOCKS, -(-lo // BS)) + 1) * BS
        call = {"clone": "clone_range", "dedupe": "dedupe_range", "copy": "copy_file_range"}[kind]
        self.log.append(f"vol.{call}({sdesc}, {so}, {ddesc}, {do}, {length})")
        vol = self.vol
        fn = getattr(vol, call)
        if smid is None or dmid is None:
            got = _errno_of(lambda: fn(src, so, dst, do, length))
            assert got == ("err", errno.ENOENT), self.fail(f"{call} with a missing file: {got}")
            return
        sbuf, dbuf = self.model.data[smid], self.model.data[dmid]
        same = smid == dmid
        expect = {"clone": _expect_clone, "dedupe": _expect_dedupe, "copy": _expect_copy}[kind](
            sbuf, so, dbuf, do, length, same)
        s_ext = self._extents(src)
        d_ext = self._extents(dst)
        got = _errno_of(lambda: fn(src, so, dst, do, length))
        self.stats[f"{call}:{got[0]}" + (":nonzero" if got[0] == "ok" and got[1] else "")] += 1
        if expect[0] == "err" or got[0] == "err":
            assert got == expect, self.fail(f"{call}: expected {expect}, got {got}")
            return
        if kind == "dedupe":
            self._check_dedupe(got[1], src, so, dst, do, length, sbuf, dbuf, s_ext, d_ext)
            return
        assert got == expect, self.fail(f"{call}: expected {expect}, got {got}")
        n = got[1]
        if n == 0:
            return
        piece = bytes(sbuf[so:so + n])
        Model.put(dbuf, do, piece)
        # the source's blocks as they are now (a clone may first COW a shared last block of
        # the destination, which is the source's when both are one file)
        s_ext = self._extents(src)
        if kind == "clone":
            after = self._extents(dst)
            for i in range(-(-n // BS)):
                # written blocks are shared (preallocated, unwritten ones need not be: they hold
                # no data, and the bytes check above covers what they read)
                want = _pool_block(s_ext, so // BS + i)
                if want is not None:
                    assert _pool_block(after, do // BS + i) == want, self.fail(
                        f"clone did not share source block {so // BS + i} as destination block {do // BS + i}")
        else:
            self._check_copy_shares(src, so, dst, do, n, len(sbuf), s_ext)

    def _extents(self, arg: Any) -> list[daxfs.Extent]:
        if isinstance(arg, str):
            with self.vol.open(arg, "rb", buffering=0) as f:
                return f.extents()
        return arg.extents()

    def _check_copy_shares(self, src: Any, so: int, dst: Any, do: int, n: int, ssize: int,
                           s_ext: list[daxfs.Extent]) -> None:
        """Whole blocks where both offsets line up are shared, not copied."""
        if so % BS != do % BS:
            return
        head = (-so) % BS
        if n <= head:
            return
        middle = (n - head) // BS * BS
        after = self._extents(dst)
        for i in range(middle // BS):
            sb = (so + head) // BS + i
            want = _pool_block(s_ext, sb)
            if want is None:
                continue
            got = _pool_block(after, (do + head) // BS + i)
            assert got == want, self.fail(f"copy_file_range copied aligned source block {sb} instead of sharing it")

    def _check_dedupe(self, got: int, src: Any, so: int, dst: Any, do: int, length: int,
                      sbuf: bytearray, dbuf: bytearray, s_ext: list[daxfs.Extent], d_ext: list[daxfs.Extent]
                      ) -> None:
        """Contents unchanged; equal written blocks now shared; the count between what became
        shared and what is shared."""
        s_after, d_after = self._extents(src), self._extents(dst)
        newly = 0
        now_shared = 0
        for i in range(-(-length // BS)):
            n = min(BS, length - i * BS)
            sb, db = so // BS + i, do // BS + i
            ps, pd = _pool_block(s_ext, sb), _pool_block(d_ext, db)
            ps2, pd2 = _pool_block(s_after, sb), _pool_block(d_after, db)
            equal = sbuf[sb * BS:sb * BS + n] == dbuf[db * BS:db * BS + n]
            full = n == BS or (so + length == len(sbuf) and do + length == len(dbuf))
            if ps is not None and pd is not None and equal and full:
                assert pd2 == ps2, self.fail(f"dedupe left equal blocks {sb} / {db} unshared")
            if pd2 is not None and pd2 == ps2:
                now_shared += n
                if pd != ps:
                    assert equal, self.fail(f"dedupe shared blocks {sb} / {db} whose bytes differ")
                    newly += n
        assert newly <= got <= now_shared, self.fail(
            f"dedupe returned {got}: {newly} bytes became shared, {now_shared} are shared")

    def _op_clone_range(self) -> None:
        self._sharing("clone")

    def _op_dedupe(self) -> None:
        self._sharing("dedupe")

    def _op_copy(self) -> None:
        self._sharing("copy")

    def _op_clone_file(self) -> None:
        src, dst = self.rng.choice(NAMES), self.rng.choice(NAMES)
        if src == dst:
            return          # clone_file onto itself: see test_bad_input_changes_nothing
        self.log.append(f"vol.clone_file({src!r}, {dst!r})")
        got = _errno_of(lambda: self.vol.clone_file(src, dst))
        if src not in self.model.names:
            assert got == ("err", errno.ENOENT), self.fail(f"clone_file of a missing source: {got}")
            return
        assert got[0] == "ok", self.fail(f"clone_file: {got}")
        self.model.create(dst)
        self.model.data[self.model.names[dst]][:] = self.model.data[self.model.names[src]]
        nblk = -(-len(self.model.data[self.model.names[src]]) // BS)
        with self.vol.open(src, "rb", buffering=0) as s, self.vol.open(dst, "rb", buffering=0) as d:
            # every written block inside the source's size is shared (preallocation need not be)
            want = [(fb, po) for fb, po, fl in _blocks(s.extents()) if fb < nblk and "unwritten" not in fl]
            got = [(fb, po) for fb, po, fl in _blocks(d.extents()) if "unwritten" not in fl]
            assert got == want, self.fail("clone_file did not share")

    # ---- checks

    def fail(self, what: str) -> str:
        tail = "\n    ".join(self.log[-25:])
        return f"seed {self.seed}, step {len(self.log)}: {what}\n  last steps:\n    {tail}"

    def check(self) -> None:
        vol, model = self.vol, self.model
        assert sorted(vol.listdir("/")) == sorted(model.names), self.fail("names differ")
        files: dict[Any, daxfs.File] = {}
        try:
            for name, mid in model.names.items():
                f = files[name] = vol.open(name, "rb", buffering=0)
                data = f.read()
                if data != bytes(model.data[mid]):
                    first = next((i for i, (x, y) in enumerate(zip(data, model.data[mid])) if x != y),
                                 min(len(data), len(model.data[mid])))
                    raise AssertionError(self.fail(
                        f"{name}: {len(data)} bytes, model {len(model.data[mid])}; first difference at {first}"))
            for i, (f, mid) in enumerate(self.held):
                assert f.stat().st_size == len(model.data[mid]), self.fail(f"held[{i}] size")
                assert f.pread(len(model.data[mid]) + 1, 0) == bytes(model.data[mid]), self.fail(f"held[{i}] bytes")
                if mid not in model.names.values():
                    files[f"orphan{mid}"] = f          # one handle per orphan inode
            problems = vol.fsck()
            assert problems == [], self.fail(f"fsck: {problems}")
            _check_accounting(vol, files)
        finally:
            for key, f in files.items():
                if isinstance(key, str) and not key.startswith("orphan"):
                    f.close()

    def finish(self) -> None:
        self._op_remount()
        self.check()
        self.vol.close()


@pytest.mark.parametrize("seed", range(_SEEDS))
def test_differential_against_a_copying_model(seed: int) -> None:
    run = Differential(seed)
    for name in NAMES:
        run._op_create()
    for _ in range(_STEPS):
        run.step()
    run.finish()
    assert run.stats["clone_range:ok:nonzero"] >= 5 and run.stats["copy_file_range:ok:nonzero"] >= 3, run.stats


# --------------------------------------------------------------------------- copy_file_range vs Linux


def _distinct(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


_S_SIZE, _T_SIZE = 3 * BS + 100, 2 * BS + 7
_HOST_FLAGS = {"rb": os.O_RDONLY, "r+b": os.O_RDWR, "ab": os.O_WRONLY | os.O_APPEND,
               "a+b": os.O_RDWR | os.O_APPEND}

# (src, src_offset, dst, dst_offset, length, src mode, dst mode)
_CFR_CASES = [
    ("s", 0, "t", 0, _S_SIZE, "rb", "r+b"),                 # whole file over a shorter one
    ("s", 0, "t", 0, 2 * BS, "rb", "r+b"),                  # aligned: shared
    ("s", 100, "t", 100, 2 * BS, "rb", "r+b"),              # same offset in block: head + middle + tail
    ("s", 100, "t", 0, 2 * BS, "rb", "r+b"),                # different offsets in block: copied
    ("s", BS, "t", 3 * BS, 10 * BS, "rb", "r+b"),           # clamped at source EOF, dst grows
    ("s", 2 * BS, "t", 2 * BS, 5 * BS, "r+b", "r+b"),       # unaligned EOF onto dst's EOF block
    ("s", 0, "t", 6 * BS, BS, "rb", "r+b"),                 # past dst EOF: a hole before
    ("s", 10 * BS, "t", 0, BS, "rb", "r+b"),                # source offset past EOF: 0
    ("s", _S_SIZE, "t", 0, BS, "rb", "r+b"),                # source offset at EOF: 0
    ("s", 0, "t", 0, 0, "rb", "r+b"),                       # length 0
    ("s", 0, "s", 2 * BS, BS, "r+b", "r+b"),                # same file, apart
    ("s", 0, "s", BS, 2 * BS, "r+b", "r+b"),                # same file, overlapping: EINVAL
    ("s", 3 * BS, "s", 3 * BS - 50, BS, "r+b", "r+b"),      # overlapping after clamping: EINVAL
    ("s", 0, "s", BS, BS, "r+b", "r+b"),                    # same file, adjacent
    ("s", 0, "t", 0, BS, "rb", "rb"),                       # read-only destination: EBADF
    ("s", 0, "t", 0, BS, "ab", "r+b"),                      # write-only source: EBADF
    ("s", 0, "t", 0, BS, "rb", "ab"),                       # append-only destination: EBADF
    ("s", 0, "t", 0, BS, "rb", "a+b"),                      # O_APPEND destination: EBADF
    ("dir", 0, "t", 0, BS, "rb", "r+b"),                    # a directory: EISDIR
]


@pytest.fixture(scope="module")
def host_dir() -> Any:
    path = f"/dev/shm/daxfs-test-reflink-{uuid.uuid4().hex}"
    os.mkdir(path)
    os.mkdir(os.path.join(path, "dir"))
    yield path
    shutil.rmtree(path)


@pytest.mark.parametrize("case", _CFR_CASES, ids=lambda c: "-".join(map(str, c)))
def test_copy_file_range_matches_linux(case: tuple, host_dir: str) -> None:
    src, so, dst, do, length, smode, dmode = case
    initial = {"s": _distinct(1, _S_SIZE), "t": _distinct(2, _T_SIZE)}
    _pool, vol = _volume()
    vol.mkdir("dir")
    for name, data in initial.items():
        _write(vol, name, data)
        with open(os.path.join(host_dir, name), "wb") as f:
            f.write(data)

    fds = [os.open(os.path.join(host_dir, src), _HOST_FLAGS[smode]),
           os.open(os.path.join(host_dir, dst), _HOST_FLAGS[dmode])]
    try:
        want = _errno_of(lambda: os.copy_file_range(fds[0], fds[1], length, so, do))
    finally:
        for fd in fds:
            os.close(fd)
    s_arg: Any = src if src == "dir" else vol.open(src, smode)
    d_arg = vol.open(dst, dmode)
    try:
        got = _errno_of(lambda: vol.copy_file_range(s_arg, so, d_arg, do, length))
    finally:
        d_arg.close()
        if not isinstance(s_arg, str):
            s_arg.close()
    assert got == want, f"copy_file_range{case}: daxfs {got}, Linux {want}"
    for name in initial:
        with open(os.path.join(host_dir, name), "rb") as f:
            assert _read(vol, name) == f.read(), f"{name} differs after copy_file_range{case}"
    assert vol.fsck() == []
    if got[0] == "ok" and got[1] and so % BS == do % BS and src != dst:
        # whole blocks inside the copied range that line up are shared, not copied
        with vol.open(src, "rb", buffering=0) as s, vol.open(dst, "rb", buffering=0) as t:
            s_ext, t_ext = s.extents(), t.extents()
        head = (-so) % BS
        for i in range(max(0, got[1] - head) // BS):
            assert _pool_block(t_ext, (do + head) // BS + i) == _pool_block(s_ext, (so + head) // BS + i)
    vol.close()


def test_copy_file_range_shares_the_source_eof_block() -> None:
    """A copy that lines up and runs to the source's unaligned EOF (and past the destination's)
    is a clone of every block, the partial last one too, as FICLONERANGE allows."""
    _pool, vol = _volume()
    data = _distinct(9, 2 * BS + 100)
    _write(vol, "a", data)
    vol.open("b", "wb", buffering=0).close()
    free = vol.statfs().free
    assert vol.copy_file_range("a", 0, "b", 0, len(data)) == len(data)
    assert _read(vol, "b") == data
    a_blocks = [b[:2] for b in _blocks(_extents_of(vol, "a"))]
    assert [b[:2] for b in _blocks(_extents_of(vol, "b"))] == a_blocks, "the EOF block was copied, not shared"
    assert vol.statfs().free == free
    vol.close()


# --------------------------------------------------------------------------- owners()


def _canon(items: list[tuple[int, str | None, int, int, int]]) -> list[tuple[int, str | None, int, int, int]]:
    """Merge pieces of one owner that continue each other in the pool and in the file."""
    out: list[tuple[int, str | None, int, int, int]] = []
    for ino, path, fo, n, po in sorted(items, key=lambda t: (t[0], t[4], t[2])):
        if out:
            pino, ppath, pfo, pn, ppo = out[-1]
            if pino == ino and ppo + pn == po and pfo + pn == fo:
                out[-1] = (pino, ppath, pfo, pn + n, ppo)
                continue
        out.append((ino, path, fo, n, po))
    return sorted(out, key=lambda t: (t[4], t[0], t[2]))


def _brute_owners(files: dict[int, tuple[str | None, daxfs.File]], lo: int, hi: int
                  ) -> list[tuple[int, str | None, int, int, int]]:
    out = []
    for ino, (path, f) in files.items():
        for e in f.extents():
            a, b = max(lo, e.pool_offset), min(hi, e.pool_offset + e.length)
            if a < b:
                out.append((ino, path, e.file_offset + a - e.pool_offset, b - a, a))
    return _canon(out)


def _check_owners(vol: Volume, files: dict[int, tuple[str | None, daxfs.File]], rng: random.Random) -> None:
    assert vol.fsck() == []
    data_offset = vol.info()["data_offset"]
    data_end = data_offset + vol.statfs().size
    ranges = [(data_offset, data_end), (0, data_offset)]
    for _ino, (_path, f) in files.items():
        for e in f.extents():
            ranges.append((e.pool_offset, e.pool_offset + e.length))
            ranges.append((e.pool_offset + 1, e.pool_offset + e.length - 1))
    used = [e.pool_offset for _p, f in files.values() for e in f.extents()]
    for _ in range(40):
        start = rng.choice(used) + rng.randrange(-2 * BS, 2 * BS) if used and rng.random() < 0.8 else \
            rng.randrange(data_offset - BS, data_end)
        ranges.append((max(0, start), max(0, start) + rng.randrange(1, 5 * BS)))
    for lo, hi in ranges:
        got = _canon([(o.ino, o.path, o.file_offset, o.length, o.pool_offset) for o in vol.owners(lo, hi - lo)])
        assert got == _brute_owners(files, lo, hi), f"owners({lo}, {hi - lo})"
    assert vol.owners(0, data_offset) == []
    assert vol.owners(data_end, BS) == []


def test_owners_match_a_brute_force_scan_of_extents() -> None:
    """Chains of clones, COWs, truncates and unlinks; an orphan kept by a handle has path None."""
    rng = random.Random(7)
    _pool, vol = _volume()
    vol.mkdir("d")
    _write(vol, "a", _distinct(1, 6 * BS + 300))
    _write(vol, "d/x", _distinct(2, 2 * BS))
    handles: dict[str, daxfs.File] = {}

    def files() -> dict[int, tuple[str | None, daxfs.File]]:
        """Every inode with its current path (None once unlinked), through a handle on it."""
        for name in ("a", "b", "c", "d/x"):
            if vol.exists(name) and name not in handles:
                handles[name] = vol.open(name, "r+b", buffering=0)
        out = {}
        for key, f in handles.items():
            named = key != "orphan" and vol.exists(key) and vol.stat(key).st_ino == f.ino
            out[f.ino] = ("/" + key if named else None, f)
        return out

    steps: list[Callable[[], object]] = [
        lambda: vol.clone_file("a", "b"),
        lambda: vol.clone_range("a", 0, "a", 8 * BS, 2 * BS),          # a shares with itself
        lambda: vol.clone_range("b", BS, "d/x", 0, 3 * BS),
        lambda: handles["b"].pwrite(b"w" * 10, 2 * BS + 10),            # COW one block of b
        lambda: handles["a"].zero_range(BS, BS),                        # COW a whole block of a
        lambda: handles["d/x"].punch_hole(BS + 100, 200),               # COW a punched edge
        lambda: handles["b"].truncate(3 * BS + 5),                      # drop shared blocks
        lambda: handles["b"].truncate(5 * BS),                          # COW of b's shared tail
        lambda: vol.clone_range("a", 0, "c", 0, 0) if vol.exists("c") else vol.clone_file("a", "c"),
        lambda: (handles.__setitem__("orphan", handles.pop("a")), vol.unlink("a")),   # a: an orphan now
        lambda: vol.clone_range(handles["orphan"], 8 * BS, handles["c"], 0, 2 * BS),
        lambda: handles["orphan"].pwrite(b"o" * BS, 0),                 # COW inside the orphan
        lambda: vol.dedupe_range("c", 0, "b", 2 * BS, BS),
        lambda: vol.copy_file_range("b", 0, "d/x", 0, 3 * BS),
        lambda: vol.unlink("d/x"),
        lambda: handles.pop("d/x").close(),
        lambda: handles.pop("orphan").close(),                          # the orphan goes
        lambda: handles["c"].truncate(BS + 1),
    ]
    _check_owners(vol, files(), rng)
    for step in steps:
        step()
        _check_owners(vol, files(), rng)
    orphan_paths = [o.path for o in vol.owners(0, 1 << 40) if o.path is None]
    assert orphan_paths == []
    for f in handles.values():
        f.close()
    vol.close()


def test_owners_report_an_orphan_with_path_none() -> None:
    _pool, vol = _volume()
    _write(vol, "a", _distinct(3, 2 * BS))
    vol.clone_file("a", "b")
    held = vol.open("a", "rb", buffering=0)
    ino_a, ino_b = held.ino, vol.stat("b").st_ino
    vol.unlink("a")
    po = held.extents()[0].pool_offset
    owners = vol.owners(po, 2 * BS)
    assert sorted((o.ino, o.path, o.file_offset, o.length, o.pool_offset) for o in owners) == sorted(
        [(ino_a, None, 0, 2 * BS, po), (ino_b, "/b", 0, 2 * BS, po)])
    assert sorted(vol.owners(po + BS + 5), key=lambda o: o.ino) == sorted(
        [daxfs.Owner(ino_a, None, BS + 5, 1, po + BS + 5), daxfs.Owner(ino_b, "/b", BS + 5, 1, po + BS + 5)],
        key=lambda o: o.ino)
    assert vol.fsck() == []
    held.close()
    assert [o.ino for o in vol.owners(po, 2 * BS)] == [ino_b]
    vol.close()


# --------------------------------------------------------------------------- space accounting


def test_space_accounting_counts_shared_blocks_once() -> None:
    _pool, vol = _volume()
    empty = vol.statfs()
    _write(vol, "a", _distinct(4, 8 * BS))
    one = vol.statfs()
    assert one.used - empty.used == 8 * BS and one.shared == 0

    vol.clone_file("a", "b")
    two = vol.statfs()
    assert (two.free, two.used, two.shared) == (one.free, one.used, 8 * BS)
    assert vol.stat("a").st_blocks == vol.stat("b").st_blocks == 8 * BS // 512

    vol.clone_range("a", 0, "a", 8 * BS, 4 * BS)            # a maps 4 blocks twice
    three = vol.statfs()
    assert (three.free, three.used, three.shared) == (one.free, one.used, 8 * BS)
    assert vol.stat("a").st_blocks == 12 * BS // 512         # a's own view: 12 blocks
    assert vol.stat("b").st_blocks == 8 * BS // 512

    with vol.open("b", "r+b", buffering=0) as f:
        f.pwrite(b"x", 5 * BS + 1)                            # COW one block of b
    four = vol.statfs()
    assert four.free == one.free - BS and four.shared == 7 * BS
    assert vol.stat("b").st_blocks == 8 * BS // 512

    vol.unlink("a")                                           # 7 blocks still b's, 1 block was a's alone
    five = vol.statfs()
    assert five.free == four.free + BS and five.shared == 0
    assert not any("shared" in e.flags for e in _extents_of(vol, "b"))

    vol.clone_file("b", "c")
    vol.unlink("b")                                           # one of two sharers: frees nothing
    six = vol.statfs()
    assert (six.free, six.used, six.shared) == (five.free, five.used, 0)
    held = vol.open("c", "rb", buffering=0)
    vol.unlink("c")                                           # the last name, but held open
    assert vol.statfs().free == six.free
    held.close()                                              # the last owner: all comes back
    assert vol.statfs().free == empty.free and vol.statfs().used == empty.used
    assert vol.fsck() == []
    vol.close()


def _extents_of(vol: Volume, path: str) -> list[daxfs.Extent]:
    with vol.open(path, "rb", buffering=0) as f:
        return f.extents()


def test_clone_shares_blocks_and_reports_them() -> None:
    _pool, vol = _volume()
    data = _distinct(5, 5 * BS + 123)
    _write(vol, "a", data)
    before = vol.statfs()
    vol.open("b", "wb", buffering=0).close()
    assert vol.clone_range("a", 0, "b", 0, 0) == len(data)
    after = vol.statfs()
    assert after.free == before.free and after.used == before.used
    assert after.shared == 6 * BS
    ea, eb = _extents_of(vol, "a"), _extents_of(vol, "b")
    assert [e[:3] for e in ea] == [e[:3] for e in eb]
    assert all("shared" in e.flags for e in ea + eb)
    assert _read(vol, "b") == data and vol.stat("b").st_size == len(data)
    owners = vol.owners(ea[0].pool_offset, BS)
    assert sorted(o.path for o in owners) == ["/a", "/b"]
    vol.close()


def test_a_clone_copies_no_data_and_costs_the_same_for_any_length() -> None:
    """On a recording pool: no store lands in the data area, and the metadata written for a
    512-block file is the same as for a 1-block file (O(extents), not O(blocks))."""
    def clone_cost(nblocks: int) -> tuple[int, int]:
        pool = RecordingPool(POOL)
        pool.recording = False
        Volume.format(pool)
        pool.recording = True
        vol = Volume.mount(pool)
        data_offset = vol.info()["data_offset"]
        _write(vol, "a", bytes([7]) * (nblocks * BS))
        vol.open("b", "wb", buffering=0).close()
        free = vol.statfs().free
        start = pool.mark()
        vol.clone_range("a", 0, "b", 0, 0)
        stores = [(off, len(payload)) for kind, off, payload in pool.events[start:] if kind == "store"]
        assert vol.statfs().free == free
        in_data = sum(n for off, n in stores if off + n > data_offset)
        vol.close()
        return in_data, sum(n for _off, n in stores)

    small_data, small_total = clone_cost(1)
    big_data, big_total = clone_cost(512)
    assert small_data == big_data == 0, "a clone stored bytes in the data area"
    assert big_total <= small_total + 16, f"cloning 512 blocks stored {big_total} bytes, 1 block {small_total}"


# --------------------------------------------------------------------------- copy on write

_A_SIZE = 4 * BS + 1000


def _cow_pwrite(f: daxfs.File, m: bytearray) -> None:
    f.pwrite(b"W" * 100, BS + 50)
    Model.put(m, BS + 50, b"W" * 100)


def _cow_pwrite_span(f: daxfs.File, m: bytearray) -> None:
    f.pwrite(b"S" * (2 * BS), BS + 7)
    Model.put(m, BS + 7, b"S" * (2 * BS))


def _cow_zero(f: daxfs.File, m: bytearray) -> None:
    f.zero_range(100, 2 * BS)
    Model.put(m, 100, bytes(2 * BS))


def _cow_zero_whole(f: daxfs.File, m: bytearray) -> None:
    f.zero_range(BS, 2 * BS)
    Model.put(m, BS, bytes(2 * BS))


def _cow_zero_extend(f: daxfs.File, m: bytearray) -> None:
    f.zero_range(3 * BS, 3 * BS)
    Model.put(m, 3 * BS, bytes(3 * BS))


def _cow_fallocate(f: daxfs.File, m: bytearray) -> None:
    f.fallocate(0, 6 * BS)
    Model.resize(m, 6 * BS)


def _cow_punch_edges(f: daxfs.File, m: bytearray) -> None:
    f.punch_hole(BS - 10, BS + 30)
    Model.put(m, BS - 10, bytes(BS + 30))


def _cow_punch_whole(f: daxfs.File, m: bytearray) -> None:
    f.punch_hole(BS, BS)
    Model.put(m, BS, bytes(BS))


def _shrink(f: daxfs.File, m: bytearray) -> None:
    f.truncate(2 * BS + 10)          # block 2 stays shared, with the other file's bytes past EOF
    Model.resize(m, 2 * BS + 10)


def _cow_truncate_up(f: daxfs.File, m: bytearray) -> None:
    _shrink(f, m)
    f.truncate(3 * BS)
    Model.resize(m, 3 * BS)


def _cow_write_past_tail(f: daxfs.File, m: bytearray) -> None:
    _shrink(f, m)
    f.pwrite(b"P", 3 * BS + 5)
    Model.put(m, 3 * BS + 5, b"P")


def _cow_fallocate_past_tail(f: daxfs.File, m: bytearray) -> None:
    _shrink(f, m)
    f.fallocate(2 * BS + 20, BS)
    Model.resize(m, 3 * BS + 20)


def _cow_zero_past_tail(f: daxfs.File, m: bytearray) -> None:
    _shrink(f, m)
    f.zero_range(3 * BS, 10)
    Model.resize(m, 3 * BS + 10)


def _cow_clone_past_tail(f: daxfs.File, m: bytearray) -> None:
    _shrink(f, m)
    f._vol.clone_range("other", 0, f, 4 * BS, BS)
    Model.put(m, 4 * BS, _distinct(99, BS))


def _cow_copy_past_tail(f: daxfs.File, m: bytearray) -> None:
    _shrink(f, m)
    f._vol.copy_file_range("other", 5, f, 3 * BS, 10)
    Model.put(m, 3 * BS, _distinct(99, BS)[5:15])


def _cow_write_map(f: daxfs.File, m: bytearray) -> None:
    with f.map(BS, 2 * BS, write=True) as mp:
        mp.buffer[10:20] = b"M" * 10
        mp.buffer[BS:BS + 5] = b"N" * 5
        mp.persist()
    Model.put(m, BS + 10, b"M" * 10)
    Model.put(m, 2 * BS, b"N" * 5)


def _cow_write_map_past_tail(f: daxfs.File, m: bytearray) -> None:
    _shrink(f, m)
    with f.map(0, 4 * BS, write=True) as mp:
        mp.buffer[3 * BS] = 0x55
        mp.persist()
    Model.resize(m, 4 * BS)
    m[3 * BS] = 0x55


def _cow_write_pin(f: daxfs.File, m: bytearray) -> None:
    with f.pin(2 * BS, BS, write=True) as p:
        p.buffer[0:3] = b"PIN"
    Model.put(m, 2 * BS, b"PIN")


_COW_OPS = [_cow_pwrite, _cow_pwrite_span, _cow_zero, _cow_zero_whole, _cow_zero_extend, _cow_fallocate,
            _cow_punch_edges, _cow_punch_whole, _cow_truncate_up, _cow_write_past_tail,
            _cow_fallocate_past_tail, _cow_zero_past_tail, _cow_clone_past_tail, _cow_copy_past_tail,
            _cow_write_map, _cow_write_map_past_tail, _cow_write_pin]


@pytest.mark.parametrize("op", _COW_OPS, ids=lambda fn: fn.__name__[1:])
@pytest.mark.parametrize("writer", ["clone", "source"])
def test_copy_on_write_leaves_other_owners_alone(op: Callable[[daxfs.File, bytearray], None], writer: str) -> None:
    """``a`` and ``b`` share every block; one of them changes; the other reads, maps and pins
    exactly what it had, and its blocks stay where they were."""
    _pool, vol = _volume()
    data = _distinct(11, _A_SIZE)
    _write(vol, "a", data)
    _write(vol, "other", _distinct(99, BS))
    vol.clone_file("a", "b")
    name, bystander = ("b", "a") if writer == "clone" else ("a", "b")
    keep = vol.open(bystander, "rb", buffering=0)
    ext_before = keep.extents()
    view = keep.map(0, _A_SIZE)
    pin = keep.pin(BS, 2 * BS)
    pin_segments = pin.segments
    model = bytearray(data)
    with vol.open(name, "r+b", buffering=0) as f:
        op(f, model)
        after = f.extents()
        assert f.pread(len(model) + 1, 0) == bytes(model)
    assert keep.pread(_A_SIZE + 1, 0) == data, f"{bystander} saw {name}'s change"
    assert [b[:2] for b in _blocks(keep.extents())] == [b[:2] for b in _blocks(ext_before)], \
        f"{bystander}'s blocks moved"
    assert bytes(view.buffer) == data, f"{bystander}'s mapping saw {name}'s change"
    assert bytes(pin.buffer) == data[BS:3 * BS] and pin.segments == pin_segments
    # nothing the writer changed is still shared with the bystander
    mine = {po for _fb, po, _fl in _blocks(ext_before)}
    changed = [i for i in range(-(-max(len(model), _A_SIZE) // BS))
               if model[i * BS:(i + 1) * BS] != data[i * BS:(i + 1) * BS]]
    for fb, po, _fl in _blocks(after):
        assert not (fb in changed and po in mine), f"{name} changed block {fb} in place, in shared block {po}"
    sfs = vol.statfs()
    assert sfs.busy == 0
    files = {bystander: keep}
    with vol.open(name, "rb", buffering=0) as f, vol.open("other", "rb", buffering=0) as o:
        files[name] = f
        files["other"] = o
        _check_accounting(vol, files)
    assert vol.fsck() == []
    view.close()
    pin.release()
    keep.close()
    vol.close()


def test_a_pinned_shared_block_outlives_every_other_owner() -> None:
    _pool, vol = _volume()
    data = _distinct(12, 3 * BS)
    _write(vol, "a", data)
    vol.clone_file("a", "b")
    vol.clone_file("a", "c")
    f = vol.open("b", "rb", buffering=0)
    pin = f.pin(0, 3 * BS)
    view = f.map(0, 3 * BS)
    segments = pin.segments
    f.close()
    with vol.open("a", "r+b", buffering=0) as g:
        g.pwrite(b"x" * (3 * BS), 0)         # COW away all of a
    vol.unlink("c")
    assert bytes(pin.buffer) == data and bytes(view.buffer) == data and pin.segments == segments
    vol.unlink("b")                          # the pin holds b, now an orphan: its blocks are its own
    assert bytes(pin.buffer) == data and bytes(view.buffer) == data
    assert vol.statfs().busy == 0
    assert vol.fsck() == []
    pin.release()
    view.close()
    assert vol.fsck() == []
    assert vol.statfs().used == 3 * BS
    vol.close()


def _write_reference(vol: Volume, kind: str) -> tuple[daxfs.File, Any]:
    _write(vol, "a", _distinct(13, 4 * BS))
    _write(vol, "c", _distinct(14, 2 * BS))
    f = vol.open("a", "r+b", buffering=0)
    return f, (f.map(BS, BS, write=True) if kind == "mapping" else f.pin(BS, BS, write=True))


@pytest.mark.parametrize("kind", ["mapping", "pin"])
def test_cloning_from_a_live_write_reference_is_busy(kind: str) -> None:
    _pool, vol = _volume()
    f, ref = _write_reference(vol, kind)
    before = _state(vol)
    for what, call in (("clone_range", lambda: vol.clone_range("a", 0, "c", 0, 2 * BS)),
                       ("clone_range from the handle", lambda: vol.clone_range(f, BS, "c", 0, 0)),
                       ("dedupe_range", lambda: vol.dedupe_range("a", BS, "c", 0, BS))):
        with pytest.raises(daxfs.BusyError) as info:
            call()
        assert info.value.errno == errno.EBUSY
        assert _state(vol) == before, f"a refused {what} changed something"
    # outside the referenced range sharing works, and copy_file_range copies instead of sharing
    assert vol.clone_range("a", 2 * BS, "c", 0, BS) == BS
    assert vol.copy_file_range("a", 0, "c", 0, 2 * BS) == 2 * BS
    assert _read(vol, "c")[:2 * BS] == _read(vol, "a")[:2 * BS]
    shared_with_a = {po for _fb, po, _fl in _blocks(_extents_of(vol, "a"))}
    assert _pool_block(_extents_of(vol, "c"), 1) not in shared_with_a, "a block under a write reference was shared"
    assert vol.fsck() == []
    ref.close() if kind == "mapping" else ref.release()
    assert vol.clone_range("a", 0, "c", 0, 2 * BS) == 2 * BS
    assert vol.fsck() == []
    f.close()
    vol.close()


@pytest.mark.parametrize(("kind", "dst"), [("mapping", "c"), ("pin", "new")])
def test_clone_file_from_a_live_write_reference_is_busy_and_changes_nothing(kind: str, dst: str) -> None:
    """The destination is neither created nor truncated when the clone is refused."""
    _pool, vol = _volume()
    f, ref = _write_reference(vol, kind)
    before = _state(vol)
    with pytest.raises(daxfs.BusyError):
        vol.clone_file("a", dst)
    assert _state(vol) == before, f"a refused clone_file('a', {dst!r}) changed the volume"
    ref.close() if kind == "mapping" else ref.release()
    f.close()
    vol.close()


# --------------------------------------------------------------------------- bad input


def _state(vol: Volume) -> tuple:
    """Everything a failed call must leave as it was: names, bytes, sizes, extents, statfs."""
    files = []
    stack = ["/"]
    while stack:
        d = stack.pop()
        for name in sorted(vol.listdir(d)):
            path = d.rstrip("/") + "/" + name
            st = vol.stat(path)
            if st.is_dir():
                files.append((path, "dir"))
                stack.append(path)
                continue
            with vol.open(path, "rb", buffering=0) as f:
                files.append((path, f.read(), st.st_size, st.st_blocks, tuple(f.extents())))
    return tuple(files), vol.statfs()


class _Env:
    """A volume with a (3 blocks + 100 bytes), b (2 blocks), c (4 blocks), dir/, and a file
    on another volume."""

    def __init__(self) -> None:
        self.pool, self.vol = _volume()
        _write(self.vol, "a", _distinct(21, 3 * BS + 100))
        _write(self.vol, "b", _distinct(22, 2 * BS))
        _write(self.vol, "c", _distinct(23, 4 * BS))
        self.vol.mkdir("dir")
        self.other_pool, self.other = _volume()
        _write(self.other, "x", _distinct(24, 2 * BS))
        self.handles: list[daxfs.File] = []

    def open(self, path: str, mode: str, *, other: bool = False) -> daxfs.File:
        f = (self.other if other else self.vol).open(path, mode, buffering=0)
        self.handles.append(f)
        return f

    def close(self) -> None:
        for f in self.handles:
            f.close()
        self.vol.close()
        self.other.close()


# (id, call, errno) -- the call gets the _Env; Linux's errno for FICLONERANGE / FICLONE /
# FIDEDUPERANGE / copy_file_range in the same situation.
_BAD: list[tuple[str, Callable[[_Env], Any], int]] = [
    ("clone src on another volume", lambda e: e.vol.clone_range(e.open("x", "rb", other=True), 0, "b", 0, BS),
     errno.EXDEV),
    ("clone dst on another volume", lambda e: e.vol.clone_range("a", 0, e.open("x", "r+b", other=True), 0, BS),
     errno.EXDEV),
    ("clone_file src on another volume", lambda e: e.vol.clone_file(e.open("x", "rb", other=True), "b"),
     errno.EXDEV),
    ("dedupe src on another volume", lambda e: e.vol.dedupe_range(e.open("x", "rb", other=True), 0, "b", 0, BS),
     errno.EXDEV),
    ("copy src on another volume", lambda e: e.vol.copy_file_range(e.open("x", "rb", other=True), 0, "b", 0, BS),
     errno.EXDEV),
    ("clone onto itself", lambda e: e.vol.clone_range("c", 0, "c", 0, BS), errno.EINVAL),
    ("clone onto itself overlapping", lambda e: e.vol.clone_range("c", 0, "c", BS, 2 * BS), errno.EINVAL),
    ("clone onto itself overlapping backwards", lambda e: e.vol.clone_range("c", BS, "c", 0, 2 * BS), errno.EINVAL),
    ("clone onto itself overlapping in the EOF block", lambda e: e.vol.clone_range("a", 2 * BS, "a", 3 * BS, 0),
     errno.EINVAL),
    ("clone_file onto itself", lambda e: e.vol.clone_file("a", "a"), errno.EINVAL),
    ("dedupe onto itself overlapping", lambda e: e.vol.dedupe_range("c", 0, "c", BS, 2 * BS), errno.EINVAL),
    ("copy onto itself overlapping", lambda e: e.vol.copy_file_range("c", 0, "c", BS, 2 * BS), errno.EINVAL),
    ("clone past source EOF", lambda e: e.vol.clone_range("a", 0, "b", 0, 4 * BS), errno.EINVAL),
    ("clone starting past source EOF", lambda e: e.vol.clone_range("a", 4 * BS, "b", 0, BS), errno.EINVAL),
    ("clone to EOF from past source EOF", lambda e: e.vol.clone_range("a", 4 * BS, "b", 0, 0), errno.EINVAL),
    ("dedupe past source EOF", lambda e: e.vol.dedupe_range("b", 0, "c", 0, 3 * BS), errno.EINVAL),
    ("dedupe past destination EOF", lambda e: e.vol.dedupe_range("c", 0, "b", 0, 3 * BS), errno.EINVAL),
    ("clone from a directory", lambda e: e.vol.clone_range("dir", 0, "b", 0, BS), errno.EISDIR),
    ("clone into a directory", lambda e: e.vol.clone_range("a", 0, "dir", 0, BS), errno.EISDIR),
    ("clone_file from a directory", lambda e: e.vol.clone_file("dir", "b"), errno.EISDIR),
    ("clone_file onto a directory", lambda e: e.vol.clone_file("a", "dir"), errno.EISDIR),
    ("dedupe from a directory", lambda e: e.vol.dedupe_range("dir", 0, "b", 0, BS), errno.EISDIR),
    ("copy from a directory", lambda e: e.vol.copy_file_range("dir", 0, "b", 0, BS), errno.EISDIR),
    ("clone unaligned source offset", lambda e: e.vol.clone_range("c", 100, "b", 0, BS), errno.EINVAL),
    ("clone unaligned destination offset", lambda e: e.vol.clone_range("c", 0, "b", 100, BS), errno.EINVAL),
    ("clone unaligned length", lambda e: e.vol.clone_range("c", 0, "b", 0, BS + 1), errno.EINVAL),
    ("clone unaligned EOF ending inside the destination", lambda e: e.vol.clone_range("a", 0, "c", 0, 0),
     errno.EINVAL),
    ("dedupe unaligned offset", lambda e: e.vol.dedupe_range("c", 100, "b", 0, BS), errno.EINVAL),
    ("clone negative offset", lambda e: e.vol.clone_range("c", -BS, "b", 0, BS), errno.EINVAL),
    ("clone into a read-only handle", lambda e: e.vol.clone_range("a", 0, e.open("b", "rb"), 0, BS), errno.EBADF),
    ("clone from a write-only handle", lambda e: e.vol.clone_range(e.open("a", "ab"), 0, "b", 0, BS), errno.EBADF),
    ("clone into an append handle", lambda e: e.vol.clone_range("a", 0, e.open("b", "ab"), 0, BS), errno.EBADF),
    ("clone into an a+b handle", lambda e: e.vol.clone_range("a", 0, e.open("b", "a+b"), 0, BS), errno.EBADF),
    ("clone from a write-only to itself", lambda e: e.vol.clone_range(e.open("c", "ab"), 0, "c", 2 * BS, BS),
     errno.EBADF),
    ("dedupe from a write-only handle", lambda e: e.vol.dedupe_range(e.open("c", "ab"), 0, "b", 0, BS),
     errno.EBADF),
    ("copy into a read-only handle", lambda e: e.vol.copy_file_range("a", 0, e.open("b", "rb"), 0, BS), errno.EBADF),
    ("copy from a write-only handle", lambda e: e.vol.copy_file_range(e.open("a", "ab"), 0, "b", 0, BS),
     errno.EBADF),
    ("copy into an append handle", lambda e: e.vol.copy_file_range("a", 0, e.open("b", "ab"), 0, BS), errno.EBADF),
    ("clone_file from a write-only handle", lambda e: e.vol.clone_file(e.open("a", "ab"), "b"), errno.EBADF),
    ("clone a missing file", lambda e: e.vol.clone_range("nope", 0, "b", 0, BS), errno.ENOENT),
    ("clone_file a missing file", lambda e: e.vol.clone_file("nope", "b"), errno.ENOENT),
]


@pytest.mark.parametrize("case", _BAD, ids=[c[0] for c in _BAD])
def test_bad_input_changes_nothing(case: tuple[str, Callable[[_Env], Any], int]) -> None:
    what, call, want = case
    env = _Env()
    try:
        before, other_before = _state(env.vol), _state(env.other)
        got = _errno_of(lambda: call(env))
        assert got == ("err", want), f"{what}: got {got}, Linux gives {errno.errorcode[want]}"
        assert _state(env.vol) == before, f"{what}: the failed call changed the volume"
        assert _state(env.other) == other_before
        assert env.vol.fsck() == []
    finally:
        env.close()


def test_read_only_volume_is_erofs() -> None:
    pool, vol = _volume()
    _write(vol, "a", _distinct(31, 2 * BS))
    _write(vol, "b", _distinct(32, 2 * BS))
    vol.close()
    ro = Volume.mount(pool, readonly=True)
    before = _state(ro)
    for call in (lambda: ro.clone_range("a", 0, "b", 0, BS), lambda: ro.clone_file("a", "b"),
                 lambda: ro.clone_file("a", "new"), lambda: ro.dedupe_range("a", 0, "b", 0, BS),
                 lambda: ro.copy_file_range("a", 0, "b", 0, BS),
                 lambda: ro.clone_range(ro.open("a", "rb", buffering=0), 0, "b", 0, BS)):
        assert _errno_of(call) == ("err", errno.EROFS)
        assert _state(ro) == before
    ro.close()


@pytest.mark.parametrize("how", ["pwrite", "write map", "zero_range"])
def test_a_pin_on_a_clone_never_shows_the_sources_later_writes(shm_pool: str, how: str) -> None:
    """A range of a clone is pinned; a write into the clone moves it onto blocks of its own,
    so the pinned blocks are the source's alone.  The source's later writes must not change
    what the pin shows (another file's bytes): they copy on write as into a shared block."""
    vol = daxfs.mkfs(shm_pool, size=16 << 20, force=True)
    try:
        with vol.open("/a", "wb") as f:
            f.write(b"a" * 8192)
        vol.clone_file("/a", "/b")
        with vol.open("/b", "r+b", buffering=0) as b, b.pin(0, 4096) as pin:
            b.pwrite(b"b" * 4096, 0)                      # the clone copies on write; the pin keeps the old
            assert bytes(pin.buffer[:4]) == b"aaaa"
            with vol.open("/a", "r+b", buffering=0) as a:
                if how == "pwrite":
                    a.pwrite(b"Z" * 4096, 0)
                elif how == "write map":
                    with a.map(0, 4096, write=True) as m:
                        m.buffer[:4] = b"ZZZZ"
                        m.persist(0, 4)
                else:
                    a.zero_range(0, 4096)
                assert bytes(pin.buffer[:4]) == b"aaaa", "the pin shows the source's new bytes"
                want = b"\0\0\0\0" if how == "zero_range" else b"ZZZZ"
                assert a.pread(4, 0) == want and b.pread(4, 0) == b"bbbb"
        assert vol.statfs().busy == 0 and vol.fsck() == []
    finally:
        vol.close()
