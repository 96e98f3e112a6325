"""Differential tests: daxfs behaves exactly like tmpfs driven through ``os``.

Every test here runs the same sequence of namespace and file operations twice:
on a fresh daxfs volume (a 16 MiB pool in /dev/shm) and on a real directory in
/dev/shm driven through ``os`` (``os.open``/``os.pwrite``/``os.ftruncate``,
libc ``fallocate`` through ctypes, ``renameat2`` for ``replace=False``).  After
every step it asserts that

* the call had the same outcome on both sides: the same errno (or success) and
  the same return value (bytes read, counts, positions, sorted listings, stat);
* the whole tree is the same: names, file type, permission bits, link counts,
  owner, file sizes, allocated blocks (``st_blocks``), file contents, and which
  names are hard links of the same inode;
* every open handle agrees: ``fstat`` (including unlinked-but-open files, whose
  data stays readable until close), position, and contents.

At the end of each sequence the handles are closed, ``vol.fsck()`` must report
nothing, and after close + ``open_volume`` the remounted tree must still equal
the reference.

Two drivers share that harness: a hypothesis ``RuleBasedStateMachine`` (which
shrinks a failure to a short sequence) and a seeded plain-random generator
(20 seeds x 200 operations; a failure names its seed and prints the operations
as a Python script that reproduces it).  A few pinned sequences spell out the
cases most worth naming: sparse files and their blocks, zero_range past EOF,
unlinked-but-open files, O_APPEND, truncating opens, directory renames.

``st_blocks`` is compared exactly: tmpfs allocates 4 KiB pages, as daxfs does
4 KiB blocks, and fallocate/punch/zero_range allocate and free the same ones.

What the reference is:  a chroot at the reference directory, i.e. the volume's
root is ``/`` and ``..`` at the root stays at the root.  ``ReferenceTree.real``
turns a volume path into the host path that names the same thing: the path as
written, less any ``..`` taken at the root, so that the kernel walks it and
reports its own errors in its own order.  tmpfs has no ``FALLOC_FL_ZERO_RANGE``, so ``zero_range`` on the
reference is punch-hole followed by fallocate over the same range, which is
what ZERO_RANGE means on ext4/xfs: zeros, every block touching the range
allocated, size extended unless ``keep_size``.  File handles on the reference
are ``open(path, mode, buffering=0)`` (``io.FileIO``), the object daxfs's
``File`` stands in for; a call on a handle opened without the needed access is
EBADF whether it is reported as ``io.UnsupportedOperation`` (as FileIO does) or
as ``OSError(EBADF)`` (as the system call does).
"""

from __future__ import annotations

import ctypes
import errno
import io
import os
import random
import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import daxfs
from _reference import ReferenceTree

BLOCK = 4096
POOL_SIZE = 16 << 20          # room for ~15 files of <= 40 KiB; mkfs is 4x faster than at 64 MiB
SHM = "/dev/shm"
PATH_MAX = 4096

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
RENAME_NOREPLACE = 1
AT_FDCWD = -100

# A small pool of names so that operations collide: files over directories,
# renames over existing names, directories that are not empty.
NAMES = ["a", "b", "c", "d", "e", "d/x", "d/y", "d/e", "d/e/x", "e/x", "a/x", "d/../b", "./d/e/../y"]
OPEN_MODES = ["rb", "r+b", "wb", "w+b", "xb", "ab", "a+b"]
DIR_MODES = [0o755, 0o700, 0o750, 0o711, 0o777]
CHMOD_MODES = [0o644, 0o600, 0o640, 0o755, 0o700, 0o777, 0o444, 0o400, 0o000]
OFFSET_EDGES = [0, 1, 511, 4095, 4096, 4097, 8191, 8192, 12288, 16385, 24576]
LENGTH_EDGES = [0, 1, 100, 4095, 4096, 4097, 8192, 3 * BLOCK + 1]
MAX_OPEN = 4

# --------------------------------------------------------------------------
# libc calls that os does not expose


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_libc.fallocate.restype = ctypes.c_int
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_libc.renameat2.restype = ctypes.c_int


def _raise_errno(*filenames: str) -> None:
    code = ctypes.get_errno()
    raise OSError(code, os.strerror(code), *filenames)


def linux_fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2) on ``fd``; raises OSError with the kernel's errno."""
    if _libc.fallocate(fd, mode, offset, length) != 0:
        _raise_errno()


def tmpfs_zero_range(fd: int, offset: int, length: int, keep_size: bool) -> None:
    """FALLOC_FL_ZERO_RANGE, or on tmpfs (which lacks it) punch + fallocate over the range."""
    keep = FALLOC_FL_KEEP_SIZE if keep_size else 0
    try:
        linux_fallocate(fd, FALLOC_FL_ZERO_RANGE | keep, offset, length)
    except OSError as exc:
        if exc.errno != errno.EOPNOTSUPP:
            raise
        linux_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
        linux_fallocate(fd, keep, offset, length)


