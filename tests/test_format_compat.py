"""The on-pool format is kept: a pool image made by an earlier daxfs mounts, replays its log
and holds exactly what it held; and this code builds the same volume from the same calls.

``data/format-v1.pool.gz`` was made by ``data/make_format_v1_pool.py`` with the code of
2026-11-22 (before the volume was split into modules), taken while the volume was still
open, so mount replays a log tail (a clone, a copy-on-write, a punch, a rename) after the
checkpoint.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import stat
from pathlib import Path

import daxfs
from daxfs.media import MemoryPool
from daxfs.testing import snapshot
from daxfs.volume import Volume

DATA = Path(__file__).parent / "data"
BS = 4096


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_format_v1_pool", DATA / "make_format_v1_pool.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _old_image() -> bytes:
    with gzip.open(DATA / "format-v1.pool.gz", "rb") as f:
        return f.read()


def test_old_image_mounts_clean_and_holds_what_it_was_given() -> None:
    gen = _generator()
    vol = Volume.mount(MemoryPool(_old_image()))
    assert vol.fsck() == []
    tree = snapshot(vol)
    assert sorted(tree) == ["/", "/clone", "/d", "/d/e", "/d/e/big", "/d/small", "/d/sparse", "/hard"]
    big = gen.pattern(5 * BS + 123, 1)
    assert tree["/d/e/big"][3] == bytes(BS) + big[BS:]
    assert tree["/clone"][3] == big[:BS] + b"COW" + big[BS + 3:]
    assert tree["/d/small"][:4] == ("file", 0o640, 2, b"hello, format\n")
    assert tree["/hard"] == tree["/d/small"]
    assert tree["/d/sparse"][3] == bytes(20 * BS) + b"tail"
    assert vol.stat("/d/small").st_mtime_ns == 2_000_000_000
    with vol.open("/d/sparse", "rb", buffering=0) as f:
        assert any("unwritten" in e.flags for e in f.extents())
    with vol.open("/clone", "rb", buffering=0) as f:
        flags = [e.flags for e in f.extents()]
    assert any("shared" in fl for fl in flags) and any("shared" not in fl for fl in flags)


def test_this_code_builds_the_same_volume_from_the_same_calls() -> None:
    # (timestamps differ: the image was made on another day)
    old = snapshot(Volume.mount(MemoryPool(_old_image())), times=False)
    new = snapshot(Volume.mount(MemoryPool(_generator().build())), times=False)
    assert new == old


def test_old_image_takes_new_changes_and_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "old.pool"
    path.write_bytes(_old_image())
    with daxfs.open_volume(path) as vol:           # replays the log, reclaims nothing, checkpoints at close
        with vol.open("/d/small", "ab", buffering=0) as f:
            f.write(b"more\n")
        vol.unlink("/clone")
        vol.mkdir("/new", 0o700)
    with daxfs.open_volume(path, readonly=True) as vol:
        assert vol.fsck() == []
        assert vol.listdir("/") == ["d", "hard", "new"]
        with vol.open("/hard", "rb", buffering=0) as f:
            assert f.read() == b"hello, format\nmore\n"
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(vol.stat("/new").st_mode) == 0o700 & ~umask
