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
- ``format_pool`` over a used pool leaves no checkpoint of the old volume to fall back to;
  ``load`` leaves the cyclic collector as it found it.
- ``load`` on pools written by hand (``Crafted``): the ring keeps the log since the older
  checkpoint as its tail (laps on, and with that log exactly filling the ring), unless that
  log is longer than the ring; a damaged newest checkpoint falls back to the other slot
  (the one before, or a newer one whose superblock flip did not land), saying why, and
  the next checkpoint's generation is past the superblock's; slots of other generations
  are refused naming the first; a valid record past a torn one is damage unless a clean
  close is claimed and no owner is named; a bad record stops the state before it, from the
  newest checkpoint when the older one gets no further, saying how many records a repair
  discards.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import os
from pathlib import Path

import pytest

import daxfs
from daxfs.core.records import Record, SetAttr
from daxfs.errors import BusyError, CorruptVolumeError
from daxfs.format.checkpoint import encode_checkpoint, peek_checkpoint
from daxfs.format.layout import HEADER_SIZE, OWNER_OFFSET
from daxfs.format.layout import SUPERBLOCK_OFFSETS
from daxfs.format.log import _frame
from daxfs.format.superblock import CLEAN, SUPERBLOCK_BYTES, Superblock, encode_owner
from daxfs.media import MemoryPool
from daxfs.volume import mount
from daxfs.volume.log import LogRing
from daxfs.volume.mount import describe_openers, format_pool, load, open_pool, openers, read_superblock

from _small_volume import pool_and_volume, write_file

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


# ---------------------------------------------------------------- format_pool and load


def test_a_load_leaves_the_collector_as_it_found_it() -> None:
    pool = _formatted()
    assert gc.isenabled()
    load(pool, check_damage=True)
    assert gc.isenabled()
    gc.disable()
    try:
        load(pool, check_damage=True)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_format_over_a_used_pool_leaves_no_checkpoint_of_the_old_volume() -> None:
    pool, vol = pool_and_volume()
    write_file(vol, "old", b"old")
    vol.checkpoint()
    vol.close()
    lay = read_superblock(pool).layout
    assert all(peek_checkpoint(pool.read(off, 64)) for off in lay.checkpoint_offsets)   # what could stand in
    format_pool(pool)
    assert load(pool, check_damage=True).core.inodes.keys() == {1}
    # the new volume's checkpoint lost: nothing is left to mount (not the old volume's files)
    slot = lay.checkpoint_offsets[read_superblock(pool).checkpoint_slot]
    pool.write(slot + 40, b"\xff")
    with pytest.raises(CorruptVolumeError) as info:
        load(pool, check_damage=True)
    assert info.value.where == slot


def mode(m: int) -> SetAttr:
    """A record that sets the root's permission bits (what a state has replayed shows in them)."""
    return SetAttr(1, m, None, None, None, None, None)


RECORD = 48         # bytes a ``mode`` record takes in the log


class Crafted:
    """A formatted pool whose checkpoints, superblocks and log a test writes by hand, as a
    writer would have left them."""

    def __init__(self, head: int = 0) -> None:
        self.pool = _formatted()
        self.sb = read_superblock(self.pool)
        self.layout = lay = self.sb.layout
        self.vid = int.from_bytes(self.sb.uuid.bytes[:8], "little")
        self.core = load(self.pool, check_damage=True).core          # a fresh volume's state
        self.ring = LogRing(self.pool, lay.log_offset, lay.log_size, self.vid, head=head, tail=head, next_seq=0)
        self.checkpoint(1)                  # (records from 0 on follow it)
        self.superblock(1)

    def log(self, *records: Record) -> None:
        for record in records:
            self.ring.append(record, self.ring.encode(record))
            self.core.apply(record)

    def log_raw(self, data: bytes) -> None:
        """``data`` as the next record (applied by nobody; not across a lap's end, where
        ``append`` would encode its record again)."""
        self.ring.append(mode(0), data)

    def checkpoint(self, generation: int, slot: int | None = None) -> int:
        """The state so far as checkpoint ``generation`` (in its slot); its log position."""
        off = self.layout.checkpoint_offsets[generation % 2 if slot is None else slot]
        self.pool.write(off, encode_checkpoint(self.core.to_checkpoint(), generation, self.ring.next_seq - 1,
                                               self.ring.head))
        return self.ring.head

    def superblock(self, generation: int, flags: int = 0) -> None:
        for off in SUPERBLOCK_OFFSETS:
            self.pool.write(off, Superblock(self.sb.uuid, self.layout, generation, flags=flags).encode())


def _root_mode(loaded: mount.Loaded) -> int:
    return loaded.core.inodes[1].mode & 0o777


