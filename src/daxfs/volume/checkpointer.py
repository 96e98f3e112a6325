"""CheckpointWriter: a checkpoint written a slice at a time, between operations.

A checkpoint is the state as of one log position (its *snapshot*).  Writing the
whole state at once holds the volume lock for as long as that takes (0.6 s at
300,000 files), so the journal starts a writer when the log passes three
eighths of its ring, and each commit advances it by a slice sized to finish before the
log reaches half the ring (``Journal.commit``).

Rows are packed in ascending inode number (``Core.inodes`` keeps that order).
Before a record changes an inode the writer has not packed yet, the journal
calls ``touch`` and the writer copies that inode's row first: so every row is
the inode as it was at the snapshot, whatever changed since, and the bytes are
exactly those a one-shot checkpoint of the snapshot gives (``decode_checkpoint``
reads both).  A large directory is copied once (a C-level dict copy) and its
names packed a slice at a time.

Phases: rows (each slice packed, written and persisted into the older slot),
then the crc (read back from the slot, a slice at a time), then the header,
last.  No superblock names the slot being written until the journal flips
them after ``step`` returns True, so a crash at any point mounts the previous
checkpoint and the log after it.
"""

from __future__ import annotations

import errno
import zlib
from collections.abc import Iterable, Iterator

from daxfs.core import Core
from daxfs.core.rows import bad_field, dir_row, inode_row
from daxfs.errors import fs_error
from daxfs.format.checkpoint import HEADER, RowPacker, body_prefix, encode_header, header_fields
from daxfs.media import Pool

#: Directory entries packed per unit of work (a row is one unit, as are FLUSH_BYTES // 16
#: bytes read back for the crc): a unit costs about a microsecond.
ENTRIES_PER_UNIT = 8
CRC_BYTES_PER_UNIT = 1024
#: Packed bytes gathered before they are written and persisted into the slot.
FLUSH_BYTES = 64 * 1024
#: A large directory's names go a slice at a time past this many.
SLICE_ENTRIES = 4096

_ABSENT = object()


class CheckpointWriter:
    """One checkpoint of ``core`` as of now, written into ``pool`` at ``slot`` by ``step``."""

    def __init__(self, core: Core, pool: Pool, slot: int, slot_size: int, generation: int,
                 last_seq: int, log_pos: int) -> None:
        self.core = core
        self.pool = pool
        self.slot = slot
        self.slot_size = slot_size
        self.generation = generation
        self.last_seq = last_seq
        self.log_pos = log_pos
        self.keys = list(core.inodes)       # ascending: see Core
        self.index = 0                      # keys[:index] are packed
        self.end = core.next_ino            # inodes from here on were made after the snapshot
        #: rows of inodes changed since the snapshot before they were packed (ino -> row)
        self.before: dict[int, list[object]] = {}
        self.bad = bad_field(core)
        self.packer = RowPacker()
        self.pending = bytearray(body_prefix(core.next_ino, len(self.keys), self.bad is not None))
        self.written = 0                    # body bytes in the slot
        self.entries: Iterator[tuple[str, int]] | None = None     # a directory being packed
        self.entries_left = 0
        self.crc: int | None = None         # set once every row is written: the crc so far
        self.checked = 0                    # body bytes the crc covers
        self.row_bytes = 64.0               # packed bytes per row so far (for ``remaining``)

    # ------------------------------------------------------------ keeping the snapshot

    def touch(self, inos: Iterable[int]) -> None:
        """A record is about to change these inodes: keep the rows not packed yet."""
        keys = self.keys
        if self.index >= len(keys):
            return
        first = keys[self.index]            # every inode below it is packed already
        end = self.end
        before = self.before
        inodes = self.core.inodes
        for ino in inos:
            if first <= ino < end and ino not in before:
                node = inodes.get(ino)
                if node is not None:
                    before[ino] = dir_row(node) if node.entries is not None else inode_row(node)

    # ------------------------------------------------------------ writing

    def remaining(self) -> int:
        """Units of work left (an estimate: rows not packed, bytes not written or checked)."""
        rows = len(self.keys) - self.index
        unwritten = rows * self.row_bytes + len(self.pending)
        return (rows + self.entries_left // ENTRIES_PER_UNIT
                + int(self.written + unwritten - self.checked) // CRC_BYTES_PER_UNIT + 1)

    def step(self, units: int) -> bool:
        """Do about ``units`` of work; True when the checkpoint is complete in the slot."""
        while units > 0:
            if self.entries is not None:
                units -= self._pack_entries()
            elif self.index < len(self.keys):
                units -= self._pack_rows(units)
            elif self.crc is None:
                if self.bad is not None:
                    self.packer.value(self.bad)
                self._flush(force=True)
                self.crc = zlib.crc32(header_fields(self.generation, self.last_seq, self.log_pos, self.written))
            elif self.checked < self.written:
                n = min(self.written - self.checked, units * CRC_BYTES_PER_UNIT)
                start = self.slot + HEADER.size + self.checked
                self.crc = zlib.crc32(self.pool.view(start, n), self.crc)
                self.checked += n
                units -= n // CRC_BYTES_PER_UNIT + 1
            else:
                header = encode_header(self.crc, self.generation, self.last_seq, self.log_pos, self.written)
                self.pool.write(self.slot, header)
                self.pool.persist(self.slot, len(header))
                return True
        return False

    def _pack_rows(self, units: int) -> int:
        """Pack up to ``units`` rows (stopping at a directory too large for one slice)."""
        keys = self.keys
        inodes = self.core.inodes
        before = self.before
        packer = self.packer
        done = 0
        start_len = self.written + len(self.pending)
        while done < units and self.index < len(keys):
            ino = keys[self.index]
            self.index += 1
            done += 1
            row = before.pop(ino, _ABSENT)
            if row is _ABSENT:
                node = inodes.get(ino)
                if node is None:
                    raise RuntimeError(f"checkpoint writer: inode {ino} went away with no record naming it")
                if node.entries is None:
                    packer.row(inode_row(node))
                    continue
                row = dir_row(node) if len(node.entries) > SLICE_ENTRIES else inode_row(node)
            entries = row[9]                # type: ignore[index]
            if type(entries) is not dict:
                packer.row(row)
                continue
            packer.row_head(row[:9], len(entries))      # type: ignore[index]
            self.entries = iter(entries.items())
            self.entries_left = len(entries)
            break
        self._flush()
        if self.index:
            produced = self.written + len(self.pending) - start_len
            self.row_bytes += (produced / max(done, 1) - self.row_bytes) / 8
        return done

    def _pack_entries(self) -> int:
        """Pack the next slice of a large directory's names."""
        assert self.entries is not None
        packer = self.packer
        n = min(SLICE_ENTRIES, self.entries_left)
        for _ in range(n):
            name, ino = next(self.entries)
            packer.entry(name, ino)
        self.entries_left -= n
        if not self.entries_left:
            self.entries = None
        self._flush()
        return n // ENTRIES_PER_UNIT + 1

    def _flush(self, force: bool = False) -> None:
        """Write and persist what is packed, once there is enough of it (or ``force``)."""
        self.pending += self.packer.take()
        if len(self.pending) < FLUSH_BYTES and not force:
            return
        data = memoryview(self.pending)
        at = self.slot + HEADER.size + self.written
        if at + len(data) > self.slot + self.slot_size:
            raise fs_error(errno.ENOSPC, message="metadata no longer fits the checkpoint area")
        self.pool.write(at, data)
        self.pool.persist(at, len(data))
        self.written += len(data)
        data.release()
        self.pending = bytearray()


__all__ = ["CheckpointWriter"]
