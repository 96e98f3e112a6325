"""The status page: what the read-write opener publishes for other processes to read.

Pins, mappings and the busy list live in the memory of the process that
holds them; ``daxfs pins`` and ``daxfs df`` run elsewhere.  So the writer
publishes a snapshot — its pid, the time, busy bytes and as many references
as fit — into a reserved page of the pool header.  It is informational:
never persisted on purpose, never read by mount, checksummed so a reader
racing a rewrite sees nothing rather than garbage.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgpack

MAGIC = b"DXST"
_HEADER = struct.Struct("<4sII")        # magic, crc32(body), body length


def encode_status(status: dict[str, Any], capacity: int) -> bytes:
    """The page bytes; references beyond what fits are dropped (``total`` still counts them)."""
    refs = list(status.get("refs", ()))
    while True:
        body = msgpack.packb({**status, "refs": refs}, use_bin_type=True, unicode_errors="surrogateescape")
        if _HEADER.size + len(body) <= capacity or not refs:
            break
        refs = refs[:len(refs) // 2]
    return _HEADER.pack(MAGIC, zlib.crc32(body), len(body)) + body


def decode_status(raw: bytes) -> dict[str, Any] | None:
    """The published snapshot, or None when there is none (or it is being rewritten)."""
    if len(raw) < _HEADER.size:
        return None
    magic, crc, length = _HEADER.unpack_from(raw)
    body = raw[_HEADER.size:_HEADER.size + length]
    if magic != MAGIC or len(body) != length or zlib.crc32(body) != crc:
        return None
    try:
        status = msgpack.unpackb(body, raw=False, unicode_errors="surrogateescape")
    except Exception:
        return None
    return status if isinstance(status, dict) else None
