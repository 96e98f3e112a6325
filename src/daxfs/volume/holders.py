"""HolderTable: which processes still hold pool memory, and which blocks — across arbiters.

LMDB's reader table, for pool blocks.  A side file (``POOL.holders``) holds a
slot per connected client process: its pid, uid, name and the pool byte
ranges it holds (pins, mappings, blocks being written).  The arbiter writes a
client's slot *before* it hands the client the blocks, and clears ranges only
after the client let go of them.  The client proves it is alive by holding an
OFD write lock on one byte of the file (byte ``i`` for slot ``i``): the
kernel drops it when the process dies, so a reused pid cannot look alive, and
no message is needed.  A restarted arbiter reads every slot whose lock is
still held and keeps those blocks busy until the lock goes or the slot
forgets them (seed 002: the pool must not go away while a page reference is
live).

A slot ends in a CRC-32 of the rest (``DXS2`` slots; ``DXSL`` ones, from
arbiters before it, have none and are read as they were).  One process writes
a slot while another may read it (a client republishing its own after its
arbiter died, as a restarted one reads the table), and a read racing a write
can see half of each: such a slot is read again, and one that stays unreadable
counts as holding the whole pool.

Invariants: a slot's ranges are a superset of what its process may touch
(over-approximating when they do not fit, or when the slot cannot be read, is
safe; forgetting is not); the arbiter's own open file description never holds
a slot lock, so a lock seen by ``alive`` is always a client's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import time
import zlib
from collections.abc import Iterable

from daxfs.errors import BusyError

MAGIC = b"DXHT"
VERSION = 1
SLOT_SIZE = 4096
SLOTS = 1024
_HEADER = struct.Struct("<4sIII")                 # magic, version, slot size, slots
_SLOT = struct.Struct("<4sIIII64s")                # magic, pid, uid, gid, run count, name
_RUN = struct.Struct("<QQ")                        # pool offset, length
_CRC = struct.Struct("<I")                         # at the slot's end: CRC-32 of the bytes before it
MAX_RUNS = (SLOT_SIZE - _SLOT.size - _CRC.size) // _RUN.size
SLOT_MAGIC = b"DXS2"                               # a slot with its CRC
OLD_SLOT_MAGIC = b"DXSL"                           # one without (written by an older arbiter)
#: what a live slot that cannot be read holds: every byte of the pool, as far as anyone can tell
WHOLE_POOL = [(0, 1 << 62)]
_READ_TRIES = 20                                   # (a write in progress ends within microseconds)
_FIRST = SLOT_SIZE                                 # slot 0 starts after the header block

# struct flock for the OFD lock commands (x86-64 and aarch64 layout)
_F_OFD_GETLK, _F_OFD_SETLK = 36, 37
_FLOCK = struct.Struct("hhqqi")


def side_path(pool: str, suffix: str) -> str:
    """A file that belongs beside a pool: ``POOL<suffix>`` next to a pool file; for a device
    (where nothing can be created beside it), ``/run/daxfs/<name><suffix>``."""
    path = os.path.abspath(pool)
    try:
        device = not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        device = False
    if device:
        return os.path.join("/run/daxfs", os.path.basename(path) + suffix)
    return path + suffix


def holders_path(pool: str) -> str:
    """The table's file for a pool: ``POOL.holders`` (in /run/daxfs for a device)."""
    return side_path(pool, ".holders")


def _lock(fd: int, cmd: int, kind: int, slot: int) -> bytes:
    return fcntl.fcntl(fd, cmd, _FLOCK.pack(kind, os.SEEK_SET, slot, 1, 0))


def take_slot_lock(fd: int, slot: int) -> bool:
    """Client side: hold slot ``slot``'s liveness lock on ``fd`` (its own open of the file)."""
    try:
        _lock(fd, _F_OFD_SETLK, fcntl.F_WRLCK, slot)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def drop_slot_lock(fd: int, slot: int) -> None:
    try:
        _lock(fd, _F_OFD_SETLK, fcntl.F_UNLCK, slot)
    except OSError:
        pass


