"""The FUSE mount (issue 13): the shipped VolumeSuite through ``os`` calls on the mount, what
only a mount shows (symlinks, special files, rename flags, permissions of the caller), pin
policies met through the mount, and the kernel's caches kept true to a Python client's
changes; ``daxfs mount``/``umount`` and a daemon killed with SIGKILL.  The mount is
``daxfs serve POOL --mount DIR`` in a process of its own (``_fusemount``): this process only
makes syscalls on it, and asks the volume what only it can say through a client.

Skipped only where a mount cannot exist at all: no /dev/fuse, or no libfuse 3 (the README's
test command installs Debian's fuse3).
"""

from __future__ import annotations

import errno
import os
import stat as st
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

import daxfs
from daxfs.testing.oscalls import RENAME_EXCHANGE, OsVolume, fallocate, renameat2
from daxfs.testing.suite import VolumeSuite

from _fusemount import WHY, Mounted, mount_dir, mounted, pool_path  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(WHY is not None, reason=f"no FUSE here: {WHY}")

#: Suite tests whose promise is the daxfs API's and not one a mount can make, and why.
NOT_FOR_A_MOUNT = {
    "test_enospc_is_all_or_nothing": "the kernel may split one write(2) into several requests, each "
                                     "all-or-nothing: a write that meets ENOSPC can be short, as on "
                                     "any Linux file system",
}


class TestFuseVolume(VolumeSuite):
    """Every part of the suite whose calls have a syscall, through the mount."""

    supports = frozenset()      # mappings, pins, reflink: the daxfs API's, not a mount's

    @pytest.fixture(autouse=True)
    def _not_for_a_mount(self, request: pytest.FixtureRequest) -> None:
        reason = NOT_FOR_A_MOUNT.get(request.node.originalname)
        if reason is not None:
            pytest.skip(reason)

    @pytest.fixture
    def volume(self, mounted: Mounted) -> OsVolume:
        return OsVolume(mounted.root, mounted.client)

    @pytest.fixture
    def reopen(self, mounted: Mounted) -> Callable[[Any], Any]:
        def reopen(vol: Any) -> Any:
            vol.close()
            mounted.stop()
            vol.drop_orphaned()
            mounted.start()
            return OsVolume(mounted.root, mounted.client)
        return reopen


# ---------------------------------------------------------------- what only a mount shows


