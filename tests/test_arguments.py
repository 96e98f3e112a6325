"""Arguments are taken as ``os`` takes them, and a bad one never reaches the log.

Every public method's every numeric argument is given a float, a string, None, a numpy
integer, a bool, a negative number and 2**64.  The outcome class (success, TypeError,
ValueError, OverflowError, OSError) must be the one the ``os``/``io`` counterpart gives
on tmpfs, where there is one; where there is none (pins, mappings, clones) the expected
class is written down.  After every call, accepted or not:

- the live volume's fsck is clean;
- the pool as a kill -9 would leave it right then (a copy of the /dev/shm file: every store
  is in it, nothing was closed) mounts, fsck is clean, and it holds what the live volume shows
  (the unrelated /keep included);
- a clean close and remount shows the same again.

A few cases are also run with a real SIGKILL right after the rejected call.
"""

from __future__ import annotations

import io
import mmap
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import daxfs
from daxfs.testing import snapshot

BS = 4096
SIZE = 10_000
VALUES = [1.5, "1", None, np.int64(3), True, -1, 2**64]
VALUE_IDS = ["float", "str", "None", "np.int64", "bool", "negative", "2**64"]

OK, TYPE, VALUE, OVERFLOW, OS = "ok", "TypeError", "ValueError", "OverflowError", "OSError"
# What an offset- or length-like argument gives where no os call has the same meaning.
NONNEG = dict(zip(VALUE_IDS, [TYPE, TYPE, TYPE, OK, OK, OS, OVERFLOW]))


def _raise(exc: type[BaseException]) -> None:
    raise exc()


def outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except TypeError:
        return TYPE
    except OverflowError:
        return OVERFLOW
    except OSError:
        return OS
    except ValueError:
        return VALUE
    return OK


