"""Seeded workloads and volume snapshots for crash and differential testing.

``Workload(seed).ops(n)`` yields operations drawn from a small name space so
they collide (overwrite, rename over, unlink what another op made).  Each op
applies to anything with the Volume API; expected failures (ENOENT, EEXIST,
ENOSPC, ...) are part of the workload and are returned, not raised.
``Workload(seed, extended=True)`` adds reflink (clone_file, clone_range, and so
copy-on-write by later writes), write mappings stored through and persisted,
and truncates under a pin.
"""

from __future__ import annotations

import errno
import random
import stat as st
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

NAMES = ("a", "b", "c", "d/x", "d/y", "e/f/g")
TOP = ("a", "b", "c")        # the names the extended kinds use: no parent to be missing
DIRS = ("d", "e", "e/f")


def walk(vol: Any) -> Iterator[tuple[str, Any]]:
    """Every path below the root with its stat (of a symlink itself: ``lstat`` where the
    front end has it), directories before what they hold."""
    lstat = getattr(vol, "lstat", vol.stat)
    stack = ["/"]
    while stack:
        d = stack.pop()
        for name in vol.listdir(d):
            path = d.rstrip("/") + "/" + name
            s = lstat(path)
            yield path, s
            if st.S_ISDIR(s.st_mode):
                stack.append(path)


def snapshot(vol: Any, *, times: bool = True) -> dict[str, tuple]:
    """Every path in the volume, the root included, with all a user can see of it.

    Directories: ``("dir", perm, meta)``; files: ``("file", perm, nlink, bytes, meta)``;
    symlinks: ``("link", target, meta)``; special files: ``("node", mode, meta)``;
    where ``meta`` is ``(ino, nlink, uid, gid, size, blocks, atime, mtime, ctime)``.
    ``times=False`` leaves the three timestamps out (for states where the README does
    not promise them durable: in-place writes through a handle still open).  A file
    with poisoned blocks (``memory_failure``) reads as zeros there, and its ``meta``
    ends with ``("poisoned", [(offset, length), ...])``.
    """
    out: dict[str, tuple] = {}
    for path, s in [("/", vol.stat("/")), *walk(vol)]:
        meta: tuple = (s.st_ino, s.st_nlink, s.st_uid, s.st_gid, s.st_size, s.st_blocks)
        if times:
            meta += (s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns)
        if st.S_ISDIR(s.st_mode):
            out[path] = ("dir", st.S_IMODE(s.st_mode), meta)
        elif st.S_ISLNK(s.st_mode):
            out[path] = ("link", vol.readlink(path), meta)
        elif not st.S_ISREG(s.st_mode):
            out[path] = ("node", s.st_mode, meta)
        else:
            with vol.open(path, "rb", buffering=0) as f:
                data, poisoned = _read_around_poison(f, s.st_size)
            if poisoned:
                meta += (("poisoned", poisoned),)
            out[path] = ("file", st.S_IMODE(s.st_mode), s.st_nlink, data, meta)
    return out


def _read_around_poison(f: Any, size: int) -> tuple[bytes, list[tuple[int, int]]]:
    """The file's bytes, and the ranges that raised EIO (read as zeros here)."""
    try:
        return f.read(), []
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
    data = bytearray(size)
    poisoned: list[tuple[int, int]] = []
    step = max(1, f.stat().st_blksize)
    for pos in range(0, size, step):
        try:
            chunk = f.pread(min(step, size - pos), pos)
            data[pos:pos + len(chunk)] = chunk
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            if poisoned and poisoned[-1][0] + poisoned[-1][1] == pos:
                poisoned[-1] = (poisoned[-1][0], poisoned[-1][1] + min(step, size - pos))
            else:
                poisoned.append((pos, min(step, size - pos)))
    return bytes(data), poisoned


def in_place_ranges(vol: Any, path: str, offset: int, length: int) -> dict[int, list[tuple[int, int]]]:
    """The bytes a write of ``length`` at ``offset`` would overwrite in place: ``{ino: [(lo, hi)]}``.

    Those are the bytes inside the file's size that sit in blocks it already owns alone
    and has written.  Everything else a write touches (holes, unwritten or shared blocks,
    growth) lands in fresh blocks or behind a size change, so it is all-or-nothing.
    """
    try:
        s = vol.stat(path)
        if st.S_ISDIR(s.st_mode):
            return {}
        with vol.open(path, "rb", buffering=0) as f:
            extents = f.extents()
    except OSError:
        return {}
    end = min(offset + length, s.st_size)
    out = []
    for e in extents:
        if "shared" in e.flags or "unwritten" in e.flags:
            continue
        lo, hi = max(e.file_offset, offset), min(e.file_offset + e.length, end)
        if lo < hi:
            out.append((lo, hi))
    return {s.st_ino: out} if out else {}


