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
from collections.abc import Iterable, Iterator

import msgpack

from daxfs.core.records import RECORD_TYPES, Record
from daxfs.errors import CorruptVolumeError

MAGIC = b"DXLR"
HEADER = struct.Struct("<4sIQQHHI")
ALIGN = 8
_MAGIC_WORD = int.from_bytes(MAGIC, "little")
#: Rings at least this large are searched with numpy (``later_record``).
SCAN_WITH_NUMPY = 8 << 20
PAD_CODE = 0


_TAIL = struct.Struct("<QQHHI")          # the header after magic and crc
_PADS = [b"\0" * k for k in range(ALIGN)]


def new_packer() -> msgpack.Packer:
    """A reusable body encoder (not thread-safe: one per log writer)."""
    return msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape", autoreset=True)


class BadRecordError(CorruptVolumeError):
    """A log record whose checksum is right but which is wrong: it does not decode, a field
    has the wrong type or range, or it does not apply to the state before it.

    Damage the checksum cannot see, or a writer's bug.  ``seq`` and ``kind`` (the record
    type's name) say which; ``pos`` is its virtual log position when the reader knows it.
    Mount stops before it (read-only); ``daxfs fsck --repair`` discards it and what follows.
    """

    def __init__(self, what: str, *, seq: int, kind: str, where: int | None = None,
                 pos: int | None = None) -> None:
        super().__init__(what, where=where)
        self.seq = seq
        self.kind = kind
        self.pos = pos


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

    A PAD record decodes as ``(None, length)``.  A record whose frame and checksum are
    right but whose body is not a valid record raises BadRecordError.
    """
    found = _frame_end(buf, pos, volume_id, seq)
    if found is None:
        return None
    code, end, length = found
    if code == PAD_CODE:
        return None, length
    cls = RECORD_TYPES.get(code)
    if cls is None:
        raise BadRecordError(f"log record {seq} has unknown type {code}", seq=seq, kind=f"type {code}")
    kind = cls.__name__
    try:
        fields = msgpack.unpackb(buf[pos + HEADER.size:end], raw=False, unicode_errors="surrogateescape")
    except Exception as exc:   # a checksummed body that does not decode: damage or a writer bug
        raise BadRecordError(f"log record {seq} ({kind}) does not decode ({exc})", seq=seq, kind=kind) from None
    if type(fields) is not list:
        raise BadRecordError(f"log record {seq} ({kind}) holds {type(fields).__name__}, not a list of fields",
                             seq=seq, kind=kind)
    try:
        record = cls.checked(*fields)   # the record's own checks: every field's type and range
    except (TypeError, ValueError) as exc:
        raise BadRecordError(f"log record {seq} ({kind}) is malformed: {exc}", seq=seq, kind=kind) from None
    return record, length


#: a header's magic, (crc,) volume id and sequence: enough to tell that record ``seq`` is
#: surely *not* at a position (a follower's quick check), its checksum unchecked
CLAIM = struct.Struct("<4s4xQQ")


def frame_at(buf: memoryview | bytes, pos: int, volume_id: int, seq: int) -> tuple[int, int] | None:
    """``(type code, length)`` if a record ``seq`` with a valid checksum starts at ``pos``, else None.

    The body is not decoded: this is how far a torn append can reach, and what
    follows a record that is wrong inside.
    """
    found = _frame_end(buf, pos, volume_id, seq)
    return None if found is None else (found[0], found[2])


def _frame_end(buf: memoryview | bytes, pos: int, volume_id: int, seq: int) -> tuple[int, int, int] | None:
    """``(code, end of body, aligned length)`` of a valid frame ``seq`` at ``pos``, else None."""
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
    return code, end, end - pos + (-(end - pos) % ALIGN)


def highest_seq(buf: memoryview | bytes, volume_id: int) -> int | None:
    """The highest sequence of any record with a valid checksum anywhere in ``buf``, or None."""
    raw = bytes(buf)
    best = None
    for hit in _magic_offsets(raw):
        _m, _crc, vid, rseq, _code, _flags, _len = HEADER.unpack_from(raw, hit)
        if vid == volume_id and (best is None or rseq > best) and frame_at(raw, hit, volume_id, rseq):
            best = rseq
    return best


def later_record(buf: memoryview | bytes, volume_id: int, after_seq: int) -> int | None:
    """The offset of any valid record with a sequence above ``after_seq``, or None.

    Every aligned slot of the ring is looked at (mount reads the whole ring, 64 MiB at
    most).  In a large ring numpy picks the slots whose magic, volume and sequence say
    "a later record" (a Python loop over every record there costs a third of a second);
    a small one is scanned without it, as importing numpy costs more than the scan."""
    raw = bytes(buf)
    if len(raw) >= SCAN_WITH_NUMPY:
        candidates: Iterable[int] = _later_slots(raw, volume_id, after_seq)
    else:
        candidates = _magic_offsets(raw)
    for hit in candidates:
        _m, crc, vid, rseq, _code, _flags, body_len = HEADER.unpack_from(raw, hit)
        end = hit + HEADER.size + body_len
        if vid == volume_id and rseq > after_seq and end <= len(raw) and \
                zlib.crc32(raw[hit + HEADER.size:end], zlib.crc32(raw[hit + 8:hit + HEADER.size])) == crc:
            return hit
    return None


def _magic_offsets(raw: bytes) -> Iterator[int]:
    """Aligned offsets where a record header starts with the magic and fits."""
    start = 0
    while True:
        hit = raw.find(MAGIC, start)
        if hit < 0:
            return
        start = hit + 1
        if hit % ALIGN == 0 and hit + HEADER.size <= len(raw):
            yield hit


def _later_slots(raw: bytes, volume_id: int, after_seq: int) -> list[int]:
    """``_magic_offsets`` narrowed to this volume's records above ``after_seq``, by numpy."""
    import numpy as np     # (only large rings: ``import daxfs`` and small mounts leave numpy alone)

    usable = len(raw) - len(raw) % ALIGN
    words = np.frombuffer(raw, dtype="<u4", count=usable // 4)
    slots = np.flatnonzero(words[0::2] == _MAGIC_WORD)        # a slot is ALIGN (8) bytes
    longs = np.frombuffer(raw, dtype="<u8", count=usable // 8)
    slots = slots[slots + HEADER.size // 8 <= longs.size]
    keep = longs[slots + 1] == volume_id
    if after_seq >= 0:
        keep &= longs[slots + 2] > after_seq
    return [int(slot) * ALIGN for slot in slots[keep]]
