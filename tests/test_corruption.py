"""Bad pools: every malformed input gives CorruptVolumeError (or a clean fallback), never
another exception type, never a hang, and never a silent loss of what was durable.

Covers: a foreign file, an empty or tiny file, a pool of another version, a truncated pool,
random bytes over one or both superblocks, a torn log tail, damage in the middle of the log,
a checkpoint with a bad checksum (falls back to the other slot plus the log), and a fuzz of
random byte damage anywhere in the metadata area.
"""

from __future__ import annotations

import os
import random
import struct
import uuid
import zlib
from collections.abc import Iterator

import pytest

import daxfs
from daxfs.format.superblock import SUPERBLOCK_BYTES
from daxfs.media import MemoryPool
from daxfs.testing import snapshot
from daxfs.volume import Volume

POOL = 4 << 20


@pytest.fixture
def pool_path() -> Iterator[str]:
    path = f"/dev/shm/daxfs-test-{uuid.uuid4().hex}.pool"
    yield path
    if os.path.exists(path):
        os.unlink(path)


def _memory_volume() -> tuple[MemoryPool, Volume]:
    pool = MemoryPool(POOL)
    Volume.format(pool)
    return pool, Volume.mount(pool)


def _populate(vol: Volume, tag: str, n: int = 5) -> None:
    vol.mkdir(f"/{tag}", exist_ok=True)
    for i in range(n):
        with vol.open(f"/{tag}/f{i}", "wb", buffering=0) as f:
            f.write(f"{tag}-{i}".encode() * (100 * (i + 1)))


def _mount_image(image: bytes) -> Volume:
    return Volume.mount(MemoryPool(image))


def test_foreign_file(pool_path: str) -> None:
    with open(pool_path, "wb") as fh:
        fh.write(random.Random(1).randbytes(POOL))
    with pytest.raises(daxfs.CorruptVolumeError, match="not a daxfs volume"):
        daxfs.open_volume(pool_path)


@pytest.mark.parametrize("size", [0, 1, 100, 4096])
def test_empty_or_tiny_file(pool_path: str, size: int) -> None:
    with open(pool_path, "wb") as fh:
        fh.write(b"x" * size)
    with pytest.raises(daxfs.CorruptVolumeError) as info:
        daxfs.open_volume(pool_path)
    assert info.value.errno is not None


def _rewrite_superblocks(raw: bytearray, **fields: int) -> None:
    """Change superblock fields in both copies and re-checksum them (a well-formed foreign pool)."""
    layout = struct.Struct("<8sII16sIIQQQQQQQQQ")
    names = ["magic", "version", "flags", "uuid", "block_size", "pad", "pool_size", "log_offset",
             "log_size", "ckpt_a", "ckpt_b", "ckpt_size", "data_offset", "data_blocks", "generation"]
    for off in (0, 4096):
        values = dict(zip(names, layout.unpack_from(raw, off)))
        values.update(fields)
        body = layout.pack(*(values[n] for n in names))
        raw[off:off + len(body)] = body
        raw[off + len(body):off + len(body) + 4] = zlib.crc32(body).to_bytes(4, "little")


def test_other_version(pool_path: str) -> None:
    daxfs.mkfs(pool_path, POOL).close()
    with open(pool_path, "r+b") as fh:
        raw = bytearray(fh.read())
        _rewrite_superblocks(raw, version=99)
        fh.seek(0)
        fh.write(raw)
    with pytest.raises(daxfs.CorruptVolumeError, match="version 99"):
        daxfs.open_volume(pool_path)


