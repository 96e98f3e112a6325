"""Checkpoints as bytes: the whole core state, msgpack-encoded, checksummed.

Header: magic, crc32, generation, the last log sequence the state includes,
the virtual log position where the next record goes, body length.  The crc
covers the header fields after it and the body.

The body is ``msgpack([next_ino, rows(, bad memory)])``.  ``body_prefix`` and
``RowPacker`` give the same bytes a piece at a time (the rows' array header is
always the 32-bit form, which every msgpack decoder reads), so a checkpoint can
be written in slices between operations; ``encode_checkpoint`` is the one-shot
form.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from itertools import islice
from typing import NamedTuple

import msgpack

from daxfs.errors import CorruptVolumeError

MAGIC = b"DAXFSCKP"
HEADER = struct.Struct("<8sIQqQQ4x")


class Checkpoint(NamedTuple):
    generation: int
    last_seq: int        # -1 when no record has been applied yet
    log_pos: int         # virtual log position of record last_seq + 1
    state: object


def encode_checkpoint(state: object, generation: int, last_seq: int, log_pos: int) -> bytes:
    body = msgpack.packb(state, use_bin_type=True, unicode_errors="surrogateescape")
    crc = zlib.crc32(body, zlib.crc32(header_fields(generation, last_seq, log_pos, len(body))))
    return encode_header(crc, generation, last_seq, log_pos, len(body)) + body


def header_fields(generation: int, last_seq: int, log_pos: int, body_len: int) -> bytes:
    """The header bytes after magic and crc: what the crc covers before the body."""
    return HEADER.pack(MAGIC, 0, generation, last_seq, log_pos, body_len)[12:]


def encode_header(crc: int, generation: int, last_seq: int, log_pos: int, body_len: int) -> bytes:
    return HEADER.pack(MAGIC, crc, generation, last_seq, log_pos, body_len)


def body_prefix(next_ino: int, rows: int, has_bad: bool) -> bytes:
    """What a body holds before its first row: the top array, ``next_ino``, the rows' header."""
    top = msgpack.packb([next_ino, None, None] if has_bad else [next_ino, None])
    return top[:-2 if has_bad else -1] + b"\xdd" + struct.pack(">I", rows)    # (a None was a placeholder)


class RowPacker:
    """Packs rows (and a large directory's entries a slice at a time) into body bytes."""

    def __init__(self) -> None:
        self._packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape", autoreset=False)
        self.packed = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape").pack
        """``packed(row)``: one row's bytes, on their own."""

    def row_head(self, fields: list[object], entries: int) -> None:
        """A directory row's first nine fields and the header of its ``2 * entries`` flat list."""
        packer = self._packer
        packer.pack_array_header(10)
        for value in fields:
            packer.pack(value)
        packer.pack_array_header(2 * entries)

    def entry(self, name: str, ino: int) -> None:
        packer = self._packer
        packer.pack(name)
        packer.pack(ino)

    def value(self, value: object) -> None:
        self._packer.pack(value)

    def take(self) -> bytes:
        """The bytes packed since the last take."""
        out = self._packer.bytes()
        self._packer.reset()
        return out


def decode_checkpoint(buf: memoryview | bytes, where: int) -> Checkpoint:
    """The checkpoint stored in ``buf``; CorruptVolumeError unless it is intact."""
    gen, last_seq, log_pos, body = _checked_body(buf, where)
    try:
        state = msgpack.unpackb(body, raw=False, unicode_errors="surrogateescape",
                                strict_map_key=False)
    except Exception as exc:
        raise CorruptVolumeError(f"checkpoint body does not decode ({exc})", where=where) from None
    return Checkpoint(gen, last_seq, log_pos, state)


def _checked_body(buf: memoryview | bytes, where: int) -> tuple[int, int, int, memoryview | bytes]:
    """``(generation, last_seq, log_pos, body)`` of an intact checkpoint; CorruptVolumeError else."""
    if len(buf) < HEADER.size:
        raise CorruptVolumeError("checkpoint slot truncated", where=where)
    magic, crc, gen, last_seq, log_pos, body_len = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise CorruptVolumeError("checkpoint missing (bad magic)", where=where)
    if HEADER.size + body_len > len(buf):
        raise CorruptVolumeError("checkpoint length runs past its slot", where=where)
    body = buf[HEADER.size:HEADER.size + body_len]
    if zlib.crc32(body, zlib.crc32(buf[12:HEADER.size])) != crc:
        raise CorruptVolumeError("checkpoint checksum mismatch", where=where)
    return gen, last_seq, log_pos, body


class StreamedState:
    """A checkpoint body (checked already) decoded a row at a time, for mount: the decoded
    rows never all live at once, so loading a large volume leaves less memory behind.
    ``parts()`` starts again each time it is called."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def parts(self) -> tuple[object, Iterator[object], Callable[[int], object]]:
        """``(next_ino, rows, rest)``: ``rest(n)``, once the ``n`` rows are read, gives the
        bad memory field (None without one).  ValueError when the body is not that shape
        (``n`` is not the row count it declares, or bytes follow its last field)."""
        unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", strict_map_key=False,
                                    max_buffer_size=max(len(self.body), 1 << 20))
        unpacker.feed(self.body)
        fields = unpacker.read_array_header()
        if fields not in (2, 3):
            raise ValueError(f"top level has {fields} fields, not [next_ino, inodes(, bad memory)]")
        next_ino = unpacker.unpack()
        count = unpacker.read_array_header()

        def rest(n: int) -> object:
            # (iterating the unpacker stops early, not with an error, where the bytes end)
            if n != count:
                raise ValueError(f"{n} inode rows where the body declares {count}")
            bad = unpacker.unpack() if fields == 3 else None
            if unpacker.tell() != len(self.body):
                raise ValueError("bytes follow the checkpoint's last field")
            return bad

        # The unpacker iterated at C speed: a Python generator per row costs 0.1 µs a file.
        return next_ino, islice(unpacker, count), rest


def decode_checkpoint_streamed(buf: memoryview | bytes, where: int) -> Checkpoint:
    """``decode_checkpoint`` whose state is a ``StreamedState`` (checked, not yet decoded)."""
    gen, last_seq, log_pos, body = _checked_body(buf, where)
    return Checkpoint(gen, last_seq, log_pos, StreamedState(bytes(body)))


def peek_checkpoint(buf: memoryview | bytes) -> tuple[int, int, int] | None:
    """``(generation, last_seq, log_pos)`` from a slot's header, unverified; None without magic."""
    if len(buf) < HEADER.size:
        return None
    magic, _crc, gen, last_seq, log_pos, _len = HEADER.unpack_from(buf, 0)
    return (gen, last_seq, log_pos) if magic == MAGIC else None
