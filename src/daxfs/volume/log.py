"""LogRing: appends records to the pool's log region and replays them.

The volume decides *when* (validate first, checkpoint when needed); the ring
decides *where*: it keeps the virtual head, the tail it may not overwrite
(the older checkpoint's start), and persists every record before returning.
"""

from __future__ import annotations

from collections.abc import Callable

from daxfs.core.records import Record
from daxfs.errors import CorruptVolumeError
from daxfs.format.log import (HEADER, PAD_CODE, BadRecordError, decode_record, encode_pad, encode_record, frame_at,
                              later_record, new_packer)
from daxfs.media.pool import Pool


class LogRing:
    """The log region as a ring of records."""

    def __init__(self, pool: Pool, offset: int, size: int, volume_id: int, *,
                 head: int, tail: int, next_seq: int) -> None:
        self.pool = pool
        self.offset = offset
        self.size = size
        self.volume_id = volume_id
        self.head = head            # virtual position of the next record
        self.tail = tail            # oldest position still needed (older checkpoint)
        self.next_seq = next_seq
        self._packer = new_packer()
        #: ``(start, end)`` byte ranges of the region (physical) that are bad memory: never written
        self.bad: list[tuple[int, int]] = []

    def encode(self, record: Record) -> bytes:
        return encode_record(record, self.volume_id, self.next_seq, self._packer)

    def cost(self, n: int) -> int:
        """Ring bytes an append of ``n`` bytes consumes (a skipped lap end included)."""
        rem = self.size - self.head % self.size
        return n if n <= rem else rem + n

    def fits(self, n: int) -> bool:
        return self.head - self.tail + self.cost(n) <= self.size

    def _spans(self, head: int, n: int) -> list[tuple[int, int]]:
        """Physical ranges an append of ``n`` bytes at ``head`` writes (a lap end's PAD too)."""
        phys = head % self.size
        rem = self.size - phys
        if n <= rem:
            return [(phys, phys + n)]
        return ([(phys, phys + HEADER.size)] if rem >= HEADER.size else []) + [(0, n)]

    def blocked(self, n: int) -> bool:
        """Whether appending ``n`` bytes now would write bad memory."""
        return any(a < e and s < b for a, b in self._spans(self.head, n) for s, e in self.bad)

    def clear_position(self, n: int) -> int | None:
        """The first virtual position from the head where ``n`` bytes fit in one lap without
        touching bad memory (None: nowhere).  Jumping there writes nothing: the journal then
        checkpoints, so no replay ever has to cross the gap."""
        head = self.head
        for _ in range(2 * len(self.bad) + 2):
            phys = head % self.size
            if n > self.size - phys:
                head += self.size - phys        # straight to the next lap: no PAD is needed
                continue
            hit = [e for s, e in self.bad if s < phys + n and phys < e]
            if not hit:
                return head
            head += max(hit) - phys
        return None

    def append(self, record: Record, data: bytes) -> None:
        """Write and persist ``data`` (``record`` encoded at ``next_seq``)."""
        pool = self.pool
        phys = self.head % self.size
        rem = self.size - phys
        if len(data) > rem:
            if rem >= HEADER.size:
                pad = encode_pad(self.volume_id, self.next_seq)
                pool.write(self.offset + phys, pad)
                pool.persist(self.offset + phys, len(pad))
                self.next_seq += 1
                data = encode_record(record, self.volume_id, self.next_seq, self._packer)
            self.head += rem
            phys = 0
        pool.write(self.offset + phys, data)
        pool.persist(self.offset + phys, len(data))
        self.head += len(data)
        self.next_seq += 1

    @staticmethod
    def peek(pool: Pool, offset: int, size: int, volume_id: int, head: int, seq: int) -> bool:
        """Whether the valid record ``seq`` (or a PAD) starts at virtual position ``head``."""
        phys = head % size
        if size - phys < HEADER.size:
            phys = 0
        view = pool.view(offset, size)
        try:
            return decode_record(view, phys, volume_id, seq) is not None
        finally:
            view.release()

    @staticmethod
    def replay(pool: Pool, offset: int, size: int, volume_id: int, *, start: int, first_seq: int,
               apply: Callable[[Record], None], check_damage: bool = True,
               stop_before_seq: int | None = None) -> tuple[int, int]:
        """Apply every record from ``start``; return ``(head, next_seq)`` after the last.

        Stops at the torn tail, or before record ``stop_before_seq``.  A record with a
        valid checksum that does not decode or does not apply raises BadRecordError
        (``apply`` may have half-applied it: rebuild the state to use what came before).
        With ``check_damage``, CorruptVolumeError if a valid record lies beyond the torn
        tail (a follower skips that: the writer may be appending).
        """
        view = pool.view(offset, size)
        pos = start
        seq = first_seq
        later = None
        try:
            while pos - start < size and seq != stop_before_seq:
                phys = pos % size
                rem = size - phys
                if rem < HEADER.size:
                    pos += rem
                    continue
                try:
                    found = decode_record(view, phys, volume_id, seq)
                except BadRecordError as bad:
                    raise BadRecordError(bad.what, seq=seq, kind=bad.kind, where=offset + phys, pos=pos) from None
                if found is None:
                    break
                record, length = found
                if record is None:
                    length = rem
                else:
                    try:
                        apply(record)
                    except Exception as exc:    # any way a record fails to apply: a bad record, never a crash
                        kind = type(record).__name__
                        what = exc.what if isinstance(exc, CorruptVolumeError) else repr(exc)
                        raise BadRecordError(f"log record {seq} ({kind}) does not apply to the state before "
                                             f"it: {what}", seq=seq, kind=kind, where=offset + phys,
                                             pos=pos) from None
                pos += length
                seq += 1
            if check_damage and seq != stop_before_seq:
                later = later_record(view, volume_id, seq - 1)
        finally:
            view.release()
        if later is not None:
            raise CorruptVolumeError(f"log record {seq} is unreadable but a later record follows it "
                                     f"(`daxfs fsck --repair` keeps the records before it)", where=offset + later)
        return pos, seq

    @staticmethod
    def count_from(pool: Pool, offset: int, size: int, volume_id: int, *, start: int, first_seq: int) -> int:
        """How many records with valid checksums follow in sequence from ``start`` (bodies unread)."""
        view = pool.view(offset, size)
        pos = start
        seq = first_seq
        try:
            while pos - start < size:
                phys = pos % size
                rem = size - phys
                if rem < HEADER.size:
                    pos += rem
                    continue
                found = frame_at(view, phys, volume_id, seq)
                if found is None:
                    break
                pos += rem if found[0] == PAD_CODE else found[1]
                seq += 1
        finally:
            view.release()
        return seq - first_seq
