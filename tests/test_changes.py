"""The change counters (``Journal.changes``, ``Journal._touched``): every inode a record changes
is bumped before it applies.

An arbiter client reads file data straight from the pool with the extents it was last given
and trusts them while its inode's counter stays the same (``volume/changes.py``): an inode a
change touches and the counter misses would let a client read blocks the file no longer owns
— another file's bytes.  Each operation here is checked for exactly the inodes it bumps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from daxfs.volume import Volume
from daxfs.volume.changes import ChangeTable

from _small_volume import small_volume, write_file

BS = 4096


def _bumped(vol: Volume, op: Callable[[], object]) -> set[str]:
    """The names (as of before ``op``) of the inodes whose counters ``op`` moved."""
    table = vol._journal.changes
    assert table is not None
    names = {vol.lstat(p).st_ino: p for p in _paths(vol)}
    before = {ino: table.get(ino) for ino in names}
    op()
    for p in _paths(vol):                       # (new inodes: theirs start at 0)
        names.setdefault(vol.lstat(p).st_ino, p)
    return {names[ino] for ino in names if table.get(ino) != before.get(ino, 0)}


def _paths(vol: Volume) -> list[str]:
    out = ["/"]
    for path in out:
        if vol.lstat(path).st_mode & 0o040000:
            out += [path.rstrip("/") + "/" + name for name in vol.listdir(path)]
    return out


@pytest.fixture()
def vol() -> Iterator[Volume]:
    vol = small_volume()
    vol._journal.changes = ChangeTable()
    vol.mkdir("/d")
    vol.mkdir("/e")
    write_file(vol, "/d/f", b"f" * 2 * BS)
    write_file(vol, "/e/h", b"h" * BS)
    yield vol
    vol._journal.changes.close()
    vol._journal.changes = None
    vol.close()


def _write(vol: Volume, path: str, data: bytes, offset: int = 0) -> None:
    with vol.open(path, "r+b", buffering=0) as f:
        f.pwrite(data, offset)


_CASES: list[tuple[str, Callable[[Volume], object], set[str]]] = [
    ("create", lambda v: write_file(v, "/d/new", b""), {"/d", "/d/new"}),
    ("mkdir", lambda v: v.mkdir("/d/sub"), {"/d", "/d/sub"}),
    ("symlink", lambda v: v.symlink("/d/f", "/e/ln"), {"/e", "/e/ln"}),
    ("write growing", lambda v: _write(v, "/d/f", b"x" * BS, 2 * BS), {"/d/f"}),
    ("truncate", lambda v: v.truncate("/d/f", 10), {"/d/f"}),
    ("chmod", lambda v: v.chmod("/d/f", 0o600), {"/d/f"}),
    ("link", lambda v: v.link("/d/f", "/e/f2"), {"/e", "/d/f"}),
    ("unlink", lambda v: v.unlink("/d/f"), {"/d", "/d/f"}),
    ("rename", lambda v: v.rename("/d/f", "/e/g"), {"/d", "/e", "/d/f"}),
    ("rename over", lambda v: v.rename("/d/f", "/e/h"), {"/d", "/e", "/d/f", "/e/h"}),
    ("rmdir", lambda v: (v.unlink("/d/f"), v.rmdir("/d")), {"/", "/d", "/d/f"}),
    ("clone_file to a new name", lambda v: v.clone_file("/d/f", "/e/c"), {"/e", "/e/c"}),
    ("clone_file over", lambda v: v.clone_file("/d/f", "/e/h"), {"/e/h"}),
    ("memory failure of a shared block",
     lambda v: (v.clone_file("/d/f", "/e/c"),
                v.memory_failure(v.open("/d/f", "rb").extents()[0].pool_offset, BS)),
     {"/e", "/e/c", "/d/f"}),
]


@pytest.mark.parametrize("name, op, touched", _CASES, ids=[c[0] for c in _CASES])
def test_each_change_bumps_exactly_the_inodes_it_touches(
        vol: Volume, name: str, op: Callable[[Volume], object], touched: set[str]) -> None:
    assert _bumped(vol, lambda: op(vol)) == touched


def test_an_orphan_freed_at_its_last_close_is_bumped(vol: Volume) -> None:
    f = vol.open("/d/f", "rb")
    ino = f.stat().st_ino
    vol.unlink("/d/f")
    table = vol._journal.changes
    assert table is not None
    before = table.get(ino)
    f.close()                                   # its blocks are freed now
    assert table.get(ino) != before
