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

Rows of inodes no record changed since the previous checkpoint's snapshot are
copied from that checkpoint's slot (a run of them at a time) instead of packed
again, once its crc has been checked afresh: so a checkpoint costs what changed,
plus a memory copy and two checksum passes.

Phases: rows (each slice packed, written and persisted into the older slot),
then the crc (read back from the slot, a slice at a time), then the header,
last.  No superblock names the slot being written until the journal flips
them after ``step`` returns True, so a crash at any point mounts the previous
checkpoint and the log after it.
"""

from __future__ import annotations

import errno
import zlib
from array import array
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import NamedTuple

from daxfs.core import Core
from daxfs.core.rows import bad_field, dir_row, inode_row
from daxfs.errors import fs_error
from daxfs.format.checkpoint import HEADER, MAGIC, RowPacker, body_prefix, encode_header, header_fields
from daxfs.media import Pool

#: Directory entries packed per unit of work (a row is one unit, as are FLUSH_BYTES // 16
#: bytes read back for the crc): a unit costs about a microsecond.
ENTRIES_PER_UNIT = 8
CRC_BYTES_PER_UNIT = 1024
#: Packed bytes gathered before they are written and persisted into the slot.
FLUSH_BYTES = 64 * 1024
#: A large directory's names go a slice at a time past this many.
SLICE_ENTRIES = 4096
#: Rows compared, and copied from the previous checkpoint when all are unchanged, at once.
COPY_CHUNK = 64
ROWS_COPIED_PER_UNIT = 16

_ABSENT = object()


class RowIndex(NamedTuple):
    """Where a complete checkpoint's rows lie in the pool: row ``i`` (inode ``keys[i]``) is
    ``lengths[i]`` body bytes from ``offsets[i]``, the body starting at pool offset ``body``."""

    generation: int
    body: int
    keys: list[int]
    lengths: array
    offsets: array


class CheckpointWriter:
    """One checkpoint of ``core`` as of now, written into ``pool`` at ``slot`` by ``step``."""

    def __init__(self, core: Core, pool: Pool, slot: int, slot_size: int, generation: int,
                 last_seq: int, log_pos: int, previous: RowIndex | None = None,
                 changed: set[int] | None = None) -> None:
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
        self.first_row = len(self.pending)  # where the first row starts in the body
        self.written = 0                    # body bytes in the slot
        self.entries: Iterator[tuple[str, int]] | None = None     # a directory being packed
        self.entries_left = 0
        self.crc: int | None = None         # set once every row is written: the crc so far
        self.checked = 0                    # body bytes the crc covers
        self.row_bytes = 64.0               # packed bytes per row so far (for ``remaining``)
        #: the checkpoint before (its rows' places) and the inodes changed since its snapshot:
        #: every other row is copied from it as it is, not packed again
        self.previous = previous if changed is not None else None
        #: (checked, body length, crc so far, crc wanted) of the previous checkpoint, until checked
        self.verify: tuple[int, int, int, int] | None = None
        if self.previous is not None:
            with pool.view(self.previous.body - HEADER.size, HEADER.size) as head:
                magic, want, gen, last_seq, log_pos, body_len = HEADER.unpack_from(head, 0)
            if magic != MAGIC or gen != self.previous.generation or \
                    body_len > slot_size - HEADER.size:
                self.previous = None
            else:
                self.verify = (0, body_len, zlib.crc32(header_fields(gen, last_seq, log_pos, body_len)), want)
        self.changed: set[int] = changed if changed is not None else set()
        self.prev_i = 0                     # previous.keys[:prev_i] are below the next inode
        self.copy_start = self.copy_end = 0     # a run of the previous body waiting to be copied
        self.copied = 0                     # rows copied
        self.lengths = array("I")           # each row's length in this body
        self.dir_start = 0                  # where the directory being packed starts
        self.row_by_row = 0                 # keys[index:row_by_row] hold a change: no chunk copy

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
        # a row unchanged since the previous checkpoint is copied from it, not from the inode
        # (an inode not in ``changed`` existed then: its create would be in ``changed``)
        copied = self.changed if self.previous is not None else None
        for ino in inos:
            if first <= ino < end and ino not in before and (copied is None or ino in copied):
                node = inodes.get(ino)
                if node is not None:
                    before[ino] = dir_row(node) if node.entries is not None else inode_row(node)

    # ------------------------------------------------------------ writing

    def remaining(self) -> int:
        """Units of work left (an estimate: rows not packed, bytes not written or checked)."""
        rows = len(self.keys) - self.index
        unwritten = rows * self.row_bytes + len(self.pending)
        verify = 0 if self.verify is None else self.verify[1] - self.verify[0]
        return (rows + self.entries_left // ENTRIES_PER_UNIT
                + int(self.written + unwritten - self.checked + verify) // CRC_BYTES_PER_UNIT + 1)

    def _verify_previous(self, units: int) -> int:
        """Check the previous checkpoint's crc a slice at a time before any row is copied
        from it: bytes that changed in the pool since it was written are never carried on
        (then every row is packed from memory)."""
        assert self.verify is not None and self.previous is not None
        done, end, crc, want = self.verify
        n = min(end - done, units * CRC_BYTES_PER_UNIT)
        with self.pool.view(self.previous.body + done, n) as body:
            crc = zlib.crc32(body, crc)
        done += n
        if done < end:
            self.verify = (done, end, crc, want)
        else:
            self.verify = None
            if crc != want:
                self.previous = None
        return n // CRC_BYTES_PER_UNIT + 1

    def step(self, units: int) -> bool:
        """Do about ``units`` of work; True when the checkpoint is complete in the slot."""
        while units > 0:
            if self.verify is not None:
                units -= self._verify_previous(units)
            elif self.entries is not None:
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
        """Pack up to ``units`` rows (stopping at a directory too large for one slice); rows
        unchanged since the previous checkpoint are copied from it, a chunk at a time where
        a chunk of inodes is the same in both and none changed."""
        keys = self.keys
        inodes = self.core.inodes
        before = self.before
        packer = self.packer
        lengths = self.lengths
        previous = self.previous
        changed = self.changed
        done = 0
        start_len = self._body_len()
        while done < units and self.index < len(keys):
            index = self.index
            if previous is not None and index >= self.row_by_row:
                i = self.prev_i
                k = min(COPY_CHUNK, len(keys) - index)
                chunk = keys[index:index + k]
                if chunk == previous.keys[i:i + k] and changed.isdisjoint(chunk):
                    self._copy(previous.offsets[i], previous.offsets[i + k])
                    lengths.extend(previous.lengths[i:i + k])
                    self.index += k
                    self.prev_i = i + k
                    self.copied += k
                    done += k // ROWS_COPIED_PER_UNIT + 1
                    continue
                self.row_by_row = index + k     # a change in there: this stretch row by row
            ino = keys[index]
            self.index += 1
            done += 1
            row_start = self._body_len()
            if previous is not None:
                prev_keys = previous.keys
                i = self.prev_i
                while i < len(prev_keys) and prev_keys[i] < ino:
                    i += 1
                if i < len(prev_keys) and prev_keys[i] == ino:
                    self.prev_i = i + 1
                    if ino not in changed:
                        self._copy(previous.offsets[i], previous.offsets[i + 1])
                        lengths.append(previous.lengths[i])
                        self.copied += 1
                        continue
                else:
                    self.prev_i = i
            row = before.pop(ino, _ABSENT)
            if row is _ABSENT:
                node = inodes.get(ino)
                if node is None:
                    raise RuntimeError(f"checkpoint writer: inode {ino} went away with no record naming it")
                if node.entries is None:
                    self._append(packer.packed(inode_row(node)))
                    lengths.append(self._body_len() - row_start)
                    continue
                row = dir_row(node) if len(node.entries) > SLICE_ENTRIES else inode_row(node)
            entries = row[9]                # type: ignore[index]
            if type(entries) is not dict:
                self._append(packer.packed(row))
                lengths.append(self._body_len() - row_start)
                continue
            self._drain_copy()
            self.dir_start = row_start
            packer.row_head(row[:9], len(entries))      # type: ignore[index]
            self.entries = iter(entries.items())
            self.entries_left = len(entries)
            break
        self._flush()
        if self.index:
            produced = self._body_len() - start_len
            self.row_bytes += (produced / max(done, 1) - self.row_bytes) / 8
        return done

    def _copy(self, start: int, end: int) -> None:
        """Add previous body bytes ``[start, end)`` to the run waiting to be copied."""
        if start != self.copy_end or self.copy_end == self.copy_start:
            self._drain_copy()
            self.copy_start = start
        self.copy_end = end

    def _body_len(self) -> int:
        """Body bytes so far: written, pending, and a run still to copy."""
        return self.written + len(self.pending) + self.copy_end - self.copy_start

    def _append(self, data: bytes) -> None:
        if self.copy_end != self.copy_start:
            self._drain_copy()
        self.pending += data

    def _drain_copy(self) -> None:
        """Copy the waiting run of the previous body into ``pending``."""
        n = self.copy_end - self.copy_start
        if n:
            assert self.previous is not None
            with self.pool.view(self.previous.body + self.copy_start, n) as old:
                self.pending += old
        self.copy_start = self.copy_end = 0

    def index_of(self) -> RowIndex:
        """Where this checkpoint's rows lie, for the next one to copy from (once complete)."""
        offsets = array("Q", accumulate(self.lengths, initial=self.first_row))
        return RowIndex(self.generation, self.slot + HEADER.size, self.keys, self.lengths, offsets)

    def _pack_entries(self) -> int:
        """Pack the next slice of a large directory's names."""
        assert self.entries is not None
        packer = self.packer
        n = min(SLICE_ENTRIES, self.entries_left)
        for _ in range(n):
            name, ino = next(self.entries)
            packer.entry(name, ino)
        self.entries_left -= n
        self._flush()
        if not self.entries_left:
            self.entries = None
            self.lengths.append(self._body_len() - self.dir_start)
        return n // ENTRIES_PER_UNIT + 1

    def _flush(self, force: bool = False) -> None:
        """Write and persist what is packed, once there is enough of it (or ``force``)."""
        taken = self.packer.take()
        if taken:
            self._append(taken)
        if self.copy_end - self.copy_start + len(self.pending) >= FLUSH_BYTES or force:
            self._drain_copy()
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


__all__ = ["CheckpointWriter", "RowIndex"]
