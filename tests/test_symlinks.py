"""Symlinks and special files (issue 13): the CreateNode record, resolution with ELOOP and
O_NOFOLLOW, the checkpoint's 11-field rows, fsck, and the same calls through the arbiter."""

from __future__ import annotations

import errno
import os
import stat as st
import uuid
from collections.abc import Iterator

import pytest

import daxfs
from daxfs.core import Core, check
from daxfs.core.records import CreateNode
from daxfs.core.state import MAX_SYMLINKS
from daxfs.errors import CorruptVolumeError
from daxfs.testing import snapshot

BS = 4096


@pytest.fixture
def vol(tmp_path) -> Iterator[daxfs.Volume]:  # type: ignore[no-untyped-def]
    v = daxfs.mkfs(str(tmp_path / "pool"), 16 << 20)
    yield v
    if not v.closed:
        assert v.fsck() == []
        v.close()


def reopen(v: daxfs.Volume) -> daxfs.Volume:
    v.close()
    return daxfs.open_volume(v.path)


def errno_of(call) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as info:
        call()
    return info.value.errno  # type: ignore[return-value]


# ---------------------------------------------------------------- the record


def test_create_node_checks_what_each_type_needs() -> None:
    CreateNode(2, 1, "l", st.S_IFLNK | 0o777, 0, 0, 0, 0, "t").validate()
    CreateNode(2, 1, "c", st.S_IFCHR | 0o600, 0, 0, 0, (1 << 64) - 1, "").validate()
    for bad in (CreateNode(2, 1, "l", st.S_IFLNK | 0o777, 0, 0, 0, 0, ""),          # a link needs a target
                CreateNode(2, 1, "f", st.S_IFIFO | 0o644, 0, 0, 0, 0, "t"),         # a FIFO has none
                CreateNode(2, 1, "l", st.S_IFLNK | 0o777, 0, 0, 0, 5, "t"),         # nor a link a device
                CreateNode(2, 1, "r", st.S_IFREG | 0o644, 0, 0, 0, 0, ""),          # files are Create's
                CreateNode(2, 1, "l", st.S_IFLNK | 0o777, 0, 0, 0, 0, "x" * 4096),  # PATH_MAX
                CreateNode(2, 1, "l", st.S_IFLNK | 0o777, 0, 0, 0, 0, "a\0b")):
        with pytest.raises(ValueError):
            bad.validate()
    with pytest.raises(TypeError):
        CreateNode(2, 1, "l", st.S_IFLNK, 0, 0, 0, 0, None)  # type: ignore[arg-type]


# ---------------------------------------------------------------- resolution


def test_links_are_followed_on_the_way_and_last_as_asked(vol: daxfs.Volume) -> None:
    vol.mkdir("/d/e", parents=True)
    with vol.open("/d/e/f", "wb") as f:
        f.write(b"hello")
    vol.symlink("e/f", "/d/rel")            # relative to the link's directory
    vol.symlink("/d", "/abs")               # absolute: from the volume's root
    vol.symlink("../e", "/d/e/up")
    assert vol.stat("/d/rel").st_size == 5 and vol.lstat("/d/rel").st_size == 3
    assert st.S_ISLNK(vol.lstat("/abs").st_mode) and vol.readlink("/abs") == "/d"
    assert vol.listdir("/abs/e") == ["f", "up"] and vol.stat("/abs/e/up/up/f").st_size == 5
    assert vol.stat("/abs/").st_ino == vol.stat("/d").st_ino             # a trailing slash follows
    assert vol.lstat("/abs/").st_ino == vol.stat("/d").st_ino            # ... even for lstat
    with vol.open("/abs/e/up/f", "rb") as f:
        assert f.read() == b"hello"
    assert errno_of(lambda: vol.readlink("/d/e/f")) == errno.EINVAL
    assert errno_of(lambda: vol.listdir("/d/rel")) == errno.ENOTDIR


def test_eloop_after_forty_links_and_on_cycles(vol: daxfs.Volume) -> None:
    with vol.open("/t0", "wb") as f:
        f.write(b"end")
    for i in range(1, MAX_SYMLINKS + 2):
        vol.symlink(f"t{i - 1}", f"/t{i}")
    assert vol.stat(f"/t{MAX_SYMLINKS}").st_size == 3                     # 40 links: followed
    assert errno_of(lambda: vol.stat(f"/t{MAX_SYMLINKS + 1}")) == errno.ELOOP
    vol.symlink("b", "/a")
    vol.symlink("a", "/b")
    assert errno_of(lambda: vol.stat("/a")) == errno.ELOOP
    assert errno_of(lambda: vol.open("/a/x", "wb")) == errno.ELOOP
    vol.lstat("/a")
    vol.unlink("/a")                                                      # the link itself goes


