"""The ``daxfs`` command line: every command against a real pool, and its error contract.

Most tests call ``main([...])`` in-process; a few run ``python -m daxfs`` in a
subprocess to check the entry point, the exit status and that no traceback
escapes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import daxfs
from daxfs.adapters import cli
from daxfs.adapters.cli import format_size, main, parse_size, split_pool_path

MiB = 1024 * 1024


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A fresh directory in memory (/dev/shm) where there is one, removed afterwards."""
    root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    directory = Path(tempfile.mkdtemp(prefix="daxfs-cli-test-", dir=root))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pool(scratch: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(scratch / "test.pool")
    assert main(["mkfs", path, "--size", "64M"]) == 0
    capsys.readouterr()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_error_line(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("daxfs: "), err
    assert "Traceback" not in err


# ------------------------------------------------------------ parsing helpers


@pytest.mark.parametrize("text, expected", [
    ("4096", 4096),
    ("64M", 64 * MiB),
    ("64m", 64 * MiB),
    ("1G", 1024 * MiB),
    ("1GiB", 1024 * MiB),
    ("1.5G", 1536 * MiB),
    ("512K", 512 * 1024),
    ("10MB", 10_000_000),
    ("100B", 100),
])
def test_parse_size_accepts_bytes_and_suffixes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12Q", "-5", "M", "1..5G", "1 G B"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


def test_format_size_picks_a_readable_unit() -> None:
    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(4096) == "4 KiB"
    assert format_size(1536 * MiB) == "1.5 GiB"


def test_split_pool_path_prefers_existing_pools(scratch: Path) -> None:
    existing = scratch / "p.pool"
    existing.write_bytes(b"")
    colon_pool = scratch / "x:y.pool"
    colon_pool.write_bytes(b"")
    assert split_pool_path(f"{existing}:/a/b") == (str(existing), "/a/b")
    assert split_pool_path(str(existing)) == (str(existing), "/")
    assert split_pool_path(f"{existing}:") == (str(existing), "/")
    # An existing pool allows a relative path and a ':' inside the path.
    assert split_pool_path(f"{existing}:a/b") == (str(existing), "a/b")
    assert split_pool_path(f"{existing}:/a:b") == (str(existing), "/a:b")
    # A pool whose own name holds ':' is still a pool.
    assert split_pool_path(str(colon_pool)) == (str(colon_pool), "/")
    assert split_pool_path(f"{colon_pool}:/d") == (str(colon_pool), "/d")
    # A directory is never the pool.
    assert split_pool_path(f"{scratch}:/d") == (str(scratch), "/d")


def test_split_pool_path_for_pools_that_do_not_exist(scratch: Path) -> None:
    # Split only before an absolute path (or nothing); otherwise the whole spec is the pool.
    assert split_pool_path(f"{scratch}/new.pool:/x") == (f"{scratch}/new.pool", "/x")
    assert split_pool_path(f"{scratch}/new.pool:") == (f"{scratch}/new.pool", "/")
    assert split_pool_path(f"{scratch}/a:b") == (f"{scratch}/a:b", "/")
    assert split_pool_path(f"{scratch}/plain.pool") == (f"{scratch}/plain.pool", "/")


# ------------------------------------------------------------ commands


def test_mkfs_then_info_describes_the_pool(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(scratch / "info.pool")
    status, out, err = run(capsys, "mkfs", path, "--size", "32M", "--block-size", "4096")
    assert status == 0 and err == ""
    assert out.startswith(f"formatted {path}")
    assert os.path.getsize(path) == 32 * MiB

    status, out, err = run(capsys, "info", path)
    assert status == 0 and err == ""
    fields = {key: value.strip() for key, value in (line.split(":", 1) for line in out.splitlines())}
    assert fields["block_size"] == "4096"
    assert fields["size"].startswith(str(32 * MiB))
    assert fields["sync_mode"] in {"map_sync", "msync", "memory"}
    # the pool's properties, not those of the command's own read-only handle on it
    assert not {"readonly", "policy", "durability", "path"} & set(fields)
    with daxfs.open_volume(path, readonly=True) as vol:
        fs, info = vol.statfs(), vol.info()
    assert fields["free"].startswith(f"{fs.free} (") and fields["used"].split()[0] == str(fs.used)
    assert fields["files"] == str(fs.files) == "1" and fields["version"] == str(info["version"])
    assert fields["uuid"] == info["uuid"] and fields["pool"] == path and fields["writer"] == "none"


def test_mkfs_refuses_to_format_over_a_volume_without_force(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "mkfs", pool, "--size", "64M")
    assert status == 1
    assert_one_error_line(err)
    status, _, err = run(capsys, "mkfs", pool, "--size", "64M", "--force")
    assert status == 0 and err == ""


def test_put_get_round_trip(pool: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Not a multiple of the copy chunk, so the last short chunk is exercised.
    payload = os.urandom(2 * cli.COPY_CHUNK + 12345)
    local = scratch / "payload.bin"
    local.write_bytes(payload)

    assert run(capsys, "mkdir", f"{pool}:/a/b", "-p") == (0, "", "")
    status, out, err = run(capsys, "put", str(local), f"{pool}:/a/b/data.bin")
    # No progress bar off a terminal.
    assert (status, out, err) == (0, "", "")

    copy = scratch / "copy.bin"
    assert run(capsys, "get", f"{pool}:/a/b/data.bin", str(copy)) == (0, "", "")
    assert copy.read_bytes() == payload

    with daxfs.open_volume(pool, readonly=True) as vol:
        assert vol.stat("/a/b/data.bin").st_size == len(payload)


def test_cat_writes_raw_bytes(scratch: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    pool = str(scratch / "cat.pool")
    payload = os.urandom(cli.COPY_CHUNK + 999) + b"\n\x00\xff"
    with daxfs.mkfs(pool, 32 * MiB) as vol, vol.open("/blob", "wb", buffering=0) as f:
        f.write(payload)
    assert main(["cat", f"{pool}:/blob"]) == 0
    captured = capsysbinary.readouterr()
    assert captured.out == payload and captured.err == b""


def test_put_and_get_into_a_directory_keep_the_file_name(pool: str, scratch: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    local = scratch / "notes.txt"
    local.write_bytes(b"some notes\n")
    assert run(capsys, "mkdir", f"{pool}:/docs")[0] == 0
    assert run(capsys, "put", str(local), f"{pool}:/docs")[0] == 0
    assert run(capsys, "put", str(local), f"{pool}:/")[0] == 0
    out_dir = scratch / "out"
    out_dir.mkdir()
    assert run(capsys, "get", f"{pool}:/docs/notes.txt", str(out_dir))[0] == 0
    assert (out_dir / "notes.txt").read_bytes() == b"some notes\n"
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert sorted(vol.listdir("/")) == ["docs", "notes.txt"]
        assert vol.listdir("/docs") == ["notes.txt"]


def test_ls_lists_names_and_long_format(pool: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with daxfs.open_volume(pool) as vol:
        vol.mkdir("/d")
        with vol.open("/d/zeta", "wb", buffering=0) as f:
            f.write(b"z" * 1000)
        with vol.open("/d/alpha", "wb", buffering=0) as f:
            f.write(b"a")
        vol.mkdir("/d/sub")

    status, out, err = run(capsys, "ls", f"{pool}:/d")
    assert (status, err) == (0, "")
    assert out.splitlines() == ["alpha", "sub", "zeta"]

    status, out, _ = run(capsys, "ls", pool)
    assert status == 0 and out.splitlines() == ["d"]

    status, out, _ = run(capsys, "ls", f"{pool}:/d", "-l")
    assert status == 0
    lines = out.splitlines()
    assert [line.split()[-1] for line in lines] == ["alpha", "sub", "zeta"]
    assert lines[0].startswith("-") and lines[1].startswith("d") and lines[2].startswith("-")
    assert lines[2].split()[2] == "1000"

    # ls of a file names just that file.
    status, out, _ = run(capsys, "ls", f"{pool}:/d/zeta", "-l")
    assert status == 0 and out.split()[-1] == "/d/zeta" and out.split()[2] == "1000"


def test_stat_prints_metadata_and_extents(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    with daxfs.open_volume(pool) as vol, vol.open("/f", "wb", buffering=0) as f:
        f.write(b"x" * 10000)
    status, out, err = run(capsys, "stat", f"{pool}:/f")
    assert (status, err) == (0, "")
    assert "Type: regular file" in out
    assert "Size: 10000 " in out
    assert "Extents: " in out
    extent_count = int(out.split("Extents: ")[1].split()[0])
    assert extent_count >= 1

    status, out, _ = run(capsys, "stat", pool)
    assert status == 0 and "Type: directory" in out and "Extents" not in out


def test_mv_renames_inside_a_pool_and_into_a_directory(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    with daxfs.open_volume(pool) as vol:
        with vol.open("/one", "wb", buffering=0) as f:
            f.write(b"1")
        vol.mkdir("/dir")
    assert run(capsys, "mv", f"{pool}:/one", f"{pool}:two") == (0, "", "")
    assert run(capsys, "mv", f"{pool}:/two", f"{pool}:/three") == (0, "", "")
    # Into an existing directory, as mv does.
    assert run(capsys, "mv", f"{pool}:/three", f"{pool}:/dir") == (0, "", "")
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert sorted(vol.listdir("/")) == ["dir"]
        assert vol.listdir("/dir") == ["three"]
        with vol.open("/dir/three") as f:
            assert f.read() == b"1"


def test_mv_between_pools_is_refused(pool: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = str(scratch / "other.pool")
    assert run(capsys, "mkfs", other, "--size", "16M")[0] == 0
    assert run(capsys, "mkdir", f"{pool}:/d")[0] == 0
    status, _, err = run(capsys, "mv", f"{pool}:/d", f"{other}:/d")
    assert status == 1
    assert_one_error_line(err)
    assert "between pools" in err
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert vol.exists("/d")


def test_rm_file_directory_and_tree(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    with daxfs.open_volume(pool) as vol:
        vol.mkdir("/t/u/v", parents=True)
        for name in ("/t/a", "/t/u/b", "/t/u/v/c", "/lone"):
            with vol.open(name, "wb", buffering=0) as f:
                f.write(b"data")
    assert run(capsys, "rm", f"{pool}:/lone") == (0, "", "")

    status, _, err = run(capsys, "rm", f"{pool}:/t")
    assert status == 1
    assert_one_error_line(err)

    assert run(capsys, "rm", f"{pool}:/t", "-r") == (0, "", "")
    status, _, err = run(capsys, "rm", pool, "-r")
    assert status == 1 and "root" in err
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert vol.listdir("/") == []
        assert vol.fsck() == []


def test_df_reports_space_and_files(pool: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local = scratch / "one-mib"
    local.write_bytes(b"\x01" * MiB)
    assert run(capsys, "put", str(local), f"{pool}:/m")[0] == 0
    status, out, err = run(capsys, "df", pool)
    assert (status, err) == (0, "")
    header, values = out.splitlines()
    assert header.split() == ["Pool", "Size", "Used", "Shared", "Free", "Busy", "Bad", "Files", "Use%",
                              "Resident"]
    with daxfs.open_volume(pool, readonly=True) as vol:
        fs = vol.statfs()
    assert fs.used >= MiB
    assert values.split()[0] == pool
    cells = dict(zip(header.split(), (c.strip() for c in values.split("  ") if c.strip())))
    assert cells["Files"] == str(fs.files)
    assert cells["Used"] == format_size(fs.used) and cells["Free"] == format_size(fs.free)
    assert cells["Resident"] == format_size(fs.resident) == format_size(os.stat(pool).st_blocks * 512)


def test_fsck_prints_clean_or_the_problems(pool: str, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(capsys, "fsck", pool) == (0, "clean\n", "")
    with daxfs.open_volume(pool, readonly=True) as vol:
        volume_type = type(vol)
    monkeypatch.setattr(volume_type, "fsck", lambda self: ["inode 7: size past its extents", "block 3 leaked"])
    status, out, err = run(capsys, "fsck", pool)
    assert status == 1 and err == ""
    assert out.splitlines() == ["inode 7: size past its extents", "block 3 leaked"]


def test_read_commands_open_the_pool_read_only(pool: str, scratch: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with daxfs.open_volume(pool) as vol, vol.open("/f", "wb", buffering=0) as f:
        f.write(b"f")
    real_open = daxfs.open_volume
    modes: list[bool] = []

    def recording_open(path: str, **kwargs: Any) -> Any:
        modes.append(kwargs.get("readonly", False))
        return real_open(path, **kwargs)

    monkeypatch.setattr(daxfs, "open_volume", recording_open)
    commands = [["info", pool], ["ls", pool], ["get", f"{pool}:/f", str(scratch / "f")],
                ["cat", f"{pool}:/f"], ["stat", f"{pool}:/f"], ["df", pool], ["fsck", pool]]
    for argv in commands:
        assert run(capsys, *argv)[0] == 0, argv
    assert modes == [True] * len(commands)


def test_demo_passes_and_cleans_up(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
    before = set(root.glob("daxfs-demo-*"))
    status, out, err = run(capsys, "demo")
    assert (status, err) == (0, "")
    assert "all checks passed" in out
    assert out.count("MB/s") == 2
    assert "fsck after remount" in out
    assert set(root.glob("daxfs-demo-*")) == before


# ------------------------------------------------------------ errors


def test_missing_pool_is_one_line(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(scratch / "nope.pool")
    for argv in (["info", missing], ["ls", f"{missing}:/x"], ["df", missing], ["fsck", missing]):
        status, out, err = run(capsys, *argv)
        assert status == 1 and out == "", argv
        assert_one_error_line(err)
        assert "nope.pool" in err


def test_missing_path_is_one_line(pool: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["cat", f"{pool}:/ghost"], ["stat", f"{pool}:/ghost"], ["ls", f"{pool}:/ghost"],
                 ["rm", f"{pool}:/ghost"], ["mv", f"{pool}:/ghost", "/x"],
                 ["mkdir", f"{pool}:/no/parent"]):
        status, _, err = run(capsys, *argv)
        assert status == 1, argv
        assert_one_error_line(err)
    status, _, err = run(capsys, "get", f"{pool}:/ghost", str(scratch / "local"))
    assert status == 1
    assert_one_error_line(err)
    assert not (scratch / "local").exists()


def test_missing_local_file_creates_nothing_in_the_pool(pool: str, scratch: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "put", str(scratch / "absent"), f"{pool}:/x")
    assert status == 1
    assert_one_error_line(err)
    assert "absent" in err
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert vol.listdir("/") == []


def test_existing_directory_needs_parents_flag(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "mkdir", f"{pool}:/d")[0] == 0
    status, _, err = run(capsys, "mkdir", f"{pool}:/d")
    assert status == 1
    assert_one_error_line(err)
    assert run(capsys, "mkdir", f"{pool}:/d", "-p") == (0, "", "")


@pytest.mark.parametrize("content", [b"", b"not a pool", os.urandom(MiB), b"\x00" * (4 * MiB)],
                         ids=["empty", "text", "random", "zeros"])
def test_foreign_file_as_pool_is_one_line(scratch: Path, capsys: pytest.CaptureFixture[str],
                                          content: bytes) -> None:
    foreign = scratch / "foreign.bin"
    foreign.write_bytes(content)
    for argv in (["info", str(foreign)], ["ls", str(foreign)], ["fsck", str(foreign)]):
        status, out, err = run(capsys, *argv)
        assert status == 1 and out == "", argv
        assert_one_error_line(err)
    assert foreign.read_bytes() == content


@pytest.mark.parametrize("argv", [
    ["mkfs", "somewhere.pool", "--size", "12Q"],
    ["mkfs", "somewhere.pool"],
    ["frobnicate"],
    [],
    ["ls"],
])
def test_usage_errors_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert_one_error_line(err)
    assert not os.path.exists("somewhere.pool")


def test_keyboard_interrupt_exits_130_quietly(pool: str, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(daxfs, "open_volume", interrupted)
    assert run(capsys, "info", pool) == (130, "", "")


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for command in ("mkfs", "info", "ls", "mkdir", "put", "get", "cat", "rm", "mv", "stat", "df", "fsck", "demo"):
        assert command in out


# ------------------------------------------------------------ as a program


def _python_m_daxfs(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    # Point the child at the same daxfs this test imported (installed or src/).
    package_parent = str(Path(cli.__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "daxfs", *argv], input=stdin, capture_output=True,
                          env=env, timeout=120)


def test_python_m_daxfs_round_trip(scratch: Path) -> None:
    pool = str(scratch / "sub.pool")
    result = _python_m_daxfs("mkfs", pool, "--size", "16M")
    assert result.returncode == 0, result.stderr
    local = scratch / "hello"
    local.write_bytes(b"hello from a subprocess\n")
    assert _python_m_daxfs("put", str(local), f"{pool}:/hello").returncode == 0
    result = _python_m_daxfs("cat", f"{pool}:/hello")
    assert result.returncode == 0 and result.stdout == b"hello from a subprocess\n" and result.stderr == b""
    result = _python_m_daxfs("fsck", pool)
    assert (result.returncode, result.stdout) == (0, b"clean\n")


def test_python_m_daxfs_errors_without_traceback(scratch: Path) -> None:
    result = _python_m_daxfs("cat", f"{scratch}/missing.pool:/x")
    assert result.returncode == 1 and result.stdout == b""
    assert_one_error_line(result.stderr.decode())
    result = _python_m_daxfs("mkfs", str(scratch / "p"), "--size", "lots")
    assert result.returncode == 2
    assert_one_error_line(result.stderr.decode())


def test_pins_lists_what_the_writer_holds_and_df_shows_busy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`daxfs pins` and `daxfs df` run in another process than the writer: they read what
    it publishes in the pool."""
    pool = str(tmp_path / "held.pool")
    vol = daxfs.mkfs(pool, 16 << 20)
    try:
        f = vol.open("data", "w+b", buffering=0)
        f.write(b"x" * 100_000)
        pin = f.pin(0, 8192)
        worker = vol.holder("worker-1")
        lease = worker.open("data", "rb", buffering=0).map(lease=True)
        f.truncate(4096)                           # the pinned and mapped tail goes busy
        vol._publish()                             # what the timer would do within 0.2 s
        assert main(["pins", pool]) == 0
        out = capsys.readouterr().out
        assert "2 reference(s)" in out and "worker-1" in out and "lease" in out and "pin" in out
        with daxfs.open_volume(pool, readonly=True) as reader:
            busy = reader.statfs().busy
        assert busy == vol.statfs().busy > 0       # another opener sees the writer's busy space
        assert main(["df", pool]) == 0
        assert format_size(busy) in capsys.readouterr().out
        worker.close()
        pin.release()
        assert lease.closed
        f.close()
    finally:
        vol.close()
    assert main(["pins", pool]) == 0
    assert "nothing is pinned" in capsys.readouterr().out


# ------------------------------------------------------------ cp, owners, shared space


def _write(pool: str, path: str, payload: bytes) -> None:
    with daxfs.open_volume(pool) as vol, vol.open(path, "wb", buffering=0) as f:
        f.write(payload)


def _read(pool: str, path: str) -> bytes:
    with daxfs.open_volume(pool, readonly=True) as vol, vol.open(path, "rb", buffering=0) as f:
        return f.read()


def _extents(pool: str, path: str) -> list[daxfs.Extent]:
    with daxfs.open_volume(pool, readonly=True) as vol, vol.open(path, "rb", buffering=0) as f:
        return f.extents()


def test_parse_offset_accepts_sizes_and_hex() -> None:
    assert cli.parse_offset("0") == 0
    assert cli.parse_offset("4096") == 4096
    assert cli.parse_offset("4K") == 4096
    assert cli.parse_offset("0x1000") == 4096
    assert cli.parse_offset("0X7fff000") == 0x7FFF000
    assert cli.parse_offset("2M") == 2 * MiB
    for text in ("", "0x", "0xzz", "-1", "4Q", "x10"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.parse_offset(text)


def test_cp_inside_a_pool_shares_the_blocks_by_default(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    payload = os.urandom(3 * MiB + 123)
    _write(pool, "/a", payload)
    assert run(capsys, "cp", f"{pool}:/a", f"{pool}:/b") == (0, "", "")
    assert _read(pool, "/b") == payload
    a, b = _extents(pool, "/a"), _extents(pool, "/b")
    assert [(e.file_offset, e.length, e.pool_offset) for e in a] == \
        [(e.file_offset, e.length, e.pool_offset) for e in b]
    assert all("shared" in e.flags for e in a + b)
    with daxfs.open_volume(pool) as vol:
        assert vol.statfs().shared == -(-len(payload) // 4096) * 4096
        assert vol.stat("/a").st_ino != vol.stat("/b").st_ino
        with vol.open("/b", "r+b", buffering=0) as f:      # the copy is independent: a write unshares
            f.pwrite(b"changed", 0)
        assert vol.fsck() == []
    assert _read(pool, "/a") == payload
    assert _read(pool, "/b") == b"changed" + payload[7:]


def test_cp_reflink_always_and_never_inside_a_pool(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    payload = os.urandom(cli.COPY_CHUNK + 4097)
    _write(pool, "/a", payload)
    assert run(capsys, "cp", f"{pool}:/a", f"{pool}:/always", "--reflink", "always") == (0, "", "")
    assert all("shared" in e.flags for e in _extents(pool, "/always"))
    assert run(capsys, "cp", "--reflink=never", f"{pool}:/a", f"{pool}:/never") == (0, "", "")
    assert _read(pool, "/never") == payload
    never = _extents(pool, "/never")
    assert never and not any("shared" in e.flags for e in never)
    pool_offsets = {e.pool_offset for e in _extents(pool, "/a")}
    assert not pool_offsets & {e.pool_offset for e in never}
    with daxfs.open_volume(pool, readonly=True) as vol:
        # /a and /always share; /never has its own blocks.
        assert vol.statfs().shared == -(-len(payload) // 4096) * 4096
        assert vol.fsck() == []


def test_cp_overwrites_an_existing_file_and_keeps_the_name_in_a_directory(
        pool: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(pool, "/a", b"new contents")
    _write(pool, "/old", b"old contents that are longer")
    with daxfs.open_volume(pool) as vol:
        vol.mkdir("/d")
    assert run(capsys, "cp", f"{pool}:/a", f"{pool}:/old")[0] == 0
    assert _read(pool, "/old") == b"new contents"
    assert run(capsys, "cp", f"{pool}:/a", f"{pool}:/d")[0] == 0
    assert run(capsys, "cp", f"{pool}:/d/a", f"{pool}:/d/")[0] == 1      # onto itself
    capsys.readouterr()
    assert run(capsys, "cp", f"{pool}:/old", f"{pool}:/d/")[0] == 0        # trailing /: a directory
    assert run(capsys, "cp", f"{pool}:/d/old", f"{pool}:")[0] == 0         # the root: onto /old
    local = scratch / "notes.txt"
    local.write_bytes(b"local notes")
    assert run(capsys, "cp", str(local), f"{pool}:/d") == (0, "", "")
    out_dir = scratch / "out"
    out_dir.mkdir()
    assert run(capsys, "cp", f"{pool}:/d/a", str(out_dir)) == (0, "", "")
    assert (out_dir / "a").read_bytes() == b"new contents"
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert sorted(vol.listdir("/d")) == ["a", "notes.txt", "old"]
        assert sorted(vol.listdir("/")) == ["a", "d", "old"]
        with vol.open("/d/notes.txt") as f:
            assert f.read() == b"local notes"
        with vol.open("/d/a") as f:
            assert f.read() == b"new contents"


def test_cp_into_and_out_of_a_pool_works_like_put_and_get(pool: str, scratch: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    payload = os.urandom(2 * cli.COPY_CHUNK + 99)
    local = scratch / "in.bin"
    local.write_bytes(payload)
    assert run(capsys, "cp", str(local), f"{pool}:/in.bin") == (0, "", "")
    assert run(capsys, "cp", f"{pool}:/in.bin", str(scratch / "out.bin"), "--reflink", "never") == (0, "", "")
    assert (scratch / "out.bin").read_bytes() == payload
    assert _read(pool, "/in.bin") == payload


def test_cp_between_pools_copies_bytes_and_refuses_reflink_always(
        pool: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = str(scratch / "other.pool")
    assert run(capsys, "mkfs", other, "--size", "16M")[0] == 0
    payload = os.urandom(MiB + 5)
    _write(pool, "/a", payload)
    status, out, err = run(capsys, "cp", f"{pool}:/a", f"{other}:/a", "--reflink", "always")
    assert status == 1 and out == ""
    assert_one_error_line(err)
    assert "reflink" in err
    with daxfs.open_volume(other, readonly=True) as vol:
        assert vol.listdir("/") == []
    assert run(capsys, "cp", f"{pool}:/a", f"{other}:/") == (0, "", "")
    assert _read(other, "/a") == payload
    with daxfs.open_volume(other, readonly=True) as vol:
        assert vol.fsck() == [] and vol.statfs().shared == 0


def test_cp_reflink_always_with_a_local_side_is_an_error(pool: str, scratch: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    local = scratch / "local.bin"
    local.write_bytes(b"abc")
    _write(pool, "/a", b"abc")
    for argv in (["cp", str(local), f"{pool}:/x", "--reflink", "always"],
                 ["cp", f"{pool}:/a", str(scratch / "y"), "--reflink", "always"]):
        status, out, err = run(capsys, *argv)
        assert status == 1 and out == "", argv
        assert_one_error_line(err)
        assert "reflink" in err
    assert not (scratch / "y").exists()
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert vol.listdir("/") == ["a"]


def test_cp_reflink_auto_falls_back_to_a_byte_copy_only_when_cloning_is_impossible(
        pool: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    payload = os.urandom(100_000)
    _write(pool, "/a", payload)
    with daxfs.open_volume(pool, readonly=True) as vol:
        volume_type = type(vol)
    real_clone = volume_type.clone_file
    calls: list[str] = []

    def cannot_clone(self: Any, src: object, dst: object) -> None:
        calls.append(str(dst))
        with self.open(dst, "wb", buffering=0):          # as a clone that fails midway may leave it
            pass
        raise OSError(errno.EOPNOTSUPP, "cannot share these blocks")

    monkeypatch.setattr(volume_type, "clone_file", cannot_clone)
    assert run(capsys, "cp", f"{pool}:/a", f"{pool}:/auto") == (0, "", "")
    # cloned to a temporary name beside /auto, to be renamed over it
    assert len(calls) == 1 and calls[0].startswith("/.auto.daxfs-tmp-")
    assert _read(pool, "/auto") == payload
    assert not any("shared" in e.flags for e in _extents(pool, "/auto"))

    status, out, err = run(capsys, "cp", f"{pool}:/a", f"{pool}:/always", "--reflink", "always")
    assert status == 1 and out == ""
    assert_one_error_line(err)
    assert "cannot share" in err
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert not vol.exists("/always")                    # no empty file left behind

    def out_of_space(self: Any, src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(volume_type, "clone_file", out_of_space)
    status, _, err = run(capsys, "cp", f"{pool}:/a", f"{pool}:/nospace")
    assert status == 1                                      # the copy's own error: no fallback
    assert_one_error_line(err)
    monkeypatch.setattr(volume_type, "clone_file", real_clone)
    assert run(capsys, "cp", f"{pool}:/a", f"{pool}:/real", "--reflink", "never") == (0, "", "")


def test_cp_errors_are_one_line(pool: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    payload = b"precious data" * 100
    _write(pool, "/a", payload)
    with daxfs.open_volume(pool) as vol:
        vol.mkdir("/d")
        vol.link("/a", "/hard")
    for argv in (["cp", f"{pool}:/a", f"{pool}:/a"],              # the same file ...
                 ["cp", f"{pool}:/a", f"{pool}:/hard"],           # ... under another name
                 ["cp", f"{pool}:/a", f"{pool}:/hard", "--reflink", "never"],
                 ["cp", f"{pool}:/ghost", f"{pool}:/b"],          # a missing source
                 ["cp", f"{pool}:/d", f"{pool}:/e"],              # a directory
                 ["cp", f"{pool}:/a", f"{pool}:/no/such/dir/b"],  # a missing parent
                 ["cp", f"{pool}:/ghost", str(scratch / "local")],
                 ["cp", str(scratch / "absent"), f"{pool}:/c"],
                 ["cp", str(scratch / "l1"), str(scratch / "l2")],  # no pool on either side
                 ["cp", f"{scratch}/missing.pool:/a", f"{pool}:/m"]):
        status, out, err = run(capsys, *argv)
        assert status == 1 and out == "", argv
        assert_one_error_line(err)
    assert "same file" in run(capsys, "cp", f"{pool}:/a", f"{pool}:/hard")[2]
    assert not (scratch / "local").exists()
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert sorted(vol.listdir("/")) == ["a", "d", "hard"]
        assert vol.listdir("/d") == []
        with vol.open("/a") as f:
            assert f.read() == payload
        assert vol.fsck() == []
    status, out, err = run(capsys, "cp", f"{pool}:/a", f"{pool}:/b", "--reflink", "sometimes")
    assert status == 2 and out == ""
    assert_one_error_line(err)


def test_owners_lists_every_file_sharing_a_block(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    _write(pool, "/a", os.urandom(10_000))
    with daxfs.open_volume(pool) as vol:
        vol.mkdir("/d")
        vol.clone_file("/a", "/d/b")
        vol.open("/d/c", "xb", buffering=0).close()
        vol.clone_range("/a", 4096, "/d/c", 8192, 4096)
        with vol.open("/a") as f:
            a = {e.pool_offset for e in f.extents()}
        ino = {path: vol.stat(path).st_ino for path in ("/a", "/d/b", "/d/c")}
    start = min(a)              # one run of three blocks (listed per block: sharers differ)
    assert a == {start, start + 4096, start + 8192}
    block2 = start + 4096
    for offset in (hex(block2), str(block2), f"{block2 // 1024}K"):
        status, out, err = run(capsys, "owners", pool, offset, "4K")
        assert (status, err) == (0, ""), offset
        lines = out.splitlines()
        assert len(lines) == 3
        rows = sorted(line.split() for line in lines)
        assert rows == sorted([
            [str(ino["/a"]), "4096", "4096", hex(block2), "/a"],
            [str(ino["/d/b"]), "4096", "4096", hex(block2), "/d/b"],
            [str(ino["/d/c"]), "8192", "4096", hex(block2), "/d/c"],
        ])
    # LENGTH defaults to one byte; a range can span blocks (one line per owner's piece).
    status, out, _ = run(capsys, "owners", pool, hex(start))
    assert status == 0
    assert sorted(line.split()[-1] for line in out.splitlines()) == ["/a", "/d/b"]
    assert all(line.split()[2] == "1" for line in out.splitlines())
    # Three blocks: /a and /d/b own all of them (one line each), /d/c the middle one.
    status, out, _ = run(capsys, "owners", pool, hex(start), "0x3000")
    assert status == 0
    pieces = sorted((line.split()[-1], int(line.split()[2])) for line in out.splitlines())
    assert ("/d/c", 4096) in pieces
    assert sum(n for path, n in pieces if path == "/a") == 3 * 4096
    assert sum(n for path, n in pieces if path == "/d/b") == 3 * 4096


def test_owners_of_free_space_and_of_an_unlinked_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = str(tmp_path / "own.pool")
    vol = daxfs.mkfs(pool, 16 * MiB)
    try:
        f = vol.open("/f", "w+b", buffering=0)
        f.write(b"x" * 8192)
        vol.clone_file("/f", "/g")
        (extent,) = f.extents()
        vol.unlink("/f")                    # still open: its blocks are owned by an orphan
        status, out, err = run(capsys, "owners", pool, hex(extent.pool_offset), "4K")
        assert (status, err) == (0, "")
        paths = sorted(line.split(None, 4)[-1] for line in out.splitlines())
        assert paths == ["(unlinked)", "/g"]
        f.close()
        vol.unlink("/g")
    finally:
        vol.close()
    assert run(capsys, "owners", pool, hex(extent.pool_offset), "8K") == (0, "no owner\n", "")
    assert run(capsys, "owners", pool, "1G") == (0, "no owner\n", "")      # past the pool


@pytest.mark.parametrize("argv", [
    ["owners"],
    ["owners", "somewhere.pool"],
    ["owners", "somewhere.pool", "lots"],
    ["owners", "somewhere.pool", "0x"],
    ["owners", "somewhere.pool", "0", "0"],
    ["owners", "somewhere.pool", "-4096"],
    ["cp", "a"],
])
def test_owners_and_cp_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert_one_error_line(err)


def test_owners_on_a_missing_pool_is_one_line(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "owners", str(scratch / "nope.pool"), "0")
    assert status == 1 and out == ""
    assert_one_error_line(err)
    assert "nope.pool" in err


def test_df_shows_shared_bytes(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    _write(pool, "/a", os.urandom(MiB))
    status, out, _ = run(capsys, "df", pool)
    header, values = out.splitlines()
    column = header.split().index("Shared")
    assert header.split()[column - 1] == "Used"
    assert values.split(" " * 2)[0] == pool
    assert run(capsys, "cp", f"{pool}:/a", f"{pool}:/b")[0] == 0
    assert run(capsys, "cp", f"{pool}:/a", f"{pool}:/c")[0] == 0
    status, out, err = run(capsys, "df", pool)
    assert (status, err) == (0, "")
    header, values = out.splitlines()
    with daxfs.open_volume(pool, readonly=True) as vol:
        fs = vol.statfs()
    assert fs.shared == MiB and fs.used < 2 * MiB            # shared bytes count once in Used
    cells = [cell for cell in values.split("  ") if cell.strip()]
    assert [cell.strip() for cell in cells][column] == format_size(fs.shared) == "1 MiB"


def test_owners_opens_the_pool_read_only_and_help_lists_the_new_commands(
        pool: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = daxfs.open_volume
    modes: list[bool] = []

    def recording_open(path: str, **kwargs: Any) -> Any:
        modes.append(kwargs.get("readonly", False))
        return real_open(path, **kwargs)

    monkeypatch.setattr(daxfs, "open_volume", recording_open)
    assert run(capsys, "owners", pool, "0")[0] == 0
    assert modes == [True]
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "cp" in out.split() and "owners" in out.split()
    status, out, _ = run(capsys, "cp", "--help")
    assert status == 0 and "--reflink" in out and "always" in out


def test_cp_never_writes_over_the_pool_file_itself(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A pool named like the file it would receive, in the directory DST names.
    pool = str(scratch / "a")
    assert run(capsys, "mkfs", pool, "--size", "16M")[0] == 0
    _write(pool, "/a", b"data")
    size = os.path.getsize(pool)
    for argv in (["cp", f"{pool}:/a", pool],              # DST without ':' is local: the pool file
                 ["cp", f"{pool}:/a", str(scratch)],      # into its directory, keeping the name 'a'
                 ["cp", pool, f"{pool}:/image"]):         # the pool file into itself
        status, out, err = run(capsys, *argv)
        assert status == 1 and out == "", argv
        assert_one_error_line(err)
        assert os.path.getsize(pool) == size
    assert run(capsys, "fsck", pool) == (0, "clean\n", "")
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert vol.listdir("/") == ["a"]
    assert _read(pool, "/a") == b"data"


def test_get_refuses_to_overwrite_the_pool_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = str(tmp_path / "self.pool")
    with daxfs.mkfs(pool, 16 << 20) as vol:
        with vol.open("a", "wb", buffering=0) as f:
            f.write(b"payload")
    assert main(["get", f"{pool}:/a", pool]) == 1
    assert capsys.readouterr().err.startswith("daxfs:")
    with daxfs.open_volume(pool) as vol:              # the pool survived
        assert vol.fsck() == [] and vol.open("a").read() == b"payload"


# ------------------------------------------------------------ who holds the pool (issue 15, item 6)


def _holder_child(pool: str, code: str) -> subprocess.Popen[bytes]:
    """A python process that runs ``code`` on ``pool`` (``vol``), says "ready", and waits for stdin to close."""
    package_parent = str(Path(cli.__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")])))
    script = f"import sys, daxfs\n{code}\nprint('ready', flush=True)\nsys.stdin.read()\n"
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env=env)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    return child


def _end(child: subprocess.Popen[bytes]) -> None:
    assert child.stdin is not None
    child.stdin.close()
    assert child.wait(60) == 0


def test_pins_names_an_idle_writer_at_once(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A writer that has done nothing since it opened the pool is still its writer."""
    child = _holder_child(pool, f"vol = daxfs.open_volume({pool!r})")
    try:
        status, out, err = run(capsys, "pins", pool)
        assert (status, err) == (0, "")
        assert out == f"held read-write by process {child.pid}: 0 reference(s), busy 0 B\n"
        status, out, _ = run(capsys, "info", pool)
        assert f"writer:          process {child.pid}\n" in out
        status, _, err = run(capsys, "mkdir", f"{pool}:/d")       # a second writer is refused, saying who
        assert status == 1
        assert_one_error_line(err)
        assert f"open read-write by process {child.pid}" in err and "this process" not in err
    finally:
        _end(child)
    assert run(capsys, "pins", pool) == (0, "no process holds the pool read-write: nothing is pinned or busy\n", "")


def test_pins_and_busy_errors_call_this_process_this_process(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    with daxfs.open_volume(pool) as vol:
        status, out, _ = run(capsys, "pins", pool)
        assert out == f"held read-write by process {os.getpid()} (this process): 0 reference(s), busy 0 B\n"
        with pytest.raises(daxfs.BusyError) as info:
            daxfs.open_volume(pool)
        assert info.value.holders == [os.getpid()]
        assert f"open read-write by process {os.getpid()} (this process)" in str(info.value)
        vol.mkdir("/still-works")


def test_a_read_only_openers_mapping_is_not_called_a_writer(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    _write(pool, "/f", b"x" * 8192)
    child = _holder_child(pool, f"vol = daxfs.open_volume({pool!r}, readonly=True)\n"
                                "f = vol.open('/f', 'rb', buffering=0)\nm = f.map()")
    try:
        status, out, err = run(capsys, "pins", pool)
        assert (status, err) == (0, "")
        assert out.startswith("no process holds the pool read-write; it is mapped or pinned by a read-only "
                              f"opener, process {child.pid}:")
        status, _, err = run(capsys, "rm", f"{pool}:/f")
        assert status == 1
        assert_one_error_line(err)
        assert f"mapped or pinned by a read-only opener, process {child.pid}" in err
        assert "read-write" not in err
        with pytest.raises(daxfs.BusyError) as info:
            daxfs.open_volume(pool)
        assert info.value.holders == [child.pid]
    finally:
        _end(child)
    assert run(capsys, "rm", f"{pool}:/f") == (0, "", "")


# ------------------------------------------------------------ messages (item 7)


def test_mkfs_without_force_says_the_flag(pool: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "mkfs", pool, "--size", "64M")
    assert status == 1
    assert_one_error_line(err)
    assert "--force" in err and "force=True" not in err and pool in err
    text = scratch / "notes.txt"
    text.write_bytes(b"not a pool")
    status, _, err = run(capsys, "mkfs", str(text), "--size", "16M")
    assert status == 1 and "--force" in err and "force=True" not in err and str(text) in err
    assert text.read_bytes() == b"not a pool"


def test_enospc_says_bytes_asked_for_and_free(tmp_path: Path) -> None:
    import errno

    with daxfs.mkfs(str(tmp_path / "small.pool"), 16 * MiB) as vol:
        free = vol.statfs().free
        with vol.open("/big", "wb", buffering=0) as f:
            with pytest.raises(OSError) as info:
                f.write(b"x" * (free + 4096))
    assert info.value.errno == errno.ENOSPC
    text = str(info.value)
    assert f"asked for {free + 4096} bytes ({(free + 4096) / MiB:.1f} MiB)" in text
    assert f"{free} bytes ({free / MiB:.1f} MiB) free" in text and "block" not in text


def test_put_that_cannot_fit_says_how_much_and_changes_nothing(scratch: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    pool = str(scratch / "small.pool")
    assert run(capsys, "mkfs", pool, "--size", "16M")[0] == 0
    _write(pool, "/keep", b"old contents")
    with daxfs.open_volume(pool, readonly=True) as vol:
        free = vol.statfs().free
    big = scratch / "big.bin"
    big.write_bytes(b"\x07" * (free + 1))
    status, out, err = run(capsys, "put", str(big), f"{pool}:/keep")
    assert status == 1 and out == ""
    assert_one_error_line(err)
    assert err.startswith("daxfs: /keep: no space left")
    assert f"asked for {free + 4096} bytes" in err and f"{free} bytes ({free / MiB:.1f} MiB) free" in err
    # stdin has no size to check first: the pool fills up midway, and still nothing changes
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(big.read_bytes())))
    status, _, err = run(capsys, "put", "-", f"{pool}:/keep")
    assert status == 1
    assert_one_error_line(err)
    assert "/keep" in err and "no space left" in err and "free" in err and "daxfs-tmp" not in err
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert vol.listdir("/") == ["keep"]             # no temporary left behind
        assert vol.statfs().free == free
        assert vol.fsck() == []
    assert _read(pool, "/keep") == b"old contents"


@pytest.mark.parametrize("argv, named", [
    (["mkfs", "{scratch}/new.pool", "--size", "64M", "--block-size", "1000"], "{scratch}/new.pool"),
    (["mkfs", "{scratch}/new.pool", "--size", "0"], "{scratch}/new.pool"),
    (["cp", "{pool}:/ghost", "{pool}:/x"], "/ghost"),
    (["put", "{scratch}/absent", "{pool}:/x"], "{scratch}/absent"),
    (["put", "{scratch}/local", "{pool}:/no/such/dir/x"], "/no/such/dir/x"),
    (["cp", "{pool}:/a", "{pool}:/no/such/dir/"], "/no/such/dir/a"),
    (["mkdir", "{pool}:/a/b"], "/a/b"),
    (["rmdir", "{pool}:/a"], "/a"),
    (["mv", "{pool}:/ghost", "{pool}:/x"], "/ghost"),
    (["owners", "{scratch}/absent.pool", "0"], "{scratch}/absent.pool"),
    (["stat", "{pool}:/a/x"], "/a/x"),
])
def test_every_error_names_its_path(pool: str, scratch: Path, capsys: pytest.CaptureFixture[str],
                                    argv: list[str], named: str) -> None:
    _write(pool, "/a", b"a file")
    (scratch / "local").write_bytes(b"local")
    fill = {"pool": pool, "scratch": str(scratch)}
    status, out, err = run(capsys, *(arg.format(**fill) for arg in argv))
    assert status == 1 and out == ""
    assert_one_error_line(err)
    assert err.startswith(f"daxfs: {named.format(**fill)}: "), err
    assert "daxfs-tmp" not in err
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert vol.listdir("/") == ["a"]
    assert not (scratch / "new.pool").exists()


# ------------------------------------------------------------ whole files or none (item 8)


def _names(pool: str, path: str = "/") -> list[str]:
    with daxfs.open_volume(pool, readonly=True) as vol:
        return sorted(vol.listdir(path))


@pytest.mark.parametrize("argv", [
    ["put", "{local}", "{pool}:/d/keep"],
    ["put", "{local}", "{pool}:/d/new"],
    ["cp", "{local}", "{pool}:/d/"],
    ["cp", "--reflink=never", "{pool}:/src", "{pool}:/d/keep"],
    ["cp", "{other}:/src", "{pool}:/d/keep"],
], ids=["put-over", "put-new", "cp-in", "cp-inside", "cp-between"])
@pytest.mark.parametrize("failure", ["interrupt", "eio"])
def test_a_copy_into_a_pool_that_fails_leaves_nothing_behind(
        pool: str, scratch: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        argv: list[str], failure: str) -> None:
    import errno

    from daxfs.adapters import transfer

    other = str(scratch / "other.pool")
    assert run(capsys, "mkfs", other, "--size", "16M")[0] == 0
    payload = os.urandom(3 * cli.COPY_CHUNK)
    _write(other, "/src", payload)
    _write(pool, "/src", payload)
    with daxfs.open_volume(pool) as vol:
        vol.mkdir("/d")
        with vol.open("/d/keep", "wb") as f:
            f.write(b"old contents")
        vol.chmod("/d/keep", 0o640)
    local = scratch / "local"
    local.write_bytes(payload)
    real_copy = transfer.copy_stream
    seen: list[str] = []

    def failing_copy(source: Any, sink: Any, **kwargs: Any) -> int:
        sink.write(source.read(cli.COPY_CHUNK))         # part of it is written, then it fails
        seen.append(sink.name if hasattr(sink, "name") else "?")
        if failure == "interrupt":
            raise KeyboardInterrupt
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(transfer, "copy_stream", failing_copy)
    status, out, err = run(capsys, *(arg.format(pool=pool, other=other, local=local) for arg in argv))
    assert seen, "the copy never started"
    if failure == "interrupt":
        assert (status, out, err) == (130, "", "")
    else:
        assert status == 1
        assert_one_error_line(err)
        assert "daxfs-tmp" not in err
    assert _names(pool, "/d") == ["keep"]               # no partial file, no temporary
    assert _read(pool, "/d/keep") == b"old contents"
    monkeypatch.setattr(transfer, "copy_stream", real_copy)
    # the same copy, not interrupted: the file is replaced whole and keeps its mode
    assert run(capsys, *(arg.format(pool=pool, other=other, local=local) for arg in argv))[0] == 0
    name = "/d/local" if argv[0] == "cp" and argv[-1].endswith("/") else argv[-1].split(":", 1)[1]
    assert _read(pool, name) == payload
    with daxfs.open_volume(pool, readonly=True) as vol:
        assert not [n for n in vol.listdir("/d") if "daxfs-tmp" in n]
        if name == "/d/keep":
            assert vol.stat(name).st_mode & 0o777 == 0o640
        assert vol.fsck() == []


def test_temporary_names_are_hidden_random_and_legal() -> None:
    from daxfs.adapters.transfer import temp_name

    first, second = temp_name("/d/weights.bin"), temp_name("/d/weights.bin")
    assert first != second
    assert first.startswith("/d/.weights.bin.daxfs-tmp-") and len(first) == len("/d/.weights.bin.daxfs-tmp-") + 16
    long = temp_name("/" + "é" * 127)                   # 254 bytes of name
    assert len(long[1:].encode()) <= 255


def test_a_failed_mkfs_removes_only_the_file_it_made(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fs = os.statvfs(scratch)
    too_big = str(2 * fs.f_blocks * fs.f_frsize)        # more than the whole file system: fails at once
    if not str(scratch).startswith("/dev/shm"):
        pytest.skip("needs tmpfs, where an allocation too big for it fails before it starts")
    new = scratch / "new.pool"
    status, _, err = run(capsys, "mkfs", str(new), "--size", too_big)
    assert status == 1
    assert_one_error_line(err)
    assert err.startswith(f"daxfs: {new}: no space left on device: asked for {too_big} bytes")
    assert "free there" in err
    assert not new.exists()
    existing = scratch / "empty.pool"
    existing.write_bytes(b"")
    assert run(capsys, "mkfs", str(existing), "--size", too_big)[0] == 1
    assert existing.exists() and existing.read_bytes() == b""


# ------------------------------------------------------------ habits (item 9)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    status, out, err = run(capsys, "--version")
    assert (status, err) == (0, "")
    assert out == f"daxfs {metadata.version('daxfs')}\n"


def test_dash_is_stdin_and_stdout(pool: str, scratch: Path) -> None:
    result = _python_m_daxfs("put", "-", f"{pool}:/from-stdin", stdin=b"piped bytes\n")
    assert (result.returncode, result.stderr) == (0, b"")
    assert _read(pool, "/from-stdin") == b"piped bytes\n"
    result = _python_m_daxfs("get", f"{pool}:/from-stdin", "-")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"piped bytes\n", b"")
    result = _python_m_daxfs("cat", f"{pool}:/from-stdin", "-", f"{pool}:/from-stdin", stdin=b"middle\n")
    assert (result.returncode, result.stdout) == (0, b"piped bytes\nmiddle\npiped bytes\n")
    result = _python_m_daxfs("put", "-", f"{pool}:/", stdin=b"no name")    # a directory needs a name
    assert result.returncode == 1
    assert_one_error_line(result.stderr.decode())
    assert "stdin has no name" in result.stderr.decode()
    assert _names(pool) == ["from-stdin"]


def test_rm_several_and_force(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("/a", "/b", "/c"):
        _write(pool, name, b"x")
    status, _, err = run(capsys, "rm", f"{pool}:/a", f"{pool}:/ghost", f"{pool}:/b")
    assert status == 1
    assert_one_error_line(err)
    assert "/ghost" in err
    assert _names(pool) == ["a", "b", "c"]                  # a bad operand: nothing removed
    assert run(capsys, "rm", "-f", f"{pool}:/a", f"{pool}:/ghost", f"{pool}:/no/dir/x", f"{pool}:/b") == (0, "", "")
    assert _names(pool) == ["c"]
    assert run(capsys, "rm", "-f", f"{pool}:/ghost") == (0, "", "")
    with daxfs.open_volume(pool) as vol:
        vol.mkdir("/t/u", parents=True)
    assert run(capsys, "rm", "-r", f"{pool}:/t", f"{pool}:/t/u", f"{pool}:/c") == (0, "", "")
    assert _names(pool) == []


def test_mkdir_and_rmdir_take_several(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "mkdir", f"{pool}:/a", f"{pool}:/b/c")
    assert status == 1
    assert_one_error_line(err)
    assert "/b/c" in err and "-p" in err
    assert _names(pool) == []                               # /a was not made either
    assert run(capsys, "mkdir", f"{pool}:/a", f"{pool}:/b") == (0, "", "")
    assert run(capsys, "mkdir", "-p", f"{pool}:/a", f"{pool}:/b/c/d", f"{pool}:/e") == (0, "", "")
    assert _names(pool) == ["a", "b", "e"] and _names(pool, "/b/c") == ["d"]
    _write(pool, "/f", b"x")
    status, _, err = run(capsys, "mkdir", "-p", f"{pool}:/f/g")
    assert status == 1 and "/f is not a directory" in err
    for argv, says in ((["rmdir", f"{pool}:/b"], "not empty"), (["rmdir", f"{pool}:/f"], "not a directory"),
                       (["rmdir", pool], "root"), (["rmdir", f"{pool}:/a", f"{pool}:/ghost"], "No such file")):
        status, _, err = run(capsys, *argv)
        assert status == 1, argv
        assert_one_error_line(err)
        assert says in err, (argv, err)
    assert run(capsys, "rmdir", f"{pool}:/b/c/d", f"{pool}:/b/c", f"{pool}:/b", f"{pool}:/a") == (0, "", "")
    assert _names(pool) == ["e", "f"]


def test_put_several_files_into_a_directory(pool: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("one", "two", "three"):
        (scratch / name).write_bytes(name.encode())
    sources = [str(scratch / name) for name in ("one", "two", "three")]
    assert run(capsys, "mkdir", f"{pool}:/d")[0] == 0
    _write(pool, "/file", b"x")
    for argv, says in (([*sources, f"{pool}:/file"], "not a directory"),
                       ([*sources, f"{pool}:/ghost"], "not a directory"),
                       ([sources[0], str(scratch / "absent"), f"{pool}:/d"], "absent"),
                       ([sources[0], str(scratch), f"{pool}:/d"], "is a directory")):
        status, _, err = run(capsys, "put", *argv)
        assert status == 1, argv
        assert_one_error_line(err)
        assert says in err, (argv, err)
    assert _names(pool, "/d") == []                         # nothing copied for a bad command
    assert run(capsys, "put", *sources, f"{pool}:/d") == (0, "", "")
    assert _names(pool, "/d") == ["one", "three", "two"] and _read(pool, "/d/two") == b"two"
    assert run(capsys, "cp", f"{pool}:/d/one", f"{pool}:/d/two", f"{pool}:/") == (0, "", "")
    out_dir = scratch / "out"
    out_dir.mkdir()
    assert run(capsys, "get", f"{pool}:/one", f"{pool}:/d/three", str(out_dir)) == (0, "", "")
    assert sorted(os.listdir(out_dir)) == ["one", "three"]
    status, _, err = run(capsys, "cp", f"{pool}:/one", f"{pool}:/two", str(scratch / "one"))
    assert status == 1 and "not a directory" in err


def test_ls_lh_shows_human_sizes_and_h_is_not_help(pool: str, capsys: pytest.CaptureFixture[str]) -> None:
    from daxfs.adapters.namespacecmds import human_size

    assert [human_size(n) for n in (0, 1023, 1024, 1536, 10 * 1024 - 1, 10 * 1024, 1024 * 1024 - 1, 3 * MiB)] == \
        ["0", "1023", "1.0K", "1.5K", "10K", "10K", "1.0M", "3.0M"]
    _write(pool, "/big", b"x" * (3 * MiB))
    _write(pool, "/small", b"x" * 100)
    status, out, err = run(capsys, "ls", "-lh", pool)
    assert (status, err) == (0, "")
    assert [line.split()[2] for line in out.splitlines()] == ["3.0M", "100"]
    status, out, _ = run(capsys, "ls", "-l", "-h", pool)
    assert [line.split()[2] for line in out.splitlines()] == ["3.0M", "100"]
    status, out, _ = run(capsys, "ls", "--help")
    assert status == 0 and "--human-readable" in out and "example:" in out


def test_mv_and_cp_read_a_bare_destination_alike(pool: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A DST without POOL: is local in both, and an existing directory takes SRC inside it."""
    _write(pool, "/a", b"aaa")
    _write(pool, "/b", b"bbb")
    out_dir = scratch / "out"
    out_dir.mkdir()
    assert run(capsys, "cp", f"{pool}:/a", str(out_dir)) == (0, "", "")
    assert run(capsys, "mv", f"{pool}:/b", str(out_dir)) == (0, "", "")
    assert sorted(os.listdir(out_dir)) == ["a", "b"] and (out_dir / "b").read_bytes() == b"bbb"
    assert _names(pool) == ["a"]                            # mv removed its source
    # back in: into an existing directory of the pool, the name kept
    assert run(capsys, "mkdir", f"{pool}:/d")[0] == 0
    assert run(capsys, "mv", str(out_dir / "b"), f"{pool}:/d") == (0, "", "")
    assert run(capsys, "cp", str(out_dir / "a"), f"{pool}:/d") == (0, "", "")
    assert _names(pool, "/d") == ["a", "b"] and not (out_dir / "b").exists() and (out_dir / "a").exists()
    # between pools: a file moves, a directory does not
    other = str(scratch / "other.pool")
    assert run(capsys, "mkfs", other, "--size", "16M")[0] == 0
    assert run(capsys, "mv", f"{pool}:/d/b", f"{other}:/") == (0, "", "")
    assert _names(other) == ["b"] and _read(other, "/b") == b"bbb" and _names(pool, "/d") == ["a"]
    status, _, err = run(capsys, "mv", f"{pool}:/d", str(out_dir))
    assert status == 1 and "cannot move a directory out of a pool" in err
    status, _, err = run(capsys, "mv", str(out_dir), f"{pool}:/")
    assert status == 1 and "cannot move a directory into a pool" in err
    assert _names(pool, "/d") == ["a"] and out_dir.is_dir()


def test_mv_out_of_a_pool_another_process_writes_copies_nothing(pool: str, scratch: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _write(pool, "/a", b"aaa")
    child = _holder_child(pool, f"vol = daxfs.open_volume({pool!r})")
    try:
        status, _, err = run(capsys, "mv", f"{pool}:/a", str(scratch / "a"))
        assert status == 1
        assert_one_error_line(err)
        assert f"open read-write by process {child.pid}" in err
    finally:
        _end(child)
    assert not (scratch / "a").exists() and _names(pool) == ["a"]


def test_every_command_explains_its_arguments_and_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    (commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    assert {"rmdir", "mkfs", "ls", "cp", "mv", "badblocks"} <= set(commands.choices)
    for name, sub in commands.choices.items():
        assert sub.epilog and f"example:\n  daxfs {name}" in sub.epilog, name
        for action in sub._actions:
            if not action.option_strings:
                assert action.help, f"daxfs {name} {action.metavar}: no help"
        status, out, _ = run(capsys, name, "--help")
        assert status == 0 and out.startswith(f"usage: daxfs {name} ") and "example:" in out, name


@pytest.mark.parametrize("argv, command", [
    (["stat", "p.pool:/a", "extra"], "stat"),
    (["ls", "p.pool", "--bogus"], "ls"),
    (["df", "p.pool", "-x"], "df"),
])
def test_unrecognized_arguments_point_at_the_commands_help(argv: list[str], command: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert_one_error_line(err)
    assert "unrecognized arguments" in err and f"try 'daxfs {command} --help'" in err


def test_mkfs_rounds_the_size_to_whole_blocks_and_says_so(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = scratch / "odd.pool"
    status, out, err = run(capsys, "mkfs", str(path), "--size", str(16 * MiB + 1000), "--block-size", "4096")
    assert (status, err) == (0, "")
    assert os.path.getsize(path) == 16 * MiB
    assert out.splitlines()[-1] == (f"--size {16 * MiB + 1000} was rounded down to {16 * MiB} bytes: "
                                    "a whole number of 4096-byte blocks")
    status, out, _ = run(capsys, "mkfs", str(path), "--size", "16M", "--force")
    assert status == 0 and "rounded" not in out
    status, _, err = run(capsys, "mkfs", str(scratch / "tiny.pool"), "--size", "100")
    assert status == 1 and "less than one block" in err and not (scratch / "tiny.pool").exists()


def test_info_shows_the_sync_mode_a_writer_gets(pool: str, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """info maps the pool read-only, yet reports the pool's mode: on a medium that gives
    MAP_SYNC (played here by a mmap that takes the flag) that is map_sync."""
    import mmap as mmap_module

    from daxfs.media import _file

    real_mmap = mmap_module.mmap
    asked: list[int] = []

    def dax_like_mmap(fd: int, size: int, flags: int = mmap_module.MAP_SHARED, **kwargs: Any) -> Any:
        asked.append(flags)
        return real_mmap(fd, size, flags=mmap_module.MAP_SHARED, **kwargs)

    monkeypatch.setattr(_file.mmap, "mmap", dax_like_mmap)
    status, out, _ = run(capsys, "info", pool)
    assert status == 0
    assert "\nsync_mode:       map_sync\n" in out
    assert asked and asked[0] & _file._MAP_SYNC