class Reference:
    """A tmpfs file (and a second one) shaped like the daxfs ones, for the os side."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "f"
        self.path.write_bytes(b"r" * SIZE)
        (root / "g").write_bytes(b"s" * SIZE)
        self.fd = os.open(self.path, os.O_RDWR)
        self.fd2 = os.open(root / "g", os.O_RDWR)
        self.fio = io.FileIO(os.open(self.path, os.O_RDWR), "r+")

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.fd2)
        self.fio.close()


# (name, daxfs call, os call or the expected outcome per value id)
Case = tuple[str, Callable[..., Any], Any]

FILE_CASES: list[Case] = [
    ("pread.n", lambda v, f, g, m, vol: f.pread(v, 0), lambda v, r: os.pread(r.fd, v, 0)),
    ("pread.offset", lambda v, f, g, m, vol: f.pread(4, v), lambda v, r: os.pread(r.fd, 4, v)),
    # (os.preadv would read at the current position for -1: preadv2's rule, not pread's)
    ("preadinto.offset", lambda v, f, g, m, vol: f.preadinto(bytearray(4), v), lambda v, r: os.pread(r.fd, 4, v)),
    ("pwrite.offset", lambda v, f, g, m, vol: f.pwrite(b"x", v), lambda v, r: os.pwrite(r.fd, b"x", v)),
    ("read.n", lambda v, f, g, m, vol: f.read(v), lambda v, r: r.fio.read(v)),
    ("seek.offset", lambda v, f, g, m, vol: f.seek(v), lambda v, r: r.fio.seek(v)),
    ("seek.whence", lambda v, f, g, m, vol: f.seek(0, v), lambda v, r: r.fio.seek(0, v)),
    ("truncate.size", lambda v, f, g, m, vol: f.truncate(v), lambda v, r: r.fio.truncate(v)),
    ("fallocate.offset", lambda v, f, g, m, vol: f.fallocate(v, 10), lambda v, r: os.posix_fallocate(r.fd, v, 10)),
    ("fallocate.length", lambda v, f, g, m, vol: f.fallocate(0, v), lambda v, r: os.posix_fallocate(r.fd, 0, v)),
    # no os call punches or zeroes; posix_fallocate takes the same (offset, length)
    ("punch_hole.offset", lambda v, f, g, m, vol: f.punch_hole(v, 10), lambda v, r: os.posix_fallocate(r.fd, v, 10)),
    ("punch_hole.length", lambda v, f, g, m, vol: f.punch_hole(0, v), lambda v, r: os.posix_fallocate(r.fd, 0, v)),
    ("zero_range.offset", lambda v, f, g, m, vol: f.zero_range(v, 10), lambda v, r: os.posix_fallocate(r.fd, v, 10)),
    ("zero_range.length", lambda v, f, g, m, vol: f.zero_range(0, v), lambda v, r: os.posix_fallocate(r.fd, 0, v)),
    # mmap's offsets must be page-aligned and daxfs's need not, so these are written down;
    # a pin must lie inside the file (ValueError past its end)
    # negative is ValueError (as mmap); beyond the largest file EINVAL
    ("map.offset", lambda v, f, g, m, vol: f.map(v, 10).close(), {**NONNEG, "negative": VALUE, "2**64": OS}),
    ("map.length", lambda v, f, g, m, vol: f.map(0, v).close(),
     {**NONNEG, "None": OK, "negative": VALUE, "2**64": OS}),
    ("pin.offset", lambda v, f, g, m, vol: f.pin(v, 10).release(), {**NONNEG, "negative": VALUE, "2**64": VALUE}),
    ("pin.length", lambda v, f, g, m, vol: f.pin(0, v).release(), {**NONNEG, "negative": VALUE, "2**64": VALUE}),
    ("mapping.persist.offset", lambda v, f, g, m, vol: m.persist(v, 1),
     {**NONNEG, "negative": VALUE, "2**64": VALUE}),
    ("mapping.persist.length", lambda v, f, g, m, vol: m.persist(0, v),
     {**NONNEG, "None": OK, "negative": VALUE, "2**64": VALUE}),
    ("mapping.array.offset", lambda v, f, g, m, vol: m.array("u1", None, v),
     {**NONNEG, "negative": VALUE, "2**64": VALUE}),
]

VOLUME_CASES: list[Case] = [
    ("mkdir.mode", lambda v, f, g, m, vol: vol.mkdir("/n", v), lambda v, r: os.mkdir(r.root / f"n{uuid.uuid4().hex}", v)),
    ("chmod.mode", lambda v, f, g, m, vol: vol.chmod("/f", v), lambda v, r: os.chmod(r.path, v)),
    ("chown.uid", lambda v, f, g, m, vol: vol.chown("/f", v, -1), lambda v, r: os.chown(r.path, v, -1)),
    ("chown.gid", lambda v, f, g, m, vol: vol.chown("/f", -1, v), lambda v, r: os.chown(r.path, -1, v)),
    ("utime.ns", lambda v, f, g, m, vol: vol.utime("/f", ns=(v, v)), lambda v, r: os.utime(r.path, ns=(v, v))),
    # os takes None as "the file's position"; daxfs's offsets are required, so those are TypeError
    ("copy_file_range.src_offset", lambda v, f, g, m, vol: vol.copy_file_range(f, v, g, 0, 10),
     lambda v, r: os.copy_file_range(r.fd, r.fd2, 10, 0 if v is None else v, 0) if v is not None else _raise(TypeError)),
    ("copy_file_range.dst_offset", lambda v, f, g, m, vol: vol.copy_file_range(f, 0, g, v, 10),
     lambda v, r: os.copy_file_range(r.fd, r.fd2, 10, 0, v) if v is not None else _raise(TypeError)),
    # os takes the length as size_t (a negative one is OverflowError there); daxfs says EINVAL
    ("copy_file_range.length", lambda v, f, g, m, vol: vol.copy_file_range(f, 0, g, 0, v), NONNEG),
    ("clone_range.src_offset", lambda v, f, g, m, vol: vol.clone_range(f, v, g, 0, BS), NONNEG | {"np.int64": OS, "bool": OS}),
    ("clone_range.dst_offset", lambda v, f, g, m, vol: vol.clone_range(f, 0, g, v, BS), NONNEG | {"np.int64": OS, "bool": OS}),
    ("clone_range.length", lambda v, f, g, m, vol: vol.clone_range(f, 0, g, 0, v), NONNEG | {"np.int64": OS, "bool": OS}),
    ("dedupe_range.src_offset", lambda v, f, g, m, vol: vol.dedupe_range(f, v, g, 0, BS),
     NONNEG | {"np.int64": OS, "bool": OS}),
    ("dedupe_range.length", lambda v, f, g, m, vol: vol.dedupe_range(f, 0, g, 0, v), NONNEG),
    ("owners.pool_offset", lambda v, f, g, m, vol: vol.owners(v, 1), NONNEG | {"negative": VALUE, "2**64": OK}),
    ("owners.length", lambda v, f, g, m, vol: vol.owners(0, v), NONNEG | {"negative": VALUE, "2**64": OK}),
]
# Where a value passes conversion but not the operation's own rule, the rule's error is expected:
# clone offsets and lengths must be block multiples (3 and 1 are not: EINVAL), dedupe offsets too.


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    root = Path(f"/dev/shm/daxfs-args-{uuid.uuid4().hex}")
    root.mkdir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _build(root: Path) -> tuple[daxfs.Volume, Any, Any, Any]:
    vol = daxfs.mkfs(str(root / "pool"), 16 << 20)
    with vol.open("/keep", "wb", buffering=0) as k:
        k.write(b"keep me" * 1000)
    f = vol.open("/f", "w+b", buffering=0)
    f.write(b"a" * SIZE)
    g = vol.open("/g", "w+b", buffering=0)
    g.write(b"b" * SIZE)
    with vol.open("/m", "w+b", buffering=0) as h:
        m = h.map(0, SIZE, write=True)      # a live write mapping, kept through the call
    return vol, f, g, m


def _check_after(root: Path, vol: daxfs.Volume, handles: tuple[Any, ...]) -> None:
    assert vol.fsck() == []
    live = snapshot(vol)
    assert live["/keep"][3] == b"keep me" * 1000
    # what a kill -9 right now would leave: every store is in the tmpfs file, nothing closed
    shutil.copyfile(root / "pool", root / "crashed")
    with daxfs.open_volume(str(root / "crashed")) as crashed:
        assert crashed.fsck() == []
        assert snapshot(crashed) == live
    for h in handles:
        h.close()
    vol.close()
    with daxfs.open_volume(str(root / "pool")) as again:
        assert again.fsck() == []
        assert snapshot(again) == live


@pytest.mark.parametrize("value", VALUES, ids=VALUE_IDS)
@pytest.mark.parametrize("case", FILE_CASES + VOLUME_CASES, ids=lambda c: c[0])
def test_argument_outcome_matches_os_and_the_volume_survives(case: Case, value: object, shm_dir: Path) -> None:
    name, dax_call, expected = case
    value_id = VALUE_IDS[[id(v) for v in VALUES].index(id(value))]
    if callable(expected):
        ref = Reference(shm_dir)
        try:
            want = outcome(lambda: expected(value, ref))
        finally:
            ref.close()
    else:
        want = expected[value_id]
    vol, f, g, m = _build(shm_dir)
    got = outcome(lambda: dax_call(value, f, g, m, vol))
    assert got == want, f"{name}({value!r}): daxfs gave {got}, expected {want}"
    _check_after(shm_dir, vol, (m, f, g))


def test_float_truncate_changes_nothing(shm_dir: Path) -> None:
    """The issue's first report: truncate(4096.5) recorded a float and lost the volume."""
    vol, f, g, m = _build(shm_dir)
    before = snapshot(vol)
    for bad in (4096.5, 20000.5, "4096", [1]):
        with pytest.raises(TypeError):
            f.truncate(bad)
    assert snapshot(vol) == before and f.stat().st_size == SIZE
    _check_after(shm_dir, vol, (m, f, g))