def test_open_follows_creates_through_dangling_and_nofollow_is_eloop(vol: daxfs.Volume) -> None:
    vol.symlink("target", "/dangling")
    assert errno_of(lambda: vol.open("/dangling", "rb")) == errno.ENOENT
    assert errno_of(lambda: vol.open("/dangling", "xb")) == errno.EEXIST     # O_EXCL: never through
    with vol.open("/dangling", "wb") as f:                                 # O_CREAT makes the target
        f.write(b"made")
    assert sorted(vol.listdir("/")) == ["dangling", "target"]
    assert errno_of(lambda: vol.open("/dangling", "rb", follow_symlinks=False)) == errno.ELOOP
    with vol.open("/target", "rb", follow_symlinks=False) as f:
        assert f.read() == b"made"


def test_names_of_links_are_links_not_targets(vol: daxfs.Volume) -> None:
    vol.mkdir("/dir")
    vol.symlink("dir", "/ld")
    assert errno_of(lambda: vol.rmdir("/ld")) == errno.ENOTDIR
    assert errno_of(lambda: vol.rmdir("/ld/")) == errno.ENOTDIR
    assert errno_of(lambda: vol.mkdir("/ld")) == errno.EEXIST
    assert errno_of(lambda: vol.symlink("x", "/ld")) == errno.EEXIST
    vol.link("/ld", "/ld2")                              # a hard link to the symlink itself
    assert vol.lstat("/ld").st_nlink == 2 and vol.lstat("/ld2").st_ino == vol.lstat("/ld").st_ino
    vol.rename("/ld2", "/dir/moved")                     # moves the link, not the directory
    assert vol.readlink("/dir/moved") == "dir" and vol.stat("/dir").st_nlink == 2
    vol.unlink("/ld")
    vol.unlink("/dir/moved")
    assert vol.listdir("/") == ["dir"] and vol.statfs().files == 2
    assert vol._core.target_chars == 0


def test_special_files(vol: daxfs.Volume) -> None:
    os.umask(umask := os.umask(0o022))
    vol.mknod("/fifo", st.S_IFIFO | 0o666)
    vol.mknod("/sock", st.S_IFSOCK | 0o600)
    vol.mknod("/null", st.S_IFCHR | 0o666, os.makedev(1, 3))
    vol.mknod("/blk", st.S_IFBLK | 0o600, os.makedev(8, 1))
    assert vol.lstat("/fifo").st_mode == st.S_IFIFO | (0o666 & ~umask)
    assert vol._core.inodes[vol.stat("/null").st_ino].rdev == os.makedev(1, 3)
    assert vol.stat("/null").st_size == 0 and vol.stat("/null").st_blocks == 0
    for path in ("/fifo", "/sock", "/null"):
        assert errno_of(lambda: vol.open(path, "rb")) == errno.ENXIO
    assert errno_of(lambda: vol.mknod("/reg", st.S_IFREG | 0o644)) == errno.EINVAL
    assert errno_of(lambda: vol.clone_file("/null", "/x")) == errno.EINVAL
    vol.chmod("/fifo", 0o600)
    vol.rename("/fifo", "/fifo2")
    vol.link("/fifo2", "/fifo3")
    assert vol.stat("/fifo3").st_nlink == 2


def test_exchange_swaps_two_names_in_one_record(vol: daxfs.Volume) -> None:
    vol.mkdir("/a/sub", parents=True)
    with vol.open("/b", "wb") as f:
        f.write(b"file")
    a, b = vol.stat("/a").st_ino, vol.stat("/b").st_ino
    vol.namespace.exchange("/a", "/b")
    assert vol.stat("/b").st_ino == a and vol.stat("/a").st_ino == b and vol.listdir("/b") == ["sub"]
    vol.namespace.exchange("/a", "/b/sub")                # across directories
    assert vol.stat("/b/sub").st_ino == b and vol.listdir("/a") == []
    assert errno_of(lambda: vol.namespace.exchange("/b", "/b/sub")) == errno.EINVAL
    assert errno_of(lambda: vol.namespace.exchange("/b", "/nope")) == errno.ENOENT
    assert sorted(vol.listdir("/")) == ["a", "b"]        # no temporary name is left
    vol = reopen(vol)
    assert vol.stat("/b/sub").st_ino == b and vol.fsck() == []
    vol.close()


# ---------------------------------------------------------------- durability and the checkpoint


