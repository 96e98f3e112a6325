"""The volume through its public API, on the embedded front end and on private memory.

What these tests prove:

- ``VolumeSuite`` (every behaviour a user expects of a file system, see
  ``daxfs.testing.suite``) holds for a volume made by ``daxfs.mkfs`` on a pool
  file in /dev/shm and reopened with ``daxfs.open_volume``, and for a volume
  formatted onto a ``MemoryPool`` and remounted from a copy of its image.
- mkfs never destroys data by accident: it refuses an existing volume or a
  non-empty file unless forced, and a bad block size or a pool too small is
  EINVAL with nothing created.
- One read-write opener per pool: a second one gets BusyError naming the
  holder's pid; read-only opens work beside it, see the volume as of their
  mount, and refuse every change with EROFS.
- Bad arguments to open_volume are ValueError; lazy durability keeps data.
- The allocator's promises hold on a real pool: a large sequential file is
  one 2 MiB-aligned extent, small files take one block each.
- A damaged checkpoint header is never a silent loss of what the log holds.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import daxfs
from daxfs.format.checkpoint import HEADER as CKPT_HEADER
from daxfs.media import MemoryPool
from daxfs.testing.suite import VolumeSuite, read_file, write_file
from daxfs.volume import Volume

SUITE_POOL = 16 << 20
MiB = 1 << 20


@pytest.fixture
def shm_path() -> Iterator[str]:
    """A unique pool path in /dev/shm, removed after the test."""
    path = f"/dev/shm/daxfs-test-{os.getpid()}-{uuid.uuid4().hex}.pool"
    yield path
    if os.path.exists(path):
        os.unlink(path)


class TestEmbeddedVolume(VolumeSuite):
    """The suite on ``daxfs.mkfs`` / ``daxfs.open_volume`` over a pool file."""

    @pytest.fixture
    def mounted(self, shm_path: str) -> Iterator[dict[str, Any]]:
        held = {"vol": daxfs.mkfs(shm_path, SUITE_POOL)}
        yield held
        held["vol"].close()

    @pytest.fixture
    def volume(self, mounted: dict[str, Any]) -> Any:
        return mounted["vol"]

    @pytest.fixture
    def reopen(self, mounted: dict[str, Any], shm_path: str) -> Callable[[Any], Any]:
        def reopen(vol: Any) -> Any:
            vol.close()
            mounted["vol"] = daxfs.open_volume(shm_path)
            return mounted["vol"]
        return reopen


class TestMemoryPoolVolume(VolumeSuite):
    """The suite on ``Volume.format`` / ``Volume.mount`` over private memory."""

    @pytest.fixture
    def mounted(self) -> Iterator[dict[str, Any]]:
        pool = MemoryPool(SUITE_POOL)
        Volume.format(pool)
        held = {"vol": Volume.mount(pool), "pool": pool}
        yield held
        held["vol"].close()

    @pytest.fixture
    def volume(self, mounted: dict[str, Any]) -> Any:
        return mounted["vol"]

    @pytest.fixture
    def reopen(self, mounted: dict[str, Any]) -> Callable[[Any], Any]:
        def reopen(vol: Any) -> Any:
            vol.close()             # closes the pool too; a MemoryPool keeps its bytes
            pool = MemoryPool(mounted["pool"].image())
            mounted["pool"] = pool
            mounted["vol"] = Volume.mount(pool)
            return mounted["vol"]
        return reopen


# ---------------------------------------------------------------- mkfs


def test_mkfs_refuses_an_existing_volume_without_force(shm_path: str) -> None:
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        write_file(vol, "keep", b"precious")
    with pytest.raises(FileExistsError):
        daxfs.mkfs(shm_path, SUITE_POOL)
    with daxfs.open_volume(shm_path) as vol:
        assert read_file(vol, "keep") == b"precious"
    with daxfs.mkfs(shm_path, SUITE_POOL, force=True) as vol:
        assert vol.listdir() == [] and vol.fsck() == []


def test_mkfs_refuses_a_non_empty_file_without_force(shm_path: str) -> None:
    with open(shm_path, "wb") as fh:
        fh.write(b"somebody's data")
    with pytest.raises(FileExistsError):
        daxfs.mkfs(shm_path, SUITE_POOL)
    with open(shm_path, "rb") as fh:
        assert fh.read() == b"somebody's data"
    with daxfs.mkfs(shm_path, SUITE_POOL, force=True) as vol:
        assert vol.listdir() == [] and vol.statfs().free > 0
    assert os.path.getsize(shm_path) == SUITE_POOL


def test_mkfs_formats_an_empty_existing_file(shm_path: str) -> None:
    open(shm_path, "wb").close()
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        write_file(vol, "f", b"x")
    with daxfs.open_volume(shm_path) as vol:
        assert read_file(vol, "f") == b"x"


def test_mkfs_of_a_pool_open_elsewhere_is_busy_and_leaves_it_alone(shm_path: str) -> None:
    """mkfs(force=True) of a pool another opener holds must fail before touching the file:
    shrinking it under the holder's mapping would kill the holder with SIGBUS.  Run in a
    child process so that a SIGBUS fails this test instead of killing the test run."""
    script = f"""
