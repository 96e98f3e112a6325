"""The namespace: mkdir, listdir, rename, links, unlink, rmdir, chmod, utime, open errors."""

from __future__ import annotations

import errno
import stat as st
from typing import Any

import pytest

from daxfs.testing.suite._base import SuiteBase, errno_of, read_file, write_file


class NamespaceTests(SuiteBase):
    """The namespace: mkdir, listdir, rename, links, unlink, rmdir, chmod, utime, open errors."""

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
        with volume.open("d/b", "r+b", buffering=0) as f:
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
                volume.open("missing", mode, buffering=0)
        assert not volume.exists("missing")
        volume.mkdir("d")
        for mode in ("rb", "r+b", "wb", "ab"):
            with pytest.raises(IsADirectoryError):
                volume.open("d", mode, buffering=0)
        with pytest.raises(FileNotFoundError):
            volume.open("nodir/f", "wb", buffering=0)
