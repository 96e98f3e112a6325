"""A short fsx-like differential: the same seeded random operations on a file on the mount and
on a file in tmpfs (/dev/shm), byte for byte and size for size after every one; and the
same for a small namespace (every call's outcome, errno included, and the tree after).

The long runs (xfstests' fsx for a million operations, fsstress) are in the README's note;
this one is small enough for every test run.
"""

from __future__ import annotations

import errno
import mmap
import os
import random
import shutil
import stat as st
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from daxfs.testing.oscalls import RENAME_EXCHANGE, RENAME_NOREPLACE, fallocate, renameat2

from _fusemount import WHY, Mounted, mount_dir, mounted, pool_path  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(WHY is not None, reason=f"no FUSE here: {WHY}")

BS = 4096
MAX_SIZE = 256 * 1024
KEEP, PUNCH, ZERO = 0x01, 0x02, 0x10


@pytest.fixture
def tmpfs_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="daxfs-fsx-", dir="/dev/shm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", call())
    except OSError as exc:
        return ("errno", exc.errno)


class Pair:
    """The same file open on the mount and in tmpfs, and a source file for copies in each."""

    def __init__(self, mount: str, tmpfs: str, rng: random.Random) -> None:
        source = rng.randbytes(MAX_SIZE // 2)
        self.fds: list[int] = []
        self.writers: list[int] = []
        self.srcs: list[int] = []
        for root in (mount, tmpfs):
            with open(f"{root}/source", "wb") as fh:
                fh.write(source)
            self.srcs.append(os.open(f"{root}/source", os.O_RDONLY))
            self.fds.append(os.open(f"{root}/file", os.O_RDWR | os.O_CREAT, 0o644))
            # a second, write-only descriptor of the same file: its writes must show through the
            # other descriptor and the mappings (a version of the mount that bypassed the kernel's
            # page cache for write-only descriptors was checked this way)
            self.writers.append(os.open(f"{root}/file", os.O_WRONLY))

    def both(self, op: Callable[[int, int], Any]) -> None:
        results = [_outcome(lambda i=i: op(self.fds[i], self.srcs[i])) for i in (0, 1)]
        assert results[0] == results[1], results

    def check(self) -> None:
        sizes = [os.fstat(fd).st_size for fd in self.fds]
        assert sizes[0] == sizes[1]
        assert os.pread(self.fds[0], sizes[0] + 1, 0) == os.pread(self.fds[1], sizes[1] + 1, 0)

    def by_writer(self, op: Callable[[int], Any]) -> None:
        results = [_outcome(lambda i=i: op(self.writers[i])) for i in (0, 1)]
        assert results[0] == results[1], results

    def close(self) -> None:
        for fd in self.fds + self.writers + self.srcs:
            os.close(fd)


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2); tmpfs has no FALLOC_FL_ZERO_RANGE (EOPNOTSUPP): there it is done as what it
    means, a punched hole and, without KEEP_SIZE, the size grown to the range's end."""
    try:
        fallocate(fd, mode, offset, length)
    except OSError as exc:
        if exc.errno != errno.EOPNOTSUPP or not mode & ZERO:
            raise
        fallocate(fd, PUNCH | KEEP, offset, length)
        if not mode & KEEP and os.fstat(fd).st_size < offset + length:
            os.ftruncate(fd, offset + length)


def _mmap_write(fd: int, offset: int, data: bytes) -> int:
    size = os.fstat(fd).st_size
    end = min(size, offset + len(data))
    if end <= offset:
        return 0
    with mmap.mmap(fd, size) as m:
        m[offset:end] = data[:end - offset]
        m.flush()
    return end - offset


def _mmap_read(fd: int, offset: int, n: int) -> bytes:
    size = os.fstat(fd).st_size
    if size == 0:
        return b""
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
        return bytes(m[offset:offset + n])


