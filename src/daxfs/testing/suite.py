"""VolumeSuite: the volume tests, written once, run by every front end.

A front end (the embedded ``Volume``, a client of the server, ...) subclasses
``VolumeSuite`` in its own test module and provides two pytest fixtures:

- ``volume``: a fresh, empty, read-write volume (small: 8 to 32 MiB of data
  area, so the ENOSPC test can fill it quickly);
- ``reopen``: a callable ``reopen(vol) -> vol`` that closes the volume and
  returns the same pool mounted again.

Tests reach ``reopen`` through the ``remount`` fixture, which also checks
fsck before and after, and every test ends with ``fsck() == []`` on the
volume it left mounted.

What the suite proves, on whatever front end runs it (Linux semantics where
Linux has them):

- namespace: mkdir (parents, exist_ok), listdir, rename of files and
  directories (over existing targets, replace=False, into itself), hard links
  and link counts, unlink, rmdir (ENOTEMPTY), chmod, utime with nanoseconds;
- open modes rb/r+b/wb/w+b/xb/ab/a+b: creation, truncation, exclusivity,
  appending (pwrite on an append handle appends), EBADF for the wrong
  direction, ValueError after close, binary only;
- sparse files and holes read as zeros; truncate down then up shows zeros,
  never the old bytes; fallocate/punch_hole/zero_range with and without
  keep_size change size and st_blocks as on Linux; SEEK_DATA/SEEK_HOLE;
  extents() reports holes and "unwritten" runs;
- readinto/preadinto into bytearrays, memoryviews and NumPy arrays;
- an unlinked open file stays usable through its handle and its space comes
  back when the handle closes;
- ENOSPC is all-or-nothing; a freed block reused by another file never
  shows its old bytes;
- everything (contents, modes, link counts, sizes, times) survives reopen.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat as st
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from daxfs.testing.workload import walk

__all__ = ["VolumeSuite"]

SEEK_DATA = getattr(os, "SEEK_DATA", 3)
SEEK_HOLE = getattr(os, "SEEK_HOLE", 4)


# ---------------------------------------------------------------- helpers


def write_file(vol: Any, path: str, data: bytes, mode: str = "wb") -> None:
    with vol.open(path, mode) as f:
        assert f.write(data) == len(data)


def read_file(vol: Any, path: str) -> bytes:
    with vol.open(path, "rb") as f:
        return f.read()


def allocated(vol: Any, path: str) -> int:
    """Bytes allocated to a file (st_blocks is in 512-byte units)."""
    return vol.stat(path).st_blocks * 512


def pattern(n: int, seed: int = 1) -> bytes:
    """``n`` bytes that differ from block to block and contain no zero byte."""
    unit = bytes((i * 7 + seed) % 251 + 1 for i in range(4099))
    return (unit * (n // len(unit) + 1))[:n]


def errno_of(excinfo: pytest.ExceptionInfo) -> int | None:
    return getattr(excinfo.value, "errno", None)


def tree_state(vol: Any) -> dict[str, tuple]:
    """Every path with what a user sees of it: type, mode, nlink, size, blocks, mtime, bytes."""
    out: dict[str, tuple] = {}
    for path, s in walk(vol):
        if st.S_ISDIR(s.st_mode):
            out[path] = ("dir", s.st_mode, s.st_nlink, s.st_mtime_ns)
        else:
            out[path] = ("file", s.st_mode, s.st_nlink, s.st_size, s.st_blocks, s.st_mtime_ns,
                         s.st_ino, read_file(vol, path))
    return out


class Remount:
    """``remount(vol) -> vol``: fsck, reopen through the front end, fsck again; remembers
    the volume left mounted so the suite can check it after the test."""

    def __init__(self, volume: Any, reopen: Callable[[Any], Any]) -> None:
        self.current = volume
        self._reopen = reopen

    def __call__(self, vol: Any) -> Any:
        assert vol is self.current, "remount the volume the test holds now"
        assert vol.fsck() == [], "unclean before reopen"
        self.current = self._reopen(vol)
        assert self.current.fsck() == [], "unclean after reopen"
        return self.current


# ---------------------------------------------------------------- the suite


class VolumeSuite:
    """Behaviour every daxfs front end shows.  Subclasses provide ``volume`` and ``reopen``."""

    @pytest.fixture
    def remount(self, volume: Any, reopen: Callable[[Any], Any]) -> Remount:
        return Remount(volume, reopen)

    @pytest.fixture(autouse=True)
    def _fsck_clean_after_test(self, remount: Remount):  # type: ignore[no-untyped-def]
        yield
        vol = remount.current
        if not getattr(vol, "closed", False):
            assert vol.fsck() == [], "fsck after the test"

    # ------------------------------------------------------------ namespace

    def test_new_volume_is_empty(self, volume: Any) -> None:
        assert volume.listdir("/") == []
        root = volume.stat("/")
        assert root.is_dir() and root.st_nlink == 2
        fs = volume.statfs()
        assert fs.used == 0 and fs.free == fs.size > 0 and fs.files == 1
        assert fs.free + fs.used + fs.busy + fs.bad == fs.size

    def test_mkdir_parents_and_exist_ok(self, volume: Any) -> None:
        with pytest.raises(FileNotFoundError):
            volume.mkdir("a/b/c")
        assert not volume.exists("a")
        volume.mkdir("a/b/c", parents=True)
        for p in ("a", "a/b", "a/b/c", "/a/b/c/", "a//b"):
            assert volume.stat(p).is_dir()
        with pytest.raises(FileExistsError):
            volume.mkdir("a/b")
        volume.mkdir("a/b", exist_ok=True)
        volume.mkdir("a/b/c", parents=True, exist_ok=True)
        write_file(volume, "a/f", b"x")
        with pytest.raises(FileExistsError):
            volume.mkdir("a/f", exist_ok=True)          # exist_ok is for directories only
        with pytest.raises(NotADirectoryError):
            volume.mkdir("a/f/g", parents=True)
        with pytest.raises(NotADirectoryError):
            volume.listdir("a/f")
        with pytest.raises(FileNotFoundError):
            volume.listdir("nope")
        volume.mkdir("m", mode=0o750)
        mode = st.S_IMODE(volume.stat("m").st_mode)
        assert mode & ~0o750 == 0 and mode & 0o700 == 0o700
        # a directory's link count is 2 plus its subdirectories
        assert volume.stat("/").st_nlink == 4
        assert volume.stat("a").st_nlink == 3 and volume.stat("a/b/c").st_nlink == 2

    def test_listdir_and_exists(self, volume: Any) -> None:
        names = ["one", "two", "three", "caf\u00e9", "with space"]
        for n in names:
            write_file(volume, n, n.encode())
        volume.mkdir("sub")
        write_file(volume, "sub/inner", b"")
        assert sorted(volume.listdir()) == sorted(names + ["sub"])
        assert volume.listdir("sub") == ["inner"]
        assert volume.exists("sub/inner") and volume.exists("/one") and not volume.exists("sub/two")
        assert volume.stat("/").st_nlink == 3
        assert volume.statfs().files == 1 + len(names) + 2

    def test_rename_file(self, volume: Any) -> None:
        write_file(volume, "a", b"alpha")
        write_file(volume, "b", b"bravo" * 2000)
        ino = volume.stat("a").st_ino
        free_with_b = volume.statfs().free
        volume.rename("a", "c")
        assert not volume.exists("a") and read_file(volume, "c") == b"alpha"
        assert volume.stat("c").st_ino == ino
        with pytest.raises(FileExistsError):
            volume.rename("c", "b", replace=False)
        assert read_file(volume, "b") == b"bravo" * 2000 and read_file(volume, "c") == b"alpha"
        volume.rename("c", "b")                       # replaces b; b's blocks are freed
        assert volume.listdir() == ["b"] and read_file(volume, "b") == b"alpha"
        assert volume.stat("b").st_ino == ino and volume.stat("b").st_nlink == 1
        assert volume.statfs().free > free_with_b
        volume.rename("b", "b")                       # onto itself: nothing happens
        assert read_file(volume, "b") == b"alpha"
        with pytest.raises(FileNotFoundError):
            volume.rename("missing", "x")
        with pytest.raises(FileNotFoundError):
            volume.rename("b", "nodir/x")
        volume.mkdir("d")
        volume.rename("b", "d/b")
        assert volume.listdir("d") == ["b"] and volume.listdir() == ["d"]

    def test_rename_directories(self, volume: Any) -> None:
        volume.mkdir("src/deep", parents=True)
        write_file(volume, "src/deep/f", b"payload")
        volume.mkdir("dst")
        volume.rename("src", "dst/moved")
        assert volume.listdir() == ["dst"]
        assert read_file(volume, "dst/moved/deep/f") == b"payload"
        assert volume.stat("/").st_nlink == 3 and volume.stat("dst").st_nlink == 3
        volume.mkdir("empty")
        volume.rename("empty", "dst/moved/deep/../../e2")       # .. resolves inside the volume
        assert volume.stat("dst/e2").is_dir()
        volume.mkdir("target")
        volume.rename("dst/e2", "target")                       # over an empty directory
        assert not volume.exists("dst/e2") and volume.stat("target").is_dir()
        with pytest.raises(OSError) as info:
            volume.rename("target", "dst")                      # over a non-empty one
        assert errno_of(info) == errno.ENOTEMPTY
        write_file(volume, "file", b"f")
        with pytest.raises(NotADirectoryError):
            volume.rename("target", "file")
        with pytest.raises(IsADirectoryError):
            volume.rename("file", "target")
        with pytest.raises(OSError) as info:
            volume.rename("dst", "dst/moved/inside")            # into itself
        assert errno_of(info) == errno.EINVAL
        with pytest.raises(FileExistsError):
            volume.rename("target", "dst", replace=False)
        assert volume.stat("/").st_nlink == 4
        assert sorted(volume.listdir()) == ["dst", "file", "target"]

    def test_hard_links(self, volume: Any) -> None:
        write_file(volume, "a", b"one")
        volume.mkdir("d")
        volume.link("a", "d/b")
        sa, sb = volume.stat("a"), volume.stat("d/b")
        assert sa.st_ino == sb.st_ino and sa.st_nlink == sb.st_nlink == 2
        with volume.open("d/b", "r+b") as f:
            f.pwrite(b"ONE!", 0)
        assert read_file(volume, "a") == b"ONE!"
        with pytest.raises(FileExistsError):
            volume.link("a", "d/b")
        with pytest.raises(PermissionError):
            volume.link("d", "dirlink")
        with pytest.raises(FileNotFoundError):
            volume.link("missing", "x")
        volume.link("a", "c")
        assert volume.stat("c").st_nlink == 3
        volume.unlink("a")
        assert volume.stat("c").st_nlink == 2 and read_file(volume, "d/b") == b"ONE!"
        volume.rename("c", "d/b")                   # two names of one file: nothing happens
        assert volume.stat("c").st_nlink == 2 and volume.exists("d/b")
        volume.unlink("c")
        assert volume.stat("d/b").st_nlink == 1 and read_file(volume, "d/b") == b"ONE!"

    def test_unlink_and_rmdir(self, volume: Any) -> None:
        volume.mkdir("d/e", parents=True)
        write_file(volume, "d/f", b"x" * 10000)
        free_with_f = volume.statfs().free
        with pytest.raises(FileNotFoundError):
            volume.unlink("nope")
        with pytest.raises(IsADirectoryError):
            volume.unlink("d")
        with pytest.raises(OSError) as info:
            volume.rmdir("d")
        assert errno_of(info) == errno.ENOTEMPTY
        with pytest.raises(NotADirectoryError):
            volume.rmdir("d/f")
        with pytest.raises(FileNotFoundError):
            volume.rmdir("d/zz")
        volume.unlink("d/f")
        assert volume.statfs().free > free_with_f
        with pytest.raises(OSError) as info:
            volume.rmdir("d")
        assert errno_of(info) == errno.ENOTEMPTY
        volume.rmdir("d/e")
        assert volume.stat("d").st_nlink == 2
        volume.rmdir("d")
        assert volume.listdir() == [] and volume.stat("/").st_nlink == 2
        assert volume.statfs().used == 0

    def test_chmod_and_utime(self, volume: Any) -> None:
        write_file(volume, "f", b"data")
        volume.mkdir("d")
        volume.chmod("f", 0o640)
        volume.chmod("d", 0o711)
        assert volume.stat("f").st_mode == st.S_IFREG | 0o640
        assert volume.stat("d").st_mode == st.S_IFDIR | 0o711
        before = volume.stat("f").st_ctime_ns
        volume.utime("f", ns=(1_234_567_891_234_567_891, 987_654_321_987_654_321))
        s = volume.stat("f")
        assert (s.st_atime_ns, s.st_mtime_ns) == (1_234_567_891_234_567_891, 987_654_321_987_654_321)
        assert s.st_ctime_ns >= before
        volume.utime("d", ns=(5, 6))
        assert (volume.stat("d").st_atime_ns, volume.stat("d").st_mtime_ns) == (5, 6)
        with pytest.raises(FileNotFoundError):
            volume.chmod("missing", 0o600)
        with pytest.raises(FileNotFoundError):
            volume.utime("missing", ns=(1, 2))

    # ------------------------------------------------------------ open modes

    def test_open_missing_and_directories(self, volume: Any) -> None:
        for mode in ("rb", "r+b"):
            with pytest.raises(FileNotFoundError):
                volume.open("missing", mode)
        assert not volume.exists("missing")
        volume.mkdir("d")
        for mode in ("rb", "r+b", "wb", "ab"):
            with pytest.raises(IsADirectoryError):
                volume.open("d", mode)
        with pytest.raises(FileNotFoundError):
            volume.open("nodir/f", "wb")

    def test_text_and_invalid_modes_are_refused(self, volume: Any) -> None:
        write_file(volume, "f", b"x")
        for mode in ("r", "w", "a", "rt", "wt", "r+", "rw", "bb", "q"):
            with pytest.raises(ValueError):
                volume.open("f", mode)
        assert read_file(volume, "f") == b"x"
        assert volume.open("f", "rb+").close() is None      # letters in any order, like open()

    def test_mode_rb_reads_only(self, volume: Any) -> None:
        write_file(volume, "f", b"hello world")
        with volume.open("f", "rb") as f:
            assert f.readable() and not f.writable()
            assert f.read(5) == b"hello" and f.tell() == 5
            for call in (lambda: f.write(b"x"), lambda: f.pwrite(b"x", 0),
                         lambda: f.fallocate(0, 10), lambda: f.punch_hole(0, 1),
                         lambda: f.zero_range(0, 1)):
                with pytest.raises(OSError) as info:
                    call()
                assert errno_of(info) == errno.EBADF
            with pytest.raises(OSError) as info:
                f.truncate(0)
            assert errno_of(info) in (errno.EINVAL, errno.EBADF)
        assert read_file(volume, "f") == b"hello world"

    def test_mode_wb_truncates_and_writes_only(self, volume: Any) -> None:
        write_file(volume, "f", b"old contents" * 1000)
        with volume.open("f", "wb") as f:
            assert f.writable() and not f.readable()
            assert volume.stat("f").st_size == 0 and volume.stat("f").st_blocks == 0
            with pytest.raises(OSError) as info:
                f.read(1)
            assert errno_of(info) == errno.EBADF
            with pytest.raises(OSError) as info:
                f.pread(1, 0)
            assert errno_of(info) == errno.EBADF
            with pytest.raises(OSError) as info:
                f.readinto(bytearray(4))
            assert errno_of(info) == errno.EBADF
            f.write(b"new")
        assert read_file(volume, "f") == b"new"
        with volume.open("created", "wb") as f:
            pass
        assert volume.stat("created").st_size == 0 and volume.stat("created").is_file()

    def test_mode_r_plus_b_reads_and_writes_in_place(self, volume: Any) -> None:
        write_file(volume, "f", b"0123456789")
        with volume.open("f", "r+b") as f:
            assert f.readable() and f.writable() and f.tell() == 0
            f.write(b"ab")
            assert f.read(3) == b"234"
            f.seek(0)
            assert f.read() == b"ab23456789"
        assert read_file(volume, "f") == b"ab23456789"

    def test_mode_w_plus_b(self, volume: Any) -> None:
        write_file(volume, "f", b"stale" * 100)
        with volume.open("f", "w+b") as f:
            assert f.read() == b""
            f.write(b"fresh")
            f.seek(0)
            assert f.read() == b"fresh"
        assert read_file(volume, "f") == b"fresh"

    def test_mode_xb_creates_exclusively(self, volume: Any) -> None:
        with volume.open("f", "xb") as f:
            f.write(b"first")
            with pytest.raises(OSError) as info:
                f.read()
            assert errno_of(info) == errno.EBADF
        with pytest.raises(FileExistsError):
            volume.open("f", "xb")
        assert read_file(volume, "f") == b"first"

    def test_mode_ab_appends_whatever_the_position(self, volume: Any) -> None:
        write_file(volume, "f", b"start")
        with volume.open("f", "ab") as f:
            assert f.writable() and not f.readable()
            f.seek(0)
            f.write(b"-one")
            assert f.tell() == 9
            f.seek(2)
            f.write(b"-two")
            with pytest.raises(OSError) as info:
                f.read()
            assert errno_of(info) == errno.EBADF
        assert read_file(volume, "f") == b"start-one-two"
        with volume.open("new", "ab") as f:
            f.write(b"made")
        assert read_file(volume, "new") == b"made"

    def test_mode_a_plus_b_reads_anywhere_appends_always(self, volume: Any) -> None:
        write_file(volume, "f", b"abc")
        with volume.open("f", "a+b") as f:
            f.seek(0)
            assert f.read() == b"abc"
            f.seek(1)
            f.write(b"D")
            assert f.tell() == 4
            assert f.pwrite(b"EF", 0) == 2            # O_APPEND: pwrite appends too, as on Linux
            assert f.pread(10, 0) == b"abcDEF"
        assert read_file(volume, "f") == b"abcDEF"

    def test_two_append_handles_interleave(self, volume: Any) -> None:
        with volume.open("log", "ab") as a, volume.open("log", "ab") as b:
            for i in range(5):
                a.write(b"A%d" % i)
                b.write(b"B%d" % i)
        assert read_file(volume, "log") == b"".join(b"A%dB%d" % (i, i) for i in range(5))

    def test_closed_file_raises_value_error(self, volume: Any) -> None:
        f = volume.open("f", "w+b")
        f.write(b"x")
        f.close()
        assert f.closed
        f.close()                                       # closing twice is fine
        for call in (f.read, lambda: f.write(b"y"), lambda: f.seek(0), f.tell, lambda: f.pread(1, 0),
                     lambda: f.pwrite(b"y", 0), lambda: f.readinto(bytearray(1)), lambda: f.truncate(0),
                     f.stat, f.extents, lambda: f.fallocate(0, 1)):
            with pytest.raises(ValueError):
                call()
        with volume.open("f", "rb") as g:
            pass
        assert g.closed
        assert read_file(volume, "f") == b"x"

    def test_file_works_where_python_expects_a_binary_file(self, volume: Any) -> None:
        data = pattern(100_000)
        with volume.open("f", "wb") as f:
            assert isinstance(f, io.RawIOBase)
            shutil.copyfileobj(io.BytesIO(data), f, 7777)
        with volume.open("f", "rb") as f:
            buffered = io.BufferedReader(f, 4096)
            assert buffered.read(10) == data[:10]
            assert buffered.read() == data[10:]
        with volume.open("f", "rb") as f:
            assert b"".join(iter(lambda: f.read(9999), b"")) == data

    def test_seek_and_positions(self, volume: Any) -> None:
        with volume.open("f", "w+b") as f:
            assert f.write(b"0123456789") == 10
            assert f.seek(-3, os.SEEK_END) == 7 and f.read() == b"789"
            assert f.seek(-5, os.SEEK_CUR) == 5 and f.read(2) == b"56"
            assert f.read(0) == b""
            f.seek(100)
            assert f.read(10) == b""                    # past EOF: nothing, size unchanged
            assert f.stat().st_size == 10
            with pytest.raises(OSError) as info:
                f.seek(-1)
            assert errno_of(info) == errno.EINVAL
            f.seek(20)
            f.write(b"!")                               # writing past EOF leaves a hole
            assert f.pread(100, 0) == b"0123456789" + bytes(10) + b"!"

    # ------------------------------------------------------------ sparse files, sizes, space

    def test_sparse_file_holes_read_as_zeros(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        with volume.open("f", "w+b") as f:
            f.pwrite(b"tail", 50 * bs + 3)
            assert f.stat().st_size == 50 * bs + 7
            assert f.pread(10, 7 * bs) == bytes(10)
            assert f.pread(50 * bs + 7, 0) == bytes(50 * bs + 3) + b"tail"
        assert allocated(volume, "f") == bs

    def test_truncate_down_then_up_shows_zeros(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        data = pattern(3 * bs + 100)
        with volume.open("f", "w+b") as f:
            f.write(data)
            f.truncate(100)
            assert f.stat().st_size == 100 and allocated(volume, "f") == bs
            assert f.pread(bs, 0) == data[:100]
            f.truncate(3 * bs)
            assert f.pread(3 * bs, 0) == data[:100] + bytes(3 * bs - 100)
            # shrink and regrow inside one block
            f.pwrite(data[:2 * bs], 0)
            f.truncate(bs + 10)
            f.truncate(bs + 500)
            assert f.pread(bs + 500, 0) == data[:bs + 10] + bytes(490)
            f.seek(7)
            assert f.truncate() == 7                   # no argument: at the position
            assert f.stat().st_size == 7
        with volume.open("f", "r+b") as f:
            f.truncate(0)
        assert volume.stat("f").st_size == 0 and volume.stat("f").st_blocks == 0

    @pytest.mark.parametrize("regrow", ["truncate", "pwrite", "fallocate", "zero_range", "write_end"])
    def test_growing_over_a_truncated_tail_shows_zeros(self, volume: Any, regrow: str) -> None:
        """Bytes cut off by truncate never come back, whatever grows the file again."""
        bs = volume.statfs().block_size
        with volume.open("f", "w+b") as f:
            f.write(b"x" * (2 * bs))
            f.truncate(100)
            if regrow == "truncate":
                f.truncate(300)
            elif regrow == "pwrite":
                f.pwrite(b"y", 299)
            elif regrow == "fallocate":
                f.fallocate(200, 100)
            elif regrow == "zero_range":
                f.zero_range(200, 100)
            else:
                f.seek(0, os.SEEK_END)
                f.seek(199, os.SEEK_CUR)
                f.write(b"y")
            assert f.stat().st_size == 300
            got = f.pread(300, 0)
        assert got[:100] == b"x" * 100
        assert got[100:299] == bytes(199), f"stale bytes after {regrow}: {got[100:299].count(b'x')} 'x'"

    def test_fallocate(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        free = volume.statfs().free
        with volume.open("f", "w+b") as f:
            f.fallocate(0, 3 * bs)
            assert f.stat().st_size == 3 * bs and allocated(volume, "f") == 3 * bs
            assert volume.statfs().free == free - 3 * bs
            assert f.read() == bytes(3 * bs)
            assert [e.flags for e in f.extents()] == [frozenset({"unwritten"})]
            f.fallocate(10 * bs, 2 * bs, keep_size=True)          # past EOF: size stays
            assert f.stat().st_size == 3 * bs and allocated(volume, "f") == 5 * bs
            assert f.pread(20 * bs, 0) == bytes(3 * bs)
            f.fallocate(bs, 100)                                  # already allocated: nothing changes
            assert f.stat().st_size == 3 * bs and allocated(volume, "f") == 5 * bs
            f.fallocate(3 * bs, 5)                                # size grows to offset+length exactly
            assert f.stat().st_size == 3 * bs + 5 and allocated(volume, "f") == 6 * bs
            f.pwrite(b"mid", bs + 10)
            assert f.pread(2 * bs, 0) == bytes(bs + 10) + b"mid" + bytes(bs - 13)
            f.truncate(12 * bs)
            assert f.pread(12 * bs, 0) == bytes(bs + 10) + b"mid" + bytes(11 * bs - 13)
        for call in (lambda g: g.fallocate(0, 0), lambda g: g.fallocate(-1, 10)):
            with volume.open("f", "r+b") as g, pytest.raises(OSError) as info:
                call(g)
            assert errno_of(info) == errno.EINVAL

    def test_punch_hole(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        data = pattern(4 * bs)
        with volume.open("f", "w+b") as f:
            f.write(data)
            free = volume.statfs().free
            f.punch_hole(bs, 2 * bs)
            assert f.stat().st_size == 4 * bs
            assert allocated(volume, "f") == 2 * bs and volume.statfs().free == free + 2 * bs
            assert f.pread(4 * bs, 0) == data[:bs] + bytes(2 * bs) + data[3 * bs:]
            offsets = [(e.file_offset, e.length) for e in f.extents()]
            assert offsets == [(0, bs), (3 * bs, bs)]
            f.punch_hole(10, 20)                                  # inside a block: zeros, still allocated
            assert f.pread(40, 0) == data[:10] + bytes(20) + data[30:40]
            assert allocated(volume, "f") == 2 * bs
            f.punch_hole(3 * bs + 5, 10 * bs)                     # past EOF: size unchanged
            assert f.stat().st_size == 4 * bs
            assert f.pread(bs, 3 * bs) == data[3 * bs:3 * bs + 5] + bytes(bs - 5)
        assert read_file(volume, "f") == data[:10] + bytes(20) + data[30:bs] + bytes(2 * bs) + \
            data[3 * bs:3 * bs + 5] + bytes(bs - 5)

    def test_zero_range(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        data = pattern(4 * bs)
        with volume.open("f", "w+b") as f:
            f.write(data)
            f.zero_range(bs - 10, 2 * bs)
            assert f.stat().st_size == 4 * bs and allocated(volume, "f") == 4 * bs
            expect = data[:bs - 10] + bytes(2 * bs) + data[3 * bs - 10:]
            assert f.pread(4 * bs, 0) == expect
            f.zero_range(4 * bs, 2 * bs, keep_size=True)
            assert f.stat().st_size == 4 * bs and allocated(volume, "f") == 6 * bs
            f.zero_range(4 * bs - 1, 100)
            assert f.stat().st_size == 4 * bs + 99
            assert f.pread(5 * bs, 0) == expect[:-1] + bytes(100)
        assert read_file(volume, "f") == expect[:-1] + bytes(100)

    def test_seek_data_and_seek_hole(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        with volume.open("f", "w+b") as f:
            f.pwrite(b"a" * bs, 0)
            f.pwrite(b"b" * (bs + 10), 3 * bs)
            size = 4 * bs + 10
            assert f.seek(0, SEEK_DATA) == 0
            assert f.seek(0, SEEK_HOLE) == bs
            assert f.seek(bs + 5, SEEK_DATA) == 3 * bs
            assert f.seek(bs + 5, SEEK_HOLE) == bs + 5
            assert f.seek(3 * bs, SEEK_HOLE) == size          # the implicit hole at EOF
            for whence in (SEEK_DATA, SEEK_HOLE):
                with pytest.raises(OSError) as info:
                    f.seek(size, whence)
                assert errno_of(info) == errno.ENXIO
            f.truncate(8 * bs)
            with pytest.raises(OSError) as info:
                f.seek(5 * bs, SEEK_DATA)                     # only a hole from here to EOF
            assert errno_of(info) == errno.ENXIO
            f.punch_hole(0, bs)
            assert f.seek(0, SEEK_DATA) == 3 * bs
            f.fallocate(bs, bs)                               # unwritten: reads as zeros, seeks as a hole
            assert f.seek(0, SEEK_DATA) == 3 * bs
            assert f.tell() == 3 * bs

    def test_extents_after_fallocate_punch_and_write(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        with volume.open("f", "w+b") as f:
            assert f.extents() == []
            f.write(pattern(2 * bs))
            f.fallocate(2 * bs, 2 * bs)
            f.pwrite(b"z", 6 * bs)
            f.punch_hole(bs, bs)
            exts = f.extents()
            assert [e.file_offset for e in exts] == sorted(e.file_offset for e in exts)
            covered = {}
            for e in exts:
                assert e.length > 0 and e.length % bs == 0 and e.pool_offset % bs == 0
                for k in range(e.length // bs):
                    covered[e.file_offset // bs + k] = "unwritten" in e.flags
            assert covered == {0: False, 2: True, 3: True, 6: False}
            assert sum(e.length for e in exts) == allocated(volume, "f")
            f.pwrite(b"w", 2 * bs)                             # writing converts the block it touches
            covered = {e.file_offset // bs + k: "unwritten" in e.flags
                       for e in f.extents() for k in range(e.length // bs)}
            assert covered == {0: False, 2: False, 3: True, 6: False}
            pools = [e.pool_offset + k * bs for e in f.extents() for k in range(e.length // bs)]
            assert len(set(pools)) == len(pools)

    @pytest.mark.parametrize("seed", range(4))
    def test_random_data_ops_match_a_byte_model(self, volume: Any, remount: Remount, seed: int) -> None:
        """pwrite/append/truncate/fallocate/punch/zero in random order: contents, size and
        allocated blocks always equal a bytearray and a set of block numbers (Linux rules:
        writes, fallocate and zero_range allocate every block they touch; truncate down
        frees the blocks past the new size, truncate up frees nothing; punch frees the
        blocks it covers whole)."""
        import random

        rng = random.Random(seed)
        bs = volume.statfs().block_size
        span = 12 * bs
        model = bytearray()
        blocks: set[int] = set()
        vol = volume

        def touched(off: int, n: int) -> set[int]:
            return set(range(off // bs, (off + n - 1) // bs + 1))

        f = vol.open("f", "w+b")
        app = vol.open("f", "ab")
        for step in range(200):
            kind = rng.choice(["pwrite", "pwrite", "append", "truncate", "fallocate", "punch", "zero",
                               "reopen" if step % 50 == 49 else "pwrite"])
            off = rng.choice([0, bs, rng.randrange(span), rng.randrange(8) * bs + rng.choice([1, bs - 1])])
            n = rng.choice([1, 10, bs - 1, bs, bs + 1, rng.randrange(1, 3 * bs)])
            keep = rng.random() < 0.5
            if kind == "pwrite":
                data = bytes([rng.randrange(1, 256)]) * n
                f.pwrite(data, off)
                if off > len(model):
                    model.extend(bytes(off - len(model)))
                model[off:off + n] = data
                blocks |= touched(off, n)
            elif kind == "append":
                data = bytes([rng.randrange(1, 256)]) * n
                blocks |= touched(len(model), n)
                app.write(data)
                model.extend(data)
            elif kind == "truncate":
                size = rng.randrange(span)
                f.truncate(size)
                if size <= len(model):          # shrinking frees what lies past the size;
                    blocks = {b for b in blocks if b < -(-size // bs)}
                model = model[:size] + bytearray(max(0, size - len(model)))   # growing keeps it
            elif kind == "fallocate":
                f.fallocate(off, n, keep_size=keep)
                blocks |= touched(off, n)
                if not keep and off + n > len(model):
                    model.extend(bytes(off + n - len(model)))
            elif kind == "punch":
                f.punch_hole(off, n)
                lo = min(off, len(model))
                hi = min(off + n, len(model))
                model[lo:hi] = bytes(hi - lo)
                blocks -= set(range(-(-off // bs), (off + n) // bs))
            elif kind == "zero":
                f.zero_range(off, n, keep_size=keep)
                blocks |= touched(off, n)
                if not keep and off + n > len(model):
                    model.extend(bytes(off + n - len(model)))
                lo = min(off, len(model))
                hi = min(off + n, len(model))
                model[lo:hi] = bytes(hi - lo)
            else:
                vol = remount(vol)
                f = vol.open("f", "r+b")
                app = vol.open("f", "ab")
            where = f"seed {seed} step {step} {kind}(off={off}, n={n}, keep={keep})"
            s = f.stat()
            assert s.st_size == len(model), where
            assert f.pread(len(model) + 10, 0) == bytes(model), where
            assert s.st_blocks * 512 == len(blocks) * bs, where
        f.close()
        app.close()
        assert vol.fsck() == []

    # ------------------------------------------------------------ reading into buffers

    def test_readinto_and_preadinto_buffers(self, volume: Any) -> None:
        values = np.arange(1000, dtype=np.float64)
        with volume.open("f", "w+b") as f:
            assert f.write(values) == values.nbytes
            f.pwrite(np.arange(4, dtype=np.uint16).reshape(2, 2), values.nbytes)
            f.seek(0)
            out = np.empty(1000, dtype=np.float64)
            assert f.readinto(out) == values.nbytes and np.array_equal(out, values)
            assert f.tell() == values.nbytes
            grid = np.zeros((10, 10), dtype=np.float64)
            assert f.preadinto(grid, 8 * 100) == 800
            assert np.array_equal(grid.ravel(), values[100:200])
            tail = bytearray(100)
            assert f.preadinto(tail, values.nbytes) == 8              # short read at EOF
            assert bytes(tail[:8]) == np.arange(4, dtype=np.uint16).tobytes()
            assert tail[8:] == bytearray(92)
            buf = bytearray(b"-" * 20)
            view = memoryview(buf)[5:15]
            assert f.preadinto(view, 8) == 10 and buf[:5] == b"-----" and buf[15:] == b"-----"
            assert bytes(buf[5:15]) == values.tobytes()[8:18]
            assert f.preadinto(bytearray(10), 10 ** 9) == 0
            f.seek(values.nbytes + 8)
            assert f.readinto(bytearray(10)) == 0
            with pytest.raises(TypeError):
                f.preadinto(b"immutable", 0)
        with volume.open("sparse", "w+b") as f:
            bs = volume.statfs().block_size
            f.pwrite(b"\xff" * 10, 3 * bs)
            out = np.full(3 * bs + 10, 7, dtype=np.uint8)
            assert f.preadinto(out, 0) == out.nbytes
            assert not out[:3 * bs].any() and (out[3 * bs:] == 0xFF).all()

    # ------------------------------------------------------------ lifetimes and space

    def test_unlinked_open_file_lives_until_closed(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        free0 = volume.statfs().free
        data = pattern(10 * bs)
        f = volume.open("f", "w+b")
        f.write(data)
        free_with_f = volume.statfs().free
        assert free_with_f == free0 - 10 * bs
        volume.unlink("f")
        assert not volume.exists("f") and volume.listdir() == []
        assert f.pread(len(data), 0) == data
        f.write(b"more")                             # still writable, still grows
        assert f.stat().st_size == 10 * bs + 4 and f.stat().st_nlink == 0
        assert volume.statfs().free == free_with_f - bs
        write_file(volume, "f", b"a different file")
        assert read_file(volume, "f") == b"a different file"
        assert f.pread(4, 10 * bs) == b"more"
        f.close()
        volume.unlink("f")
        assert volume.statfs().free == free0

    def test_rename_over_an_open_file_keeps_it_for_its_handle(self, volume: Any) -> None:
        write_file(volume, "victim", b"v" * 5000)
        write_file(volume, "new", b"n")
        free0 = volume.statfs().free
        with volume.open("victim", "rb") as held:
            volume.rename("new", "victim")
            assert read_file(volume, "victim") == b"n"
            assert held.read() == b"v" * 5000
            assert volume.statfs().free == free0
        assert volume.statfs().free > free0

    def test_open_handle_follows_rename(self, volume: Any) -> None:
        with volume.open("a", "w+b") as f:
            f.write(b"one")
            volume.mkdir("d")
            volume.rename("a", "d/b")
            f.write(b"two")
        assert read_file(volume, "d/b") == b"onetwo"

    def test_enospc_is_all_or_nothing(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        free_blocks = volume.statfs().free // bs
        fill = pattern((free_blocks - 3) * bs + 100)          # leaves 2 whole blocks free
        write_file(volume, "big", fill)
        assert volume.statfs().free == 2 * bs
        write_file(volume, "small", b"s" * 10)
        left = volume.statfs().free
        assert left == bs

        def unchanged() -> None:
            assert volume.stat("big").st_size == len(fill)
            assert volume.statfs().free == left
            assert read_file(volume, "small") == b"s" * 10

        with volume.open("big", "r+b") as f:
            for call in (lambda: f.pwrite(b"Q" * (3 * bs), len(fill)),              # append
                         lambda: f.pwrite(b"Q" * (4 * bs), len(fill) - 2 * bs),     # overlap + grow
                         lambda: f.fallocate(len(fill), 5 * bs),
                         lambda: f.fallocate(0, len(fill) + 5 * bs, keep_size=True),
                         lambda: f.zero_range(len(fill), 5 * bs)):
                with pytest.raises(OSError) as info:
                    call()
                assert errno_of(info) == errno.ENOSPC
                unchanged()
            assert f.pread(len(fill), 0) == fill, "a failed write changed the file"
        with volume.open("small", "r+b") as f:
            with pytest.raises(OSError) as info:
                f.write(b"t" * (3 * bs))
            assert errno_of(info) == errno.ENOSPC
        unchanged()
        with volume.open("big", "r+b") as f:                  # the last block can still be used
            f.pwrite(b"E" * 10, len(fill) + bs)
        assert volume.statfs().free == 0
        with pytest.raises(OSError) as info:
            write_file(volume, "c", b"c")
        assert errno_of(info) == errno.ENOSPC
        assert volume.exists("c") and volume.stat("c").st_size == 0       # created, empty, as Linux
        volume.unlink("big")
        write_file(volume, "c", pattern(10 * bs))
        assert read_file(volume, "c") == pattern(10 * bs)

    def test_freed_blocks_never_show_old_bytes(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        n = 64 * bs
        write_file(volume, "secret", b"S" * n)
        volume.unlink("secret")
        with volume.open("a", "w+b") as f:
            f.truncate(n)
            assert b"S" not in f.read()
        with volume.open("b", "w+b") as f:
            f.fallocate(0, n)
            assert b"S" not in f.read()
            f.pwrite(b"b", n // 2)                    # converting an unwritten block
            assert b"S" not in f.pread(n, 0)
        with volume.open("c", "w+b") as f:
            f.pwrite(b"c", n - 1)
            f.pwrite(b"c" * 10, 5)
            assert b"S" not in f.pread(n, 0)
        with volume.open("d", "w+b") as f:
            f.zero_range(0, n)
            f.write(b"d" * 10)
            f.truncate(n + 5)
            assert b"S" not in f.pread(n + 5, 0)
        # the blocks of a, b, c, d go back and are taken again
        for name in "abcd":
            volume.unlink(name)
        write_file(volume, "e", b"")
        with volume.open("e", "r+b") as f:
            for i in range(0, n, 3 * bs):
                f.pwrite(b"e", i + 17)
            data = f.pread(n, 0)
        assert set(data) <= {0, ord("e")} and data.count(b"e") == len(range(0, n, 3 * bs))

    def test_mtime_follows_writes(self, volume: Any) -> None:
        write_file(volume, "f", b"x" * 100)
        volume.utime("f", ns=(1, 1))
        with volume.open("f", "r+b") as f:
            f.pwrite(b"y", 5)                          # in place: no new blocks
            in_place = f.stat().st_mtime_ns
        assert in_place > 1 and volume.stat("f").st_mtime_ns == in_place
        volume.utime("f", ns=(1, 1))
        with volume.open("f", "ab") as f:
            f.write(b"z")
        assert volume.stat("f").st_mtime_ns > 1

    # ------------------------------------------------------------ persistence

    def test_everything_survives_reopen(self, volume: Any, remount: Remount) -> None:
        bs = volume.statfs().block_size
        vol = volume
        vol.mkdir("d/e", mode=0o750, parents=True)
        write_file(vol, "d/e/data", pattern(3 * bs + 5))
        vol.chmod("d/e/data", 0o604)
        vol.link("d/e/data", "alias")
        with vol.open("sparse", "wb") as f:
            f.pwrite(b"end", 40 * bs)
            f.fallocate(2 * bs, 2 * bs)
            f.fallocate(50 * bs, bs, keep_size=True)
        with vol.open("punched", "wb") as f:
            f.write(pattern(4 * bs, 9))
            f.punch_hole(bs, bs)
            f.zero_range(3 * bs, 10)
        write_file(vol, "empty", b"")
        with vol.open("inplace", "wb") as f:
            f.write(b"0" * 1000)
        with vol.open("inplace", "r+b") as f:
            f.pwrite(b"1", 500)
        vol.utime("d", ns=(11, 22))
        vol.chmod("d", 0o700)
        before = tree_state(vol)
        stats = vol.statfs()
        exts = {}
        for p in ("sparse", "punched"):
            with vol.open(p, "rb") as f:
                exts[p] = f.extents()
        vol = remount(vol)
        assert tree_state(vol) == before
        after = vol.statfs()
        assert (after.free, after.used, after.files) == (stats.free, stats.used, stats.files)
        for p, e in exts.items():
            with vol.open(p, "rb") as f:
                assert f.extents() == e
        vol = remount(vol)
        assert tree_state(vol) == before
        # and the reopened volume is fully usable
        write_file(vol, "d/e/later", b"later")
        vol.unlink("alias")
        vol = remount(vol)
        assert read_file(vol, "d/e/later") == b"later" and vol.stat("d/e/data").st_nlink == 1

    def test_unlinked_open_file_is_gone_after_reopen(self, volume: Any, remount: Remount) -> None:
        free0 = volume.statfs().free
        f = volume.open("f", "w+b")
        f.write(b"x" * 50000)
        volume.unlink("f")
        vol = remount(volume)                          # closing the volume closes the handle
        assert f.closed
        assert vol.listdir() == [] and vol.statfs().free == free0
