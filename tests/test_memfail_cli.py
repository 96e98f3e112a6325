"""Memory failure from the command line: inject-error, badblocks, df, fsck, get/cp/cat.

The injection path end to end: a volume is open read-write in this process;
``daxfs inject-error`` — run as another process, as an admin would — appends to
the pool's badblocks side file; the volume's watcher acts on it (the holder of
a mapping is told; reads fail with EIO); ``daxfs badblocks`` lists the range
and its owners, ``df`` shows it as Bad, ``fsck`` lists the poisoned files and
exits 1, and ``get``/``cp``/``cat`` fail with the one-line EIO error instead of
copying garbage, leaving no partial copy.  How soon the watcher acts (within a
second) is measured in bench/bench_memfail.py, not asserted here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import daxfs
from daxfs.adapters.cli import main

BS = 4096
DETECT_GUARD_S = 30.0      # a hang guard: the watcher acts within a second (bench_memfail measures it)
SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture
def scratch() -> Iterator[Path]:
    root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    directory = Path(tempfile.mkdtemp(prefix="daxfs-memfail-cli-", dir=root))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def daxfs_process(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "daxfs", *argv], capture_output=True, text=True,
                          timeout=120, env=env)


def test_inject_error_while_open_reaches_every_owner(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = str(scratch / "p.pool")
    data = bytes(range(256)) * 48                      # 3 blocks
    vol = daxfs.mkfs(pool, 32 << 20)
    try:
        with vol.open("/victim", "wb", buffering=0) as f:
            f.write(data)
        vol.clone_file("/victim", "/twin")
        f = vol.open("/victim", "rb", buffering=0)
        bad = f.extents()[0].pool_offset + BS
        told = threading.Event()
        m = f.map(on_poison=lambda _m, off, n: told.set())

        done = daxfs_process("inject-error", pool, hex(bad), "4K")
        assert done.returncode == 0, done.stderr
        assert f"{bad:#x}" in done.stdout and pool + ".badblocks" in done.stdout
        assert told.wait(DETECT_GUARD_S), "the volume never acted on the injected error"
        assert vol.badblocks() == [(bad, BS)] and m.poisoned == [(BS, BS)]
        with pytest.raises(daxfs.PoisonError):
            f.pread(BS, BS)
        assert f.pread(BS, 0) == data[:BS] and f.pread(BS, 2 * BS) == data[2 * BS:]

        status, out, _err = run(capsys, "badblocks", pool)
        assert status == 0
        assert f"{bad:#014x}" in out and "data: 2 owner(s)" in out
        assert f"/victim [{BS}, +{BS})" in out and f"/twin [{BS}, +{BS})" in out
        status, out, _err = run(capsys, "df", pool)
        header, row = (re.split(r"\s{2,}", line.strip()) for line in out.splitlines())
        assert status == 0 and dict(zip(header, row))["Bad"] == "4 KiB"
        status, out, _err = run(capsys, "fsck", pool)
        assert status == 1
        assert f"poisoned: /victim [{BS}, +{BS})" in out and f"poisoned: /twin [{BS}, +{BS})" in out
        assert "2 poisoned file range(s)" in out

        local = scratch / "copy.bin"
        for argv in (["get", f"{pool}:/victim", str(local)], ["cat", f"{pool}:/twin"]):
            status, out, err = run(capsys, *argv)
            assert status == 1 and len(err.splitlines()) == 1 and "poisoned" in err, (argv, err)
        assert not local.exists()
        m.close()
        f.close()
    finally:
        vol.close(force=True, timeout=5)
    # copies inside the pool (they need it writable: now it is closed); poison outlives the mount
    for argv in (["cp", f"{pool}:/victim", f"{pool}:/copy"],
                 ["cp", "--reflink=never", f"{pool}:/victim", f"{pool}:/copy"]):
        status, out, err = run(capsys, *argv)
        assert status == 1 and len(err.splitlines()) == 1 and "poisoned" in err, (argv, err)
        assert "Traceback" not in err
    with daxfs.open_volume(pool) as vol:
        assert vol.badblocks() == [(bad, BS)] and not vol.exists("/copy")


def test_badblocks_lists_metadata_regions_and_orphans(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = str(scratch / "q.pool")
    with daxfs.mkfs(pool, 32 << 20) as vol:
        status, out, _err = run(capsys, "badblocks", pool)
        assert status == 0 and out.strip() == "no bad blocks"
        with vol.open("/gone", "wb", buffering=0) as f:
            f.write(b"g" * BS)
        keep = vol.open("/gone", "rb", buffering=0)
        vol.unlink("/gone")
        vol.memory_failure(keep.extents()[0].pool_offset, BS)
        vol.memory_failure(vol._layout.log_offset + 8 * BS, BS)
        spare = vol._layout.block_offset(vol._layout.data_blocks - 1)
        vol.memory_failure(spare, BS)
        status, out, _err = run(capsys, "badblocks", pool)
        assert status == 0
        lines = out.splitlines()
        assert any(line.endswith(" log") for line in lines)
        assert any("data: 1 owner(s)" in line for line in lines)
        assert any("(orphan, inode" in line for line in lines)
        assert any(line.endswith("data: quarantined, no owner") for line in lines)
        keep.close()


def test_inject_error_bad_input(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = str(scratch / "r.pool")
    daxfs.mkfs(pool, 32 << 20).close()
    for argv in (["inject-error", pool, str(64 << 20)], ["inject-error", pool, "32M", "1"],
                 ["inject-error", str(scratch / "missing.pool"), "0"], ["inject-error", str(scratch), "0"]):
        status, _out, err = run(capsys, *argv)
        assert status == 1 and len(err.splitlines()) == 1 and err.startswith("daxfs: "), (argv, err)
    status, _out, err = run(capsys, "inject-error", pool, "0", "0")
    assert status == 2 and "length" in err
    assert not os.path.exists(pool + ".badblocks")
    status, out, _err = run(capsys, "inject-error", pool, "100", "10")
    assert status == 0 and "rounded out to 512-byte sectors" in out
    with open(pool + ".badblocks") as fh:
        assert fh.read() == "0 1\n"
