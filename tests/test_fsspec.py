"""``daxfs://`` for fsspec: how it is found, named and shared, and what each call does.

fsspec's own abstract suites run in test_fsspec_abstract.py; the libraries that use
fsspec in test_fsspec_clients.py.  Most tests here run twice: on a pool opened embedded
and on a pool served by an arbiter (``daxfs serve``), which the file system connects to
by itself.
"""

from __future__ import annotations

import errno
import gc
import io
import os
import pickle
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.callbacks import Callback, TqdmCallback

import daxfs
from daxfs.adapters import pool_share
from daxfs.adapters.fsspec_files import READ_BUFFER
from daxfs.adapters.fsspec_fs import DaxFileSystem
from daxfs.adapters.transfer import COPY_CHUNK

from conftest import entry_point_installed

pytestmark = pytest.mark.usefixtures("daxfs_protocol")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["embedded", "served"])
def pool(request: pytest.FixtureRequest, shm_pool: str) -> str:
    if request.param == "served":
        request.getfixturevalue("served_pool")
    return shm_pool


@pytest.fixture
def fs(pool: str) -> Iterator[Any]:
    fs = fsspec.filesystem("daxfs", pool=pool)
    yield fs
    fs.close()


# ---------------------------------------------------------------- how fsspec finds it


def test_entry_point_is_declared_for_the_class() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target = project["project"]["entry-points"]["fsspec.specs"]["daxfs"]
    module, _, name = target.partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is DaxFileSystem
    assert DaxFileSystem.protocol == "daxfs"


@pytest.mark.skipif(not entry_point_installed(),
                    reason="the installed daxfs predates the entry point (pip install -e . again)")