@pytest.mark.parametrize("seed", [1, 2])
def test_random_file_operations_match_tmpfs(mounted: Mounted, tmpfs_dir: str, seed: int) -> None:
    rng = random.Random(seed)
    pair = Pair(mounted.root, tmpfs_dir, rng)
    try:
        for step in range(300):
            off = rng.randrange(0, MAX_SIZE)
            n = rng.choice([1, 100, BS - 1, BS, 3 * BS + 7, rng.randrange(1, 40000)])
            n = min(n, MAX_SIZE - off) or 1
            kind = rng.randrange(11)
            data = rng.randbytes(n)
            if kind <= 1:
                pair.both(lambda fd, _s: os.pwrite(fd, data, off))
            elif kind == 2:
                pair.by_writer(lambda fd: os.pwrite(fd, data, off))
            elif kind == 3:
                pair.both(lambda fd, _s: os.pread(fd, n, off))
            elif kind == 4:
                pair.both(lambda fd, _s: os.ftruncate(fd, off))
            elif kind == 5:
                mode = rng.choice([0, KEEP, PUNCH | KEEP, ZERO, ZERO | KEEP])
                pair.both(lambda fd, _s: _fallocate(fd, mode, off, n))
            elif kind == 6:
                src = rng.randrange(0, MAX_SIZE // 2)
                pair.both(lambda fd, s: os.copy_file_range(s, fd, n, src, off))
            elif kind == 7:
                pair.both(lambda fd, _s: _mmap_write(fd, off, data))
            elif kind == 8:
                pair.both(lambda fd, _s: _mmap_read(fd, off, n))
            elif kind == 9:           # block-aligned copies: shared blocks on daxfs, then overwritten
                src = rng.randrange(0, MAX_SIZE // 2 // BS) * BS
                dst = rng.randrange(0, MAX_SIZE // BS) * BS
                k = rng.randrange(1, 8) * BS
                pair.both(lambda fd, s: os.copy_file_range(s, fd, k, src, dst))
            else:
                pair.both(lambda fd, _s: os.fsync(fd))
            pair.check()
    finally:
        pair.close()
    assert mounted.client.fsck() == []


NAMES = ["a", "b", "d", "d/x", "d/y", "e", "e/z"]


def _tree(root: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            s = os.lstat(full)
            rel = os.path.relpath(full, root)
            if st.S_ISLNK(s.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif st.S_ISDIR(s.st_mode):
                out[rel] = ("dir", st.S_IMODE(s.st_mode), s.st_nlink)
            else:
                with open(full, "rb") as fh:
                    out[rel] = ("file", st.S_IMODE(s.st_mode), s.st_nlink, fh.read())
    return out


def test_random_namespace_operations_match_tmpfs(mounted: Mounted, tmpfs_dir: str) -> None:
    rng = random.Random(7)
    roots = (mounted.root, tmpfs_dir)
    for step in range(300):
        a, b = rng.choice(NAMES), rng.choice(NAMES)
        kind = rng.randrange(10)
        payload = rng.randbytes(rng.randrange(0, 3000))
        ops: dict[int, Callable[[str], Any]] = {
            0: lambda r: open(f"{r}/{a}", "wb").write(payload),
            1: lambda r: os.mkdir(f"{r}/{a}", 0o755),
            2: lambda r: os.rmdir(f"{r}/{a}"),
            3: lambda r: os.unlink(f"{r}/{a}"),
            4: lambda r: os.rename(f"{r}/{a}", f"{r}/{b}"),
            5: lambda r: os.link(f"{r}/{a}", f"{r}/{b}"),
            6: lambda r: os.symlink(b, f"{r}/{a}"),
            7: lambda r: renameat2(f"{r}/{a}", f"{r}/{b}", RENAME_NOREPLACE),
            8: lambda r: renameat2(f"{r}/{a}", f"{r}/{b}", RENAME_EXCHANGE),
            9: lambda r: os.chmod(f"{r}/{a}", rng_mode),
        }
        rng_mode = rng.choice([0o600, 0o644, 0o755, 0o700])
        results = [_outcome(lambda r=r: ops[kind](r)) for r in roots]
        if results[0] != results[1] and {results[0][1], results[1][1]} <= {errno.EISDIR, errno.EPERM}:
            results[1] = results[0]     # link(dir): Linux's EPERM; open(dir, "wb"): EISDIR; same refusal
        assert results[0] == results[1], (step, kind, a, b, results)
        assert _tree(roots[0]) == _tree(roots[1]), (step, kind, a, b)
    assert mounted.client.fsck() == []
