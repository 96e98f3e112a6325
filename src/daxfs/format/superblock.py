"""Superblocks and the owner page.

Two copies of the superblock, each checksummed; the valid one with the
highest generation wins, so a torn superblock write falls back to the other
copy.  The checkpoint for generation ``g`` lives in slot ``g % 2``.
"""

from __future__ import annotations

import struct
import uuid as uuidlib
import zlib
from dataclasses import dataclass

from daxfs.errors import CorruptVolumeError
from daxfs.format.layout import SUPERBLOCK_OFFSETS, Layout

MAGIC = b"DAXFS\x00SB"
VERSION = 1
#: ``flags`` bit: written by a clean close, after its last checkpoint — that checkpoint holds
#: the whole state and no log record follows it, so mount need not search the log for one
#: (the damage check).  A writer clears it before its first record; of two copies with the
#: same generation, one without it wins (``read_superblock``).
CLEAN = 1
_SB = struct.Struct("<8sII16sIIQQQQQQQQQ")
_CRC = struct.Struct("<I")
SUPERBLOCK_BYTES = _SB.size + _CRC.size

_OWNER = struct.Struct("<4sIQ")
OWNER_MAGIC = b"DXOW"


@dataclass(frozen=True)
class Superblock:
    """What a superblock says: identity, geometry, and which checkpoint is current."""

    uuid: uuidlib.UUID
    layout: Layout
    generation: int
    version: int = VERSION
    flags: int = 0

    @property
    def checkpoint_slot(self) -> int:
        return self.generation % 2

    def with_flags(self, flags: int) -> "Superblock":
        return Superblock(self.uuid, self.layout, self.generation, self.version, flags)

    def encode(self) -> bytes:
        lay = self.layout
        body = _SB.pack(MAGIC, self.version, self.flags, self.uuid.bytes, lay.block_size, 0,
                        lay.pool_size, lay.log_offset, lay.log_size, lay.checkpoint_offsets[0],
                        lay.checkpoint_offsets[1], lay.checkpoint_size, lay.data_offset,
                        lay.data_blocks, self.generation)
        return body + _CRC.pack(zlib.crc32(body))


#: where a superblock copy keeps its generation (the last field before the crc)
GENERATION_AT = _SB.size - 8


def _generations_struct() -> struct.Struct:
    fmt, pos = "<", 0
    for where in SUPERBLOCK_OFFSETS:
        fmt += f"{where + GENERATION_AT - pos}xQ"
        pos = where + GENERATION_AT + 8
    return struct.Struct(fmt)


#: every copy's generation field, in one unpack of the pool's first bytes: unchecked (no crc),
#: so only for a reader that acts on them when they say nothing is newer than what it knows
GENERATIONS = _generations_struct()


def has_magic(raw: bytes) -> bool:
    return raw[:len(MAGIC)] == MAGIC


def decode_superblock(raw: bytes, where: int) -> Superblock:
    """Decode one superblock copy; CorruptVolumeError saying what is wrong with it."""
    if len(raw) < SUPERBLOCK_BYTES:
        raise CorruptVolumeError("superblock truncated", where=where)
    body = raw[:_SB.size]
    (magic, version, flags, uid, block_size, _pad, pool_size, log_offset, log_size, ckpt_a, ckpt_b,
     ckpt_size, data_offset, data_blocks, generation) = _SB.unpack(body)
    if magic != MAGIC:
        raise CorruptVolumeError("not a daxfs superblock (bad magic)", where=where)
    (crc,) = _CRC.unpack_from(raw, _SB.size)
    if crc != zlib.crc32(body):
        raise CorruptVolumeError("superblock checksum mismatch", where=where)
    if version != VERSION:
        raise CorruptVolumeError(f"unsupported volume version {version} (this daxfs reads {VERSION})",
                                 where=where)
    layout = Layout(pool_size, block_size, log_offset, log_size, (ckpt_a, ckpt_b), ckpt_size,
                    data_offset, data_blocks)
    if not layout.fits():
        raise CorruptVolumeError("superblock geometry is inconsistent", where=where)
    return Superblock(uuidlib.UUID(bytes=uid), layout, generation, version, flags)


def encode_owner(pid: int, time_ns: int) -> bytes:
    return _OWNER.pack(OWNER_MAGIC, pid, time_ns)


def decode_owner(raw: bytes) -> int | None:
    """The pid recorded by the last read-write opener, if the page holds one."""
    if len(raw) < _OWNER.size:
        return None
    magic, pid, _time = _OWNER.unpack_from(raw)
    return pid if magic == OWNER_MAGIC else None