import os, daxfs
vol = daxfs.mkfs({shm_path!r}, {32 * MiB})
with vol.open("f", "wb", buffering=0) as f:
    f.write(b"x" * {20 * MiB})
try:
    daxfs.mkfs({shm_path!r}, {16 * MiB}, force=True)
except daxfs.BusyError as exc:
    holders = exc.holders
else:
    raise SystemExit("mkfs of a pool open read-write did not fail")
assert os.path.getsize({shm_path!r}) == {32 * MiB}, f"pool shrunk to {{os.path.getsize({shm_path!r})}}"
with vol.open("f", "rb", buffering=0) as f:
    assert f.read() == b"x" * {20 * MiB}
vol.close()
assert holders == [os.getpid()], f"BusyError.holders is {{holders}}, not this pid"
print("ok")
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", \
        f"exit {done.returncode} (-7 is SIGBUS): {done.stdout}{done.stderr[-800:]}"


@pytest.mark.parametrize("size, block_size", [
    (SUITE_POOL, 1000), (SUITE_POOL, 3 * 4096), (SUITE_POOL, 2048), (SUITE_POOL, 4 * MiB),
    (64 * 1024, 4096), (800 * 1024, 4096), (0, 4096), (-5, 4096),
], ids=["bs-1000", "bs-12k", "bs-2k", "bs-4M", "pool-64k", "pool-800k", "size-0", "size-negative"])
def test_mkfs_with_bad_geometry_is_einval_and_creates_nothing(shm_path: str, size: int,
                                                              block_size: int) -> None:
    with pytest.raises(OSError) as info:
        daxfs.mkfs(shm_path, size, block_size=block_size)
    assert info.value.errno == errno.EINVAL
    assert not os.path.exists(shm_path)


def test_mkfs_with_bad_geometry_leaves_an_existing_volume_alone(shm_path: str) -> None:
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        write_file(vol, "keep", b"precious")
    for size, bs in [(SUITE_POOL, 1000), (64 * 1024, 4096)]:
        with pytest.raises(OSError) as info:
            daxfs.mkfs(shm_path, size, block_size=bs, force=True)
        assert info.value.errno == errno.EINVAL
    assert os.path.getsize(shm_path) == SUITE_POOL
    with daxfs.open_volume(shm_path) as vol:
        assert read_file(vol, "keep") == b"precious"


def test_mkfs_block_sizes_work(shm_path: str) -> None:
    for bs in (4096, 65536):
        with daxfs.mkfs(shm_path, SUITE_POOL, block_size=bs, force=True) as vol:
            assert vol.statfs().block_size == bs
            write_file(vol, "f", b"x" * (bs + 1))
            assert vol.stat("f").st_blocks * 512 == 2 * bs and vol.stat("f").st_blksize == bs
        with daxfs.open_volume(shm_path) as vol:
            assert read_file(vol, "f") == b"x" * (bs + 1) and vol.fsck() == []


# ---------------------------------------------------------------- open_volume


def test_second_writer_is_busy_and_names_the_holder(shm_path: str) -> None:
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        write_file(vol, "f", b"mine")
        with pytest.raises(daxfs.BusyError) as info:
            daxfs.open_volume(shm_path)
        assert info.value.errno == errno.EBUSY
        assert info.value.holders == [os.getpid()]
        assert str(os.getpid()) in str(info.value)
        write_file(vol, "g", b"still works")        # the failed open took nothing away
    with daxfs.open_volume(shm_path) as vol:        # and released what it opened
        assert sorted(vol.listdir()) == ["f", "g"]


