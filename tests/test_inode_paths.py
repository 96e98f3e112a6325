"""``core.inode_paths.paths_of``: a current name for each inode, in one walk of the tree
(what pins(), owners(), bad-memory reports and poison errors name files by)."""

from __future__ import annotations

from daxfs.core.inode_paths import paths_of

from _small_volume import small_volume, write_file


def test_each_inode_gets_a_name_it_has_now_or_none() -> None:
    vol = small_volume()
    vol.mkdir("/a")
    vol.mkdir("/a/b")
    vol.mkdir("/c")
    for path in ("/top", "/a/one", "/a/b/deep", "/c/two", "/gone", "/orphan"):
        write_file(vol, path, b"x")
    vol.link("/a/b/deep", "/c/deep-too")        # two names: either will do
    core = vol._journal.core
    ino = {p: vol.stat(p).st_ino for p in ("/top", "/a/one", "/a/b/deep", "/c/two", "/gone", "/orphan",
                                           "/a", "/a/b")}
    vol.unlink("/gone")                         # freed: no inode any more
    with vol.open("/orphan", "rb"):
        vol.unlink("/orphan")                   # alive, but named nowhere
        got = paths_of(core, set(ino.values()) | {999_999})
    assert got == {ino["/top"]: "/top", ino["/a/one"]: "/a/one", ino["/c/two"]: "/c/two",
                   ino["/a"]: "/a", ino["/a/b"]: "/a/b", ino["/gone"]: None, ino["/orphan"]: None,
                   ino["/a/b/deep"]: got[ino["/a/b/deep"]], 999_999: None}
    assert got[ino["/a/b/deep"]] in ("/a/b/deep", "/c/deep-too")
    assert paths_of(core, set()) == {}
    assert paths_of(core, {ino["/a/b/deep"]})[ino["/a/b/deep"]] in ("/a/b/deep", "/c/deep-too")


def test_a_file_renamed_is_named_where_it_is_now() -> None:
    vol = small_volume()
    vol.mkdir("/d")
    write_file(vol, "/d/f", b"x")
    ino = vol.stat("/d/f").st_ino
    vol.rename("/d/f", "/g")
    vol.rmdir("/d")
    assert paths_of(vol._journal.core, {ino}) == {ino: "/g"}