def recorded_volume(size: int = 4 << 20, **mount: Any) -> tuple[Any, Any]:
    """A freshly formatted volume on a RecordingPool whose recording starts after mkfs
    (``mount``: options for ``Volume.mount``, such as ``durability="lazy"``)."""
    from daxfs.media import RecordingPool
    from daxfs.volume import Volume

    pool = RecordingPool(size)
    pool.recording = False
    Volume.format(pool)
    pool.initial = pool.image()
    pool.recording = True
    return pool, Volume.mount(pool, **mount)


@dataclass
class Op:
    """One operation: ``kind`` and its arguments.

    ``apply`` first notes what a crash inside the op may tear: ``tearable`` maps an
    inode to the byte ranges the op overwrites in place (see ``in_place_ranges``);
    a write that only allocates (new blocks, growth) has none and is all-or-nothing,
    like every other op.
    """

    kind: str
    args: tuple
    result: Any = field(default=None, compare=False)
    tearable: dict[int, list[tuple[int, int]]] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        def short(a: Any) -> Any:
            return f"{a[:1]!r}*{len(a)}" if isinstance(a, bytes) and len(a) > 8 else repr(a)
        return f"{self.kind}({', '.join(str(short(a)) for a in self.args)})"

    @property
    def allocating(self) -> bool:
        """A write with no byte overwritten in place (it fills holes or grows the file)."""
        return self.kind in ("pwrite", "append") and not self.tearable

    def apply(self, vol: Any) -> Any:
        """Run the op; return None or the errno it failed with."""
        self.tearable = {}
        if self.kind == "pwrite":
            self.tearable = in_place_ranges(vol, self.args[0], self.args[2], len(self.args[1]))
        elif self.kind == "map_write":
            # a write mapping over bytes the file has written, alone: its stores are in place
            ranges = in_place_ranges(vol, self.args[0], self.args[1], self.args[2])
            self.tearable = {ino: r[:1] for ino, r in ranges.items()}
        try:
            self.result = _run(vol, self.kind, self.args)
            return None
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno


def _run(vol: Any, kind: str, args: tuple) -> Any:
    if kind == "mkdir":
        return vol.mkdir(args[0])
    if kind == "rmdir":
        return vol.rmdir(args[0])
    if kind == "unlink":
        return vol.unlink(args[0])
    if kind == "rename":
        return vol.rename(args[0], args[1])
    if kind == "link":
        return vol.link(args[0], args[1])
    if kind == "chmod":
        return vol.chmod(args[0], args[1])
    if kind == "checkpoint":
        return vol.checkpoint()
    if kind == "clone":
        return vol.clone_file(args[0], args[1])
    if kind == "clone_range":
        return vol.clone_range(args[0], 0, args[1], args[2], 0)
    path = args[0]
    if kind == "create":
        vol.open(path, "wb", buffering=0).close()
        return None
    with vol.open(path, "r+b", buffering=0) as f:
        if kind == "pwrite":
            return f.pwrite(args[1], args[2])
        if kind == "append":
            f.seek(0, 2)
            return f.write(args[1])
        if kind == "truncate":
            return f.truncate(args[1])
        if kind == "punch":
            return f.punch_hole(args[1], args[2])
        if kind == "zero":
            return f.zero_range(args[1], args[2], keep_size=args[3])
        if kind == "fallocate":
            return f.fallocate(args[1], args[2], keep_size=args[3])
        if kind == "map_write":
            ranges = in_place_ranges(vol, path, args[1], args[2])
            if not ranges:
                return None                  # nothing written there: the op maps nothing
            [(lo, hi)] = list(ranges.values())[0][:1]
            m = f.map(lo, hi - lo, write=True)
            try:
                m.buffer[:] = bytes([args[3]]) * (hi - lo)
                m.persist()
            finally:
                m.close()
            return hi - lo
        if kind == "pin_truncate":
            size = f.stat().st_size
            if size == 0:
                return None
            p = f.pin(0, size)               # the truncated blocks go busy, then free
            try:
                return f.truncate(min(args[1], size))
            finally:
                p.release()
    raise ValueError(f"unknown op {kind}")