def test_symlinks_special_files_and_rename_flags(mounted: Mounted) -> None:
    root = mounted.root
    os.mkdir(f"{root}/d")
    with open(f"{root}/d/f", "wb") as fh:
        fh.write(b"hello")
    os.symlink("d/f", f"{root}/link")
    os.symlink("nowhere", f"{root}/dangling")
    assert os.readlink(f"{root}/link") == "d/f" and st.S_ISLNK(os.lstat(f"{root}/link").st_mode)
    assert os.stat(f"{root}/link").st_size == 5 and os.lstat(f"{root}/link").st_size == 3
    with open(f"{root}/link", "rb") as fh:
        assert fh.read() == b"hello"
    with pytest.raises(OSError) as info:
        os.open(f"{root}/link", os.O_RDONLY | os.O_NOFOLLOW)
    assert info.value.errno == errno.ELOOP
    os.symlink("loop", f"{root}/loop")
    with pytest.raises(OSError) as info:
        os.stat(f"{root}/loop")
    assert info.value.errno == errno.ELOOP
    assert mounted.client.readlink("/link") == "d/f"                # the volume holds the link
    os.mkfifo(f"{root}/fifo", 0o640)
    os.mknod(f"{root}/null", st.S_IFCHR | 0o666, os.makedev(1, 3))
    assert st.S_ISFIFO(os.stat(f"{root}/fifo").st_mode) and os.stat(f"{root}/null").st_rdev == os.makedev(1, 3)
    # a FIFO on the mount works as one (the kernel serves it, as on tmpfs)
    reader = os.open(f"{root}/fifo", os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(f"{root}/fifo", os.O_WRONLY)
    os.write(writer, b"through the fifo")
    assert os.read(reader, 100) == b"through the fifo"
    os.close(writer)
    os.close(reader)
    with pytest.raises(FileExistsError):
        renameat2(f"{root}/d/f", f"{root}/link", 1)                  # RENAME_NOREPLACE
    ino_f, ino_link = os.lstat(f"{root}/d/f").st_ino, os.lstat(f"{root}/link").st_ino
    renameat2(f"{root}/d/f", f"{root}/link", RENAME_EXCHANGE)
    assert os.lstat(f"{root}/link").st_ino == ino_f and os.lstat(f"{root}/d/f").st_ino == ino_link
    assert sorted(os.listdir(root)) == ["d", "dangling", "fifo", "link", "loop", "null"]
    assert mounted.client.fsck() == []


def test_space_calls_and_block_sharing(mounted: Mounted) -> None:
    root = mounted.root
    bs = 4096
    fd = os.open(f"{root}/f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"x" * (4 * bs), 0)
        os.pwrite(fd, b"y" * bs, 10 * bs)
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 4 * bs and os.lseek(fd, 4 * bs, os.SEEK_DATA) == 10 * bs
        fallocate(fd, 0x02 | 0x01, bs, bs)                              # punch
        assert os.pread(fd, bs, bs) == bytes(bs) and os.lseek(fd, 0, os.SEEK_HOLE) == bs
        fallocate(fd, 0x10, 2 * bs + 1, 10)                             # zero range
        assert os.pread(fd, 12, 2 * bs) == b"x" + bytes(10) + b"x"
        fallocate(fd, 0x01, 20 * bs, bs)                                # keep size
        assert os.fstat(fd).st_size == 11 * bs
        with pytest.raises(OSError) as info:
            fallocate(fd, 0x08, 0, bs)                                  # collapse: not here, as on tmpfs
        assert info.value.errno == errno.EOPNOTSUPP
        out = os.open(f"{root}/copy", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            assert os.copy_file_range(fd, out, 11 * bs, 0, 0) == 11 * bs
            with pytest.raises(OSError) as info:                        # the kernel takes FICLONE
                import fcntl
                fcntl.ioctl(out, 0x40049409, fd)                        # FICLONE: EOPNOTSUPP on FUSE
            assert info.value.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV)
        finally:
            os.close(out)
    finally:
        os.close(fd)
    with mounted.client.open("/copy") as f:                            # aligned: the blocks are shared
        assert any("shared" in e.flags for e in f.extents())
    vfs = os.statvfs(root)
    fs = mounted.client.statfs()
    assert vfs.f_bsize == bs and vfs.f_blocks * bs == fs.size and vfs.f_bfree * bs == fs.free
    assert vfs.f_namemax == 255


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_owner_is_the_caller_and_modes_are_enforced(mounted: Mounted) -> None:
    root = mounted.root
    os.chmod(root, 0o777)
    code = ("import os, sys, errno\n"
            "os.setgid(1234); os.setuid(4321)\n"
            "fd = os.open(sys.argv[1] + '/mine', os.O_CREAT | os.O_WRONLY, 0o640); os.close(fd)\n"
            "os.mkdir(sys.argv[1] + '/mydir', 0o700)\n"
            "try:\n    open(sys.argv[1] + '/roots', 'ab')\nexcept PermissionError:\n    print('denied')\n")
    with open(f"{root}/roots", "wb") as fh:
        fh.write(b"r")
    os.chmod(f"{root}/roots", 0o644)
    result = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "denied"
    s = os.stat(f"{root}/mine")
    assert (s.st_uid, s.st_gid, st.S_IMODE(s.st_mode)) == (4321, 1234, 0o640 & ~_umask())
    assert (mounted.client.stat("/mydir").st_uid, mounted.client.stat("/mydir").st_gid) == (4321, 1234)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_pin_policy_defer_through_the_mount(mounted: Mounted) -> None:
    root = mounted.root
    with open(f"{root}/pinned", "wb") as fh:
        fh.write(b"p" * 8192)
    client = mounted.client
    with client.open("/pinned", "r+b") as f:
        with f.pin(0, 8192) as pin:
            os.unlink(f"{root}/pinned")                  # rm: the name goes, the file lives on
            assert not os.path.exists(f"{root}/pinned") and client.statfs().used == 8192
            assert bytes(pin.buffer[:4]) == b"pppp"
            f.truncate(0)                                # now its pinned blocks are busy
            assert client.statfs().busy == 8192
        assert client.statfs().busy == 0
    assert client.statfs().used == 0 and client.fsck() == []


def test_pin_policy_refuse_through_the_mount(pool_path: str, mount_dir: str) -> None:
    root = mount_dir
    mounted = Mounted(pool_path, root, "--policy", "refuse")
    try:
        with open(f"{root}/pinned", "wb") as fh:
            fh.write(b"p" * 8192)
        with mounted.client.open("/pinned", "rb") as f, f.pin(0, 4096):
            for call in (lambda: os.unlink(f"{root}/pinned"), lambda: os.truncate(f"{root}/pinned", 0)):
                with pytest.raises(OSError) as info:
                    call()
                assert info.value.errno == errno.EBUSY
            assert os.path.getsize(f"{root}/pinned") == 8192
        os.truncate(f"{root}/pinned", 0)                 # released: allowed now
        os.unlink(f"{root}/pinned")
    finally:
        mounted.stop()


def test_a_clients_changes_reach_the_kernels_caches(pool_path: str, mount_dir: str) -> None:
    """With attributes and names cached for an hour, what a client changes shows on the mount:
    only the invalidation can make it (nothing here waits for a cache to expire)."""
    root = mount_dir
    mounted = Mounted(pool_path, root, "-o", "attr_timeout=3600,entry_timeout=3600")
    try:
        with open(f"{root}/f", "wb") as fh:
            fh.write(b"one")
        assert os.stat(f"{root}/f").st_size == 3
        with mounted.client.open("/f", "ab") as f:
            f.write(b" two")
        _until(lambda: os.stat(f"{root}/f").st_size == 7)
        with open(f"{root}/f", "rb") as fh:
            assert fh.read() == b"one two"
        mounted.client.chmod("/f", 0o600)
        _until(lambda: st.S_IMODE(os.stat(f"{root}/f").st_mode) == 0o600)
        mounted.client.rename("/f", "/g")
        _until(lambda: not os.path.exists(f"{root}/f") and os.path.exists(f"{root}/g"))
    finally:
        mounted.stop()


def test_a_name_a_client_removed_is_free_on_the_mount(pool_path: str, mount_dir: str) -> None:
    """The kernel forgets a cached name a client removed or renamed away (names cached for an
    hour: only the invalidation can free them).  Before, for up to ``entry_timeout``, it took
    the name for the old file: open(O_CREAT) failed ENOENT, O_EXCL and mkdir EEXIST."""
    root = mount_dir
    mounted = Mounted(pool_path, root, "-o", "attr_timeout=3600,entry_timeout=3600")
    client = mounted.client
    try:
        os.mkdir(f"{root}/d")
        for name in ("top", "d/deep", "d/renamed", "d/excl"):
            with open(f"{root}/{name}", "wb") as fh:
                fh.write(b"old")
            assert os.stat(f"{root}/{name}").st_size == 3           # the kernel caches the name
        client.unlink("/top")
        client.unlink("/d/deep")
        client.rename("/d/renamed", "/d/elsewhere")
        client.unlink("/d/excl")

        def creates(name: str, flags: int) -> bool:
            try:
                os.close(os.open(f"{root}/{name}", os.O_RDWR | flags, 0o644))
                return True
            except (FileNotFoundError, FileExistsError):
                return False
        _until(lambda: creates("top", os.O_CREAT))
        _until(lambda: creates("d/deep", os.O_CREAT))
        _until(lambda: creates("d/renamed", os.O_CREAT | os.O_EXCL))
        client.unlink("/d/renamed")
        _until(lambda: _makes_dir(f"{root}/d/renamed"))
        _until(lambda: creates("d/excl", os.O_CREAT | os.O_EXCL))
        assert sorted(os.listdir(f"{root}/d")) == ["deep", "elsewhere", "excl", "renamed"]
        assert os.path.getsize(f"{root}/top") == 0 and os.path.getsize(f"{root}/d/elsewhere") == 3
        assert client.fsck() == []
    finally:
        mounted.stop()


def _makes_dir(path: str) -> bool:
    try:
        os.mkdir(path)
        return True
    except (FileNotFoundError, FileExistsError):
        return False


def _until(condition: Callable[[], bool], tries: int = 3000) -> None:
    """Poll ``condition``: a hang detector bounded by a count, not by the clock."""
    for _ in range(tries):
        if condition():
            return
        time.sleep(0.01)
    assert condition(), "the mount never showed the client's change"


# ---------------------------------------------------------------- the command line


def _daxfs(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "daxfs", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_mount_umount_and_a_killed_daemon(pool_path: str, mount_dir: str) -> None:
    root = mount_dir
    _daxfs("mount", pool_path, root)                     # detached: returns once mounted
    assert os.path.ismount(root)
    with open(f"{root}/kept", "wb") as fh:
        fh.write(b"kept")
    _daxfs("umount", root)                               # waits until the daemon closed the pool
    assert not os.path.ismount(root)
    with daxfs.open_volume(pool_path) as vol:            # the pool is free again, and clean
        assert vol.listdir("/") == ["kept"] and vol.fsck() == []
    # a daemon killed with SIGKILL: a dead mount point, a pool that mounts clean
    _daxfs("mount", pool_path, root)
    with open(f"{root}/during", "wb") as fh:
        fh.write(b"x" * 10000)
    os.kill(_daemon_pid(pool_path), 9)
    _until(lambda: _dead(root))
    _daxfs("umount", root)
    assert not os.path.ismount(root)
    with daxfs.open_volume(pool_path) as vol:
        assert sorted(vol.listdir("/")) == ["during", "kept"] and vol.fsck() == []
    assert "not a FUSE mount" in _daxfs("umount", root, check=False).stderr


def _daemon_pid(pool: str) -> int:
    from daxfs.format.layout import OWNER_OFFSET
    from daxfs.format.superblock import decode_owner
    with open(pool, "rb") as fh:
        fh.seek(OWNER_OFFSET)
        pid = decode_owner(fh.read(64))
    assert pid
    return pid


def _dead(root: str) -> bool:
    try:
        os.stat(root)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def test_direct_io_is_honoured_and_mmap_then_refused(pool_path: str, mount_dir: str) -> None:
    """``-o direct_io`` (libfuse takes it through its config, not the command line): reads and
    writes bypass the kernel's page cache, so the kernel refuses mmap on the mount (without it,
    the same mmap works)."""
    import mmap

    for options, mappable in (("direct_io", False), ("attr_timeout=1", True)):
        mounted = Mounted(pool_path, mount_dir, "-o", options)
        try:
            path = f"{mount_dir}/f-{mappable}"
            with open(path, "wb") as fh:
                fh.write(b"d" * 8192)
            with open(path, "rb") as fh:
                assert fh.read() == b"d" * 8192
                if mappable:
                    with mmap.mmap(fh.fileno(), 8192, prot=mmap.PROT_READ) as mm:
                        assert mm[:4] == b"dddd"
                else:
                    with pytest.raises(OSError) as info:
                        mmap.mmap(fh.fileno(), 8192, prot=mmap.PROT_READ)
                    assert info.value.errno == errno.ENODEV
            assert mounted.client.stat(f"/f-{mappable}").st_size == 8192
        finally:
            mounted.stop()


# ---------------------------------------------------------------- write-only opens, closes

def test_writes_through_a_write_only_descriptor_reach_other_opens_pages_and_mappings(mounted: Mounted) -> None:
    """What a write-only descriptor writes shows at once to a reader's cached pages, to a shared
    read mapping, over a page another open dirtied through its mapping (the later write wins,
    as on tmpfs), at the end of the file for O_APPEND, and in the volume."""
    import mmap

    root = mounted.root
    path = f"{root}/f"
    with open(path, "wb") as fh:
        fh.write(b"a" * 65536)
    reader = os.open(path, os.O_RDONLY)
    shared = mmap.mmap(reader, 65536, prot=mmap.PROT_READ)
    both = os.open(path, os.O_RDWR)
    dirty = mmap.mmap(both, 65536)
    try:
        assert os.pread(reader, 65536, 0) == b"a" * 65536 and shared[:4] == b"aaaa"     # cached now
        dirty[16384:16388] = b"MMMM"            # a dirty page of the mapping, not yet written back
        writer = os.open(path, os.O_WRONLY)
        try:
            assert os.pwrite(writer, b"BBBB", 0) == 4
            assert os.pwrite(writer, b"CCCC", 8190) == 4          # across a page boundary
            assert os.pwrite(writer, b"DDDD", 16384) == 4         # over the dirty page
        finally:
            os.close(writer)
        assert os.pread(reader, 4, 0) == b"BBBB" and os.pread(reader, 6, 8189) == b"aCCCCa"
        assert shared[:4] == b"BBBB" and shared[8190:8194] == b"CCCC"
        assert dirty[16384:16388] == b"DDDD" and os.pread(reader, 4, 16384) == b"DDDD"
        appender = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            assert os.write(appender, b"tail") == 4
        finally:
            os.close(appender)
        assert os.fstat(reader).st_size == 65540 and os.pread(reader, 8, 65532) == b"aaaatail"
    finally:
        dirty.close()
        shared.close()
        os.close(both)
        os.close(reader)
    with mounted.client.open("/f", "rb") as f:
        data = f.read()
    assert data[:4] == b"BBBB" and data[8190:8194] == b"CCCC" and data[16384:16388] == b"DDDD"
    assert len(data) == 65540 and data[-4:] == b"tail"
    assert mounted.client.fsck() == []


def test_a_close_asks_for_a_flush_only_where_a_writable_shared_mapping_can_exist(tmp_path: Any,
                                                                                  mount_dir: str) -> None:
    """Seen in the serving process: closing a descriptor opened read-only or write-only costs
    no FLUSH round trip (FOPEN_NOFLUSH, Linux 5.13 on); closing a read-write one still flushes,
    so the kernel writes a shared mapping's stores back at that close."""
    from daxfs.adapters.fuse_mount import FuseMount

    vol = daxfs.mkfs(str(tmp_path / "p.pool"), 16 << 20)
    mount = FuseMount(vol, mount_dir).start()
    try:
        handlers = mount.handlers
        assert handlers is not None
        path = f"{mount_dir}/f"
        for flags in (os.O_WRONLY | os.O_CREAT, os.O_RDWR, os.O_RDONLY, os.O_WRONLY | os.O_APPEND):
            fd = os.open(path, flags, 0o644)        # plain syscalls: they leave the GIL to the daemon
            try:
                if flags & os.O_ACCMODE != os.O_RDONLY:
                    os.write(fd, b"x" * 5000)
            finally:
                os.close(fd)
        _until(lambda: handlers.counts.get("release", 0) >= 4)     # (the kernel sends releases after the close)
        release = tuple(int(part) for part in os.uname().release.split(".")[:2] if part.isdigit())
        assert handlers.counts.get("flush", 0) == (1 if release >= (5, 13) else 4)
    finally:
        mount.stop()
        vol.close()
    with daxfs.open_volume(str(tmp_path / "p.pool")) as again:
        assert again.stat("/f").st_size == 10000 and again.fsck() == []


def test_stores_through_a_mapping_reach_the_volume_when_its_descriptor_closes(mounted: Mounted) -> None:
    """A program stores through a shared mapping, closes the descriptor and keeps the mapping:
    a client reading the volume right after the close sees the stores (the close's flush
    writes them back).  A version that skipped every flush left them for ~30 s."""
    import mmap

    path = f"{mounted.root}/m"
    with open(path, "wb") as fh:
        fh.write(b"\0" * 8192)
    fd = os.open(path, os.O_RDWR)
    mapping = mmap.mmap(fd, 8192)
    try:
        mapping[4096:4100] = b"MAPD"
        os.close(fd)
        with mounted.client.open("/m", "rb") as f:
            assert f.pread(4, 4096) == b"MAPD"
    finally:
        mapping.close()


def test_a_write_only_write_beside_a_process_storing_through_a_mapping_is_never_undone(mounted: Mounted) -> None:
    """One process stores into a page through a shared mapping, over and over; this one writes
    other bytes of that page through a write-only descriptor and reads them back through a
    fresh open.  The write must survive: with the page cache bypassed for write-only opens
    (a version of the mount did that) the other process faulted the old bytes back in between
    the kernel dropping its page and the write, and wrote them back over it later."""
    import mmap
    import multiprocessing as mp

    path = f"{mounted.root}/shared"
    with open(path, "wb") as fh:
        fh.write(b"\0" * 4096)
    ctx = mp.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()

    def mapper() -> None:
        fd = os.open(path, os.O_RDWR)
        m = mmap.mmap(fd, 4096)
        ready.set()
        i = 0
        while not stop.is_set():
            m[0] = i & 0xFF
            i += 1

    other = ctx.Process(target=mapper)
    other.start()
    try:
        assert ready.wait(60)
        writer = os.open(path, os.O_WRONLY)
        try:
            for n in range(3000):
                value = b"%08d" % n
                assert os.pwrite(writer, value, 100) == 8
                reader = os.open(path, os.O_RDONLY)
                try:
                    assert os.pread(reader, 8, 100) == value, n
                finally:
                    os.close(reader)
        finally:
            os.close(writer)
    finally:
        stop.set()
        other.join(60)
    with open(path, "rb") as fh:
        assert fh.read()[100:108] == b"%08d" % 2999


#: a process that gives up root for uid 4321, then makes a user namespace of its own (where it
#: holds every capability, over nothing it did not map)
_AS_USERNS_ROOT = ("import ctypes, os; os.setgid(4321); os.setuid(4321); "
                   "assert ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0; ")


def _userns_writes() -> bool:
    """Whether an unprivileged process can make a user namespace of its own here."""
    probe = subprocess.run([sys.executable, "-c", _AS_USERNS_ROOT], capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.mark.parametrize("options", [(), ("-o", "direct_io")], ids=["cached", "direct_io"])
def test_a_write_by_another_user_clears_set_id_bits_as_on_tmpfs(pool_path: str, mount_dir: str,
                                                                 options: tuple[str, ...]) -> None:
    """A write by a process without CAP_FSETID clears set-user-ID (and set-group-ID with group
    execute), through a write-only descriptor as through a read-write one; root's write keeps
    them; so does not a root of a user namespace of its own.  An O_TRUNC open alone clears
    them too.  tmpfs is the oracle.  Under ``-o direct_io`` the kernel leaves the write's
    clearing to the mount, and the O_TRUNC open's always: before, the mount kept them."""
    import shutil
    import tempfile

    mounted = Mounted(pool_path, mount_dir, *options)
    tmpfs = tempfile.mkdtemp(dir="/dev/shm")
    cases = [("u", os.O_WRONLY, 0o4777, "4321"), ("g", os.O_WRONLY, 0o2775, "4321"),
             ("gx", os.O_WRONLY, 0o2767, "4321"), ("rw", os.O_RDWR, 0o6777, "4321"),
             ("root", os.O_WRONLY, 0o6777, "0"), ("rootrw", os.O_RDWR, 0o6777, "0"),
             ("trunc", os.O_WRONLY | os.O_TRUNC, 0o6777, "4321"), ("roottrunc", os.O_WRONLY | os.O_TRUNC, 0o6777, "0")]
    if _userns_writes():
        cases.append(("userns", os.O_RDWR, 0o4777, "userns"))
    try:
        os.chmod(tmpfs, 0o755)
        seen = {}
        for base in (tmpfs, mounted.root):
            for name, access, mode, writer in cases:
                path = f"{base}/{name}"
                with open(path, "wb") as fh:
                    fh.write(b"x" * 100)
                os.chown(path, 1000, 4321)
                os.chmod(path, mode)
                write = "" if access & os.O_TRUNC else "os.pwrite(fd, b'y', 10); "    # (an O_TRUNC open alone)
                code = f"import os; fd = os.open({path!r}, {access}); {write}os.close(fd)"
                prefix = _AS_USERNS_ROOT if writer == "userns" else f"import os; os.setgid(4321); os.setuid({writer}); "
                subprocess.run([sys.executable, "-c", prefix + code], check=True, timeout=60)
                seen[base, name] = st.S_IMODE(os.stat(path).st_mode)
        expected = {"u": 0o777, "g": 0o775, "gx": 0o2767, "rw": 0o777, "root": 0o6777, "rootrw": 0o6777,
                    "trunc": 0o777, "roottrunc": 0o6777, "userns": 0o777}
        names = [case[0] for case in cases]
        assert {name: seen[tmpfs, name] for name in names} == {name: expected[name] for name in names}   # the oracle
        assert {name: seen[mounted.root, name] for name in names} == {name: expected[name] for name in names}
        assert st.S_IMODE(mounted.client.stat("/u").st_mode) == 0o777
    finally:
        shutil.rmtree(tmpfs, ignore_errors=True)
        mounted.stop()
