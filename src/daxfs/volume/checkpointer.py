"""CheckpointWriter: a checkpoint written a slice at a time, between operations.

A checkpoint is the state as of one log position (its *snapshot*).  Writing the
whole state at once holds the volume lock for as long as that takes (0.6 s at
300,000 files), so the journal starts a writer when the log passes three eighths
of its ring, and each commit advances it by a slice sized to finish before the
log reaches half the ring (``Journal.commit``).

Rows are packed in ascending inode number (``Core.inodes`` keeps that order).
Before a record changes an inode the writer has not packed yet, the journal
calls ``touch`` and the writer copies that inode's row first: so every row is
the inode as it was at the snapshot, whatever changed since, and the body
decodes to what a one-shot checkpoint of the snapshot holds (only the rows'
array header takes its 32-bit form).  A large directory is copied once (a C-level dict copy) and its
names packed a slice at a time.

Rows of inodes no record changed since the previous checkpoint's snapshot are
copied from that checkpoint's slot (a run of them at a time) instead of packed
again, once its crc has been checked afresh: so a checkpoint costs what changed,
plus a memory copy and two checksum passes.

Phases: the previous checkpoint's crc (when rows are to be copied from it),
rows (each slice packed, written and persisted into the older slot), the crc
(read back from the slot, a slice at a time), where each row starts (for the
next checkpoint), then the header, last.  No superblock names the slot being written until the journal flips
them after ``step`` returns True, so a crash at any point mounts the previous
checkpoint and the log after it.
"""

from __future__ import annotations

import errno
import zlib
from array import array
from collections.abc import Iterable, Iterator
from itertools import accumulate, islice
from typing import NamedTuple

from daxfs.core import Core
from daxfs.core.chunked import ChunkedSet
from daxfs.core.rows import bad_field, dir_row, inode_row
from daxfs.errors import fs_error
from daxfs.format.checkpoint import HEADER, MAGIC, RowPacker, body_prefix, encode_header, header_fields
from daxfs.media import Pool

#: Work is paced in units of about a microsecond: a row packed is one, as are this many
#: directory entries, this many bytes read for a crc, and this many rows copied.
ENTRIES_PER_UNIT = 8
CRC_BYTES_PER_UNIT = 1024
ROWS_COPIED_PER_UNIT = 16
OFFSETS_PER_UNIT = 32
#: Packed bytes gathered before they are written and persisted into the slot.
FLUSH_BYTES = 64 * 1024
#: A large directory's names go a slice at a time past this many.
SLICE_ENTRIES = 4096
#: Rows compared, and copied from the previous checkpoint when all are unchanged, at once.
COPY_CHUNK = 64

_ABSENT = object()


class RowIndex(NamedTuple):
    """Where a complete checkpoint's rows lie in the pool: row ``i`` (inode ``keys[i]``) is
    ``lengths[i]`` body bytes from ``offsets[i]``, the body starting at pool offset ``body``."""

    generation: int
    body: int
    end: int            # its snapshot's next_ino: every inode made since is numbered from here
    keys: array
    lengths: array
    offsets: array