def test_readonly_open_beside_a_writer_follows_its_changes(shm_path: str) -> None:
    """A read-only mount beside the writer sees what the writer does, as a second process on
    the same mount would: each call first catches up with the writer's log."""
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        write_file(vol, "a", b"as mounted")
        vol.mkdir("d")
        with daxfs.open_volume(shm_path, readonly=True) as ro:
            assert ro.readonly
            assert sorted(ro.listdir()) == ["a", "d"]
            write_file(vol, "later", b"new")
            vol.rmdir("d")
            write_file(vol, "a", b"rewritten")
            assert sorted(ro.listdir()) == ["a", "later"]
            assert read_file(ro, "a") == b"rewritten"
            assert read_file(ro, "later") == b"new"
            vol.checkpoint()                 # the writer checkpoints twice: the follower reloads
            write_file(vol, "x", b"1")
            vol.checkpoint()
            write_file(vol, "y", b"2")
            assert sorted(ro.listdir()) == ["a", "later", "x", "y"]
            assert ro.fsck() == []
        assert sorted(vol.listdir()) == ["a", "later", "x", "y"]


def test_readonly_handle_goes_stale_when_the_writer_removes_its_file(shm_path: str) -> None:
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        write_file(vol, "a", b"A" * 300)
        with daxfs.open_volume(shm_path, readonly=True) as ro:
            handle = ro.open("a", "rb", buffering=0)
            assert handle.read(3) == b"AAA"
            vol.unlink("a")
            write_file(vol, "c", b"C" * 300)
            with pytest.raises(OSError) as info:
                handle.read()
            assert info.value.errno == errno.ESTALE
            handle.close()


def test_readonly_view_never_shows_another_files_bytes(shm_path: str) -> None:
    """A file the read-only mount sees must read as that file, even after the writer
    deletes it and reuses its blocks for another file."""
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        write_file(vol, "a", b"A" * 300)
        with daxfs.open_volume(shm_path, readonly=True) as ro:
            assert ro.listdir() == ["a"]
            vol.unlink("a")
            write_file(vol, "c", b"C" * 300)
            assert ro.listdir() == ["c"]
            assert not ro.exists("a")
            assert read_file(ro, "c") == b"C" * 300


def test_readonly_fsck_beside_a_writer_with_an_unlinked_open_file_is_clean(shm_path: str) -> None:
    """An orphan the writer holds open is a healthy state, not a problem for fsck to report."""
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        held = vol.open("tmp", "w+b", buffering=0)
        held.write(b"t" * 5000)
        vol.unlink("tmp")
        assert vol.fsck() == []
        with daxfs.open_volume(shm_path, readonly=True) as ro:
            assert ro.listdir() == []
            assert ro.fsck() == []
        held.close()


def test_readonly_volume_refuses_changes_with_erofs(shm_path: str) -> None:
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        write_file(vol, "f", b"data")
        vol.mkdir("d")
    with daxfs.open_volume(shm_path, readonly=True) as ro:
        with ro.open("f", "rb", buffering=0) as f:
            assert f.read() == b"data"
        # (each with the path it names: the error's filename field, as os gives it)
        changes: list[tuple[Callable[[], object], str]] = [
            (lambda: ro.mkdir("x"), "x"), (lambda: ro.rmdir("d"), "d"), (lambda: ro.unlink("f"), "f"),
            (lambda: ro.rename("f", "g"), "f"), (lambda: ro.link("f", "g"), "f"), (lambda: ro.chmod("f", 0o600), "f"),
            (lambda: ro.utime("f", ns=(1, 2)), "f"), (lambda: ro.open("f", "r+b", buffering=0), "f"),
            (lambda: ro.open("f", "wb", buffering=0), "f"), (lambda: ro.open("f", "ab", buffering=0), "f"),
            (lambda: ro.open("new", "xb", buffering=0), "new"), (lambda: ro.open("new", "w+b", buffering=0), "new"),
        ]
        for change, path in changes:
            with pytest.raises(OSError) as info:
                change()
            assert info.value.errno == errno.EROFS and info.value.filename == path
        assert sorted(ro.listdir()) == ["d", "f"] and ro.stat("f").st_mode & 0o777 != 0o600
    with daxfs.open_volume(shm_path) as vol:
        assert sorted(vol.listdir()) == ["d", "f"] and read_file(vol, "f") == b"data"


