"""The on-pool encodings (``daxfs.format``) at their edges, found by a mutation run over
``checkpoint.py``, ``log.py``, ``superblock.py`` and ``layout.py``: each test pins down one
thing a slip there would get wrong while the volume tests still passed.

- The bytes: what the 2026-11 image holds (superblocks, both checkpoints, every log record)
  is what this code encodes from the decoded values, byte for byte.
- Bounds: a checkpoint, a record or a superblock that ends exactly where its buffer ends
  decodes; one byte less is torn (None, or CorruptVolumeError); a header alone is enough
  for a checkpoint slot's peek.
- Checksums: a change to any byte after the magic (the unused header bytes and a record's
  flags included) is seen.
- The streamed checkpoint body: two or three top fields, the declared row count, nothing
  after the last field, a next_ino of any width, a body over msgpack's 100 MiB default.
- msgpack with the bin type: a 32-255-byte name is a str8 in records, checkpoints and rows.
- Errors say where: a CorruptVolumeError's ``where`` is the slot or copy that failed.
- The scans: ``highest_seq`` and ``later_record`` take only this volume's aligned records
  with a valid checksum that fit the ring, the last 32 bytes included; a header cut by the
  ring's end is none (with numpy or without).
- The geometry: ``Layout.compute``'s sizes at and between the clamps, alignment from
  64 MiB up, the smallest pool, block sizes; ``fits`` refuses each kind of overlap.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import struct
import uuid
import zlib
from pathlib import Path

import msgpack
import pytest

from daxfs.core.records import RECORD_TYPES, SetAttr, Unlink
from daxfs.errors import CorruptVolumeError
from daxfs.format.checkpoint import (HEADER as CKP_HEADER, MAGIC as CKP_MAGIC, RowPacker, StreamedState,
                                     body_prefix, decode_checkpoint, decode_checkpoint_streamed,
                                     encode_checkpoint, encode_header, header_fields, peek_checkpoint)
from daxfs.format.layout import HUGE_PAGE, MIN_DATA_BLOCKS, SUPERBLOCK_OFFSETS, Layout
from daxfs.format.log import (ALIGN, HEADER, BadRecordError, _frame, decode_record, encode_pad, encode_record,
                              frame_at, highest_seq, later_record)
from daxfs.format.superblock import (CLEAN, GENERATIONS, OWNER_MAGIC, SUPERBLOCK_BYTES, VERSION, _SB,
                                     Superblock, decode_owner, decode_superblock, encode_owner, has_magic)
from _small_volume import pool_and_volume

DATA = Path(__file__).parent / "data"
VID = 0x0123_4567_89AB_CDEF


def _old_image() -> bytes:
    with gzip.open(DATA / "format-v1.pool.gz", "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------- the bytes kept

def test_the_old_image_is_what_this_code_encodes_byte_for_byte() -> None:
    raw = _old_image()
    sbs = [decode_superblock(raw[off:off + SUPERBLOCK_BYTES], off) for off in SUPERBLOCK_OFFSETS]
    for off, sb in zip(SUPERBLOCK_OFFSETS, sbs):
        assert sb.encode() == raw[off:off + SUPERBLOCK_BYTES]
    sb = sbs[0]
    assert GENERATIONS.unpack_from(raw) == (sb.generation, sbs[1].generation)
    lay = sb.layout
    ckpts = []
    for off in lay.checkpoint_offsets:
        ckp = decode_checkpoint(raw[off:off + lay.checkpoint_size], off)
        encoded = encode_checkpoint(ckp.state, ckp.generation, ckp.last_seq, ckp.log_pos)
        assert encoded == raw[off:off + len(encoded)]
        ckpts.append(ckp)
    assert sb.checkpoint_slot == sb.generation % 2 == 0 and ckpts[0].generation == sb.generation
    # the log from the older checkpoint on: every record re-encodes to the bytes stored
    ring = raw[lay.log_offset:lay.log_offset + lay.log_size]
    vid = int.from_bytes(sb.uuid.bytes[:8], "little")
    older = min(ckpts, key=lambda c: c.generation)
    pos, seq, kinds = older.log_pos % lay.log_size, older.last_seq + 1, []
    while (found := decode_record(ring, pos, vid, seq)) is not None:
        record, length = found
        assert record is not None and length % ALIGN == 0
        assert encode_record(record, vid, seq) == ring[pos:pos + length]
        kinds.append(type(record).__name__)
        pos, seq = pos + length, seq + 1
    assert len(kinds) > ckpts[0].last_seq + 1 > 1     # the newer checkpoint's tail included
    assert highest_seq(ring, vid) == seq - 1
    assert later_record(ring, vid, seq - 2) is not None and later_record(ring, vid, seq - 1) is None


def test_a_clean_close_sets_the_clean_bit_in_both_copies_and_a_writer_clears_it() -> None:
    pool, vol = pool_and_volume()
    vol.close()
    raw = pool.read(0, 8192)
    for off in SUPERBLOCK_OFFSETS:
        flags = struct.unpack_from("<I", raw, off + 12)[0]
        assert flags == CLEAN == 1
        assert decode_superblock(raw[off:off + SUPERBLOCK_BYTES], off).flags == 1
    sb = decode_superblock(raw[:SUPERBLOCK_BYTES], 0)
    dirty = sb.with_flags(0)
    assert (dirty.uuid, dirty.layout, dirty.generation, dirty.version, dirty.flags) == \
        (sb.uuid, sb.layout, sb.generation, sb.version, 0)


# ---------------------------------------------------------------------------- checkpoints

STATE = [7, [[1, 0o40755, 0, 0, 0, 1, 2, 3, None, ["caf\udce9", 2, "x", 3]]]]


def test_a_checkpoint_decodes_from_exactly_its_own_bytes_and_not_one_byte_less() -> None:
    enc = encode_checkpoint(STATE, 5, -1, 1 << 40)
    for decode in (decode_checkpoint, decode_checkpoint_streamed):
        ckp = decode(enc, 99)
        assert (ckp.generation, ckp.last_seq, ckp.log_pos) == (5, -1, 1 << 40)
        with pytest.raises(CorruptVolumeError, match="runs past its slot"):
            decode(enc[:-1], 99)
    assert decode_checkpoint(enc + bytes(100), 0).state == STATE
    assert decode_checkpoint_streamed(enc, 0).state.body == enc[CKP_HEADER.size:]
    assert peek_checkpoint(enc) == (5, -1, 1 << 40)


def test_a_header_alone_fills_a_slot_and_one_byte_less_is_truncated() -> None:
    header = encode_header(zlib.crc32(header_fields(3, 4, 5, 0)), 3, 4, 5, 0)
    assert len(header) == CKP_HEADER.size == 48
    assert peek_checkpoint(header) == (3, 4, 5)
    assert decode_checkpoint_streamed(header, 0).state.body == b""
    with pytest.raises(CorruptVolumeError, match="does not decode") as info:    # an empty body is no state
        decode_checkpoint(header, 77)
    assert info.value.where == 77
    assert peek_checkpoint(header[:-1]) is None
    for decode in (decode_checkpoint, decode_checkpoint_streamed):
        with pytest.raises(CorruptVolumeError, match="truncated") as info:
            decode(header[:-1], 78)
        assert info.value.where == 78
    assert peek_checkpoint(b"DAXFSCKX" + header[8:]) is None


def test_a_checkpoint_checksum_covers_every_byte_after_itself() -> None:
    enc = encode_checkpoint(STATE, 5, 6, 7)
    for i in range(len(enc)):
        bad = bytearray(enc)
        bad[i] ^= 0x01
        with pytest.raises(CorruptVolumeError) as info:
            decode_checkpoint(bytes(bad) + bytes(64), 11)
        assert info.value.where == 11
        if i < 8:
            assert "magic" in str(info.value)
        else:       # (a changed body length runs past the slot, or still mismatches)
            assert "checksum" in str(info.value) or "runs past" in str(info.value)


def test_a_checkpoint_round_trips_surrogate_names_and_signed_sequences() -> None:
    enc = encode_checkpoint(STATE, (1 << 64) - 1, -1, (1 << 64) - 1)
    assert enc[:8] == CKP_MAGIC
    ckp = decode_checkpoint(enc, 0)
    assert tuple(ckp) == ((1 << 64) - 1, -1, (1 << 64) - 1, STATE)


def _parts(body: bytes) -> tuple[object, list[object], object]:
    next_ino, rows, rest = StreamedState(body).parts()
    rows = list(rows)
    return next_ino, rows, rest(len(rows))


@pytest.mark.parametrize("bad", [None, [[1, 2], []]])
def test_a_streamed_body_gives_next_ino_the_rows_and_the_bad_memory_field(bad: object) -> None:
    state = STATE if bad is None else [*STATE, bad]
    enc = encode_checkpoint(state, 1, 2, 3)
    body = decode_checkpoint_streamed(enc, 0).state.body
    assert _parts(body) == (7, STATE[1], bad)
    assert _parts(body) == (7, STATE[1], bad)       # parts() starts again each time
    # the piecewise writer's bytes are the one-shot encoder's
    packer = RowPacker()
    for row in STATE[1]:
        packer.value(row)
    pieced = body_prefix(7, len(STATE[1]), bad is not None) + packer.take()
    if bad is not None:
        pieced += packer.packed(bad)
    assert _parts(pieced) == (7, STATE[1], bad)


def test_a_streamed_body_of_the_wrong_shape_is_a_value_error() -> None:
    rows = [[1], [2], [3]]
    for top in ([5], [5, rows, None, None]):                  # one field, four fields
        with pytest.raises(ValueError, match="fields"):
            StreamedState(msgpack.packb(top)).parts()
    next_ino, it, rest = StreamedState(msgpack.packb([5, rows])).parts()
    assert next_ino == 5 and next(it) == [1]
    with pytest.raises(ValueError, match="1 inode rows where the body declares 3"):
        rest(1)
    with pytest.raises(ValueError, match="bytes follow"):
        _parts(msgpack.packb([5, rows]) + b"\xc0")
    with pytest.raises(ValueError, match="bytes follow"):
        _parts(msgpack.packb([5, rows, None]) + b"\xc0")
    assert _parts(msgpack.packb([5, rows, None])) == (5, rows, None)


def test_a_large_directory_row_is_packed_a_slice_at_a_time_as_one_row() -> None:
    packer = RowPacker()
    fields = [2, 0o40755, 0, 0, 0, 1, 2, 3, None]
    packer.row_head(fields, 3)
    head = packer.take()
    packer.entry("a", 10)
    packer.entry("b\udcff", 11)
    middle = packer.take()
    packer.entry("c", 12)
    row = msgpack.unpackb(head + middle + packer.take(), raw=False, unicode_errors="surrogateescape")
    assert row == [*fields, ["a", 10, "b\udcff", 11, "c", 12]]
    assert packer.take() == b""
    assert packer.packed(row) == msgpack.packb(row, use_bin_type=True, unicode_errors="surrogateescape")
    assert body_prefix(1, 0, False)[-5:] == b"\xdd\0\0\0\0"    # always the 32-bit array header


# ---------------------------------------------------------------------------- log records

def test_a_pad_is_a_bare_header_that_decodes_from_exactly_its_bytes() -> None:
    pad = encode_pad(VID, 5)
    assert len(pad) == HEADER.size == 32
    assert decode_record(pad, 0, VID, 5) == (None, 32)
    assert frame_at(pad, 0, VID, 5) == (0, 32)
    assert decode_record(pad[:-1], 0, VID, 5) is None
    assert decode_record(pad, 0, VID, 6) is None and decode_record(pad, 0, VID + 1, 5) is None
    assert decode_record(bytes(8) + pad, 8, VID, 5) == (None, 32)


@pytest.mark.parametrize("name_len", range(1, 10))
def test_a_records_length_is_its_body_rounded_up_and_its_padding_is_not_needed(name_len: int) -> None:
    record = Unlink(1, "n" * name_len, 7, False)
    enc = encode_record(record, VID, 3)
    body_len = struct.unpack_from("<I", enc, 28)[0]
    assert len(enc) == HEADER.size + body_len + (-body_len % ALIGN) and len(enc) % ALIGN == 0
    assert enc[HEADER.size + body_len:] == bytes(len(enc) - HEADER.size - body_len)
    unpadded = enc[:HEADER.size + body_len]
    assert decode_record(unpadded, 0, VID, 3) == (record, len(enc))
    assert decode_record(unpadded[:-1], 0, VID, 3) is None


def test_a_record_checksum_covers_every_header_and_body_byte() -> None:
    record = SetAttr(5, 0o644, 1, 2, 3, 4, 5)
    enc = encode_record(record, VID, 9)
    assert decode_record(enc, 0, VID, 9) == (record, len(enc))
    body_end = HEADER.size + struct.unpack_from("<I", enc, 28)[0]
    for i in range(body_end):
        bad = bytearray(enc)
        bad[i] ^= 0x01
        assert decode_record(bytes(bad) + bytes(64), 0, VID, 9) is None, i
    assert struct.unpack_from("<H", enc, 26)[0] == 0            # flags: none written


def test_a_checksummed_record_that_is_wrong_inside_names_its_sequence_and_kind() -> None:
    with pytest.raises(BadRecordError, match="unknown type 99") as info:
        decode_record(_frame(VID, 4, 99, msgpack.packb([1])), 0, VID, 4)
    assert (info.value.seq, info.value.kind, info.value.pos) == (4, "type 99", None)
    code = SetAttr.CODE
    assert RECORD_TYPES[code] is SetAttr
    cases = [(b"\xc1", "does not decode"), (msgpack.packb({"a": 1}), "holds dict"),
             (msgpack.packb(7), "holds int"), (msgpack.packb([1, 2]), "malformed"),
             (msgpack.packb([0, None, None, None, None, None, None]), "malformed"),
             (msgpack.packb([1, 2, 3]) + b"\xc0", "does not decode")]
    for body, what in cases:
        with pytest.raises(BadRecordError, match=what) as info:
            decode_record(_frame(VID, 6, code, body), 0, VID, 6)
        assert (info.value.seq, info.value.kind) == (6, "SetAttr")
        assert isinstance(info.value, CorruptVolumeError)
    good = msgpack.packb([1, None, None, None, None, None, None])
    assert decode_record(_frame(VID, 6, code, good), 0, VID, 6)[0] == SetAttr(1, None, None, None, None, None, None)
    name = Unlink(2, "caf\udce9", 3, True)
    assert decode_record(encode_record(name, VID, 1), 0, VID, 1)[0] == name


def _ring(size: int, placed: list[tuple[int, bytes]]) -> bytes:
    ring = bytearray(size)
    for pos, rec in placed:
        ring[pos:pos + len(rec)] = rec
    return bytes(ring)


def test_highest_seq_takes_only_valid_aligned_records_of_this_volume() -> None:
    rec = lambda seq, vid=VID: encode_record(SetAttr(1, None, None, None, None, None, None), vid, seq)  # noqa: E731
    torn = bytearray(rec(50))
    torn[-9] ^= 1
    ring = _ring(1024, [(0, rec(3)), (64, rec(4)), (128, bytes(torn)), (256, rec(60, VID + 1)),
                        (516, rec(70)), (1024 - 32, encode_pad(VID, 2))])
    assert highest_seq(ring, VID) == 4
    assert later_record(ring, VID, 3) == 64 and later_record(ring, VID, 4) is None
    assert later_record(ring, VID, 2) == 0
    assert highest_seq(ring, VID + 1) == 60 and highest_seq(ring, VID + 2) is None
    # a pad in the ring's last 32 bytes counts
    last = _ring(1024, [(0, rec(3)), (1024 - 32, encode_pad(VID, 9))])
    assert highest_seq(last, VID) == 9 and later_record(last, VID, 3) == 1024 - 32
    # a record whose body runs past the ring does not
    over = rec(11)
    past = _ring(1024, [(0, rec(3)), (1024 - 32, over[:32])])
    assert highest_seq(past, VID) == 3 and later_record(past, VID, 3) is None
    assert highest_seq(past + over[32:], VID) == 11       # (the same bytes with room: it counts)
    assert highest_seq(bytes(1024), VID) is None and later_record(bytes(1024), VID, -1) is None


@pytest.mark.parametrize("after", [-1, 0, 1])
def test_later_record_with_numpy_at_sequence_zero(after: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from daxfs.format import log
    ring = _ring(4096, [(40, encode_record(Unlink(1, "a", 2, False), VID, 0)),
                        (4096 - 32, encode_pad(VID, 1))])
    for numpy_from in (0, 1 << 40):
        monkeypatch.setattr(log, "SCAN_WITH_NUMPY", numpy_from)
        assert later_record(ring, VID, after) == {-1: 40, 0: 4064, 1: None}[after]
        assert later_record(ring + b"\0\0\0", VID, after) == {-1: 40, 0: 4064, 1: None}[after]


# ---------------------------------------------------------------------------- superblocks

def _sb(generation: int = 3, flags: int = 0) -> Superblock:
    return Superblock(uuid.UUID(int=0xABCDEF), Layout.compute(8 << 20, 4096), generation, flags=flags)


def test_a_superblock_decodes_from_exactly_its_bytes_and_round_trips() -> None:
    sb = _sb(1 << 63, CLEAN)
    enc = sb.encode()
    assert len(enc) == SUPERBLOCK_BYTES == _SB.size + 4
    assert decode_superblock(enc, 0) == sb
    assert decode_superblock(enc + b"\xff" * 10, 0) == sb
    with pytest.raises(CorruptVolumeError, match="truncated") as info:
        decode_superblock(enc[:-1], 4096)
    assert info.value.where == 4096
    assert sb.checkpoint_slot == 0 and _sb(5).checkpoint_slot == 1
    assert has_magic(enc) and not has_magic(b"DAXFS\x00SA" + enc[8:])
    assert struct.unpack_from("<I", enc, 36)[0] == 0           # the unused word after the block size


def test_every_superblock_byte_is_checked() -> None:
    enc = _sb().encode()
    for i in range(SUPERBLOCK_BYTES):
        bad = bytearray(enc)
        bad[i] ^= 0x01
        with pytest.raises(CorruptVolumeError, match="magic" if i < 8 else "checksum") as info:
            decode_superblock(bytes(bad), 4096)
        assert info.value.where == 4096


def _resealed(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_a_sealed_superblock_with_another_version_or_a_bad_geometry_is_refused() -> None:
    body = bytearray(_sb().encode()[:_SB.size])
    for version in (0, VERSION + 1):
        struct.pack_into("<I", body, 8, version)
        with pytest.raises(CorruptVolumeError, match=f"unsupported volume version {version}") as info:
            decode_superblock(_resealed(bytes(body)), 4096)
        assert info.value.where == 4096
    struct.pack_into("<I", body, 8, VERSION)
    assert decode_superblock(_resealed(bytes(body)), 0) == _sb()
    struct.pack_into("<Q", body, 40, (8 << 20) - 1)              # a pool one byte short
    with pytest.raises(CorruptVolumeError, match="geometry") as info:
        decode_superblock(_resealed(bytes(body)), 4096)
    assert info.value.where == 4096


def test_generations_reads_each_copys_generation_field() -> None:
    raw = bytearray(8192)
    raw[0:SUPERBLOCK_BYTES] = _sb(7).encode()
    raw[4096:4096 + SUPERBLOCK_BYTES] = _sb(8).encode()
    assert GENERATIONS.unpack_from(bytes(raw)) == (7, 8)
    assert GENERATIONS.size == 4096 + _SB.size


def test_the_owner_page() -> None:
    enc = encode_owner(4242, 99)
    assert enc[:4] == OWNER_MAGIC and len(enc) == 16
    assert decode_owner(enc) == 4242 and decode_owner(enc + bytes(48)) == 4242
    assert decode_owner(enc[:-1]) is None and decode_owner(bytes(64)) is None
    assert decode_owner(b"DXOX" + enc[4:]) is None


# ---------------------------------------------------------------------------- the geometry

@pytest.mark.parametrize("pool_size, block_size, log_size, ckpt_size, data_offset, data_blocks", [
    (917504, 4096, 256 << 10, 256 << 10, 851968, MIN_DATA_BLOCKS),   # the smallest pool
    (4 << 20, 4096, 256 << 10, 256 << 10, 851968, 816),
    (8 << 20, 4096, 256 << 10, 256 << 10, 851968, 1840),              # the 2026-11 image's
    ((64 << 20) - 4096, 4096, 256 << 10, 1 << 20, 2424832, 15791),    # below 64 MiB: block-aligned
    (64 << 20, 4096, 256 << 10, 1 << 20, 4 << 20, 15360),             # from 64 MiB: huge-page-aligned
    (1 << 30, 4096, 4 << 20, 16 << 20, 39845888, 252416),             # between the clamps
    ((1 << 30) + 409600, 4096, 4198400, 16785408, 39845888, 252516),  # sizes rounded up to 4 KiB
    (16 << 30, 4096, 64 << 20, 256 << 20, 606076928, 4046336),        # the log's clamp
    (1 << 40, 4096, 64 << 20, 512 << 20, 1142947840, 268156416),      # both clamps
    (34 << 20, HUGE_PAGE, 256 << 10, 544 << 10, HUGE_PAGE, 16),       # huge blocks: block-aligned
    (64 << 20, 65536, 256 << 10, 1 << 20, 4 << 20, 960),
])
def test_layout_compute(pool_size: int, block_size: int, log_size: int, ckpt_size: int, data_offset: int,
                        data_blocks: int) -> None:
    lay = Layout.compute(pool_size, block_size)
    a = 65536 + log_size
    assert lay == Layout(pool_size, block_size, 65536, log_size, (a, a + ckpt_size), ckpt_size,
                         data_offset, data_blocks)
    assert lay.fits()
    assert all(type(v) is int for v in (*dataclasses.astuple(lay)[:4], *lay.checkpoint_offsets, *dataclasses.astuple(lay)[5:]))
    assert decode_superblock(Superblock(uuid.UUID(int=1), lay, 1).encode(), 0).layout == lay
    assert lay.data_size == data_blocks * block_size
    assert lay.block_offset(0) == data_offset and lay.block_offset(3) == data_offset + 3 * block_size
    huge = data_offset % HUGE_PAGE == 0 and block_size < HUGE_PAGE
    assert lay.align_blocks == (HUGE_PAGE // block_size if huge else 1)


def test_layout_compute_refuses_bad_block_sizes_and_too_small_pools() -> None:
    for bs in (4096, 8192, HUGE_PAGE):
        Layout.compute(64 << 20, bs)
    for bs in (0, 2048, 4095, 6144, 3 << 20, 2 * HUGE_PAGE):
        with pytest.raises(OSError, match="power of two") as info:
            Layout.compute(64 << 20, bs)
        assert info.value.errno == errno.EINVAL
    for size in (917504 - 1, 851968, 851968 - 1, 4096, 0):
        with pytest.raises(OSError, match="too small") as info:
            Layout.compute(size, 4096)
        assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError, match="too small"):
        Layout.compute((34 << 20) - 1, HUGE_PAGE)


def test_align_blocks_is_one_off_huge_page_boundaries() -> None:
    lay = Layout.compute(64 << 20, 4096)
    assert lay.align_blocks == 512
    assert dataclasses.replace(lay, data_offset=lay.data_offset + 4096).align_blocks == 1
    assert Layout.compute(64 << 20, HUGE_PAGE).align_blocks == 1
    assert Layout.compute(4 << 20, 4096).align_blocks == 1


def test_fits_refuses_each_overlap_and_each_bad_size() -> None:
    lay = Layout.compute(8 << 20, 4096)
    a, b = lay.checkpoint_offsets
    assert lay.fits()
    assert dataclasses.replace(lay, log_offset=65536 - 8).fits() is False          # into the header pages
    assert dataclasses.replace(lay, log_size=lay.log_size + 1).fits() is False      # log into checkpoint A
    assert dataclasses.replace(lay, checkpoint_offsets=(a, b - 1)).fits() is False
    assert dataclasses.replace(lay, checkpoint_offsets=(a, lay.data_offset - lay.checkpoint_size + 1)).fits() is False
    assert dataclasses.replace(lay, data_blocks=lay.data_blocks + 1).fits() is False
    assert dataclasses.replace(lay, pool_size=lay.pool_size - 1).fits() is False
    assert dataclasses.replace(lay, block_size=2048, data_blocks=1).fits() is False
    assert dataclasses.replace(lay, block_size=6144, data_blocks=1).fits() is False
    assert dataclasses.replace(lay, log_size=0).fits() is False
    assert dataclasses.replace(lay, checkpoint_size=0).fits() is False
    # each bound is inclusive: regions that touch are fine
    assert dataclasses.replace(lay, log_size=a - lay.log_offset).fits()
    assert dataclasses.replace(lay, data_blocks=(lay.pool_size - lay.data_offset) // 4096,
                               pool_size=lay.data_offset + lay.data_blocks * 4096).fits()
    least = 256 * 1024                  # (the least log and checkpoint slot mkfs makes)
    tight = Layout(65536 + 3 * least + 4096, 4096, 65536, least, (65536 + least, 65536 + 2 * least), least,
                   65536 + 3 * least, 1)
    assert tight.fits()
    # what a superblock rewritten with a valid checksum could claim, and compute never makes:
    # a data area off a block boundary (reads would come from the wrong bytes), regions
    # too small to hold a record or a checkpoint, off a page, blocks past the largest size
    assert dataclasses.replace(lay, data_offset=lay.data_offset + 8, data_blocks=lay.data_blocks - 1).fits() is False
    assert dataclasses.replace(tight, log_size=least - 4096).fits() is False
    assert dataclasses.replace(tight, checkpoint_size=least - 4096).fits() is False
    assert dataclasses.replace(lay, log_size=lay.log_size - 8).fits() is False
    assert dataclasses.replace(lay, checkpoint_offsets=(a + 8, b + 8), checkpoint_size=lay.checkpoint_size - 8).fits() is False
    assert dataclasses.replace(lay, block_size=4 << 20, data_blocks=0).fits() is False
    assert dataclasses.replace(tight, data_blocks=0).fits() is False


@pytest.mark.parametrize("has_bad", [False, True])
@pytest.mark.parametrize("next_ino", [0, 127, 128, 65536, 1 << 40])
def test_body_prefix_keeps_next_ino_of_any_width(next_ino: int, has_bad: bool) -> None:
    rows = [[1, 2], [3, 4]]
    packer = RowPacker()
    tail = b"".join(packer.packed(row) for row in rows) + (packer.packed([[5, 6], []]) if has_bad else b"")
    body = body_prefix(next_ino, len(rows), has_bad) + tail
    assert msgpack.unpackb(body) == ([next_ino, rows, [[5, 6], []]] if has_bad else [next_ino, rows])
    assert _parts(body) == (next_ino, rows, [[5, 6], []] if has_bad else None)


def test_a_streamed_body_larger_than_msgpacks_default_buffer_decodes() -> None:
    # (a checkpoint slot holds up to 512 MiB; msgpack's Unpacker refuses over 100 MiB unless told)
    big = "x" * (101 << 20)
    body = msgpack.packb([3, [[big]]])
    next_ino, rows, rest = StreamedState(body).parts()
    assert next_ino == 3 and next(rows) == [big] and rest(1) is None


def test_a_bad_record_error_keeps_where_and_pos() -> None:
    err = BadRecordError("log record 4 (SetAttr) is malformed", seq=4, kind="SetAttr", where=4096, pos=1 << 33)
    assert (err.seq, err.kind, err.where, err.pos) == (4, "SetAttr", 4096, 1 << 33)
    assert isinstance(err, CorruptVolumeError) and "malformed" in str(err)


@pytest.mark.parametrize("numpy_from", [0, 1 << 40])
def test_a_header_cut_by_the_rings_end_is_not_a_record(numpy_from: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from daxfs.format import log
    monkeypatch.setattr(log, "SCAN_WITH_NUMPY", numpy_from)
    for cut in (8, 16, 24):      # the first ``cut`` bytes of a later record's header, then the ring ends
        ring = bytearray(_ring(1024, [(0, encode_pad(VID, 3))]))
        ring[1024 - cut:] = encode_pad(VID, 9)[:cut]
        assert highest_seq(bytes(ring), VID) == 3
        assert later_record(bytes(ring), VID, 3) is None and later_record(bytes(ring), VID, 2) == 0


def test_a_name_of_32_to_255_bytes_is_a_msgpack_str8_everywhere() -> None:
    # (the bin-type msgpack spec: without it, such a str would be written as a raw16)
    name = "n" * 40
    str8 = b"\xd9\x28" + name.encode()
    assert str8 in encode_record(Unlink(1, name, 7, False), VID, 1)
    assert str8 in encode_checkpoint([2, [[1, 0o40755, 0, 0, 0, 1, 2, 3, None, [name, 2]]]], 1, -1, 0)
    packer = RowPacker()
    packer.row_head([1, 0o40755, 0, 0, 0, 1, 2, 3, None], 1)
    packer.entry(name, 2)
    assert str8 in packer.take()
    packer.value(name)
    assert packer.take() == str8 and packer.packed(name) == str8