def test_numpy_integers_work_everywhere_os_takes_them(shm_dir: Path) -> None:
    vol, f, g, m = _build(shm_dir)
    i = np.int64
    assert f.pwrite(b"xyz", i(5)) == 3
    assert f.pread(i(3), i(5)) == b"xyz"
    f.fallocate(i(SIZE), i(BS))
    f.zero_range(i(0), i(2))
    f.punch_hole(i(BS), i(BS))
    assert f.seek(i(7)) == 7 and isinstance(f.tell(), int)
    assert f.truncate(i(SIZE)) == SIZE and type(f.truncate(i(SIZE))) is int
    vol.chmod("/f", np.int32(0o600))
    vol.mkdir("/d", np.int16(0o750))
    assert vol.copy_file_range(f, i(0), g, i(0), i(10)) == 10
    assert vol.clone_range(f, i(0), g, i(0), i(BS)) == BS
    with f.map(i(0), i(BS)) as view:
        assert bytes(view.buffer[:2]) == bytes(2)
    with f.pin(i(0), np.uint16(BS)) as p:
        assert p.segments[0][0] == 0
    stored = vol.stat("/f")
    assert type(stored.st_size) is int and type(stored.st_mode) is int
    _check_after(shm_dir, vol, (m, f, g))


def test_utime_takes_and_clamps_like_os(shm_dir: Path) -> None:
    vol, f, g, m = _build(shm_dir)
    with pytest.raises(TypeError):
        vol.utime("/f", ns=(1,))
    with pytest.raises(TypeError):
        vol.utime("/f", ns=[1, 2])
    with pytest.raises(TypeError):
        vol.utime("/f", ns=(1.5, 2))
    vol.utime("/f", ns=(2**70, -(2**70)))          # os accepts these; Linux clamps to the fs range
    s = vol.stat("/f")
    assert (s.st_atime_ns, s.st_mtime_ns) == (2**63 - 1, -(2**63))
    with pytest.raises(OverflowError):
        vol.utime("/f", ns=(2**100, 0))            # beyond time_t, as os.utime
    _check_after(shm_dir, vol, (m, f, g))