def test_truncated_pool(pool_path: str) -> None:
    vol = daxfs.mkfs(pool_path, POOL)
    _populate(vol, "t")
    vol.close()
    os.truncate(pool_path, POOL // 2)
    with pytest.raises(daxfs.CorruptVolumeError, match="truncated"):
        daxfs.open_volume(pool_path)


def test_random_bytes_over_one_superblock_fall_back_to_the_other() -> None:
    pool, vol = _memory_volume()
    _populate(vol, "a")
    expected = snapshot(vol)
    image = bytearray(pool.image())
    for off in (0, 4096):
        damaged = bytearray(image)
        damaged[off:off + SUPERBLOCK_BYTES] = random.Random(off).randbytes(SUPERBLOCK_BYTES)
        after = _mount_image(bytes(damaged))
        assert snapshot(after) == expected
        assert after.fsck() == []
        after.close()
    vol.close()


def test_random_bytes_over_both_superblocks() -> None:
    pool, vol = _memory_volume()
    image = bytearray(pool.image())
    image[0:8192] = random.Random(7).randbytes(8192)
    with pytest.raises(daxfs.CorruptVolumeError):
        _mount_image(bytes(image))
    image[0:8192] = bytes(8192)
    with pytest.raises(daxfs.CorruptVolumeError, match="not a daxfs volume"):
        _mount_image(bytes(image))
    vol.close()


def test_torn_log_tail_loses_only_the_torn_record() -> None:
    pool, vol = _memory_volume()
    _populate(vol, "a")
    expected = snapshot(vol)
    ring = vol._ring
    start = ring.head
    vol.mkdir("/last")                       # one record, the last in the log
    end = ring.head
    assert end > start
    for cut in range(8, end - start, 8):
        image = bytearray(pool.image())
        phys = ring.offset + start % ring.size
        image[phys + cut:phys + (end - start)] = bytes(end - start - cut)   # only a prefix landed
        after = _mount_image(bytes(image))
        assert snapshot(after) == expected   # every earlier operation, not the torn one
        assert after.fsck() == []
        after.close()
    vol.close()


def test_damage_inside_the_log_is_reported() -> None:
    pool, vol = _memory_volume()
    ring = vol._ring
    start = ring.head
    vol.mkdir("/first")
    middle = ring.head
    _populate(vol, "later")
    image = bytearray(pool.image())
    phys = ring.offset + (start + middle) // 2 % ring.size
    image[phys] ^= 0xFF                      # a bit flip in a record that has successors
    with pytest.raises(daxfs.CorruptVolumeError, match="later record"):
        _mount_image(bytes(image))
    vol.close()


def test_bad_checkpoint_falls_back_to_the_older_one_and_loses_nothing() -> None:
    pool, vol = _memory_volume()
    _populate(vol, "one")
    vol.checkpoint()
    _populate(vol, "two")
    vol.checkpoint()
    _populate(vol, "three")                  # only in the log
    expected = snapshot(vol)
    layout = vol._layout
    newest = layout.checkpoint_offsets[vol._generation % 2]
    image = bytearray(pool.image())
    image[newest + 100] ^= 0x55              # checksum no longer matches
    after = _mount_image(bytes(image))
    assert snapshot(after) == expected
    assert after.fsck() == []
    after.close()
    older = layout.checkpoint_offsets[(vol._generation + 1) % 2]
    image[older + 100] ^= 0x55
    with pytest.raises(daxfs.CorruptVolumeError, match="checkpoint"):
        _mount_image(bytes(image))
    vol.close()


def test_fuzzed_metadata_gives_corrupt_volume_error_or_a_clean_mount() -> None:
    """A mount of a damaged pool either fails with CorruptVolumeError or gives a clean volume
    holding everything that was durable: exactly the last state when the damage missed the
    live log, and otherwise a state the volume really passed through since the checkpoint
    (damage in the last records cannot be told from a torn tail)."""
    pool, vol = _memory_volume()
    _populate(vol, "a", 3)
    vol.checkpoint()
    states = [snapshot(vol)]                 # every state since the checkpoint
    vol.mkdir("/b")
    states.append(snapshot(vol))
    for i in range(3):
        f = vol.open(f"/b/f{i}", "wb", buffering=0)
        states.append(snapshot(vol))
        f.write(f"b-{i}".encode() * (100 * (i + 1)))
        f.close()
        states.append(snapshot(vol))
    final = states[-1]
    base = pool.image()
    lay = vol._layout
    live_log = (lay.log_offset + vol._checkpoint_pos % lay.log_size, lay.log_offset + vol._ring.head % lay.log_size)
    assert live_log[0] < live_log[1], "the live log wrapped: the test's ranges assume it does not"
    regions = [(0, 256), (4096, 4096 + 256), live_log,
               (lay.checkpoint_offsets[0], lay.checkpoint_offsets[0] + 2048),
               (lay.checkpoint_offsets[1], lay.checkpoint_offsets[1] + 2048), (0, lay.data_offset)]
    vol.close()
    rng = random.Random(2024)
    outcomes = {"mounted": 0, "corrupt": 0, "lost a damaged tail": 0}
    for _ in range(300):
        image = bytearray(base)
        hit_log = False
        for lo, hi in rng.sample(regions, rng.choice([1, 2, 3])):
            where = rng.randrange(lo, hi)
            n = rng.choice([1, 4, 64])
            hit_log |= where < live_log[1] and live_log[0] < where + n
            for k in range(n):
                image[where + k] = rng.randrange(256)
        try:
            after = _mount_image(bytes(image))
        except daxfs.CorruptVolumeError:
            outcomes["corrupt"] += 1
            continue
        try:
            assert after.fsck() == [], "a damaged pool mounted unclean"
            got = snapshot(after)
        finally:
            after.close()
        if not hit_log:
            assert got == final, "damage outside the live log lost durable state"
        assert got in states, "a damaged pool mounted in a state the volume never had"
        outcomes["mounted" if got == final else "lost a damaged tail"] += 1
    assert outcomes["corrupt"] > 0 and outcomes["mounted"] > 0, outcomes


# ---- a clean close: mount does not search the log for records after the checkpoint


def _superblock_flags(path: str) -> list[int]:
    from daxfs.format.layout import SUPERBLOCK_OFFSETS
    from daxfs.format.superblock import decode_superblock
    with open(path, "rb") as f:
        raw = f.read(max(SUPERBLOCK_OFFSETS) + SUPERBLOCK_BYTES)
    return [decode_superblock(raw[off:off + SUPERBLOCK_BYTES], off).flags for off in SUPERBLOCK_OFFSETS]


def test_a_clean_close_is_claimed_and_a_writer_takes_the_claim_back_before_it_logs(shm_pool: str) -> None:
    from daxfs.format.superblock import CLEAN
    assert all(flags & CLEAN for flags in _superblock_flags(shm_pool))       # mkfs closes cleanly
    with daxfs.open_volume(shm_pool, readonly=True) as follower:
        assert follower.listdir("/") == [] and all(f & CLEAN for f in _superblock_flags(shm_pool))
    vol = daxfs.open_volume(shm_pool)
    assert not any(flags & CLEAN for flags in _superblock_flags(shm_pool))   # before any record
    vol.mkdir("/d")
    vol.checkpoint()                                # a checkpoint never claims it either
    assert not any(flags & CLEAN for flags in _superblock_flags(shm_pool))
    vol.close()
    assert all(flags & CLEAN for flags in _superblock_flags(shm_pool))


def test_mount_searches_the_log_unless_the_volume_was_closed_cleanly(shm_pool: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from daxfs.format.layout import SUPERBLOCK_OFFSETS
    from daxfs.volume import log as log_module
    searched: list[int] = []
    real = log_module.later_record

    def counting(*args: object) -> object:
        searched.append(1)
        return real(*args)          # type: ignore[arg-type]

    monkeypatch.setattr(log_module, "later_record", counting)
    daxfs.open_volume(shm_pool, readonly=True).close()
    assert searched == []                           # closed cleanly: nothing to look for
    vol = daxfs.open_volume(shm_pool)
    vol.mkdir("/d")
    with open(shm_pool, "rb") as f:                 # the pool as a crash would leave it
        image = f.read()
    vol.close()
    crashed = shm_pool + ".crashed"
    try:
        with open(crashed, "wb") as f:
            f.write(image)
        with daxfs.open_volume(crashed, readonly=True) as after:
            assert after.listdir("/") == ["d"]
        assert searched == [1]
        # Two copies of one generation, one still claiming a clean close (its memory could
        # not be written): the claim is not believed.
        with open(crashed, "r+b") as f:
            first = SUPERBLOCK_OFFSETS[0]
            f.seek(first)
            raw = bytearray(f.read(SUPERBLOCK_BYTES))
            raw[12:16] = struct.pack("<I", 1)       # flags = CLEAN, crc made again
            raw[-4:] = struct.pack("<I", zlib.crc32(bytes(raw[:-4])))
            f.seek(first)
            f.write(raw)
        assert _superblock_flags(crashed)[0] == 1 and _superblock_flags(crashed)[1] == 0
        with daxfs.open_volume(crashed, readonly=True) as after:
            assert after.listdir("/") == ["d"]
        assert searched == [1, 1]
    finally:
        os.unlink(crashed)


def test_the_claim_is_not_believed_while_the_owner_page_names_a_writer(shm_pool: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A daxfs that does not know the claim keeps it in the superblocks it writes; it does
    write its pid on the owner page before logging anything, and only a clean close
    clears that page: so a claim beside an owner is not believed."""
    from daxfs.format.layout import OWNER_OFFSET
    from daxfs.format.superblock import encode_owner
    from daxfs.volume import log as log_module
    searched: list[int] = []
    real = log_module.later_record
    monkeypatch.setattr(log_module, "later_record", lambda *a: searched.append(1) or real(*a))
    with open(shm_pool, "r+b") as f:            # closed cleanly, then a writer came and died
        f.seek(OWNER_OFFSET)
        f.write(encode_owner(4242, 1))
    with daxfs.open_volume(shm_pool, readonly=True) as vol:
        assert vol.listdir("/") == []
    assert searched == [1]


def test_a_close_that_fails_leaves_no_claim_and_a_commit_takes_one_back(shm_pool: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from daxfs.format.superblock import CLEAN
    vol = daxfs.open_volume(shm_pool)
    try:
        def fail() -> None:
            raise OSError(5, "the status page could not be cleared")
        monkeypatch.setattr(vol._status, "clear", fail)
        with pytest.raises(OSError):
            vol.close()                 # after its checkpoint: the volume stays open
        assert not vol.closed and not any(f & CLEAN for f in _superblock_flags(shm_pool))
        monkeypatch.undo()
        vol._journal.mark_clean(True)   # (however a claim got there) the next record takes it back first
        vol.mkdir("/after")
        assert not any(f & CLEAN for f in _superblock_flags(shm_pool))
    finally:
        vol.close()
    assert all(f & CLEAN for f in _superblock_flags(shm_pool))