class Workload:
    """A seeded generator of operations."""

    def __init__(self, seed: int, *, block_size: int = 4096, max_file: int = 6 * 4096,
                 checkpoints: bool = True, extended: bool = False) -> None:
        self.rng = random.Random(seed)
        self.bs = block_size
        self.max_file = max_file
        self.checkpoints = checkpoints
        self.extended = extended

    def _data(self) -> bytes:
        rng = self.rng
        n = rng.choice([1, 100, self.bs - 1, self.bs, self.bs + 7, 2 * self.bs, rng.randrange(1, 3 * self.bs)])
        return bytes([rng.randrange(1, 256)]) * n

    def _offset(self) -> int:
        rng = self.rng
        return rng.choice([0, self.bs, rng.randrange(0, self.max_file), rng.randrange(0, 4) * self.bs + 1])

    def ops(self, n: int) -> Iterator[Op]:
        rng = self.rng
        for _ in range(n):
            kinds = ["create", "pwrite", "append", "truncate", "punch", "zero", "fallocate", "mkdir",
                     "rmdir", "unlink", "rename", "link", "chmod", "checkpoint"]
            weights = [6, 8, 4, 4, 3, 3, 2, 2, 1, 3, 3, 1, 1, 1 if self.checkpoints else 0]
            if self.extended:
                weights[0] += 6                      # more files for the kinds below to work on
                kinds += ["clone", "clone_range", "map_write", "pin_truncate", "cow"]
                weights += [3, 2, 4, 2, 4]
            kind = rng.choices(kinds, weights=weights)[0]
            path = rng.choice(NAMES)
            if kind == "create":
                yield Op(kind, (path,))
            elif kind == "pwrite":
                yield Op(kind, (path, self._data(), self._offset()))
            elif kind == "append":
                yield Op(kind, (path, self._data()))
            elif kind == "truncate":
                yield Op(kind, (path, rng.randrange(0, self.max_file)))
            elif kind in ("punch",):
                yield Op(kind, (path, self._offset(), rng.randrange(1, 3 * self.bs)))
            elif kind in ("zero", "fallocate"):
                yield Op(kind, (path, self._offset(), rng.randrange(1, 3 * self.bs), rng.random() < 0.5))
            elif kind in ("mkdir", "rmdir"):
                yield Op(kind, (rng.choice(DIRS),))
            elif kind == "unlink":
                yield Op(kind, (path,))
            elif kind in ("rename", "link"):
                yield Op(kind, (path, rng.choice(NAMES)))
            elif kind == "chmod":
                yield Op(kind, (path, rng.choice([0o600, 0o644, 0o755])))
            elif kind == "clone":
                yield Op(kind, (rng.choice(TOP), rng.choice(TOP)))
            elif kind == "clone_range":
                yield Op(kind, (rng.choice(TOP), rng.choice(TOP), rng.randrange(0, 3) * self.bs))
            elif kind == "map_write":
                yield Op(kind, (rng.choice(TOP), rng.choice([0, self.bs, rng.randrange(0, self.max_file // 2)]),
                                rng.randrange(1, 3 * self.bs), rng.randrange(1, 256)))
            elif kind == "pin_truncate":
                yield Op(kind, (rng.choice(TOP), rng.randrange(0, self.max_file)))
            elif kind == "cow":                      # a write where the clones above share blocks
                yield Op("pwrite", (rng.choice(TOP), self._data(), self._offset()))
            else:
                yield Op(kind, ())


def close_checked(vol: Any) -> None:
    """Close a volume a test used, and fail if the test left mappings or pins on it.

    For fixtures: a leaked reference is a bug in the test or the library, never
    something to swallow.  The leak is reported after mappings are revoked, so the
    volume closes when only mappings leaked; a leaked pin keeps it open.
    """
    from daxfs.errors import BusyError

    if vol.closed:
        return
    leaked = vol.pins()
    if not leaked:
        vol.close()
        return
    try:
        vol.close(force=True, timeout=0)
    except BusyError:
        pass
    raise AssertionError(f"the test left {len(leaked)} reference(s) on the volume: {leaked}")