class CheckpointWriter:
    """One checkpoint of ``core`` as of now, written into ``pool`` at ``slot`` by ``step``."""

    def __init__(self, core: Core, pool: Pool, slot: int, slot_size: int, generation: int,
                 last_seq: int, log_pos: int, previous: RowIndex | None = None,
                 changed: ChunkedSet | None = None) -> None:
        self.core = core
        self.pool = pool
        self.slot = slot
        self.slot_size = slot_size
        self.generation = generation
        self.last_seq = last_seq
        self.log_pos = log_pos
        self.end = core.next_ino            # inodes from here on were made after the snapshot
        self.count = len(core.inodes)       # rows in this checkpoint
        # The inodes to look at, ascending: with a previous checkpoint, its inodes and then the
        # numbers given out since (``tail`` up to ``end``): no list of a million keys is made
        # here, under the lock.  Without one: every inode (``Core.inodes`` is in ino order).
        previous = previous if changed is not None else None
        self.keys: list[int] | array = previous.keys if previous is not None else list(core.inodes)
        self.index = 0                      # keys[:index] are done
        self.tail = previous.end if previous is not None else self.end
        self.out_keys = array("Q")          # the inodes this checkpoint holds, in order
        #: rows of inodes changed since the snapshot before they were packed (ino -> row)
        self.before: dict[int, list[object]] = {}
        self.bad = bad_field(core)
        self.packer = RowPacker()
        self.pending = bytearray(body_prefix(core.next_ino, self.count, self.bad is not None))
        self.written = 0                    # body bytes in the slot
        self.entries: Iterator[tuple[str, int]] | None = None     # a directory being packed
        self.entries_left = 0
        self.crc: int | None = None         # set once every row is written: the crc so far
        self.checked = 0                    # body bytes the crc covers
        self.row_bytes = 64.0               # packed bytes per row so far (for ``remaining``)
        #: the checkpoint before (its rows' places) and the inodes changed since its snapshot:
        #: every other row is copied from it as it is, not packed again.  None when there is
        #: none, or its bytes are not what it wrote (its crc is checked first: ``verify``).
        self.copy_from = previous
        self.previous_keys = previous is not None     # (then an inode looked at may be gone)
        #: (checked, body length, crc so far, crc wanted) of the previous checkpoint, until checked
        self.verify: tuple[int, int, int, int] | None = None
        if previous is not None:
            with pool.view(previous.body - HEADER.size, HEADER.size) as head:
                magic, want, gen, last_seq, log_pos, body_len = HEADER.unpack_from(head, 0)
            if magic != MAGIC or gen != previous.generation or body_len > slot_size - HEADER.size:
                self.copy_from = None
            else:
                self.verify = (0, body_len, zlib.crc32(header_fields(gen, last_seq, log_pos, body_len)), want)
        self.changed = changed if changed is not None else ChunkedSet()
        self.copy_start = self.copy_end = 0     # a run of the previous body waiting to be copied
        self.copied = 0                     # rows copied
        self.lengths = array("I")           # each row's length in this body
        self.dir_start = 0                  # where the directory being packed starts
        self.row_by_row = 0                 # keys[index:row_by_row] hold a change: no chunk copy
        #: where each row starts in the body, and past the last (built once all are written)
        self.offsets = array("Q", [len(self.pending)])

    # ------------------------------------------------------------ keeping the snapshot

    def touch(self, inos: Iterable[int]) -> None:
        """A record is about to change these inodes: keep the rows not packed yet."""
        keys = self.keys
        if self.index < len(keys):
            first = keys[self.index]        # every inode below it is done already
        elif self.tail < self.end:
            first = self.tail
        else:
            return
        end = self.end
        before = self.before
        inodes = self.core.inodes
        # A row unchanged since the previous checkpoint is copied from it, not from the inode
        # (an inode not in ``changed`` existed then: its create would be in ``changed``); until
        # that checkpoint's crc is checked, every row is kept.
        copied = self.changed if self.copy_from is not None and self.verify is None else None
        for ino in inos:
            if first <= ino < end and ino not in before and (copied is None or ino in copied):
                node = inodes.get(ino)
                if node is not None:
                    before[ino] = dir_row(node) if node.entries is not None else inode_row(node)

    # ------------------------------------------------------------ writing

    def remaining(self) -> int:
        """Units of work left (an estimate: rows not packed, bytes not written or checked)."""
        rows = len(self.keys) - self.index + self.end - self.tail
        unwritten = rows * self.row_bytes + len(self.pending)
        verify = 0 if self.verify is None else self.verify[1] - self.verify[0]
        return (rows + self.entries_left // ENTRIES_PER_UNIT
                + int(self.written + unwritten - self.checked + verify) // CRC_BYTES_PER_UNIT
                + (self.count - len(self.offsets)) // OFFSETS_PER_UNIT + 2)

    def _verify_previous(self, units: int) -> int:
        """Check the previous checkpoint's crc a slice at a time before any row is copied
        from it: bytes that changed in the pool since it was written are never carried on
        (then every row is packed from memory)."""
        assert self.verify is not None and self.copy_from is not None
        done, end, crc, want = self.verify
        n = min(end - done, units * CRC_BYTES_PER_UNIT)
        with self.pool.view(self.copy_from.body + done, n) as body:
            crc = zlib.crc32(body, crc)
        done += n
        if done < end:
            self.verify = (done, end, crc, want)
        else:
            self.verify = None
            if crc != want:
                self.copy_from = None
            else:       # rows kept meanwhile that will be copied after all
                before = self.before
                for ino in [ino for ino in before if ino not in self.changed]:
                    del before[ino]
        return n // CRC_BYTES_PER_UNIT + 1

    def step(self, units: int) -> bool:
        """Do about ``units`` of work; True when the checkpoint is complete in the slot."""
        while units > 0:
            if self.verify is not None:
                units -= self._verify_previous(units)
            elif self.entries is not None:
                units -= self._pack_entries()
            elif self.index < len(self.keys) or self.tail < self.end:
                units -= self._pack_rows(units)
            elif self.crc is None:
                if len(self.out_keys) != self.count:
                    raise RuntimeError(f"checkpoint writer: {len(self.out_keys)} rows for {self.count} inodes")
                if self.bad is not None:
                    self.packer.value(self.bad)
                self._flush(force=True)
                self.crc = zlib.crc32(header_fields(self.generation, self.last_seq, self.log_pos, self.written))
            elif self.checked < self.written:
                n = min(self.written - self.checked, units * CRC_BYTES_PER_UNIT)
                with self.pool.view(self.slot + HEADER.size + self.checked, n) as body:
                    self.crc = zlib.crc32(body, self.crc)
                self.checked += n
                units -= n // CRC_BYTES_PER_UNIT + 1
            elif len(self.offsets) <= len(self.lengths):
                # where each row starts, for the next checkpoint to copy from
                n = len(self.offsets) - 1
                k = min(len(self.lengths) - n, units * OFFSETS_PER_UNIT)
                self.offsets.extend(islice(accumulate(self.lengths[n:n + k], initial=self.offsets[-1]), 1, None))
                units -= k // OFFSETS_PER_UNIT + 1
            else:
                header = encode_header(self.crc, self.generation, self.last_seq, self.log_pos, self.written)
                self.pool.write(self.slot, header)
                self.pool.persist(self.slot, len(header))
                return True
        return False

    def _pack_rows(self, units: int) -> int:
        """Pack up to ``units`` rows (stopping at a directory too large for one slice); rows
        unchanged since the previous checkpoint are copied from it, a chunk at a time where
        none of a chunk's inodes changed."""
        keys = self.keys
        inodes = self.core.inodes
        before = self.before
        packer = self.packer
        lengths = self.lengths
        out = self.out_keys
        copy_from = self.copy_from
        changed = self.changed
        done = 0
        start_len = self._body_len()
        while done < units:
            index = self.index
            if index < len(keys):
                if copy_from is not None:           # keys are copy_from's: row ``index`` is there
                    if index >= self.row_by_row:
                        k = min(COPY_CHUNK, len(keys) - index)
                        chunk = keys[index:index + k]
                        if changed.isdisjoint(chunk):
                            self._copy(copy_from.offsets[index], copy_from.offsets[index + k])
                            lengths.extend(copy_from.lengths[index:index + k])
                            out.extend(chunk)
                            self.index = index + k
                            self.copied += k
                            done += k // ROWS_COPIED_PER_UNIT + 1
                            continue
                        self.row_by_row = index + k     # a change in there: this stretch row by row
                    ino = keys[index]
                    self.index = index + 1
                    done += 1
                    if ino not in changed:
                        self._copy(copy_from.offsets[index], copy_from.offsets[index + 1])
                        lengths.append(copy_from.lengths[index])
                        out.append(ino)
                        self.copied += 1
                        continue
                else:
                    ino = keys[index]
                    self.index = index + 1
                    done += 1
            elif self.tail < self.end:
                ino = self.tail
                self.tail = ino + 1
                done += 1
            else:
                break
            row_start = self._body_len()
            row = before.pop(ino, _ABSENT)
            if row is _ABSENT:
                node = inodes.get(ino)
                if node is None:
                    if self.previous_keys:
                        continue    # made or removed since the previous snapshot: gone at this one
                    raise RuntimeError(f"checkpoint writer: inode {ino} went away with no record naming it")
                out.append(ino)
                if node.entries is None:
                    self._append(packer.packed(inode_row(node)))
                    lengths.append(self._body_len() - row_start)
                    continue
                row = dir_row(node) if len(node.entries) > SLICE_ENTRIES else inode_row(node)
            else:
                out.append(ino)
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
        if done:
            produced = self._body_len() - start_len
            self.row_bytes += (produced / done - self.row_bytes) / 8
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
            assert self.copy_from is not None
            with self.pool.view(self.copy_from.body + self.copy_start, n) as old:
                self.pending += old
        self.copy_start = self.copy_end = 0

    def index_of(self) -> RowIndex:
        """Where this checkpoint's rows lie, for the next one to copy from (once complete)."""
        return RowIndex(self.generation, self.slot + HEADER.size, self.end, self.out_keys, self.lengths,
                        self.offsets)

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