@pytest.mark.parametrize("kwargs", [{"policy": "sometimes"}, {"policy": None}, {"durability": "eventual"},
                                    {"durability": None}, {"lease_break_s": -1.0}],
                         ids=["policy", "policy-none", "durability", "durability-none", "lease"])
def test_open_volume_with_bad_arguments_is_value_error(shm_path: str, kwargs: dict[str, Any]) -> None:
    daxfs.mkfs(shm_path, SUITE_POOL).close()
    with pytest.raises(ValueError):
        daxfs.open_volume(shm_path, **kwargs)
    with daxfs.open_volume(shm_path) as vol:        # nothing was left locked
        assert vol.fsck() == []


@pytest.mark.parametrize("policy", ["defer", "wait", "break", "refuse"])
def test_open_volume_accepts_every_policy(shm_path: str, policy: str) -> None:
    daxfs.mkfs(shm_path, SUITE_POOL).close()
    with daxfs.open_volume(shm_path, policy=policy) as vol:
        assert vol.policy == policy


def test_open_volume_of_a_missing_or_foreign_pool(shm_path: str) -> None:
    with pytest.raises(FileNotFoundError):
        daxfs.open_volume(shm_path)
    with open(shm_path, "wb") as fh:
        fh.write(os.urandom(1 << 20))
    with pytest.raises(daxfs.CorruptVolumeError):
        daxfs.open_volume(shm_path)
    with pytest.raises(daxfs.CorruptVolumeError):
        daxfs.open_volume(shm_path, readonly=True)


def test_lazy_durability_keeps_data_across_close(shm_path: str) -> None:
    daxfs.mkfs(shm_path, SUITE_POOL).close()
    with daxfs.open_volume(shm_path, durability="lazy") as vol:
        assert vol.durability == "lazy"
        with vol.open("f", "w+b", buffering=0) as f:
            f.write(b"a" * 10000)
            f.pwrite(b"B" * 100, 50)                 # in place: persisted at fsync/close
            assert f.pread(200, 0) == b"a" * 50 + b"B" * 100 + b"a" * 50
            f.fsync()
            f.pwrite(b"C" * 10, 9000)
        with vol.open("f", "r+b", buffering=0) as f:
            f.pwrite(b"D", 0)                        # left for the volume's close
    with daxfs.open_volume(shm_path) as vol:
        data = read_file(vol, "f")
        assert data == b"D" + b"a" * 49 + b"B" * 100 + b"a" * 8850 + b"C" * 10 + b"a" * 990
        assert vol.fsck() == []


def test_closed_volume_refuses_use(shm_path: str) -> None:
    vol = daxfs.mkfs(shm_path, SUITE_POOL)
    f = vol.open("f", "w+b", buffering=0)
    f.write(b"x")
    vol.close()
    assert vol.closed and f.closed
    vol.close()                                        # twice is fine
    for call in (vol.listdir, vol.statfs, vol.fsck, lambda: vol.stat("f"), lambda: vol.open("f", "rb", buffering=0),
                 lambda: vol.mkdir("d"), lambda: f.read()):
        with pytest.raises(ValueError):
            call()
    with daxfs.open_volume(shm_path) as again:         # the lock went with the close
        assert read_file(again, "f") == b"x"


def test_threads_share_one_volume(shm_path: str) -> None:
    import threading

    chunk = 16 * 1024
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        errors: list[BaseException] = []

        def writer(k: int) -> None:
            try:
                with vol.open(f"own{k}", "wb", buffering=0) as own, vol.open("shared", "ab", buffering=0) as shared:
                    for i in range(40):
                        own.write(bytes([k + 1]) * chunk)
                        shared.write(bytes([k + 1]) * 1000)
                        vol.mkdir(f"d{k}-{i}")
                        vol.rename(f"d{k}-{i}", f"e{k}-{i}")
            except BaseException as exc:    # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for k in range(4):
            assert read_file(vol, f"own{k}") == bytes([k + 1]) * (40 * chunk)
        shared = read_file(vol, "shared")
        assert len(shared) == 160 * 1000
        pieces = [shared[i:i + 1000] for i in range(0, len(shared), 1000)]
        assert all(p == p[:1] * 1000 for p in pieces), "appends from threads interleaved inside a write"
        assert sorted(p[0] for p in pieces) == sorted([1, 2, 3, 4] * 40)
        assert len(vol.listdir()) == 5 + 160 and vol.fsck() == []


