"""Log records as bytes, in a ring.

A record is a 32-byte header — magic, crc32, volume id, sequence, type,
flags, body length — then a msgpack body holding the record's fields,
padded to 8 bytes.  The crc covers everything after itself; the volume id
(from the volume's uuid) keeps a reformatted pool from replaying the old
volume's records.  Sequences grow by one per record for the life of the
volume.

Positions are virtual (they only grow); the byte at virtual ``v`` lives at
``v % log_size``.  A record never straddles the end of the region: the
writer puts a PAD record there and continues at the next lap.  The log is
kept back to the *older* of the two checkpoints, so either checkpoint plus
the log after it rebuilds the volume.

Reading stops at the first record that is not the expected next one: the
torn tail an interrupted append leaves.  ``later_record`` finds a valid
record with a higher sequence anywhere in the ring, which a torn append
cannot produce, so it means the log is damaged.
"""

from __future__ import annotations

import struct
import zlib

import msgpack

from daxfs.core.records import RECORD_TYPES, Record
from daxfs.errors import CorruptVolumeError

MAGIC = b"DXLR"
HEADER = struct.Struct("<4sIQQHHI")
ALIGN = 8
PAD_CODE = 0


_TAIL = struct.Struct("<QQHHI")          # the header after magic and crc
_PADS = [b"\0" * k for k in range(ALIGN)]


def new_packer() -> msgpack.Packer:
    """A reusable body encoder (not thread-safe: one per log writer)."""
    return msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape", autoreset=True)


def _frame(volume_id: int, seq: int, code: int, body: bytes) -> bytes:
    tail = _TAIL.pack(volume_id, seq, code, 0, len(body))
    crc = zlib.crc32(body, zlib.crc32(tail))
    return b"".join((MAGIC, crc.to_bytes(4, "little"), tail, body, _PADS[-len(body) % ALIGN]))


def encode_record(record: Record, volume_id: int, seq: int, packer: msgpack.Packer | None = None) -> bytes:
    body = (packer or new_packer()).pack(record)
    return _frame(volume_id, seq, record.CODE, body)  # type: ignore[union-attr]


def encode_pad(volume_id: int, seq: int) -> bytes:
    """The record that says: the rest of this lap is empty, continue at the next."""
    return _frame(volume_id, seq, PAD_CODE, b"")


def decode_record(buf: memoryview | bytes, pos: int, volume_id: int, seq: int
                  ) -> tuple[Record | None, int] | None:
    """``(record, length)`` if the valid record ``seq`` starts at ``pos``, else None.

    A PAD record decodes as ``(None, length)``.
    """
    if pos + HEADER.size > len(buf):
        return None
    magic, crc, vid, rseq, code, _flags, body_len = HEADER.unpack_from(buf, pos)
    if magic != MAGIC or vid != volume_id or rseq != seq:
        return None
    end = pos + HEADER.size + body_len
    if end > len(buf):
        return None
    if zlib.crc32(buf[pos + HEADER.size:end], zlib.crc32(buf[pos + 8:pos + HEADER.size])) != crc:
        return None
    length = end - pos + (-(end - pos) % ALIGN)
    if code == PAD_CODE:
        return None, length
    cls = RECORD_TYPES.get(code)
    if cls is None:
        raise CorruptVolumeError(f"log record {seq} has unknown type {code}")
    try:
        fields = msgpack.unpackb(buf[pos + HEADER.size:end], raw=False, unicode_errors="surrogateescape")
        record = cls(*fields)
    except Exception as exc:   # a checksummed body that does not decode: damage or a writer bug
        raise CorruptVolumeError(f"log record {seq} does not decode ({exc})") from None
    return record, length


def later_record(buf: memoryview | bytes, volume_id: int, after_seq: int) -> int | None:
    """The offset of any valid record with a sequence above ``after_seq``, or None."""
    raw = bytes(buf)
    start = 0
    while True:
        hit = raw.find(MAGIC, start)
        if hit < 0:
            return None
        start = hit + 1
        if hit % ALIGN or hit + HEADER.size > len(raw):
            continue
        _m, crc, vid, rseq, _code, _flags, body_len = HEADER.unpack_from(raw, hit)
        end = hit + HEADER.size + body_len
        if vid == volume_id and rseq > after_seq and end <= len(raw) and \
                zlib.crc32(raw[hit + HEADER.size:end], zlib.crc32(raw[hit + 8:hit + HEADER.size])) == crc:
            return hit