_KILLED_AFTER = textwrap.dedent("""
    import os, signal, sys
    import daxfs
    pool, call = sys.argv[1], sys.argv[2]
    vol = daxfs.open_volume(pool)
    f = vol.open("/f", "r+b", buffering=0)
    try:
        eval(call, {"f": f, "vol": vol})
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    else:
        sys.exit(3)          # the call was meant to be refused
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("call", [
    "f.truncate(4096.5)", "f.truncate(20000.5)", "f.pwrite(b'x', 1.5)", "f.fallocate(1.5, 10)",
    "f.punch_hole(0, '10')", "f.zero_range(None, 10)", "vol.chmod('/f', 1.5)", "vol.utime('/f', ns=(1,))",
    "vol.clone_range(f, 0, f, 2**64, 4096)", "f.pwrite(b'x', 2**64)", "f.truncate(-1)",
    "vol.mkdir('/x', 'rwx')",
])
def test_kill_9_right_after_a_rejected_call_leaves_a_clean_pool(call: str, shm_dir: Path) -> None:
    vol, f, g, m = _build(shm_dir)
    m.close()
    f.close()
    g.close()
    vol.close()
    with daxfs.open_volume(str(shm_dir / "pool")) as before_vol:
        before = snapshot(before_vol)
    child = subprocess.run([sys.executable, "-c", _KILLED_AFTER, str(shm_dir / "pool"), call],
                           capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    with daxfs.open_volume(str(shm_dir / "pool")) as after:
        assert after.fsck() == []
        assert snapshot(after) == before


def test_open_and_volume_options_are_checked(shm_dir: Path) -> None:
    path = str(shm_dir / "pool")
    daxfs.mkfs(path, 16 << 20).close()
    with pytest.raises(TypeError):
        daxfs.open_volume(path, lease_break_s="1")
    with pytest.raises(ValueError):
        daxfs.open_volume(path, lease_break_s=-1)
    with pytest.raises(TypeError):
        daxfs.mkfs(str(shm_dir / "p2"), 16.5 * (1 << 20))
    assert not os.path.exists(shm_dir / "p2")
    with daxfs.open_volume(path) as vol:
        with pytest.raises(TypeError):
            vol.open("/f", b"wb")                     # mode must be str, as open()
        with pytest.raises(TypeError):
            vol.close(timeout="1")
        assert vol.listdir("/") == []
    _ = mmap  # mmap semantics are the model for map(): see the cases above