def rename_noreplace(src: str, dst: str) -> None:
    """renameat2(RENAME_NOREPLACE): rename, or EEXIST if ``dst`` exists."""
    if "\0" in src or "\0" in dst:
        raise ValueError("embedded null byte")
    if _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE) != 0:
        _raise_errno(src, dst)


def payload(n: int, seed: int) -> bytes:
    """``n`` reproducible bytes; distinct seeds give distinct data."""
    return random.Random(seed).randbytes(n)


# --------------------------------------------------------------------------
# outcomes


def error_kind(exc: BaseException) -> str:
    """What an exception means, as comparable text: an errno name, or the exception class."""
    if isinstance(exc, io.UnsupportedOperation):
        return "EBADF"          # FileIO's way of saying "not open for reading/writing"
    if isinstance(exc, ValueError):
        return "ValueError"     # os raises it for an embedded NUL; InvalidPathError is one too
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return f"{type(exc).__name__}: {exc}"


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", return value) or ("error", error_kind)."""
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - every failure is part of the comparison
        return ("error", error_kind(exc))


FILE_TYPES = {stat.S_IFDIR: "dir", stat.S_IFREG: "file"}


def stat_view(st_result: Any) -> dict[str, Any]:
    """The stat fields that must agree with tmpfs (times and inode numbers cannot)."""
    fmt = stat.S_IFMT(st_result.st_mode)
    view = {
        "type": FILE_TYPES.get(fmt, oct(fmt)),
        "perm": oct(stat.S_IMODE(st_result.st_mode)),
        "nlink": st_result.st_nlink,
        "uid": st_result.st_uid,
        "gid": st_result.st_gid,
    }
    if fmt == stat.S_IFREG:     # tmpfs directory sizes are made up (20 bytes per entry)
        view["size"] = st_result.st_size
        view["blocks"] = st_result.st_blocks
    return view


def short(value: Any) -> str:
    """repr, with long byte strings summarised (also inside tuples)."""
    if isinstance(value, (bytes, bytearray)) and len(value) > 48:
        return f"<{len(value)} bytes {bytes(value[:16]).hex()}...>"
    if isinstance(value, tuple):
        return "(" + ", ".join(short(v) for v in value) + ")"
    text = repr(value)
    return text if len(text) < 2000 else text[:2000] + "..."


