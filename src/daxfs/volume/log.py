"""LogRing: appends records to the pool's log region and replays them.

The volume decides *when* (validate first, checkpoint when needed); the ring
decides *where*: it keeps the virtual head, the tail it may not overwrite
(the older checkpoint's start), and persists every record before returning.
"""

from __future__ import annotations

from collections.abc import Callable

from daxfs.core.records import Record
from daxfs.errors import CorruptVolumeError
from daxfs.format.log import HEADER, decode_record, encode_pad, encode_record, later_record, new_packer
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

    def encode(self, record: Record) -> bytes:
        return encode_record(record, self.volume_id, self.next_seq, self._packer)

    def cost(self, n: int) -> int:
        """Ring bytes an append of ``n`` bytes consumes (a skipped lap end included)."""
        rem = self.size - self.head % self.size
        return n if n <= rem else rem + n

    def fits(self, n: int) -> bool:
        return self.head - self.tail + self.cost(n) <= self.size

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

        Stops at the torn tail; with ``check_damage``, CorruptVolumeError if a valid
        record lies beyond it (a follower skips that: the writer may be appending).
        ``stop_before_seq``: stop before that record, as if the log ended there.
        """
        view = pool.view(offset, size)
        pos = start
        seq = first_seq
        try:
            while pos - start < size:
                if stop_before_seq is not None and seq >= stop_before_seq:
                    check_damage = False
                    break
                phys = pos % size
                rem = size - phys
                if rem < HEADER.size:
                    pos += rem
                    continue
                found = decode_record(view, phys, volume_id, seq)
                if found is None:
                    break
                record, length = found
                if record is None:
                    length = rem
                else:
                    try:
                        apply(record)
                    except CorruptVolumeError:
                        raise
                    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
                        raise CorruptVolumeError(f"log record {seq} ({type(record).__name__}) does not "
                                                 f"apply to the state before it ({exc!r})",
                                                 where=offset + phys) from None
                pos += length
                seq += 1
            later = later_record(view, volume_id, seq - 1) if check_damage else None
        finally:
            view.release()
        if later is not None:
            raise CorruptVolumeError(f"log record {seq} is unreadable but a later record follows it",
                                     where=offset + later)
        return pos, seq