# ---------------------------------------------------------------- allocation on a real pool


def test_large_sequential_file_is_one_aligned_extent(shm_path: str) -> None:
    with daxfs.mkfs(shm_path, 96 * MiB) as vol:
        chunk = bytes(range(256)) * 4096          # 1 MiB
        with vol.open("big", "wb", buffering=0) as f:
            for i in range(64):
                assert f.pwrite(chunk, i * MiB) == MiB
            exts = f.extents()
        assert len(exts) == 1, f"64 MiB written sequentially became {len(exts)} extents"
        assert exts[0].file_offset == 0 and exts[0].length == 64 * MiB
        assert exts[0].pool_offset % (2 * MiB) == 0
        assert vol.stat("big").st_blocks * 512 == 64 * MiB
        with vol.open("big", "rb", buffering=0) as f:
            assert f.pread(MiB, 37 * MiB) == chunk


def test_many_small_files_take_one_block_each(shm_path: str) -> None:
    with daxfs.mkfs(shm_path, 96 * MiB) as vol:
        bs = vol.statfs().block_size
        for i in range(200):
            write_file(vol, f"f{i:03d}", bytes([i % 255 + 1]) * 100)
        assert vol.statfs().used == 200 * bs
        assert read_file(vol, "f123") == bytes([124]) * 100
        # and a large file after them still starts on a huge page
        with vol.open("big", "wb", buffering=0) as f:
            f.write(b"x" * (4 * MiB))
            exts = f.extents()
        assert len(exts) == 1 and exts[0].pool_offset % (2 * MiB) == 0


# ---------------------------------------------------------------- damaged metadata


def test_flipped_checkpoint_last_seq_is_not_silent() -> None:
    """A bit flip in the current checkpoint's header must not make mount skip the log
    after it: either the mount fails with CorruptVolumeError or nothing is lost."""
    pool = MemoryPool(8 * MiB)
    Volume.format(pool)
    vol = Volume.mount(pool)
    vol.mkdir("before")
    vol.checkpoint()
    vol.mkdir("after1")
    vol.mkdir("after2")
    slot = vol._layout.checkpoint_offsets[vol._generation % 2]
    image = bytearray(pool.image())
    vol.close()
    last_seq_at = slot + CKPT_HEADER.size - 28          # "<8sIQqQQ4x": magic, crc, generation, last_seq at 20
    image[last_seq_at + 3] ^= 0x01
    try:
        damaged = Volume.mount(MemoryPool(bytes(image)), readonly=True)
    except daxfs.CorruptVolumeError:
        return
    try:
        assert sorted(damaged.listdir()) == ["after1", "after2", "before"], \
            f"mount succeeded but lost the log after the checkpoint: {damaged.listdir()}"
    finally:
        damaged.close()


def test_readonly_mappings_and_pins_exclude_a_writer(shm_path: str) -> None:
    """A read-only opener's mappings and pins point at blocks only a writer could free: they
    are refused while a writer is open, and while they live no writer can open."""
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        write_file(vol, "x", b"x" * 20000)
        with daxfs.open_volume(shm_path, readonly=True) as ro:
            f = ro.open("x", "rb", buffering=0)
            with pytest.raises(daxfs.BusyError):
                f.map()
            with pytest.raises(daxfs.BusyError):
                f.pin(0, 4096)
            f.close()
        write_file(vol, "x", b"y" * 20000)           # the writer's last change before it goes
    with daxfs.open_volume(shm_path, readonly=True) as ro:
        f = ro.open("x", "rb", buffering=0)
        m = f.map()
        p = f.pin(0, 4096)
        assert bytes(m.buffer[:3]) == b"yyy" and bytes(p.buffer[:3]) == b"yyy"
        with pytest.raises(daxfs.BusyError):
            daxfs.open_volume(shm_path)               # a writer would not know about them
        m.close()
        with pytest.raises(daxfs.BusyError):
            daxfs.open_volume(shm_path)               # the pin still holds the pool
        p.release()
        with daxfs.open_volume(shm_path) as writer:   # nothing held: a writer may open again
            write_file(writer, "z", b"z")
        f.close()