@pytest.mark.parametrize(("start", "ring_full"), [
    (0, False),
    (5 * (256 << 10) + 48, False),          # laps later (the log is 256 KiB)
    (128, True),                            # the log since the older checkpoint fills the ring exactly
])
def test_after_a_load_the_ring_keeps_the_log_since_the_older_checkpoint(start: int, ring_full: bool) -> None:
    v = Crafted(head=start)
    assert len(v.ring.encode(mode(0o700))) == RECORD
    older = v.checkpoint(1)
    v.log(mode(0o700), mode(0o710))
    if ring_full:
        v.ring.head = start + v.layout.log_size - 2 * RECORD    # (what lies between: in the newest checkpoint)
    newest = v.checkpoint(2)
    v.log(mode(0o711), mode(0o701))
    v.superblock(2)
    loaded = load(v.pool, check_damage=True)
    assert (loaded.generation, loaded.checkpoint_pos, loaded.fallback, _root_mode(loaded)) == (2, newest, None, 0o701)
    ring = loaded.ring
    assert (ring.head, ring.next_seq) == (v.ring.head, v.ring.next_seq) == (newest + 2 * RECORD, 4)
    assert ring.head - older == (v.layout.log_size if ring_full else ring.head - start)
    # the newest checkpoint's slot may be lost to bad memory: the older one plus the log must
    # still be there, so the ring may not overwrite any of it (full: nothing fits)
    assert ring.tail == older
    assert ring.fits(RECORD) is not ring_full


def test_a_ring_whose_log_since_the_older_checkpoint_is_longer_than_it_keeps_the_newest_one() -> None:
    v = Crafted()
    v.checkpoint(1)
    v.ring.head = v.layout.log_size + 8       # jumped past bad log memory, checkpointed once (then a crash)
    newest = v.checkpoint(2)
    v.log(mode(0o700))
    v.superblock(2)
    ring = load(v.pool, check_damage=True).ring
    assert (ring.head, ring.tail) == (newest + RECORD, newest)
    assert ring.fits(RECORD)


def _damage(v: Crafted, generation: int) -> str:
    """Damage checkpoint ``generation``'s body; what loading it then says."""
    off = v.layout.checkpoint_offsets[generation % 2]
    v.pool.write(off + 60, b"\xff\xff")
    return f"corrupt volume: checkpoint checksum mismatch at pool offset {off:#x}"


def test_the_newest_checkpoint_damaged_the_older_one_and_the_log_after_it_are_used() -> None:
    v = Crafted()
    older = v.checkpoint(1)
    v.log(mode(0o700), mode(0o710))
    v.checkpoint(2)
    v.log(mode(0o711))
    v.superblock(2)
    says = _damage(v, 2)
    loaded = load(v.pool, check_damage=True)
    assert (loaded.checkpoint_pos, _root_mode(loaded), loaded.ring.next_seq) == (older, 0o711, 3)
    assert loaded.fallback == says
    # the next checkpoint (generation 4) is newer than the superblock any follower has seen
    # (2), and goes over the damaged slot, not the one loaded from
    assert loaded.generation == 3
    assert loaded.ring.tail == older


def test_the_newest_checkpoint_damaged_one_whose_superblock_flip_did_not_land_is_used() -> None:
    v = Crafted()
    v.checkpoint(2)
    v.log(mode(0o700), mode(0o710))
    newer = v.checkpoint(3)
    v.log(mode(0o711))
    v.superblock(2)                         # (generation 3 was written, the superblock not yet)
    says = _damage(v, 2)
    loaded = load(v.pool, check_damage=True)
    assert (loaded.checkpoint_pos, _root_mode(loaded), loaded.generation) == (newer, 0o711, 3)
    assert loaded.fallback == says


def test_checkpoints_of_the_wrong_generations_are_not_used_saying_so() -> None:
    v = Crafted()
    v.checkpoint(4, slot=0)
    v.checkpoint(7, slot=1)
    v.superblock(2)
    with pytest.raises(CorruptVolumeError) as info:
        load(v.pool, check_damage=True)
    first, second = v.layout.checkpoint_offsets[:2]
    assert info.value.what == (f"checkpoint slot holds generation 4, superblock wants 2 at pool offset {first:#x} "
                               f"(and the other checkpoint slot holds generation 7, neither 1 nor 3 at pool "
                               f"offset {second:#x})")            # (each slot's fault, the newest's first)
    assert info.value.where == first
    v.checkpoint(1)                         # the other slot holds the one before: used, saying why
    loaded = load(v.pool, check_damage=True)
    assert loaded.fallback == (f"corrupt volume: checkpoint slot holds generation 4, superblock wants 2 "
                               f"at pool offset {v.layout.checkpoint_offsets[0]:#x}")
    v.checkpoint(3)
    other_says = _damage(v, 3)
    says = _damage(v, 2)
    v.checkpoint(2)
    _damage(v, 2)
    with pytest.raises(CorruptVolumeError) as info:     # both damaged: the newest's fault is named
        load(v.pool, check_damage=True)
    prefix = "corrupt volume: "
    assert info.value.strerror == f"{says} (and {other_says[len(prefix):]})"
    assert info.value.where == v.layout.checkpoint_offsets[0]