@pytest.mark.parametrize("checkpoint", [False, True], ids=["log", "checkpoint"])
def test_links_and_nodes_survive_a_remount(vol: daxfs.Volume, checkpoint: bool) -> None:
    vol.mkdir("/d")
    vol.symlink("caf\u00e9/\udce9" * 10, "/d/link")
    vol.mknod("/d/dev", st.S_IFCHR | 0o640, os.makedev(4, 64))
    vol.chown("/d/dev", 7, 8)
    vol.namespace.setattr("/d/link", uid=5, gid=6, follow=False)     # lchown
    before = snapshot(vol)
    if checkpoint:
        vol.checkpoint()
    vol = reopen(vol)
    assert snapshot(vol) == before
    assert vol.lstat("/d/link").st_uid == 5 and vol._core.inodes[vol.stat("/d/dev").st_ino].rdev == os.makedev(4, 64)
    assert vol.fsck() == []
    vol.close()


def _state(extra: list[object]) -> list[object]:
    return [4, [[1, st.S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, None, ["l", 2]],
                [2, st.S_IFLNK | 0o777, 0, 0, 3, 0, 0, 0, None, None, "abc"], *extra]]


def test_checkpoint_rows_of_links_and_nodes_are_checked() -> None:
    core = Core.from_checkpoint(_state([]), BS, 64)
    assert core.inodes[2].target == "abc" and check(core) == []
    for bad in ([[2, st.S_IFLNK | 0o777, 0, 0, 4, 0, 0, 0, None, None, "abc"]],       # size is not the length
                [[2, st.S_IFLNK | 0o777, 0, 0, 0, 0, 0, 0, None, None, ""]],          # no target
                [[2, st.S_IFREG | 0o644, 0, 0, 0, 0, 0, 0, None, None, "abc"]],       # a file in an 11-field row
                [[2, st.S_IFIFO | 0o644, 0, 0, 0, 0, 0, 0, None, None, "abc"]],       # a FIFO with a target
                [[2, st.S_IFCHR | 0o644, 0, 0, 0, 0, 0, 0, [], None, 0]],             # with a block map
                [[2, st.S_IFLNK | 0o777, 0, 0, 3, 0, 0, 0, None, None, "abc"]] * 2):  # twice
        state = [4, [_state([])[1][0], *bad]]       # type: ignore[index]
        with pytest.raises(CorruptVolumeError):
            Core.from_checkpoint(state, BS, 64)
    with pytest.raises(CorruptVolumeError):         # a mode only 11-field rows may have
        Core.from_checkpoint([4, [_state([])[1][0], [2, st.S_IFLNK | 0o777, 0, 0, 3, 0, 0, 0, None, None]]], BS, 64)


def test_fsck_finds_a_damaged_link() -> None:
    core = Core.from_checkpoint(_state([]), BS, 64)
    core.inodes[2].size = 9
    assert any("symlink 2" in p for p in check(core))
    core.inodes[2].size, core.inodes[2].target = 3, None
    assert any("without a target" in p for p in check(core))


# ---------------------------------------------------------------- through the arbiter


@pytest.fixture
def served() -> Iterator[str]:
    import threading

    from daxfs.adapters.server import Server

    path = f"/dev/shm/daxfs-symlinks-{os.getpid()}-{uuid.uuid4().hex}.pool"
    daxfs.mkfs(path, 16 << 20).close()
    server = Server(path, log=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    assert server.stop()
    thread.join(5)
    for leftover in (path, path + ".sock", path + ".holders"):
        if os.path.exists(leftover):
            os.unlink(leftover)


def test_client_symlinks_and_nodes(served: str) -> None:
    with daxfs.connect(served) as client:
        client.mkdir("/d")
        client.symlink("d", "/ld")
        client.mknod("/d/fifo", st.S_IFIFO | 0o600)
        assert client.readlink("/ld") == "d" and st.S_ISLNK(client.lstat("/ld").st_mode)
        assert client.listdir("/ld") == ["fifo"] and st.S_ISFIFO(client.stat("/ld/fifo").st_mode)
        assert client.lstat("/ld").st_uid == os.getuid()
        assert errno_of(lambda: client.readlink("/d")) == errno.EINVAL
        assert client.fsck() == []


def test_client_open_follows_links_unless_told_not_to(served: str) -> None:
    with daxfs.connect(served) as client:
        with client.open("/target", "wb") as f:
            f.write(b"made")
        client.symlink("target", "/link")
        with client.open("/link", "rb") as f:
            assert f.read() == b"made"
        assert errno_of(lambda: client.open("/link", "rb", follow_symlinks=False)) == errno.ELOOP
        with client.open("/target", "rb", follow_symlinks=False) as f:
            assert f.read() == b"made"
        assert client.fsck() == []
