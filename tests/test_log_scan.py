"""``later_record``: the mount's search of the whole log ring for a valid record beyond a
torn one (by numpy in large rings, by ``bytes.find`` in small ones), against a plain scan of
every aligned offset."""

from __future__ import annotations

import random
import zlib

import pytest

from daxfs.core.records import SetAttr
from daxfs.format import log
from daxfs.format.log import ALIGN, HEADER, MAGIC, encode_record, later_record


def _plain_scan(raw: bytes, volume_id: int, after_seq: int) -> int | None:
    for hit in range(0, len(raw) - HEADER.size + 1, ALIGN):
        if raw[hit:hit + 4] != MAGIC:
            continue
        _m, crc, vid, rseq, _code, _flags, body_len = HEADER.unpack_from(raw, hit)
        end = hit + HEADER.size + body_len
        if vid == volume_id and rseq > after_seq and end <= len(raw) and \
                zlib.crc32(raw[hit + HEADER.size:end], zlib.crc32(raw[hit + 8:hit + HEADER.size])) == crc:
            return hit
    return None


@pytest.mark.parametrize("with_numpy", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_later_record_finds_what_a_plain_scan_finds(seed: int, with_numpy: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log, "SCAN_WITH_NUMPY", 0 if with_numpy else 1 << 40)
    rng = random.Random(seed)
    size = rng.choice([4096, 65536, 65536 + 4])
    raw = bytearray(rng.randbytes(size) if seed % 3 else bytes(size))
    volume_id = rng.randrange(1 << 64)
    for _ in range(rng.randrange(0, 30)):
        vid = volume_id if rng.random() < 0.8 else rng.randrange(1 << 64)
        rec = encode_record(SetAttr(rng.randrange(1, 99), None, None, None, None, None, None), vid,
                            rng.randrange(0, 200))
        pos = rng.randrange(0, size - len(rec)) // ALIGN * ALIGN + rng.choice([0, 0, 0, 4])
        if rng.random() < 0.2:      # a torn one: a byte of its body flipped
            rec = rec[:-1] + bytes([rec[-1] ^ 1])
        if rng.random() < 0.1:      # one running past the end
            pos = size - len(rec) // 2 // ALIGN * ALIGN
        raw[pos:pos + len(rec)] = rec[:size - pos]
    after = rng.choice([-1, 0, 50, 150, 199])
    assert later_record(bytes(raw), volume_id, after) == _plain_scan(bytes(raw), volume_id, after)