def _pack_runs(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge ``runs`` until they fit a slot, by closing the smallest gaps (holding more is safe)."""
    runs = sorted(runs)
    merged: list[tuple[int, int]] = []
    for off, n in runs:
        if merged and off <= merged[-1][0] + merged[-1][1]:
            start = merged[-1][0]
            merged[-1] = (start, max(merged[-1][1], off + n - start))
        else:
            merged.append((off, n))
    while len(merged) > MAX_RUNS:
        gaps = sorted(range(len(merged) - 1), key=lambda i: merged[i + 1][0] - merged[i][0] - merged[i][1])
        i = gaps[0]
        start = merged[i][0]
        merged[i:i + 2] = [(start, merged[i + 1][0] + merged[i + 1][1] - start)]
    return merged


def _share_like(fd: int, pool: os.stat_result) -> None:
    """Give a table this process just made the pool's read and write bits, and its owner and
    group where allowed: whoever may open the pool must be able to read the table, or an
    embedded ``open_volume`` by another user could not tell whether clients of a stopped
    arbiter still hold blocks.  Group bits only with the pool's group (else they would let
    the arbiter's own group in)."""
    for uid, gid in ((pool.st_uid, pool.st_gid), (-1, pool.st_gid)):
        try:
            os.fchown(fd, uid, gid)
            break
        except OSError as exc:
            if exc.errno != errno.EPERM:     # only root gives a file away; a member its group
                raise
    mode = stat.S_IMODE(pool.st_mode) & 0o666
    if os.fstat(fd).st_gid != pool.st_gid:
        mode &= 0o606
    os.fchmod(fd, mode)


def _open_table(path: str, flags: int, like: os.stat_result | None) -> int:
    """The table's descriptor, never through a symlink, and with ``O_CREAT`` (the arbiter,
    often root, in a directory the pool's owner may write) only a regular file with one name
    that this process or the pool's owner owns: never a file planted there to be given away
    or overwritten."""
    flags |= os.O_CLOEXEC | os.O_NOFOLLOW
    if not flags & os.O_CREAT:
        return os.open(path, flags)
    try:
        fd = os.open(path, flags | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = os.open(path, flags & ~os.O_CREAT)
    else:
        if like is not None:
            _share_like(fd, like)
        return fd
    info = os.fstat(fd)
    owners = {os.geteuid()} | ({like.st_uid} if like is not None else set())
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid not in owners:
        os.close(fd)
        raise PermissionError(errno.EPERM, "not a holder table this arbiter may use (a regular file "
                              "with one name, owned by the arbiter's user or the pool's owner)", path)
    return fd


class HolderTable:
    """The side file of one pool's holders (the arbiter's view, or a client's own slot)."""

    def __init__(self, path: str, *, create: bool = False, readonly: bool = False,
                 like: os.stat_result | None = None) -> None:
        self.path = path
        self.fd = _open_table(path, (os.O_RDONLY if readonly else os.O_RDWR) | (os.O_CREAT if create else 0), like)
        if create:
            size = _FIRST + SLOTS * SLOT_SIZE
            if os.fstat(self.fd).st_size < size:
                os.ftruncate(self.fd, size)
            os.pwrite(self.fd, _HEADER.pack(MAGIC, VERSION, SLOT_SIZE, SLOTS), 0)
        else:
            header = os.pread(self.fd, _HEADER.size, 0)
            magic, version, slot_size, slots = _HEADER.unpack(header) if len(header) == _HEADER.size \
                else (b"", 0, 0, 0)
            if magic != MAGIC or version != VERSION or slot_size != SLOT_SIZE or slots != SLOTS:
                os.close(self.fd)
                raise OSError(errno.EINVAL, "not a daxfs holder table", path)

    def reopen(self) -> int:
        """A new open file description of this very file (a client's, for its own slot lock):
        through the descriptor, not the path, which someone may have replaced since."""
        return os.open(f"/proc/self/fd/{self.fd}", os.O_RDWR | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # ---------------------------------------------------------------- slots

    def alive(self, slot: int) -> bool:
        """Whether a process holds slot ``slot``'s lock (from another open file description)."""
        got = _lock(self.fd, _F_OFD_GETLK, fcntl.F_WRLCK, slot)
        return _FLOCK.unpack(got)[0] != fcntl.F_UNLCK

    def read(self, slot: int) -> tuple[int, int, str, list[tuple[int, int]]] | None:
        """``(pid, uid, name, runs)`` of a slot, or None when it is empty.  A slot whose CRC
        does not match (being written as we read it) is read again; one that never matches,
        or holds more runs than fit, reads as holding ``WHOLE_POOL``."""
        return self.read_checked(slot)[0]

    def read_checked(self, slot: int) -> tuple[tuple[int, int, str, list[tuple[int, int]]] | None, bool]:
        """``read``'s record, and whether it can be trusted to list less than before: an
        older arbiter's slot (no CRC) cannot, as a read racing its rewrite may miss runs."""
        where = _FIRST + slot * SLOT_SIZE
        for tries in range(_READ_TRIES):
            raw = os.pread(self.fd, SLOT_SIZE, where)
            magic = raw[:4]
            if magic == OLD_SLOT_MAGIC:
                return _old_record(raw), False
            if magic != SLOT_MAGIC:
                return None, True
            if len(raw) == SLOT_SIZE and _CRC.unpack_from(raw, SLOT_SIZE - _CRC.size)[0] == \
                    zlib.crc32(memoryview(raw)[:SLOT_SIZE - _CRC.size]):
                break
            time.sleep(0.0005 * tries)
        else:
            return _unreadable(raw), True
        _magic, pid, uid, _gid, count, name = _SLOT.unpack_from(raw)
        if count > MAX_RUNS:
            return _unreadable(raw), True
        runs = [_RUN.unpack_from(raw, _SLOT.size + i * _RUN.size) for i in range(count)]
        return (pid, uid, _name(name), runs), True

    def write(self, slot: int, pid: int, uid: int, gid: int, name: str, runs: Iterable[tuple[int, int]]) -> None:
        """Record what slot ``slot``'s process holds (runs merged to fit), in one write."""
        packed = _pack_runs(list(runs))
        body = bytearray(SLOT_SIZE)
        _SLOT.pack_into(body, 0, SLOT_MAGIC, pid, uid, gid, len(packed), name.encode("utf-8", "replace")[:64])
        for i, (off, n) in enumerate(packed):
            _RUN.pack_into(body, _SLOT.size + i * _RUN.size, off, n)
        _CRC.pack_into(body, SLOT_SIZE - _CRC.size, zlib.crc32(memoryview(body)[:SLOT_SIZE - _CRC.size]))
        os.pwrite(self.fd, body, _FIRST + slot * SLOT_SIZE)

    def clear(self, slot: int) -> None:
        os.pwrite(self.fd, bytes(_SLOT.size), _FIRST + slot * SLOT_SIZE)

    def used(self) -> list[int]:
        """Slots that hold a record (live or left by a dead process)."""
        return [i for i in range(SLOTS) if self.read(i) is not None]

    def live(self) -> list[tuple[int, int, str, list[tuple[int, int]]]]:
        """``read``'s record of every slot whose process is alive (one lock query when none is)."""
        probe = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, SLOTS, 0)
        if _FLOCK.unpack(fcntl.fcntl(self.fd, _F_OFD_GETLK, probe))[0] == fcntl.F_UNLCK:
            return []
        records = (self.read(slot) for slot in range(SLOTS) if self.alive(slot))
        return [record for record in records if record is not None]

    def free_slot(self, taken: set[int]) -> int:
        """A slot nobody uses: empty or left by a dead process, and not in ``taken``."""
        for i in range(SLOTS):
            if i not in taken and not self.alive(i):
                return i
        raise OSError(errno.EUSERS, f"all {SLOTS} holder slots are in use")


def _name(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


def _old_record(raw: bytes) -> tuple[int, int, str, list[tuple[int, int]]] | None:
    """A ``DXSL`` slot (no CRC), read as arbiters before the CRC read it."""
    if len(raw) < _SLOT.size:
        return None
    _magic, pid, uid, _gid, count, name = _SLOT.unpack_from(raw)
    if count > (SLOT_SIZE - _SLOT.size) // _RUN.size:
        return None
    return pid, uid, _name(name), [_RUN.unpack_from(raw, _SLOT.size + i * _RUN.size) for i in range(count)]


def _unreadable(raw: bytes) -> tuple[int, int, str, list[tuple[int, int]]]:
    """A slot that cannot be read: it holds the whole pool (its name as far as it goes; its
    pid, which may be garbage, 0)."""
    name = _SLOT.unpack_from(raw)[5] if len(raw) >= _SLOT.size else b"?"
    return 0, 0, _name(name) + " (its slot could not be read)", list(WHOLE_POOL)


def _describe(pid: int, name: str) -> str:
    if pid <= 0:
        return f"a process ({name!r})"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        # The slot's lock outlives its process in a child that process forked: the child's
        # copies of its views still show the blocks, so they stay held (and the name says why).
        return f"process {pid} ({name!r}, exited; a child it forked holds its slot)"
    except PermissionError:
        pass
    return f"process {pid} ({name!r})"


def refuse_live_holders(path: str) -> None:
    """BusyError when clients of an arbiter that stopped still hold blocks of the pool at
    ``path`` (pins, mappings, a write copying into blocks): only an arbiter reads their
    slots and keeps those blocks from other files until the clients let go or die.  Every
    read-write open but the arbiter's asks, and so do ``mkfs`` over a volume and ``repair``."""
    try:
        table = HolderTable(holders_path(path), readonly=True)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL):   # no arbiter ever served it, or not a table
            return
        if exc.errno in (errno.EACCES, errno.EPERM):
            # A table another user's arbiter made before tables took the pool's mode: we cannot
            # tell, and refusing would lock this user out of a pool they may open.
            return
        raise
    try:
        holding = [(pid, name) for pid, _uid, name, runs in table.live() if runs]
    finally:
        table.close()
    if holding:
        who = ", ".join(_describe(pid, name) for pid, name in holding[:5])
        more = f" and {len(holding) - 5} more" if len(holding) > 5 else ""
        raise BusyError(f"pool blocks are still held by clients of a stopped arbiter: {who}{more}; "
                        "`daxfs serve` serves them again, or stop them",
                        holders=[pid for pid, _name in holding], filename=path)
