"""``volume/pathnames.py`` (the ``os``-named helpers every front end shares) at its edges,
found by a mutation run over it.  The oracle is ``os`` itself: the same tree is built on
the volume and in a host directory, and each helper's answer is compared with its ``os``
namesake's, paths taken relative to the top.

- ``walk``: top-down and bottom-up order, with and without following links to directories
  (a link is listed among the dirnames either way, and descended only when asked),
  dangling links among the files, pruning dirnames in place, a top that ends in ``/``, a
  top that is missing or a file (``onerror`` gets the error; without it nothing is
  yielded).
- ``scandir``: an entry's path joins the top as ``os.scandir`` does; the iterator is a
  context manager, and ``close`` ends it.
- ``isdir``/``isfile``: False for a missing name or a bad one (an embedded NUL), but a
  closed volume raises instead of answering False.
- ``remove``, ``replace``, ``makedirs``, ``getsize``, ``truncate``: what ``os`` does,
  errors included.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from _small_volume import read_file, small_volume, write_file
from daxfs._types import Stat
from daxfs.volume import Volume
from daxfs.volume.pathnames import PathNames, ScandirIterator

Walk = list[tuple[str, list[str], list[str]]]


def _build(host: Path) -> Volume:
    """The same tree in ``host`` and on a new volume: nested directories, files, a link to a
    directory, a link to a file, a dangling link and an empty directory."""
    vol = small_volume()
    for d in ("/a", "/a/b", "/a/b/c", "/e", "/z"):
        vol.mkdir(d)
        (host / d[1:]).mkdir()
    for f, data in (("/top.txt", b"1"), ("/a/f1", b"22"), ("/a/b/f2", b"333"), ("/a/b/c/f3", b"4444"),
                    ("/z/f4", b"")):
        write_file(vol, f, data)
        (host / f[1:]).write_bytes(data)
    for target, link in (("/a/b", "/e/tob"), ("/top.txt", "/a/tofile"), ("/nowhere", "/z/dangling")):
        vol.symlink(target, link)
        # the host's links are relative so that they point inside the host tree
        os.symlink(os.path.relpath(str(host) + target, str(host / os.path.dirname(link)[1:])), host / link[1:])
    return vol


def _norm(walked: Iterator[tuple[str, list[str], list[str]]], prefix: str) -> Walk:
    out = []
    for dirpath, dirs, files in walked:
        assert dirpath.startswith(prefix), dirpath
        out.append((dirpath[len(prefix):] or "/", sorted(dirs), sorted(files)))
    return out


def _sorted_walk(walked: Iterator[tuple[str, list[str], list[str]]], prune: Callable[[list[str]], None]
                 ) -> Iterator[tuple[str, list[str], list[str]]]:
    """Walk with each dirnames list sorted in place (then pruned), so both sides go in one order."""
    for dirpath, dirs, files in walked:
        dirs.sort()
        prune(dirs)
        yield dirpath, list(dirs), files


@pytest.mark.parametrize("topdown", [True, False], ids=["topdown", "bottomup"])
@pytest.mark.parametrize("followlinks", [False, True], ids=["links", "followlinks"])
@pytest.mark.parametrize("top", ["/", "/a", "/a/", "/e"])
def test_walk_matches_os_walk(top: str, topdown: bool, followlinks: bool, tmp_path: Path) -> None:
    vol = _build(tmp_path)
    host = str(tmp_path) + top
    ours = list(vol.walk(top, topdown=topdown, followlinks=followlinks))
    theirs = list(os.walk(host, topdown=topdown, followlinks=followlinks))
    # the order of siblings is the directory's own (os: readdir's): compare the sets, then
    # the order parents and children come in
    assert sorted(_norm(iter(ours), "")) == sorted(_norm(iter(theirs), str(tmp_path)))
    seen = [d for d, _, _ in ours]
    for i, d in enumerate(seen):          # parents before children top-down, after bottom-up
        parent = d.rstrip("/").rsplit("/", 1)[0] or "/"
        if parent in seen and d.rstrip("/") != top.rstrip("/"):
            assert (seen.index(parent) < i) == topdown, (d, seen)
    assert len(seen) == len(set(seen))


def test_walk_paths_join_the_top_as_given(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    assert [d for d, _, _ in vol.walk("/a/")][:2] == ["/a/", "/a/b"]
    assert [d for d, _, _ in vol.walk("/a")][:2] == ["/a", "/a/b"]
    assert [d for d, _, _ in vol.walk(PurePosixPath("/a/b"))] == ["/a/b", "/a/b/c"]
    assert [d for d, _, _ in vol.walk("/")][1] == "/a"


def test_walk_prunes_the_dirnames_the_caller_removed(tmp_path: Path) -> None:
    vol = _build(tmp_path)

    def drop_b(dirs: list[str]) -> None:
        if "b" in dirs:
            dirs.remove("b")

    ours = _norm(_sorted_walk(vol.walk("/"), drop_b), "")
    theirs = _norm(_sorted_walk(os.walk(tmp_path), drop_b), str(tmp_path))
    assert ours == theirs
    assert "/a/b" not in [d for d, _, _ in ours] and "/a" in [d for d, _, _ in ours]
    assert _norm(_sorted_walk(vol.walk("/"), lambda dirs: dirs.clear()), "") == [
        ("/", [], ["top.txt"])]


def test_walk_follows_a_directory_link_only_when_asked(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    for topdown in (True, False):
        plain = [d for d, _, _ in vol.walk("/", topdown=topdown)]
        followed = [d for d, _, _ in vol.walk("/", topdown=topdown, followlinks=True)]
        assert "/e/tob" not in plain and "/e/tob/c" not in plain
        assert "/e/tob" in followed and "/e/tob/c" in followed
        assert ("/e", ["tob"], []) in list(vol.walk("/", topdown=topdown))   # listed, not entered


@pytest.mark.parametrize("topdown", [True, False])
@pytest.mark.parametrize("top", ["/missing", "/top.txt"])
def test_walk_reports_a_bad_top_to_onerror(top: str, topdown: bool, tmp_path: Path) -> None:
    vol = _build(tmp_path)
    errors: list[OSError] = []
    assert list(vol.walk(top, topdown=topdown, onerror=errors.append)) == []
    theirs: list[OSError] = []
    assert list(os.walk(str(tmp_path) + top, topdown=topdown, onerror=theirs.append)) == []
    assert [e.errno for e in errors] == [e.errno for e in theirs] and len(errors) == 1
    assert list(vol.walk(top, topdown=topdown)) == []


class _Listing(PathNames):
    """A front end with no ``lstat`` (the mixin must not need one), whose listing of one
    directory says an entry is a directory while ``stat`` of it fails."""

    def __init__(self, vol: Volume) -> None:
        self.vol = vol
        self.stat = vol.stat            # type: ignore[method-assign]

    def _scan(self, path: object) -> list[tuple[str, Stat]]:
        return self.vol._scan(path)


def test_walk_without_lstat_descends_every_directory(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    bare = _Listing(vol)
    # no lstat: a link to a directory cannot be told from one, so top-down descends it
    assert "/e/tob/c" in [d for d, _, _ in bare.walk("/")]
    # bottom-up looks at the listing's own entry, which says it is a link
    assert "/e/tob" not in [d for d, _, _ in bare.walk("/", topdown=False)]


def test_walk_counts_an_entry_whose_stat_fails_as_a_file(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    front = _Listing(vol)
    vol.symlink("/a/b/c", "/z/toc")
    real_stat = vol.stat

    def stat(path: object) -> Stat:
        if path == "/z/toc":
            raise PermissionError(errno.EACCES, "no", path)
        return real_stat(path)

    front.stat = stat                   # type: ignore[method-assign]
    walked = {d: (dirs, files) for d, dirs, files in front.walk("/z")}
    assert sorted(walked["/z"][1]) == ["dangling", "f4", "toc"] and walked["/z"][0] == []


def test_walk_of_a_link_top_lists_its_target(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    ours = _norm(vol.walk("/e/tob"), "")
    theirs = _norm(os.walk(tmp_path / "e" / "tob"), str(tmp_path))
    assert ours == theirs == [("/e/tob", ["c"], ["f2"]), ("/e/tob/c", [], ["f3"])]


# scandir --------------------------------------------------------------------------------


@pytest.mark.parametrize("top", ["/", "/a", "/a/", "/e/tob"])
def test_scandir_matches_os_scandir(top: str, tmp_path: Path) -> None:
    vol = _build(tmp_path)

    def view(entries: Any, prefix: str) -> list[tuple[str, str, bool, bool, bool]]:
        return sorted((e.name, e.path[len(prefix):], e.is_dir(), e.is_file(), e.is_symlink()) for e in entries)

    with vol.scandir(top) as ours, os.scandir(str(tmp_path) + top) as theirs:
        assert view(ours, "") == view(theirs, str(tmp_path))


def test_scandir_takes_a_path_like_and_defaults_to_the_root(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    assert sorted(e.path for e in vol.scandir(PurePosixPath("/a/b"))) == ["/a/b/c", "/a/b/f2"]
    assert sorted(e.path for e in vol.scandir()) == ["/a", "/e", "/top.txt", "/z"]
    with pytest.raises(NotADirectoryError):
        vol.scandir("/top.txt")


def test_scandir_iterator_closes() -> None:
    vol = small_volume()
    for name in "abc":
        write_file(vol, "/" + name, b"")
    it = vol.scandir("/")
    assert isinstance(it, ScandirIterator) and iter(it) is it
    first = next(it)
    assert first.name in "abc"
    it.close()
    assert list(it) == []
    with vol.scandir("/") as again:
        assert again.__enter__() is again
        next(again)
    with pytest.raises(StopIteration):
        next(again)                      # leaving the with closed it
    assert len(list(vol.scandir("/"))) == 3


# isdir, isfile, and the os-named operations ------------------------------------------------


def test_isdir_isfile(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    for path in ("/", "/a", "/a/", "/top.txt", "/e/tob", "/a/tofile", "/z/dangling", "/missing", "/top.txt/x",
                 "/a\0b"):
        assert vol.isdir(path) is os.path.isdir(str(tmp_path) + path), path
        assert vol.isfile(path) is os.path.isfile(str(tmp_path) + path), path
    assert vol.isdir(PurePosixPath("/a")) and not vol.isfile(PurePosixPath("/a"))
    vol.close()
    for ask in (vol.isdir, vol.isfile):
        with pytest.raises((OSError, ValueError)):
            ask("/a")                     # not "False": a closed volume cannot answer


def test_remove_is_unlink(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    vol.remove("/a/f1")
    assert not vol.isfile("/a/f1")
    for path in ("/a", "/missing"):
        with pytest.raises(OSError) as ours:
            vol.remove(path)
        with pytest.raises(OSError) as theirs:
            os.remove(str(tmp_path) + path)
        assert ours.value.errno == theirs.value.errno
    vol.remove("/e/tob")                  # the link, not what it points at
    assert vol.isdir("/a/b") and not vol.isdir("/e/tob")


def test_replace_replaces(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    vol.replace("/a/f1", "/top.txt")
    assert read_file(vol, "/top.txt") == b"22" and not vol.isfile("/a/f1")
    vol.mkdir("/empty")
    vol.replace("/z", "/empty")           # a directory over an empty one, as os.replace
    assert vol.isfile("/empty/f4") and not vol.isdir("/z")
    with pytest.raises(OSError) as ours:
        vol.replace("/a", "/e")           # not empty
    with pytest.raises(OSError) as theirs:
        os.replace(tmp_path / "a", tmp_path / "e")
    assert ours.value.errno == theirs.value.errno


def test_makedirs(tmp_path: Path) -> None:
    vol = small_volume()
    vol.makedirs("/p/q/r", 0o700)
    assert vol.stat("/p/q/r").st_mode & 0o7777 == 0o700 & ~_umask()
    assert vol.isdir("/p/q")
    with pytest.raises(FileExistsError):
        vol.makedirs("/p/q/r")
    with pytest.raises(FileExistsError):
        vol.makedirs("/p/q/r", exist_ok=False)
    vol.makedirs("/p/q/r", exist_ok=True)
    vol.makedirs("/p/q/r", 0o755, True)   # positional, as os.makedirs
    write_file(vol, "/p/f", b"")
    with pytest.raises(FileExistsError):
        vol.makedirs("/p/f", exist_ok=True)   # a file is not a directory that exists
    with pytest.raises(NotADirectoryError):
        vol.makedirs("/p/f/g", exist_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_getsize_and_truncate(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    assert [vol.getsize(p) for p in ("/top.txt", "/a/b/c/f3", "/z/f4", "/a/tofile")] == [1, 4, 0, 1]
    assert vol.getsize("/a/b") == vol.stat("/a/b").st_size
    vol.truncate("/a/b/c/f3", 2)
    assert read_file(vol, "/a/b/c/f3") == b"44"
    vol.truncate("/z/f4", 5000)
    assert read_file(vol, "/z/f4") == bytes(5000)
    for path in ("/a", "/missing"):
        with pytest.raises(OSError) as ours:
            vol.truncate(path, 0)
        with pytest.raises(OSError) as theirs:
            os.truncate(str(tmp_path) + path, 0)
        assert ours.value.errno == theirs.value.errno
    with pytest.raises(FileNotFoundError):
        vol.getsize("/missing")


# what the mixin asks of a front end, and what it does not rely on -------------------------


def test_isdir_isfile_on_a_front_end_without_closed(tmp_path: Path) -> None:
    bare = _Listing(_build(tmp_path))
    assert not hasattr(bare, "closed")
    assert bare.isdir("/a") and bare.isfile("/top.txt")
    assert not bare.isdir("/missing") and not bare.isfile("/missing") and not bare.isfile("/a\0")


def test_replace_does_not_rely_on_the_front_end_s_default(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    bare = _Listing(vol)
    bare.rename = lambda src, dst, *, replace=False: vol.rename(src, dst, replace=replace)   # type: ignore
    bare.replace("/a/f1", "/top.txt")
    assert read_file(vol, "/top.txt") == b"22" and not vol.isfile("/a/f1")


def test_makedirs_default_mode_is_os_makedirs(tmp_path: Path) -> None:
    vol = small_volume()
    vol.makedirs("/p/q")
    os.makedirs(tmp_path / "p" / "q")
    for d in ("/p", "/p/q"):
        assert vol.stat(d).st_mode == os.stat(str(tmp_path) + d).st_mode, d


def test_walk_starts_at_the_root_by_default(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    assert list(vol.walk()) == list(vol.walk("/")) and list(vol.walk())[0][0] == "/"


def test_walk_goes_on_past_a_directory_it_cannot_list(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    everything = {d for d, _, _ in vol.walk("/")}

    class Unlistable(_Listing):
        def _scan(self, path: object) -> list[tuple[str, Stat]]:
            if path == "/a":
                raise PermissionError(errno.EACCES, "no", path)
            return super()._scan(path)

    front = Unlistable(vol)
    front.lstat = vol.lstat               # type: ignore[attr-defined]
    for topdown in (True, False):
        errors: list[OSError] = []
        walked = [d for d, _, _ in front.walk("/", topdown=topdown, onerror=errors.append)]
        assert [(e.errno, e.filename) for e in errors] == [(errno.EACCES, "/a")]
        assert set(walked) == {d for d in everything if not d.startswith("/a")}, walked


def test_walk_reports_a_directory_removed_before_it_is_entered(tmp_path: Path) -> None:
    vol = _build(tmp_path)
    for side, top, remove in (("daxfs", "/", lambda p: (vol.unlink(p + "/f4"), vol.unlink(p + "/dangling"),
                                                        vol.rmdir(p))),
                              ("os", str(tmp_path), lambda p: (os.unlink(p + "/f4"), os.unlink(p + "/dangling"),
                                                               os.rmdir(p)))):
        walker = vol.walk if side == "daxfs" else os.walk
        errors: list[OSError] = []
        walked = []
        for dirpath, dirs, _files in walker(top, onerror=errors.append):
            walked.append(dirpath)
            if dirpath == top:
                remove(os.path.join(top, "z"))          # still in dirs: walk tries to enter it
                assert "z" in dirs
        assert [e.errno for e in errors] == [errno.ENOENT], side
        assert not any(d.endswith("/z") for d in walked) and len(walked) == 5, (side, walked)
