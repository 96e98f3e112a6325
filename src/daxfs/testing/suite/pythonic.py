"""What code written for ``os``, ``os.path`` and ``open()`` finds: stat and statvfs shapes,
``remove``/``replace``/``makedirs``/``scandir``/``walk``/``isdir``/``isfile``/``getsize``/
``truncate``, compared with what ``os`` does on a real directory."""

from __future__ import annotations

import errno
import os
import stat as st
import tempfile
from typing import Any

import pytest

from daxfs.testing.suite._base import SuiteBase, errno_of, read_file, write_file


class PythonHabitTests(SuiteBase):
    """What code written for ``os``, ``os.path`` and ``open()`` finds on every front end."""

    def test_stat_is_shaped_like_os_stat_result(self, volume: Any) -> None:
        write_file(volume, "f", b"x" * 5000)
        volume.utime("f", (1_500_000_000_250_000_000, 1_600_000_000_500_000_000))
        s = volume.stat("f")
        assert len(s) == 10 and s[6] == 5000 == s.st_size       # os.stat_result's order
        mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime = s
        assert st.S_ISREG(mode) and ino == s.st_ino and dev == s.st_dev and nlink == 1
        assert (uid, gid) == (s.st_uid, s.st_gid) and mtime == 1_600_000_000 == s[st.ST_MTIME]
        assert s.st_mtime == pytest.approx(1_600_000_000.5, abs=1e-6) and s.st_atime == pytest.approx(1_500_000_000.25, abs=1e-6)
        assert s.st_mtime_ns == 1_600_000_000_500_000_000 and isinstance(s.st_ctime, float)
        assert s.st_blocks * 512 >= 5000 and s.st_blksize > 0 and s.st_rdev == 0
        assert s.st_dev == volume.stat("/").st_dev != 0                 # one device per volume
        assert s.is_file() and not s.is_dir() and volume.stat("/").is_dir()
        assert s == volume.stat("f") and s._replace(st_size=1).st_size == 1

    def test_statfs_answers_to_os_statvfs_names(self, volume: Any) -> None:
        write_file(volume, "f", b"x" * 10000)
        fs = volume.statfs()
        assert fs.f_bsize == fs.f_frsize == fs.block_size
        assert fs.f_blocks * fs.f_frsize == fs.size and fs.f_bfree * fs.f_frsize == fs.free
        assert fs.f_bavail <= fs.f_bfree < fs.f_blocks
        assert fs.f_files >= fs.files >= 2 and fs.f_ffree == fs.f_files - fs.files
        assert fs.f_namemax == 255 and fs.free + fs.used + fs.busy + fs.bad == fs.size

    def test_os_names_behave_as_os_does(self, volume: Any) -> None:
        with tempfile.TemporaryDirectory() as real:
            for target, join, ops in ((volume, lambda p: p, volume), (None, lambda p: os.path.join(real, p), os)):
                def run(name: str, *args: Any, **kwargs: Any) -> Any:
                    fn = getattr(ops, name) if target is not None else _OS[name]
                    try:
                        return ("ok", fn(*args, **kwargs))
                    except OSError as exc:
                        return ("err", exc.errno)
                outcome = [
                    run("makedirs", join("a/b/c")),
                    run("makedirs", join("a/b/c")),
                    run("makedirs", join("a/b/c"), exist_ok=True),
                    run("isdir", join("a/b")), run("isfile", join("a/b")), run("isdir", join("nope")),
                ]
                if target is not None:
                    write_file(volume, "a/f", b"12345")
                else:
                    with open(join("a/f"), "wb") as f:
                        f.write(b"12345")
                outcome += [
                    run("isfile", join("a/f")), run("getsize", join("a/f")),
                    run("truncate", join("a/f"), 2), run("getsize", join("a/f")),
                    run("truncate", join("a/f"), 9), run("getsize", join("a/f")),
                    run("truncate", join("a"), 0), run("truncate", join("missing"), 0),
                    run("replace", join("a/f"), join("a/g")), run("isfile", join("a/f")),
                    run("remove", join("a/b")), run("remove", join("a/g")), run("remove", join("a/g")),
                    run("getsize", join("a/g")),
                ]
                if target is not None:
                    got = outcome
                else:
                    want = outcome
        assert got == want

    def test_scandir_lists_entries_with_their_stats(self, volume: Any) -> None:
        volume.mkdir("d")
        volume.mkdir("d/sub")
        write_file(volume, "d/f", b"abc")
        with volume.scandir("d") as it:
            entries = sorted(it, key=lambda e: e.name)
        assert [e.name for e in entries] == ["f", "sub"]
        f, sub = entries
        assert f.path == "d/f" and os.fspath(sub) == "d/sub"
        assert f.is_file() and not f.is_dir() and not f.is_symlink()
        assert sub.is_dir() and not sub.is_file()
        assert f.stat().st_size == 3 and f.inode() == volume.stat("d/f").st_ino
        assert [e.path for e in volume.scandir("/") if e.name == "d"] == ["/d"]
        with pytest.raises(OSError) as info:
            list(volume.scandir("d/f"))
        assert errno_of(info) == errno.ENOTDIR
        with pytest.raises(OSError) as info:
            volume.scandir("nope")
        assert errno_of(info) == errno.ENOENT

    def test_walk_matches_os_walk(self, volume: Any) -> None:
        tree = ["x/", "x/1", "x/y/", "x/y/2", "x/y/z/", "x/w/", "x/w/3", "top"]
        with tempfile.TemporaryDirectory() as real:
            for name in tree:
                if name.endswith("/"):
                    volume.mkdir(name)
                    os.mkdir(os.path.join(real, name))
                else:
                    write_file(volume, name, b"")
                    open(os.path.join(real, name), "wb").close()

            def normal(walk: Any, root: str) -> list[tuple[str, list[str], list[str]]]:
                return [(os.path.relpath(d, root), sorted(ds), sorted(fs)) for d, ds, fs in walk]
            for topdown in (True, False):
                ours = normal(volume.walk("/", topdown=topdown), "/")
                theirs = normal(os.walk(real, topdown=topdown), real)
                assert sorted(ours) == sorted(theirs)
                order = [d for d, _, _ in ours]
                # top-down lists a directory before what is under it, bottom-up after
                assert (order.index(".") < order.index("x/y")) == topdown
            pruned = []
            for d, ds, _fs in volume.walk("x"):
                pruned.append(d)
                ds[:] = [n for n in ds if n != "y"]
            assert sorted(pruned) == ["x", "x/w"]
            errors: list[OSError] = []
            assert list(volume.walk("nope", onerror=errors.append)) == []
            assert [e.errno for e in errors] == [errno.ENOENT]
        assert read_file(volume, "x/y/2") == b""

    def test_bytes_paths_list_bytes_as_os_does(self, volume: Any) -> None:
        # os.listdir(b"d"), os.scandir(b"d") and os.walk(b"d") answer in bytes, names that
        # are not ASCII included; a str path answers in str
        with tempfile.TemporaryDirectory() as real:
            for tree in (volume, None):
                mkdir = volume.mkdir if tree else (lambda p: os.mkdir(os.path.join(real, p)))
                mkdir("d")
                mkdir("d/sub")
                for name in ("d/\u00e9t\u00e9", "d/sub/f"):
                    if tree:
                        write_file(volume, name, b"")
                    else:
                        open(os.path.join(real, name), "wb").close()
            rb = os.fsencode(real)
            assert sorted(volume.listdir(b"d")) == sorted(os.listdir(os.path.join(rb, b"d")))
            assert all(isinstance(n, str) for n in volume.listdir("d"))
            ours = sorted((e.name, e.path, e.is_dir()) for e in volume.scandir(b"d"))
            with os.scandir(os.path.join(rb, b"d")) as it:
                theirs = sorted((e.name, b"d/" + e.name, e.is_dir()) for e in it)
            assert ours == theirs
            for topdown in (True, False):
                ours_walk = sorted((d, sorted(ds), sorted(fs)) for d, ds, fs in volume.walk(b"d", topdown=topdown))
                theirs_walk = sorted((os.path.relpath(d, rb), sorted(ds), sorted(fs))
                                     for d, ds, fs in os.walk(os.path.join(rb, b"d"), topdown=topdown))
                assert ours_walk == theirs_walk


_OS = {
    "makedirs": os.makedirs, "isdir": os.path.isdir, "isfile": os.path.isfile, "getsize": os.path.getsize,
    "truncate": os.truncate, "replace": os.replace, "remove": os.remove,
}
