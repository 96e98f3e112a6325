"""Opening and loading a pool at its edges (found by a mutation run over ``volume/mount.py``):
each test pins down one thing a slip there would get wrong while the volume tests still
passed.

- ``open_pool``: a directory is IsADirectoryError naming it; a file one byte short of the
  header is "too small" naming it, one of exactly the header's size is opened (its
  superblock is for ``load`` to judge).
- ``held_elsewhere`` / ``openers`` / ``describe_openers``: the BusyError names the pool and
  says who holds it, in words; the kernel's lock list is cleaned (pid 0, a process in
  another pid namespace, dropped; each opener once; writers first, then by pid); where that
  list cannot be read the owner page names the writer (in a pool of exactly the header's
  size too), and nothing is named for a pool too short to hold one or with none written.
- ``read_superblock``: a pool too small, or with no superblock at all, says so; one
  damaged copy falls back to the other; with both damaged each one's fault is named (a
  copy of another version first: that is the news); of two copies of the newest
  generation the one that does not claim a clean close wins, whichever slot it is in.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import daxfs
from daxfs.errors import BusyError, CorruptVolumeError
from daxfs.format.layout import HEADER_SIZE, OWNER_OFFSET
from daxfs.format.layout import SUPERBLOCK_OFFSETS
from daxfs.format.superblock import CLEAN, SUPERBLOCK_BYTES, Superblock, encode_owner
from daxfs.media import MemoryPool
from daxfs.volume import mount
from daxfs.volume.mount import describe_openers, format_pool, open_pool, openers, read_superblock

ME = os.getpid()


def test_open_pool_refuses_a_directory_naming_it(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as info:
        open_pool(str(tmp_path), readonly=True)
    assert info.value.errno == errno.EISDIR and info.value.filename == str(tmp_path)


def test_open_pool_refuses_a_file_shorter_than_the_header_and_opens_one_as_long(tmp_path: Path) -> None:
    path = tmp_path / "pool"
    path.write_bytes(bytes(HEADER_SIZE - 1))
    with pytest.raises(CorruptVolumeError) as info:
        open_pool(str(path), readonly=True)
    assert info.value.filename == str(path)
    assert info.value.what == f"not a daxfs volume: {HEADER_SIZE - 1} bytes is too small to hold one"
    path.write_bytes(bytes(HEADER_SIZE))
    with open_pool(str(path), readonly=True) as pool:
        assert pool.size == HEADER_SIZE


def test_a_pool_held_read_write_is_busy_naming_it_and_its_writer(shm_pool: str) -> None:
    with daxfs.open_volume(shm_pool):
        with pytest.raises(BusyError) as info:
            open_pool(shm_pool, readonly=False)
    assert info.value.errno == errno.EBUSY and info.value.filename == shm_pool
    assert info.value.strerror == f"pool is open read-write by process {ME} (this process)"
    assert info.value.holders == [ME]


@pytest.mark.parametrize(("found", "says"), [
    ([], "locked by another opener (one this process cannot see)"),
    ([(ME, True)], f"open read-write by process {ME} (this process)"),
    ([(12, True)], "open read-write by process 12"),
    ([(12, False)], "mapped or pinned by a read-only opener, process 12"),
    ([(12, False), (ME, False)],
     f"mapped or pinned by read-only openers: process 12, process {ME} (this process)"),
    ([(7, True), (12, False), (13, False)],
     "open read-write by process 7; mapped or pinned by read-only openers: process 12, process 13"),
    ([(7, True), (12, False)], "open read-write by process 7; mapped or pinned by a read-only opener, process 12"),
])
def test_describe_openers(found: list[tuple[int, bool]], says: str) -> None:
    assert describe_openers(found) == says


def test_openers_cleans_the_lock_list(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = [(7, False), (0, True), (5, False), (9, True), (7, False), (1, False), (3, True), (0, False)]
    monkeypatch.setattr(mount, "flock_holders", lambda path: list(listed))
    assert openers("/nowhere") == [(3, True), (9, True), (1, False), (5, False), (7, False)]
    monkeypatch.setattr(mount, "flock_holders", lambda path: [])
    assert openers("/nowhere") == []


def test_without_a_lock_list_the_owner_page_names_the_writer(shm_pool: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mount, "flock_holders", lambda path: None)
    assert openers(shm_pool) == []                  # closed cleanly: no owner
    with daxfs.open_volume(shm_pool):
        assert openers(shm_pool) == [(ME, True)]
        with pytest.raises(BusyError) as info:
            open_pool(shm_pool, readonly=False)
        assert info.value.strerror == f"pool is open read-write by process {ME} (this process)"
    assert openers(shm_pool) == []
    # a pool of just the header, its owner page written: that pid; one byte short: nobody
    raw = bytearray(HEADER_SIZE)
    raw[OWNER_OFFSET:OWNER_OFFSET + 16] = encode_owner(4321, 1)
    path = tmp_path / "pool"
    path.write_bytes(bytes(raw))
    assert openers(str(path)) == [(4321, True)]
    path.write_bytes(bytes(raw[:-1]))
    assert openers(str(path)) == []
    assert openers(str(tmp_path / "missing")) == []


# ---------------------------------------------------------------- read_superblock


def _formatted(size: int = 4 << 20) -> MemoryPool:
    pool = MemoryPool(size)
    format_pool(pool)
    return pool


def test_read_superblock_of_a_pool_too_small_or_blank() -> None:
    with pytest.raises(CorruptVolumeError) as info:
        read_superblock(MemoryPool(HEADER_SIZE - 1))
    assert info.value.what == f"not a daxfs volume: {HEADER_SIZE - 1} bytes is too small to hold one"
    with pytest.raises(CorruptVolumeError) as info:
        read_superblock(MemoryPool(HEADER_SIZE))
    assert info.value.what == "not a daxfs volume (no superblock found)"


@pytest.mark.parametrize("damaged", [0, 1])
def test_one_damaged_superblock_copy_falls_back_to_the_other(damaged: int) -> None:
    pool = _formatted()
    sb = read_superblock(pool)
    off = SUPERBLOCK_OFFSETS[damaged]
    pool.write(off + 20, b"\xff")                       # (in the uuid: the crc no longer matches)
    assert read_superblock(pool) == sb
    pool.write(SUPERBLOCK_OFFSETS[1 - damaged], bytes(SUPERBLOCK_BYTES))   # and the other gone
    with pytest.raises(CorruptVolumeError) as info:
        read_superblock(pool)
    assert info.value.what == "both superblocks are damaged: " + "; ".join(
        ["superblock checksum mismatch", "not a daxfs superblock (bad magic)"][::1 if damaged == 0 else -1])


def test_a_copy_of_another_version_is_named_over_a_damaged_one() -> None:
    pool = _formatted()
    sb = read_superblock(pool)
    pool.write(SUPERBLOCK_OFFSETS[1], Superblock(sb.uuid, sb.layout, sb.generation, version=7).encode())
    assert read_superblock(pool) == sb                  # the good copy still wins
    pool.write(SUPERBLOCK_OFFSETS[0] + 20, b"\xff")
    with pytest.raises(CorruptVolumeError) as info:
        read_superblock(pool)
    assert info.value.what == "unsupported volume version 7 (this daxfs reads 1)"
    assert info.value.where == SUPERBLOCK_OFFSETS[1]


@pytest.mark.parametrize("clean_at", [0, 1])
def test_of_two_copies_as_new_the_one_not_claiming_a_clean_close_wins(clean_at: int) -> None:
    pool = _formatted()
    sb = read_superblock(pool)
    newer = Superblock(sb.uuid, sb.layout, sb.generation + 1)
    pool.write(SUPERBLOCK_OFFSETS[clean_at], newer.with_flags(CLEAN).encode())
    pool.write(SUPERBLOCK_OFFSETS[1 - clean_at], newer.encode())
    assert read_superblock(pool) == newer
    pool.write(SUPERBLOCK_OFFSETS[1 - clean_at], sb.with_flags(0).encode())    # an older one: the newest wins
    assert read_superblock(pool) == newer.with_flags(CLEAN)
