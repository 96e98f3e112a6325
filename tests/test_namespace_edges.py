"""The namespace's calls at their edges (found by a mutation run over ``volume/namespace.py``):
each test pins down one thing a slip there would get wrong while every other test still
passed.

- errors name the path Linux names: of a two-path call (exchange) the one at fault, of a
  refused change on a read-only volume the path asked for (the ``filename`` ``os`` gives);
- ``exchange``: ``/`` on either side is EBUSY, a missing name on either side ENOENT, a
  directory with the other inside it EINVAL whichever side it is on; the temporary name
  steps past names already in the directory; its checkpoint reservation is exact;
- ``symlink`` and ``mknod``: a bad target is ENOENT / ENAMETOOLONG / EINVAL, a link is
  0o777 whatever the umask and has no device number, a FIFO or socket drops the device
  number it was given, a new name with a trailing slash is ENOENT, a caller's
  ``(uid, gid, umask)`` (the arbiter's clients') is what the node gets; the reservation
  counts the name and the target;
- a directory never moves below itself however deep the target is (rename: EINVAL into
  it, ENOTEMPTY over an ancestor of the source; exchange: EINVAL either way);
- ``stat`` of a device node gives its device number (it gave 0: fixed in ``Journal.stat_of``);
- ``readlink`` of ``link/`` follows the link (EINVAL: a directory is no link);
- the umask is read afresh at each create (a change between two creates is seen) and
  left as it was;
- ``OpenFile.of`` finds the volume's handle under a text or a buffered file (flushing
  what they hold first), and takes anything else (a path, an object that merely has a
  ``buffer``) for a path;
- a read-only follower whose handle on another process's orphan closes frees nothing:
  the writer's orphan stays readable and the pool clean.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat as st
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import daxfs
from daxfs.volume import Volume
from daxfs.volume.namespace import GROW_INODE, OpenFile

from _small_volume import read_file, small_volume, write_file


@pytest.fixture
def vol() -> Iterator[Volume]:
    v = small_volume()
    yield v
    if not v.closed:
        assert v.fsck() == []
        v.close()


def error_of(call: Callable[[], object]) -> OSError:
    with pytest.raises(OSError) as info:
        call()
    return info.value


def names(vol: Volume, path: str = "/") -> list[str]:
    return sorted(vol.listdir(path))


def tree(vol: Volume) -> dict[str, tuple[int, int, int]]:
    """Every name below the root with its inode, mode and size (what a failed call must not move)."""
    out: dict[str, tuple[int, int, int]] = {}

    def walk(path: str) -> None:
        for name in vol.listdir(path):
            full = path.rstrip("/") + "/" + name
            s = vol.lstat(full)
            out[full] = (s.st_ino, s.st_mode, s.st_size)
            if st.S_ISDIR(s.st_mode):
                walk(full)

    walk("/")
    return out


def check_room(make: Callable[[], Volume], op: Callable[[Volume], object], room: int) -> None:
    """``op`` on a volume ``make`` returns: with one byte less checkpoint room than ``room`` it
    is ENOSPC and changes nothing (the tree, the log); with ``room`` it commits."""
    for give, fits in ((room - 1, False), (room, True)):
        vol = make()
        j = vol._journal
        layout = j.layout
        before, seq = tree(vol), j.ring.next_seq
        j.layout = dataclasses.replace(layout, checkpoint_size=j.core.checkpoint_bound + give + 64)
        try:
            if fits:
                op(vol)
            else:
                assert error_of(lambda: op(vol)).errno == errno.ENOSPC
        finally:
            j.layout = layout
        if fits:
            assert j.ring.next_seq > seq and tree(vol) != before
        else:
            assert j.ring.next_seq == seq and tree(vol) == before
        assert vol.fsck() == []
        vol.close()


# ---------------------------------------------------------------- exchange


def _exchange_tree() -> Volume:
    vol = small_volume()
    vol.mkdir("/d/sub", parents=True)
    write_file(vol, "/a", b"a")
    write_file(vol, "/d/f", b"f")
    return vol


def test_exchange_names_the_path_at_fault() -> None:
    vol = _exchange_tree()
    ex = vol.namespace.exchange
    before = tree(vol)
    for src, dst, code, named in (("/", "/a", errno.EBUSY, "/"), ("/a", "/d/..", errno.EBUSY, "/d/.."),
                                  ("/d/.", "/a", errno.EBUSY, "/d/."),
                                  ("/gone", "/a", errno.ENOENT, "/gone"), ("/a", "/missing", errno.ENOENT, "/missing"),
                                  ("/d", "/d/sub", errno.EINVAL, "/d"),           # the source holds the target
                                  ("/d/sub", "/d", errno.EINVAL, "/d/sub")):      # the target holds the source
        exc = error_of(lambda: ex(src, dst))
        assert (exc.errno, exc.filename) == (code, named), (src, dst, exc)
    assert tree(vol) == before and vol.fsck() == []
    vol.close()


def test_exchange_on_a_readonly_volume_is_erofs_naming_the_source(tmp_path: Any) -> None:
    path = str(tmp_path / "pool")
    with daxfs.mkfs(path, 16 << 20) as v:
        write_file(v, "/a", b"a")
        write_file(v, "/b", b"b")
    with daxfs.open_volume(path, readonly=True) as ro:
        for call, named in ((lambda: ro.namespace.exchange("/a", "/b"), "/a"),
                            (lambda: ro.symlink("t", "/l"), "/l"),
                            (lambda: ro.mknod("/fifo"), "/fifo")):
            exc = error_of(call)
            assert (exc.errno, exc.filename) == (errno.EROFS, named)
        assert names(ro) == ["a", "b"]


def test_exchange_steps_its_temporary_name_past_names_already_there() -> None:
    vol = _exchange_tree()
    a = vol.stat("/a").st_ino
    # the names the temporary one would take first; "~" too, which a swap that restarted
    # from "~" instead of extending its name would loop on
    taken = [f".daxfs-exchange-{a}", f".daxfs-exchange-{a}~", "~"]
    for i, name in enumerate(taken):
        write_file(vol, "/" + name, bytes([i]) * 3)
    f = vol.stat("/d/f").st_ino
    vol.namespace.exchange("/a", "/d/f")
    assert vol.stat("/a").st_ino == f and vol.stat("/d/f").st_ino == a
    assert names(vol) == sorted(["a", "d", *taken]) and names(vol, "/d") == ["f", "sub"]
    for i, name in enumerate(taken):
        assert read_file(vol, "/" + name) == bytes([i]) * 3
    assert read_file(vol, "/a") == b"f" and read_file(vol, "/d/f") == b"a"
    assert vol.fsck() == []
    vol.close()


def test_exchange_of_two_directories_keeps_their_contents_and_link_counts(vol: Volume) -> None:
    vol.mkdir("/x/deep", parents=True)
    vol.mkdir("/y")
    write_file(vol, "/y/in_y", b"y")
    vol.namespace.exchange("/x", "/y")
    assert names(vol, "/x") == ["in_y"] and names(vol, "/y") == ["deep"]
    assert vol.stat("/x").st_nlink == 2 and vol.stat("/y").st_nlink == 3 and vol.stat("/").st_nlink == 4


def test_exchange_reserves_room_for_the_three_names_it_writes() -> None:
    def make() -> Volume:
        vol = small_volume()
        vol.mkdir("/dir")
        write_file(vol, "/first", b"1")
        write_file(vol, "/dir/second-name", b"2")
        return vol

    spare = len(".daxfs-exchange-") + len(str(make().stat("/first").st_ino))
    check_room(make, lambda v: v.namespace.exchange("/first", "/dir/second-name"),
               4 * (spare + len("first") + len("second-name")))


def test_a_directory_never_moves_below_itself_however_deep(vol: Volume) -> None:
    vol.mkdir("/a/b/c/d", parents=True)
    write_file(vol, "/a/b/c/d/f", b"f")
    before = tree(vol)
    for call, code, named in ((lambda: vol.rename("/a", "/a/b/c/d/new"), errno.EINVAL, "/a"),
                              (lambda: vol.rename("/a/b", "/a/b/c/new"), errno.EINVAL, "/a/b"),
                              (lambda: vol.rename("/a/b/c/d/f", "/a", replace=True), errno.ENOTEMPTY, "/a"),
                              (lambda: vol.rename("/a/b/c/d", "/a/b", replace=True), errno.ENOTEMPTY, "/a/b"),
                              (lambda: vol.namespace.exchange("/a", "/a/b/c/d"), errno.EINVAL, "/a"),
                              (lambda: vol.namespace.exchange("/a/b/c/d/f", "/a/b"), errno.EINVAL, "/a/b/c/d/f")):
        exc = error_of(call)
        assert (exc.errno, exc.filename) == (code, named), exc
    assert tree(vol) == before
    vol.rename("/a/b/c/d", "/d")                    # out from deep below: fine
    vol.rename("/a/b", "/d/b")                      # and into a sibling's subtree
    assert names(vol) == ["a", "d"] and names(vol, "/d") == ["b", "f"] and names(vol, "/d/b/c") == []


# ---------------------------------------------------------------- symlinks and special files


def test_symlink_targets_it_cannot_store(vol: Volume) -> None:
    for target, code in (("", errno.ENOENT), ("x" * 4096, errno.ENAMETOOLONG), ("a\0b", errno.EINVAL)):
        exc = error_of(lambda: vol.symlink(target, "/l"))
        assert (exc.errno, exc.filename) == (code, "/l"), (target, exc)
    assert names(vol) == [] and vol._core.target_chars == 0


def test_a_new_name_with_a_trailing_slash_is_enoent(vol: Volume) -> None:
    for call in (lambda: vol.symlink("t", "/new/"), lambda: vol.mknod("/new/", st.S_IFIFO | 0o600)):
        exc = error_of(call)
        assert (exc.errno, exc.filename) == (errno.ENOENT, "/new/")
    assert names(vol) == []


def test_a_symlink_is_0777_without_a_device_whatever_the_umask(vol: Volume) -> None:
    vol.namespace.symlink("target", "/l", creator=(5, 6, 0o077))
    s = vol.lstat("/l")
    assert s.st_mode == st.S_IFLNK | 0o777 and (s.st_uid, s.st_gid) == (5, 6) and s.st_rdev == 0
    assert vol._core.inodes[s.st_ino].rdev == 0


def test_mknod_takes_the_callers_identity_and_umask_and_drops_a_fifos_device(vol: Volume) -> None:
    ns = vol.namespace
    ns.mknod("/fifo", st.S_IFIFO | 0o666, 1234, creator=(7, 8, 0o027))
    ns.mknod("/sock", st.S_IFSOCK | 0o777, 99, creator=(9, 10, 0o002))
    ns.mknod("/chr", st.S_IFCHR | 0o666, os.makedev(1, 3), creator=(11, 12, 0o022))
    for path, mode, owner, rdev in (("/fifo", st.S_IFIFO | 0o640, (7, 8), 0), ("/sock", st.S_IFSOCK | 0o775, (9, 10), 0),
                                    ("/chr", st.S_IFCHR | 0o644, (11, 12), os.makedev(1, 3))):
        s = vol.lstat(path)
        assert (s.st_mode, (s.st_uid, s.st_gid), s.st_rdev) == (mode, owner, rdev), path
        assert vol._core.inodes[s.st_ino].rdev == rdev
    exc = error_of(lambda: vol.mknod("/reg", st.S_IFREG | 0o644))
    assert (exc.errno, exc.filename) == (errno.EINVAL, "/reg")


def test_stat_of_a_device_node_gives_its_device_number(vol: Volume) -> None:
    """As ``os.stat`` does (``Stat.st_rdev`` was always 0: ``stat_of`` left it out)."""
    vol.mknod("/null", st.S_IFCHR | 0o666, os.makedev(1, 3))
    vol.mknod("/blk", st.S_IFBLK | 0o600, os.makedev(8, 1))
    assert vol.stat("/null").st_rdev == os.makedev(1, 3) and vol.lstat("/blk").st_rdev == os.makedev(8, 1)
    assert {e.name: e.stat(follow_symlinks=False).st_rdev for e in vol.scandir("/")} == \
        {"null": os.makedev(1, 3), "blk": os.makedev(8, 1)}


def test_a_node_reserves_room_for_its_name_and_target() -> None:
    def make() -> Volume:
        vol = small_volume()
        write_file(vol, "/f", b"")
        return vol

    check_room(make, lambda v: v.symlink("some/target/path", "/link-name"),
               GROW_INODE + 4 * (len("link-name") + len("some/target/path")))
    check_room(make, lambda v: v.mknod("/fifo-name", st.S_IFIFO | 0o600), GROW_INODE + 4 * len("fifo-name"))


def test_readlink_of_a_link_with_a_trailing_slash_follows_it(vol: Volume) -> None:
    vol.mkdir("/dir")
    vol.symlink("dir", "/ld")
    vol.symlink("nowhere", "/dangling")
    assert vol.readlink("/ld") == "dir"
    for path in ("/ld/", "/dir"):
        exc = error_of(lambda: vol.readlink(path))
        assert (exc.errno, exc.filename) == (errno.EINVAL, path)
    assert error_of(lambda: vol.readlink("/dangling/")).errno == errno.ENOENT


def test_scan_and_listdir_of_a_file_name_it(vol: Volume) -> None:
    write_file(vol, "/f", b"x")
    for call in (lambda: vol.scandir("/f"), lambda: vol.listdir("/f")):
        exc = error_of(call)
        assert (exc.errno, exc.filename) == (errno.ENOTDIR, "/f")


# ---------------------------------------------------------------- the umask


def test_each_create_reads_the_umask_of_that_moment_and_leaves_it(vol: Volume) -> None:
    old = os.umask(0o022)
    try:
        write_file(vol, "/a", b"")
        os.umask(0o077)
        write_file(vol, "/b", b"")
        vol.mkdir("/d")
        assert os.umask(0o027) == 0o077          # the creates left the umask as they found it
        vol.mknod("/fifo", st.S_IFIFO | 0o666)
        write_file(vol, "/c", b"")
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)
    modes = {p: st.S_IMODE(vol.lstat(p).st_mode) for p in ("/a", "/b", "/d", "/fifo", "/c")}
    assert modes == {"/a": 0o644, "/b": 0o600, "/d": 0o700, "/fifo": 0o640, "/c": 0o640}


# ---------------------------------------------------------------- OpenFile.of


def test_open_file_of_unwraps_text_and_buffered_files_flushing_them(vol: Volume) -> None:
    with vol.open("/t", "w") as text, vol.open("/b", "wb") as buffered, vol.open("/r", "wb", buffering=0) as raw:
        text.write("text")
        buffered.write(b"buffered")
        for f, path, data in ((text, "/t", b"text"), (buffered, "/b", b"buffered"), (raw, "/r", b"")):
            handle = OpenFile.of(f)
            assert isinstance(handle, OpenFile) and handle.path == path and handle.ino == vol.stat(path).st_ino
            assert read_file(vol, path) == data         # what the wrapper held was flushed first
    assert OpenFile.of("/t") is None
    # something with a ``buffer`` (or ``raw``) but no flush is no file object: a path
    assert OpenFile.of(types.SimpleNamespace(buffer=raw)) is None
    assert OpenFile.of(types.SimpleNamespace(raw=raw)) is None


# ---------------------------------------------------------------- orphans


def test_a_followers_last_close_of_an_orphan_frees_nothing(tmp_path: Any) -> None:
    path = str(tmp_path / "pool")
    vol = daxfs.mkfs(path, 16 << 20)
    write_file(vol, "/f", b"kept" * 1000)
    held = vol.open("/f", "rb", buffering=0)
    try:
        with daxfs.open_volume(path, readonly=True) as ro:
            seen = ro.open("/f", "rb", buffering=0)
            vol.unlink("/f")                        # an orphan: the writer still holds it
            assert ro.listdir() == []               # (the follower caught up)
            seen.close()                            # the follower's last reference to it goes
            assert ro.fsck() == []
        assert held.read() == b"kept" * 1000
        assert len(vol._core.orphans()) == 1 and vol.fsck() == []
    finally:
        held.close()
    assert vol._core.orphans() == [] and vol.fsck() == []
    vol.close()
    with daxfs.open_volume(path) as again:
        assert again.listdir() == [] and again.fsck() == []