def test_info_counts_the_files_open_on_the_volume(shm_path: str) -> None:
    with daxfs.mkfs(shm_path, 8 * MiB) as vol:
        assert vol.info()["open_files"] == 0
        a = vol.open("/a", "wb")
        b = vol.open("/a", "rb")
        assert vol.info()["open_files"] == 2
        a.close()
        assert vol.info()["open_files"] == 1
        b.close()
        assert vol.info()["open_files"] == 0


def test_a_prepared_write_lets_go_of_its_blocks_once_however_often_it_is_aborted(shm_path: str) -> None:
    """The arbiter aborts a prepared write whose commit raised; the volume may have let go of
    its blocks already (a commit that fell back to writing in place, or failed after swapping
    them in).  Letting go twice would drop someone else's hold on those blocks."""
    vol = daxfs.mkfs(shm_path, 16 << 20)
    try:
        with vol.open("/f", "wb") as f:
            f.write(b"x" * 8192)
        ino = vol.stat("/f").st_ino
        start = vol.statfs()._replace(resident=0)
        pieces = vol.data.prepare_write(ino, 0, 65536)
        assert vol.statfs().busy == 65536
        vol.data.abort_write(pieces)
        vol.data.abort_write(pieces)
        assert vol.statfs()._replace(resident=0) == start
        pieces = vol.data.prepare_write(ino, 4096, 65536)
        for f, k, p, _flags in pieces:          # the writer's bytes, as a client copies them
            vol._journal.pool.write(vol._journal.layout.data_offset + p * 4096, b"y" * (k * 4096))
        assert vol.data.commit_write(ino, 4096, 65536, pieces) == 65536
        vol.data.abort_write(pieces)            # what the arbiter does if the commit raised late
        with vol.open("/f", "rb") as f:
            assert f.read() == b"x" * 4096 + b"y" * 65536
        st = vol.statfs()
        assert st.busy == 0 and st.free + st.used + st.busy + st.bad == st.size
        assert st.used == 4096 + 65536 and vol.fsck() == []     # the new blocks, and the first old one
    finally:
        vol.close()


# ---------------------------------------------------------------- a follower's quick check

def _put_log_bytes(writer: Volume, phys: int, raw: bytes) -> bytes:
    """Write ``raw`` at byte ``phys`` of the log through the writer's pool (which a follower
    maps too); return the bytes it replaced."""
    off = writer._journal.layout.log_offset + phys
    old = writer._journal.pool.read(off, len(raw))
    writer._journal.pool.write(off, raw)
    return old


def test_a_follower_is_quiet_exactly_until_the_writer_logs_or_checkpoints(shm_path: str) -> None:
    """``quiet`` (asked before every call a follower answers) is True only while no record can
    have landed at its head and no superblock shows a newer generation: a False costs a
    refresh, a wrong True returns stale metadata.  ``_claimed`` is the same test of the head."""
    from daxfs.format.log import CLAIM, HEADER, MAGIC
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol, daxfs.open_volume(shm_path, readonly=True) as ro:
        j = ro._journal
        assert ro.listdir() == [] and j.quiet() and not j._claimed() and not j.log_moved()
        write_file(vol, "a", b"A")
        assert not j.quiet() and j._claimed() and j.log_moved()
        assert ro.listdir() == ["a"] and j.quiet() and not j.log_moved()
        vol.checkpoint()                        # no record: only the generation tells
        assert not j.quiet()
        assert ro.listdir() == ["a"] and j.quiet()
        ring = j.ring
        vid, seq, head, size = ring.volume_id, ring.next_seq, ring.head, ring.size
        # what else may lie at the head: a record of an earlier lap, another volume's record, junk
        for magic, v, s, claimed in ((MAGIC, vid, seq - 1, False), (MAGIC, vid + 1, seq, False),
                                     (b"XXXX", vid, seq, False), (MAGIC, vid, seq, True)):
            old = _put_log_bytes(vol, head % size, CLAIM.pack(magic, v, s))
            assert j.quiet() is not claimed and j._claimed() is claimed, (magic, v, s)
            _put_log_bytes(vol, head % size, old)
        # at a lap's end: a header still fits in exactly HEADER.size bytes (a PAD goes there);
        # in fewer, the writer goes on at 0
        try:
            for phys, at in ((size - HEADER.size, size - HEADER.size), (size - HEADER.size + 1, 0)):
                ring.head = head - head % size + size + phys     # (the next lap: nothing there yet)
                assert j.quiet() and not j._claimed(), phys
                old = _put_log_bytes(vol, at, CLAIM.pack(MAGIC, vid, seq))
                assert not j.quiet() and j._claimed(), phys
                _put_log_bytes(vol, at, old)
        finally:
            ring.head = head
        assert j.quiet() and ro.fsck() == []


