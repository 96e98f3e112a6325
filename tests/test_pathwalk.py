"""The path walk (``core/pathwalk.py``, ``Core.resolve``): edges test_core and test_symlinks
leave open, found by a mutation run of the module.

What these tests prove:

- ``..`` at the root is the root (as on Linux), last or on the way; ``.`` and ``..`` as a
  link's whole target name a directory.
- A link on the way that points at a file, or at nothing, is ENOTDIR or ENOENT for the
  path; a dangling link last, followed, gives its target's parent and name (where O_CREAT
  creates), from the link's own directory or, for an absolute target, from the root.
- The links of one walk are counted together, wherever they are on the way: 40 in all
  are followed, 41 are ELOOP.
- A name over 255 bytes is ENAMETOOLONG on the way too, before it is looked up (not ENOENT);
  a name of 255 bytes is looked up.
- Every directory looked in, through links too, is listed for the permission check.
"""

from __future__ import annotations

import errno
import stat as st

import pytest

import daxfs
from daxfs.core import Core
from daxfs.core.records import Create, CreateNode
from daxfs.core.state import MAX_SYMLINKS, ROOT_INO

BS = 4096


def _core() -> Core:
    """/d (2), /d/e (3), /d/e/f (4, a file), /g (5, a file)."""
    core = Core.new(BS, 64, time_ns=1, uid=0, gid=0)
    core.apply(Create(2, ROOT_INO, "d", st.S_IFDIR | 0o755, 0, 0, 1))
    core.apply(Create(3, 2, "e", st.S_IFDIR | 0o755, 0, 0, 1))
    core.apply(Create(4, 3, "f", st.S_IFREG | 0o644, 0, 0, 1))
    core.apply(Create(5, ROOT_INO, "g", st.S_IFREG | 0o644, 0, 0, 1))
    return core


def _link(core: Core, ino: int, parent: int, name: str, target: str) -> None:
    core.apply(CreateNode(ino, parent, name, st.S_IFLNK | 0o777, 0, 0, 1, 0, target))


def _errno(core: Core, path: str, follow: bool | None = True) -> int:
    with pytest.raises(OSError) as info:
        core.resolve(path, follow=follow)
    assert info.value.filename == path
    return info.value.errno  # type: ignore[return-value]


def test_dot_dot_at_the_root_is_the_root() -> None:
    core = _core()
    root = (ROOT_INO, None, ROOT_INO, True)
    assert core.resolve("/..") == root and core.resolve("/../..") == root
    assert core.resolve("/d/../..") == root
    assert core.resolve("/../d/e/f") == (3, "f", 4, False)
    assert core.resolve("/../../d") == (ROOT_INO, "d", 2, False)
    assert core.resolve("/.") == root and core.resolve("/./.") == root
    assert core.resolve("//") == root


def test_dot_and_dot_dot_as_a_links_target_name_a_directory() -> None:
    core = _core()
    _link(core, 6, 3, "self", ".")
    _link(core, 7, 3, "up", "..")
    _link(core, 8, 3, "upf", "../e/f")
    assert core.resolve("/d/e/self", follow=True) == (3, None, 3, True)
    assert core.resolve("/d/e/up", follow=True) == (2, None, 2, True)
    assert core.resolve("/d/e/self/f") == (3, "f", 4, False)
    assert core.resolve("/d/e/up/e/f") == (3, "f", 4, False)
    assert core.resolve("/d/e/upf", follow=True) == (3, "f", 4, False)
    for follow in (False, None):            # not followed last: the link itself
        assert core.resolve("/d/e/up", follow=follow) == (3, "up", 7, False)


def test_a_link_on_the_way_to_a_file_or_to_nothing() -> None:
    core = _core()
    _link(core, 6, ROOT_INO, "lf", "d/e/f")
    _link(core, 7, ROOT_INO, "gone", "d/nothing")
    _link(core, 8, 3, "abs", "/d/missing")
    assert _errno(core, "/lf/x") == errno.ENOTDIR
    assert _errno(core, "/lf/x", follow=None) == errno.ENOTDIR
    assert _errno(core, "/gone/x") == errno.ENOENT
    assert _errno(core, "/d/e/abs/x", follow=None) == errno.ENOENT
    assert _errno(core, "/g/x") == errno.ENOTDIR
    # last and followed, a dangling link names its target's place (where O_CREAT creates)
    assert core.resolve("/gone", follow=True) == (2, "nothing", None, False)
    assert core.resolve("/d/e/abs", follow=True) == (2, "missing", None, False)
    assert core.resolve("/lf", follow=True) == (3, "f", 4, False)
    assert core.resolve("/gone", follow=False) == (ROOT_INO, "gone", 7, False)
    # a link to a file with a trailing slash is followed to the file (the caller's ENOTDIR)
    assert core.resolve("/lf/", follow=False) == (3, "f", 4, True)