def _torn_then_valid(v: Crafted) -> None:
    v.log(mode(0o700))
    torn = bytearray(v.ring.encode(mode(0o710)))
    torn[4] ^= 1                            # (in its checksum)
    v.log_raw(bytes(torn))
    v.log_raw(v.ring.encode(mode(0o711)))


def test_a_valid_record_past_a_torn_one_is_damage_unless_a_clean_close_is_believed() -> None:
    v = Crafted()
    _torn_then_valid(v)
    with pytest.raises(CorruptVolumeError) as info:     # no clean close claimed (the owner page lost)
        load(v.pool, check_damage=True)
    assert "log record 1 is unreadable but a later record follows it" in info.value.what
    loaded = load(v.pool, check_damage=False)
    assert (loaded.ring.head, loaded.ring.next_seq, _root_mode(loaded)) == (RECORD, 1, 0o700)
    v.superblock(1, CLEAN)                  # claimed, and no owner: nothing follows the log's end
    loaded = load(v.pool, check_damage=True)
    assert (loaded.ring.head, loaded.ring.next_seq) == (RECORD, 1)
    v.pool.write(OWNER_OFFSET, encode_owner(4321, 1))     # a writer named: the claim is not believed
    with pytest.raises(CorruptVolumeError):
        load(v.pool, check_damage=True)


BAD = "log record 2 has unknown type 99"


def _bad_at(v: Crafted) -> str:
    return f"corrupt volume: {BAD} at pool offset {v.layout.log_offset + 2 * RECORD:#x}"


def _bad_record_at_2(v: Crafted, after: int) -> tuple[int, int]:
    """Records 0, 1, a bad one (2, valid checksum), then ``after`` more; the checkpoints
    (generation 1 before record 0, 2 after it) and their log positions."""
    older = v.checkpoint(1)
    v.log(mode(0o700))
    newest = v.checkpoint(2)
    v.log(mode(0o710))
    v.log_raw(_frame(v.vid, 2, 99, b"\x90"))
    for m in range(after):
        v.log_raw(v.ring.encode(mode(0o600 + m)))
    v.superblock(2)
    return older, newest


@pytest.mark.parametrize("after", [0, 1, 2])
def test_a_bad_record_stops_the_state_before_it_from_the_newest_checkpoint(after: int) -> None:
    v = Crafted()
    older, newest = _bad_record_at_2(v, after)
    loaded = load(v.pool, check_damage=True)
    assert (loaded.bad_seq, loaded.bad_reason) == (2, _bad_at(v))
    assert loaded.bad_record == (f"{_bad_at(v)}; the volume is read-only with the state before it (through record 1); "
                                 f"`daxfs fsck --repair` keeps that state and discards record 2"
                                 + {0: "", 1: " and the 1 after it", 2: " and the 2 after it"}[after])
    # the older checkpoint gets as far: the newest one is used, and nothing calls it damaged
    assert (loaded.checkpoint_pos, loaded.generation, loaded.fallback) == (newest, 2, None)
    assert _root_mode(loaded) == 0o710
    assert (loaded.ring.head, loaded.ring.next_seq, loaded.ring.tail) == (2 * RECORD, 2, older)


def test_a_bad_record_after_a_damaged_newest_checkpoint_says_both() -> None:
    v = Crafted()
    older, _newest = _bad_record_at_2(v, 1)
    says = _damage(v, 2)
    loaded = load(v.pool, check_damage=True)
    assert (loaded.bad_seq, loaded.bad_reason, loaded.fallback) == (2, _bad_at(v), says)
    assert (loaded.checkpoint_pos, loaded.generation, _root_mode(loaded)) == (older, 3, 0o710)
    assert (loaded.ring.head, loaded.ring.next_seq, loaded.ring.tail) == (2 * RECORD, 2, older)


def test_a_superblock_whose_geometry_mkfs_never_makes_is_corrupt_though_its_checksum_holds() -> None:
    # a data area 8 bytes off its block boundary mounted, fsck found nothing, and reads came
    # from the wrong bytes; a log of 8 bytes mounted and every write was ENOSPC
    for change in ({"data_offset": 8}, {"log_size": 8}):
        v = Crafted()
        v.checkpoint(2)
        lay = v.layout
        v.layout = dataclasses.replace(lay, data_offset=lay.data_offset + change.get("data_offset", 0),
                                       data_blocks=lay.data_blocks - 1,
                                       log_size=change.get("log_size", lay.log_size))
        v.superblock(2)
        with pytest.raises(CorruptVolumeError):
            load(v.pool, check_damage=True)