def first_difference(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first differing byte at offset {i}: daxfs {x:#04x}, os {y:#04x}"
    return f"lengths differ: daxfs {len(a)}, os {len(b)}"


# --------------------------------------------------------------------------
# the reference: a directory on tmpfs seen as if it were a chroot




# --------------------------------------------------------------------------
# the harness


class Mismatch(AssertionError):
    """daxfs and os disagreed; the message ends with the operations that led there."""


@dataclass
class HandlePair:
    """The same file opened on both sides."""

    label: str
    dax: Any
    ref: io.FileIO
    mode: str

    @property
    def readable(self) -> bool:
        return "r" in self.mode or "+" in self.mode

    @property
    def writable(self) -> bool:
        return self.mode != "rb"


class Differential:
    """A daxfs volume and a reference directory, operated in lockstep and compared."""

    def __init__(self) -> None:
        self.workdir = f"{SHM}/daxfs-diff-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        os.mkdir(self.workdir)
        self.pool = self.workdir + "/pool"
        os.mkdir(self.workdir + "/ref")
        self.ref = ReferenceTree(self.workdir + "/ref")
        self.handles: list[HandlePair] = []
        self.handle_count = 0
        self.failed = False
        self.log: list[str] = [f"vol = daxfs.mkfs(POOL, {POOL_SIZE})"]
        try:
            self.vol = daxfs.mkfs(self.pool, POOL_SIZE)
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    # -- comparing -----------------------------------------------------------

    def fail(self, what: str) -> None:
        self.failed = True
        script = "\n".join(self.log)
        raise Mismatch(f"{what}\n--- operations so far (daxfs side; payload() is in test_differential) ---\n"
                       f"{script}")

    def compare(self, call: str, on_dax: Callable[[], Any], on_ref: Callable[[], Any],
                *, also_accept: tuple[str, ...] = ()) -> tuple[str, Any]:
        """Run one operation on both sides; the outcomes must be equal."""
        self.log.append(call)
        got = outcome(on_dax)
        want = outcome(on_ref)
        if got != want and not (got[0] == want[0] == "error" and got[1] in also_accept):
            detail = ""
            if got[0] == want[0] == "ok":
                g, w = got[1], want[1]
                if isinstance(g, tuple) and isinstance(w, tuple) and len(g) == len(w) == 2:
                    g, w = g[1], w[1]           # (count, buffer) from readinto/preadinto
                if isinstance(g, bytes) and isinstance(w, bytes):
                    detail = f" ({first_difference(g, w)})"
            self.fail(f"{call}: daxfs -> {short(got)}, os -> {short(want)}{detail}")
        if got[0] == "error":
            self.log[-1] += f"  # {got[1]}"
        return got

    def snapshot_dax(self) -> dict[str, Any]:
        entries: dict[str, Any] = {}
        inodes: dict[int, set[str]] = {}

        def walk(path: str) -> None:
            names = sorted(self.vol.listdir(path))
            entries[path] = ("dir", names, stat_view(self.vol.stat(path)))
            for name in names:
                child = path.rstrip("/") + "/" + name
                st_result = self.vol.stat(child)
                if stat.S_ISDIR(st_result.st_mode):
                    walk(child)
                else:
                    with self.vol.open(child, "rb", buffering=0) as f:
                        data = f.read()
                    entries[child] = ("file", data, stat_view(st_result))
                    inodes.setdefault(st_result.st_ino, set()).add(child)

        walk("/")
        return {"entries": entries, "links": sorted(sorted(v) for v in inodes.values())}

    def snapshot_ref(self) -> dict[str, Any]:
        entries: dict[str, Any] = {}
        inodes: dict[int, set[str]] = {}

        def walk(path: str, real: str) -> None:
            names = sorted(os.listdir(real))
            entries[path] = ("dir", names, stat_view(os.stat(real)))
            for name in names:
                child, real_child = path.rstrip("/") + "/" + name, real + "/" + name
                st_result = os.stat(real_child)
                if stat.S_ISDIR(st_result.st_mode):
                    walk(child, real_child)
                else:
                    with open(real_child, "rb", buffering=0) as f:
                        data = f.read()
                    entries[child] = ("file", data, stat_view(st_result))
                    inodes.setdefault(st_result.st_ino, set()).add(child)

        walk("/", self.ref.root)
        return {"entries": entries, "links": sorted(sorted(v) for v in inodes.values())}

    def check_tree(self, when: str = "") -> None:
        """The whole namespace, every file's data and stat, and every open handle agree."""
        try:
            got = self.snapshot_dax()
        except Exception as exc:  # noqa: BLE001
            self.fail(f"walking the daxfs tree{when} failed: {exc!r}")
        want = self.snapshot_ref()
        if got["entries"] != want["entries"]:
            for path in sorted(set(got["entries"]) | set(want["entries"])):
                g, w = got["entries"].get(path), want["entries"].get(path)
                if g == w:
                    continue
                if g is None or w is None:
                    self.fail(f"tree{when}: {path} exists only on {'os' if g is None else 'daxfs'}: "
                              f"daxfs {short(g)}, os {short(w)}")
                if g[2] != w[2]:
                    self.fail(f"tree{when}: stat of {path}: daxfs {g[2]}, os {w[2]}")
                if g[0] == w[0] == "file":
                    self.fail(f"tree{when}: contents of {path}: {first_difference(g[1], w[1])}")
                self.fail(f"tree{when}: {path}: daxfs {short(g)}, os {short(w)}")
        if got["links"] != want["links"]:
            self.fail(f"tree{when}: hard-link groups differ: daxfs {got['links']}, os {want['links']}")
        for h in self.handles:
            self.check_handle(h, when)

    def check_handle(self, h: HandlePair, when: str = "") -> None:
        got_stat, want_stat = stat_view(h.dax.stat()), stat_view(os.fstat(h.ref.fileno()))
        if got_stat != want_stat:
            self.fail(f"{h.label}.stat(){when}: daxfs {got_stat}, os {want_stat}")
        got_pos, want_pos = h.dax.tell(), h.ref.tell()
        if got_pos != want_pos:
            self.fail(f"{h.label}.tell(){when}: daxfs {got_pos}, os {want_pos}")
        if h.readable:
            size = want_stat["size"]
            got_data, want_data = h.dax.pread(size + 1, 0), os.pread(h.ref.fileno(), size + 1, 0)
            if got_data != want_data:
                self.fail(f"{h.label} contents{when}: {first_difference(got_data, want_data)}")

    # -- namespace operations ----------------------------------------------

    def mkdir(self, path: str, mode: int = 0o755, parents: bool = False, exist_ok: bool = False) -> None:
        def on_ref() -> None:
            real = self.ref.real(path)
            if parents:
                os.makedirs(real, mode, exist_ok=exist_ok)
                return
            try:
                os.mkdir(real, mode)
            except FileExistsError:
                if not (exist_ok and os.path.isdir(real)):
                    raise

        self.compare(f"vol.mkdir({path!r}, {mode:#o}, parents={parents}, exist_ok={exist_ok})",
                     lambda: self.vol.mkdir(path, mode, parents=parents, exist_ok=exist_ok), on_ref)

    def rmdir(self, path: str) -> None:
        self.compare(f"vol.rmdir({path!r})", lambda: self.vol.rmdir(path),
                     lambda: os.rmdir(self.ref.real(path, for_rmdir=True)))

    def unlink(self, path: str) -> None:
        self.compare(f"vol.unlink({path!r})", lambda: self.vol.unlink(path),
                     lambda: os.unlink(self.ref.real(path)))

    def rename(self, src: str, dst: str, replace: bool = True) -> None:
        def on_ref() -> None:
            if replace:
                os.rename(self.ref.real(src), self.ref.real(dst))
            else:
                rename_noreplace(self.ref.real(src), self.ref.real(dst))

        self.compare(f"vol.rename({src!r}, {dst!r}, replace={replace})",
                     lambda: self.vol.rename(src, dst, replace=replace), on_ref)

    def link(self, src: str, dst: str) -> None:
        self.compare(f"vol.link({src!r}, {dst!r})", lambda: self.vol.link(src, dst),
                     lambda: os.link(self.ref.real(src), self.ref.real(dst)))

    def chmod(self, path: str, mode: int) -> None:
        self.compare(f"vol.chmod({path!r}, {mode:#o})", lambda: self.vol.chmod(path, mode),
                     lambda: os.chmod(self.ref.real(path), mode))

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        def on_dax() -> tuple[int, int]:
            self.vol.utime(path, ns=(atime_ns, mtime_ns))
            st_result = self.vol.stat(path)
            return (st_result.st_atime_ns, st_result.st_mtime_ns)

        def on_ref() -> tuple[int, int]:
            real = self.ref.real(path)
            os.utime(real, ns=(atime_ns, mtime_ns))
            st_result = os.stat(real)
            return (st_result.st_atime_ns, st_result.st_mtime_ns)

        self.compare(f"vol.utime({path!r}, ns=({atime_ns}, {mtime_ns}))", on_dax, on_ref)

    def listdir(self, path: str) -> None:
        self.compare(f"vol.listdir({path!r})", lambda: sorted(self.vol.listdir(path)),
                     lambda: sorted(os.listdir(self.ref.real(path))))

    def stat(self, path: str) -> None:
        self.compare(f"vol.stat({path!r})", lambda: stat_view(self.vol.stat(path)),
                     lambda: stat_view(os.stat(self.ref.real(path))))

    def exists(self, path: str) -> None:
        self.compare(f"vol.exists({path!r})", lambda: self.vol.exists(path),
                     lambda: os.path.exists(self.ref.real(path)))

    # -- opening and closing -------------------------------------------------

    def open(self, path: str, mode: str) -> None:
        label = f"h{self.handle_count}"
        call = f"vol.open({path!r}, {mode!r})"
        self.log.append(call)
        dax = ref = None
        try:
            dax = self.vol.open(path, mode, buffering=0)
        except Exception as exc:  # noqa: BLE001
            got = ("error", error_kind(exc))
        else:
            got = ("ok", None)
        try:
            ref = open(self.ref.real(path), mode, buffering=0)
        except Exception as exc:  # noqa: BLE001
            want = ("error", error_kind(exc))
        else:
            want = ("ok", None)
        if got != want:
            for f in (dax, ref):
                if f is not None:
                    f.close()
            self.fail(f"{call}: daxfs -> {got}, os -> {want}")
        if dax is None:
            self.log[-1] += f"  # {got[1]}"
        else:
            self.log[-1] = f"{label} = {call}"
            self.handle_count += 1
            self.handles.append(HandlePair(label, dax, ref, mode))

    def close(self, h: HandlePair) -> None:
        self.handles.remove(h)
        self.compare(f"{h.label}.close()", h.dax.close, h.ref.close)

    # -- operations on open files --------------------------------------------

    def read(self, h: HandlePair, n: int) -> None:
        self.compare(f"{h.label}.read({n})", lambda: h.dax.read(n), lambda: h.ref.read(n))

    def readinto(self, h: HandlePair, n: int) -> None:
        def into(f: Any) -> tuple[int, bytes]:
            buf = bytearray(b"\xee" * n)
            count = f.readinto(buf)
            return (count, bytes(buf))

        self.compare(f"{h.label}.readinto(bytearray({n}))", lambda: into(h.dax), lambda: into(h.ref))

    def pread(self, h: HandlePair, n: int, offset: int) -> None:
        self.compare(f"{h.label}.pread({n}, {offset})", lambda: h.dax.pread(n, offset),
                     lambda: os.pread(h.ref.fileno(), n, offset))

    def preadinto(self, h: HandlePair, n: int, offset: int) -> None:
        def on_dax() -> tuple[int, bytes]:
            buf = bytearray(b"\xee" * n)
            return (h.dax.preadinto(buf, offset), bytes(buf))

        def on_ref() -> tuple[int, bytes]:
            buf = bytearray(b"\xee" * n)
            return (os.preadv(h.ref.fileno(), [buf], offset), bytes(buf))

        self.compare(f"{h.label}.preadinto(bytearray({n}), {offset})", on_dax, on_ref)

    def write(self, h: HandlePair, n: int, seed: int) -> None:
        data = payload(n, seed)
        self.compare(f"{h.label}.write(payload({n}, {seed}))", lambda: h.dax.write(data),
                     lambda: h.ref.write(data))

    def pwrite(self, h: HandlePair, n: int, seed: int, offset: int) -> None:
        data = payload(n, seed)
        self.compare(f"{h.label}.pwrite(payload({n}, {seed}), {offset})", lambda: h.dax.pwrite(data, offset),
                     lambda: os.pwrite(h.ref.fileno(), data, offset))

    def seek(self, h: HandlePair, offset: int, whence: int) -> None:
        self.compare(f"{h.label}.seek({offset}, {whence})", lambda: h.dax.seek(offset, whence),
                     lambda: h.ref.seek(offset, whence))

    def tell(self, h: HandlePair) -> None:
        self.compare(f"{h.label}.tell()", h.dax.tell, h.ref.tell)

    def truncate(self, h: HandlePair, size: int) -> None:
        # ftruncate(2) on a read-only descriptor is EINVAL; FileIO says UnsupportedOperation.
        self.compare(f"{h.label}.truncate({size})", lambda: h.dax.truncate(size), lambda: h.ref.truncate(size),
                     also_accept=("EINVAL",) if not h.writable else ())

    def fallocate(self, h: HandlePair, offset: int, length: int, keep_size: bool) -> None:
        mode = FALLOC_FL_KEEP_SIZE if keep_size else 0
        self.compare(f"{h.label}.fallocate({offset}, {length}, keep_size={keep_size})",
                     lambda: h.dax.fallocate(offset, length, keep_size=keep_size),
                     lambda: linux_fallocate(h.ref.fileno(), mode, offset, length))

    def punch_hole(self, h: HandlePair, offset: int, length: int) -> None:
        self.compare(f"{h.label}.punch_hole({offset}, {length})", lambda: h.dax.punch_hole(offset, length),
                     lambda: linux_fallocate(h.ref.fileno(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                             offset, length))

    def zero_range(self, h: HandlePair, offset: int, length: int, keep_size: bool) -> None:
        self.compare(f"{h.label}.zero_range({offset}, {length}, keep_size={keep_size})",
                     lambda: h.dax.zero_range(offset, length, keep_size=keep_size),
                     lambda: tmpfs_zero_range(h.ref.fileno(), offset, length, keep_size))

    def fstat(self, h: HandlePair) -> None:
        self.compare(f"{h.label}.stat()", lambda: stat_view(h.dax.stat()),
                     lambda: stat_view(os.fstat(h.ref.fileno())))

    def fsync(self, h: HandlePair) -> None:
        self.compare(f"{h.label}.fsync()", h.dax.fsync, lambda: os.fsync(h.ref.fileno()))

    # -- end of a sequence ---------------------------------------------------

    def finish(self) -> None:
        """Close every handle, check the tree, fsck, remount, check again, fsck again."""
        for h in list(self.handles):
            self.close(h)
        self.check_tree(" before remount")
        self.log.append("vol.fsck()")
        problems = self.vol.fsck()
        if problems != []:
            self.fail(f"fsck found problems: {problems}")
        self.log.append("vol.close(); vol = daxfs.open_volume(POOL)")
        self.vol.close()
        self.vol = daxfs.open_volume(self.pool)
        self.check_tree(" after remount")
        problems = self.vol.fsck()
        if problems != []:
            self.fail(f"fsck after remount found problems: {problems}")

    def cleanup(self) -> None:
        """Release everything, whatever state a failure left behind; never raises."""
        for h in self.handles:
            for f in (h.dax, h.ref):
                try:
                    f.close()
                except Exception:  # noqa: BLE001
                    pass
        self.handles.clear()
        try:
            self.vol.close(force=True)
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------
# driver 1: seeded plain random


def random_offset(rng: random.Random) -> int:
    return rng.choice(OFFSET_EDGES) if rng.random() < 0.5 else rng.randrange(0, 6 * BLOCK)


def random_length(rng: random.Random) -> int:
    return rng.choice(LENGTH_EDGES) if rng.random() < 0.5 else rng.randrange(0, 3 * BLOCK + 2)


def random_step(rng: random.Random, d: Differential) -> None:
    """One random operation, weighted towards file I/O while handles are open."""
    name = lambda: rng.choice(NAMES)  # noqa: E731
    namespace_ops: list[tuple[int, Callable[[], None]]] = [
        (6, lambda: d.mkdir(name(), rng.choice(DIR_MODES), rng.random() < 0.2, rng.random() < 0.2)),
        (3, lambda: d.rmdir(name())),
        (4, lambda: d.unlink(name())),
        (6, lambda: d.rename(name(), name(), rng.random() < 0.8)),
        (3, lambda: d.link(name(), name())),
        (2, lambda: d.chmod(name(), rng.choice(CHMOD_MODES))),
        (1, lambda: d.utime(name(), rng.randrange(1 << 40), rng.randrange(1 << 40))),
        (2, lambda: d.listdir(rng.choice(["/", *NAMES]))),
        (2, lambda: d.stat(name())),
        (1, lambda: d.exists(name())),
    ]
    if len(d.handles) < MAX_OPEN:
        namespace_ops.append((10, lambda: d.open(name(), rng.choice(OPEN_MODES))))
    file_ops: list[tuple[int, Callable[[HandlePair], None]]] = []
    if d.handles:
        file_ops = [
            (3, lambda h: d.read(h, rng.choice([-1, 0, 1, 100, 4096, 5000]))),
            (1, lambda h: d.readinto(h, rng.choice([0, 1, 100, 4097]))),
            (4, lambda h: d.pread(h, random_length(rng), random_offset(rng))),
            (1, lambda h: d.preadinto(h, random_length(rng), random_offset(rng))),
            (8, lambda h: d.write(h, random_length(rng), rng.randrange(1 << 20))),
            (8, lambda h: d.pwrite(h, random_length(rng), rng.randrange(1 << 20), random_offset(rng))),
            (3, lambda h: d.seek(h, *rng.choice([(random_offset(rng), 0), (rng.randrange(-5000, 5000), 1),
                                                  (rng.randrange(-5000, 5000), 2)]))),
            (1, lambda h: d.tell(h)),
            (4, lambda h: d.truncate(h, rng.choice([0, 1, 4095, 4096, 4097, 10000, rng.randrange(8 * BLOCK)]))),
            (3, lambda h: d.fallocate(h, random_offset(rng), random_length(rng), rng.random() < 0.5)),
            (3, lambda h: d.punch_hole(h, random_offset(rng), random_length(rng))),
            (3, lambda h: d.zero_range(h, random_offset(rng), random_length(rng), rng.random() < 0.5)),
            (1, lambda h: d.fstat(h)),
            (1, lambda h: d.fsync(h)),
            (4, lambda h: d.close(h)),
        ]
    total = sum(w for w, _ in namespace_ops) + sum(w for w, _ in file_ops)
    pick = rng.randrange(total)
    for weight, op in namespace_ops:
        if pick < weight:
            op()
            return
        pick -= weight
    for weight, file_op in file_ops:
        if pick < weight:
            file_op(rng.choice(d.handles))
            return
        pick -= weight


@pytest.mark.parametrize("seed", range(20))
def test_random_operations_match_tmpfs(seed: int) -> None:
    """200 random operations from ``seed``: every outcome and the whole tree equal tmpfs's."""
    rng = random.Random(seed)
    d = Differential()
    try:
        for step in range(200):
            random_step(rng, d)
            d.check_tree(f" after step {step} (seed {seed})")
        d.finish()
    finally:
        d.cleanup()


# --------------------------------------------------------------------------
# pinned sequences: the interesting cases, spelled out so a failure names them


@pytest.fixture
def differential():
    d = Differential()
    try:
        yield d
    finally:
        d.cleanup()


def test_sparse_file_blocks_follow_tmpfs(differential: Differential) -> None:
    """Holes, fallocate beyond EOF, punch and zero_range: contents and st_blocks as tmpfs."""
    d = differential
    d.open("a", "w+b")
    h = d.handles[0]
    steps = [
        lambda: d.pwrite(h, 1, 1, 5000),                    # one byte in block 1: a hole before it
        lambda: d.fallocate(h, 8192, 10000, True),          # blocks 2..4 beyond EOF, size kept
        lambda: d.fallocate(h, 30000, 100, False),          # extends the size
        lambda: d.punch_hole(h, 4096, 4096),                # frees block 1 entirely
        lambda: d.pwrite(h, 3 * BLOCK + 1, 2, 1),           # unaligned, over the punched hole
        lambda: d.punch_hole(h, 100, 200),                  # partial block: zeroed, stays allocated
        lambda: d.zero_range(h, 5000, 9000, False),
        lambda: d.zero_range(h, 40000, 5000, True),         # beyond EOF, size kept
        lambda: d.zero_range(h, 40000, 5000, False),        # beyond EOF, size grows
        lambda: d.truncate(h, 4097),
        lambda: d.truncate(h, 50000),                       # up: a hole, no blocks
        lambda: d.pread(h, 60000, 0),
    ]
    for step in steps:
        step()
        d.check_tree()
    d.finish()


def test_zero_range_past_eof_reads_zeros_before_it(differential: Differential) -> None:
    """Growing a file with zero_range: the gap between the old EOF and the range reads as zeros."""
    d = differential
    d.open("a", "w+b")
    h = d.handles[0]
    d.pwrite(h, BLOCK, 1, 0)
    d.truncate(h, 1)                                       # old bytes 1..4095 must never come back
    d.zero_range(h, 2000, 10, False)
    d.pread(h, BLOCK, 0)
    d.check_tree()
    d.finish()


def test_unlinked_open_file_stays_readable_until_close(differential: Differential) -> None:
    """POSIX: after unlink the open handle still reads and writes the data, nlink 0."""
    d = differential
    d.open("a", "wb")
    d.write(d.handles[0], 3 * BLOCK + 5, 7)
    d.open("a", "r+b")
    d.unlink("a")
    d.check_tree()
    d.pwrite(d.handles[1], 10, 8, 2)
    d.pread(d.handles[1], 4 * BLOCK, 0)
    d.fstat(d.handles[0])
    d.open("a", "xb")                                      # the name is free again
    d.check_tree()
    d.finish()


def test_truncating_open_affects_other_handles(differential: Differential) -> None:
    """Opening with "wb" truncates the file under a handle that is already open."""
    d = differential
    d.open("a", "wb")
    d.write(d.handles[0], 9000, 1)
    d.open("a", "rb")
    d.seek(d.handles[1], 5000, 0)
    d.open("a", "w+b")
    d.read(d.handles[1], 100)
    d.write(d.handles[0], 10, 2)                           # at its old position: a hole before it
    d.check_tree()
    d.finish()


def test_append_handle_starts_at_end_of_file(differential: Differential) -> None:
    """open(..., "ab"/"a+b") positions at EOF (FileIO seeks there at open), so read() gives b""."""
    d = differential
    d.open("a", "wb")
    d.write(d.handles[0], 100, 1)
    d.open("a", "ab")
    d.tell(d.handles[1])
    d.open("a", "a+b")
    d.read(d.handles[2], -1)
    d.tell(d.handles[2])
    d.finish()


def test_append_mode_writes_go_to_end(differential: Differential) -> None:
    """O_APPEND: write and (on Linux) pwrite append, whatever the position; tell follows."""
    d = differential
    d.open("a", "wb")
    d.write(d.handles[0], 100, 1)
    d.open("a", "a+b")
    h = d.handles[1]
    d.seek(h, 0, 0)
    d.read(h, 10)
    d.write(h, 5, 2)
    d.tell(h)
    d.write(d.handles[0], 50, 3)                           # the other handle overwrites in the middle
    d.write(h, 5, 4)
    d.pwrite(h, 3, 5, 0)                                   # Linux: pwrite on O_APPEND appends
    d.tell(h)
    d.check_tree()
    d.finish()


def test_empty_write_in_append_mode_does_not_move(differential: Differential) -> None:
    """Linux moves an O_APPEND file's position only when write actually writes something."""
    d = differential
    d.open("a", "wb")
    d.write(d.handles[0], 100, 1)
    d.open("a", "ab")
    h = d.handles[1]
    d.seek(h, 7, 0)
    d.write(h, 0, 2)
    d.tell(h)
    d.finish()


def test_rename_directories_and_over_existing(differential: Differential) -> None:
    """Directory renames (into itself: EINVAL), over files and directories, replace=False."""
    d = differential
    for path in ("d", "d/e", "e"):
        d.mkdir(path)
    d.open("d/x", "wb")
    d.open("a", "wb")
    d.rename("d", "d/e/x")                                 # EINVAL
    d.rename("d/e", "d")                                   # ENOTEMPTY
    d.rename("a", "d/x", replace=False)                    # EEXIST
    d.rename("a", "d/x")                                   # replaces, the open handle lives on
    d.rename("e", "d/e")                                   # an empty directory over an empty one
    d.rename("d", "e")
    d.rename("e/x", "e/x")
    d.link("e/x", "b")
    d.rename("b", "e/x")                                   # two names of one inode: nothing happens
    d.write(d.handles[0], 10, 9)
    d.check_tree()
    d.finish()


# --------------------------------------------------------------------------
# driver 2: hypothesis state machine

names = st.sampled_from(NAMES)
offsets = st.one_of(st.sampled_from(OFFSET_EDGES), st.integers(0, 6 * BLOCK))
lengths = st.one_of(st.sampled_from(LENGTH_EDGES), st.integers(0, 3 * BLOCK + 1))
handle_index = st.integers(0, MAX_OPEN - 1)
seeds = st.integers(0, 1 << 20)


class DaxfsAgainstTmpfs(RuleBasedStateMachine):
    """Random operation sequences; after each, the daxfs tree must equal the tmpfs tree."""

    def __init__(self) -> None:
        super().__init__()
        self.d = Differential()

    def pick(self, index: int) -> HandlePair:
        return self.d.handles[index % len(self.d.handles)]

    def has_handles(self) -> bool:
        return bool(self.d.handles)

    @rule(path=names, mode=st.sampled_from(DIR_MODES), parents=st.booleans(), exist_ok=st.booleans())
    def mkdir(self, path: str, mode: int, parents: bool, exist_ok: bool) -> None:
        self.d.mkdir(path, mode, parents, exist_ok)

    @rule(path=names)
    def rmdir(self, path: str) -> None:
        self.d.rmdir(path)

    @rule(path=names)
    def unlink(self, path: str) -> None:
        self.d.unlink(path)

    @rule(src=names, dst=names, replace=st.booleans())
    def rename(self, src: str, dst: str, replace: bool) -> None:
        self.d.rename(src, dst, replace)

    @rule(src=names, dst=names)
    def link(self, src: str, dst: str) -> None:
        self.d.link(src, dst)

    @rule(path=names, mode=st.sampled_from(CHMOD_MODES))
    def chmod(self, path: str, mode: int) -> None:
        self.d.chmod(path, mode)

    @rule(path=st.sampled_from(["/", *NAMES]))
    def listdir(self, path: str) -> None:
        self.d.listdir(path)

    @rule(path=names)
    def stat(self, path: str) -> None:
        self.d.stat(path)

    @rule(path=names)
    def exists(self, path: str) -> None:
        self.d.exists(path)

    @rule(path=names, atime_ns=st.integers(0, 1 << 40), mtime_ns=st.integers(0, 1 << 40))
    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        self.d.utime(path, atime_ns, mtime_ns)

    @precondition(lambda self: len(self.d.handles) < MAX_OPEN)
    @rule(path=names, mode=st.sampled_from(OPEN_MODES))
    def open(self, path: str, mode: str) -> None:
        self.d.open(path, mode)

    @precondition(has_handles)
    @rule(i=handle_index)
    def close(self, i: int) -> None:
        self.d.close(self.pick(i))

    @precondition(has_handles)
    @rule(i=handle_index, n=st.sampled_from([-1, 0, 1, 100, 4096, 5000]))
    def read(self, i: int, n: int) -> None:
        self.d.read(self.pick(i), n)

    @precondition(has_handles)
    @rule(i=handle_index, n=st.sampled_from([0, 1, 100, 4097]))
    def readinto(self, i: int, n: int) -> None:
        self.d.readinto(self.pick(i), n)

    @precondition(has_handles)
    @rule(i=handle_index)
    def tell(self, i: int) -> None:
        self.d.tell(self.pick(i))

    @precondition(has_handles)
    @rule(i=handle_index)
    def fstat(self, i: int) -> None:
        self.d.fstat(self.pick(i))

    @precondition(has_handles)
    @rule(i=handle_index)
    def fsync(self, i: int) -> None:
        self.d.fsync(self.pick(i))

    @precondition(has_handles)
    @rule(i=handle_index, n=lengths, offset=offsets)
    def pread(self, i: int, n: int, offset: int) -> None:
        self.d.pread(self.pick(i), n, offset)

    @precondition(has_handles)
    @rule(i=handle_index, n=lengths, offset=offsets)
    def preadinto(self, i: int, n: int, offset: int) -> None:
        self.d.preadinto(self.pick(i), n, offset)

    @precondition(has_handles)
    @rule(i=handle_index, n=lengths, seed=seeds)
    def write(self, i: int, n: int, seed: int) -> None:
        self.d.write(self.pick(i), n, seed)

    @precondition(has_handles)
    @rule(i=handle_index, n=lengths, seed=seeds, offset=offsets)
    def pwrite(self, i: int, n: int, seed: int, offset: int) -> None:
        self.d.pwrite(self.pick(i), n, seed, offset)

    @precondition(has_handles)
    @rule(i=handle_index, offset=st.integers(-3 * BLOCK, 6 * BLOCK), whence=st.sampled_from([0, 1, 2]))
    def seek(self, i: int, offset: int, whence: int) -> None:
        self.d.seek(self.pick(i), offset, whence)

    @precondition(has_handles)
    @rule(i=handle_index, size=st.one_of(st.sampled_from(OFFSET_EDGES), st.integers(0, 8 * BLOCK)))
    def truncate(self, i: int, size: int) -> None:
        self.d.truncate(self.pick(i), size)

    @precondition(has_handles)
    @rule(i=handle_index, offset=offsets, length=lengths, keep_size=st.booleans())
    def fallocate(self, i: int, offset: int, length: int, keep_size: bool) -> None:
        self.d.fallocate(self.pick(i), offset, length, keep_size)

    @precondition(has_handles)
    @rule(i=handle_index, offset=offsets, length=lengths)
    def punch_hole(self, i: int, offset: int, length: int) -> None:
        self.d.punch_hole(self.pick(i), offset, length)

    @precondition(has_handles)
    @rule(i=handle_index, offset=offsets, length=lengths, keep_size=st.booleans())
    def zero_range(self, i: int, offset: int, length: int, keep_size: bool) -> None:
        self.d.zero_range(self.pick(i), offset, length, keep_size)

    @invariant()
    def trees_agree(self) -> None:
        self.d.check_tree()

    def teardown(self) -> None:
        try:
            if not self.d.failed:
                self.d.finish()
        finally:
            self.d.cleanup()


DaxfsAgainstTmpfs.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    report_multiple_bugs=False,     # shrink one failure, not each distinct one (keeps a failing run short)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestDaxfsAgainstTmpfs = DaxfsAgainstTmpfs.TestCase