def test_fsspec_finds_daxfs_through_the_installed_entry_point() -> None:
    # A fresh interpreter, so nothing registered by hand can answer for the entry point.
    code = ("import fsspec, sys; cls = fsspec.get_filesystem_class('daxfs'); "
            "print(cls.__module__ + '.' + cls.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "daxfs.adapters.fsspec_fs.DaxFileSystem"


def test_importing_daxfs_imports_neither_fsspec_nor_pyarrow() -> None:
    code = "import sys, daxfs; print(sorted(m for m in ('fsspec', 'pyarrow') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


# ---------------------------------------------------------------- naming the pool


def test_url_forms_reach_the_same_volume(pool: str) -> None:
    with fsspec.open("daxfs:///urls/a.txt", "wb", pool=pool) as f:
        f.write(b"by storage option")
    with fsspec.open(f"daxfs:///urls/a.txt::{pool}", "rb", buffering=0) as f:          # the chained form
        assert f.read() == b"by storage option"
    fs, path = fsspec.core.url_to_fs("daxfs://urls/a.txt", pool=pool)      # no third slash
    assert path == "/urls/a.txt" and isinstance(fs, DaxFileSystem)
    assert fs.unstrip_protocol(path) == "daxfs:///urls/a.txt"
    assert fs.cat(f"daxfs:///urls/a.txt::{pool}") == b"by storage option"
    assert fs.fsid == f"daxfs-{fs.volume.info()['uuid']}"


def test_a_missing_pool_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pool"):
        fsspec.filesystem("daxfs")
    with pytest.raises(FileNotFoundError):
        fsspec.filesystem("daxfs", pool=str(tmp_path / "nope.pool"))
    with pytest.raises(ValueError, match="local file"):
        fsspec.filesystem("daxfs", fo="bucket/x.pool", target_protocol="s3")


def test_served_pool_is_reached_through_its_arbiter(served_pool: str) -> None:
    fs = fsspec.filesystem("daxfs", pool=served_pool)
    try:
        assert isinstance(fs.volume, daxfs.Client)
        fs.pipe("/from-client", b"x")
        # Another process reaches the same pool at the same time, through the same arbiter.
        code = ("import fsspec, sys; fs = fsspec.filesystem('daxfs', pool=sys.argv[1]); "
                "fs.pipe('/from-child', fs.cat('/from-client') + b'y')")
        if not entry_point_installed():
            code = ("import fsspec; fsspec.register_implementation('daxfs', "
                    "'daxfs.adapters.fsspec_fs.DaxFileSystem'); " + code)
        done = subprocess.run([sys.executable, "-c", code, served_pool], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert fs.cat("/from-child") == b"xy"
    finally:
        fs.close()


# ---------------------------------------------------------------- sharing the pool


def test_instances_in_threads_share_one_embedded_volume(shm_pool: str) -> None:
    made: list[Any] = []
    alive = threading.Barrier(3)

    def make() -> None:
        made.append(fsspec.filesystem("daxfs", pool=shm_pool))
        alive.wait(30)          # all alive at once, so no thread reuses another's ident

    # fsspec caches instances per thread: each thread gets its own, and without sharing,
    # the second embedded open of the pool would be refused (one writer per pool).
    threads = [threading.Thread(target=make) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(fs) for fs in made}) == 3
    assert len({id(fs.volume) for fs in made}) == 1
    assert pool_share.shared_count(shm_pool) == 3
    for fs in made:
        fs.close()
    assert pool_share.shared_count(shm_pool) == 0
    daxfs.open_volume(shm_pool).close()          # the writer's lock was let go


def test_a_pickled_instance_comes_back_on_the_same_volume(fs: Any) -> None:
    fs.pipe("/p", b"pickled")
    again = pickle.loads(pickle.dumps(fs))
    assert again.volume is fs.volume and again.cat("/p") == b"pickled"


def test_an_open_volume_can_be_given(shm_pool: str) -> None:
    with daxfs.open_volume(shm_pool) as vol:
        # The pool is open in this process already: a second embedded open is refused,
        # and the error says what to do instead.
        with pytest.raises(daxfs.BusyError, match="volume="):
            fsspec.filesystem("daxfs", pool=shm_pool)
        fs = fsspec.filesystem("daxfs", volume=vol)
        other = fsspec.filesystem("daxfs", volume=vol)
        assert fs.volume is vol and other is not fs        # never served from the cache
        fs.pipe("/given", b"v")
        fs.close()
        assert not vol.closed and vol.stat("/given").st_size == 1


def test_readonly_reads_beside_the_writer(shm_pool: str) -> None:
    writer = fsspec.filesystem("daxfs", pool=shm_pool)
    reader = fsspec.filesystem("daxfs", pool=shm_pool, readonly=True)
    try:
        assert reader.volume is not writer.volume and reader.volume.readonly
        writer.pipe("/seen", b"new")
        assert reader.cat("/seen") == b"new"             # a reader follows the writer
        with pytest.raises(OSError) as caught:
            reader.pipe("/no", b"x")
        assert caught.value.errno == errno.EROFS
    finally:
        reader.close()
        writer.close()


# ---------------------------------------------------------------- metadata


def test_ls_with_detail_carries_size_type_mtime_ino(fs: Any) -> None:
    fs.pipe("/d/f1", b"12345")
    fs.makedirs("/d/sub")
    vol = fs.volume
    entries = {entry["name"]: entry for entry in fs.ls("/d", detail=True)}
    assert set(entries) == {"/d/f1", "/d/sub"}
    st = vol.stat("/d/f1")
    assert entries["/d/f1"]["size"] == 5 and entries["/d/f1"]["type"] == "file"
    assert entries["/d/f1"]["ino"] == st.st_ino and entries["/d/f1"]["mtime"] == st.st_mtime_ns / 1e9
    assert entries["/d/sub"]["type"] == "directory"
    assert sorted(fs.ls("daxfs:///d/", detail=False)) == ["/d/f1", "/d/sub"]
    assert fs.ls("/d/f1") == [fs.info("/d/f1")]
    assert fs.modified("/d/f1").timestamp() == pytest.approx(st.st_mtime_ns / 1e9)
    with pytest.raises(FileNotFoundError):
        fs.info("/d/missing")
    assert not fs.exists("/d/f1/below-a-file") and fs.isfile("/d/f1") and fs.isdir("/d")


def test_makedirs_mkdir_rmdir(fs: Any) -> None:
    fs.makedirs("/m/a/b")
    fs.makedirs("/m/a/b", exist_ok=True)
    with pytest.raises(FileExistsError):
        fs.makedirs("/m/a/b")
    with pytest.raises(FileExistsError):
        fs.mkdir("/m/a")
    with pytest.raises(FileNotFoundError):
        fs.mkdir("/m/x/y", create_parents=False)
    fs.rmdir("/m/a/b")
    assert fs.ls("/m/a") == []


def test_touch_creates_truncates_or_only_stamps(fs: Any) -> None:
    fs.touch("/t/new")
    assert fs.cat("/t/new") == b""
    fs.pipe("/t/new", b"kept")
    fs.volume.utime("/t/new", ns=(1_000_000_000, 1_000_000_000))
    fs.touch("/t/new", truncate=False)
    assert fs.cat("/t/new") == b"kept" and fs.info("/t/new")["mtime"] > 1.0
    fs.touch("/t/new")
    assert fs.cat("/t/new") == b""


def test_rm_recursive_and_its_refusals(fs: Any) -> None:
    fs.pipe({"/r/a": b"1", "/r/s/b": b"2", "/r/s/t/c": b"3"})
    with pytest.raises(IsADirectoryError):
        fs.rm("/r")
    with pytest.raises(PermissionError):
        fs.rm("/", recursive=True)
    fs.rm("/r/a")
    assert fs.find("/r") == ["/r/s/b", "/r/s/t/c"]
    fs.rm("/r", recursive=True)
    assert not fs.exists("/r") and fs.ls("/") == []


def test_mv_is_a_rename(fs: Any) -> None:
    fs.pipe("/mv/a", b"moved")
    ino = fs.info("/mv/a")["ino"]
    fs.mv("/mv/a", "/mv/b")
    assert fs.info("/mv/b")["ino"] == ino and not fs.exists("/mv/a")
    fs.makedirs("/mv/into")
    fs.mv("/mv/b", "/mv/into")                        # an existing directory takes it in
    assert fs.info("/mv/into/b")["ino"] == ino
    fs.mv("/mv/into", "/elsewhere/deep/tree")         # a whole tree, parents made
    assert fs.cat("/elsewhere/deep/tree/b") == b"moved"
    with pytest.raises(FileNotFoundError):
        fs.mv("/mv/none", "/mv/other")


def test_cp_file_shares_blocks(fs: Any) -> None:
    payload = os.urandom(3 * 4096 + 17)
    fs.pipe("/cp/src", payload)
    fs.cp("/cp/src", "/cp/dst")
    assert fs.cat("/cp/dst") == payload
    with fs.open("/cp/dst", "rb", buffering=0) as f:
        extents = f.extents()
    assert extents and all("shared" in extent.flags for extent in extents)
    assert fs.volume.statfs().shared >= 3 * 4096
    fs.pipe("/cp/dst", b"changed")                       # copy-on-write: the source keeps its bytes
    assert fs.cat("/cp/src") == payload
    fs.cp("/cp", "/cp2", recursive=True)
    assert sorted(fs.find("/cp2")) == ["/cp2/dst", "/cp2/src"]


def test_cat_file_ranges_and_pipe_file_modes(fs: Any) -> None:
    fs.pipe_file("/c/f", b"0123456789")
    assert fs.cat_file("/c/f", 2, 5) == b"234"
    assert fs.cat_file("/c/f", start=-3) == b"789"
    assert fs.cat_file("/c/f", end=-8) == b"01"
    assert fs.cat_file("/c/f", 8, 100) == b"89"
    assert fs.cat_file("/c/f", 7, 3) == b""
    assert fs.cat_ranges(["/c/f", "/c/f"], [0, 5], [2, 7]) == [b"01", b"56"]
    with pytest.raises(FileExistsError):
        fs.pipe_file("/c/f", b"x", mode="create")
    fs.pipe_file("/c/f", b"new")
    assert fs.cat("/c/f") == b"new"
    with pytest.raises(IsADirectoryError):
        fs.cat_file("/c")


# ---------------------------------------------------------------- open


def test_open_gives_daxfs_files_behind_a_buffer(fs: Any) -> None:
    with fs.open("/o/f", "w+b", buffering=0) as f:
        for _ in range(1000):
            f.write(b"0123456789")                       # buffered: few volume writes
        # daxfs's own calls see what is still in the buffer: it is flushed first
        assert f.pread(10, 9990) == b"0123456789"
        assert f.size == 10_000
        assert sum(extent.length for extent in f.extents()) >= 10_000
    with fs.open("/o/f", "rb", buffering=0) as f:
        assert f.seekable() and f.readable() and not f.writable()
        embedded = isinstance(fs.volume, daxfs.Volume)
        assert isinstance(f.raw, daxfs.File) if embedded else type(f.raw).__name__ == "ClientFile"
        f.seek(-4, os.SEEK_END)
        assert f.read() == b"6789"
        buf = bytearray(100)
        f.seek(0)
        assert f.readinto(buf) == 100 and bytes(buf[:10]) == b"0123456789"
        with f.map(10, 10) as m:                         # zero-copy, as from vol.open
            assert bytes(m.buffer) == b"0123456789"
        assert f.info()["size"] == 10_000
    with fs.open("/o/f", "r+b", buffering=0) as f:
        assert f.read(4) == b"0123"                       # and 1 MiB read ahead into the buffer
        f.pwrite(b"ABCD", 4)                               # changed around the buffer ...
        assert f.read(4) == b"ABCD"                        # ... which is dropped, not served stale
    with fs.open("/o/t.txt", "w", encoding="utf-8") as text:
        text.write("héllo\n")
    assert fs.read_text("/o/t.txt", encoding="utf-8") == "héllo\n"
    with pytest.raises(FileExistsError):
        fs.open("/o/f", "xb", buffering=0)
    with fs.open("/o/f", "ab", buffering=0) as f:
        f.write(b"!")
    assert fs.size("/o/f") == 10_001


def test_large_reads_go_around_the_buffer_in_one_call(fs: Any) -> None:
    payload = os.urandom(8 << 20)
    fs.pipe("/big", payload)
    with fs.open("/big", "rb", buffering=0) as f:
        calls: list[int] = []
        raw_readinto = f.raw.readinto

        def counting(buffer: Any) -> int:
            calls.append(len(memoryview(buffer).cast("B")))
            return int(raw_readinto(buffer))

        f.raw.readinto = counting
        head = f.read(10)                                  # small: through the buffer
        rest = f.read()
        assert head + rest == payload
        out = bytearray(len(payload))
        f.seek(0)
        assert f.readinto(out) == len(payload) and out == payload
    # the first small read filled the buffer once; each large one reached the file in
    # one call as big as what was asked (no piecewise copying through the buffer)
    assert calls[0] == READ_BUFFER
    assert max(calls) >= len(payload) - READ_BUFFER


def test_transactions_write_at_commit_or_not_at_all(fs: Any) -> None:
    fs.pipe("/tx/kept", b"before")
    with fs.transaction:
        with fs.open("/tx/kept", "wb", buffering=0) as f:
            f.write(b"after")
        with fs.open("/tx/new", "wb", buffering=0) as f:
            f.write(b"new")
        assert fs.cat("/tx/kept") == b"before" and not fs.exists("/tx/new")
    assert fs.cat("/tx/kept") == b"after" and fs.cat("/tx/new") == b"new"
    with pytest.raises(RuntimeError, match="abandon"):
        with fs.transaction:
            with fs.open("/tx/kept", "wb", buffering=0) as f:
                f.write(b"lost")
            raise RuntimeError("abandon")
    assert fs.cat("/tx/kept") == b"after"
    assert sorted(fs.ls("/tx", detail=False)) == ["/tx/kept", "/tx/new"]   # no part files left


# ---------------------------------------------------------------- put, get and progress


class Recorder(Callback):  # type: ignore[misc]
    """A callback that keeps every size and update it hears."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int | None] = []
        self.updates: list[int] = []

    def set_size(self, size: int | None) -> None:
        self.sizes.append(size)
        super().set_size(size)

    def relative_update(self, inc: int = 1) -> None:
        self.updates.append(inc)
        super().relative_update(inc)


def test_put_file_and_get_file_report_bytes_to_fsspec_callbacks(fs: Any, tmp_path: Path) -> None:
    payload = os.urandom(COPY_CHUNK + 4097)
    local = tmp_path / "in.bin"
    local.write_bytes(payload)
    put = Recorder()
    fs.put_file(str(local), "/d/in.bin", callback=put)
    assert (put.sizes, put.updates) == ([len(payload)], [COPY_CHUNK, 4097])
    got = Recorder()
    fs.get_file("/d/in.bin", str(tmp_path / "out" / "out.bin"), callback=got)
    assert (tmp_path / "out" / "out.bin").read_bytes() == payload
    assert (got.sizes, sum(got.updates)) == ([len(payload)], len(payload))
    sink = io.BytesIO()
    fs.get_file("/d/in.bin", sink)                     # a file object as the target
    assert sink.getvalue() == payload
    with pytest.raises(FileNotFoundError):
        fs.put_file(str(tmp_path / "missing"), "/d/never")
    assert not fs.exists("/d/never")


def test_tqdm_callback_draws_a_bar_that_reaches_the_size(fs: Any, tmp_path: Path) -> None:
    local = tmp_path / "in.bin"
    local.write_bytes(b"z" * 10_000)
    screen = io.StringIO()
    with TqdmCallback(tqdm_kwargs={"file": screen, "ascii": True, "mininterval": 0}) as bar:
        fs.put_file(str(local), "/in.bin", callback=bar)
        assert (bar.tqdm.total, bar.tqdm.n) == (10_000, 10_000)
    assert "10000/10000" in screen.getvalue()


def test_closed_file_system_lets_go(shm_pool: str) -> None:
    fs = fsspec.filesystem("daxfs", pool=shm_pool)
    fs.pipe("/x", b"1")
    fs.close()
    with pytest.raises(ValueError, match="closed"):
        fs.cat("/x")
    again = fsspec.filesystem("daxfs", pool=shm_pool)     # a new instance, not the closed one
    try:
        assert again is not fs and again.cat("/x") == b"1"
    finally:
        again.close()
    gc.collect()
    assert pool_share.shared_count(shm_pool) == 0


def test_an_exclusive_write_in_a_transaction_does_not_replace(fs: Any) -> None:
    with pytest.raises(FileExistsError):
        with fs.transaction:
            with fs.open("/tx/x", "xb", buffering=0) as f:
                f.write(b"first")
            fs.pipe("/tx/x", b"someone else")        # appears before the commit
    assert fs.cat("/tx/x") == b"someone else"
    assert fs.ls("/tx", detail=False) == ["/tx/x"]      # the part file went with the commit


def test_cp_onto_itself_is_refused_and_loses_nothing(fs: Any) -> None:
    fs.pipe("/same", b"precious")
    fs.volume.link("/same", "/alias")
    for target in ("/same", "/alias"):
        with pytest.raises(OSError) as caught:
            fs.cp_file("/same", target)
        assert caught.value.errno == errno.EINVAL
    assert fs.cat("/same") == b"precious"


def test_a_given_volume_does_not_pickle_but_says_why(shm_pool: str) -> None:
    with daxfs.open_volume(shm_pool) as vol:
        fs = fsspec.filesystem("daxfs", volume=vol)
        with pytest.raises(TypeError, match="pool="):
            pickle.dumps(fs)