def test_the_links_of_one_walk_are_counted_together() -> None:
    """Three chains: 20 + 1 + 19 links on one path are followed, 20 + 1 + 20 are ELOOP,
    last or on the way."""
    core = _core()
    ino = 6
    for chain, n in (("a", 20), ("b", 19), ("c", 20)):
        for i in range(n):                  # /a0 -> /a1 -> ... -> /a19 -> d
            _link(core, ino, ROOT_INO, f"{chain}{i}", f"{chain}{i + 1}" if i < n - 1 else "d")
            ino += 1
    _link(core, ino, 3, "tob", "/b0")       # /d/e/tob -> /b0 -> ... -> d
    _link(core, ino + 1, 3, "toc", "/c0")
    assert core.resolve("/a0/e/tob", follow=True) == (ROOT_INO, "d", 2, False)            # 40
    assert core.resolve("/a0/e/tob/e/f") == (3, "f", 4, False)                            # 40
    assert _errno(core, "/a0/e/toc", follow=True) == errno.ELOOP                          # 41
    assert _errno(core, "/a0/e/toc/e/f") == errno.ELOOP                                   # 41, on the way
    assert core.resolve("/a0/e/toc", follow=False) == (3, "toc", ino + 1, False)          # 20: not last
    assert core.resolve("/c0/e/tob/e/f") == (3, "f", 4, False)                            # 40
    assert MAX_SYMLINKS == 40


def test_a_name_too_long_on_the_way_is_enametoolong_before_it_is_looked_up() -> None:
    core = _core()
    long = "\U0001F600" * 64                # 256 bytes of UTF-8
    assert _errno(core, "/" + long + "/x", follow=None) == errno.ENAMETOOLONG
    assert _errno(core, "/d/" + long + "/e") == errno.ENAMETOOLONG
    assert _errno(core, "/d/" + "n" * 256) == errno.ENAMETOOLONG
    fits = "n" * 255
    assert core.resolve("/d/" + fits) == (2, fits, None, False)
    assert _errno(core, "/d/" + fits + "/x") == errno.ENOENT
    assert core.resolve("/d/" + "\U0001F600" * 63 + "abc") == (2, "\U0001F600" * 63 + "abc", None, False)


def test_searched_lists_the_directories_looked_in_through_links() -> None:
    core = _core()
    _link(core, 6, 3, "top", "/d")
    searched: list = []
    assert core.resolve("/d/e/top/e/f", searched=searched) == (3, "f", 4, False)
    assert [node.ino for node in searched] == [ROOT_INO, 2, 3, ROOT_INO, 2, 3]
    searched = []
    core.resolve("/d/../d/e/..", searched=searched)
    assert [node.ino for node in searched] == [ROOT_INO, 2, ROOT_INO, 2, 3]


def test_the_volume_walks_the_same_way(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Through the public calls: ``..`` at the root, a link to ``..``, ENOTDIR through a
    link to a file, O_CREAT through a dangling link in another directory."""
    vol = daxfs.mkfs(str(tmp_path / "pool"), 8 << 20)
    vol.mkdir("/d/e", parents=True)
    with vol.open("/d/e/f", "wb") as f:
        f.write(b"data")
    vol.symlink("..", "/d/e/up")
    vol.symlink("e/f", "/d/lf")
    vol.symlink("/d/e/new", "/made")
    assert vol.stat("/..").st_ino == vol.stat("/").st_ino
    assert vol.stat("/d/e/up").st_ino == vol.stat("/d").st_ino
    assert vol.stat("/../d/e/up/lf").st_size == 4
    with pytest.raises(OSError) as info:
        vol.stat("/d/lf/x")
    assert info.value.errno == errno.ENOTDIR
    with vol.open("/made", "wb") as f:
        f.write(b"new")
    assert sorted(vol.listdir("/d/e")) == ["f", "new", "up"] and vol.readlink("/made") == "/d/e/new"
    assert vol.fsck() == []
    vol.close()