def test_a_follower_replays_the_log_and_reloads_only_after_two_checkpoints(shm_path: str) -> None:
    """Records since the follower's state, across at most one checkpoint, are replayed into it
    (cheap); after two the ring may have lapped it, so it reloads.  ``refresh`` catches up by
    itself, without a call that checks first."""
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol, daxfs.open_volume(shm_path, readonly=True) as ro:
        j = ro._journal
        core = j.core
        write_file(vol, "a", b"A")
        j.refresh()
        assert j.core is core and "a" in core.inodes[1].entries
        assert j.ring.next_seq == vol._journal.ring.next_seq
        j.refresh()                             # nothing new: nothing changes
        assert j.core is core and j.ring.next_seq == vol._journal.ring.next_seq
        vol.checkpoint()
        write_file(vol, "b", b"B")
        assert sorted(ro.listdir()) == ["a", "b"] and j.core is core
        vol.checkpoint()
        vol.checkpoint()
        write_file(vol, "c", b"C")
        assert sorted(ro.listdir()) == ["a", "b", "c"] and j.core is not core
        assert j.generation == vol._journal.generation


def test_a_follower_retries_a_reload_that_meets_a_slot_being_rewritten(shm_path: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload that finds the checkpoint torn (the writer rewriting it right now) is tried
    three times; after three failures the follower keeps what it has, without an error."""
    from daxfs.errors import CorruptVolumeError
    from daxfs.volume import journal as journal_module
    real = journal_module.load
    calls: list[int] = []

    def torn_twice(pool: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= 2:
            raise CorruptVolumeError("checkpoint torn (simulated)")
        return real(pool, **kwargs)

    def torn_always(pool: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise CorruptVolumeError("checkpoint torn (simulated)")

    with daxfs.mkfs(shm_path, SUITE_POOL) as vol, daxfs.open_volume(shm_path, readonly=True) as ro:
        assert ro.listdir() == []
        write_file(vol, "a", b"A")
        vol.checkpoint()
        vol.checkpoint()
        monkeypatch.setattr(journal_module, "load", torn_always)
        assert ro.listdir() == [] and len(calls) == 3           # kept what it had
        calls.clear()
        monkeypatch.setattr(journal_module, "load", torn_twice)
        assert ro.listdir() == ["a"] and len(calls) == 3


@pytest.mark.parametrize("checkpoints", [0, 2], ids=["replay", "reload"])
def test_a_follower_stops_quietly_at_a_record_still_being_written(shm_path: str, checkpoints: int) -> None:
    """The writer may append records while a follower reads the log: one it sees half written,
    with the next one complete by the time it looks further, is where it stops, not damage
    (replaying or reloading); it sees the rest at its next call."""
    from daxfs.format.log import HEADER
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol, daxfs.open_volume(shm_path, readonly=True) as ro:
        write_file(vol, "a", b"A")
        assert ro.listdir() == ["a"]
        write_file(vol, "a2", b"2")
        for _ in range(checkpoints):
            vol.checkpoint()
        ring = vol._journal.ring
        phys = ring.head % ring.size
        vol.mkdir("b")
        assert ring.head % ring.size > phys                     # (no lap: one record, whole)
        vol.mkdir("c")
        body = phys + HEADER.size                               # "b"'s body, half written
        byte = vol._journal.pool.read(vol._journal.layout.log_offset + body, 1)[0]
        old = _put_log_bytes(vol, body, bytes([byte ^ 1]))
        assert sorted(ro.listdir()) == ["a", "a2"]
        _put_log_bytes(vol, body, old)
        assert sorted(ro.listdir()) == ["a", "a2", "b", "c"] and ro.fsck() == []


def test_a_follower_freezes_the_heap_when_it_catches_up_past_the_mark(shm_path: str) -> None:
    """The heap keeper's mark counts for a follower's replay as for the writer's commits."""
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol, daxfs.open_volume(shm_path, readonly=True) as ro:
        j = ro._journal
        assert ro.listdir() == []
        j.heap.next_at = len(j.core.inodes) + 1
        write_file(vol, "a", b"A")
        assert ro.listdir() == ["a"]
        assert j.heap.froze and j.heap.next_at > len(j.core.inodes) + 1


def test_an_in_place_write_bumps_the_files_change_counter(shm_path: str) -> None:
    """Its mtime is deferred (lazytime), not logged: the counter a served client checks its
    cached attributes against must still move, for that file; stat shows the new mtime and
    ctime."""
    from daxfs.volume.changes import ChangeTable
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        write_file(vol, "a", b"A" * 100)
        write_file(vol, "b", b"B" * 100)
        table = vol._journal.changes = ChangeTable()
        try:
            ino, other = vol.stat("a").st_ino, vol.stat("b").st_ino
            before, before_other = table.get(ino), table.get(other)
            with vol.open("a", "r+b", buffering=0) as f:
                f.pwrite(b"x", 3)                       # in place: no record
                mtime = vol._journal.deferred.get(ino)
                assert mtime is not None
                assert table.get(ino) > before and table.get(other) == before_other
                st = vol.stat("a")                      # stat shows it, ctime too
                assert st.st_mtime_ns == st.st_ctime_ns == mtime
        finally:
            vol._journal.changes = None
            table.close()


def test_stat_gives_ints_and_one_device_number_per_volume(shm_path: str) -> None:
    """``st_dev`` comes from the volume's uuid: the same for every file and across mounts, another
    volume's differs; ``st_blocks`` counts 512-byte units, an int as ``os.stat`` gives."""
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        write_file(vol, "a", b"A" * 5000)
        st, root = vol.stat("a"), vol.stat("/")
        assert type(st.st_dev) is int and st.st_dev == root.st_dev
        assert type(st.st_blocks) is int and st.st_blocks == 2 * vol.block_size // 512
    with daxfs.open_volume(shm_path) as vol:
        assert vol.stat("a").st_dev == st.st_dev
    pool = MemoryPool(SUITE_POOL)
    Volume.format(pool)
    other = Volume.mount(pool)
    assert other.stat("/").st_dev != st.st_dev
    other.close()


def test_every_logged_change_bumps_the_counters_of_exactly_the_inodes_it_changes(shm_path: str) -> None:
    """A served client trusts its cached attributes and layouts while an inode's counter stands
    still: each change moves the counters of the inodes it changes (a replaced or unlinked
    file's too, looked up before the change), and no others."""
    from daxfs.volume.changes import ChangeTable
    with daxfs.mkfs(shm_path, SUITE_POOL) as vol:
        vol.mkdir("d")
        vol.mkdir("e")
        for name in ("d/a", "d/b", "e/c", "keep"):
            write_file(vol, name, b"x" * 5000)
        table = vol._journal.changes = ChangeTable()
        ino = {name: vol.stat(name).st_ino for name in ("/", "d", "e", "d/a", "d/b", "e/c", "keep")}

        def bumped(change: Callable[[], object]) -> set[str]:
            before = {name: table.get(i) for name, i in ino.items()}
            change()
            return {name for name, i in ino.items() if table.get(i) != before[name]}

        try:
            assert bumped(lambda: vol.chmod("d/a", 0o600)) == {"d/a"}
            assert bumped(lambda: vol.truncate("d/a", 10)) == {"d/a"}
            assert bumped(lambda: vol.link("d/a", "e/a2")) == {"d/a", "e"}
            assert bumped(lambda: vol.rename("d/b", "e/c")) == {"d", "e", "d/b", "e/c"}    # c replaced
            assert bumped(lambda: vol.unlink("e/a2")) == {"e", "d/a"}
            assert bumped(lambda: vol.clone_file("keep", "d/k")) == {"d"}      # (and the new inode)
            assert bumped(lambda: vol.mkdir("d/sub")) == {"d"}
            ino["d/k"] = vol.stat("d/k").st_ino
            with vol.open("keep", "rb") as f:
                shared = f.extents()[0].pool_offset
            assert bumped(lambda: vol.memory_failure(shared, vol.block_size)) == {"keep", "d/k"}   # its owners
        finally:
            vol._journal.changes = None
            table.close()
